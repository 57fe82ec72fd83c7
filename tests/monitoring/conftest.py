"""Fixtures for monitoring tests: the whole story of an engineer's day, driven over real HTTP."""

import asyncio
import json
from dataclasses import dataclass, field
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from accounts.services import token_pair_issue
from chat.models import Message
from monitoring.models import Event
from sessions_app.models import Session
from tests.asgi_http import asgi_request
from tests.chat.conftest import scripted
from tests.conftest import PASSWORD

WRONG_PASSWORD = "not-the-password-Zq81x"
# An action of each event type, for tests that need an event and do not care which.
TYPICAL_ACTION = {
    "chat": "user_message",
    "tool": "call",
    "session": "update",
    "error": "turn_error",
    "auth": "login",
}
WRITE = {"calls": [{"name": "write_file", "args": {"file_path": "out.txt", "content": "hi\n"}}]}


@dataclass
class Story:
    """What the story did, and what the audit trail must say about it."""

    engineer: object
    admin: object
    session_id: str = ""
    expired_session_id: str = ""
    secrets: dict = field(default_factory=dict)
    # (type, action, user email, session id or None), in the order they happened.
    expected: list = field(default_factory=list)
    chat: object = None


def _pending_call_id(session_id) -> str | None:
    """The id of the tool call the session's running turn waits on, if any."""
    from chat.turns.control import pending_call

    session = Session.objects.filter(pk=session_id).first()
    if session is None or session.turn_id is None:
        return None
    last = Message.objects.filter(session_id=session_id, role="model").order_by("-seq").first()
    for part in last.parts if last else []:
        call = part.get("functionCall")
        if call and pending_call(session=session, call_id=call["id"]):
            return call["id"]
    return None


async def chat_confirming(session_id, token, message, outcome="proceed_once"):
    """A chat turn whose tool confirmation is answered over REST, as another request would."""
    answers = []

    async def answer_when_asked():
        for _ in range(400):
            call_id = await sync_to_async(_pending_call_id)(session_id)
            if call_id:
                answers.append(
                    await asgi_request(
                        "POST",
                        "/api/v1/chat/confirm",
                        body={"sessionId": session_id, "callId": call_id, "outcome": outcome},
                        token=token,
                    )
                )
                return
            await asyncio.sleep(0.05)

    responder = asyncio.create_task(answer_when_asked())
    response = await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={"sessionId": session_id, "message": message},
        token=token,
    )
    await asyncio.wait_for(responder, 20)
    return response, answers


async def run_story(engineer, admin) -> Story:
    """An engineer's day through the public API; every step asserts that it worked."""
    story = Story(engineer=engineer, admin=admin)
    email = engineer.email
    expect = story.expected

    login = await asgi_request(
        "POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD}
    )
    assert login.status == 200, login.body
    token, refresh = login.json()["accessToken"], login.json()["refreshToken"]
    expect.append(("auth", "login", email, None))

    created_key = await asgi_request(
        "POST",
        "/api/v1/auth/api-key",
        body={"email": email, "password": PASSWORD, "name": "laptop"},
    )
    assert created_key.status == 201, created_key.body
    raw_key, key_id = created_key.json()["apiKey"], created_key.json()["id"]
    # Creating a key checks the password; only the key's creation is recorded, not a login.
    expect += [("auth", "api_key_create", email, None)]

    created = await asgi_request(
        "POST", "/api/v1/sessions", body={"config": {"title": "story"}}, token=token
    )
    assert created.status == 201, created.body
    session_id = story.session_id = created.json()["sessionId"]
    expect.append(("session", "create", email, session_id))

    # The engineer pastes credentials into the prompt: the trail must still not keep them.
    prompt = f"Deploy with {raw_key} and {token}"
    response, answers = await chat_confirming(
        session_id, token, scripted(WRITE, {"text": "Wrote it."}, prompt=prompt)
    )
    assert response.status == 200
    assert answers and answers[0].status == 200, answers
    kinds = [frame["type"] for frame in response.frames]
    assert "tool_confirmation" in kinds and kinds[-1] == "done", kinds
    story.chat = response
    expect += [
        ("chat", "user_message", email, session_id),
        ("chat", "model_response", email, session_id),
        # Recorded before it runs, and again with its outcome.
        ("tool", "call_start", email, session_id),
        ("tool", "call", email, session_id),
        ("chat", "model_response", email, session_id),
    ]

    failed = await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={"sessionId": session_id, "message": scripted({"error": {"code": 503}})},
        token=token,
    )
    assert [f["data"]["code"] for f in failed.frames if f["type"] == "error"] == [
        "upstream_unavailable"
    ]
    expect += [
        ("chat", "user_message", email, session_id),
        ("error", "upstream_failure", email, session_id),
    ]

    extended = await asgi_request(
        "PUT", f"/api/v1/sessions/{session_id}/extend", body={"hours": 2}, token=token
    )
    assert extended.status == 200, extended.body
    expect.append(("session", "extend", email, session_id))

    rotated = await asgi_request(
        "POST",
        f"/api/v1/auth/api-keys/{key_id}/rotate",
        body={"graceHours": 1},
        headers={"X-API-Key": raw_key},
    )
    assert rotated.status == 201, rotated.body
    new_key, new_key_id = rotated.json()["apiKey"], rotated.json()["id"]
    expect.append(("auth", "api_key_rotate", email, None))

    revoked = await asgi_request("DELETE", f"/api/v1/auth/api-keys/{new_key_id}", token=token)
    assert revoked.status == 204, revoked.body
    expect.append(("auth", "api_key_revoke", email, None))

    admin_token = (await sync_to_async(token_pair_issue)(user=admin))["accessToken"]
    renamed = await asgi_request(
        "PATCH", f"/api/v1/users/{engineer.id}", body={"name": "Renamed"}, token=admin_token
    )
    assert renamed.status == 200, renamed.body
    expect.append(("auth", "user_update", admin.email, None))

    refused = await asgi_request(
        "POST", "/api/v1/auth/login", body={"email": email, "password": WRONG_PASSWORD}
    )
    assert refused.status == 401
    assert refused.json()["error"]["code"] == "unauthenticated"
    expect.append(("auth", "login_failed", email, None))

    stale = await asgi_request("POST", "/api/v1/sessions", body={}, token=token)
    assert stale.status == 201, stale.body
    stale_id = story.expired_session_id = stale.json()["sessionId"]
    expect.append(("session", "create", email, stale_id))
    await sync_to_async(_expire_now)(stale_id)
    await sync_to_async(call_command)("cleanup_sessions", stdout=StringIO())
    expect.append(("session", "expire", email, stale_id))

    deleted = await asgi_request("DELETE", f"/api/v1/sessions/{session_id}", token=token)
    assert deleted.status == 204, deleted.body
    expect.append(("session", "delete", email, session_id))

    story.secrets = {
        "password": PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "api key": raw_key,
        "rotated api key": new_key,
        "api key secret": raw_key.split(".", 1)[1],
        "access token": token,
        "refresh token": refresh,
        "admin token": admin_token,
    }
    return story


def _expire_now(session_id) -> None:
    from django.utils import timezone

    Session.objects.filter(pk=session_id).update(expires_at=timezone.now())


def event_rows() -> list[dict]:
    """Every stored event, oldest first, as the columns an auditor reads."""
    return [
        {
            "id": str(event.uuid),
            "type": event.type,
            "action": event.action,
            "user_email": event.user_email,
            "user_id": str(event.user_id) if event.user_id else None,
            "session_id": str(event.session_id) if event.session_id else None,
            "data": event.data,
            "ip": event.ip,
        }
        for event in Event.objects.order_by("seq")
    ]


def as_tuples(rows: list[dict]) -> list[tuple]:
    return [(r["type"], r["action"], r["user_email"], r["session_id"]) for r in rows]


def secrets_found(rows: list[dict], secrets: dict) -> list[str]:
    text = json.dumps(rows)
    return [name for name, value in secrets.items() if value in text]


@pytest.fixture
def story_runner(user, admin_user, fake_gemini):
    async def run() -> Story:
        return await run_story(user, admin_user)

    return run


@pytest.fixture(autouse=True)
def _channel_layer_per_test():
    """A fresh channel layer for each test: every async test has its own event loop, and a Redis
    layer carried over from another loop holds locks bound to that loop (and tasks it never ran)."""
    from channels.layers import channel_layers

    channel_layers.backends = {}
    yield
    channel_layers.backends = {}
