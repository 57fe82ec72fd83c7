"""The request body a turn sends (chat.turns.conversation): the same whether its contents are
built afresh or extended from what the session's earlier turns built."""

import json
import random

from chat.agent.history import INTERRUPTED, SYNTHETIC_THOUGHT_SIGNATURE
from chat.turns.conversation import Conversation, Step, _Built

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


def body(steps, built=None, *, environment="<session_context>here</session_context>", **kw):
    conversation = Conversation(
        steps,
        system_instruction="Be brief.",
        tools='[{"functionDeclarations":[]}]',
        generation_config={"temperature": 1},
        environment=environment,
        built=built,
        **kw,
    )
    before = (conversation.body(), list(conversation._steps))
    # What a turn appends in memory must not change what the session built.
    conversation.append("user", [{"text": "next"}])
    conversation.append("model", [DANGLING])
    return before, conversation.body(), list(conversation._steps)


def test_what_is_sent_for_stored_steps():
    conversation = Conversation(
        STEPS, system_instruction="", tools="", generation_config={}, environment="<ctx>"
    )
    interrupted = {
        "functionResponse": {
            "id": "c2",
            "name": "run_shell_command",
            "response": {"error": INTERRUPTED},
        }
    }

    assert conversation.contents == [
        {"role": "user", "parts": [{"text": "<ctx>"}, {"text": "read a.txt"}]},
        {"role": "model", "parts": [STEPS[2].parts[0], CALL]},
        {"role": "user", "parts": [ANSWER]},
        {"role": "model", "parts": [{"text": "It says A."}]},
        {"role": "user", "parts": [{"text": "now list"}]},
        {"role": "model", "parts": [DANGLING]},
        {"role": "user", "parts": [interrupted, {"text": "again?"}]},
        {"role": "model", "parts": STEPS[8].parts},
        {"role": "user", "parts": [{"text": "é ünïcode"}]},
        {"role": "model", "parts": [{"text": "Done."}]},
    ]
    # The steps each content stands for: the thought counts with the content before it.
    assert conversation._steps == [2, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert json.loads(conversation.body())["contents"] == conversation.contents


def test_every_turn_sends_what_a_fresh_build_sends():
    built = _Built()
    for end in range(len(STEPS) + 1):  # one turn after another, as a session grows
        assert body(STEPS[:end], built) == body(STEPS[:end])


def test_a_growing_session_of_any_steps_sends_what_a_fresh_build_sends():
    """Random sessions grown turn by turn, a compression now and then, against fresh builds."""
    chosen = random.Random(13)
    kinds = [
        lambda n: Step("user", [{"text": f"u{n}"}]),
        lambda n: Step("user", []),
        lambda n: Step("model", [{"text": f"m{n}"}]),
        lambda n: Step("model", [{"text": "t", "thought": True}]),
        lambda n: Step("model", [{"text": "x", "thoughtSignature": "s"}, CALL]),
        lambda n: Step("model", [DANGLING]),
        lambda n: Step("tool", [ANSWER]),
    ]
    for _session in range(60):
        steps, built, covered, snapshot = [], _Built(), 0, ""
        for _turn in range(chosen.randint(1, 15)):
            steps += [chosen.choice(kinds)(len(steps)) for _ in range(chosen.randint(0, 4))]
            if steps and chosen.random() < 0.1:
                covered = chosen.randint(0, len(steps))
                snapshot = f"<state_snapshot>{covered}</state_snapshot>"
            environment = chosen.choice(["", "<ctx>"])
            shape = {"environment": environment, "snapshot": snapshot, "covered": covered}

            assert body(list(steps), built, **shape) == body(list(steps), **shape)


def test_a_later_turn_serializes_only_what_is_new():
    built = _Built()
    first = Conversation(
        STEPS[:6], system_instruction="", tools="", generation_config={}, built=built
    )
    later = Conversation(STEPS, system_instruction="", tools="", generation_config={}, built=built)

    reused = [a is b for a, b in zip(first._fragments, later._fragments, strict=False)]
    assert reused == [True] * len(first._fragments)


def test_steps_with_other_parts_are_built_anew():
    built = _Built()
    steps = [Step("user", [{"text": "one"}]), Step("model", [{"text": "two"}])]
    assert body(steps, built) == body(steps)
    steps = [Step("user", [{"text": "one"}]), Step("model", [{"text": "three"}])]

    assert body(steps, built) == body(steps)
