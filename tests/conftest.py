"""Shared fixtures: users of each role, authenticated clients, API keys, and the fake Gemini upstream."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import Role, User
from accounts.services import api_key_create, token_pair_issue

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _isolated_settings(settings, tmp_path):
    """Fast hashing, a private workspace root, and empty rate-limit counters for every test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.WORKSPACES_ROOT = tmp_path / "workspaces"
    settings.MONITORING_ENABLED = True
    cache.clear()
    yield
    cache.clear()


def make_user(email: str, role: str = Role.ENGINEER, **fields) -> User:
    return User.objects.create_user(
        email=email, password=PASSWORD, role=role, name=fields.pop("name", "Test"), **fields
    )


@pytest.fixture
def user(db):
    return make_user("engineer@example.com")


@pytest.fixture
def other_user(db):
    return make_user("other@example.com")


@pytest.fixture
def viewer(db):
    return make_user("viewer@example.com", role=Role.VIEWER)


@pytest.fixture
def admin_user(db):
    return make_user("admin@example.com", role=Role.ADMIN)


@pytest.fixture
def api_client():
    return APIClient()


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user)['accessToken']}")
    return client


@pytest.fixture
def auth_client(user):
    return client_for(user)


@pytest.fixture
def admin_api_client(admin_user):
    return client_for(admin_user)


@pytest.fixture
def api_key(user):
    """(ApiKey, raw key) for `user`."""
    return api_key_create(user=user, name="test key")


@pytest.fixture(scope="session")
def fake_gemini_server():
    """The project's fake Gemini upstream on loopback, for the whole test run."""
    from chat.agent.fake_upstream import FakeGemini

    fake = FakeGemini(host="127.0.0.1", port=0)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_gemini(fake_gemini_server, settings):
    """Points the real google-genai SDK at the fake upstream, with a clean request log."""
    settings.GEMINI_API_KEY = "test-key"
    settings.GEMINI_BASE_URL = fake_gemini_server.base_url
    settings.GEMINI_API_VERSION = "v1beta"
    settings.GEMINI_RETRY_ATTEMPTS = 1
    settings.GEMINI_STREAM_IDLE_SECONDS = 5
    fake_gemini_server.reset()
    return fake_gemini_server
