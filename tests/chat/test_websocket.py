"""The WebSocket API (/ws/) in-process: auth, sessions, the chat stream to every tab, tools, monitoring, bad input."""

import asyncio
import json
import time
from contextlib import suppress
from datetime import timedelta
from urllib.parse import quote

import pytest
from asgiref.sync import sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from accounts.services import api_key_revoke, token_pair_issue, user_update
from chat import consumers
from gemini_server.asgi import application
from monitoring.services import event_record
from sessions_app.models import Session
from sessions_app.services import session_create
from sessions_app.workspace import session_workspace
from tests.asgi_http import asgi_request

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10


def scripted(*steps, prompt: str = "Do the scripted thing") -> str:
    """A message that tells the fake upstream exactly what to answer, step by step."""
    return f"{prompt} [[fake:{json.dumps(list(steps))}]]"


class SocketClosed(AssertionError):
    def __init__(self, code):
        super().__init__(f"the server closed the socket with code {code}")
        self.code = code


class Socket:
    """One browser tab's socket: JSON frames `{"event", "data"}` both ways."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.communicator = communicator

    async def send(self, event: str, data: dict | None = None) -> None:
        await self.communicator.send_json_to({"event": event, "data": data or {}})

    async def send_text(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def frame(self, timeout: float = TIMEOUT) -> dict:
        output = await self.communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            raise SocketClosed(output.get("code"))
        assert output["type"] == "websocket.send", output
        return json.loads(output["text"])

    async def expect(self, event: str, timeout: float = TIMEOUT) -> dict:
        """The next frame, which must be `event`; returns its data."""
        frame = await self.frame(timeout)
        assert frame["event"] == event, frame
        return frame["data"]

    async def until(self, event: str, timeout: float = TIMEOUT) -> list[dict]:
        """Every frame up to and including the first `event`."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.frame(max(0.01, deadline - time.monotonic()))
            frames.append(frame)
            if frame["event"] == event:
                return frames

    async def close_code(self, timeout: float = TIMEOUT) -> int:
        """Waits for the server to close the socket (no other frame in between)."""
        output = await self.communicator.receive_output(timeout)
        assert output["type"] == "websocket.close", output
        return output.get("code")

    async def still_open(self) -> None:
        """The socket answers a ping: nothing else was waiting, and it was not closed."""
        await self.send("ping")
        assert await self.expect("pong") == {}


def gemini(frames: list[dict]) -> list[dict]:
    return [frame for frame in frames if frame["event"].startswith("gemini:")]


def names(frames: list[dict]) -> list[str]:
    return [frame["event"] for frame in frames]


@pytest.fixture(autouse=True)
async def _channel_layer_per_test():
    """A fresh layer for each test's event loop: a Redis layer's receive lock belongs to one loop."""
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    yield
    layer = channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    if hasattr(layer, "close_pools"):
        await layer.close_pools()


@pytest.fixture(autouse=True)
async def _turns_finish():
    """Turns started by a test end before its database is emptied."""
    yield
    loop = asyncio.get_running_loop()
    relays = {t for t in consumers._RELAYS | consumers._TOOL_RUNS if t.get_loop() is loop}
    if relays:
        _, pending = await asyncio.wait(relays, timeout=TIMEOUT)
        for relay in pending:
            relay.cancel()
        assert not pending, "a turn was still running when the test ended"


@pytest.fixture
async def connect():
    """`connect(token=None)` opens a socket to the real ASGI application; all close afterwards."""
    opened = []

    async def open_socket(token: str | None = None) -> Socket:
        path = "/ws/" + (f"?token={quote(token)}" if token is not None else "")
        communicator = WebsocketCommunicator(application, path)
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        opened.append(communicator)
        return Socket(communicator)

    yield open_socket
    for communicator in opened:
        # A socket the test already closed, or one whose receive timed out, is gone already.
        with suppress(Exception, asyncio.CancelledError):
            await communicator.disconnect(timeout=TIMEOUT)


async def token_for(user) -> str:
    pair = await sync_to_async(token_pair_issue)(user=user)
    return pair["accessToken"]


async def new_session(owner, **config) -> Session:
    config.setdefault("approvalMode", "default")
    return await sync_to_async(session_create)(user=owner, config=config)


@pytest.fixture
def signed_in(connect):
    """`signed_in(user)`: an authenticated socket of that user (JWT in the URL)."""

    async def open_for(user) -> Socket:
        socket = await connect(await token_for(user))
        authenticated = await socket.expect("authenticated")
        assert authenticated["user"]["email"] == user.email
        return socket

    return open_for


@pytest.fixture
def joined(signed_in):
    """`joined(user, session)`: an authenticated socket joined to the session."""

    async def open_joined(user, session) -> Socket:
        socket = await signed_in(user)
        await socket.send("join-session", {"sessionId": str(session.id)})
        data = await socket.expect("session:joined")
        assert data["sessionId"] == str(session.id)
        return socket

    return open_joined


async def members(session) -> int:
    return await sync_to_async(cache.get)(f"ws-members:{session.id}", 0)


async def wait_for(predicate, timeout: float = TIMEOUT, what: str = "a condition"):
    """Polls an async predicate until it is true (the turn runs on its own)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def history(session, token: str) -> list[dict]:
    response = await asgi_request(
        "GET", f"/api/v1/chat/history?sessionId={session.id}", token=token
    )
    assert response.status == 200, response.body
    return response.json()["history"]


async def turn_released(session) -> bool:
    return (await Session.objects.aget(pk=session.id)).turn_id is None


# Authentication.


async def test_jwt_in_the_url_authenticates(connect, user):
    socket = await connect(await token_for(user))

    data = await socket.expect("authenticated")

    assert data["user"]["id"] == str(user.id)
    assert data["user"]["role"] == "engineer"
    await socket.still_open()


async def test_the_path_without_its_slash_is_the_same_socket(user):
    communicator = WebsocketCommunicator(application, f"/ws?token={await token_for(user)}")
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    try:
        assert connected
        assert (await Socket(communicator).expect("authenticated"))["user"]["email"] == user.email
    finally:
        await communicator.disconnect()


async def test_api_key_in_the_url_authenticates(connect, user, api_key):
    _, raw = api_key

    socket = await connect(raw)

    assert (await socket.expect("authenticated"))["user"]["email"] == user.email
    session = await new_session(user)
    await socket.send("join-session", {"sessionId": str(session.id)})
    assert (await socket.expect("session:joined"))["sessionId"] == str(session.id)


async def test_first_auth_frame_authenticates(connect, user, api_key):
    jwt_socket = await connect()
    await jwt_socket.send("auth", {"token": await token_for(user)})
    assert (await jwt_socket.expect("authenticated"))["user"]["email"] == user.email

    key_socket = await connect()
    await key_socket.send("auth", {"token": api_key[1]})
    assert (await key_socket.expect("authenticated"))["user"]["email"] == user.email
    await key_socket.still_open()


async def test_a_second_auth_frame_is_refused_without_closing(signed_in, user):
    socket = await signed_in(user)

    await socket.send("auth", {"token": await token_for(user)})

    assert (await socket.expect("error"))["code"] == "bad_request"
    await socket.still_open()


async def test_actions_before_auth_answer_unauthenticated_and_keep_the_socket(connect, user):
    socket = await connect()
    session = await new_session(user)

    await socket.send("join-session", {"sessionId": str(session.id)})
    error = await socket.expect("error")

    assert error["code"] == "unauthenticated"
    await socket.send("auth", {"token": await token_for(user)})
    await socket.expect("authenticated")
    await socket.send("join-session", {"sessionId": str(session.id)})
    await socket.expect("session:joined")


@pytest.mark.parametrize("token", ["not-a-jwt", "gsk_deadbeef0000.wrong-secret", "gsk_malformed"])
async def test_bad_token_in_the_url_closes_4401(connect, token):
    socket = await connect(token)

    assert await socket.close_code() == 4401


async def test_bad_token_in_the_auth_frame_closes_4401(connect):
    socket = await connect()

    await socket.send("auth", {"token": "not-a-jwt"})

    assert await socket.close_code() == 4401


async def test_auth_frame_without_token_closes_4401(connect):
    socket = await connect()

    await socket.send("auth", {})

    assert await socket.close_code() == 4401


async def test_no_auth_within_the_deadline_closes_4401(connect, settings):
    settings.WS_AUTH_TIMEOUT_SECONDS = 0.3
    socket = await connect()
    started = time.monotonic()

    assert await socket.close_code(timeout=5) == 4401
    assert time.monotonic() - started < 3


async def test_authenticated_socket_outlives_the_auth_deadline(connect, signed_in, user, settings):
    settings.WS_AUTH_TIMEOUT_SECONDS = 0.3
    by_frame = await connect()
    await by_frame.send("auth", {"token": await token_for(user)})
    await by_frame.expect("authenticated")
    by_url = await signed_in(user)
    silent = await connect()

    # Once the silent socket is closed, the deadline has passed for the others too.
    assert await silent.close_code(timeout=5) == 4401

    await by_frame.still_open()
    await by_url.still_open()


async def test_deactivated_user_is_refused_at_connect(connect, user, api_key):
    token = await token_for(user)
    await User.objects.filter(pk=user.pk).aupdate(is_active=False)

    jwt_socket = await connect(token)
    assert await jwt_socket.close_code() == 4401
    key_socket = await connect(api_key[1])
    assert await key_socket.close_code() == 4401


async def test_revoked_key_is_refused_at_connect(connect, user, api_key):
    key, raw = api_key
    await sync_to_async(api_key_revoke)(key=key, actor=user)

    socket = await connect(raw)

    assert await socket.close_code() == 4401


async def test_revoked_key_loses_an_open_socket_at_its_next_frame(connect, user, api_key):
    key, raw = api_key
    socket = await connect(raw)
    await socket.expect("authenticated")
    session = await new_session(user)

    await sync_to_async(api_key_revoke)(key=key, actor=user)
    await socket.send("join-session", {"sessionId": str(session.id)})

    assert await socket.close_code() == 4401


async def test_revoked_key_loses_an_open_socket_even_on_ping(connect, user, api_key):
    key, raw = api_key
    socket = await connect(raw)
    await socket.expect("authenticated")

    await sync_to_async(api_key_revoke)(key=key, actor=user)
    await socket.send("ping")

    assert await socket.close_code() == 4401


async def test_an_expired_jwt_loses_an_open_socket(connect, user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=2))
    socket = await connect(str(token))
    await socket.expect("authenticated")
    await socket.still_open()

    # Keep using the socket; the first frame after the token's expiry closes it.
    deadline = time.monotonic() + 10
    while True:
        await socket.send("ping")
        output = await socket.communicator.receive_output(TIMEOUT)
        if output["type"] == "websocket.close":
            break
        assert json.loads(output["text"])["event"] == "pong"
        assert time.monotonic() < deadline, "the socket outlived its token"
        await asyncio.sleep(0.2)

    assert output["code"] == 4401
    assert time.time() >= token["exp"]


async def test_deactivated_user_loses_an_open_socket_at_once(signed_in, user, admin_user):
    """Deactivation (the API, the admin console) is announced: the socket closes without a frame."""
    socket = await signed_in(user)
    await socket.still_open()

    await sync_to_async(user_update)(user=user, actor=admin_user, is_active=False)

    assert await socket.close_code() == 4401


async def test_revoked_key_closes_an_idle_socket_at_once(connect, user, api_key):
    """Credentials are cached on the socket, and a revocation still closes it at once."""
    key, raw = api_key
    socket = await connect(raw)
    await socket.expect("authenticated")
    await socket.still_open()

    await sync_to_async(api_key_revoke)(key=key, actor=user)

    assert await socket.close_code() == 4401


# Sessions.


async def test_join_session_answers_with_the_session(signed_in, user):
    session = await new_session(user, title="My project")
    socket = await signed_in(user)

    await socket.send("join-session", {"sessionId": str(session.id)})
    data = await socket.expect("session:joined")

    assert data["sessionId"] == str(session.id)
    assert data["session"]["id"] == str(session.id)
    assert data["session"]["userId"] == str(user.id)
    assert data["session"]["title"] == "My project"
    assert data["session"]["workspaceDir"] == "/workspace"
    assert data["session"]["messageCount"] == 0
    assert await members(session) == 1


async def test_joining_another_users_session_is_not_found(signed_in, user, other_user):
    theirs = await new_session(other_user)
    socket = await signed_in(user)

    await socket.send("join-session", {"sessionId": str(theirs.id)})
    error = await socket.expect("error")

    assert error["code"] == "not_found"
    assert error["event"] == "join-session"
    assert await members(theirs) == 0
    await socket.send("join-session", {"sessionId": "not-a-uuid"})
    assert (await socket.expect("error"))["code"] == "not_found"
    await socket.still_open()


async def test_leave_session_stops_chat_and_frees_the_membership(joined, user):
    session = await new_session(user)
    socket = await joined(user, session)
    assert await members(session) == 1

    await socket.send("leave-session")
    left = await socket.expect("session:left")

    assert left == {"sessionId": str(session.id)}
    assert await members(session) == 0
    await socket.send("chat:message", {"content": "hello"})
    error = await socket.expect("error")
    assert error["code"] == "bad_request"
    assert "join" in error["message"].lower()
    await socket.send("leave-session")
    assert (await socket.expect("error"))["code"] == "bad_request"


async def test_joining_another_session_leaves_the_first(joined, user):
    first, second = await new_session(user), await new_session(user)
    socket = await joined(user, first)

    await socket.send("join-session", {"sessionId": str(second.id)})

    assert (await socket.expect("session:joined"))["sessionId"] == str(second.id)
    assert (await members(first), await members(second)) == (0, 1)


async def test_an_admin_may_watch_a_users_session_but_not_chat_in_it(
    joined, admin_user, user, fake_gemini
):
    session = await new_session(user)
    owner = await joined(user, session)
    admin = await joined(admin_user, session)

    await admin.send("chat:message", {"content": "hijack"})
    assert (await admin.expect("error"))["code"] == "not_found"
    await owner.send("chat:message", {"content": scripted({"text": "watched"})})

    watched = gemini(await admin.until("gemini:done"))
    assert [f["data"]["text"] for f in watched if f["event"] == "gemini:content"] == ["watched"]
    await owner.until("gemini:done")


async def test_chat_in_an_expired_session_is_gone(joined, user, fake_gemini):
    session = await new_session(user)
    socket = await joined(user, session)
    await Session.objects.filter(pk=session.id).aupdate(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    await socket.send("chat:message", {"content": "still there?"})

    assert (await socket.expect("error"))["code"] == "gone"
    assert fake_gemini.requests == []


async def test_disconnect_frees_the_membership(connect, user):
    session = await new_session(user)
    socket = await connect(await token_for(user))
    await socket.expect("authenticated")
    await socket.send("join-session", {"sessionId": str(session.id)})
    await socket.expect("session:joined")
    assert await members(session) == 1

    await socket.communicator.disconnect()

    assert await members(session) == 0


# Chat.


async def test_chat_stream_reaches_every_tab_and_a_confirmation_from_the_second_tab_runs_the_tool(
    joined, user, fake_gemini
):
    session = await new_session(user)
    first = await joined(user, session)
    second = await joined(user, session)
    write = {"name": "write_file", "args": {"file_path": "a.txt", "content": "from the tab\n"}}

    await first.send(
        "chat:message",
        {
            "content": scripted(
                {
                    "thought": "**Planning** I will write the file.",
                    "text": ["Let me ", "write it."],
                    "calls": [write],
                },
                {"text": ["Wr", "ote a.txt."]},
            )
        },
    )
    first_frames = await first.until("gemini:tool-confirmation")
    second_frames = await second.until("gemini:tool-confirmation")
    confirmation = second_frames[-1]["data"]
    assert confirmation["name"] == "write_file"
    assert not (session_workspace(session) / "a.txt").exists()

    await second.send("tool:confirm", {"callId": confirmation["callId"], "outcome": "proceed_once"})
    first_frames += await first.until("gemini:done")
    second_frames += await second.until("gemini:done")

    expected = [
        "gemini:thought",
        "gemini:content",
        "gemini:content",
        "gemini:tool-request",
        "gemini:tool-confirmation",
        "gemini:tool-result",
        "gemini:content",
        "gemini:content",
        "gemini:usage",
        "gemini:done",
    ]
    for frames in (first_frames, second_frames):
        stream = gemini(frames)
        assert names(stream) == expected
        assert all(frame["data"]["sessionId"] == str(session.id) for frame in stream)
        assert [f["data"]["text"] for f in stream if f["event"] == "gemini:content"] == [
            "Let me ",
            "write it.",
            "Wr",
            "ote a.txt.",
        ]
        assert stream[0]["data"]["subject"] == "Planning"
        request, confirm, result = stream[3]["data"], stream[4]["data"], stream[5]["data"]
        assert request["name"] == "write_file"
        assert request["args"] == write["args"]
        assert confirm["callId"] == request["callId"] == result["callId"]
        assert result["status"] == "success"
        usage = stream[-2]["data"]
        assert usage["totalTokens"] > 0
        assert usage["totalTokens"] >= usage["promptTokens"] + usage["completionTokens"]
        assert stream[-1]["data"]["finishReason"] == "STOP"
    # Only the tab that confirmed is told its confirmation went through.
    assert "tool:confirmed" in names(second_frames)
    assert "tool:confirmed" not in names(first_frames)
    assert (session_workspace(session) / "a.txt").read_text() == "from the tab\n"
    await wait_for(lambda: turn_released(session), what="the turn to release the session")


async def test_confirmation_over_rest_reaches_a_turn_started_over_websocket(
    joined, user, fake_gemini
):
    session = await new_session(user)
    socket = await joined(user, session)
    write = {"name": "write_file", "args": {"file_path": "rest.txt", "content": "via REST"}}

    await socket.send("chat:message", {"content": scripted({"calls": [write]}, {"text": "ok"})})
    confirmation = (await socket.until("gemini:tool-confirmation"))[-1]["data"]
    response = await asgi_request(
        "POST",
        "/api/v1/chat/confirm",
        body={
            "sessionId": str(session.id),
            "callId": confirmation["callId"],
            "outcome": "proceed_once",
        },
        token=await token_for(user),
    )
    assert response.status == 200, response.body
    frames = gemini(await socket.until("gemini:done"))

    assert names(frames)[:1] == ["gemini:tool-result"]
    assert frames[0]["data"]["status"] == "success"
    assert frames[-1]["data"]["finishReason"] == "STOP"
    assert (session_workspace(session) / "rest.txt").read_text() == "via REST"


async def test_cancel_confirmation_does_not_run_the_tool(joined, user, fake_gemini):
    session = await new_session(user)
    socket = await joined(user, session)
    write = {"name": "write_file", "args": {"file_path": "no.txt", "content": "x"}}

    await socket.send("chat:message", {"content": scripted({"calls": [write]}, {"text": "ok"})})
    confirmation = (await socket.until("gemini:tool-confirmation"))[-1]["data"]
    await socket.send("tool:confirm", {"callId": confirmation["callId"], "outcome": "cancel"})
    frames = gemini(await socket.until("gemini:done"))

    result = next(f["data"] for f in frames if f["event"] == "gemini:tool-result")
    assert result["status"] == "cancelled"
    assert not (session_workspace(session) / "no.txt").exists()


async def test_confirming_an_unknown_call_is_an_error(joined, user, fake_gemini):
    session = await new_session(user)
    socket = await joined(user, session)
    write = {"name": "write_file", "args": {"file_path": "b.txt", "content": "x"}}
    await socket.send("chat:message", {"content": scripted({"calls": [write]}, {"text": "ok"})})
    confirmation = (await socket.until("gemini:tool-confirmation"))[-1]["data"]

    await socket.send("tool:confirm", {"callId": "no-such-call", "outcome": "proceed_once"})
    assert (await socket.expect("error"))["code"] == "not_found"
    await socket.send("tool:confirm", {"callId": confirmation["callId"], "outcome": "maybe"})
    assert (await socket.expect("error"))["code"] == "validation_error"

    await socket.send("tool:confirm", {"callId": confirmation["callId"], "outcome": "cancel"})
    await socket.until("gemini:done")


async def test_chat_cancel_stops_a_hanging_turn_and_keeps_the_partial_answer(
    joined, user, fake_gemini
):
    session = await new_session(user)
    socket = await joined(user, session)

    await socket.send(
        "chat:message",
        {"content": scripted({"text": ["Partial ", "answer"], "hang": True}, prompt="Go")},
    )
    contents = []
    while len(contents) < 2:
        contents.append(await socket.expect("gemini:content"))
    await socket.send("chat:cancel")
    frames = await socket.until("gemini:done")

    assert "chat:cancelled" in names(frames)
    assert frames[-1]["data"]["finishReason"] == "CANCELLED"
    assert await asyncio.to_thread(fake_gemini.wait_for_stream_status, "disconnected", 5)
    await wait_for(lambda: turn_released(session), what="the turn to release the session")
    stored = await history(session, await token_for(user))
    assert [m["role"] for m in stored] == ["user", "model"]
    assert stored[0]["text"].startswith("Go")
    assert stored[1]["text"] == "Partial answer"


async def test_chat_cancel_without_a_turn_is_a_conflict(joined, user):
    session = await new_session(user)
    socket = await joined(user, session)

    await socket.send("chat:cancel")

    assert (await socket.expect("error"))["code"] == "conflict"


async def test_second_message_while_a_turn_runs_is_a_conflict(joined, user, fake_gemini):
    session = await new_session(user)
    socket = await joined(user, session)
    await socket.send("chat:message", {"content": scripted({"text": ["Working"], "hang": True})})
    await socket.expect("gemini:content")

    await socket.send("chat:message", {"content": "and another thing"})
    error = await socket.expect("error")

    assert error["code"] == "conflict"
    assert error["event"] == "chat:message"
    await socket.send("chat:cancel")
    await socket.until("gemini:done")
    stored = await history(session, await token_for(user))
    assert "and another thing" not in [m["text"] for m in stored]


async def test_a_tab_dropping_mid_turn_does_not_stop_the_turn_for_the_other(
    joined, user, fake_gemini
):
    session = await new_session(user)
    leaving = await joined(user, session)
    staying = await joined(user, session)

    await leaving.send(
        "chat:message", {"content": scripted({"text": ["one ", "two ", "three"], "delay": 0.3})}
    )
    await leaving.expect("gemini:content")
    await leaving.communicator.disconnect()
    frames = gemini(await staying.until("gemini:done"))

    assert [f["data"]["text"] for f in frames if f["event"] == "gemini:content"] == [
        "one ",
        "two ",
        "three",
    ]
    assert frames[-1]["data"]["finishReason"] == "STOP"
    assert await members(session) == 1
    await wait_for(lambda: turn_released(session), what="the turn to release the session")
    stored = await history(session, await token_for(user))
    assert stored[-1]["text"] == "one two three"


async def test_the_last_tab_leaving_cancels_the_turn_and_keeps_its_partial_answer(
    joined, user, fake_gemini
):
    session = await new_session(user)
    socket = await joined(user, session)
    await socket.send("chat:message", {"content": scripted({"text": ["Half an "], "hang": True})})
    assert (await socket.expect("gemini:content"))["text"] == "Half an "

    await socket.communicator.disconnect()

    assert await members(session) == 0
    assert await asyncio.to_thread(fake_gemini.wait_for_stream_status, "disconnected", 5)
    await wait_for(lambda: turn_released(session), what="the turn to be cancelled")
    stored = await history(session, await token_for(user))
    assert [m["role"] for m in stored] == ["user", "model"]
    assert stored[1]["text"] == "Half an "


async def test_leaving_the_session_as_the_last_tab_cancels_the_turn(joined, user, fake_gemini):
    session = await new_session(user)
    socket = await joined(user, session)
    await socket.send("chat:message", {"content": scripted({"text": ["Started"], "hang": True})})
    await socket.expect("gemini:content")

    await socket.send("leave-session")

    await socket.expect("session:left")
    await wait_for(lambda: turn_released(session), what="the turn to be cancelled")
    assert await asyncio.to_thread(fake_gemini.wait_for_stream_status, "disconnected", 5)
    await socket.still_open()


async def test_upstream_failure_ends_with_gemini_error_then_done(joined, user, fake_gemini):
    session = await new_session(user)
    socket = await joined(user, session)

    await socket.send("chat:message", {"content": scripted({"error": {"code": 400}})})
    frames = gemini(await socket.until("gemini:done"))

    assert names(frames) == ["gemini:error", "gemini:done"]
    assert frames[0]["data"]["code"] == "upstream_error"
    assert frames[-1]["data"]["finishReason"] == "ERROR"


# Tools.


async def test_tool_execute_reads_an_uploaded_file(joined, user):
    session = await new_session(user)
    token = await token_for(user)
    upload = await asgi_request(
        "PUT",
        f"/api/v1/sessions/{session.id}/files/content?path=docs/notes.txt",
        body=b"first line\nsecond line\n",
        token=token,
    )
    assert upload.status in (200, 201), upload.body
    socket = await joined(user, session)

    # As the seed's README writes it: camelCase name, `path`, an absolute /workspace path.
    await socket.send(
        "tool:execute", {"name": "readFile", "args": {"path": "/workspace/docs/notes.txt"}}
    )
    start = await socket.expect("tool:execution-start")
    complete = await socket.expect("tool:execution-complete")

    assert start["name"] == complete["name"] == "read_file"
    assert start["args"] == {"path": "/workspace/docs/notes.txt"}
    assert start["callId"] == complete["callId"]
    assert "first line\nsecond line" in complete["result"]
    assert complete["durationMs"] >= 0


async def test_tool_execute_of_a_missing_file_is_an_execution_error(joined, user):
    session = await new_session(user)
    socket = await joined(user, session)

    await socket.send("tool:execute", {"name": "read_file", "args": {"file_path": "missing.txt"}})
    start = await socket.expect("tool:execution-start")
    failure = await socket.expect("tool:execution-error")

    assert failure["callId"] == start["callId"]
    assert failure["name"] == "read_file"
    assert "missing.txt" in failure["error"]
    await socket.still_open()


async def test_tool_execute_of_an_unknown_tool_is_not_found_without_a_start(joined, user):
    session = await new_session(user)
    socket = await joined(user, session)

    await socket.send("tool:execute", {"name": "launch_rockets", "args": {}})
    error = await socket.expect("error")

    assert error["code"] == "not_found"
    await socket.still_open()


async def test_a_long_tool_run_does_not_hold_up_the_socket(joined, user, settings):
    settings.SHELL_SANDBOX = "none"
    session = await new_session(user)
    socket = await joined(user, session)

    await socket.send(
        "tool:execute", {"name": "run_shell_command", "args": {"command": "sleep 1; echo slept"}}
    )
    start = await socket.expect("tool:execution-start")
    await socket.send("ping")

    assert await socket.expect("pong") == {}
    complete = await socket.expect("tool:execution-complete")
    assert complete["callId"] == start["callId"]
    assert "slept" in complete["result"]


async def test_tool_execute_writes_without_asking(joined, user):
    session = await new_session(user)
    socket = await joined(user, session)

    await socket.send(
        "tool:execute", {"name": "writeFile", "args": {"path": "w.txt", "content": "direct"}}
    )
    await socket.expect("tool:execution-start")
    await socket.expect("tool:execution-complete")

    assert (session_workspace(session) / "w.txt").read_text() == "direct"


async def test_viewer_cannot_chat_or_execute(joined, viewer, fake_gemini):
    session = await new_session(viewer)
    socket = await joined(viewer, session)

    await socket.send("chat:message", {"content": "hello"})
    chat_error = await socket.expect("error")
    await socket.send("tool:execute", {"name": "read_file", "args": {"file_path": "x"}})
    tool_error = await socket.expect("error")
    await socket.send("tool:confirm", {"callId": "x", "outcome": "cancel"})
    confirm_error = await socket.expect("error")

    assert chat_error["code"] == tool_error["code"] == confirm_error["code"] == "forbidden"
    assert fake_gemini.requests == []
    assert await history(session, await token_for(viewer)) == []
    await socket.still_open()


# Monitoring.


async def test_admin_receives_monitoring_events_until_unsubscribed(signed_in, admin_user, user):
    watching = await signed_in(admin_user)
    other = await signed_in(admin_user)
    await watching.send("monitoring:subscribe")
    assert (await watching.expect("monitoring:subscribed"))["types"] == []
    await other.send("monitoring:subscribe", {"types": ["session"]})
    assert (await other.expect("monitoring:subscribed"))["types"] == ["session"]

    created = await new_session(user)
    event = await watching.expect("monitoring:event")

    assert event["type"] == "session"
    assert event["action"] == "create"
    assert event["sessionId"] == str(created.id)
    assert event["userEmail"] == user.email
    assert (await other.expect("monitoring:event"))["id"] == event["id"]

    await watching.send("monitoring:unsubscribe")
    await watching.expect("monitoring:unsubscribed")
    await sync_to_async(event_record)(type="session", action="extend", user=user)
    assert (await other.expect("monitoring:event"))["action"] == "extend"
    # The unsubscribed socket got nothing: its next frame is the answer to its ping.
    await watching.still_open()


async def test_an_admin_demoted_while_subscribed_stops_receiving_events(
    signed_in, admin_user, user
):
    socket = await signed_in(admin_user)
    await socket.send("monitoring:subscribe")
    await socket.expect("monitoring:subscribed")

    # Through the service, as the API and the admin console do: the change is announced.
    await sync_to_async(user_update)(user=admin_user, actor=admin_user, role="engineer")
    await sync_to_async(event_record)(type="session", action="create", user=user)

    error = (await socket.until("error"))[-1]["data"]
    assert error["code"] == "forbidden"
    await sync_to_async(event_record)(type="session", action="extend", user=user)
    await socket.still_open()


async def test_monitoring_subscription_filters_by_type(signed_in, admin_user, user):
    socket = await signed_in(admin_user)
    await socket.send("monitoring:subscribe", {"types": ["tool"]})
    await socket.expect("monitoring:subscribed")

    await sync_to_async(event_record)(type="session", action="create", user=user)
    await sync_to_async(event_record)(type="tool", action="call", user=user, data={"name": "x"})

    event = await socket.expect("monitoring:event")
    assert (event["type"], event["action"]) == ("tool", "call")


async def test_monitoring_subscribe_with_an_unknown_type_is_a_validation_error(
    signed_in, admin_user
):
    socket = await signed_in(admin_user)

    await socket.send("monitoring:subscribe", {"types": ["weather"]})

    assert (await socket.expect("error"))["code"] == "validation_error"


async def test_only_admins_may_subscribe_to_monitoring(signed_in, user, viewer):
    for member in (user, viewer):
        socket = await signed_in(member)
        await socket.send("monitoring:subscribe")
        error = await socket.expect("error")
        assert error["code"] == "forbidden"
        await sync_to_async(event_record)(type="session", action="create", user=member)
        await socket.still_open()


# Bad input.


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_request"),
        ("[1, 2, 3]", "validation_error"),
        ('"just a string"', "validation_error"),
        ('{"event": "teleport", "data": {}}', "bad_request"),
        ('{"data": {}}', "validation_error"),
        ('{"event": 42}', "validation_error"),
        ('{"event": "join-session", "data": []}', "validation_error"),
        ('{"event": "join-session", "data": {}}', "validation_error"),
        ('{"event": "join-session", "data": {"sessionId": 123}}', "validation_error"),
        ('{"event": "chat:message", "data": {"content": ""}}', "validation_error"),
        (
            '{"event": "tool:execute", "data": {"name": "read_file", "args": "x"}}',
            "validation_error",
        ),
    ],
)
async def test_bad_frames_answer_error_and_keep_the_socket(signed_in, user, frame, code):
    socket = await signed_in(user)

    await socket.send_text(frame)
    error = await socket.expect("error")

    assert error["code"] == code
    assert error["message"]
    await socket.still_open()


async def test_missing_and_wrong_fields_name_the_field(joined, user):
    session = await new_session(user)
    socket = await joined(user, session)

    await socket.send("chat:message", {})
    missing = await socket.expect("error")
    await socket.send("tool:confirm", {"callId": ["x"], "outcome": "cancel"})
    wrong = await socket.expect("error")

    assert missing["code"] == "validation_error"
    assert "content" in missing["details"]
    assert wrong["code"] == "validation_error"
    assert "callId" in wrong["details"]
    await socket.still_open()


async def test_binary_frames_are_refused(signed_in, user):
    socket = await signed_in(user)

    await socket.communicator.send_to(bytes_data=b'{"event": "ping"}')

    assert (await socket.expect("error"))["code"] == "bad_request"
    await socket.still_open()


async def test_frames_over_the_limit_are_refused(signed_in, user, settings):
    socket = await signed_in(user)
    padding = "x" * settings.WS_MAX_FRAME_BYTES

    await socket.send("chat:message", {"content": padding})
    error = await socket.expect("error")

    assert error["code"] == "payload_too_large"
    await socket.still_open()


async def test_too_many_messages_are_rate_limited(signed_in, user, settings):
    settings.RATE_LIMIT_MAX_REQUESTS = 3
    settings.RATE_LIMIT_WINDOW_SECONDS = 3600  # one fixed window for the whole test
    session = await new_session(user)
    socket = await signed_in(user)

    for _ in range(3):
        await socket.send("join-session", {"sessionId": str(session.id)})
        await socket.expect("session:joined")
    await socket.send("tool:execute", {"name": "list_directory", "args": {"dir_path": "."}})
    error = await socket.expect("error")

    assert error["code"] == "rate_limited"
    assert error["event"] == "tool:execute"
    assert error["details"]["retryAfter"] >= 1
    await socket.still_open()
    # One budget per user, shared with the REST API.
    rest = await asgi_request("GET", "/api/v1/sessions", token=await token_for(user))
    assert rest.status == 429
