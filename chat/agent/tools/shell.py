"""The run_shell_command tool and the bubblewrap sandbox its commands run in."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass

from django.conf import settings

from sessions_app.workspace import PathRefused, Workspace, relative_path

from .base import WORKSPACE_ROOT, Tool, ToolContext, ToolKind, ToolResult, tool_error
from .sandbox import (
    SANDBOX_UID,
    SandboxRefused,
    host_identity,
    limit_argv,
    sandbox_limits,
    workspace_hand_over,
)

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
OUTPUT_READ_LIMIT = 1024 * 1024
# After the command's own process ends, how long trailing output may take to arrive.
OUTPUT_GRACE_SECONDS = 0.5
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# Only what dynamically linked programs and Debian's alternatives symlinks need; never all of
# /etc, which holds passwd, shadow and the host's configuration.
ETC_ENTRIES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
)


def sandbox_mode() -> str:
    return str(getattr(settings, "SHELL_SANDBOX", "bwrap"))


def timeout_seconds() -> float:
    return float(getattr(settings, "SHELL_TIMEOUT_SECONDS", 120))


def prlimit_path() -> str | None:
    """prlimit from a directory the sandbox mounts, so the same path works inside it."""
    return shutil.which("prlimit", path=SANDBOX_PATH)


def shell_unavailable_reason() -> str | None:
    mode = sandbox_mode()
    if mode == "none":
        return None
    if mode != "bwrap":
        return (
            "Shell commands are disabled on this server: the SHELL_SANDBOX setting "
            f'"{mode}" is not one of "bwrap" or "none".'
        )
    if shutil.which("bwrap") is None:
        return (
            "Shell commands are disabled on this server: the bubblewrap sandbox (bwrap) is not "
            "installed. An administrator can install bubblewrap, or set SHELL_SANDBOX=none to "
            "run commands without a sandbox (unsafe)."
        )
    if prlimit_path() is None:
        return (
            "Shell commands are disabled on this server: prlimit (from util-linux), which sets "
            "the sandbox's limits, is not installed. An administrator can install util-linux."
        )
    return None


@functools.lru_cache(maxsize=8)
def _bwrap_supports(bwrap: str, option: str) -> bool:
    result = subprocess.run(
        [bwrap, "--help"], capture_output=True, text=True, timeout=10, check=False
    )
    return option in result.stdout + result.stderr


def bwrap_argv(bwrap: str, workspace_host: str, cwd: str, command: str) -> list[str]:
    """The bubblewrap command line: a fresh read-only root with read-only system dirs, no
    network, no host processes, no capabilities, an unprivileged uid, size-capped /tmp and
    /dev/shm, the workspace as the only project directory, and the limits set by prlimit."""
    limits = sandbox_limits()
    tmpfs_size = str(limits.tmp_bytes)
    argv = [
        bwrap,
        "--unshare-all",  # user, ipc, pid, net, uts, cgroup namespaces: no network at all
        "--unshare-user",  # fail rather than run without a user namespace
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--setenv",
        "PATH",
        SANDBOX_PATH,
        "--setenv",
        "HOME",
        WORKSPACE_ROOT,
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--setenv",
        "TERM",
        "dumb",
    ]
    if _bwrap_supports(bwrap, "--disable-userns"):
        # Nested user namespaces would hand the command a fresh set of capabilities.
        argv.insert(3, "--disable-userns")
    argv += ["--ro-bind", "/usr", "/usr"]
    for path in SYSTEM_DIRS + ETC_ENTRIES:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            argv += ["--ro-bind", path, path]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        # Every writable filesystem in RAM is capped: /tmp and /dev/shm by size, the root
        # and /dev (both tmpfs made by bwrap) by being read-only once set up.
        "--perms",
        "1777",
        "--size",
        tmpfs_size,
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/dev",
        "--perms",
        "1777",
        "--size",
        tmpfs_size,
        "--tmpfs",
        "/tmp",
        "--bind",
        workspace_host,
        WORKSPACE_ROOT,
        "--remount-ro",
        "/",
        "--chdir",
        cwd,
        *limit_argv(prlimit_path() or "prlimit", limits),
        "bash",
        "-c",
        command,
    ]
    return argv


def root_commands(command: str) -> list[str]:
    """The command names a user approves: the first word of each pipeline element."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        first = command.split()
        return first[:1]
    roots: list[str] = []
    expect_command = True
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
            continue
        if token and set(token) <= set(";&|()"):
            expect_command = True
            continue
        if token and set(token) <= set("<>&"):
            skip_next = True  # the redirection target is a file name, not a command
            continue
        if expect_command:
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
                continue
            if token not in roots:
                roots.append(token)
            expect_command = False
    return roots


@dataclass
class ProcessOutcome:
    output: bytes
    omitted: int
    exit_code: int | None
    signal: int | None
    timed_out: bool


class _OutputCollector:
    """Keeps the first and last half megabyte of a stream and counts what is dropped between."""

    def __init__(self, limit: int):
        self.half = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.omitted = 0

    def add(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail += chunk
        if len(self.tail) > self.half:
            drop = len(self.tail) - self.half
            del self.tail[:drop]
            self.omitted += drop

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.add(chunk)

    def result(self) -> bytes:
        if not self.omitted:
            return bytes(self.head + self.tail)
        marker = f"\n... [output truncated: {self.omitted} bytes omitted] ...\n".encode()
        return bytes(self.head) + marker + bytes(self.tail)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_process(
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    timeout: float,
    identity: tuple[int, int] | None = None,
) -> ProcessOutcome:
    """Run argv in its own process group; on timeout or cancellation the group is killed.

    No process of the command outlives it: in the sandbox the PID namespace ends with the
    command, and without it the process group is killed once the command has exited.
    With an identity (host uid, gid), argv runs as that user with no supplementary groups.
    """
    loop = asyncio.get_running_loop()
    # Our own pipe rather than asyncio's: Process.wait() on an asyncio pipe also waits for
    # every background child holding the pipe, which would turn `cmd &` into a timeout.
    read_fd, write_fd = os.pipe()
    credentials: dict = {}
    try:
        if identity is not None:
            uid, gid = identity
            # Else `echo x > /dev/stderr` is refused: reopening a pipe checks its owner.
            os.fchown(write_fd, uid, gid)
            credentials = {"user": uid, "group": gid, "extra_groups": []}
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            cwd=cwd,
            env=env,
            start_new_session=True,
            **credentials,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    stream = asyncio.StreamReader(limit=OUTPUT_READ_LIMIT)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(read_fd, "rb", buffering=0)
    )
    collector = _OutputCollector(OUTPUT_READ_LIMIT)
    reader = asyncio.create_task(collector.drain(stream))
    timed_out = False
    try:
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            timed_out = True
            _kill_group(process.pid)
            await process.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), OUTPUT_GRACE_SECONDS)
    finally:
        _kill_group(process.pid)
        if not reader.done():
            # A child that left the process group may still hold the pipe open.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(reader, 1)
        transport.close()
        if process.returncode is None:
            await process.wait()
    code = process.returncode
    return ProcessOutcome(
        output=collector.result(),
        omitted=collector.omitted,
        exit_code=code if code is not None and code >= 0 else None,
        signal=-code if code is not None and code < 0 else None,
        timed_out=timed_out,
    )


def _decode_output(data: bytes) -> str:
    if b"\x00" in data[:4096]:
        return f"[Binary output detected: {len(data)} bytes not shown.]"
    return data.decode("utf-8", errors="replace").rstrip()


class ShellTool(Tool):
    name = "run_shell_command"
    display_name = "Shell"
    aliases = ("runShellCommand",)
    arg_aliases = {"directory": "dir_path", "path": "dir_path", "cmd": "command"}
    kind = ToolKind.EXECUTE
    description = (
        "This tool executes a given shell command as `bash -c <command>`. Command can start "
        "background processes using `&`, but no process outlives the command. Command runs "
        "in a sandbox: the project is at `/workspace` (the only writable directory besides a "
        "private `/tmp`), there is no network access, and commands that run too long are "
        "cancelled.\n\n"
        "      The following information is returned:\n\n"
        "      Output: Combined stdout/stderr. Can be `(empty)` or partial on error.\n"
        "      Exit Code: Only included if non-zero (command failed).\n"
        "      Error: Only included if a process-level error occurred (e.g., spawn failure).\n"
        "      Signal: Only included if process was terminated by a signal."
    )
    parameters = {
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "description": "Exact bash command to execute as `bash -c <command>`",
            },
            "description": {
                "type": "string",
                "description": (
                    "Brief description of the command for the user. Be specific and concise. "
                    "Ideally a single sentence. Can be up to 3 sentences for clarity. No line "
                    "breaks."
                ),
            },
            "dir_path": {
                "type": "string",
                "description": (
                    "(OPTIONAL) The path of the directory to run the command in. If not "
                    "provided, the project root directory is used. Must be a directory within "
                    "the workspace and must already exist."
                ),
            },
        },
        "required": ["command"],
    }

    def unavailable_reason(self) -> str | None:
        return shell_unavailable_reason()

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        if not args["command"].strip():
            return "Command cannot be empty."
        reason = self.unavailable_reason()
        if reason:
            return reason
        try:
            self._cwd(args, ctx)
        except PathRefused as refused:
            return str(refused)
        return None

    @staticmethod
    def _cwd(args: dict, ctx: ToolContext) -> tuple[str, str]:
        """(host directory, /workspace directory) to run in; raises PathRefused."""
        workspace = Workspace(ctx.workspace)
        shown = workspace.virtual(args.get("dir_path") or ".")
        try:
            # The real path, so a symlinked dir_path is entered the same way inside the sandbox.
            real = workspace.real_dir(shown)
        except OSError:
            raise PathRefused(f"Directory does not exist or is not a directory: {shown}") from None
        return os.path.join(ctx.workspace, relative_path(real)), real

    def describe(self, args: dict, ctx: ToolContext) -> str:
        text = str(args.get("command", ""))
        if args.get("dir_path"):
            text += f" [in {args['dir_path']}]"
        else:
            text += f" [current working directory {WORKSPACE_ROOT}]"
        if args.get("description"):
            text += f" ({str(args['description']).replace(chr(10), ' ')})"
        return text

    def confirmation_details(self, args: dict, ctx: ToolContext) -> dict:
        command = str(args.get("command", ""))
        try:
            _, dir_virtual = self._cwd(args, ctx)
        except PathRefused:
            dir_virtual = str(args.get("dir_path") or WORKSPACE_ROOT)
        roots = root_commands(command)
        return {
            "type": "exec",
            "command": command,
            "rootCommand": ", ".join(roots) or "shell command",
            "dirPath": dir_virtual,
        }

    async def run(self, args: dict, ctx: ToolContext) -> ToolResult:
        reason = self.unavailable_reason()
        if reason:
            return tool_error(reason, "Shell commands are disabled on this server.")
        try:
            cwd_host, cwd_virtual = await asyncio.to_thread(self._cwd, args, ctx)
        except PathRefused as refused:
            return tool_error(str(refused), "Path not in workspace.")
        command = args["command"]
        env = {"PATH": SANDBOX_PATH, "LANG": "C.UTF-8", "TERM": "dumb"}
        identity = None
        if sandbox_mode() == "bwrap":
            bwrap = shutil.which("bwrap") or "bwrap"
            root = os.path.realpath(ctx.workspace)
            identity = host_identity()
            if identity is not None:
                try:
                    await asyncio.to_thread(workspace_hand_over, root, *identity)
                except SandboxRefused as refused:
                    return tool_error(str(refused), "Shell commands are unavailable.")
            argv = await asyncio.to_thread(bwrap_argv, bwrap, root, cwd_virtual, command)
            env["HOME"] = WORKSPACE_ROOT
            spawn_cwd = root
        else:
            # Unsafe by design: SHELL_SANDBOX=none runs on the host with only a clean env.
            argv = ["bash", "-c", command]
            env["HOME"] = os.path.realpath(ctx.workspace)
            spawn_cwd = cwd_host

        timeout = timeout_seconds()
        try:
            outcome = await run_process(argv, spawn_cwd, env, timeout, identity)
        except OSError as exc:
            text = f"Output: (empty)\nError: {exc.strerror or exc}"
            return tool_error(text, f"Command failed: {exc.strerror or exc}")
        result = self._result(outcome, timeout)
        # The command may have filled the workspace: its files stay, and the model is told.
        over = await asyncio.to_thread(Workspace(ctx.workspace).over_quota)
        if over:
            return tool_error(f"{result.output}\nError: {over}", "Workspace quota exceeded.")
        return result

    @staticmethod
    def _result(outcome: ProcessOutcome, timeout: float) -> ToolResult:
        output = _decode_output(outcome.output)
        if outcome.timed_out:
            shown = f"{timeout:g}"
            text = (
                "Command was automatically cancelled because it exceeded the timeout of "
                f"{shown} seconds."
            )
            if output.strip():
                text += f" Below is the output before it was cancelled:\n{output}"
            else:
                text += " There was no output before it was cancelled."
            return ToolResult(output=text, display=f"Command timed out after {shown} seconds.")

        parts = [f"Output: {output or '(empty)'}"]
        if outcome.exit_code:
            parts.append(f"Exit Code: {outcome.exit_code}")
        if outcome.signal:
            parts.append(f"Signal: {outcome.signal}")
        if outcome.signal:
            display = f"Command terminated by signal: {outcome.signal}"
        elif outcome.exit_code:
            display = f"Command exited with code: {outcome.exit_code}"
        else:
            display = "Command completed."
        return ToolResult(output="\n".join(parts), display=display)
