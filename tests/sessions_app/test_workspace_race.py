"""The symlink-swap race, for real: a command in the bubblewrap sandbox swaps a directory with a
link to a host directory (renameat2 RENAME_EXCHANGE) as fast as it can, while the files API and
the tools read, write, list, search and delete through that directory. Nothing may escape."""

import asyncio
import hashlib
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

from chat.agent.tools import ToolContext, tool_run
from sessions_app.workspace import session_workspace

pytestmark = [
    # Transactional: POST /tools/execute reaches the database through channels'
    # database_sync_to_async, which closes a connection left inside a test's transaction.
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed"),
]

MIN_ATTEMPTS = 2000
MIN_REST_ATTEMPTS = 200
# The attack stops once both targets are met, or after ATTACK_SECONDS.
TARGET_ATTEMPTS = 2400
TARGET_REST_ATTEMPTS = 300
ATTACK_SECONDS = 50
SWAPPER_SECONDS = 90  # its own deadline: it also stops when the test writes "stop"

# Runs inside the sandbox: python3 from the read-only /usr, renameat2 through libc.
SWAPPER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
end = time.monotonic() + float(sys.argv[1])
swaps = 0
open("started", "w").close()
while time.monotonic() < end and not os.path.exists("stop"):
    for _ in range(500):
        if libc.renameat2(AT_FDCWD, b"flip", AT_FDCWD, b"link", RENAME_EXCHANGE) != 0:
            sys.exit("renameat2: " + os.strerror(ctypes.get_errno()))
        swaps += 1
print("swaps", swaps)
"""


def _snapshot(root: Path, skip: Path) -> dict:
    """Every path under root (but `skip`) with a digest of its content."""
    found = {}
    for directory, dirnames, filenames in os.walk(root):
        if Path(directory) == skip or skip in Path(directory).parents:
            continue
        for name in dirnames + filenames:
            path = Path(directory) / name
            if path == skip:
                continue
            if path.is_symlink():
                found[str(path)] = "link:" + os.readlink(path)
            elif path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[str(path)] = "dir"
    return found


def _first_words(error: str) -> str:
    """An error's kind: its text up to the path it names."""
    return error.split(":")[0][:60]


class Tally:
    """What the attackers saw: attempts, statuses, and anything that proves an escape."""

    def __init__(self, canary: str):
        self.canary = canary
        self.lock = threading.Lock()
        self.attempts = 0
        self.rest = 0
        self.outcomes: dict[str, int] = {}
        self.leaks: list[str] = []
        self.server_errors: list[str] = []

    def add(
        self, what: str, outcome: str, text: str, *, rest: bool = False, server_error: bool = False
    ) -> None:
        with self.lock:
            self.attempts += 1
            self.rest += rest
            key = f"{what}:{outcome}"
            self.outcomes[key] = self.outcomes.get(key, 0) + 1
            if self.canary in text or "host-only-marker" in text:
                self.leaks.append(f"{what} -> {outcome}: {text[:200]}")
            if server_error:
                self.server_errors.append(f"{what} -> {outcome}: {text[:300]}")


def test_swapping_a_directory_with_a_host_link_never_lets_anything_through(
    auth_client, session, tmp_path, settings
):
    settings.SHELL_SANDBOX = "bwrap"
    settings.RATE_LIMIT_MAX_REQUESTS = 1_000_000  # the attack is the point, not the rate limit
    settings.SHELL_TIMEOUT_SECONDS = SWAPPER_SECONDS + 30
    workspace = session_workspace(session)
    canary = f"CANARY-{uuid.uuid4().hex}"

    host = tmp_path / "host"
    host.mkdir()
    (host / "x").write_text(canary)
    (host / "host-only-marker").write_text(canary)
    for k in range(200):
        (host / f"c{k:03}").write_text(canary)
    (workspace / "flip").mkdir()
    (workspace / "flip" / "x").write_text("inside")
    for k in range(200):
        (workspace / "flip" / f"c{k:03}").write_text("inside")
    (workspace / "link").symlink_to(host)
    (workspace / "swapper.py").write_text(SWAPPER)
    outside_before = _snapshot(tmp_path, skip=workspace)

    context = ToolContext(workspace=workspace, session_id=str(session.id))
    swapper: dict = {}
    thread = threading.Thread(
        target=lambda: swapper.update(
            result=asyncio.run(
                tool_run(
                    "run_shell_command",
                    {"command": f"python3 swapper.py {SWAPPER_SECONDS}"},
                    context,
                )
            )
        )
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not (workspace / "started").exists():
        assert time.monotonic() < deadline, f"the swapper did not start: {swapper}"
        time.sleep(0.05)

    tally = Tally(canary)
    stop = threading.Event()
    started = time.monotonic()

    def done() -> bool:
        if time.monotonic() - started > ATTACK_SECONDS:
            return True
        return tally.attempts >= TARGET_ATTEMPTS and tally.rest >= TARGET_REST_ATTEMPTS

    async def tool_attacks(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            k = (n * 7 + worker) % 200
            calls = [
                ("read_file", {"file_path": "flip/x"}),
                ("read_file", {"file_path": f"/workspace/flip/c{k:03}"}),
                ("write_file", {"file_path": f"flip/t{worker}-{n}.txt", "content": "tool"}),
                (
                    "replace",
                    {"file_path": f"flip/c{k:03}", "old_string": canary, "new_string": "pwned"},
                ),
                ("list_directory", {"dir_path": "flip"}),
                ("grep_search", {"pattern": "CANARY", "dir_path": "flip"}),
                ("glob", {"pattern": "flip/**"}),
                ("read_many_files", {"include": ["flip/**"]}),
            ]
            name, args = calls[n % len(calls)]
            result = await tool_run(name, args, context)
            text = f"{result.output}\n{result.error or ''}"
            outcome = "ok" if result.ok else _first_words(result.error or "")
            # "Error executing tool" is the tools' own 500: an exception nobody expected.
            unexpected = (result.error or "").startswith("Error executing tool")
            tally.add(name, outcome, text, server_error=unexpected)

    def tool_worker(worker: int) -> None:
        asyncio.run(tool_attacks(worker))

    tool_threads = [threading.Thread(target=tool_worker, args=(w,)) for w in range(1)]
    for worker in tool_threads:
        worker.start()

    files = f"/api/v1/sessions/{session.id}/files"
    content = f"{files}/content"
    n = 0
    try:
        while not done():
            n += 1
            k = n % 200
            step = n % 8
            if step == 0:
                response = auth_client.get(content, {"path": "flip/x"})
                what = "download"
            elif step == 1:
                response = auth_client.get(content, {"path": f"flip/c{k:03}"})
                what = "download"
            elif step == 2:
                response = auth_client.generic(
                    "PUT", f"{content}?path=flip/w{n}.txt", b"written", "application/octet-stream"
                )
                what = "upload"
            elif step == 3:
                response = auth_client.delete(f"{content}?path=flip/c{k:03}")
                what = "delete"
            elif step == 4:
                response = auth_client.delete(f"{content}?path=flip/w{n - 2}.txt")
                what = "delete"
            elif step == 5:
                response = auth_client.get(files, {"path": "flip"})
                what = "list"
            elif step == 6:
                response = auth_client.post(
                    "/api/v1/tools/execute",
                    {"sessionId": str(session.id), "name": "readFile", "args": {"path": "flip/x"}},
                    format="json",
                )
                what = "tools/execute read"
            else:
                response = auth_client.post(
                    "/api/v1/tools/execute",
                    {
                        "sessionId": str(session.id),
                        "name": "write_file",
                        "args": {"file_path": f"flip/e{n}.txt", "content": "via REST"},
                    },
                    format="json",
                )
                what = "tools/execute write"
            if response.streaming:
                # The test client closes the file once the content is consumed.
                body = b"".join(response.streaming_content).decode(errors="replace")
            else:
                body = response.content.decode(errors="replace")
            tally.add(
                what,
                str(response.status_code),
                body,
                rest=True,
                server_error=response.status_code >= 500,
            )
    finally:
        stop.set()
        for worker in tool_threads:
            worker.join(timeout=60)
        (workspace / "stop").touch()
        thread.join(timeout=SWAPPER_SECONDS + 60)

    elapsed = time.monotonic() - started
    result = swapper["result"]
    assert "swaps" in result.output, result
    swaps = int(result.output.rsplit("swaps", 1)[1].split()[0])
    summary = (
        f"{tally.attempts} attempts ({tally.rest} over REST) in {elapsed:.1f}s, {swaps} swaps, "
        f"{tally.outcomes}"
    )
    print(summary)  # shown with -rP: how hard the race was run
    assert tally.attempts >= MIN_ATTEMPTS, summary
    assert tally.rest >= MIN_REST_ATTEMPTS, summary
    assert swaps > 10_000, summary
    assert tally.leaks == [], summary
    assert tally.server_errors == [], summary
    assert _snapshot(tmp_path, skip=workspace) == outside_before, summary
    assert sorted(os.listdir(host)) == sorted(
        ["x", "host-only-marker", *(f"c{k:03}" for k in range(200))]
    )
    # The race was live: the same read both reached the workspace's file and was refused.
    assert tally.outcomes.get("download:200", 0) > 0, summary
    assert tally.outcomes.get("download:400", 0) > 0, summary
    assert tally.outcomes.get("read_file:ok", 0) > 0, summary
    assert tally.outcomes.get("read_file:Path not in workspace", 0) > 0, summary
    # No temporary file of an interrupted write is left behind.
    leftovers = [p for p in workspace.rglob(".gw-*") if not p.is_symlink()]
    assert leftovers == []
