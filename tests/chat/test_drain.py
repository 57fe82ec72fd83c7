"""A graceful drain, in-process: what a restarting server does with running turns, new work and sockets."""

import asyncio
import gc
import signal

import pytest
from asgiref.sync import sync_to_async

from gemini_server import workers
from gemini_server.asgi import application
from sessions_app.models import Session
from tests.asgi_http import asgi_request
from tests.chat import test_websocket as ws
from tests.chat.conftest import history_of, scripted

# The socket fixtures of the WebSocket tests, used here by name.
_channel_layer_per_test = ws._channel_layer_per_test
connect = ws.connect
signed_in = ws.signed_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("turns_settle")]

CHAT = "/api/v1/chat/message"
WORDS = [f"w{n} " for n in range(12)]
WRITE = {"calls": [{"name": "write_file", "args": {"file_path": "out.txt", "content": "x"}}]}


async def chat(session, token, message):
    return await asgi_request(
        "POST", CHAT, body={"sessionId": str(session.id), "message": message}, token=token
    )


async def until(predicate, what: str, timeout: float = 10):
    for _ in range(int(timeout / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _has_model_row(session) -> bool:
    from chat.models import Message

    return Message.objects.filter(session_id=session.id, role="model").exists()


async def model_row_stored(session) -> bool:
    return await sync_to_async(_has_model_row)(session)


def of_type(response, kind):
    return [frame["data"] for frame in response.frames if frame["type"] == kind]


async def test_drain_stops_a_turn_that_runs_too_long_and_keeps_what_it_made(
    session, make_session, token, fake_gemini, fresh_lifecycle
):
    turn = asyncio.create_task(chat(session, token, scripted({"text": WORDS, "delay": 0.3})))
    await until(lambda: model_row_stored(session), "the answer to be under way")

    draining = asyncio.create_task(fresh_lifecycle.drain(0.2))
    await until(lambda: _true(fresh_lifecycle.draining()), "the drain to begin")
    other = await sync_to_async(make_session)()
    refused = await chat(other, token, "hello")
    ready = await asgi_request("GET", "/health/ready")
    await draining
    response = await turn

    assert refused.status == 503
    assert refused.json()["error"]["code"] == "server_restarting"
    assert refused.json()["error"]["details"]["retryable"] is True
    assert refused.headers["retry-after"] == "1"
    assert ready.status == 503 and ready.json()["status"] == "draining"
    types = [frame["type"] for frame in response.frames]
    assert types[-2:] == ["error", "done"]
    error = of_type(response, "error")[0]
    assert error["code"] == "server_restarting" and error["retryable"] is True
    assert of_type(response, "done")[0]["finishReason"] == "INTERRUPTED"
    streamed = "".join(d["text"] for d in of_type(response, "content"))
    history = await history_of(session)
    assert history[-1]["role"] == "model" and history[-1]["finishReason"] == "INTERRUPTED"
    assert history[-1]["text"] == streamed and 0 < len(streamed) < len("".join(WORDS))
    stored = await sync_to_async(Session.objects.get)(pk=session.id)
    assert stored.turn_id is None


async def _true(value) -> bool:
    return value


async def test_drain_lets_a_turn_finish_within_its_time(
    session, token, fake_gemini, fresh_lifecycle
):
    turn = asyncio.create_task(chat(session, token, scripted({"text": WORDS[:4], "delay": 0.3})))
    await until(
        lambda: sync_to_async(lambda: Session.objects.get(pk=session.id).turn_id is not None)(),
        "the turn to start",
    )

    await fresh_lifecycle.drain(15)
    response = await turn

    assert of_type(response, "error") == []
    assert of_type(response, "done")[0]["finishReason"] == "STOP"
    assert "".join(d["text"] for d in of_type(response, "content")) == "".join(WORDS[:4])


async def test_drain_answers_a_call_left_waiting_for_confirmation(
    session, token, workspace, fake_gemini, fresh_lifecycle
):
    turn = asyncio.create_task(chat(session, token, scripted(WRITE, {"text": "never"})))
    await until(lambda: model_row_stored(session), "the turn to ask for confirmation")

    await fresh_lifecycle.drain(0)
    response = await turn

    assert of_type(response, "tool_confirmation")[0]["name"] == "write_file"
    assert of_type(response, "tool_result")[0]["status"] == "cancelled"
    assert of_type(response, "done")[0]["finishReason"] == "INTERRUPTED"
    assert not (workspace / "out.txt").exists()
    history = await history_of(session)
    assert history[-1]["role"] == "tool"
    assert "interrupted" in history[-1]["parts"][0]["functionResponse"]["response"]["error"]


async def test_sockets_are_closed_with_1012_and_new_ones_refused(
    signed_in, connect, user, token, fresh_lifecycle
):
    socket = await signed_in(user)

    await fresh_lifecycle.drain(0)

    assert await socket.close_code() == 1012
    late = await connect(token)
    assert await late.close_code() == 1012


async def test_lifespan_shutdown_drains(fresh_lifecycle, monkeypatch):
    monkeypatch.setattr(workers, "_retired", False)
    inbox: asyncio.Queue = asyncio.Queue()
    sent = []

    async def send(message):
        sent.append(message["type"])

    await inbox.put({"type": "lifespan.startup"})
    await inbox.put({"type": "lifespan.shutdown"})
    await application({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert fresh_lifecycle.draining()


async def test_a_started_process_sets_what_it_loaded_aside_from_the_garbage_collector(
    fresh_lifecycle, monkeypatch
):
    monkeypatch.setattr(workers, "_retired", False)
    gc.unfreeze()
    loaded = [object()]  # alive at the start, like a module's objects
    assert any(held is loaded for held in gc.get_objects())

    await fresh_lifecycle.process_start(lifespan=True)

    assert gc.get_freeze_count() > 0
    # In no generation the collector scans.
    assert not any(held is loaded for held in gc.get_objects())


async def test_sigterm_drains_before_the_servers_own_handler_runs(fresh_lifecycle, monkeypatch):
    monkeypatch.setattr(workers, "_retired", False)
    server_stops = asyncio.Event()
    seen_draining = []

    def server_handler(signum, frame):  # what daphne's Twisted or uvicorn installs
        seen_draining.append(fresh_lifecycle.draining())
        server_stops.set()

    original = signal.signal(signal.SIGTERM, server_handler)
    try:
        await fresh_lifecycle.process_start()
        signal.raise_signal(signal.SIGTERM)
        await asyncio.wait_for(server_stops.wait(), 10)
    finally:
        signal.signal(signal.SIGTERM, original)

    assert seen_draining == [True]  # the drain ran first; then the server stopped as usual
