"""Edges of the contract's error shape: oversized and deep bodies, bad credentials and multipart,
unknown paths in debug, stale turns, and an error audit that stays bounded under a flood."""

import time

import pytest
from django.test import Client
from django.utils import timezone

from monitoring.models import Event
from sessions_app.models import Session
from sessions_app.services import session_create

pytestmark = pytest.mark.django_db


def test_a_json_body_over_the_limit_is_413(api_client, user, settings):
    settings.JSON_BODY_MAX_BYTES = 200

    response = api_client.post(
        "/api/v1/auth/login", {"email": user.email, "password": "x" * 500}, format="json"
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_unknown_api_paths_answer_json_even_in_debug(api_client, settings):
    settings.DEBUG = True

    response = api_client.get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "Not found", "details": {}}
    }


def test_a_wrongly_typed_nested_object_names_its_field(auth_client):
    response = auth_client.post("/api/v1/sessions", {"config": "yolo"}, format="json")

    assert response.status_code == 400
    assert "config" in response.json()["error"]["details"]


def test_changing_files_of_an_expired_session_is_gone(auth_client, user):
    session = session_create(user=user)
    Session.objects.filter(pk=session.pk).update(expires_at=timezone.now())

    upload = auth_client.put(
        f"/api/v1/sessions/{session.id}/files/content?path=a.txt", b"x", content_type="text/plain"
    )
    delete = auth_client.delete(f"/api/v1/sessions/{session.id}/files/content?path=a.txt")
    listing = auth_client.get(f"/api/v1/sessions/{session.id}/files")

    assert upload.status_code == delete.status_code == 410
    assert upload.json()["error"]["code"] == "gone"
    assert listing.status_code == 200  # reading stays possible


def test_cancel_frees_a_session_whose_turn_process_died(auth_client, user):
    import uuid
    from datetime import timedelta

    session = session_create(user=user)
    Session.objects.filter(pk=session.pk).update(
        turn_id=uuid.uuid4(), turn_heartbeat_at=timezone.now() - timedelta(minutes=10)
    )

    cancel = auth_client.post("/api/v1/chat/cancel", {"sessionId": str(session.id)}, format="json")
    clear = auth_client.delete("/api/v1/chat/clear", {"sessionId": str(session.id)}, format="json")

    assert cancel.status_code == 200
    assert Session.objects.get(pk=session.pk).turn_id is None
    assert clear.status_code == 200


# JSON nesting: a 400, never a RecursionError, on every JSON endpoint and on sockets.

DEEP = "[" * 40_000


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/v1/auth/api-key"),
        ("post", "/api/v1/sessions"),
        ("post", "/api/v1/chat/confirm"),
        ("delete", "/api/v1/chat/clear"),
    ],
)
def test_deeply_nested_json_is_a_400_and_writes_no_event(api_client, auth_client, method, path):
    client = api_client if path.startswith("/api/v1/auth") else auth_client

    response = getattr(client, method)(path, data=DEEP, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert "nested" in response.json()["error"]["message"]
    assert not Event.objects.filter(type="error").exists()


def test_json_nested_just_past_the_limit_is_refused_and_at_the_limit_is_read(auth_client):
    from gemini_server.parsers import JSON_MAX_DEPTH

    def config(depth):  # {"config": {"title": [[...]]}}: the object and `config` are two levels
        return '{"config": {"title": ' + "[" * (depth - 2) + "]" * (depth - 2) + "}}"

    too_deep = auth_client.post(
        "/api/v1/sessions", data=config(JSON_MAX_DEPTH + 1), content_type="application/json"
    )
    at_limit = auth_client.post(
        "/api/v1/sessions", data=config(JSON_MAX_DEPTH), content_type="application/json"
    )

    assert too_deep.status_code == 400
    assert too_deep.json()["error"]["details"] == {"maxDepth": JSON_MAX_DEPTH}
    # Read, then refused by validation: a title is text.
    assert at_limit.status_code == 400
    assert at_limit.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"email": NaN}', "NaN is not valid JSON"),
        ("{", "Expecting property name"),
        (b'{"email": "\xff"}', "not utf-8 text"),
    ],
)
def test_malformed_json_is_a_400_that_says_why(api_client, body, reason):
    response = api_client.post("/api/v1/auth/login", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert reason in response.json()["error"]["message"]


@pytest.mark.django_db(transaction=True)
async def test_a_deeply_nested_websocket_frame_is_an_error_event_and_the_socket_stays_open(user):
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from accounts.services import token_pair_issue
    from gemini_server.asgi import application

    token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]
    socket = WebsocketCommunicator(application, f"/ws/?token={token}")
    assert (await socket.connect())[0]
    assert (await socket.receive_json_from())["event"] == "authenticated"

    await socket.send_to(text_data=DEEP)
    error = await socket.receive_json_from()
    await socket.send_json_to({"event": "ping"})
    pong = await socket.receive_json_from()
    await socket.disconnect()

    assert error["event"] == "error"
    assert error["data"]["code"] == "bad_request" and "nested" in error["data"]["message"]
    assert pong["event"] == "pong"
    assert not await Event.objects.filter(type="error").aexists()


# The error audit stays bounded when anyone floods the server with failing requests.


@pytest.fixture
def flood_settings(settings):
    settings.ROOT_URLCONF = "tests.failing_urls"
    settings.RATE_LIMIT_MAX_REQUESTS = 10_000  # the audit's own bound is under test, not the 429s
    settings.ANON_ERROR_EVENTS_PER_IP = 10
    settings.ANON_ERROR_EVENTS_MAX = 100
    # One window for the whole test, however slowly the machine runs it.
    settings.ANON_ERROR_WINDOW_SECONDS = 3600
    return settings


def flood(send) -> int:
    """Runs `send`; the number of budget windows (minutes) it spanned: each has its own budget."""
    from django.conf import settings

    window = settings.ANON_ERROR_WINDOW_SECONDS
    first = int(time.time() // window)
    send()
    return int(time.time() // window) - first + 1


def test_500_failing_requests_from_one_address_write_a_bounded_number_of_rows(flood_settings):
    client = Client(raise_request_exception=False, REMOTE_ADDR="203.0.113.9")
    statuses = set()

    windows = flood(
        lambda: statuses.update(client.get("/test-failures/api").status_code for _ in range(500))
    )

    assert statuses == {500}
    errors = Event.objects.filter(type="error", action="internal_error")
    floods = Event.objects.filter(type="error", action="error_flood")
    assert 10 <= errors.count() <= 10 * windows  # 10 when the flood fits in one minute
    assert 1 <= floods.count() <= windows
    flood_row = floods.first()
    assert flood_row.ip == "203.0.113.9"
    assert flood_row.data["scope"] == "address" and flood_row.data["limit"] == 10
    assert flood_row.data["error"]["action"] == "internal_error"


def test_500_failing_requests_from_500_addresses_write_a_bounded_number_of_rows(flood_settings):
    def send():
        for n in range(500):
            address = f"198.51.{n // 250}.{n % 250}"
            client = Client(raise_request_exception=False, REMOTE_ADDR=address)
            assert client.get("/test-failures/plain").status_code == 500

    windows = flood(send)

    errors = Event.objects.filter(type="error", action="internal_error").count()
    floods = Event.objects.filter(type="error", action="error_flood")
    assert 100 <= errors <= 100 * windows
    assert 1 <= floods.count() <= windows
    assert floods.first().data["scope"] == "everyone" and floods.first().data["limit"] == 100


def test_a_signed_in_users_errors_are_all_recorded(flood_settings, user):
    from django.contrib.auth import get_user_model

    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.get(pk=user.pk))

    for _ in range(30):
        client.get("/test-failures/plain")

    assert Event.objects.filter(type="error", action="internal_error", user=user).count() == 30
    assert not Event.objects.filter(action="error_flood").exists()


# Bodies of other types: a 400 in the contract's shape, from the live server too (Twisted, under daphne, used to answer a
# bad multipart boundary itself, with an empty 400).


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data; boundary=",
        'multipart/form-data; boundary="',
        "multipart/form-data",
        "application/x-www-form-urlencoded",
        "text/plain",
    ],
)
def test_a_body_that_is_not_json_is_a_400_that_says_so(api_client, content_type):
    response = api_client.post("/api/v1/auth/login", data=b"--x\r\nfoo", content_type=content_type)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert error["message"].startswith("Unsupported content type")
    assert error["details"] == {"contentType": content_type}


def live_post(url: str, content_type: str, body: bytes) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as failure:
        return failure.code, failure.read()


def test_the_server_answers_a_bad_multipart_body_in_the_contracts_shape(live_servers):
    import json

    base_url = live_servers()

    for content_type in (
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=é",
        "multipart/form-data",
    ):
        status, body = live_post(
            f"{base_url}/api/v1/auth/login", content_type, b"--x\r\nContent-Disposition: bad\r\n"
        )

        assert status == 400, content_type
        assert json.loads(body)["error"]["code"] == "bad_request"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_write_to_a_path_no_view_serves_is_a_json_404_not_a_csrf_page(method):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)  # as a real client: the CSRF middleware runs

    response = getattr(client, method)("/api/v1/sessions/not-a-uuid", {}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db(transaction=True)
async def test_a_sockets_unexpected_failure_is_recorded_as_its_users(user, monkeypatch):
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from accounts.services import token_pair_issue
    from gemini_server.asgi import application

    def broken(**kwargs):
        raise RuntimeError("the session store broke")

    monkeypatch.setattr("chat.protocol.session_get", broken)
    token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]
    socket = WebsocketCommunicator(application, f"/ws/?token={token}")
    await socket.connect()
    await socket.receive_json_from()  # authenticated

    await socket.send_json_to({"event": "join-session", "data": {"sessionId": "x"}})
    error = await socket.receive_json_from()
    await socket.disconnect()

    assert error["event"] == "error" and error["data"]["code"] == "internal"
    event = await Event.objects.aget(type="error", action="internal_error")
    assert event.user_id == user.id
    assert event.data["exception"] == "RuntimeError"
