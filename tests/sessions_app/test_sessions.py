"""The sessions API: create, list, read, change, extend, delete, expiry, and what each role may do."""

from datetime import datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.services import token_pair_issue
from chat.models import Message, MessageRole
from chat.turns.store import message_store
from monitoring.models import Event
from sessions_app.models import Session
from sessions_app.workspace import session_workspace
from tests.asgi_http import asgi_request
from tests.conftest import client_for
from tests.sessions_app.conftest import error_of

pytestmark = pytest.mark.django_db

SESSIONS = "/api/v1/sessions"
SESSION_FIELDS = {
    "id",
    "userId",
    "title",
    "config",
    "workspaceDir",
    "status",
    "createdAt",
    "lastActivityAt",
    "expiresAt",
    "messageCount",
    "usage",
}


def when(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


def say(session, text="hello", role=MessageRole.USER):
    return message_store(session=session, user=session.user, role=role, parts=[{"text": text}])


# Create


def test_create_answers_the_whole_session_with_defaults(auth_client, user, settings):
    settings.GEMINI_MODEL = "gemini-test-model"
    settings.SESSION_TTL_HOURS = 24

    response = auth_client.post(SESSIONS, {}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"sessionId", "session"}
    session = body["session"]
    assert set(session) == SESSION_FIELDS
    assert session["id"] == body["sessionId"]
    assert session["userId"] == str(user.id)
    assert session["title"] == ""
    assert session["config"] == {"model": "gemini-test-model", "approvalMode": "default"}
    assert session["workspaceDir"] == "/workspace"
    assert session["status"] == "active"
    assert session["messageCount"] == 0
    assert session["usage"] == {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0}
    created = when(session["createdAt"])
    assert abs(created - timezone.now()) < timedelta(minutes=1)
    assert when(session["lastActivityAt"]) == created
    assert when(session["expiresAt"]) == created + timedelta(hours=24)

    stored = Session.objects.get(pk=body["sessionId"])
    assert stored.user == user
    # No row without its workspace: the directory exists, empty, as soon as the session does.
    workspace = session_workspace(stored)
    assert workspace.is_dir() and list(workspace.iterdir()) == []
    event = Event.objects.get(type="session", action="create", session_id=stored.id)
    assert event.user == user


def test_create_keeps_the_settings_given_and_takes_the_title_out_of_config(auth_client):
    config = {
        "model": "gemini-2.5-pro",
        "systemInstruction": "Answer tersely.",
        "temperature": 0.3,
        "approvalMode": "yolo",
        "title": "Refactor the parser",
    }

    response = auth_client.post(SESSIONS, {"config": config}, format="json")

    assert response.status_code == 201
    session = response.json()["session"]
    assert session["title"] == "Refactor the parser"
    assert session["config"] == {
        "model": "gemini-2.5-pro",
        "systemInstruction": "Answer tersely.",
        "temperature": 0.3,
        "approvalMode": "yolo",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"config": {"colour": "red"}}, "config.colour"),
        ({"config": {"approvalMode": "sometimes"}}, "config.approvalMode"),
        ({"config": {"temperature": 2.5}}, "config.temperature"),
        ({"config": {"temperature": -0.1}}, "config.temperature"),
        ({"config": {"temperature": "NaN"}}, "config.temperature"),
        ({"config": {"temperature": "warm"}}, "config.temperature"),
        ({"config": {"model": "no spaces allowed"}}, "config.model"),
        ({"config": "yolo"}, "config"),
        ({"config": None}, "config"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_create_refuses_bad_settings_field_by_field(auth_client, body, field):
    response = auth_client.post(SESSIONS, body, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error"
    # A config that is not an object is reported as `config.body` by the shared error renderer.
    assert list(error["details"]) in ([field], [f"{field}.body"])
    assert Session.objects.count() == 0


def test_create_refuses_a_body_that_is_not_an_object(auth_client):
    response = auth_client.post(SESSIONS, ["config"], format="json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "validation_error"
    assert Session.objects.count() == 0


def test_a_workspace_that_cannot_be_made_leaves_no_session(auth_client, settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the workspaces root should be")
    settings.WORKSPACES_ROOT = blocker

    response = auth_client.post(SESSIONS, {}, format="json")

    # A server-side failure: the contract's `internal`, with nothing of the trace or the host.
    assert response.status_code == 500
    error = error_of(response)
    assert error == {"code": "internal", "message": "Internal server error", "details": {}}
    assert str(tmp_path) not in response.content.decode()
    assert Session.objects.count() == 0
    assert not Event.objects.filter(type="session", action="create").exists()
    assert Event.objects.filter(type="error", action="internal_error").exists()


# List


def test_list_is_the_callers_own_newest_activity_first(auth_client, make_session, other_user):
    older, newest, middle = make_session(), make_session(), make_session()
    make_session(owner=other_user)
    now = timezone.now()
    for session, minutes_ago in ((older, 30), (newest, 1), (middle, 10)):
        Session.objects.filter(pk=session.pk).update(
            last_activity_at=now - timedelta(minutes=minutes_ago)
        )

    response = auth_client.get(SESSIONS)

    assert response.status_code == 200
    sessions = response.json()["sessions"]
    assert [s["id"] for s in sessions] == [str(newest.id), str(middle.id), str(older.id)]
    assert all(set(s) == SESSION_FIELDS for s in sessions)


def test_list_counts_messages(auth_client, session):
    say(session, "one")
    say(session, "two", role=MessageRole.MODEL)

    sessions = auth_client.get(SESSIONS).json()["sessions"]

    assert sessions[0]["messageCount"] == 2


def test_an_admin_may_list_another_users_sessions(admin_api_client, make_session, user):
    theirs = make_session(owner=user)

    response = admin_api_client.get(SESSIONS, {"userId": str(user.id)})

    assert response.status_code == 200
    assert [s["id"] for s in response.json()["sessions"]] == [str(theirs.id)]
    assert admin_api_client.get(SESSIONS).json() == {"sessions": [], "nextCursor": None}


def test_an_admin_asking_for_a_user_id_that_is_not_one_gets_a_validation_error(
    admin_api_client,
):
    response = admin_api_client.get(SESSIONS, {"userId": "not-a-uuid"})

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error" and list(error["details"]) == ["userId"]


@pytest.mark.parametrize("user_id", ["other", "not-a-uuid"])
def test_an_engineer_cannot_list_another_users_sessions(
    auth_client, make_session, other_user, user_id
):
    mine = make_session()
    make_session(owner=other_user)

    response = auth_client.get(
        SESSIONS, {"userId": str(other_user.id) if user_id == "other" else user_id}
    )

    assert response.status_code == 200
    assert [s["id"] for s in response.json()["sessions"]] == [str(mine.id)]


# Read, change


def test_get_answers_the_session(auth_client, session):
    say(session)

    response = auth_client.get(f"{SESSIONS}/{session.id}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"session"}
    assert body["session"]["id"] == str(session.id)
    assert body["session"]["messageCount"] == 1


def test_get_of_an_unknown_session_is_not_found(auth_client):
    response = auth_client.get(f"{SESSIONS}/00000000-0000-4000-8000-000000000000")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_patch_changes_title_and_merges_config(auth_client, make_session):
    session = make_session(model="gemini-2.5-pro", systemInstruction="Be brief.")

    response = auth_client.patch(
        f"{SESSIONS}/{session.id}",
        {"title": "Renamed", "config": {"temperature": 1.5, "approvalMode": "autoEdit"}},
        format="json",
    )

    assert response.status_code == 200
    changed = response.json()["session"]
    assert changed["title"] == "Renamed"
    assert changed["config"] == {
        "model": "gemini-2.5-pro",
        "systemInstruction": "Be brief.",
        "approvalMode": "autoEdit",
        "temperature": 1.5,
    }
    stored = Session.objects.get(pk=session.pk)
    assert stored.title == "Renamed" and stored.approval_mode == "autoEdit"


def test_patch_with_a_bad_setting_changes_nothing(auth_client, session):
    response = auth_client.patch(
        f"{SESSIONS}/{session.id}",
        {"title": "Renamed", "config": {"approvalMode": "always"}},
        format="json",
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error" and list(error["details"]) == ["config.approvalMode"]
    stored = Session.objects.get(pk=session.pk)
    assert stored.title == "" and stored.approval_mode == "default"


# Extend


def test_extend_moves_expiry_by_the_hours_given(auth_client, session):
    before = Session.objects.get(pk=session.pk).expires_at

    response = auth_client.put(f"{SESSIONS}/{session.id}/extend", {"hours": 48}, format="json")

    assert response.status_code == 200
    expires = when(response.json()["session"]["expiresAt"])
    assert expires == before + timedelta(hours=48)
    assert Session.objects.get(pk=session.pk).expires_at == expires
    event = Event.objects.get(type="session", action="extend", session_id=session.id)
    assert event.data == {"hours": 48, "expiresAt": response.json()["session"]["expiresAt"]}


def test_extend_revives_an_expired_session_from_now(auth_client, session):
    Session.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(days=2))

    response = auth_client.put(f"{SESSIONS}/{session.id}/extend", {"hours": 2}, format="json")

    assert response.status_code == 200
    extended = response.json()["session"]
    assert extended["status"] == "active"
    assert abs(when(extended["expiresAt"]) - (timezone.now() + timedelta(hours=2))) < timedelta(
        minutes=1
    )


@pytest.mark.parametrize("hours", [0, -1, "soon", "NaN", "Infinity", 24 * 365 + 1, None])
def test_extend_refuses_bad_hours(auth_client, session, hours):
    before = Session.objects.get(pk=session.pk).expires_at
    body = {} if hours is None else {"hours": hours}

    response = auth_client.put(f"{SESSIONS}/{session.id}/extend", body, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error" and list(error["details"]) == ["hours"]
    assert Session.objects.get(pk=session.pk).expires_at == before


# Delete


@pytest.mark.django_db(transaction=True)
def test_delete_removes_the_session_its_messages_and_its_workspace(auth_client, session):
    workspace = session_workspace(session)
    (workspace / "src").mkdir()
    (workspace / "src" / "main.py").write_text("print('hi')\n")
    say(session)

    response = auth_client.delete(f"{SESSIONS}/{session.id}")

    assert response.status_code == 204
    assert response.content == b""
    assert not Session.objects.filter(pk=session.pk).exists()
    assert not Message.objects.filter(session_id=session.pk).exists()
    assert not workspace.exists()
    assert Event.objects.filter(type="session", action="delete", session_id=session.id).exists()
    # The audit trail outlives the session.
    assert Event.objects.filter(type="chat", action="user_message", session_id=session.id).exists()

    again = auth_client.delete(f"{SESSIONS}/{session.id}")
    assert again.status_code == 404
    assert error_of(again)["code"] == "not_found"


def test_delete_while_a_turn_runs_is_a_conflict(auth_client, session):
    Session.objects.filter(pk=session.pk).update(
        turn_id="11111111-1111-4111-8111-111111111111", turn_heartbeat_at=timezone.now()
    )

    response = auth_client.delete(f"{SESSIONS}/{session.id}")

    assert response.status_code == 409
    assert error_of(response)["code"] == "conflict"
    assert Session.objects.filter(pk=session.pk).exists()
    assert session_workspace(session).is_dir()


def test_delete_while_a_turn_is_claimed_without_a_heartbeat_is_a_conflict(auth_client, session):
    Session.objects.filter(pk=session.pk).update(turn_id="11111111-1111-4111-8111-111111111111")

    response = auth_client.delete(f"{SESSIONS}/{session.id}")

    assert response.status_code == 409
    assert Session.objects.filter(pk=session.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_delete_is_allowed_when_the_turns_process_died(auth_client, session):
    # The claim of a process that stopped beating does not hold the session forever.
    Session.objects.filter(pk=session.pk).update(
        turn_id="11111111-1111-4111-8111-111111111111",
        turn_heartbeat_at=timezone.now() - timedelta(minutes=10),
    )

    response = auth_client.delete(f"{SESSIONS}/{session.id}")

    assert response.status_code == 204
    assert not Session.objects.filter(pk=session.pk).exists()
    assert not session_workspace(session).exists()


@pytest.mark.django_db(transaction=True)
def test_deleting_from_the_admin_console_removes_the_workspace(admin_user, session):
    from django.test import Client

    console = Client()
    console.force_login(admin_user)
    workspace = session_workspace(session)

    response = console.post(
        f"/admin/sessions_app/session/{session.id}/delete/", {"post": "yes"}, follow=False
    )

    assert response.status_code == 302
    assert not Session.objects.filter(pk=session.pk).exists()
    assert not workspace.exists()
    assert Event.objects.filter(type="session", action="delete", session_id=session.id).exists()


# Expiry


@pytest.mark.django_db(transaction=True)
async def test_an_expired_session_reads_fine_but_chatting_is_gone(session, user):
    await sync_to_async(say)(session, "before it expired")
    await sync_to_async(Session.objects.filter(pk=session.pk).update)(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]

    read = await asgi_request("GET", f"{SESSIONS}/{session.id}", token=token)
    history = await asgi_request("GET", f"/api/v1/chat/history?sessionId={session.id}", token=token)
    files = await asgi_request("GET", f"{SESSIONS}/{session.id}/files", token=token)
    chat = await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={"sessionId": str(session.id), "message": "still there?"},
        token=token,
    )

    assert read.status == 200 and read.json()["session"]["status"] == "expired"
    assert history.status == 200
    assert [item["text"] for item in history.json()["history"]] == ["before it expired"]
    assert files.status == 200
    assert chat.status == 410
    assert chat.json()["error"]["code"] == "gone"
    assert await sync_to_async(Message.objects.filter(session_id=session.pk).count)() == 1


# Viewers


@pytest.fixture
def viewer_session(make_session, viewer):
    return make_session(owner=viewer)


def test_a_viewer_reads_own_sessions_and_history(viewer, viewer_session):
    say(viewer_session, "a question")
    client = client_for(viewer)

    listing = client.get(SESSIONS)
    detail = client.get(f"{SESSIONS}/{viewer_session.id}")
    history = client.get("/api/v1/chat/history", {"sessionId": str(viewer_session.id)})
    checkpoints = client.get("/api/v1/chat/checkpoints", {"sessionId": str(viewer_session.id)})
    files = client.get(f"{SESSIONS}/{viewer_session.id}/files")

    assert listing.status_code == 200
    assert [s["id"] for s in listing.json()["sessions"]] == [str(viewer_session.id)]
    assert detail.status_code == 200
    assert history.status_code == 200
    assert [item["text"] for item in history.json()["history"]] == ["a question"]
    assert checkpoints.status_code == 200 and checkpoints.json() == {"checkpoints": []}
    assert files.status_code == 200 and files.json()["entries"] == []


def _viewer_writes(session_id):
    base = f"{SESSIONS}/{session_id}"
    return [
        ("post", SESSIONS, {}),
        ("patch", base, {"title": "mine now"}),
        ("put", f"{base}/extend", {"hours": 1}),
        ("delete", base, None),
        ("put", f"{base}/files/content?path=note.txt", b"viewer wrote this"),
        ("delete", f"{base}/files/content?path=note.txt", None),
        (
            "post",
            "/api/v1/tools/execute",
            {
                "sessionId": str(session_id),
                "name": "write_file",
                "args": {"file_path": "note.txt", "content": "x"},
            },
        ),
        ("post", "/api/v1/chat/save", {"sessionId": str(session_id), "tag": "t"}),
        ("delete", "/api/v1/chat/clear", {"sessionId": str(session_id)}),
    ]


def test_a_viewer_cannot_create_change_upload_or_run_tools(viewer, viewer_session):
    client = client_for(viewer)
    workspace = session_workspace(viewer_session)
    (workspace / "note.txt").write_text("kept")

    for method, url, body in _viewer_writes(viewer_session.id):
        if isinstance(body, bytes):
            response = client.generic(method.upper(), url, body, "application/octet-stream")
        else:
            response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 403, (method, url)
        assert error_of(response)["code"] == "forbidden", (method, url)

    assert Session.objects.filter(user=viewer).count() == 1
    assert Session.objects.get(pk=viewer_session.pk).title == ""
    assert (workspace / "note.txt").read_text() == "kept"
    assert not Event.objects.filter(type="tool").exists()


@pytest.mark.django_db(transaction=True)
async def test_a_viewer_cannot_chat_in_own_session(viewer, viewer_session):
    token = (await sync_to_async(token_pair_issue)(user=viewer))["accessToken"]

    response = await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={"sessionId": str(viewer_session.id), "message": "hello"},
        token=token,
    )

    assert response.status == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert not await sync_to_async(Message.objects.filter(session_id=viewer_session.pk).exists)()
