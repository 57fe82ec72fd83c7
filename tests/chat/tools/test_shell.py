"""run_shell_command: gemini-cli's result format and the bubblewrap sandbox around it."""

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from chat.agent.tools import tool_catalog, tool_declarations, tool_lookup
from chat.agent.tools.shell import root_commands

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


@pytest.fixture
def sandboxed(settings):
    settings.SHELL_SANDBOX = "bwrap"
    settings.SHELL_TIMEOUT_SECONDS = 30


@needs_bwrap
async def test_output_and_file_written_into_the_workspace(call, ws, sandboxed):
    result = await call("run_shell_command", command="echo hello > made.txt && cat made.txt && pwd")
    assert result.output == "Output: hello\n/workspace"
    assert result.display == "Command completed."
    assert (ws / "made.txt").read_text() == "hello\n"


@needs_bwrap
async def test_non_zero_exit_code_is_reported(call, sandboxed):
    result = await call("run_shell_command", command="echo oops >&2; exit 3")
    assert result.ok
    assert result.output == "Output: oops\nExit Code: 3"
    assert result.display == "Command exited with code: 3"
    empty = await call("run_shell_command", command="true")
    assert empty.output == "Output: (empty)"


@needs_bwrap
async def test_host_etc_passwd_and_private_dirs_are_invisible(call, sandboxed):
    result = await call(
        "run_shell_command",
        command="cat /etc/passwd; cat /etc/shadow; ls /root; ls /home; ls /work; ls /",
    )
    assert "cat: /etc/passwd: No such file or directory" in result.output
    assert "cat: /etc/shadow: No such file or directory" in result.output
    assert "ls: cannot access '/root': No such file or directory" in result.output
    assert "ls: cannot access '/home': No such file or directory" in result.output
    assert "ls: cannot access '/work': No such file or directory" in result.output
    assert "root:x:0" not in result.output


@needs_bwrap
async def test_sibling_workspace_is_invisible(call, sandboxed, workspaces):
    result = await call(
        "run_shell_command", command=f"cat {workspaces[1]}/secret.txt; ls /workspace/.."
    )
    assert "sibling secret" not in result.output
    assert "No such file or directory" in result.output


@needs_bwrap
async def test_network_is_unreachable(call, sandboxed):
    """A listener of the test's own on the host's loopback is out of the command's reach, and
    the sandbox has no interface but a loopback of its own. No probe leaves 127.0.0.1."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = await call(
            "run_shell_command",
            command=(
                f"(echo hi > /dev/tcp/127.0.0.1/{port}) 2>&1 && echo CONNECTED; "
                'python3 -c "import socket; '
                f"socket.create_connection(('127.0.0.1', {port}), 2)\" 2>&1 | tail -1; "
                "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"
            ),
        )
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing came in from the sandbox
        # The listener itself works: the host reaches it.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            listener.setblocking(True)
            listener.settimeout(2)
            accepted, _ = listener.accept()
            accepted.close()
    assert "CONNECTED" not in result.output
    assert result.output == (
        "Output: bash: connect: Connection refused\n"
        f"bash: line 1: /dev/tcp/127.0.0.1/{port}: Connection refused\n"
        "ConnectionRefusedError: [Errno 111] Connection refused\n"
        "lo"
    )


@needs_bwrap
async def test_writes_outside_the_workspace_fail_or_vanish(call, sandboxed):
    marker = f"sandbox-probe-{uuid.uuid4().hex}"
    result = await call(
        "run_shell_command",
        command=f"touch /usr/{marker}; touch /tmp/{marker} && ls /tmp",
    )
    assert f"touch: cannot touch '/usr/{marker}': Read-only file system" in result.output
    assert marker in result.output.splitlines()[-1]
    assert not os.path.exists(f"/usr/{marker}")
    assert not os.path.exists(f"/tmp/{marker}")


@needs_bwrap
async def test_server_environment_does_not_leak(call, sandboxed, monkeypatch):
    monkeypatch.setenv("SECRET_PROBE", "hunter2")
    result = await call("run_shell_command", command="env | sort; echo ${SECRET_PROBE:-unset}")
    assert "hunter2" not in result.output
    assert result.output == (
        "Output: HOME=/workspace\nLANG=C.UTF-8\nPATH=/usr/local/bin:/usr/bin:/bin\n"
        "PWD=/workspace\nSHLVL=1\nTERM=dumb\n_=/usr/bin/env\nunset"
    )


@needs_bwrap
async def test_sandbox_has_no_capabilities(call, sandboxed):
    result = await call("run_shell_command", command="grep CapEff /proc/self/status")
    assert result.output == "Output: CapEff:\t0000000000000000"


@needs_bwrap
async def test_timeout_kills_the_command(call, settings):
    settings.SHELL_SANDBOX = "bwrap"
    settings.SHELL_TIMEOUT_SECONDS = 1
    marker = f"{uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000 + 1000}"
    started = time.monotonic()
    result = await call("run_shell_command", command=f"echo started; sleep {marker}0")
    assert time.monotonic() - started < 6
    assert result.output == (
        "Command was automatically cancelled because it exceeded the timeout of 1 seconds. "
        "Below is the output before it was cancelled:\nstarted"
    )
    assert result.display == "Command timed out after 1 seconds."
    await _assert_no_process(f"sleep {marker}0")


@needs_bwrap
async def test_background_processes_do_not_outlive_the_command(call, sandboxed):
    marker = f"{uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000 + 2000}"
    started = time.monotonic()
    result = await call("run_shell_command", command=f"sleep {marker}0 & echo spawned")
    assert time.monotonic() - started < 5
    assert result.output == "Output: spawned"
    await _assert_no_process(f"sleep {marker}0")


async def _assert_no_process(pattern: str) -> None:
    for _ in range(20):
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False)
        if found.returncode != 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"a process matching {pattern!r} is still running")


@needs_bwrap
async def test_dir_path_runs_in_a_workspace_subdirectory(call, ws, sandboxed):
    (ws / "sub").mkdir()
    result = await call("run_shell_command", command="pwd", dir_path="sub")
    assert result.output == "Output: /workspace/sub"
    missing = await call("run_shell_command", command="pwd", dir_path="nope")
    assert missing.error == "Directory does not exist or is not a directory: /workspace/nope"


@needs_bwrap
async def test_huge_output_is_cut_for_the_model(call, sandboxed):
    result = await call("run_shell_command", command="head -c 3000000 /dev/zero | tr '\\0' a")
    assert "[output truncated: " in result.output
    assert len(result.output) < 41_000
    assert result.output.endswith("a" * 100)


async def test_empty_command_is_refused(call, settings):
    settings.SHELL_SANDBOX = "none"
    assert (await call("run_shell_command", command="  ")).error == "Command cannot be empty."


async def test_unsandboxed_mode_runs_with_a_clean_env(call, ws, settings, monkeypatch):
    settings.SHELL_SANDBOX = "none"
    monkeypatch.setenv("SECRET_PROBE", "hunter2")
    result = await call(
        "runShellCommand", command="echo ${SECRET_PROBE:-unset} $HOME; pwd; echo x > f.txt"
    )
    assert result.output == "Output: unset /workspace\n/workspace"
    assert (ws / "f.txt").read_text() == "x\n"


async def test_unsandboxed_timeout_and_background_children(call, settings):
    settings.SHELL_SANDBOX = "none"
    settings.SHELL_TIMEOUT_SECONDS = 1
    started = time.monotonic()
    timed_out = await call("run_shell_command", command="sleep 10")
    assert timed_out.output == (
        "Command was automatically cancelled because it exceeded the timeout of 1 seconds. "
        "There was no output before it was cancelled."
    )
    background = await call("run_shell_command", command="sleep 10 & echo spawned")
    assert background.output == "Output: spawned"
    assert time.monotonic() - started < 6


async def test_disabled_without_bubblewrap(call, settings, monkeypatch):
    settings.SHELL_SANDBOX = "bwrap"
    monkeypatch.setattr(shutil, "which", lambda *_args, **_kwargs: None)
    result = await call("run_shell_command", command="echo hi")
    assert result.error == (
        "Shell commands are disabled on this server: the bubblewrap sandbox (bwrap) is not "
        "installed. An administrator can install bubblewrap, or set SHELL_SANDBOX=none to run "
        "commands without a sandbox (unsafe)."
    )
    entry = next(e for e in tool_catalog() if e["name"] == "run_shell_command")
    assert entry["available"] is False
    assert "run_shell_command" not in [d["name"] for d in tool_declarations()]


async def test_none_mode_works_without_bubblewrap(call, settings, monkeypatch):
    settings.SHELL_SANDBOX = "none"
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda cmd, *a, **k: None if cmd == "bwrap" else real_which(cmd, *a, **k)
    )
    result = await call("run_shell_command", command="echo works")
    assert result.output == "Output: works"
    assert next(e for e in tool_catalog() if e["name"] == "run_shell_command")["available"]


def test_confirmation_details_name_the_root_commands(ctx, ws, settings):
    settings.SHELL_SANDBOX = "none"
    (ws / "src").mkdir()
    details = tool_lookup("run_shell_command").confirmation_details(
        {"command": "FOO=1 ls -la | grep x > out.txt && git status", "dir_path": "src"}, ctx
    )
    assert details == {
        "type": "exec",
        "command": "FOO=1 ls -la | grep x > out.txt && git status",
        "rootCommand": "ls, grep, git",
        "dirPath": "/workspace/src",
    }


def test_root_commands_handles_unbalanced_quotes():
    assert root_commands("echo 'unterminated") == ["echo"]
    assert root_commands("cd app; npm test") == ["cd", "npm"]


@needs_bwrap
async def test_cancelling_the_call_kills_the_command(ctx, sandboxed):
    marker = f"{uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000 + 3000}"
    task = asyncio.create_task(
        tool_lookup("run_shell_command").execute({"command": f"sleep {marker}0"}, ctx)
    )
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _assert_no_process(f"sleep {marker}0")
