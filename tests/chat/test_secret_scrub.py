"""The server's own secrets never leave it, even when the model service quotes them in an error."""

import json
import logging

import pytest
from asgiref.sync import sync_to_async

from chat.models import Message
from gemini_server.errors import UpstreamError
from gemini_server.scrub import SCRUBBED, secrets_scrub
from monitoring.models import Event
from tests.asgi_http import asgi_request
from tests.chat.conftest import scripted

# Shaped like a real Gemini key, so the fake upstream and the SDK treat it as one.
API_KEY = "AIzaSyD-test-only-0123456789abcdefghijk"


@pytest.fixture
def keyed_upstream(fake_gemini, settings):
    settings.GEMINI_API_KEY = API_KEY
    return fake_gemini


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("code", [400, 403, 429, 500])
async def test_an_upstream_error_quoting_the_api_key_reaches_nobody_with_it(
    session, token, keyed_upstream, caplog, code
):
    # "{apiKey}" makes the fake quote the key the SDK sent, as Google's errors may.
    step = {"error": {"code": code, "message": "API key {apiKey} is not allowed here."}}

    with caplog.at_level(logging.DEBUG):
        response = await asgi_request(
            "POST",
            "/api/v1/chat/message",
            body={"sessionId": str(session.id), "message": scripted(step)},
            token=token,
        )

    error = next(frame["data"] for frame in response.frames if frame["type"] == "error")
    assert f"API key {SCRUBBED} is not allowed here." in error["message"]
    assert API_KEY not in response.body.decode()
    events = [event.data async for event in Event.objects.filter(session_id=session.id)]
    assert any(event.get("code") == error["code"] for event in events)
    assert API_KEY not in json.dumps(events)
    history = await sync_to_async(list)(Message.objects.filter(session_id=session.id).values())
    assert API_KEY not in repr(history)
    assert API_KEY not in caplog.text
    assert keyed_upstream.requests  # the key was sent upstream, where it belongs


def test_the_error_body_of_an_api_error_is_scrubbed(settings):
    settings.GEMINI_API_KEY = API_KEY

    body = UpstreamError(f"rejected {API_KEY}", details={"url": f"?key={API_KEY}"}).body()

    assert body["error"]["message"] == f"rejected {SCRUBBED}"
    assert body["error"]["details"] == {"url": f"?key={SCRUBBED}"}


@pytest.mark.django_db
def test_the_recorder_scrubs_the_servers_secrets(settings, user):
    from monitoring.models import AuditAction, EventType
    from monitoring.services import event_record

    settings.JWT_SECRET = "a-jwt-secret-of-the-servers-own-1234567890"
    event = event_record(
        type=EventType.ERROR,
        action=AuditAction.UPSTREAM_FAILURE,
        user=user,
        data={"message": f"signing with {settings.JWT_SECRET} failed", "nested": [API_KEY]},
    )

    event.refresh_from_db()
    assert event.data == {
        "message": f"signing with {SCRUBBED} failed",
        "nested": [SCRUBBED],  # any Google API key, not only the configured one
    }


@pytest.mark.parametrize(
    ("setting", "url", "password"),
    [
        ("DATABASE_URL", "postgres://app:s3cret-db-pass@db:5432/app", "s3cret-db-pass"),
        ("REDIS_URL", "redis://:r3dis%2Fpass-word@cache:6379/0", "r3dis/pass-word"),
    ],
)
def test_connection_passwords_are_scrubbed_as_written_and_decoded(settings, setting, url, password):
    setattr(settings, setting, url)

    text = f"could not connect to {url} with password {password}"

    assert secrets_scrub(text) == (
        f"could not connect to {url.replace(url.split('@')[0].split(':')[-1], SCRUBBED)}"
        f" with password {SCRUBBED}"
    )


def test_the_console_log_never_writes_a_secret(settings):
    from gemini_server.scrub import SecretsLogFilter

    settings.GEMINI_API_KEY = API_KEY
    try:
        raise RuntimeError(f"upstream said {API_KEY}")
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed with %s", (API_KEY,), sys.exc_info()
        )

    SecretsLogFilter().filter(record)
    written = logging.Formatter().format(record)

    assert API_KEY not in written
    assert written.count(SCRUBBED) == 2
