"""run_shell_command: gemini-cli's result format (tools/shell.ts) and the bubblewrap sandbox."""

import asyncio
import os
import re
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from chat.agent.tools import shell, tool_catalog, tool_declarations, tool_lookup
from chat.agent.tools.shell import background_stop, root_commands

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


@pytest.fixture
def sandboxed(settings):
    settings.SHELL_SANDBOX = "bwrap"
    settings.SHELL_TIMEOUT_SECONDS = 30


def without_pgid(text: str) -> str:
    """The result without its last line, which must be the process group's id."""
    body, _, last = text.rpartition("\n")
    assert re.fullmatch(r"Process Group PGID: \d+", last), text
    return body


@needs_bwrap
async def test_output_and_file_written_into_the_workspace(call, ws, sandboxed):
    result = await call("run_shell_command", command="echo hello > made.txt && cat made.txt && pwd")
    assert without_pgid(result.output) == "Output: hello\n/workspace"
    assert result.display == "hello\n/workspace"
    assert (ws / "made.txt").read_text() == "hello\n"


@needs_bwrap
async def test_non_zero_exit_code_is_reported(call, sandboxed):
    result = await call("run_shell_command", command="echo oops >&2; exit 3")
    assert result.ok
    assert without_pgid(result.output) == "Output: oops\nExit Code: 3"
    empty = await call("run_shell_command", command="true")
    assert without_pgid(empty.output) == "Output: (empty)"
    silent = await call("run_shell_command", command="exit 4")
    assert silent.display == "Command exited with code: 4"


@needs_bwrap
async def test_ansi_sequences_are_stripped_and_output_trimmed(call, sandboxed):
    result = await call("run_shell_command", command="printf '\\033[31mred\\033[0m\\n\\n  '")
    assert without_pgid(result.output) == "Output: red"


async def test_command_substitution_is_blocked(call, settings):
    """shell.ts execute: detectCommandSubstitution, answered as output, not as an error."""
    settings.SHELL_SANDBOX = "none"
    for command in ("echo $(whoami)", "echo `id`", "diff <(ls) <(ls -a)", 'bash -c "echo $(id)"'):
        result = await call("run_shell_command", command=command)
        assert result.ok
        assert result.output == (
            "Command injection detected: command substitution syntax ($(), backticks, <() or "
            ">()) found in command arguments. On PowerShell, @() array subexpressions and $() "
            "subexpressions are also blocked. This is a security risk and the command was "
            "blocked."
        )
    quoted = await call("run_shell_command", command="echo '$(not run)'")
    assert without_pgid(quoted.output) == "Output: $(not run)"


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
    assert re.sub(r"\nProcess Group PGID: \d+$", "", result.output) == (
        "Output: bash: connect: Connection refused\n"
        f"bash: line 4: /dev/tcp/127.0.0.1/{port}: Connection refused\n"
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
    assert marker in without_pgid(result.output).splitlines()[-1]
    assert not os.path.exists(f"/usr/{marker}")
    assert not os.path.exists(f"/tmp/{marker}")


@needs_bwrap
async def test_server_environment_does_not_leak(call, sandboxed, monkeypatch):
    monkeypatch.setenv("SECRET_PROBE", "hunter2")
    result = await call("run_shell_command", command="env | sort; echo ${SECRET_PROBE:-unset}")
    assert "hunter2" not in result.output
    assert without_pgid(result.output) == (
        "Output: GEMINI_CLI=1\nGIT_PAGER=cat\nHOME=/workspace\nLANG=C.UTF-8\nPAGER=cat\n"
        "PATH=/usr/local/bin:/usr/bin:/bin\nPWD=/workspace\nSHLVL=1\nTERM=xterm-256color\n"
        "_=/usr/bin/env\nunset"
    )


@needs_bwrap
async def test_sandbox_has_no_capabilities(call, sandboxed):
    result = await call("run_shell_command", command="grep CapEff /proc/self/status")
    assert without_pgid(result.output) == "Output: CapEff:\t0000000000000000"


@needs_bwrap
async def test_a_silent_command_stops_after_the_inactivity_timeout(call, settings):
    """shell.ts: the timeout restarts with every output; it is "minutes without output"."""
    settings.SHELL_SANDBOX = "bwrap"
    settings.SHELL_INACTIVITY_TIMEOUT_SECONDS = 1
    marker = f"{uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000 + 1000}"
    started = time.monotonic()
    result = await call("run_shell_command", command=f"echo started; sleep {marker}0")
    assert time.monotonic() - started < 6
    assert result.output == (
        "Command was automatically cancelled because it exceeded the timeout of 0.0 minutes "
        "without output. Below is the output before it was cancelled:\nstarted"
    )
    await _assert_no_process(f"sleep {marker}0")


@needs_bwrap
async def test_output_keeps_a_command_alive_until_the_hard_cap(call, settings):
    settings.SHELL_SANDBOX = "bwrap"
    settings.SHELL_INACTIVITY_TIMEOUT_SECONDS = 1
    settings.SHELL_TIMEOUT_SECONDS = 2.5
    started = time.monotonic()
    result = await call(
        "run_shell_command", command="for i in 1 2 3 4 5 6 7 8; do echo tick; sleep 0.5; done"
    )
    elapsed = time.monotonic() - started
    assert 2 < elapsed < 6
    assert result.output.startswith(
        "Command was automatically cancelled because it exceeded the server's time limit of "
        "2.5 seconds. Below is the output before it was cancelled:\ntick\ntick"
    )


@needs_bwrap
async def test_background_processes_are_listed_and_do_not_outlive_the_command(call, sandboxed):
    marker = f"{uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000 + 2000}"
    started = time.monotonic()
    result = await call("run_shell_command", command=f"sleep {marker}0 & echo spawned")
    assert time.monotonic() - started < 5
    assert re.fullmatch(
        r"Output: spawned\nBackground PIDs: \d+\nProcess Group PGID: \d+", result.output
    )
    await _assert_no_process(f"sleep {marker}0")


@needs_bwrap
async def test_is_background_leaves_a_server_running(call, ctx, sandboxed):
    marker = f"{uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000 + 4000}"
    result = await call(
        "run_shell_command", command=f"echo serving; sleep {marker}0", is_background=True
    )
    assert re.fullmatch(
        r"Command is running in background\. PID: \d+\. Initial output:\nserving\n",
        result.output,
    )
    found = subprocess.run(["pgrep", "-f", f"sleep {marker}0"], capture_output=True, check=False)
    assert found.returncode == 0
    await background_stop(ctx.session_id)
    await _assert_no_process(f"sleep {marker}0")
    quick = await call("run_shell_command", command="echo done", is_background=True)
    assert without_pgid(quick.output) == "Output: done"


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
    assert without_pgid(result.output) == "Output: /workspace/sub"
    missing = await call("run_shell_command", command="pwd", dir_path="nope")
    assert missing.error == "Directory does not exist or is not a directory: /workspace/nope"


@needs_bwrap
async def test_huge_output_is_cut_and_saved_in_the_workspace(call, ws, ctx, sandboxed):
    """tool-executor.ts truncateOutputIfNeeded with fileUtils.ts formatTruncatedToolOutput:
    the first 20% and the last 80% of 40,000 characters, and the full text in a file."""
    result = await call(
        "run_shell_command",
        command="seq 1 20000",
    )
    saved = f"/workspace/.gemini/tmp/tool-outputs/session-{ctx.session_id}/"
    header, _, rest = result.output.partition("\n")
    assert header.startswith(
        "Output too large. Showing first 8,000 and last 32,000 characters. For full output "
        f"see: {saved}run_shell_command"
    )
    full_name = header.rsplit("/", 1)[1]
    full = (ws / ".gemini/tmp/tool-outputs" / f"session-{ctx.session_id}" / full_name).read_text()
    assert full.startswith("Output: 1\n2\n3\n") and "\n20000\nProcess Group PGID: " in full
    assert rest.startswith(full[:8000] + "\n\n... [")
    omitted = len(full) - 40_000
    assert f"... [{omitted:,} characters omitted] ...\n\n" in rest
    assert rest.endswith(full[-32_000:])
    assert result.data["outputFile"].startswith(saved)


async def test_empty_command_is_refused(call, settings):
    settings.SHELL_SANDBOX = "none"
    assert (await call("run_shell_command", command="  ")).error == "Command cannot be empty."


async def test_unsandboxed_mode_runs_with_a_clean_env(call, ws, settings, monkeypatch):
    settings.SHELL_SANDBOX = "none"
    monkeypatch.setenv("SECRET_PROBE", "hunter2")
    result = await call(
        "runShellCommand", command="echo ${SECRET_PROBE:-unset} $HOME; pwd; echo x > f.txt"
    )
    assert without_pgid(result.output) == "Output: unset /workspace\n/workspace"
    assert (ws / "f.txt").read_text() == "x\n"


async def test_unsandboxed_timeout_and_background_children(call, settings):
    settings.SHELL_SANDBOX = "none"
    settings.SHELL_INACTIVITY_TIMEOUT_SECONDS = 1
    started = time.monotonic()
    timed_out = await call("run_shell_command", command="sleep 10")
    assert timed_out.output == (
        "Command was automatically cancelled because it exceeded the timeout of 0.0 minutes "
        "without output. There was no output before it was cancelled."
    )
    background = await call("run_shell_command", command="sleep 10 & echo spawned")
    assert re.fullmatch(
        r"Output: spawned\nBackground PIDs: \d+\nProcess Group PGID: \d+", background.output
    )
    assert time.monotonic() - started < 6


async def test_disabled_without_bubblewrap(call, settings, monkeypatch):
    settings.SHELL_SANDBOX = "bwrap"
    monkeypatch.setattr(shutil, "which", lambda *_args, **_kwargs: None)
    monkeypatch.setattr(shell, "_programs", {})  # what the process looked up before
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
    monkeypatch.setattr(shell, "_programs", {})
    result = await call("run_shell_command", command="echo works")
    assert without_pgid(result.output) == "Output: works"
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
        tool_lookup("run_shell_command").run({"command": f"sleep {marker}0"}, ctx)
    )
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _assert_no_process(f"sleep {marker}0")
