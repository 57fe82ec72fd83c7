"""Fixtures for chat tests: tokens, scripted prompts for the fake upstream, the stored history."""

import json

import pytest
from asgiref.sync import sync_to_async

from accounts.services import token_pair_issue


def scripted(*steps, prompt: str = "Do the scripted thing") -> str:
    """A prompt that tells the fake upstream exactly what to answer, step by step."""
    return f"{prompt} [[fake:{json.dumps(list(steps))}]]"


@pytest.fixture
def token(user):
    return token_pair_issue(user=user)["accessToken"]


async def history_of(session) -> list:
    from chat.selectors import history_page

    history, _ = await sync_to_async(history_page)(session=session, limit=10_000, cursor=None)
    return history
