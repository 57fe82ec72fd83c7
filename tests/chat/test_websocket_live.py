"""The WebSocket API on real server processes sharing PostgreSQL and Redis, with a real client."""

import asyncio
import json
import time
import urllib.request
from contextlib import suppress

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.core.cache import cache

from accounts.services import token_pair_issue
from sessions_app.services import session_create
from sessions_app.workspace import session_workspace
from tests.chat.conftest import CONFIRMED_TOOL_TURN, scripted

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 15


class LiveSocket:
    """A `websockets` client speaking the server's `{"event", "data"}` frames."""

    def __init__(self, connection):
        self.connection = connection

    async def send(self, event: str, data: dict | None = None) -> None:
        await self.connection.send(json.dumps({"event": event, "data": data or {}}))

    async def frame(self, timeout: float = TIMEOUT) -> dict:
        return json.loads(await asyncio.wait_for(self.connection.recv(), timeout))

    async def expect(self, event: str, timeout: float = TIMEOUT) -> dict:
        frame = await self.frame(timeout)
        assert frame["event"] == event, frame
        return frame["data"]

    async def until(self, event: str, timeout: float = TIMEOUT) -> list[dict]:
        frames, deadline = [], time.monotonic() + timeout
        while True:
            frames.append(await self.frame(max(0.01, deadline - time.monotonic())))
            if frames[-1]["event"] == event:
                return frames


def ws_url(base_url: str, token: str) -> str:
    return base_url.replace("http://", "ws://") + f"/ws/?token={token}"


@pytest.fixture
async def live_socket():
    """`live_socket(base_url, token, **options)`: an authenticated socket; all closed afterwards."""
    opened = []

    async def open_socket(base_url: str, token: str, **options) -> LiveSocket:
        connection = await websockets.connect(ws_url(base_url, token), **options)
        opened.append(connection)
        socket = LiveSocket(connection)
        await socket.expect("authenticated")
        return socket

    yield open_socket
    for connection in opened:
        with suppress(Exception):
            connection.transport.resume_reading()
            await connection.close()


async def token_for(user) -> str:
    return (await sync_to_async(token_pair_issue)(user=user))["accessToken"]


async def members(session) -> int:
    return await sync_to_async(cache.get)(f"ws-members:{session.id}", 0)


async def wait_for(predicate, timeout: float = TIMEOUT, what: str = "a condition"):
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def http_post(url: str, body: dict, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
        return answer.status, json.loads(answer.read())


async def test_a_turn_sent_on_one_server_streams_to_a_socket_on_another(
    live_servers, live_socket, user
):
    server_a, server_b = live_servers(), live_servers()
    session = await sync_to_async(session_create)(user=user, config={"approvalMode": "default"})
    token = await token_for(user)
    watcher = await live_socket(server_a, token)
    sender = await live_socket(server_b, token)
    for socket in (watcher, sender):
        await socket.send("join-session", {"sessionId": str(session.id)})
        assert (await socket.expect("session:joined"))["sessionId"] == str(session.id)
    write = {"name": "write_file", "args": {"file_path": "cross.txt", "content": "from A"}}

    await sender.send(
        "chat:message",
        {"content": scripted({"text": ["Across ", "processes"], "calls": [write]}, {"text": "ok"})},
    )
    before = await watcher.until("gemini:tool-confirmation")
    # The turn runs on B; the confirmation comes from the socket on A.
    await watcher.send(
        "tool:confirm", {"callId": before[-1]["data"]["callId"], "outcome": "proceed_once"}
    )
    after = await watcher.until("gemini:done")
    sent_side = await sender.until("gemini:done")

    stream = [f for f in before + after if f["event"].startswith("gemini:")]
    assert [f["event"] for f in stream] == ["gemini:content", *CONFIRMED_TOOL_TURN]
    assert [f["data"]["text"] for f in stream if f["event"] == "gemini:content"] == [
        "Across ",
        "processes",
        "ok",
    ]
    assert stream[4]["data"]["status"] == "success"
    assert stream[-1]["data"]["finishReason"] == "STOP"
    assert [f for f in sent_side if f["event"].startswith("gemini:")] == stream
    assert (session_workspace(session) / "cross.txt").read_text() == "from A"


async def test_monitoring_on_one_server_sees_events_produced_on_another(
    live_servers, live_socket, admin_user, user
):
    server_a, server_b = live_servers(), live_servers()
    admin = await live_socket(server_a, await token_for(admin_user))
    await admin.send("monitoring:subscribe", {"types": ["session"]})
    await admin.expect("monitoring:subscribed")

    status, body = await asyncio.to_thread(
        http_post,
        f"{server_b}/api/v1/sessions",
        {"config": {"title": "made on B"}},
        await token_for(user),
    )

    assert status == 201
    event = await admin.expect("monitoring:event")
    assert (event["type"], event["action"]) == ("session", "create")
    assert event["sessionId"] == body["sessionId"]
    assert event["userEmail"] == user.email


@pytest.fixture
def server_pinging(live_servers):
    """One server that pings every second and drops a socket that leaves a ping unanswered for 1 s."""
    return live_servers("--ws-ping-interval", "1", "--ws-ping-timeout", "1")


async def test_a_client_that_stops_answering_pings_is_dropped_and_leaves_its_session(
    server_pinging, live_socket, user
):
    session = await sync_to_async(session_create)(user=user)
    token = await token_for(user)
    # The client's own keepalive is off: only the server's pings are in play.
    silent = await live_socket(server_pinging, token, ping_interval=None)
    alive = await live_socket(server_pinging, token, ping_interval=None)
    for socket in (silent, alive):
        await socket.send("join-session", {"sessionId": str(session.id)})
        await socket.expect("session:joined")
    assert await members(session) == 2

    # A frozen tab: its socket reads nothing more, so the server's pings go unanswered.
    silent.connection.transport.pause_reading()

    await wait_for(lambda: members_is(session, 1), what="the silent socket to be dropped and leave")
    # The socket that answers pings was kept, and it is still joined.
    await alive.send("ping")
    assert await alive.expect("pong") == {}
    assert await members(session) == 1


async def members_is(session, count: int) -> bool:
    return await members(session) == count


async def test_a_frame_over_the_limit_gets_an_error_and_the_socket_stays_open(
    live_servers, live_socket, user
):
    server = live_servers()
    socket = await live_socket(server, await token_for(user))

    await socket.send("ping", {"padding": "x" * (1024 * 1024 + 1000)})

    error = await socket.expect("error")
    assert error["code"] == "payload_too_large"
    await socket.send("ping")
    assert await socket.expect("pong") == {}
