"""The seed README's Socket.IO snippets, unchanged, in the real socket.io-client from npm
(tests/socketio_client/seed_client.mjs) against a live server: default transports (polling, then
the upgrade to WebSocket), WebSocket only and long-polling only."""

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from accounts.services import token_pair_issue
from sessions_app.services import session_create
from sessions_app.workspace import session_workspace
from tests.chat.conftest import CONFIRMED_TOOL_TURN, scripted
from tests.chat.test_socketio import http

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 30
CLIENT_DIR = Path(__file__).resolve().parents[1] / "socketio_client"
TRANSPORTS = [
    pytest.param(None, id="default"),
    pytest.param("websocket", id="websocket"),
    pytest.param("polling", id="polling"),
]


class SeedRun:
    """One run of the seed's client: its output lines as they come, and how it ended."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.lines: list[str] = []

    async def line(self) -> str | None:
        raw = await asyncio.wait_for(self.process.stdout.readline(), TIMEOUT)
        if not raw:
            return None
        self.lines.append(raw.decode().rstrip("\n"))
        return self.lines[-1]

    async def event(self, name: str):
        """Reads on until the socket has received `name`; returns its data."""
        while (line := await self.line()) is not None:
            if line.startswith("EVENT "):
                event = json.loads(line[len("EVENT ") :])
                if event["event"] == name:
                    return event["args"][0] if event["args"] else None
        raise AssertionError(f"the client ended without {name}: {self.lines}")

    async def finished(self) -> int:
        """Reads the rest of the output; returns the exit code."""
        while await self.line() is not None:
            pass
        return await asyncio.wait_for(self.process.wait(), TIMEOUT)

    def events(self) -> list[tuple[str, object]]:
        found = []
        for line in self.lines:
            if line.startswith("EVENT "):
                event = json.loads(line[len("EVENT ") :])
                found.append((event["event"], event["args"][0] if event["args"] else None))
        return found


@pytest.fixture
async def seed_client(live_pool):
    """`seed_client(scenario, token, transports=None, **env)` starts the seed's client."""
    if not shutil.which("node") or not (CLIENT_DIR / "node_modules" / "socket.io-client").is_dir():
        message = "socket.io-client is not installed: npm ci --prefix tests/socketio_client"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    runs: list[SeedRun] = []

    async def start(scenario: str, token: str, transports: str | None = None, **env) -> SeedRun:
        environment = {key: value for key, value in os.environ.items() if key != "TRANSPORTS"}
        environment.update(
            SERVER_URL=live_pool(),
            TOKEN=token,
            SCENARIO=scenario,
            TIMEOUT_MS=str(TIMEOUT * 1000),
            **({"TRANSPORTS": transports} if transports else {}),
            **{key: str(value) for key, value in env.items()},
        )
        process = await asyncio.create_subprocess_exec(
            "node",
            str(CLIENT_DIR / "seed_client.mjs"),
            cwd=CLIENT_DIR,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
        )
        runs.append(SeedRun(process))
        return runs[-1]

    yield start
    for run in runs:
        if run.process.returncode is None:
            run.process.kill()
            await run.process.wait()


async def token_for(user) -> str:
    return (await sync_to_async(token_pair_issue)(user=user))["accessToken"]


def transport_used(run: SeedRun, transports: str | None) -> None:
    """The client really went over the transports asked for."""
    if transports is None:
        assert "UPGRADED websocket" in run.lines, run.lines
    else:
        assert f"CONNECTED {transports}" in run.lines, run.lines
        assert not any(line.startswith("UPGRADED") for line in run.lines)


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_send_message_streams_the_answer_through_a_confirmation_to_done(
    seed_client, user, fake_gemini, transports
):
    session = await sync_to_async(session_create)(user=user, config={"approvalMode": "default"})
    write = {"name": "write_file", "args": {"file_path": "seed.txt", "content": "from the seed\n"}}
    message = scripted({"text": ["Hello! ", "Writing it."], "calls": [write]}, {"text": "Done."})

    run = await seed_client(
        "chat", await token_for(user), transports, SESSION_ID=session.id, MESSAGE=message
    )

    assert await run.finished() == 0, run.lines
    transport_used(run, transports)
    printed = [line for line in run.lines if not line.startswith(("EVENT", "CONNECTED", "UPGR"))]
    assert printed == [
        "Response: Hello! ",
        "Response: Writing it.",
        "Response: Done.",
        "Response complete",
    ]
    names = [name for name, _ in run.events()]
    # join-session and chat:message went out together; the join was handled first.
    assert names.index("session:joined") < names.index("gemini:content")
    assert [name for name in names if name.startswith("gemini:")] == [
        "gemini:content",
        *CONFIRMED_TOOL_TURN,
    ]
    assert "tool:confirmed" in names
    assert (session_workspace(session) / "seed.txt").read_text() == "from the seed\n"


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_execute_tool_reads_a_workspace_file(seed_client, user, transports):
    session = await sync_to_async(session_create)(user=user)
    (session_workspace(session) / "file.txt").write_text("hello from the workspace\n")

    run = await seed_client(
        "tool",
        await token_for(user),
        transports,
        SESSION_ID=session.id,
        TOOL_PATH="/workspace/file.txt",
    )

    assert await run.finished() == 0, run.lines
    transport_used(run, transports)
    assert "Tool result: hello from the workspace" in run.lines
    names = [name for name, _ in run.events()]
    assert names == [
        "authenticated",
        "session:joined",
        "tool:execution-start",
        "tool:execution-complete",
    ]


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_an_admin_monitors_activity(seed_client, live_pool, admin_user, user, transports):
    run = await seed_client("monitoring", await token_for(admin_user), transports)
    assert await run.event("monitoring:subscribed") == {"types": []}

    status, _, body = await asyncio.to_thread(
        http, "POST", f"{live_pool()}/api/v1/sessions", token=await token_for(user), body={}
    )

    assert status == 201
    assert await run.finished() == 0, run.lines
    transport_used(run, transports)
    event = run.events()[-1]
    assert event[0] == "monitoring:event"
    assert (event[1]["type"], event[1]["action"]) == ("session", "create")
    assert event[1]["sessionId"] == body["sessionId"]
    assert any(line.startswith("Activity:") for line in run.lines)


async def test_an_engineer_is_refused_monitoring(seed_client, user):
    run = await seed_client("monitoring", await token_for(user))

    assert await run.finished() == 1, run.lines
    error = run.events()[-1]
    assert error[0] == "error"
    assert (error[1]["code"], error[1]["event"]) == ("forbidden", "monitoring:subscribe")


@pytest.mark.parametrize("transports", TRANSPORTS)
@pytest.mark.parametrize("token", ["not-a-jwt", "gsk_deadbeef0000.wrong-secret"])
async def test_a_bad_token_is_a_connect_error(seed_client, transports, token):
    run = await seed_client("refused", token, transports)

    assert await run.finished() == 0, run.lines
    refused = [line for line in run.lines if line.startswith("CONNECT_ERROR ")]
    assert len(refused) == 1
    error = json.loads(refused[0][len("CONNECT_ERROR ") :])
    assert error["data"]["code"] == "unauthenticated"
    assert error["message"] == error["data"]["message"]
