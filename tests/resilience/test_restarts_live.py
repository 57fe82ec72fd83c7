"""Restarts and crashes of real server processes (PostgreSQL and Redis): nothing is lost.

SIGTERM drains (the stream ends with `error` and `done`, the answer so far is kept, the session is
free at once); SIGKILL loses at most the last second of the answer and frees the session within
seconds; a background turn survives its client and is reattached from another process.
"""

import asyncio
import json
import signal
import time

import pytest
import websockets
from asgiref.sync import sync_to_async
from websockets.exceptions import ConnectionClosed

from sessions_app.services import session_create
from tests.chat.conftest import scripted
from tests.resilience.live import (
    LONG,
    SSE,
    STOPPED_BY_SIGTERM,
    TIMEOUT,
    WORDS,
    auth,
    exited,
    post_chat,
    stored_history,
    token_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_sigterm_mid_turn_ends_the_stream_keeps_the_answer_and_frees_the_session(
    live_servers, user, http
):
    server = live_servers(DRAIN_SECONDS="3")
    session = await sync_to_async(session_create)(user=user)
    other = await sync_to_async(session_create)(user=user)
    token = await token_for(user)
    socket = await websockets.connect(server.replace("http://", "ws://") + f"/ws/?token={token}")
    assert json.loads(await socket.recv())["event"] == "authenticated"

    async with post_chat(http, server, token, session, LONG) as response:
        stream = SSE(response)
        await stream.until_contents(5)
        server.process.send_signal(signal.SIGTERM)
        # While it drains the server takes no new turn and says it is not ready.
        async with post_chat(http, server, token, other, "hello") as refused:
            refused_status, refused_body = refused.status, await refused.json()
        async with http.get(f"{server}/health/ready") as ready:
            ready_status, ready_body = ready.status, await ready.json()
        await stream.rest()

    assert refused_status == 503
    assert refused_body["error"]["code"] == "server_restarting"
    assert refused_body["error"]["details"]["retryable"] is True
    assert ready_status == 503 and ready_body["status"] == "draining"
    assert stream.types()[-2:] == ["error", "done"]
    error, done = stream.frames[-2]["data"], stream.frames[-1]["data"]
    assert error["code"] == "server_restarting" and error["retryable"] is True
    assert done["finishReason"] == "INTERRUPTED"
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(socket.recv(), TIMEOUT)
    assert closed.value.rcvd.code == 1012
    assert await asyncio.to_thread(exited, server.process) == STOPPED_BY_SIGTERM

    # The answer streamed so far is kept, and says it was cut off.
    history = await stored_history(session)
    assert history[-1]["role"] == "model"
    assert history[-1]["text"] == "".join(stream.contents())
    assert history[-1]["finishReason"] == "INTERRUPTED"
    assert history[-1]["id"] == done["messageId"]

    # After the restart the next message works at once.
    restarted = live_servers()
    async with post_chat(http, restarted, token, session, scripted({"text": "again"})) as response:
        assert response.status == 200
        frames = await SSE(response).rest()
    assert frames[-1]["type"] == "done" and frames[-1]["data"]["finishReason"] == "STOP"


async def test_sigterm_lets_a_short_turn_finish_before_the_server_stops(live_servers, user, http):
    server = live_servers(DRAIN_SECONDS="20")
    session = await sync_to_async(session_create)(user=user)
    token = await token_for(user)
    words = WORDS[:8]

    message = scripted({"text": words, "delay": 0.2})
    async with post_chat(http, server, token, session, message) as response:
        stream = SSE(response)
        await stream.until_contents(1)
        server.process.send_signal(signal.SIGTERM)
        await stream.rest()

    assert "error" not in stream.types()
    assert stream.frames[-1]["data"]["finishReason"] == "STOP"
    assert "".join(stream.contents()) == "".join(words)
    assert await asyncio.to_thread(exited, server.process) == STOPPED_BY_SIGTERM
    assert (await stored_history(session))[-1]["finishReason"] == "STOP"


async def test_sigkill_mid_turn_keeps_the_answer_up_to_a_second_before_and_frees_the_session(
    live_servers, user, http
):
    server = live_servers()
    session = await sync_to_async(session_create)(user=user)
    token = await token_for(user)

    async with post_chat(http, server, token, session, LONG) as response:
        stream = SSE(response)
        await stream.until_contents(15)  # about three seconds of answer
        killed_at = time.monotonic()
        server.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(exited, server.process)

    restarted = live_servers()
    ready_at = time.monotonic()
    while True:
        response = await post_chat(
            http, restarted, token, session, scripted({"text": "after the crash"})
        )
        if response.status != 409:
            break
        response.release()
        assert time.monotonic() - ready_at < 10, "the session stayed claimed"
        await asyncio.sleep(0.2)
    answered_after = time.monotonic() - ready_at
    async with response:
        assert response.status == 200
        frames = await SSE(response).rest()

    assert frames[-1]["data"]["finishReason"] == "STOP"
    assert answered_after < 5
    history = await stored_history(session)
    cut = next(item for item in history if item["role"] == "model")
    assert cut["finishReason"] == "INTERRUPTED"
    full = "".join(WORDS)
    # Stored: at least what had streamed a second before the kill (a little slack for the
    # write itself), and nothing that was not the answer.
    kept_before = "".join(stream.contents(before=killed_at - 1.2))
    assert full.startswith(cut["text"])
    assert cut["text"].startswith(kept_before) and len(kept_before) > 0
    assert history[-1]["text"] == "after the crash"


async def test_a_background_turn_survives_its_client_and_is_reattached_from_another_process(
    live_servers, user, http
):
    server_a, server_b = live_servers(), live_servers()
    session = await sync_to_async(session_create)(user=user)
    token = await token_for(user)
    words = WORDS[:20]

    message = scripted({"text": words, "delay": 0.2})
    async with post_chat(http, server_a, token, session, message, background=True) as response:
        first = SSE(response)
        await first.until_contents(3)
        response.close()  # the client goes away: its connection is closed
    # The turn goes on on A.
    await asyncio.sleep(0.6)
    last_seen = first.frames[-1]["id"]
    async with http.get(
        f"{server_b}/api/v1/chat/stream",
        params={"sessionId": str(session.id)},
        headers={**auth(token), "Last-Event-ID": str(last_seen)},
    ) as attached:
        assert attached.status == 200
        second = SSE(attached)
        await second.rest()

    ids = [frame["id"] for frame in first.frames + second.frames]
    assert ids == list(range(1, len(ids) + 1))  # nothing lost, nothing twice
    assert "".join(first.contents() + second.contents()) == "".join(words)
    assert second.frames[-1]["type"] == "done"
    assert second.frames[-1]["data"]["finishReason"] == "STOP"
    history = await stored_history(session)
    assert history[-1]["text"] == "".join(words)
    async with http.get(
        f"{server_b}/api/v1/chat/stream",
        params={"sessionId": str(session.id)},
        headers=auth(token),
    ) as after:
        assert after.status == 204
