"""Fixtures for chat tests: a session with its workspace, tokens, and scripted prompts."""

import json

import pytest
from asgiref.sync import sync_to_async

from accounts.services import token_pair_issue
from sessions_app.services import session_create
from sessions_app.workspace import session_workspace


def scripted(*steps, prompt: str = "Do the scripted thing") -> str:
    """A prompt that tells the fake upstream exactly what to answer, step by step."""
    return f"{prompt} [[fake:{json.dumps(list(steps))}]]"


@pytest.fixture
def make_session(user):
    def make(owner=None, **config):
        return session_create(user=owner or user, config=config or None)

    return make


@pytest.fixture
def session(make_session):
    return make_session(approvalMode="default")


@pytest.fixture
def workspace(session):
    return session_workspace(session)


@pytest.fixture
def token(user):
    return token_pair_issue(user=user)["accessToken"]


async def history_of(session) -> list:
    from chat.selectors import history_list

    return await sync_to_async(history_list)(session=session)
