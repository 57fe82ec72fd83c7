"""Losing Redis: requests that do not need it keep working; rate limits count per process meanwhile."""

import shutil
import socket
import subprocess
import time

import pytest
from django.core.cache import caches

from tests.conftest import PASSWORD

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def private_redis(settings):
    """A redis-server of the test's own, which the test may stop; the cache points at it."""
    port = _free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    original = (settings.REDIS_URL, settings.CACHES)
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    settings.REDIS_URL = url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    yield server
    server.kill()
    server.wait()
    caches["default"].close()
    # Back to the suite's cache before its own teardown clears it.
    settings.REDIS_URL, settings.CACHES = original


def test_reads_and_login_answer_while_redis_is_down(private_redis, user, api_client, session):
    login = {"email": user.email, "password": PASSWORD}
    assert api_client.post("/api/v1/auth/login", login, format="json").status_code == 200

    private_redis.kill()
    private_redis.wait()

    token = api_client.post("/api/v1/auth/login", login, format="json")
    assert token.status_code == 200
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['accessToken']}")
    for path in (
        "/api/v1/auth/me",
        "/api/v1/sessions",
        f"/api/v1/chat/history?sessionId={session.id}",
    ):
        answer = api_client.get(path)
        assert answer.status_code == 200, (path, answer.content)


def test_rate_limit_still_bites_per_process_while_redis_is_down(
    private_redis, settings, auth_client
):
    settings.RATE_LIMIT_MAX_REQUESTS = 3
    settings.RATE_LIMIT_WINDOW_SECONDS = 3600
    private_redis.kill()
    private_redis.wait()

    answers = [auth_client.get("/api/v1/auth/me").status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]
