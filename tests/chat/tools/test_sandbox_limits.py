"""The shell sandbox's limits, each shown biting: memory, processes, CPU, file size, /tmp."""

import asyncio
import os
import re
import shutil
import subprocess
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from chat.agent.tools import ToolContext, tool_run
from chat.agent.tools.sandbox import SANDBOX_UID, workspace_hand_over
from gemini_server.settings import env_positive_int

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only a server running as root hands over")

# Forks children that sleep until killed, until the kernel says no; then counts what it sees.
FORK_PROBE = """
import os, time
kids = []
try:
    for _ in range(500):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        kids.append(pid)
except BlockingIOError:
    print("refused after", len(kids), "children")
else:
    print("forked all", len(kids), "children")
print("processes", sum(name.isdigit() for name in os.listdir("/proc")))
for pid in kids:
    os.kill(pid, 9)
"""


def _shown(text: str) -> str:
    """A shell result without its last line naming the process group (a number that varies)."""
    return re.sub(r"\nProcess Group PGID: \d+(?=\n|$)", "", text or "")


@pytest.fixture(autouse=True)
def sandboxed(settings):
    settings.SHELL_SANDBOX = "bwrap"
    settings.SHELL_TIMEOUT_SECONDS = 30


async def test_commands_run_as_an_unprivileged_uid_with_a_working_home(call, ws, settings):
    result = await call(
        "run_shell_command",
        command="id -u; id -g; echo $HOME; echo made > ~/made.txt && mkdir -p ~/dir && ls ~",
    )
    assert (
        _shown(result.output) == f"Output: {SANDBOX_UID}\n{SANDBOX_UID}\n/workspace\ndir\nmade.txt"
    )
    made = ws / "made.txt"
    # On the host: the sandbox's uid when the server is root, else the server's own.
    assert made.stat().st_uid == (settings.SANDBOX_HOST_UID if os.geteuid() == 0 else os.getuid())
    # The server reads and rewrites what the command wrote.
    assert made.read_text() == "made\n"
    made.write_text("changed by the server\n")
    (ws / "dir" / "inside.txt").write_text("server file in a command's directory\n")
    assert made.read_text() == "changed by the server\n"


async def test_files_the_server_wrote_stay_writable_for_commands(call, ws):
    secret = ws / "private.txt"
    secret.write_text("one\n")
    secret.chmod(0o600)
    (ws / "src" / "deep").mkdir(parents=True)
    (ws / "src" / "deep" / "code.py").write_text("x = 1\n")
    result = await call(
        "run_shell_command",
        command=(
            "echo two >> private.txt && sed -i 's/1/2/' src/deep/code.py && "
            "touch src/deep/new.py && cat private.txt src/deep/code.py"
        ),
    )
    assert _shown(result.output) == "Output: one\ntwo\nx = 2"
    assert (ws / "src" / "deep" / "new.py").exists()


async def test_memory_limit_refuses_a_large_allocation(call, settings):
    assert settings.SANDBOX_MEMORY_BYTES == 1024**3
    result = await call(
        "run_shell_command",
        command=(
            'python3 -c "x = bytearray(2*1024**3)" 2>&1 | tail -1; '
            "python3 -c \"x = bytearray(256*1024**2); print('256 MiB ok')\""
        ),
    )
    assert _shown(result.output) == "Output: MemoryError\n256 MiB ok"


async def test_memory_limit_follows_its_setting(call, settings):
    settings.SANDBOX_MEMORY_BYTES = 128 * 1024**2
    result = await call(
        "run_shell_command",
        command='python3 -c "x = bytearray(256*1024**2)" 2>&1 | tail -1; ulimit -d',
    )
    assert _shown(result.output) == f"Output: MemoryError\n{128 * 1024}"


async def test_process_limit_stops_a_fork_loop(call, ws, settings):
    settings.SANDBOX_MAX_PROCESSES = 32
    (ws / "forks.py").write_text(FORK_PROBE)
    result = await call("run_shell_command", command="ulimit -u; python3 forks.py")
    lines = result.output.removeprefix("Output: ").splitlines()
    assert lines[0] == "32"
    refused, children = lines[1].rsplit(" ", 2)[0], int(lines[1].split()[2])
    assert refused == "refused after"
    assert 20 <= children < 32
    processes = int(lines[2].split()[1])
    # bwrap's init, bash and python besides the children: never past the limit and init.
    assert processes <= 33


async def test_process_limit_counts_each_command_on_its_own(call, ws, settings):
    """All commands share one host uid, yet one command's processes never count against
    another's: the kernel counts per user namespace, and each command has its own."""
    settings.SANDBOX_MAX_PROCESSES = 32
    (ws / "forks.py").write_text(FORK_PROBE)
    (ws / "hold.py").write_text(
        "import os, time\n"
        "kids = []\n"
        "for _ in range(24):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    kids.append(pid)\n"
        "open('held', 'w').close()\n"
        "while not os.path.exists('probed'):\n"
        "    time.sleep(0.05)\n"
        "for pid in kids:\n"
        "    os.kill(pid, 9)\n"
        "print('held', len(kids))\n"
    )
    holder, prober = await asyncio.gather(
        call("run_shell_command", command="python3 hold.py"),
        call(
            "run_shell_command",
            command="until [ -e held ]; do sleep 0.05; done; python3 forks.py; touch probed",
        ),
    )
    assert _shown(holder.output) == "Output: held 24"
    first = prober.output.removeprefix("Output: ").splitlines()[0]
    assert first.startswith("refused after ")
    assert int(first.split()[2]) >= 20


async def test_a_bash_fork_bomb_is_held_at_the_limit_until_the_timeout(call, settings):
    settings.SANDBOX_MAX_PROCESSES = 64
    settings.SHELL_TIMEOUT_SECONDS = 4
    result = await call(
        "run_shell_command",
        command=(
            "bomb() { bomb | bomb & }; bomb; "
            # Builtins only from here on: waiting, counting and holding on need no fork.
            "SECONDS=0; while (( SECONDS < 1 )); do :; done; "
            'running=(/proc/[0-9]*); echo "processes ${#running[@]}"; exec sleep 30'
        ),
    )
    assert result.output.startswith(
        "Command was automatically cancelled because it exceeded the server's time limit"
    )
    assert "fork: retry: Resource temporarily unavailable" in result.output
    running = int(re.search(r"^processes (\d+)$", result.output, re.MULTILINE).group(1))
    assert 32 < running <= 65  # the limit, and bwrap's init
    after = await call("run_shell_command", command="echo still serving")
    assert _shown(after.output) == "Output: still serving"


async def test_cpu_limit_stops_a_busy_loop(call, settings):
    settings.SANDBOX_CPU_SECONDS = 1
    result = await call(
        "run_shell_command",
        command=(
            "python3 -c 'while True: pass'; echo exit=$?; "
            # Ignoring SIGXCPU only buys a second: the hard limit kills.
            "python3 -c 'import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
            "while True: pass'; echo exit=$?"
        ),
    )
    assert not result.output.startswith("Command was automatically cancelled")
    assert "CPU time limit exceeded" in result.output
    assert "exit=152" in result.output  # 128 + SIGXCPU
    assert "Killed" in result.output
    assert _shown(result.output).endswith("exit=137")  # 128 + SIGKILL


async def test_file_size_limit_cuts_a_large_write(call, ws, settings):
    settings.SANDBOX_MAX_FILE_BYTES = 1024 * 1024
    result = await call(
        "run_shell_command",
        command=(
            "head -c 3000000 /dev/zero > big.bin; echo exit=$?; "
            "python3 -c \"open('big.py.bin', 'wb').write(b'x' * 3000000)\" 2>&1 | tail -1"
        ),
    )
    assert "File size limit exceeded" in result.output
    assert "exit=153" in result.output  # 128 + SIGXFSZ
    assert _shown(result.output).endswith("OSError: [Errno 27] File too large")
    assert (ws / "big.bin").stat().st_size == 1024 * 1024
    assert (ws / "big.py.bin").stat().st_size <= 1024 * 1024


async def test_tmp_and_shm_are_small_and_the_rest_is_read_only(call, settings):
    settings.SANDBOX_TMP_BYTES = 4 * 1024 * 1024
    result = await call(
        "run_shell_command",
        command=(
            "df -B1 --output=size /tmp /dev/shm | tail -2 | tr -d ' '; "
            "head -c 8000000 /dev/zero > /tmp/fill; echo exit=$?; "
            "head -c 8000000 /dev/zero > /dev/shm/fill; echo exit=$?; "
            "touch /new /dev/new 2>&1; echo written > /dev/null && echo null-ok"
        ),
    )
    assert _shown(result.output) == (
        "Output: 4194304\n4194304\n"
        "head: error writing 'standard output': No space left on device\nexit=1\n"
        "head: error writing 'standard output': No space left on device\nexit=1\n"
        "touch: cannot touch '/new': Read-only file system\n"
        "touch: cannot touch '/dev/new': Read-only file system\nnull-ok"
    )


async def test_ordinary_commands_work_under_the_default_limits(call, ws):
    (ws / "hello.py").write_text("print('hello from a file')\n")
    command = (
        "ls; python3 hello.py; echo abc | tr a-c x-z; "
        "python3 -c 'from multiprocessing import Pool\n"
        "with Pool(4) as pool: print(sum(pool.map(abs, range(-5, 5))))'; "
        "echo to-stderr >&2; echo also-stderr > /dev/stderr"
    )
    expected = "Output: hello.py\nhello from a file\nxyz\n25\nto-stderr\nalso-stderr"
    if shutil.which("git"):
        command += "; git init -q repo && git -C repo status --short && git --version"
        version = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True)
        expected += "\n" + version.stdout.strip()
    result = await call("run_shell_command", command=command)
    assert _shown(result.output) == expected


@as_root
async def test_a_workspace_the_sandbox_uid_cannot_reach_is_refused(tmp_path, settings):
    hidden = tmp_path / "private"
    workspace = hidden / "session"
    workspace.mkdir(parents=True)
    hidden.chmod(0o700)
    ctx = ToolContext(workspace=workspace, session_id="session")
    result = await tool_run("run_shell_command", {"command": "touch ran"}, ctx)
    assert _shown(result.error) == (
        f"Shell commands are unavailable: the sandbox user (uid {settings.SANDBOX_HOST_UID}) "
        "cannot reach this "
        "workspace. An administrator can make WORKSPACES_ROOT and every directory above it "
        "searchable by other users (chmod o+x)."
    )
    assert not (workspace / "ran").exists()
    assert str(tmp_path) not in result.error


@as_root
async def test_handing_the_workspace_over_never_follows_links_out(call, ws, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "host.txt").write_text("host\n")
    (ws / "file-link").symlink_to(outside / "host.txt")
    (ws / "dir-link").symlink_to(outside)
    os.link(outside / "host.txt", ws / "hard-link")
    result = await call("run_shell_command", command="echo ran")
    assert _shown(result.output) == "Output: ran"
    for path in (outside, outside / "host.txt"):
        assert path.stat().st_uid == 0
        assert path.stat().st_gid == 0


@as_root
async def test_handing_over_while_a_command_swaps_a_directory_for_a_link_out(
    call, ws, tmp_path, settings
):
    """A command flips `flip` (a directory) and `link` (a symlink to a host directory) with
    renameat2(RENAME_EXCHANGE) while the workspace is handed over again and again."""
    outside = tmp_path / "outside"
    outside.mkdir()
    for index in range(20):
        (outside / f"host-{index}.txt").write_text("host\n")
    (ws / "flip").mkdir()
    for index in range(20):
        (ws / "flip" / f"host-{index}.txt").write_text("written by the server\n")
    (ws / "link").symlink_to(outside)
    (ws / "swap.py").write_text(
        "import ctypes, os, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "swaps, end = 0, time.monotonic() + 20\n"
        "open('started', 'w').close()\n"
        "while not os.path.exists('stop') and time.monotonic() < end:\n"
        "    libc.renameat2(-100, b'flip', -100, b'link', 2)\n"
        "    swaps += 1\n"
        "print('swapped', swaps > 1000)\n"
    )

    def hand_over_repeatedly():
        try:
            deadline = time.monotonic() + 15
            while not (ws / "started").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            for _ in range(3000):
                workspace_hand_over(str(ws), settings.SANDBOX_HOST_UID, settings.SANDBOX_HOST_UID)
        finally:
            (ws / "stop").touch()

    swapper, _ = await asyncio.gather(
        call("run_shell_command", command="python3 swap.py"),
        asyncio.to_thread(hand_over_repeatedly),
    )
    assert _shown(swapper.output) == "Output: swapped True"
    for path in [outside, *outside.iterdir()]:
        assert (path.stat().st_uid, path.stat().st_gid) == (0, 0)


def test_limits_must_be_positive(monkeypatch):
    monkeypatch.setenv("SANDBOX_MAX_PROCESSES", "0")
    with pytest.raises(ImproperlyConfigured, match="SANDBOX_MAX_PROCESSES must be a whole"):
        env_positive_int("SANDBOX_MAX_PROCESSES", 256)
    monkeypatch.setenv("SANDBOX_MAX_PROCESSES", "12")
    assert env_positive_int("SANDBOX_MAX_PROCESSES", 256) == 12
