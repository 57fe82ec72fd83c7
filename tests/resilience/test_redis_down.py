"""Losing Redis: requests that do not need it keep working; rate limits count per process meanwhile."""

import pytest

from accounts.throttling import _COUNT_SHA
from gemini_server.shared_redis import redis_client
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_reads_and_login_answer_while_redis_is_down(private_redis, user, api_client, session):
    login = {"email": user.email, "password": PASSWORD}
    assert api_client.post("/api/v1/auth/login", login, format="json").status_code == 200

    private_redis.stop()

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
    private_redis.stop()

    answers = [auth_client.get("/api/v1/auth/me").status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]


def test_a_restarted_redis_counts_the_next_hit_without_its_script_or_old_connection(
    private_redis, settings, auth_client, caplog
):
    """The limit's script is sent by its digest; a Redis that restarted has lost it (NOSCRIPT)
    and closed the connections the process holds: the next hit is counted there all the same."""
    settings.RATE_LIMIT_MAX_REQUESTS = 3
    settings.RATE_LIMIT_WINDOW_SECONDS = 3600
    assert auth_client.get("/api/v1/auth/me").status_code == 200
    redis = redis_client()
    [counter] = redis.keys("*rl:api:*")
    assert redis.get(counter) == b"1"

    private_redis.stop()
    private_redis.start()
    assert redis.script_exists(_COUNT_SHA) == [False]

    answers = [auth_client.get("/api/v1/auth/me").status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]
    assert redis.get(counter) == b"4"  # every hit counted in Redis, none per process
    assert "unreachable" not in caplog.text
