"""The agent loop behaves as gemini-cli's: its prompt and context, retries, compression, loop
recovery, cancel, approval and memory; each through a real turn and the fake upstream."""

import asyncio
import datetime

import pytest
from asgiref.sync import sync_to_async

from chat.models import HistorySnapshot, Message, MessageRole
from chat.turns.store import message_store
from sessions_app.models import Session
from tests.asgi_http import asgi_request
from tests.chat.conftest import history_of, scripted

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/api/v1/chat/message"
LOOPING = "I keep saying the very same sentence again and again. " * 30


async def chat(session, token, message):
    return await asgi_request(
        "POST", CHAT, body={"sessionId": str(session.id), "message": message}, token=token
    )


def of_type(response, kind: str) -> list[dict]:
    return [frame["data"] for frame in response.frames if frame["type"] == kind]


def text_of(response) -> str:
    return "".join(d["text"] for d in of_type(response, "content"))


def system_text(request) -> str:
    return request["body"]["systemInstruction"]["parts"][0]["text"]


def all_texts(request) -> list[str]:
    return [
        part["text"]
        for content in request["body"]["contents"]
        for part in content["parts"]
        if "text" in part
    ]


def _pending_call_id(session):
    from chat.turns.control import pending_call

    last = Message.objects.filter(session_id=session.id, role="model").order_by("-seq").first()
    if last is None or Session.objects.get(pk=session.id).turn_id is None:
        return None
    for part in last.parts:
        call = part.get("functionCall")
        if call and pending_call(session=Session.objects.get(pk=session.id), call_id=call["id"]):
            return call["id"]
    return None


async def chat_answering(session, token, message, outcome):
    """A turn whose confirmations are answered `outcome` over REST, as another client would."""
    asked = asyncio.Event()

    async def answer_when_asked():
        for _ in range(400):
            pending = await sync_to_async(_pending_call_id)(session)
            if pending:
                asked.set()
                await asgi_request(
                    "POST",
                    "/api/v1/chat/confirm",
                    body={"sessionId": str(session.id), "callId": pending, "outcome": outcome},
                    token=token,
                )
                return
            await asyncio.sleep(0.05)

    responder = asyncio.create_task(answer_when_asked())
    response = await chat(session, token, message)
    if not asked.is_set():
        responder.cancel()
    return response


# The system prompt, the environment context and the generation config.


async def test_request_carries_system_prompt_environment_and_generation_defaults(
    session, token, workspace, fake_gemini
):
    (workspace / "src").mkdir()
    (workspace / "src" / "app.py").write_text("print(1)\n")

    await chat(session, token, scripted({"text": "ok"}, prompt="hello there"))

    body = fake_gemini.requests[0]["body"]
    system = system_text(fake_gemini.requests[0])
    for heading in ("# Core mandates", "# Software engineering tasks", "# New applications"):
        assert heading in system
    assert "/workspace" in system and "no network" in system and "# Git" in system
    first = body["contents"][0]
    assert first["role"] == "user"
    environment, prompt = first["parts"][0]["text"], first["parts"][1]["text"]
    assert environment.startswith("<session_context>")
    assert environment.endswith("</session_context>")
    assert datetime.date.today().strftime("%B") in environment
    assert "My operating system is:" in environment
    assert "├───src/" in environment or "└───src/" in environment
    assert "app.py" in environment
    assert prompt.startswith("hello there")
    assert body["generationConfig"] == {
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 8192},
    }
    # Stored as the user typed it: the environment is the model's, not the history's.
    history = await history_of(session)
    assert history[0]["parts"] == [{"text": prompt}]


async def test_a_workspace_that_cannot_be_read_ends_the_turn_with_an_error(
    session, token, fake_gemini, monkeypatch
):
    def unreadable(workspace):
        raise PermissionError("the workspace cannot be listed")

    # Read as the session is claimed, in the request's thread: the turn still reports it.
    monkeypatch.setattr("chat.turns.loop.environment_context", unreadable)

    response = await chat(session, token, scripted({"text": "never asked"}))

    assert response.status == 200
    assert [frame["type"] for frame in response.frames] == ["error", "done"]
    assert of_type(response, "error")[0]["code"] == "internal"
    assert fake_gemini.requests == []
    history = await history_of(session)
    assert [item["role"] for item in history] == ["user"]
    assert (await sync_to_async(Session.objects.get)(pk=session.id)).turn_id is None


async def test_session_temperature_overrides_the_default(make_session, token, fake_gemini):
    session = await sync_to_async(make_session)(temperature=0.2)

    await chat(session, token, scripted({"text": "ok"}))

    assert fake_gemini.requests[0]["body"]["generationConfig"]["temperature"] == 0.2


# Retries.


@pytest.mark.parametrize(
    ("failed", "nudge"),
    [
        ({}, "You previously returned an empty response"),
        ({"thought": "**Hmm** only thinking"}, "You previously generated thoughts"),
        ({"finishReason": "MALFORMED_FUNCTION_CALL"}, None),
    ],
)
async def test_an_unusable_answer_is_asked_again(session, token, fake_gemini, failed, nudge):
    response = await chat(session, token, scripted({"attempts": [failed, {"text": "Got it."}]}))

    assert of_type(response, "error") == []
    assert text_of(response) == "Got it."
    assert of_type(response, "done")[0]["finishReason"] == "STOP"
    assert len(fake_gemini.requests) == 2
    first, second = fake_gemini.requests
    assert first["body"]["contents"] == second["body"]["contents"]
    if nudge:
        assert nudge in system_text(second) and nudge not in system_text(first)
    history = await history_of(session)
    assert history[-1]["text"] == "Got it."


async def test_answers_that_stay_empty_end_in_an_error(session, token, fake_gemini):
    response = await chat(session, token, scripted({}))

    error = of_type(response, "error")[0]
    assert error["code"] == "upstream_error" and error["retryable"] is True
    assert "after 4 attempts" in error["message"]
    assert len(fake_gemini.requests) == 4


async def test_a_429_is_retried_after_its_delay_then_succeeds(
    session, token, fake_gemini, settings
):
    settings.GEMINI_RATE_LIMIT_MAX_WAIT_SECONDS = 5
    step = {"attempts": [{"error": {"code": 429, "retryDelay": "0.3s"}}, {"text": "Finally."}]}

    started = asyncio.get_running_loop().time()
    response = await chat(session, token, scripted(step))
    waited = asyncio.get_running_loop().time() - started

    assert of_type(response, "error") == []
    assert text_of(response) == "Finally."
    assert len(fake_gemini.requests) == 2
    assert waited >= 0.3  # Google's retryDelay was honoured


async def test_a_429_asking_for_more_than_the_cap_is_reported(
    session, token, fake_gemini, settings
):
    settings.GEMINI_RATE_LIMIT_MAX_WAIT_SECONDS = 5
    step = {"attempts": [{"error": {"code": 429, "retryDelay": "30s"}}, {"text": "never"}]}

    response = await chat(session, token, scripted(step))

    error = of_type(response, "error")[0]
    assert error["code"] == "rate_limited" and error["retryAfter"] == 30
    assert len(fake_gemini.requests) == 1


# Thoughts.


async def test_thoughts_are_not_sent_back(session, token, workspace, fake_gemini):
    (workspace / "a.txt").write_text("A\n")
    step = {
        "thought": "**Planning** secret reasoning",
        "calls": [{"name": "read_file", "args": {"file_path": "a.txt"}}],
    }

    response = await chat(session, token, scripted(step, {"text": "done"}))
    await chat(session, token, scripted({"text": "again"}, prompt="next"))

    assert of_type(response, "thought")[0]["subject"] == "Planning"
    for request in fake_gemini.requests[1:]:
        parts = [p for c in request["body"]["contents"] for p in c["parts"]]
        assert not any(part.get("thought") for part in parts)
        model_parts = [
            p for c in request["body"]["contents"] if c["role"] == "model" for p in c["parts"]
        ]
        assert "secret reasoning" not in str(model_parts)
        call = next(part for part in parts if "functionCall" in part)
        assert call["thoughtSignature"]
    # The stored history keeps the thought, for the user.
    history = await history_of(session)
    assert any(part.get("thought") for item in history for part in item["parts"])


# Compression.


async def test_a_long_session_is_compressed_and_the_snapshot_kept(
    session, token, fake_gemini, settings
):
    settings.AGENT_CONTEXT_WINDOW_TOKENS = 60_000
    for index in range(10):
        await sync_to_async(message_store)(
            session=session,
            user=session.user,
            role=MessageRole.USER,
            parts=[{"text": f"question {index} " + "q" * 6000}],
        )
        await sync_to_async(message_store)(
            session=session,
            user=session.user,
            role=MessageRole.MODEL,
            parts=[{"text": f"answer {index} " + "a" * 6000}],
        )

    response = await chat(session, token, scripted({"text": "fresh answer"}, prompt="new ask"))

    assert text_of(response) == "fresh answer"
    summary_call, main_call = fake_gemini.requests
    assert "<state_snapshot>" in system_text(summary_call)
    assert "question 0" in str(summary_call["body"]["contents"])
    texts = all_texts(main_call)
    assert texts[0].startswith("<session_context>")
    assert texts[1].startswith("<state_snapshot>") and "question 0" in texts[1]
    assert texts[2] == "Got it. Thanks for the additional context!"
    assert not any(text.startswith("question 0 ") for text in texts)
    assert any(text.startswith("question 9 ") for text in texts)
    assert len(str(main_call["body"]["contents"])) < len(str(summary_call["body"]["contents"]))
    # Everything is still stored; the snapshot is stored beside it.
    assert len(await history_of(session)) == 22
    snapshot = await HistorySnapshot.objects.aget(session_id=session.id)
    assert snapshot.text == texts[1] and 0 < snapshot.messages_covered < 22

    fake_gemini.reset()
    await chat(session, token, scripted({"text": "later"}, prompt="one more"))

    (next_call,) = fake_gemini.requests
    kept = all_texts(main_call)
    texts = all_texts(next_call)
    assert texts[1] == snapshot.text
    # The stored messages after the snapshot are exactly those the first turn kept.
    assert texts[3 : len(kept)] == kept[3:]
    assert texts[len(kept) :][0] == "fresh answer"
    assert texts[-1].startswith("one more")


async def test_a_request_over_the_window_is_refused_before_sending(
    session, token, fake_gemini, settings
):
    settings.AGENT_CONTEXT_WINDOW_TOKENS = 2_000

    response = await chat(session, token, scripted({"text": "never"}))

    assert of_type(response, "error")[0]["code"] == "context_window_exceeded"
    assert fake_gemini.requests == []


# Loops and limits.


async def test_a_content_loop_is_nudged_then_stopped(session, token, fake_gemini):
    response = await chat(session, token, scripted({"text": LOOPING}, {"text": LOOPING}))

    assert len(fake_gemini.requests) == 2
    nudge = all_texts(fake_gemini.requests[1])[-1]
    assert nudge.startswith("System: Potential loop detected. Details: Repeating content")
    error = of_type(response, "error")[0]
    assert error["code"] == "loop_detected"
    assert of_type(response, "done")[0]["finishReason"] == "ERROR"
    # The stream was cut once the loop was seen, not played to its end.
    assert len(text_of(response)) < 2 * len(LOOPING)


async def test_a_nudged_model_that_recovers_finishes_normally(session, token, fake_gemini):
    response = await chat(session, token, scripted({"text": LOOPING}, {"text": "Sorry, done."}))

    assert of_type(response, "error") == []
    assert text_of(response).endswith("Sorry, done.")


async def test_repeated_tool_calls_are_nudged_then_stopped(session, token, workspace, fake_gemini):
    (workspace / "a.txt").write_text("A")
    same = {"calls": [{"name": "read_file", "args": {"file_path": "a.txt"}}]}

    response = await chat(session, token, scripted(*[same] * 12))

    statuses = [result["status"] for result in of_type(response, "tool_result")]
    # 4 calls run, the 5th is answered with the nudge; 4 more, and the 5th stops the turn.
    assert statuses == ["success"] * 4 + ["cancelled"] + ["success"] * 4 + ["cancelled"]
    assert of_type(response, "error")[0]["code"] == "loop_detected"
    assert any(
        text.startswith("System: Potential loop detected. Details: Repeated tool call: read_file")
        for text in all_texts(fake_gemini.requests[-1])
    )


# Approval.


async def test_shell_allow_always_trusts_that_command_root_only(make_session, token, fake_gemini):
    session = await sync_to_async(make_session)()
    echo = {"calls": [{"name": "run_shell_command", "args": {"command": "echo one"}}]}
    echo_again = {"calls": [{"name": "run_shell_command", "args": {"command": "echo two"}}]}
    remove = {"calls": [{"name": "run_shell_command", "args": {"command": "rm -rf src"}}]}
    chained = {
        "calls": [{"name": "run_shell_command", "args": {"command": "echo x && rm -rf src"}}]
    }

    first = await chat_answering(session, token, scripted(echo, {"text": "ok"}), "proceed_always")
    assert len(of_type(first, "tool_confirmation")) == 1
    stored = await Session.objects.aget(pk=session.id)
    assert stored.always_allowed_tools == ["run_shell_command(echo)"]

    second = await chat(session, token, scripted(echo_again, {"text": "ok"}))
    assert of_type(second, "tool_confirmation") == []

    third = await chat_answering(session, token, scripted(remove, {"text": "ok"}), "cancel")
    assert of_type(third, "tool_confirmation")[0]["details"]["command"] == "rm -rf src"

    fourth = await chat_answering(session, token, scripted(chained, {"text": "ok"}), "cancel")
    assert len(of_type(fourth, "tool_confirmation")) == 1


async def test_auto_edit_still_asks_before_saving_a_memory(make_session, token, fake_gemini):
    session = await sync_to_async(make_session)(approvalMode="autoEdit")
    remember = {"calls": [{"name": "save_memory", "args": {"fact": "Use tabs."}}]}

    response = await chat_answering(session, token, scripted(remember, {"text": "ok"}), "cancel")

    assert of_type(response, "tool_confirmation")[0]["name"] == "save_memory"


async def test_plan_mode_refuses_edits_and_the_shell_but_reads(make_session, token, fake_gemini):
    from sessions_app.workspace import session_workspace

    session = await sync_to_async(make_session)(approvalMode="plan")
    workspace = session_workspace(session)
    (workspace / "a.txt").write_text("A\n")
    calls = {
        "calls": [
            {"name": "read_file", "args": {"file_path": "a.txt"}},
            {"name": "write_file", "args": {"file_path": "b.txt", "content": "B"}},
            {"name": "run_shell_command", "args": {"command": "touch c.txt"}},
        ]
    }

    response = await chat(session, token, scripted(calls, {"text": "planned"}))

    assert of_type(response, "tool_confirmation") == []
    read, write, shell = of_type(response, "tool_result")
    assert read["status"] == "success"
    assert write["status"] == "error" and write["result"] == (
        "Tool execution denied by policy. You are in Plan Mode and cannot modify source code."
    )
    assert shell["status"] == "error" and shell["result"].startswith(
        "Tool execution denied by policy. You are in Plan Mode with access to read-only tools."
    )
    assert not (workspace / "b.txt").exists() and not (workspace / "c.txt").exists()
    assert "# Plan mode" in system_text(fake_gemini.requests[0])
    sent = fake_gemini.requests[1]["body"]["contents"][-1]["parts"]
    assert sent[1]["functionResponse"]["response"]["error"] == write["result"]


# GEMINI.md.


async def test_gemini_md_imports_and_subdirectory_context(session, token, workspace, fake_gemini):
    (workspace / "docs").mkdir()
    (workspace / "docs" / "style.md").write_text("Indent with tabs.\n")
    (workspace / "GEMINI.md").write_text("Root rules.\n@docs/style.md\n@../../../etc/hosts.md\n")
    (workspace / "pkg").mkdir()
    (workspace / "pkg" / "GEMINI.md").write_text("Package rules: no globals.\n")
    (workspace / "pkg" / "mod.py").write_text("x = 1\n")
    (workspace / "pkg" / "other.py").write_text("y = 2\n")
    reads = [
        {"calls": [{"name": "read_file", "args": {"file_path": "pkg/mod.py"}}]},
        {"calls": [{"name": "read_file", "args": {"file_path": "pkg/other.py"}}]},
        {"text": "ok"},
    ]

    response = await chat(session, token, scripted(*reads))

    system = system_text(fake_gemini.requests[0])
    assert "Root rules." in system and "Indent with tabs." in system
    assert "@../../../etc/hosts.md" in system  # leads out of the workspace: left as written
    assert "Package rules" not in system
    first = fake_gemini.requests[1]["body"]["contents"][-1]["parts"][0]["functionResponse"]
    output = first["response"]["output"]
    assert output.startswith("x = 1\n")
    assert "--- Newly Discovered Project Context ---" in output
    assert "Package rules: no globals." in output
    second = fake_gemini.requests[2]["body"]["contents"][-1]["parts"][0]["functionResponse"]
    assert "Package rules" not in second["response"]["output"]
    # What the user sees is the tool's own output.
    assert of_type(response, "tool_result")[0]["result"] == "x = 1\n"
