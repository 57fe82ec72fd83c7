"""Fixtures for session and workspace tests: sessions made through the service, with their workspace."""

import pytest

from sessions_app.services import session_create
from sessions_app.workspace import session_workspace


@pytest.fixture
def make_session(user):
    def make(owner=None, **config):
        return session_create(user=owner or user, config=config or None)

    return make


@pytest.fixture
def session(make_session):
    return make_session()


@pytest.fixture
def workspace(session):
    return session_workspace(session)


def error_of(response) -> dict:
    """The contract's error object, after checking the whole body has the one error shape."""
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]
