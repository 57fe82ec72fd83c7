"""X-Request-ID on every response, carried into the turn's logs and events; LOG_FORMAT=json."""

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from accounts.services import token_pair_issue
from gemini_server.logs import JsonLogFormatter, RequestIdLogFilter
from monitoring.models import Event
from tests.asgi_http import asgi_request
from tests.chat.conftest import scripted

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GENERATED = re.compile(r"^[0-9a-f]{32}$")


def test_a_sane_request_id_is_echoed(client):
    response = client.get("/health", HTTP_X_REQUEST_ID="lb-7f3a.42:edge")

    assert response["X-Request-ID"] == "lb-7f3a.42:edge"


@pytest.mark.parametrize("sent", ["x" * 129, "two words", "line\nbreak", "<script>", ""])
def test_an_insane_request_id_is_replaced_by_a_new_one(client, sent):
    response = client.get("/health", HTTP_X_REQUEST_ID=sent)

    assert GENERATED.match(response["X-Request-ID"])
    assert response["X-Request-ID"] != sent


def test_each_request_without_one_gets_its_own(client):
    first = client.get("/health")["X-Request-ID"]
    second = client.get("/health")["X-Request-ID"]

    assert GENERATED.match(first) and GENERATED.match(second) and first != second


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "status"),
    [("/api/v1/sessions", 401), ("/api/v1/no-such-thing", 404), ("/nowhere", 404)],
)
def test_error_responses_carry_it_too(client, path, status):
    response = client.get(path, HTTP_X_REQUEST_ID="error-case-1")

    assert response.status_code == status
    assert response["X-Request-ID"] == "error-case-1"


@pytest.fixture
def json_log():
    """The client's and the turn loop's log records, formatted as LOG_FORMAT=json formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(JsonLogFormatter())
    loggers = [logging.getLogger("chat.agent.client"), logging.getLogger("chat.turns.loop")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.django_db(transaction=True)
async def test_the_turn_logs_and_records_under_the_requests_id(
    settings, user, session, workspace, fake_gemini, json_log
):
    """The SSE response echoes the id; the turn (its own task) logs and audits under it."""
    settings.GEMINI_RETRY_ATTEMPTS = 2
    token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]
    (workspace / "a.txt").write_text("A")
    message = scripted(
        {"calls": [{"name": "read_file", "args": {"file_path": "a.txt"}}]},
        {"error": {"code": 503}},
        {"text": "done"},
    )

    response = await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={"sessionId": str(session.id), "message": message},
        token=token,
        headers={"X-Request-ID": "turn-req-0001"},
    )

    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["x-request-id"] == "turn-req-0001"
    retried = [entry for entry in json_log() if "retrying" in entry["message"]]
    assert retried and retried[0]["requestId"] == "turn-req-0001"
    assert retried[0]["logger"] == "chat.agent.client" and retried[0]["level"] == "INFO"
    tool_events = await sync_to_async(list)(
        Event.objects.filter(type="tool", session_id=session.id).values_list("data", flat=True)
    )
    assert len(tool_events) == 2  # the call's start and its result
    assert {data["requestId"] for data in tool_events} == {"turn-req-0001"}
    chat_events = await sync_to_async(list)(
        Event.objects.filter(type="chat", session_id=session.id).values_list("data", flat=True)
    )
    assert chat_events  # the user's message and the model's answers
    assert {data["requestId"] for data in chat_events} == {"turn-req-0001"}


def test_log_format_json_writes_one_object_per_line_with_the_request_id(tmp_path):
    probe = (
        "import django; django.setup()\n"
        "from django.test import Client, override_settings\n"
        "with override_settings(ROOT_URLCONF='tests.failing_urls'):\n"
        "    r = Client(raise_request_exception=False).get('/test-failures/plain',"
        " HTTP_X_REQUEST_ID='json-log-req-1')\n"
        "    assert r.status_code == 500 and r['X-Request-ID'] == 'json-log-req-1'\n"
        "Client().get('/health', HTTP_X_REQUEST_ID='json-access-1')\n"
        "import logging; logging.getLogger('outside').warning('no request here')\n"
    )
    environment = {
        **os.environ,
        "LOG_FORMAT": "json",
        "MONITORING_ENABLED": "false",
        "DJANGO_SETTINGS_MODULE": "gemini_server.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }

    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    failure = next(entry for entry in entries if entry["logger"] == "django.request")
    assert set(failure) == {"timestamp", "level", "logger", "message", "requestId", "exception"}
    assert failure["level"] == "ERROR"
    assert failure["requestId"] == "json-log-req-1"
    assert failure["message"].startswith("Internal Server Error: /test-failures/plain")
    assert "RuntimeError" in failure["exception"] and "Traceback" in failure["exception"]
    access = [entry for entry in entries if entry["logger"] == "gemini_server.access"]
    assert [(entry["requestId"], entry["message"].rsplit(" ", 1)[0]) for entry in access] == [
        ("json-log-req-1", '"GET /test-failures/plain" 500'),
        ("json-access-1", '"GET /health" 200'),
    ]
    assert all(entry["message"].endswith("ms") for entry in access)
    outside = next(entry for entry in entries if entry["logger"] == "outside")
    assert outside["requestId"] is None and outside["message"] == "no request here"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", outside["timestamp"])


def test_an_unknown_log_format_is_refused():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "LOG_FORMAT": "xml",
            "DJANGO_SETTINGS_MODULE": "gemini_server.settings",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "LOG_FORMAT must be text or json" in result.stderr


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ([(b"x-request-id", b"socket-7")], "socket-7"),
        ([(b"x-request-id", b"bad id")], None),
        ([], None),
    ],
)
async def test_a_socket_gets_one_id_for_its_life_echoed_on_the_handshake(sent, expected):
    from gemini_server.request_id import RequestIdWebSocket, request_id_current

    seen, sent_messages = [], []

    async def consumer(scope, receive, send):
        seen.append((request_id_current(), scope["request_id"]))
        await send({"type": "websocket.accept", "headers": [(b"x-request-id", b"forged")]})
        await send({"type": "websocket.send", "text": "hi"})

    async def send(message):
        sent_messages.append(message)

    await RequestIdWebSocket(consumer)({"type": "websocket", "headers": sent}, None, send)

    request_id = seen[0][0]
    assert seen == [(request_id, request_id)]
    if expected is None:
        assert GENERATED.match(request_id)
    else:
        assert request_id == expected
    assert sent_messages[0]["headers"] == [(b"x-request-id", request_id.encode())]
    assert sent_messages[1] == {"type": "websocket.send", "text": "hi"}
