"""The admin's REST view of the trail: search, paging, stats, active sessions; and the recorder's promises."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.urls import path
from django.utils import timezone
from rest_framework.views import APIView

from monitoring.models import Event
from monitoring.redaction import REDACTED, redact
from monitoring.services import event_record
from sessions_app.models import Session
from sessions_app.services import session_create
from tests.asgi_http import asgi_request
from tests.chat.conftest import scripted
from tests.conftest import PASSWORD, client_for
from tests.monitoring.conftest import TYPICAL_ACTION

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/monitoring/events"
ENDPOINTS = [
    EVENTS,
    "/api/v1/monitoring/stream",
    "/api/v1/monitoring/stats",
    "/api/v1/monitoring/sessions",
]


def record(type="chat", action=None, user=None, session_id=None, at=None, **data) -> Event:
    event = event_record(
        type=type,
        action=action or TYPICAL_ACTION[type],
        user=user,
        session_id=session_id,
        data=data,
    )
    if at is not None:
        Event.objects.filter(pk=event.pk).update(created_at=at)
        event.refresh_from_db()
    return event


def ids(response) -> list[str]:
    return [event["id"] for event in response.json()["events"]]


def uuids(*events) -> list[str]:
    return [str(event.uuid) for event in events]


# Filters.


def test_type_filter_takes_a_comma_list(admin_api_client, user):
    chat = record("chat", user=user)
    tool = record("tool", user=user)
    record("session", user=user)
    error = record("error", user=user)

    response = admin_api_client.get(EVENTS, {"type": "tool,error, chat"})

    assert response.status_code == 200
    assert ids(response) == uuids(error, tool, chat)
    assert {e["type"] for e in admin_api_client.get(EVENTS, {"type": "tool"}).json()["events"]} == {
        "tool"
    }


def test_unknown_type_is_a_validation_error(admin_api_client):
    response = admin_api_client.get(EVENTS, {"type": "chat,bogus"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "bogus" in error["details"]["type"][0]


def test_user_and_session_filters(admin_api_client, user, other_user):
    session = session_create(user=user)
    other_session = session_create(user=other_user)
    Event.objects.all().delete()
    mine = record(user=user, session_id=session.id)
    record(user=user, session_id=other_session.id)
    theirs = record(user=other_user, session_id=other_session.id)
    record(user=user)

    by_user = admin_api_client.get(EVENTS, {"userId": str(other_user.id)})
    by_session = admin_api_client.get(EVENTS, {"sessionId": str(session.id)})
    both = admin_api_client.get(
        EVENTS, {"userId": str(other_user.id), "sessionId": str(other_session.id)}
    )

    assert ids(by_user) == uuids(theirs)
    assert ids(by_session) == uuids(mine)
    assert ids(both) == uuids(theirs)
    assert by_user.json()["events"][0]["userEmail"] == other_user.email
    assert by_session.json()["events"][0]["sessionId"] == str(session.id)
    bad = admin_api_client.get(EVENTS, {"userId": "not-a-uuid"})
    assert bad.status_code == 400 and "userId" in bad.json()["error"]["details"]


def test_since_is_inclusive_and_before_exclusive(admin_api_client):
    day = datetime(2026, 1, 10, tzinfo=UTC)
    early = record(at=day - timedelta(days=1))
    at_start = record(at=day)
    middle = record(at=day + timedelta(hours=12))
    at_end = record(at=day + timedelta(days=1))

    window = admin_api_client.get(
        EVENTS, {"since": "2026-01-10T00:00:00Z", "before": "2026-01-11T00:00:00Z"}
    )
    since_only = admin_api_client.get(EVENTS, {"since": "2026-01-10T12:00:00Z"})
    before_only = admin_api_client.get(EVENTS, {"before": "2026-01-10T00:00:00Z"})

    assert ids(window) == uuids(middle, at_start)
    assert ids(since_only) == uuids(at_end, middle)
    assert ids(before_only) == uuids(early)
    bad = admin_api_client.get(EVENTS, {"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()["error"]["details"]


@pytest.mark.parametrize("limit", ["0", "1001", "-5", "many"])
def test_limit_out_of_bounds_is_a_validation_error(admin_api_client, limit):
    response = admin_api_client.get(EVENTS, {"limit": limit})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "limit" in response.json()["error"]["details"]


def test_limit_bounds_themselves_are_accepted(admin_api_client):
    events = [record() for _ in range(3)]

    one = admin_api_client.get(EVENTS, {"limit": "1"})
    most = admin_api_client.get(EVENTS, {"limit": "1000"})

    assert ids(one) == uuids(events[-1]) and one.json()["nextCursor"]
    assert ids(most) == uuids(*reversed(events)) and most.json()["nextCursor"] is None


def test_default_limit_is_100(admin_api_client):
    Event.objects.bulk_create(Event(type="chat", action="user_message") for _ in range(101))

    response = admin_api_client.get(EVENTS)

    assert len(response.json()["events"]) == 100 and response.json()["nextCursor"]


def test_cursor_walks_every_event_once_newest_first(admin_api_client, user):
    events = [record(user=user, n=n) for n in range(23)]
    record("auth", user=user)  # filtered out below: the cursor keeps the filters of the walk

    seen, pages, cursor = [], 0, None
    while True:
        params = {"limit": 5, "type": "chat"} | ({"cursor": cursor} if cursor else {})
        response = admin_api_client.get(EVENTS, params)
        assert response.status_code == 200
        page = response.json()
        seen += page["events"]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
        assert pages < 10

    assert pages == 5
    assert [e["id"] for e in seen] == uuids(*reversed(events))
    assert [e["data"]["n"] for e in seen] == list(range(22, -1, -1))


def test_exactly_one_full_page_has_no_next_cursor(admin_api_client):
    for _ in range(5):
        record()

    response = admin_api_client.get(EVENTS, {"limit": 5})

    assert len(response.json()["events"]) == 5 and response.json()["nextCursor"] is None


@pytest.mark.parametrize("cursor", ["garbage!", "abc", "c2VxOmFiYw==", "//8="])
def test_bad_cursor_is_a_validation_error(admin_api_client, cursor):
    record()

    response = admin_api_client.get(EVENTS, {"cursor": cursor})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "cursor" in response.json()["error"]["details"]


def test_event_shape(admin_api_client, user):
    session = session_create(user=user)
    event = event_record(
        type="tool",
        action="call",
        user=user,
        session_id=session.id,
        data={"name": "read_file", "args": {"file_path": "a.txt"}},
        ip="10.1.2.3",
    )

    body = admin_api_client.get(EVENTS).json()["events"][0]

    assert body == {
        "id": str(event.uuid),
        "type": "tool",
        "action": "call",
        "userId": str(user.id),
        "userEmail": user.email,
        "sessionId": str(session.id),
        "data": {"name": "read_file", "args": {"file_path": "a.txt"}},
        "ip": "10.1.2.3",
        "createdAt": body["createdAt"],
    }
    assert body["createdAt"].endswith("Z")
    assert datetime.fromisoformat(body["createdAt"].replace("Z", "+00:00")) == event.created_at


# Who may look.


@pytest.mark.parametrize("url", ENDPOINTS)
@pytest.mark.parametrize("who", ["user", "viewer"])
def test_non_admins_are_forbidden(url, who, request):
    client = client_for(request.getfixturevalue(who))

    response = client.get(url)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("url", ENDPOINTS)
def test_anonymous_is_unauthenticated(url, api_client):
    response = api_client.get(url)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_an_admin_api_key_works(admin_user, api_client):
    from accounts.services import api_key_create

    _, raw = api_key_create(user=admin_user)

    response = api_client.get(EVENTS, HTTP_X_API_KEY=raw)

    assert response.status_code == 200
    assert response.json()["events"][0]["action"] == "api_key_create"


# MONITORING_ENABLED=false.


def test_disabled_monitoring_records_nothing_and_answers_empty(
    settings, admin_api_client, api_client, user
):
    record(user=user)  # written while monitoring was on: hidden once it is off
    session_create(user=user)
    settings.MONITORING_ENABLED = False
    before = Event.objects.count()

    login = api_client.post(
        "/api/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json"
    )
    created = client_for(user).post("/api/v1/sessions", {}, format="json")
    assert event_record(type="chat", action="user_message", user=user) is None

    assert login.status_code == 200 and created.status_code == 201
    assert Event.objects.count() == before
    assert admin_api_client.get(EVENTS).json() == {"events": [], "nextCursor": None}
    assert admin_api_client.get("/api/v1/monitoring/stats").json() == {
        "perType": {},
        "perUser": [],
        "tokensByUser": [],
        "activeSessions": 0,
    }
    assert admin_api_client.get("/api/v1/monitoring/sessions").json() == {"sessions": []}
    # Bad input is still refused: the contract does not change shape when monitoring is off.
    assert admin_api_client.get(EVENTS, {"limit": 0}).status_code == 400


@pytest.mark.django_db(transaction=True)
async def test_disabled_monitoring_stream_ends_without_events(settings, admin_user):
    from accounts.services import token_pair_issue

    settings.MONITORING_ENABLED = False
    token = (await sync_to_async(token_pair_issue)(user=admin_user))["accessToken"]

    response = await asgi_request("GET", "/api/v1/monitoring/stream", token=token, timeout=5)

    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.frames == []
    assert response.comments == [": monitoring is disabled"]


# Stats and active sessions.


@pytest.mark.django_db(transaction=True)
async def test_stats_count_per_type_and_user_and_sum_tokens(
    admin_user, user, other_user, fake_gemini
):
    from accounts.services import token_pair_issue

    session = await sync_to_async(session_create)(user=user)
    token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]
    for text in ("one", "two"):
        answer = await asgi_request(
            "POST",
            "/api/v1/chat/message",
            body={"sessionId": str(session.id), "message": scripted({"text": text})},
            token=token,
        )
        assert answer.frames[-1]["type"] == "done"
    other_session = await sync_to_async(session_create)(user=other_user)
    expired = await sync_to_async(session_create)(user=other_user)
    await sync_to_async(Session.objects.filter(pk=expired.pk).update)(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    await sync_to_async(event_record)(
        type="error", action="upstream_failure", user=other_user, session_id=other_session.id
    )
    await sync_to_async(event_record)(type="auth", action="login_failed", user_email="x@y.z")
    admin_token = (await sync_to_async(token_pair_issue)(user=admin_user))["accessToken"]

    response = await asgi_request("GET", "/api/v1/monitoring/stats", token=admin_token)

    assert response.status == 200
    stats = response.json()
    # session create x1 and chat user_message + model_response x2 for `user`; for `other_user`
    # two creates and an error; one anonymous failed login.
    assert stats["perType"] == {"session": 3, "chat": 4, "error": 1, "auth": 1}
    per_user = {row["userEmail"]: row for row in stats["perUser"]}
    assert set(per_user) == {user.email, other_user.email}
    assert per_user[user.email] == {
        "userId": str(user.id),
        "userEmail": user.email,
        "events": 5,
        "chat": 4,
        "tool": 0,
        "errors": 0,
    }
    assert per_user[other_user.email]["events"] == 3
    assert per_user[other_user.email]["errors"] == 1
    stored = await sync_to_async(Session.objects.get)(pk=session.id)
    assert stored.total_tokens > 0
    assert stats["tokensByUser"] == [
        {
            "userId": str(user.id),
            "userEmail": user.email,
            "promptTokens": stored.prompt_tokens,
            "completionTokens": stored.completion_tokens,
            "totalTokens": stored.total_tokens,
        }
    ]
    assert stats["activeSessions"] == 2


def test_active_sessions_lists_only_unexpired_ones(admin_api_client, user, other_user):
    live = session_create(user=user, config={"title": "live one"})
    other = session_create(user=other_user)
    gone = session_create(user=user)
    Session.objects.filter(pk=gone.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    Session.objects.filter(pk=other.pk).update(last_activity_at=timezone.now() + timedelta(1))

    response = admin_api_client.get("/api/v1/monitoring/sessions")

    assert response.status_code == 200
    sessions = response.json()["sessions"]
    assert [s["id"] for s in sessions] == [str(other.id), str(live.id)]
    first = sessions[1]
    assert first["userId"] == str(user.id) and first["userEmail"] == user.email
    assert first["title"] == "live one" and first["turnRunning"] is False
    assert first["usage"] == {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0}
    assert admin_api_client.get("/api/v1/monitoring/stats").json()["activeSessions"] == 2


# Redaction.


def test_secret_named_keys_are_masked_at_any_depth():
    data = {
        "password": "p@ss",
        "newPassword": 123456,
        "apiKey": "k",
        "x-api-key": "k",
        "Authorization": "Bearer abc",
        "refreshToken": "r",
        "client_secret": "s",
        "cookie": "sessionid=1",
        "nested": [{"token": "t", "name": "kept"}],
        "empty_password": "",
        "missing_token": None,
    }

    assert redact(data) == {
        "password": REDACTED,
        "newPassword": REDACTED,
        "apiKey": REDACTED,
        "x-api-key": REDACTED,
        "Authorization": REDACTED,
        "refreshToken": REDACTED,
        "client_secret": REDACTED,
        "cookie": REDACTED,
        "nested": [{"token": REDACTED, "name": "kept"}],
        "empty_password": "",
        "missing_token": None,
    }


def test_token_counts_are_not_secrets():
    usage = {"promptTokens": 12, "completionTokens": 3, "totalTokens": 15, "tokenType": "Bearer"}

    assert redact({"usage": usage, "candidatesTokenCount": 3}) == {
        "usage": usage,
        "candidatesTokenCount": 3,
    }


def test_keys_and_jwts_are_cut_out_of_free_text(user):
    from accounts.services import api_key_create, token_pair_issue

    _, raw = api_key_create(user=user)
    tokens = token_pair_issue(user=user)
    text = (
        f"curl -H 'X-API-Key: {raw}' -H 'Authorization: Bearer {tokens['accessToken']}' && echo ok"
    )

    cleaned = redact({"command": text, "list": [tokens["refreshToken"], "plain"]})

    assert cleaned == {
        "command": f"curl -H 'X-API-Key: {REDACTED}' -H 'Authorization: Bearer {REDACTED}' && echo ok",
        "list": [REDACTED, "plain"],
    }


def test_named_secrets_are_cut_out_wherever_they_appear():
    cleaned = redact(
        {"email": "hunter2hunter2@example.com", "n": 1}, secrets=("hunter2hunter2", "")
    )

    assert cleaned == {"email": f"{REDACTED}@example.com", "n": 1}


# An observation's record never fails its caller; a change and its record commit together.


def test_a_failing_insert_does_not_fail_the_login(monkeypatch, api_client, user, caplog):
    def broken_insert(*args, **kwargs):
        raise RuntimeError("database is on fire")

    monkeypatch.setattr("monitoring.services.rows_insert", broken_insert)

    with caplog.at_level(logging.ERROR, logger="monitoring.services"):
        response = api_client.post(
            "/api/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json"
        )

    assert response.status_code == 200 and response.json()["accessToken"]
    assert Event.objects.count() == 0
    assert "Could not record the auth.login event" in caplog.text


def test_a_change_whose_audit_row_cannot_be_written_does_not_happen(monkeypatch, user, settings):
    def broken_insert(*args, **kwargs):
        raise RuntimeError("database is on fire")

    monkeypatch.setattr("monitoring.services.rows_insert", broken_insert)

    created = client_for(user).post("/api/v1/sessions", {}, format="json")

    assert created.status_code == 500
    assert created.json()["error"]["code"] == "internal"
    assert not Session.objects.exists()
    assert not (settings.WORKSPACES_ROOT / str(user.id)).exists()


# Every 500 is recorded, without the trace or the exception's message.


class Broken(APIView):
    def get(self, request):
        raise RuntimeError("boom with password=hunter2 inside")


def broken_plain(request):
    raise KeyError("plain view failure")


urlpatterns = [path("broken", Broken.as_view()), path("broken-plain", broken_plain)]
handler500 = "gemini_server.errors.handler500"


def test_internal_errors_are_recorded_without_their_message(settings, user, client):
    settings.ROOT_URLCONF = __name__
    api = client_for(user)
    client.raise_request_exception = False

    drf_answer = api.get("/broken")
    plain_answer = client.get("/broken-plain")

    assert drf_answer.status_code == plain_answer.status_code == 500
    assert drf_answer.json()["error"]["code"] == plain_answer.json()["error"]["code"] == "internal"
    assert "hunter2" not in drf_answer.content.decode()
    recorded = list(Event.objects.filter(type="error").order_by("seq"))
    assert [(e.action, e.user_id, e.data) for e in recorded] == [
        (
            "internal_error",
            user.id,
            {"path": "/broken", "method": "GET", "exception": "RuntimeError"},
        ),
        (
            "internal_error",
            None,
            {"path": "/broken-plain", "method": "GET", "exception": "KeyError"},
        ),
    ]
    assert all(e.ip == "127.0.0.1" for e in recorded)
