"""The request body a turn sends (chat.turns.conversation): the same whether its contents' JSON
is built afresh or taken from what the session's earlier turns built."""

from chat.agent.history import SYNTHETIC_THOUGHT_SIGNATURE
from chat.turns.conversation import Conversation, Step, _Fragments

CALL = {"functionCall": {"id": "c1", "name": "read_file", "args": {"file_path": "a.txt"}}}
ANSWER = {"functionResponse": {"id": "c1", "name": "read_file", "response": {"output": "A"}}}
DANGLING = {"functionCall": {"id": "c2", "name": "run_shell_command", "args": {"command": "ls"}}}

STEPS = [
    Step("user", [{"text": "read a.txt"}]),
    Step("model", [{"text": "thinking", "thought": True}]),  # seen by nobody
    Step("model", [{"text": "Reading.", "thoughtSignature": "sig"}, CALL]),
    Step("tool", [ANSWER]),
    Step("model", [{"text": "It says A."}]),
    Step("user", [{"text": "now list"}]),
    Step("model", [DANGLING]),  # its turn died before the call ran
    Step("user", [{"text": "again?"}]),
    Step(
        "model", [{"text": "x", "thought": True, "thoughtSignature": SYNTHETIC_THOUGHT_SIGNATURE}]
    ),
    Step("user", [{"text": "é ünïcode"}]),
    Step("model", [{"text": "Done."}]),
]


def body(steps, fragments=None) -> bytes:
    conversation = Conversation(
        steps,
        system_instruction="Be brief.",
        tools='[{"functionDeclarations":[]}]',
        generation_config={"temperature": 1},
        environment="<session_context>here</session_context>",
        fragments=fragments,
    )
    conversation.append("user", [{"text": "next"}])
    return conversation.body()


def test_every_turn_sends_what_a_fresh_build_sends():
    fragments = _Fragments()
    for end in range(len(STEPS) + 1):  # one turn after another, as a session grows
        assert body(STEPS[:end], fragments) == body(STEPS[:end])


def test_a_later_turn_reuses_the_json_of_earlier_contents():
    fragments = _Fragments()
    first = Conversation(
        STEPS[:6], system_instruction="", tools="", generation_config={}, fragments=fragments
    )
    later = Conversation(
        STEPS, system_instruction="", tools="", generation_config={}, fragments=fragments
    )

    reused = [a is b for a, b in zip(first._fragments[:-1], later._fragments, strict=False)]
    assert reused and all(reused)


def test_steps_with_other_parts_are_serialized_anew():
    fragments = _Fragments()
    steps = [Step("user", [{"text": "one"}]), Step("model", [{"text": "two"}])]
    assert body(steps, fragments) == body(steps)
    steps = [Step("user", [{"text": "one"}]), Step("model", [{"text": "three"}])]

    assert body(steps, fragments) == body(steps)
