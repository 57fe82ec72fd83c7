"""Users never reach each other's sessions: another user's session is 404 everywhere, never 403."""

import uuid

import pytest
from asgiref.sync import sync_to_async

from accounts.services import token_pair_issue
from chat.models import Checkpoint, Message
from chat.turns.store import message_store
from sessions_app.models import Session
from sessions_app.services import session_create
from sessions_app.workspace import session_workspace
from tests.asgi_http import asgi_request
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

S = "/api/v1/sessions/{id}"
# (method, path, body) for every endpoint that names a session; {id} is the session's id.
SESSION_ENDPOINTS = [
    ("GET", S, None),
    ("PATCH", S, {"title": "taken over"}),
    ("DELETE", S, None),
    ("PUT", S + "/extend", {"hours": 1}),
    ("GET", S + "/files", None),
    ("GET", S + "/files?path=src", None),
    ("GET", S + "/files/content?path=secret.txt", None),
    ("PUT", S + "/files/content?path=planted.txt", b"planted by another user"),
    ("DELETE", S + "/files/content?path=secret.txt", None),
    ("POST", "/api/v1/chat/message", {"sessionId": "{id}", "message": "hello"}),
    (
        "POST",
        "/api/v1/chat/confirm",
        {"sessionId": "{id}", "callId": "write_file-1-x", "outcome": "proceed_once"},
    ),
    ("POST", "/api/v1/chat/cancel", {"sessionId": "{id}"}),
    ("GET", "/api/v1/chat/history?sessionId={id}", None),
    ("DELETE", "/api/v1/chat/clear", {"sessionId": "{id}"}),
    ("POST", "/api/v1/chat/save", {"sessionId": "{id}", "tag": "mine"}),
    ("POST", "/api/v1/chat/load", {"sessionId": "{id}", "tag": "saved"}),
    ("GET", "/api/v1/chat/checkpoints?sessionId={id}", None),
    (
        "POST",
        "/api/v1/tools/execute",
        {"sessionId": "{id}", "name": "read_file", "args": {"file_path": "secret.txt"}},
    ),
]


def _filled(template, session_id):
    if isinstance(template, str):
        return template.replace("{id}", session_id)
    if isinstance(template, dict):
        return {key: _filled(value, session_id) for key, value in template.items()}
    return template


@pytest.fixture
def victim_session(other_user):
    """Another user's session with a file, a message and a checkpoint."""
    session = session_create(user=other_user, config={"title": "private"})
    workspace = session_workspace(session)
    (workspace / "src").mkdir()
    (workspace / "secret.txt").write_text("the other user's secret")
    message_store(session=session, user=other_user, role="user", parts=[{"text": "private"}])
    Checkpoint.objects.create(session=session, tag="saved", history=[])
    session.refresh_from_db()  # a stored message is activity: it moved the expiry
    return session


def _victim_untouched(session):
    stored = Session.objects.get(pk=session.pk)
    workspace = session_workspace(session)
    assert stored.title == "private"
    assert stored.expires_at == session.expires_at
    assert (workspace / "secret.txt").read_text() == "the other user's secret"
    assert not (workspace / "planted.txt").exists()
    assert list(Message.objects.filter(session=session).values_list("text", flat=True)) == [
        "private"
    ]
    assert list(Checkpoint.objects.filter(session=session).values_list("tag", flat=True)) == [
        "saved"
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    SESSION_ENDPOINTS,
    ids=[f"{method} {path.replace('{id}', '_')}" for method, path, _ in SESSION_ENDPOINTS],
)
async def test_another_users_session_is_not_found(user, victim_session, method, path, body):
    token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]
    theirs = str(victim_session.id)
    nobodys = str(uuid.uuid4())

    response = await asgi_request(
        method, _filled(path, theirs), body=_filled(body, theirs), token=token
    )
    unknown = await asgi_request(
        method, _filled(path, nobodys), body=_filled(body, nobodys), token=token
    )

    assert response.status == 404
    assert response.json() == {
        "error": {
            "code": "not_found",
            "message": "Session not found",
            "details": {"sessionId": theirs},
        }
    }
    # Exactly what a session that does not exist answers: nothing tells the two apart.
    assert unknown.status == 404
    assert unknown.json()["error"] | {"details": None} == response.json()["error"] | {
        "details": None
    }
    assert b"secret" not in response.body
    await sync_to_async(_victim_untouched)(victim_session)


def test_another_users_session_is_not_in_the_list(user, victim_session):
    response = client_for(user).get("/api/v1/sessions")

    assert response.status_code == 200
    assert response.json() == {"sessions": [], "nextCursor": None}


@pytest.mark.django_db(transaction=True)  # tools/execute: see tests/chat/test_chat_rest.py
def test_one_users_file_never_shows_in_anothers_workspace(user, other_user):
    mine = session_create(user=user)
    theirs = session_create(user=other_user)
    me, them = client_for(user), client_for(other_user)

    for client, session, text in ((me, mine, b"mine"), (them, theirs, b"theirs")):
        response = client.generic(
            "PUT",
            f"/api/v1/sessions/{session.id}/files/content?path=same-name.txt",
            text,
            "application/octet-stream",
        )
        assert response.status_code == 201
    only_mine = me.generic(
        "PUT",
        f"/api/v1/sessions/{mine.id}/files/content?path=only-mine.txt",
        b"x",
        "application/octet-stream",
    )
    assert only_mine.status_code == 201

    listing = them.get(f"/api/v1/sessions/{theirs.id}/files")
    assert [e["name"] for e in listing.json()["entries"]] == ["same-name.txt"]
    download = them.get(f"/api/v1/sessions/{theirs.id}/files/content", {"path": "same-name.txt"})
    assert b"".join(download.streaming_content) == b"theirs"
    missing = them.get(f"/api/v1/sessions/{theirs.id}/files/content", {"path": "only-mine.txt"})
    assert missing.status_code == 404
    read = them.post(
        "/api/v1/tools/execute",
        {"sessionId": str(theirs.id), "name": "read_file", "args": {"file_path": "only-mine.txt"}},
        format="json",
    )
    assert read.status_code == 200 and read.json()["status"] == "error"
    assert session_workspace(mine) != session_workspace(theirs)
    assert (session_workspace(mine) / "same-name.txt").read_bytes() == b"mine"
