"""The run_shell_command tool (gemini-cli tools/shell.ts) and the bubblewrap sandbox its commands
run in.

As gemini-cli: the result lists Output, Error, Exit Code, Signal, Background PIDs and the
Process Group PGID; a command is stopped after SHELL_INACTIVITY_TIMEOUT_SECONDS (5 minutes)
without output; `is_background` leaves a server or watcher running after a short look at its
first output. This server adds a hard cap, SHELL_TIMEOUT_SECONDS, on any one command.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from django.conf import settings

from sessions_app.workspace import PathRefused, Workspace, relative_path

from .base import WORKSPACE_ROOT, Tool, ToolContext, ToolKind, ToolResult, tool_error
from .fs import strip_ansi
from .sandbox import (
    SANDBOX_UID,
    SandboxRefused,
    host_identity,
    limit_argv,
    sandbox_limits,
    workspace_hand_over,
)

logger = logging.getLogger(__name__)

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# gemini-cli keeps the last 16 MB of a command's output (MAX_CHILD_PROCESS_BUFFER_SIZE).
OUTPUT_BUFFER_CHARS = 16 * 1024 * 1024
BINARY_SNIFF_BYTES = 4096
# After the command's own process ends, how long trailing output may take to arrive.
OUTPUT_GRACE_SECONDS = 0.5
BACKGROUND_DELAY_MS = 200
BACKGROUND_LIMIT_PER_SESSION = 5
BASH_SHOPT_GUARD = "shopt -u promptvars nullglob extglob nocaseglob dotglob;"
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
COMMAND_SUBSTITUTION_BLOCKED = (
    "Command injection detected: command substitution syntax ($(), backticks, <() or >()) "
    "found in command arguments. On PowerShell, @() array subexpressions and $() "
    "subexpressions are also blocked. This is a security risk and the command was blocked."
)
_SHELL_WRAPPER = re.compile(
    r"^\s*(?:(?:(?:\S+/)?(?:sh|bash|zsh))\s+-c|cmd\.exe\s+/c|powershell(?:\.exe)?\s+"
    r"(?:-NoProfile\s+)?-Command|pwsh(?:\.exe)?\s+(?:-NoProfile\s+)?-Command)\s+",
    re.IGNORECASE,
)


def sandbox_mode() -> str:
    return str(getattr(settings, "SHELL_SANDBOX", "bwrap"))


def timeout_seconds() -> float:
    """The hard cap on one command (or one background command), whatever its output."""
    return float(getattr(settings, "SHELL_TIMEOUT_SECONDS", 3600))


def inactivity_seconds() -> float:
    return float(getattr(settings, "SHELL_INACTIVITY_TIMEOUT_SECONDS", 300))


# How long a lookup of the sandbox's programs is trusted: every turn asks whether the shell tool
# is available, and a PATH search is a few dozen system calls; an installed bubblewrap is seen
# within this time.
PROGRAM_LOOKUP_SECONDS = 30.0
_programs: dict[tuple[str, str | None], tuple[float, str | None]] = {}


def _program(name: str, path: str | None = None) -> str | None:
    """`shutil.which(name, path=path)`, looked up again at most every PROGRAM_LOOKUP_SECONDS."""
    now = time.monotonic()
    found = _programs.get((name, path))
    if found is None or now - found[0] > PROGRAM_LOOKUP_SECONDS:
        found = _programs[(name, path)] = (now, shutil.which(name, path=path))
    return found[1]


def prlimit_path() -> str | None:
    """prlimit from a directory the sandbox mounts, so the same path works inside it."""
    return _program("prlimit", SANDBOX_PATH)


def shell_unavailable_reason() -> str | None:
    mode = sandbox_mode()
    if mode == "none":
        return None
    if mode != "bwrap":
        return (
            "Shell commands are disabled on this server: the SHELL_SANDBOX setting "
            f'"{mode}" is not one of "bwrap" or "none".'
        )
    if _program("bwrap") is None:
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


def bwrap_argv(
    bwrap: str,
    workspace_host: str,
    cwd: str,
    program: list[str],
    binds: tuple[tuple[str, str], ...] = (),
) -> list[str]:
    """The bubblewrap command line: a fresh read-only root with read-only system dirs, no
    network, no host processes, no capabilities, an unprivileged uid, size-capped /tmp and
    /dev/shm, the workspace as the only project directory, and the limits set by prlimit."""
    limits = sandbox_limits()
    tmpfs_size = str(limits.tmp_bytes)
    argv = [
        bwrap,
        "--unshare-all",  # user, ipc, pid, net, uts, cgroup namespaces: no network at all
        "--unshare-user",  # fail rather than run without a user namespace
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
    ]
    for name, value in sandbox_env(WORKSPACE_ROOT).items():
        argv += ["--setenv", name, value]
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
    ]
    for host, inside in binds:
        argv += ["--bind", host, inside]
    argv += [
        "--bind",
        workspace_host,
        WORKSPACE_ROOT,
        "--remount-ro",
        "/",
        "--chdir",
        cwd,
        *limit_argv(prlimit_path() or "prlimit", limits),
        *program,
    ]
    return argv


def sandbox_env(home: str) -> dict[str, str]:
    """The command's whole environment: no server secrets, gemini-cli's pager settings."""
    return {
        "PATH": SANDBOX_PATH,
        "HOME": home,
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "PAGER": "cat",
        "GIT_PAGER": "cat",
        "GEMINI_CLI": "1",
    }


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


def strip_shell_wrapper(command: str) -> str:
    """`bash -c "cmd"` as `cmd`, as gemini-cli reads a command before judging it."""
    match = _SHELL_WRAPPER.match(command)
    if not match:
        return command.strip()
    inner = command[match.end() :].strip()
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "\"'":
        inner = inner[1:-1]
    return inner


def has_command_substitution(command: str) -> bool:
    """$(...), backticks, <(...) or >(...) outside single quotes (detectBashSubstitution)."""
    in_single = in_double = False
    index = 0
    while index < len(command):
        char = command[index]
        if char == "'" and not in_double:
            in_single = not in_single
        elif char == '"' and not in_single:
            in_double = not in_double
        elif in_single:
            pass
        elif char == "\\" and index + 1 < len(command):
            if not in_double or command[index + 1] in '$`"\\\n':
                index += 2
                continue
        elif (
            (char == "$" and command[index + 1 : index + 2] == "(")
            or (not in_double and char in "<>" and command[index + 1 : index + 2] == "(")
            or char == "`"
        ):
            return True
        index += 1
    return False


def background_pids_wrapper(command: str, pids_file: str) -> str:
    """wrapCommandForBackgroundPIDs: the command in a subshell whose EXIT trap lists its jobs."""
    trimmed = command.strip()
    if not trimmed:
        return ""
    if trimmed.endswith("\\"):
        trimmed += " "
    quoted = shlex.quote(pids_file)
    return (
        f"_bgpids_file={quoted}\n(\n  trap 'jobs -p > \"$_bgpids_file\"' EXIT\n{trimmed}\n)\n"
        "__code=$?\nexit $__code"
    )


@dataclass
class _Output:
    """The command's combined output as gemini-cli keeps it: decoded text (its last 16 MB), or
    nothing once the first bytes look binary."""

    sniff: bytearray = field(default_factory=bytearray)
    binary: bool = False
    text: str = ""
    truncated: bool = False
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )

    def add(self, chunk: bytes) -> None:
        if not self.binary and len(self.sniff) < BINARY_SNIFF_BYTES:
            self.sniff += chunk
            if b"\x00" in bytes(self.sniff[:512]):
                self.binary = True
        if self.binary:
            return
        self._append(self.decoder.decode(chunk))

    def _append(self, piece: str) -> None:
        text = self.text + piece
        if len(text) > OUTPUT_BUFFER_CHARS:
            text = text[-OUTPUT_BUFFER_CHARS:]
            self.truncated = True
        self.text = text

    def final(self) -> str:
        if not self.binary:
            self._append(self.decoder.decode(b"", final=True))
        text = self.text
        if self.truncated:
            text += (
                "\n[GEMINI_CLI_WARNING: Output truncated. The buffer is limited to "
                f"{OUTPUT_BUFFER_CHARS // (1024 * 1024)}MB.]"
            )
        return strip_ansi(text).strip(_JS_WHITESPACE)


_JS_WHITESPACE = "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


@dataclass
class ProcessOutcome:
    output: str
    exit_code: int | None
    signal: int | None
    stopped: str | None  # None, "inactivity" or "cap"
    pid: int | None


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class ShellProcess:
    """One running command in its own process group, its output drained as it comes."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        transport,
        reader: asyncio.Task,
        output: _Output,
        activity: list,
    ):
        self.process = process
        self.transport = transport
        self.reader = reader
        self.output = output
        self.activity = activity  # [loop time of the last output]

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait(self, *, inactivity: float, cap: float) -> ProcessOutcome:
        """Until the command ends, goes `inactivity` seconds without output, or reaches `cap`."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        stopped = None
        try:
            while self.process.returncode is None:
                now = loop.time()
                deadline = min(self.activity[0] + inactivity, started + cap)
                if now >= deadline:
                    stopped = (
                        "cap" if started + cap <= self.activity[0] + inactivity else "inactivity"
                    )
                    _kill_group(self.pid)
                    await self.process.wait()
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self.process.wait()), deadline - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.reader), OUTPUT_GRACE_SECONDS)
        finally:
            await self.close()
        code = self.process.returncode
        return ProcessOutcome(
            output=self.output.final(),
            exit_code=code if code is not None and code >= 0 else None,
            signal=-code if code is not None and code < 0 else None,
            stopped=stopped,
            pid=self.pid,
        )

    async def close(self) -> None:
        """Kill what is left of the group and stop reading (no process outlives the command)."""
        _kill_group(self.pid)
        if not self.reader.done():
            # A child that left the process group may still hold the pipe open.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self.reader, 1)
        self.transport.close()
        if self.process.returncode is None:
            await self.process.wait()


async def start_process(
    argv: list[str], cwd: str, env: dict[str, str], identity: tuple[int, int] | None = None
) -> ShellProcess:
    """Start argv in its own process group, stdout and stderr into one pipe of our own.

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
    stream = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(read_fd, "rb", buffering=0)
    )
    output = _Output()
    activity = [loop.time()]

    async def drain() -> None:
        while chunk := await stream.read(65536):
            activity[0] = loop.time()
            output.add(chunk)

    return ShellProcess(process, transport, asyncio.create_task(drain()), output, activity)


# Commands left running with is_background, per session: stopped at the cap or when they end.
_BACKGROUND: dict[str, set[asyncio.Task]] = {}


def background_count(session_id: str) -> int:
    return sum(1 for task in _BACKGROUND.get(session_id, ()) if not task.done())


async def background_stop(session_id: str) -> None:
    """Stop the session's background commands (their groups are killed)."""
    for task in list(_BACKGROUND.pop(session_id, ())):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _keep_in_background(session_id: str, running: ShellProcess) -> None:
    async def supervise() -> None:
        try:
            await running.wait(inactivity=float("inf"), cap=timeout_seconds())
        finally:
            await running.close()

    task = asyncio.create_task(supervise(), name=f"shell-background-{running.pid}")
    tasks = _BACKGROUND.setdefault(session_id, set())
    tasks.add(task)
    task.add_done_callback(tasks.discard)


class ShellTool(Tool):
    name = "run_shell_command"
    display_name = "Shell"
    aliases = ("runShellCommand",)
    arg_aliases = {"directory": "dir_path", "path": "dir_path", "cmd": "command"}
    kind = ToolKind.EXECUTE

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
        if args.get("is_background"):
            text += " [background]"
        return text

    def confirmation_details(self, args: dict, ctx: ToolContext) -> dict:
        command = str(args.get("command", ""))
        try:
            _, dir_virtual = self._cwd(args, ctx)
        except PathRefused:
            dir_virtual = str(args.get("dir_path") or WORKSPACE_ROOT)
        roots = root_commands(strip_shell_wrapper(command))
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
        command = strip_shell_wrapper(args["command"])
        if has_command_substitution(command):
            return ToolResult(
                output=COMMAND_SUBSTITUTION_BLOCKED,
                display="Blocked: command substitution detected in shell command.",
            )
        background = bool(args.get("is_background"))
        if background and background_count(ctx.session_id) >= BACKGROUND_LIMIT_PER_SESSION:
            return tool_error(
                f"This session already runs {BACKGROUND_LIMIT_PER_SESSION} background commands; "
                "stop one before starting another."
            )
        try:
            cwd_host, cwd_virtual = await asyncio.to_thread(self._cwd, args, ctx)
        except PathRefused as refused:
            return tool_error(str(refused), "Path not in workspace.")

        pids_dir = tempfile.mkdtemp(prefix="gemini-shell-")
        try:
            return await self._run_in(
                args, ctx, command, cwd_host, cwd_virtual, pids_dir, background
            )
        finally:
            shutil.rmtree(pids_dir, ignore_errors=True)

    async def _run_in(
        self, args, ctx, command, cwd_host, cwd_virtual, pids_dir, background
    ) -> ToolResult:
        sandboxed = sandbox_mode() == "bwrap"
        pids_file = (
            f"/tmp/{os.path.basename(pids_dir)}/bgpids.tmp"
            if sandboxed
            else os.path.join(pids_dir, "bgpids.tmp")
        )
        script = f"{BASH_SHOPT_GUARD} {background_pids_wrapper(command, pids_file)}"
        identity = None
        if sandboxed:
            bwrap = _program("bwrap") or "bwrap"
            root = os.path.realpath(ctx.workspace)
            identity = host_identity()
            if identity is not None:
                # A root server runs commands as an unprivileged host uid (see sandbox.py).
                try:
                    await asyncio.to_thread(workspace_hand_over, root, *identity)
                    os.chown(pids_dir, *identity)
                except SandboxRefused as refused:
                    return tool_error(str(refused), "Shell commands are unavailable.")
            inside = f"/tmp/{os.path.basename(pids_dir)}"
            argv = await asyncio.to_thread(
                bwrap_argv, bwrap, root, cwd_virtual, ["bash", "-c", script], ((pids_dir, inside),)
            )
            env, spawn_cwd = sandbox_env(WORKSPACE_ROOT), root
        else:
            # Unsafe by design: SHELL_SANDBOX=none runs on the host with only a clean env.
            argv = ["bash", "-c", script]
            env, spawn_cwd = sandbox_env(os.path.realpath(ctx.workspace)), cwd_host

        try:
            running = await start_process(argv, spawn_cwd, env, identity)
        except OSError as exc:
            text = f"Output: (empty)\nError: {exc.strerror or exc}"
            return tool_error(text, f"Command failed: {exc.strerror or exc}")

        if background:
            delay = float(args.get("delay_ms", BACKGROUND_DELAY_MS)) / 1000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(running.process.wait()), max(delay, 0))
            if running.process.returncode is None:
                _keep_in_background(ctx.session_id, running)
                return ToolResult(
                    output=(
                        f"Command is running in background. PID: {running.pid}. Initial "
                        f"output:\n{running.output.text}"
                    ),
                    display=f"Background process started with PID {running.pid}.",
                )
        try:
            outcome = await running.wait(inactivity=inactivity_seconds(), cap=timeout_seconds())
        except BaseException:
            await running.close()
            raise
        pids = _background_pids(os.path.join(pids_dir, "bgpids.tmp"), outcome.pid)
        result = self._result(outcome, pids)
        # The command may have filled the workspace: its files stay, and the model is told.
        over = await asyncio.to_thread(Workspace(ctx.workspace).over_quota)
        if over:
            return tool_error(f"{result.output}\nError: {over}", "Workspace quota exceeded.")
        return result

    @staticmethod
    def _result(outcome: ProcessOutcome, background_pids: list[int]) -> ToolResult:
        output = outcome.output
        if outcome.stopped:
            if outcome.stopped == "inactivity":
                minutes = inactivity_seconds() / 60
                text = (
                    "Command was automatically cancelled because it exceeded the timeout of "
                    f"{minutes:.1f} minutes without output."
                )
            else:
                text = (
                    "Command was automatically cancelled because it exceeded the server's time "
                    f"limit of {timeout_seconds():g} seconds."
                )
            display = text
            if output.strip():
                text += f" Below is the output before it was cancelled:\n{output}"
                display += f"\n\nOutput before cancellation:\n{output}"
            else:
                text += " There was no output before it was cancelled."
            return ToolResult(output=text, display=display)

        parts = [f"Output: {output or '(empty)'}"]
        if outcome.exit_code:
            parts.append(f"Exit Code: {outcome.exit_code}")
        if outcome.signal:
            parts.append(f"Signal: {outcome.signal}")
        if background_pids:
            parts.append(f"Background PIDs: {', '.join(str(pid) for pid in background_pids)}")
        if outcome.pid:
            parts.append(f"Process Group PGID: {outcome.pid}")
        if output.strip():
            display = output
        elif outcome.signal:
            display = f"Command terminated by signal: {outcome.signal}"
        elif outcome.exit_code:
            display = f"Command exited with code: {outcome.exit_code}"
        else:
            display = ""
        return ToolResult(output="\n".join(parts), display=display)


def _background_pids(path: str, own_pid: int | None) -> list[int]:
    """The PIDs the command's EXIT trap listed (`jobs -p`), other than its own."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle.read().split("\n")]
    except OSError:
        return []
    return [int(line) for line in lines if line.isdigit() and int(line) != own_pid]
