"""daphne (scripts/run-daphne) still serves the application for development: a streamed chat
turn, the JSON WebSocket, and the drain on SIGTERM with the sockets closed 1012."""

import asyncio
import json
import signal

import pytest
import websockets
from asgiref.sync import sync_to_async
from websockets.exceptions import ConnectionClosed

from sessions_app.services import session_create
from tests.chat.conftest import scripted
from tests.resilience.live import (
    SSE,
    TIMEOUT,
    exited,
    post_chat,
    token_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_daphne_serves_a_turn_and_a_socket_and_drains_on_sigterm(
    live_servers,
    user,
    http,
):
    server = live_servers(script="run-daphne", DRAIN_SECONDS="20")
    session = await sync_to_async(session_create)(user=user)
    token = await token_for(user)
    socket = await websockets.connect(server.replace("http://", "ws://") + f"/ws/?token={token}")
    assert json.loads(await socket.recv())["event"] == "authenticated"

    words = [f"d{n} " for n in range(6)]
    async with post_chat(http, server, token, session, scripted({"text": words, "delay": 0.2})) as (
        response
    ):
        assert response.status == 200
        stream = SSE(response)
        await stream.until_contents(1)
        server.process.send_signal(signal.SIGTERM)
        await stream.rest()

    # The running turn finished during the drain; then the socket was told to reconnect.
    assert stream.frames[-1]["type"] == "done"
    assert stream.frames[-1]["data"]["finishReason"] == "STOP"
    assert "".join(stream.contents()) == "".join(words)
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(socket.recv(), TIMEOUT)
    assert closed.value.rcvd.code == 1012
    assert await asyncio.to_thread(exited, server.process) == 0
