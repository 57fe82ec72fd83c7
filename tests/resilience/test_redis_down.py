"""Losing Redis: requests that do not need it keep working; rate limits count per process meanwhile."""

import pytest

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
