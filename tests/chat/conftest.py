"""Fixtures for chat tests: tokens, scripted prompts for the fake upstream, the stored history."""

import json

import pytest
from asgiref.sync import sync_to_async

from accounts.services import token_pair_issue

# The socket events of a turn that answers, asks for one confirmed tool call, and answers again.
CONFIRMED_TOOL_TURN = [
    "gemini:content",
    "gemini:tool-request",
    "gemini:tool-confirmation",
    "gemini:tool-result",
    "gemini:content",
    "gemini:usage",
    "gemini:done",
]


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


@pytest.fixture
def fresh_lifecycle(monkeypatch):
    """The process's lifecycle as a server has it before any drain (restored afterwards, and
    what a start set aside from the garbage collector handed back)."""
    import gc

    from gemini_server import lifecycle

    monkeypatch.setattr(lifecycle, "_state", lifecycle._State())
    yield lifecycle
    gc.unfreeze()


@pytest.fixture
async def turns_settle():
    """Turns that outlive their client (background ones) end before the test's database is emptied."""
    import asyncio

    from gemini_server import lifecycle

    yield
    loop = asyncio.get_running_loop()
    running = [
        turn._task
        for turn in list(lifecycle._state.turns)
        if turn._task is not None and turn._task.get_loop() is loop
    ]
    if running:
        _, late = await asyncio.wait(running, timeout=20)
        for task in late:
            task.cancel()
        assert not late, "a turn was still running when the test ended"
