"""Fixtures for the tool tests: a session workspace next to a sibling one, and a call helper."""

import pytest

from chat.agent.tools import ToolContext, tool_run


@pytest.fixture
def workspaces(tmp_path):
    root = tmp_path / "workspaces"
    mine = root / "session-a"
    sibling = root / "session-b"
    mine.mkdir(parents=True)
    sibling.mkdir()
    (sibling / "secret.txt").write_text("sibling secret\n")
    return mine, sibling


@pytest.fixture
def ws(workspaces):
    return workspaces[0]


@pytest.fixture
def ctx(ws):
    return ToolContext(workspace=ws, session_id="session-a")


@pytest.fixture
def call(ctx):
    async def _call(name, **args):
        return await tool_run(name, args, ctx)

    return _call
