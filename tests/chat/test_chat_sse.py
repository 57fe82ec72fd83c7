"""Chat over SSE through the real google-genai SDK and the fake upstream: the agent's whole turn."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat.models import Message
from sessions_app.models import Session
from tests.asgi_http import asgi_request
from tests.chat.conftest import history_of, scripted

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/api/v1/chat/message"


async def chat(session, token, message, **kwargs):
    return await asgi_request(
        "POST", CHAT, body={"sessionId": str(session.id), "message": message}, token=token, **kwargs
    )


def types_of(response) -> list[str]:
    return [frame["type"] for frame in response.frames]


def of_type(response, kind: str) -> list[dict]:
    return [frame["data"] for frame in response.frames if frame["type"] == kind]


async def test_plain_answer_streams_in_order_and_is_stored(session, token, fake_gemini):
    response = await chat(session, token, scripted({"text": ["Hel", "lo, ", "world"]}))

    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert types_of(response) == ["content", "content", "content", "usage", "done"]
    assert [d["text"] for d in of_type(response, "content")] == ["Hel", "lo, ", "world"]
    assert [frame["_id"] for frame in response.frames] == ["1", "2", "3", "4", "5"]
    usage = of_type(response, "usage")[0]
    assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"] > 0
    done = of_type(response, "done")[0]
    assert done["finishReason"] == "STOP"

    history = await history_of(session)
    assert [item["role"] for item in history] == ["user", "model"]
    assert history[1]["text"] == "Hello, world"
    assert history[1]["id"] == done["messageId"]
    assert history[1]["usage"] == usage
    stored = await sync_to_async(Session.objects.get)(pk=session.id)
    assert stored.total_tokens == usage["totalTokens"]


async def test_thought_is_streamed_with_subject_and_description(session, token, fake_gemini):
    response = await chat(
        session, token, scripted({"thought": "**Planning** Read the code first.", "text": "ok"})
    )

    assert of_type(response, "thought") == [
        {"subject": "Planning", "description": "Read the code first."}
    ]
    assert types_of(response)[-1] == "done"


async def test_read_file_call_result_is_fed_back(session, token, workspace, fake_gemini):
    (workspace / "notes.txt").write_text("alpha line\nbeta line\n")

    response = await chat(session, token, "read notes.txt")

    call = of_type(response, "tool_call")[0]
    assert call["name"] == "read_file" and call["args"] == {"file_path": "notes.txt"}
    result = of_type(response, "tool_result")[0]
    assert result["callId"] == call["callId"]
    assert result["status"] == "success" and result["result"] == "alpha line\nbeta line\n"
    assert (
        "".join(d["text"] for d in of_type(response, "content"))
        == "The file notes.txt starts with: alpha line"
    )
    # What the model received for the call: the tool output, with the call's id and its signature kept.
    contents = fake_gemini.requests[-1]["body"]["contents"]
    model_call = contents[-2]["parts"][0]
    assert model_call["functionCall"]["id"] == call["callId"] and "thoughtSignature" in model_call
    assert contents[-1]["parts"][0]["functionResponse"] == {
        "id": call["callId"],
        "name": "read_file",
        "response": {"output": "alpha line\nbeta line\n"},
    }


async def _confirm(session, token, call_id, outcome):
    return await asgi_request(
        "POST",
        "/api/v1/chat/confirm",
        body={"sessionId": str(session.id), "callId": call_id, "outcome": outcome},
        token=token,
    )


async def _chat_answering_confirmation(session, token, message, outcome):
    """Runs a turn; when it asks for confirmation, answers `outcome` over REST (as another request)."""
    answered = []

    async def answer_when_asked():
        for _ in range(200):
            pending = await sync_to_async(_pending_call_id)(session)
            if pending:
                answered.append(await _confirm(session, token, pending, outcome))
                return
            await asyncio.sleep(0.05)

    responder = asyncio.create_task(answer_when_asked())
    response = await chat(session, token, message)
    await responder
    return response, answered


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


WRITE = {
    "calls": [{"name": "write_file", "args": {"file_path": "out.txt", "content": "written\n"}}]
}


async def test_write_file_asks_in_default_and_runs_after_proceed_once(
    session, token, workspace, fake_gemini
):
    response, answers = await _chat_answering_confirmation(
        session, token, scripted(WRITE, {"text": "Wrote it."}), "proceed_once"
    )

    assert answers[0].status == 200 and answers[0].json() == {"ok": True}
    confirmation = of_type(response, "tool_confirmation")[0]
    assert confirmation["name"] == "write_file"
    assert confirmation["details"]["filePath"] == "/workspace/out.txt"
    assert "+written" in confirmation["details"]["diff"]
    assert of_type(response, "tool_result")[0]["status"] == "success"
    assert (workspace / "out.txt").read_text() == "written\n"
    assert types_of(response).index("tool_confirmation") < types_of(response).index("tool_result")


async def test_cancel_refuses_the_call_and_ends_the_turn(session, token, workspace, fake_gemini):
    both = {
        "calls": [
            {"name": "write_file", "args": {"file_path": "out.txt", "content": "written\n"}},
            {"name": "write_file", "args": {"file_path": "two.txt", "content": "2"}},
        ]
    }
    response, _ = await _chat_answering_confirmation(
        session, token, scripted(both, {"text": "never asked"}), "cancel"
    )

    # As gemini-cli: the denied call and the rest of its batch are cancelled, the model is not
    # asked again, and the turn ends.
    results = of_type(response, "tool_result")
    assert [r["status"] for r in results] == ["cancelled", "cancelled"]
    assert len(of_type(response, "tool_confirmation")) == 1
    assert of_type(response, "done")[0]["finishReason"] == "CANCELLED"
    assert of_type(response, "error") == []
    assert not (workspace / "out.txt").exists() and not (workspace / "two.txt").exists()
    assert len(fake_gemini.requests) == 1
    history = await history_of(session)
    assert history[-1]["role"] == "tool"
    stored = [
        part["functionResponse"]["response"]["error"]
        for item in history
        for part in item["parts"]
        if "functionResponse" in part
    ]
    assert "did not allow" in stored[0] and "cancelled" in stored[1]


async def test_auto_edit_never_asks_for_edits(make_session, token, fake_gemini):
    session = await sync_to_async(make_session)(approvalMode="autoEdit")
    response = await chat(session, token, scripted(WRITE, {"text": "ok"}))

    assert of_type(response, "tool_confirmation") == []
    assert of_type(response, "tool_result")[0]["status"] == "success"


async def test_shell_still_asks_in_auto_edit(make_session, token, fake_gemini):
    session = await sync_to_async(make_session)(approvalMode="autoEdit")
    shell = {"calls": [{"name": "run_shell_command", "args": {"command": "echo hi"}}]}
    response, _ = await _chat_answering_confirmation(
        session, token, scripted(shell, {"text": "ok"}), "cancel"
    )

    assert of_type(response, "tool_confirmation")[0]["details"]["command"] == "echo hi"


async def test_proceed_always_stops_asking_for_that_tool(session, token, workspace, fake_gemini):
    response, _ = await _chat_answering_confirmation(
        session, token, scripted(WRITE, {"text": "ok"}), "proceed_always"
    )
    assert of_type(response, "tool_result")[0]["status"] == "success"

    second = {"calls": [{"name": "write_file", "args": {"file_path": "two.txt", "content": "2"}}]}
    response = await chat(session, token, scripted(second, {"text": "ok"}))

    assert of_type(response, "tool_confirmation") == []
    assert (workspace / "two.txt").read_text() == "2"


async def test_parallel_calls_each_get_a_response(session, token, workspace, fake_gemini):
    (workspace / "a.txt").write_text("A")
    (workspace / "b.txt").write_text("B")
    calls = {
        "calls": [
            {"name": "read_file", "args": {"file_path": "a.txt"}},
            {"name": "read_file", "args": {"file_path": "b.txt"}},
        ]
    }

    response = await chat(session, token, scripted(calls, {"text": "both read"}))

    assert [r["result"] for r in of_type(response, "tool_result")] == ["A", "B"]
    responses = [
        part["functionResponse"]["response"]["output"]
        for part in fake_gemini.requests[-1]["body"]["contents"][-1]["parts"]
    ]
    assert responses == ["A", "B"]


async def test_second_message_during_a_turn_is_409(session, token, fake_gemini):
    first = asyncio.create_task(chat(session, token, scripted({"text": ["slow"], "hang": True})))
    for _ in range(100):
        if await sync_to_async(lambda: Session.objects.get(pk=session.id).turn_id)():
            break
        await asyncio.sleep(0.05)

    second = await chat(session, token, "hello again")

    assert second.status == 409
    assert second.json()["error"]["code"] == "conflict"
    cancel = await asgi_request(
        "POST", "/api/v1/chat/cancel", body={"sessionId": str(session.id)}, token=token
    )
    assert cancel.status == 200
    finished = await first
    assert of_type(finished, "done")[0]["finishReason"] == "CANCELLED"


async def test_the_message_is_stored_while_a_slow_model_has_not_answered(
    session, token, fake_gemini
):
    # The message is stored off the path to the first token: after the first chunk, or a
    # moment (USER_STORE_DELAY) after the model was asked when none came by then.
    turn = asyncio.create_task(
        chat(session, token, scripted({"text": [], "hang": True}, prompt="are you there?"))
    )
    history = []
    for _ in range(100):
        history = await history_of(session)
        if history:
            break
        await asyncio.sleep(0.05)

    assert [entry["role"] for entry in history] == ["user"]
    assert history[0]["text"].startswith("are you there?")
    assert not turn.done()
    cancel = await asgi_request(
        "POST", "/api/v1/chat/cancel", body={"sessionId": str(session.id)}, token=token
    )
    assert cancel.status == 200
    assert of_type(await turn, "done")[0]["finishReason"] == "CANCELLED"


async def test_disconnect_cancels_upstream_and_keeps_the_partial_answer(
    session, token, fake_gemini
):
    def got_text(response):
        return b'"content"' in response.body

    response = await chat(
        session,
        token,
        scripted({"text": ["partial ", "answer"], "hang": True}),
        hang_up_when=got_text,
    )

    assert response.status == 200
    assert await asyncio.to_thread(fake_gemini.wait_for_stream_status, "disconnected", 5)
    history = await history_of(session)
    assert history[-1]["role"] == "model"
    assert history[-1]["text"].startswith("partial")
    stored = await sync_to_async(Session.objects.get)(pk=session.id)
    assert stored.turn_id is None  # the session is free for the next turn


async def test_the_model_is_asked_before_the_client_reads_and_an_unread_turn_is_cancelled(
    session, user, fake_gemini
):
    """Opened from a thread serving the event loop (as a request's view is), a turn starts on
    the loop at once: the model is asked while the response is still being made. A client that
    goes without reading a frame (its response closed unread) cancels it; the message is kept
    and the session is free again."""
    from chat.turns.loop import turn_open
    from gemini_server.db import db_call

    turn = await db_call(
        turn_open,
        session_id=session.id,
        user=user,
        text=scripted({"text": ["never ", "read"], "hang": True}),
    )
    assert await asyncio.to_thread(fake_gemini.wait_for_stream_status, "open", 5)

    await db_call(turn.abandon)  # what closing the unread response does
    await asyncio.wait_for(turn.wait(), 10)

    assert await asyncio.to_thread(fake_gemini.wait_for_stream_status, "disconnected", 5)
    history = await history_of(session)
    assert history[0]["role"] == "user" and history[0]["text"].startswith("Do the scripted")
    stored = await sync_to_async(Session.objects.get)(pk=session.id)
    assert stored.turn_id is None


async def test_history_is_sent_back_next_turn_even_after_a_client_restart(
    session, token, fake_gemini
):
    from chat.agent import client as client_module

    await chat(session, token, scripted({"text": "first answer"}, prompt="first question"))
    client_module._client = None  # what a restarted process has: no client, only the database

    await chat(session, token, scripted({"text": "second answer"}, prompt="second question"))

    contents = fake_gemini.requests[-1]["body"]["contents"]
    texts = [part.get("text", "") for content in contents for part in content["parts"]]
    assert texts.pop(0).startswith("<session_context>")
    assert texts[0].startswith("first question")
    assert texts[1] == "first answer"
    assert texts[2].startswith("second question")


@pytest.mark.parametrize(
    ("step", "code", "retryable"),
    [
        ({"error": {"code": 429, "retryDelay": "7s"}}, "rate_limited", True),
        ({"error": {"code": 500}}, "upstream_unavailable", True),
        ({"error": {"code": 503}}, "upstream_unavailable", True),
        (
            {"error": {"code": 400, "message": "Invalid JSON payload received."}},
            "upstream_error",
            False,
        ),
        ({"text": ["half"], "midStreamError": {"code": 500}}, "upstream_unavailable", True),
    ],
)
async def test_upstream_failures_become_error_events_then_done(
    session, token, fake_gemini, step, code, retryable
):
    response = await chat(session, token, scripted(step))

    assert response.status == 200
    error = of_type(response, "error")[0]
    assert error["code"] == code and error["retryable"] is retryable
    assert types_of(response)[-1] == "done"
    assert of_type(response, "done")[0]["finishReason"] == "ERROR"
    if code == "rate_limited":
        assert error["retryAfter"] == 7
    if code == "upstream_error":
        assert "Invalid JSON payload received." in error["message"]
    from monitoring.models import Event

    assert await sync_to_async(
        Event.objects.filter(type="error", action="upstream_failure", session_id=session.id).exists
    )()


async def test_a_stream_that_stops_answering_times_out(session, token, fake_gemini, settings):
    settings.GEMINI_STREAM_IDLE_SECONDS = 0.5

    response = await chat(session, token, scripted({"text": ["stuck"], "hang": True}))

    assert of_type(response, "error")[0]["code"] == "upstream_unavailable"
    assert types_of(response)[-1] == "done"
    history = await history_of(session)
    assert history[-1]["text"] == "stuck"


async def test_no_api_key_is_a_clear_configuration_error(session, token, settings):
    settings.GEMINI_API_KEY = ""

    response = await chat(session, token, "hello")

    error = of_type(response, "error")[0]
    assert error["code"] == "upstream_unavailable"
    assert "GEMINI_API_KEY" in error["message"]
    assert types_of(response)[-1] == "done"


async def test_invalid_upstream_key_is_upstream_error(session, token, fake_gemini, settings):
    settings.GEMINI_API_KEY = "invalid"

    response = await chat(session, token, "hello")

    error = of_type(response, "error")[0]
    assert error["code"] == "upstream_error" and "API key not valid" in error["message"]


async def test_turn_limit_stops_the_turn_with_every_call_answered(
    session, token, workspace, fake_gemini, settings
):
    settings.AGENT_MAX_TURNS = 3
    (workspace / "a.txt").write_text("A")
    reads = [
        {"calls": [{"name": "read_file", "args": {"file_path": "a.txt", "start_line": n}}]}
        for n in range(1, 6)
    ]

    response = await chat(session, token, scripted(*reads))

    assert of_type(response, "error")[0]["code"] == "turn_limit"
    assert of_type(response, "done")[0]["finishReason"] == "ERROR"
    assert len(fake_gemini.requests) == 3
    messages = await sync_to_async(
        lambda: list(Message.objects.filter(session_id=session.id).order_by("seq"))
    )()
    calls = [p for m in messages for p in m.parts if "functionCall" in p]
    answers = [p for m in messages for p in m.parts if "functionResponse" in p]
    assert len(calls) == len(answers) == 3


async def test_cancel_while_waiting_for_confirmation_answers_the_call(
    session, token, workspace, fake_gemini
):
    async def cancel_when_asked():
        for _ in range(200):
            if await sync_to_async(_pending_call_id)(session):
                return await asgi_request(
                    "POST", "/api/v1/chat/cancel", body={"sessionId": str(session.id)}, token=token
                )
            await asyncio.sleep(0.05)

    canceller = asyncio.create_task(cancel_when_asked())
    response = await chat(session, token, scripted(WRITE, {"text": "never"}))
    cancelled = await canceller

    assert cancelled.status == 200
    assert of_type(response, "tool_result")[0]["status"] == "cancelled"
    assert of_type(response, "done")[0]["finishReason"] == "CANCELLED"
    assert not (workspace / "out.txt").exists()
    history = await history_of(session)
    assert history[-1]["role"] == "tool"


async def test_system_instruction_carries_the_session_and_gemini_md(
    make_session, token, fake_gemini
):
    from sessions_app.workspace import session_workspace

    session = await sync_to_async(make_session)(systemInstruction="Answer in French.")
    (session_workspace(session) / "GEMINI.md").write_text("Project uses tabs.")

    await chat(session, token, scripted({"text": "ok"}))

    instruction = fake_gemini.requests[-1]["body"]["systemInstruction"]["parts"][0]["text"]
    assert "Answer in French." in instruction and "Project uses tabs." in instruction


async def test_expired_session_is_gone(session, token, fake_gemini):
    from django.utils import timezone

    await sync_to_async(Session.objects.filter(pk=session.id).update)(expires_at=timezone.now())

    response = await chat(session, token, "hello")

    assert response.status == 410
    assert response.json()["error"]["code"] == "gone"


async def test_viewer_cannot_chat(session, viewer, fake_gemini):
    from accounts.services import token_pair_issue

    viewer_token = (await sync_to_async(token_pair_issue)(user=viewer))["accessToken"]
    response = await chat(session, viewer_token, "hello")

    assert response.status == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": "hi"}, "sessionId"),
        ({"sessionId": "not-a-uuid", "message": "hi"}, "sessionId"),
        ({"message": "  "}, "message"),
    ],
)
async def test_bad_chat_input_is_a_validation_error(session, token, body, field):
    body = {"sessionId": str(session.id), **body} if field != "sessionId" else body
    response = await asgi_request("POST", CHAT, body=body, token=token)

    assert response.status == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["details"]


async def test_malformed_json_is_bad_request(token):
    response = await asgi_request("POST", CHAT, body=b"{nope", token=token)

    assert response.status == 400
    assert response.json()["error"]["code"] == "bad_request"


async def test_last_socket_leaving_does_not_cancel_a_turn_streamed_over_sse(
    session, token, fake_gemini
):
    from channels.layers import get_channel_layer

    from gemini_server.groups import turn_group

    async def sockets_leave_when_running():
        for _ in range(100):
            if await sync_to_async(lambda: Session.objects.get(pk=session.id).turn_id)():
                # What the WebSocket consumer sends when the last socket leaves the session.
                await get_channel_layer().group_send(
                    turn_group(session.id), {"type": "turn.cancel", "reason": "no_listeners"}
                )
                return True
            await asyncio.sleep(0.02)
        return False

    leaving = asyncio.create_task(sockets_leave_when_running())
    response = await chat(
        session, token, scripted({"text": ["one ", "two ", "three"], "delay": 0.3})
    )

    assert await leaving
    assert of_type(response, "done")[0]["finishReason"] == "STOP"
    assert "".join(d["text"] for d in of_type(response, "content")) == "one two three"


async def test_an_event_stream_accept_header_is_served(session, token, fake_gemini):
    """Standard SSE clients send `Accept: text/event-stream`; that is what this endpoint serves."""
    response = await chat(
        session, token, scripted({"text": "hi"}), headers={"accept": "text/event-stream"}
    )

    assert response.status == 200
    assert types_of(response)[-1] == "done"


async def test_an_error_before_the_stream_is_json_whatever_the_accept_header(session, token):
    response = await asgi_request(
        "POST",
        CHAT,
        body={"sessionId": str(session.id), "message": ""},
        token=token,
        headers={"accept": "text/event-stream"},
    )

    assert response.status == 400
    assert response.json()["error"]["code"] == "validation_error"


@pytest.fixture
def one_message_an_hour(settings):
    settings.RATE_LIMIT_MAX_REQUESTS = 1
    settings.RATE_LIMIT_WINDOW_SECONDS = 3600


async def test_a_message_over_the_rate_limit_leaves_its_session_as_it_was(
    session, token, fake_gemini, one_message_an_hour
):
    assert (await chat(session, token, "hello")).status == 200

    refused = await chat(session, token, "hello again")

    assert refused.status == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert len(fake_gemini.requests) == 1  # the model was not asked
    assert [item["text"] for item in await history_of(session)] == ["hello", "You said: hello"]
    await sync_to_async(session.refresh_from_db)()
    assert session.turn_id is None  # claimed while Redis answered, then released


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"message": "   "}, id="empty-message"),
        pytest.param({"sessionId": "00000000-0000-4000-8000-000000000000"}, id="unknown-session"),
    ],
)
async def test_over_the_rate_limit_is_said_before_what_else_is_wrong(
    session, token, fake_gemini, one_message_an_hour, body
):
    assert (await chat(session, token, "hello")).status == 200

    refused = await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={"sessionId": str(session.id), "message": "hi", **body},
        token=token,
    )

    assert refused.status == 429
    assert refused.json()["error"]["code"] == "rate_limited"
