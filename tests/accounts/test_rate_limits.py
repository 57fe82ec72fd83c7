"""Rate limits: per user, per IP for anonymous callers, login per IP and per email, across processes."""

import json
import urllib.error
import urllib.request

import pytest

from accounts.services import api_key_create, token_pair_issue
from monitoring.models import Event
from tests.accounts.conftest import LOGIN_URL, ME_URL, assert_error
from tests.conftest import PASSWORD, client_for, make_user

pytestmark = pytest.mark.django_db

# Counters live in fixed windows; a long window keeps a test from straddling two of them.
LONG_WINDOW = 3600


@pytest.fixture
def small_limit(settings):
    settings.RATE_LIMIT_MAX_REQUESTS = 3
    settings.RATE_LIMIT_WINDOW_SECONDS = LONG_WINDOW


@pytest.fixture
def small_login_limit(settings):
    settings.LOGIN_RATE_LIMIT_MAX = 3
    settings.LOGIN_RATE_LIMIT_WINDOW_SECONDS = LONG_WINDOW


def assert_rate_limited(response) -> int:
    """A 429 in the contract's shape with a whole number of seconds, at least 1, to wait."""
    error = assert_error(response, 429, "rate_limited")
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= LONG_WINDOW
    assert error["details"]["retryAfter"] == int(retry_after)
    return int(retry_after)


def test_fourth_request_is_rate_limited(small_limit, auth_client):
    answers = [auth_client.get(ME_URL) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert_rate_limited(auth_client.get(ME_URL))


def test_the_limit_is_per_user(small_limit, user, other_user):
    first = client_for(user)
    for _ in range(3):
        first.get(ME_URL)
    assert_rate_limited(first.get(ME_URL))

    second = client_for(other_user)

    assert second.get(ME_URL).status_code == 200


def test_a_users_jwt_and_api_key_share_one_budget(small_limit, user):
    _key, raw = api_key_create(user=user)
    by_token = client_for(user)
    by_key = client_for(user)
    by_key.credentials(HTTP_X_API_KEY=raw)

    assert by_token.get(ME_URL).status_code == 200
    assert by_key.get(ME_URL).status_code == 200
    assert by_token.get(ME_URL).status_code == 200

    assert_rate_limited(by_key.get(ME_URL))


def test_anonymous_callers_are_limited_per_ip(small_limit, api_client):
    url = "/api/v1/auth/refresh"
    body = {"refreshToken": "not-a-token"}
    for _ in range(3):
        assert api_client.post(url, body, format="json", REMOTE_ADDR="10.0.0.1").status_code == 401

    assert_rate_limited(api_client.post(url, body, format="json", REMOTE_ADDR="10.0.0.1"))
    other_ip = api_client.post(url, body, format="json", REMOTE_ADDR="10.0.0.2")
    assert_error(other_ip, 401, "unauthenticated")


def test_rate_limited_answer_is_readable_by_browsers(small_limit, auth_client):
    for _ in range(3):
        auth_client.get(ME_URL)

    response = auth_client.get(ME_URL, HTTP_ORIGIN="http://localhost:3001")

    assert_rate_limited(response)
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3001"
    assert "retry-after" in response.headers["Access-Control-Expose-Headers"].lower()


# Login brute force


def test_login_is_limited_per_email_whatever_the_ip(small_login_limit, api_client, user):
    def attempt(ip, password="wrong-password-1"):
        return api_client.post(
            LOGIN_URL, {"email": user.email, "password": password}, format="json", REMOTE_ADDR=ip
        )

    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert_error(attempt(ip), 401, "unauthenticated")

    assert_rate_limited(attempt("10.0.0.4"))
    # Even the right password waits: the budget for this email is spent.
    assert_rate_limited(attempt("10.0.0.5", PASSWORD))


def test_login_is_limited_per_ip_whatever_the_email(small_login_limit, api_client, user):
    def attempt(email):
        return api_client.post(
            LOGIN_URL,
            {"email": email, "password": "wrong-password-1"},
            format="json",
            REMOTE_ADDR="10.9.9.9",
        )

    for n in range(3):
        assert_error(attempt(f"guess{n}@example.com"), 401, "unauthenticated")

    assert_rate_limited(attempt("guess3@example.com"))
    other_ip = api_client.post(
        LOGIN_URL,
        {"email": user.email, "password": PASSWORD},
        format="json",
        REMOTE_ADDR="10.1.1.1",
    )
    assert other_ip.status_code == 200


def test_login_email_budget_ignores_case_and_spaces(small_login_limit, api_client, user):
    for n, email in enumerate(
        ["engineer@example.com", "ENGINEER@example.com", "Engineer@Example.com"]
    ):
        api_client.post(
            LOGIN_URL,
            {"email": email, "password": "nope-123"},
            format="json",
            REMOTE_ADDR=f"10.0.1.{n}",
        )

    response = api_client.post(
        LOGIN_URL,
        {"email": "engineer@EXAMPLE.com", "password": PASSWORD},
        format="json",
        REMOTE_ADDR="10.0.1.9",
    )

    assert_rate_limited(response)


def test_api_key_creation_shares_the_login_limit(small_login_limit, api_client, user):
    for _ in range(3):
        api_client.post(LOGIN_URL, {"email": user.email, "password": "nope-123"}, format="json")

    response = api_client.post(
        "/api/v1/auth/api-key", {"email": user.email, "password": PASSWORD}, format="json"
    )

    assert_rate_limited(response)


# Two server processes, one budget


def _get(url: str, token: str):
    """Status, headers (looked up without regard to case, as HTTP names them) and JSON body."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


@pytest.mark.django_db(transaction=True)
def test_two_processes_share_one_rate_limit_through_redis(live_servers):
    first = live_servers(RATE_LIMIT_MAX_REQUESTS=4, RATE_LIMIT_WINDOW_SECONDS=LONG_WINDOW)
    second = live_servers(RATE_LIMIT_MAX_REQUESTS=4, RATE_LIMIT_WINDOW_SECONDS=LONG_WINDOW)
    user = make_user("shared@example.com")
    token = token_pair_issue(user=user)["accessToken"]

    # Each process sees only two of the four allowed requests.
    answers = [_get(f"{base}{ME_URL}", token) for base in (first, second, first, second)]

    assert [status for status, _headers, _body in answers] == [200, 200, 200, 200]
    assert all(body["email"] == "shared@example.com" for _s, _h, body in answers)
    for base in (first, second):
        status, headers, body = _get(f"{base}{ME_URL}", token)
        assert status == 429
        assert body["error"]["code"] == "rate_limited"
        assert int(headers["Retry-After"]) >= 1


# Who the client is: X-Forwarded-For is the caller's to write unless a proxy we trust wrote it


def test_a_forged_forwarded_for_does_not_escape_the_per_ip_login_limit(
    small_login_limit, api_client, user
):
    def attempt(n):
        return api_client.post(
            LOGIN_URL,
            {"email": f"guess{n}@example.com", "password": "wrong-password-1"},
            format="json",
            REMOTE_ADDR="10.9.9.9",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        )

    for n in range(3):
        assert_error(attempt(n), 401, "unauthenticated")

    assert_rate_limited(attempt(3))


def test_a_garbage_forwarded_for_does_not_hide_a_failed_login(api_client, user):
    response = api_client.post(
        LOGIN_URL,
        {"email": user.email, "password": "wrong-password-1"},
        format="json",
        REMOTE_ADDR="10.9.9.9",
        HTTP_X_FORWARDED_FOR="not-an-ip-address",
    )

    assert_error(response, 401, "unauthenticated")
    event = Event.objects.get(action="login_failed")
    assert event.ip == "10.9.9.9"


def test_behind_a_trusted_proxy_each_client_has_its_own_login_budget(
    small_login_limit, settings, api_client, user
):
    settings.TRUSTED_PROXY_COUNT = 1

    def attempt(forwarded_for, n):
        return api_client.post(
            LOGIN_URL,
            {"email": f"guess{n}@example.com", "password": "wrong-password-1"},
            format="json",
            REMOTE_ADDR="172.16.0.2",
            HTTP_X_FORWARDED_FOR=forwarded_for,
        )

    # The client may prepend anything; the proxy appends the address it saw, which is what counts.
    for n in range(3):
        assert_error(attempt(f"198.51.100.{n}, 203.0.113.7", n), 401, "unauthenticated")
    assert_rate_limited(attempt("198.51.100.9, 203.0.113.7", 3))
    other_client = attempt("203.0.113.8", 4)

    assert_error(other_client, 401, "unauthenticated")
    assert Event.objects.filter(action="login_failed").first().ip == "203.0.113.8"
