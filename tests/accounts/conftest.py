"""Fixtures for the accounts tests: logging in over HTTP, hand-made JWTs, keys in every state."""

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from django.conf import settings

from tests.conftest import PASSWORD

LOGIN_URL = "/api/v1/auth/login"
ME_URL = "/api/v1/auth/me"


@pytest.fixture
def login(api_client):
    """POSTs an email and password to the login endpoint: `login(email, password=PASSWORD)`."""

    def post(email, password=PASSWORD, **extra):
        return api_client.post(
            LOGIN_URL, {"email": email, "password": password}, format="json", **extra
        )

    return post


@pytest.fixture
def signed_jwt():
    """Builds an access token by hand with PyJWT, as an attacker or a clock could."""

    def build(user, *, secret=None, lifetime=timedelta(minutes=5), token_type="access", **claims):
        now = datetime.now(UTC)
        payload = {
            "token_type": token_type,
            "exp": now + lifetime,
            "iat": now - timedelta(minutes=1),
            "jti": uuid.uuid4().hex,
            "user_id": str(user.id),
            "role": user.role,
            **claims,
        }
        return jwt.encode(payload, secret or settings.JWT_SECRET, algorithm="HS256")

    return build


def assert_error(response, status: int, code: str) -> dict:
    """The contract's one error shape with this status and code; returns the `error` object."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error
