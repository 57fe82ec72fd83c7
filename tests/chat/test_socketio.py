"""Socket.IO at /socket.io/ on real server processes, through python-socketio's client: auth,
the seed's event order, acknowledgements, chat, tools, monitoring, bad input, limits, CORS, and
two processes sharing Redis."""

import asyncio
import json
import time
import urllib.error
import urllib.request
from contextlib import suppress
from datetime import timedelta

import pytest
import socketio
import websockets
from asgiref.sync import sync_to_async
from corsheaders.conf import conf as cors
from django.conf import settings
from django.core.cache import cache
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from accounts.services import api_key_revoke, token_pair_issue
from sessions_app.services import session_create
from sessions_app.workspace import session_workspace
from tests.chat.conftest import CONFIRMED_TOOL_TURN, scripted

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 20
TRANSPORTS = [
    pytest.param(["polling"], id="polling"),
    pytest.param(["websocket"], id="websocket"),
]
WITH_UPGRADE = [*TRANSPORTS, pytest.param(["polling", "websocket"], id="polling-upgrade")]


class SioSocket:
    """A python-socketio client; every event it receives, `disconnect` included, in one inbox."""

    def __init__(self):
        self.client = socketio.AsyncClient(reconnection=False)
        self.inbox: asyncio.Queue = asyncio.Queue()

        @self.client.on("*")
        async def anything(event, *args):
            self.inbox.put_nowait((event, args[0] if args else None))

        @self.client.event
        async def disconnect(reason=None):
            self.inbox.put_nowait(("disconnect", reason))

        @self.client.event
        async def connect_error(data):
            self.inbox.put_nowait(("connect_error", data))

    async def next(self, timeout: float = TIMEOUT) -> tuple[str, object]:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def expect(self, event: str, timeout: float = TIMEOUT):
        """The next event, which must be `event`; returns its data."""
        name, data = await self.next(timeout)
        assert name == event, (name, data)
        return data

    async def until(self, event: str, timeout: float = TIMEOUT) -> list[tuple[str, object]]:
        """Every event up to and including the first `event`."""
        events, deadline = [], time.monotonic() + timeout
        while True:
            events.append(await self.next(max(0.01, deadline - time.monotonic())))
            if events[-1][0] == event:
                return events

    async def emit(self, event: str, data=None) -> None:
        if data is None:
            await self.client.emit(event)
        else:
            await self.client.emit(event, data)

    async def call(self, event: str, data=None):
        """Emits with an acknowledgement callback; returns what the server acknowledged."""
        return await self.client.call(event, data, timeout=TIMEOUT)

    async def still_open(self) -> None:
        """The socket answers a ping: nothing else was waiting, and it was not closed."""
        assert await self.call("ping") == {"ok": True}
        assert await self.expect("pong") == {}


@pytest.fixture
async def sio():
    """`sio(base_url, token, transports=..., authenticated=True)`: a connected socket; all closed
    afterwards. `connect_refused(...)` returns the connect_error's data instead."""
    opened: list[SioSocket] = []

    async def connect(base_url: str, token: str | None, *, transports=None, query: str = ""):
        socket = SioSocket()
        opened.append(socket)
        await socket.client.connect(
            base_url + query,
            auth={"token": token} if token is not None else None,
            transports=transports or ["websocket"],
            wait_timeout=TIMEOUT,
        )
        return socket

    async def signed_in(base_url: str, token: str, **options) -> SioSocket:
        socket = await connect(base_url, token, **options)
        await socket.expect("authenticated")
        return socket

    async def connect_refused(base_url: str, token: str | None, **options) -> dict:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(base_url, token, **options)
        return await opened[-1].expect("connect_error")

    signed_in.connect = connect
    signed_in.refused = connect_refused
    yield signed_in
    for socket in opened:
        with suppress(Exception):
            await socket.client.disconnect()


async def token_for(user) -> str:
    return (await sync_to_async(token_pair_issue)(user=user))["accessToken"]


async def new_session(owner, **config):
    config.setdefault("approvalMode", "default")
    return await sync_to_async(session_create)(user=owner, config=config)


async def members(session) -> int:
    return await sync_to_async(cache.get)(f"ws-members:{session.id}", 0)


async def wait_for(predicate, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def http(method: str, url: str, *, token: str | None = None, body=None, headers=None):
    """(status, headers, parsed JSON or raw text) of one request to a live server."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={
            **({"Content-Type": "application/json"} if body is not None else {}),
            **({"Authorization": f"Bearer {token}"} if token else {}),
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            status, answer_headers, raw = answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, error.headers, error.read()
    try:
        return status, answer_headers, json.loads(raw)
    except ValueError:
        return status, answer_headers, raw.decode()


def gemini(events: list) -> list:
    return [(name, data) for name, data in events if name.startswith("gemini:")]


# Authentication.


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_a_jwt_in_the_connect_packet_authenticates(live_pool, sio, user, transports):
    socket = await sio.connect(live_pool(), await token_for(user), transports=transports)

    authenticated = await socket.expect("authenticated")

    assert socket.client.transport() == transports[0]
    assert authenticated["user"]["email"] == user.email
    assert authenticated["user"]["role"] == "engineer"
    await socket.still_open()


async def test_an_api_key_in_the_connect_packet_and_a_token_in_the_url_authenticate(
    live_pool, sio, user, api_key
):
    by_key = await sio.connect(live_pool(), api_key[1])
    by_url = await sio.connect(live_pool(), None, query=f"?token={await token_for(user)}")

    assert (await by_key.expect("authenticated"))["user"]["email"] == user.email
    assert (await by_url.expect("authenticated"))["user"]["email"] == user.email


@pytest.mark.parametrize("transports", TRANSPORTS)
@pytest.mark.parametrize(
    "token", ["not-a-jwt", "gsk_deadbeef0000.wrong-secret", "gsk_malformed", None]
)
async def test_a_bad_or_missing_token_is_a_connect_error_in_the_contracts_shape(
    live_pool, sio, token, transports
):
    refused = await sio.refused(live_pool(), token, transports=transports)

    assert refused["data"]["code"] == "unauthenticated"
    assert refused["message"] == refused["data"]["message"]
    assert refused["message"]


async def test_a_deactivated_user_and_a_revoked_key_are_refused_at_connect(
    live_pool, sio, user, api_key
):
    key, raw = api_key
    await sync_to_async(api_key_revoke)(key=key, actor=user)
    assert (await sio.refused(live_pool(), raw))["data"]["code"] == "unauthenticated"

    token = await token_for(user)
    await User.objects.filter(pk=user.pk).aupdate(is_active=False)
    assert (await sio.refused(live_pool(), token))["data"]["code"] == "unauthenticated"


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_a_revoked_key_loses_an_open_socket_at_its_next_event(
    live_pool, sio, user, api_key, transports
):
    key, raw = api_key
    socket = await sio(live_pool(), raw, transports=transports)

    await sync_to_async(api_key_revoke)(key=key, actor=user)
    await socket.emit("ping")

    assert (await socket.expect("error"))["code"] == "unauthenticated"
    assert await socket.expect("disconnect") == socket.client.reason.SERVER_DISCONNECT
    assert not socket.client.connected


async def test_a_deactivated_user_loses_an_open_socket(live_pool, sio, user, admin_user):
    """Deactivation through the service (the API, the admin console) is announced to the
    user's sockets on every process: the socket is closed without sending anything."""
    from accounts.services import user_update

    socket = await sio(live_pool(), await token_for(user))

    await sync_to_async(user_update)(user=user, actor=admin_user, is_active=False)

    assert (await socket.expect("error"))["code"] == "unauthenticated"
    assert await socket.expect("disconnect") == socket.client.reason.SERVER_DISCONNECT


async def test_an_expired_jwt_loses_an_open_socket(live_pool, sio, user):
    token = await sync_to_async(AccessToken.for_user)(user)
    token.set_exp(lifetime=timedelta(seconds=2))
    socket = await sio(live_pool(), str(token))
    await socket.still_open()

    await asyncio.sleep(max(0, token["exp"] - time.time()) + 0.2)
    await socket.emit("ping")

    assert (await socket.expect("error"))["code"] == "unauthenticated"
    assert await socket.expect("disconnect") == socket.client.reason.SERVER_DISCONNECT


# Order and acknowledgements.


@pytest.mark.parametrize("transports", WITH_UPGRADE)
async def test_the_seeds_order_join_then_chat_without_waiting_streams_the_answer(
    live_pool, sio, user, fake_gemini, transports
):
    session = await new_session(user)
    socket = await sio(live_pool(), await token_for(user), transports=transports)

    # As the seed's README does it: no waiting for session:joined before chatting.
    await socket.emit("join-session", {"sessionId": str(session.id)})
    await socket.emit("chat:message", {"content": scripted({"text": ["Hel", "lo!"]})})
    events = await socket.until("gemini:done")

    assert events[0][0] == "session:joined"
    stream = gemini(events)
    assert [name for name, _ in stream] == [
        "gemini:content",
        "gemini:content",
        "gemini:usage",
        "gemini:done",
    ]
    assert [data["text"] for name, data in stream if name == "gemini:content"] == ["Hel", "lo!"]
    assert all(data["sessionId"] == str(session.id) for _, data in stream)
    assert stream[-1][1]["finishReason"] == "STOP"


async def test_a_sockets_events_are_handled_in_the_order_sent(live_pool, sio, user):
    first, second = await new_session(user), await new_session(user)
    socket = await sio(live_pool(), await token_for(user), transports=["polling"])
    order = [first, second] * 10

    for session in order:
        await socket.emit("join-session", {"sessionId": str(session.id)})
    await socket.emit("leave-session")

    for session in order:
        assert (await socket.expect("session:joined"))["sessionId"] == str(session.id)
    assert await socket.expect("session:left") == {"sessionId": str(second.id)}
    assert (await members(first), await members(second)) == (0, 0)


async def test_acknowledgements_carry_the_answer_or_the_error(live_pool, sio, user, other_user):
    session = await new_session(user)
    theirs = await new_session(other_user)
    socket = await sio(live_pool(), await token_for(user))

    joined = await socket.call("join-session", {"sessionId": str(session.id)})
    assert joined["ok"] is True
    assert joined["sessionId"] == str(session.id)
    assert joined["session"]["workspaceDir"] == "/workspace"
    # The answer event goes out as well, before the acknowledgement.
    assert (await socket.expect("session:joined")) == {
        key: value for key, value in joined.items() if key != "ok"
    }

    refused = await socket.call("join-session", {"sessionId": str(theirs.id)})
    assert list(refused) == ["error"]
    assert refused["error"]["code"] == "not_found"
    assert refused["error"]["message"] == "Session not found"
    error = await socket.expect("error")
    assert error == {**refused["error"], "event": "join-session"}
    assert await members(theirs) == 0
    await socket.still_open()


# Chat.


async def test_a_confirmation_runs_the_tool_and_every_socket_of_the_session_hears_the_turn(
    live_pool, sio, user, fake_gemini
):
    session = await new_session(user)
    token = await token_for(user)
    polling = await sio(live_pool(), token, transports=["polling"])
    websocket = await sio(live_pool(), token, transports=["websocket"])
    for socket in (polling, websocket):
        assert (await socket.call("join-session", {"sessionId": str(session.id)}))["ok"]
        await socket.expect("session:joined")
    write = {"name": "write_file", "args": {"file_path": "a.txt", "content": "from socket.io\n"}}

    started = await polling.call(
        "chat:message",
        {"content": scripted({"text": "Writing.", "calls": [write]}, {"text": "Done."})},
    )
    assert started == {"ok": True, "sessionId": str(session.id)}
    before = await websocket.until("gemini:tool-confirmation")
    confirmation = before[-1][1]
    assert not (session_workspace(session) / "a.txt").exists()
    confirmed = await websocket.call(
        "tool:confirm", {"callId": confirmation["callId"], "outcome": "proceed_once"}
    )
    assert confirmed == {"ok": True, "callId": confirmation["callId"], "outcome": "proceed_once"}
    after = await websocket.until("gemini:done")
    polled = await polling.until("gemini:done")

    stream = gemini(before + after)
    assert [name for name, _ in stream] == CONFIRMED_TOOL_TURN
    assert stream[3][1]["status"] == "success"
    assert gemini(polled) == stream
    assert "tool:confirmed" in [name for name, _ in after]
    assert (session_workspace(session) / "a.txt").read_text() == "from socket.io\n"


async def test_chat_cancel_stops_the_turn_and_keeps_the_partial_answer(
    live_pool, sio, user, fake_gemini
):
    session = await new_session(user)
    socket = await sio(live_pool(), await token_for(user))
    await socket.call("join-session", {"sessionId": str(session.id)})
    await socket.expect("session:joined")

    await socket.emit("chat:message", {"content": scripted({"text": ["Partial"], "hang": True})})
    assert (await socket.expect("gemini:content"))["text"] == "Partial"
    cancelled = await socket.call("chat:cancel")
    events = await socket.until("gemini:done")

    assert cancelled == {"ok": True, "sessionId": str(session.id)}
    assert events[0] == ("chat:cancelled", {"sessionId": str(session.id)})
    assert events[-1][1]["finishReason"] == "CANCELLED"
    assert await asyncio.to_thread(fake_gemini.wait_for_stream_status, "disconnected", 10)


async def test_a_socket_io_and_a_ws_socket_share_one_session_stream(
    live_pool, sio, user, fake_gemini
):
    session = await new_session(user)
    token = await token_for(user)
    base = live_pool()
    io_socket = await sio(base, token)
    await io_socket.call("join-session", {"sessionId": str(session.id)})
    await io_socket.expect("session:joined")
    async with websockets.connect(base.replace("http", "ws") + f"/ws/?token={token}") as ws:
        assert json.loads(await ws.recv())["event"] == "authenticated"
        await ws.send(json.dumps({"event": "join-session", "data": {"sessionId": str(session.id)}}))
        assert json.loads(await ws.recv())["event"] == "session:joined"

        await io_socket.emit("chat:message", {"content": scripted({"text": "to both"})})
        frames = []
        while not frames or frames[-1]["event"] != "gemini:done":
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))
        io_events = await io_socket.until("gemini:done")

    assert [(f["event"], f["data"]) for f in frames] == gemini(io_events)


# Tools.


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_tool_execute_reads_a_file_as_the_seed_writes_it(live_pool, sio, user, transports):
    session = await new_session(user)
    (session_workspace(session) / "file.txt").write_text("first line\nsecond line\n")
    socket = await sio(live_pool(), await token_for(user), transports=transports)
    await socket.emit("join-session", {"sessionId": str(session.id)})

    started = await socket.call(
        "tool:execute", {"name": "readFile", "args": {"path": "/workspace/file.txt"}}
    )
    events = await socket.until("tool:execution-complete")

    assert started["ok"] is True
    assert [name for name, _ in events] == [
        "session:joined",
        "tool:execution-start",
        "tool:execution-complete",
    ]
    start, complete = events[1][1], events[2][1]
    assert start == {key: value for key, value in started.items() if key != "ok"}
    assert start["name"] == complete["name"] == "read_file"
    assert complete["callId"] == start["callId"]
    assert "first line\nsecond line" in complete["result"]


# Monitoring.


async def test_an_admin_receives_monitoring_events_until_unsubscribed(
    live_pool, sio, admin_user, user
):
    base = live_pool()
    admin = await sio(base, await token_for(admin_user), transports=["polling"])

    assert await admin.call("monitoring:subscribe", {"types": ["session"]}) == {
        "ok": True,
        "types": ["session"],
    }
    await admin.expect("monitoring:subscribed")
    status, _, body = await asyncio.to_thread(
        http, "POST", f"{base}/api/v1/sessions", token=await token_for(user), body={}
    )
    assert status == 201
    event = await admin.expect("monitoring:event")

    assert (event["type"], event["action"]) == ("session", "create")
    assert event["sessionId"] == body["sessionId"]
    assert event["userEmail"] == user.email
    assert await admin.call("monitoring:unsubscribe") == {"ok": True}
    await admin.expect("monitoring:unsubscribed")
    await asyncio.to_thread(
        http, "POST", f"{base}/api/v1/sessions", token=await token_for(user), body={}
    )
    await admin.still_open()


async def test_an_engineer_is_refused_monitoring_and_the_socket_stays_open(live_pool, sio, user):
    base = live_pool()
    socket = await sio(base, await token_for(user))

    refused = await socket.call("monitoring:subscribe")
    error = await socket.expect("error")

    assert refused["error"]["code"] == "forbidden"
    assert (error["code"], error["event"]) == ("forbidden", "monitoring:subscribe")
    await asyncio.to_thread(
        http, "POST", f"{base}/api/v1/sessions", token=await token_for(user), body={}
    )
    # Its own session's creation is not sent to it: the next event answers its ping.
    await socket.still_open()


# Bad input and limits.


@pytest.mark.parametrize(
    ("event", "args", "code"),
    [
        ("teleport", [{}], "bad_request"),
        ("join-session", ["not an object"], "validation_error"),
        ("join-session", [[1, 2]], "validation_error"),
        ("join-session", [{}], "validation_error"),
        ("join-session", [{"sessionId": 123}], "validation_error"),
        ("join-session", [{"sessionId": "x"}, {"more": 1}], "validation_error"),
        ("chat:message", [{"content": ""}], "validation_error"),
        ("tool:execute", [{"name": "read_file", "args": "x"}], "validation_error"),
        ("auth", [{"token": "again"}], "bad_request"),
        ("join-session", [{"sessionId": b"\x00binary"}], "bad_request"),
    ],
)
async def test_a_bad_event_payload_answers_error_and_the_socket_stays_open(
    live_pool, sio, user, event, args, code
):
    socket = await sio(live_pool(), await token_for(user))

    await socket.client.emit(event, tuple(args) if len(args) > 1 else args[0])
    error = await socket.expect("error")

    assert error["code"] == code
    assert error["message"]
    assert error["event"] == event
    await socket.still_open()


@pytest.mark.parametrize(
    ("packet", "code"),
    [("2garbage", "bad_request"), ("2[]", "bad_request"), ("2[1]", "validation_error")],
)
async def test_a_malformed_packet_answers_error_and_the_socket_stays_open(
    live_pool, sio, user, packet, code
):
    socket = await sio(live_pool(), await token_for(user))

    # Straight onto Engine.IO: no Socket.IO client would write these.
    await socket.client.eio.send(packet)

    assert (await socket.expect("error"))["code"] == code
    await socket.still_open()


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_an_event_over_the_frame_limit_is_refused_and_the_socket_stays_open(
    live_pool, sio, user, transports
):
    socket = await sio(live_pool(), await token_for(user), transports=transports)

    answer = await socket.call(
        "chat:message", {"content": "x" * (settings.WS_MAX_FRAME_BYTES + 1000)}
    )

    assert answer["error"]["code"] == "payload_too_large"
    assert (await socket.expect("error"))["code"] == "payload_too_large"
    await socket.still_open()


async def test_events_spend_the_users_rate_limit_shared_with_rest(live_pool, sio, user):
    base = live_pool()
    token = await token_for(user)
    socket = await sio(base, token)

    for _ in range(settings.RATE_LIMIT_MAX_REQUESTS):
        assert (await socket.call("leave-session"))["error"]["code"] == "bad_request"
    limited = await socket.call("leave-session")

    assert limited["error"]["code"] == "rate_limited"
    assert limited["error"]["details"]["retryAfter"] >= 1
    status, _, _ = await asyncio.to_thread(http, "GET", f"{base}/api/v1/sessions", token=token)
    assert status == 429


async def test_leaving_and_disconnecting_free_the_session_membership(live_pool, sio, user):
    session = await new_session(user)
    socket = await sio(live_pool(), await token_for(user))
    await socket.call("join-session", {"sessionId": str(session.id)})
    assert await members(session) == 1

    await socket.client.disconnect()

    await wait_for(lambda: members_are(session, 0), "the socket's membership to be freed")


async def members_are(session, count: int) -> bool:
    return await members(session) == count


def test_cors_admits_cors_origin_and_the_servers_own_pages_only(live_pool):
    base = live_pool()
    handshake = f"{base}/socket.io/?EIO=4&transport=polling"
    allowed = "*" if cors.CORS_ALLOW_ALL_ORIGINS else cors.CORS_ALLOWED_ORIGINS[0]
    origin = "http://localhost:3001" if allowed == "*" else allowed

    status, headers, _ = http("GET", handshake, headers={"Origin": origin})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == origin
    assert "Access-Control-Allow-Credentials" not in headers

    status, headers, _ = http("GET", handshake, headers={"Origin": base})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == base

    if allowed != "*":
        status, headers, _ = http("GET", handshake, headers={"Origin": "http://evil.example"})
        assert status == 400
        assert "Access-Control-Allow-Origin" not in headers


def test_the_socket_io_path_answers_the_engine_io_handshake(live_pool):
    status, _, body = http("GET", f"{live_pool()}/socket.io/?EIO=4&transport=polling")

    assert status == 200
    handshake = json.loads(body[1:])
    assert body[0] == "0"
    assert handshake["upgrades"] == ["websocket"]
    assert handshake["maxPayload"] >= settings.WS_MAX_FRAME_BYTES


# Two processes sharing Redis.


async def test_a_socket_on_one_server_hears_a_turn_started_on_another_and_confirms_it(
    live_pool, sio, user, fake_gemini
):
    session = await new_session(user)
    token = await token_for(user)
    watcher = await sio(live_pool("a"), token, transports=["polling"])
    sender = await sio(live_pool("b"), token, transports=["websocket"])
    for socket in (watcher, sender):
        await socket.call("join-session", {"sessionId": str(session.id)})
        await socket.expect("session:joined")
    write = {"name": "write_file", "args": {"file_path": "cross.txt", "content": "from A"}}

    await sender.emit(
        "chat:message", {"content": scripted({"text": "Across", "calls": [write]}, {"text": "ok"})}
    )
    before = await watcher.until("gemini:tool-confirmation")
    # The turn runs on B; the confirmation comes from the socket on A.
    await watcher.emit(
        "tool:confirm", {"callId": before[-1][1]["callId"], "outcome": "proceed_once"}
    )
    after = await watcher.until("gemini:done")
    sent_side = await sender.until("gemini:done")

    stream = gemini(before + after)
    assert [name for name, _ in stream] == CONFIRMED_TOOL_TURN
    assert gemini(sent_side) == stream
    assert (session_workspace(session) / "cross.txt").read_text() == "from A"


async def test_an_admin_on_one_server_hears_monitoring_events_from_both(
    live_pool, sio, admin_user, user
):
    server_a, server_b = live_pool("a"), live_pool("b")
    admin = await sio(server_a, await token_for(admin_user))
    await admin.call("monitoring:subscribe", {"types": ["session"]})
    await admin.expect("monitoring:subscribed")
    token = await token_for(user)

    created = []
    for server in (server_a, server_b):
        status, _, body = await asyncio.to_thread(
            http, "POST", f"{server}/api/v1/sessions", token=token, body={"config": {}}
        )
        assert status == 201
        created.append(body["sessionId"])
    events = [await admin.expect("monitoring:event") for _ in created]

    assert [(e["type"], e["action"], e["sessionId"]) for e in events] == [
        ("session", "create", session_id) for session_id in created
    ]


async def test_joining_while_a_background_turn_runs_replays_it_from_its_start(
    live_pool, sio, user, fake_gemini
):
    """issue 11: a Socket.IO join-session replays a running turn, as /ws/ does (one protocol)."""
    import aiohttp

    session = await new_session(user)
    token = await token_for(user)
    words = ["one ", "two ", "three ", "four"]
    base = live_pool()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/api/v1/chat/message",
            json={
                "sessionId": str(session.id),
                "message": scripted({"text": words, "delay": 0.4}),
                "background": True,
            },
            headers={"Authorization": f"Bearer {token}"},
        ) as started,
    ):
        assert started.status == 200
        async for line in started.content:
            if b'"type":"content"' in line:
                break  # the client goes away after the first word; the turn goes on

    socket = await sio(base, token)
    await socket.emit("join-session", {"sessionId": str(session.id)})
    events = await socket.until("gemini:done", timeout=30)

    assert events[0][0] == "session:joined"
    texts = [data["text"] for name, data in events if name == "gemini:content"]
    assert "".join(texts) == "".join(words)
    assert events[-1][1]["finishReason"] == "STOP"
