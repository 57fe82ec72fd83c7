"""The processes a benchmark run starts and measures: PostgreSQL, Redis, the fake, the servers."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
LITELLM_BIN = ROOT / "bench" / ".venv-litellm" / "bin" / "litellm"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
DB_NAME = "bench"
DB_ROLE = "gemini"
MODEL = "gemini-2.5-flash"
UPSTREAM_KEY = "bench-upstream-key"


class StackError(RuntimeError):
    """A process of the stack did not start or answer."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The cores this run may use, read once at import: the load generator later pins itself.
CPUS = sorted(os.sched_getaffinity(0))


def cpu_count_of(cpus: str) -> int:
    """How many cores a taskset list names ("0", "0,1", "0-3")."""
    count = 0
    for item in cpus.split(","):
        low, _, high = item.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """Runs the command on the given cores (None: wherever the system likes)."""
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", cpus, *command]
    return command


# Process accounting, from /proc, for a process and everything it started.


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; everything after its ")" is space-separated.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process and its live descendants, in seconds."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields:
            # utime and stime are fields 14 and 15 of /proc/pid/stat (11 and 12 after the name).
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def affinity(pid: int) -> str:
    """The cores a process may run on, as /proc shows them (`0`, `0-1`)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def rss_bytes(root: int) -> int:
    total = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[21]) * PAGE_SIZE
    return total


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        # Each process was started in a session of its own: its group is exactly what it started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def spawn(name: str, command: list[str], *, env: dict, log_dir: Path, cwd: Path = ROOT) -> Process:
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    popen = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    return Process(name=name, popen=popen, log_path=log_path)


def wait_http(url: str, process: Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise StackError(f"{process.name} exited at start:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.2)
    raise StackError(
        f"{process.name} did not answer {url} in {timeout:.0f} s:\n{process.log_tail()}"
    )


def _pg_bin() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not candidates:
        found = shutil.which("initdb")
        if not found:
            raise StackError("PostgreSQL's initdb was not found (install postgresql)")
        return Path(found).parent
    return Path(candidates[0]).parent


class Postgres:
    """A private cluster in a temporary directory, with pg_stat_statements loaded."""

    def __init__(self, workdir: Path, cpus: str | None, max_connections: int = 100):
        self.dir = workdir / "pg"
        self.port = free_port()
        self.cpus = cpus
        self.max_connections = max_connections
        self.bin = _pg_bin()
        # initdb and postgres refuse to run as root; run them as the postgres account then.
        self.as_user = "postgres" if os.geteuid() == 0 else None
        self.log_path = workdir / "postgres.log"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_user:
            command = ["runuser", "-u", self.as_user, "--", *command]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise StackError(f"{args[0]} failed: {completed.stdout}\n{completed.stderr}")

    def start(self) -> None:
        self.dir.mkdir(parents=True)
        if self.as_user:
            account = pwd.getpwnam(self.as_user)
            for path in (self.dir, self.dir.parent):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.dir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.dir}",
                f"-c max_connections={self.max_connections}",
                "-c shared_preload_libraries=pg_stat_statements",
                "-c pg_stat_statements.track=all",
                "-c pg_stat_statements.track_utility=on",
            ]
        )
        log = str(self.dir / "server.log")
        self._run("pg_ctl", "-D", str(self.dir), "-o", options, "-l", log, "-w", "start")
        self._pin()

    def _pin(self) -> None:
        if not self.cpus or not shutil.which("taskset"):
            return
        pid_file = self.dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().splitlines()[0])
            subprocess.run(["taskset", "-a", "-p", "-c", self.cpus, str(pid)], capture_output=True)

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def server_url(self) -> str:
        return f"postgres://{DB_ROLE}@127.0.0.1:{self.port}/{DB_NAME}"

    def stop(self) -> None:
        if (self.dir / "postmaster.pid").exists():
            with contextlib.suppress(StackError):
                self._run("pg_ctl", "-D", str(self.dir), "-m", "immediate", "-w", "stop")


@dataclass
class Stack:
    """Everything one run needs; `stop` ends every process it started, in reverse order."""

    workdir: Path
    server_cpus: str | None
    other_cpus: str | None
    server_command: str
    log_dir: Path = field(init=False)
    processes: list[Process] = field(default_factory=list)
    postgres: Postgres | None = None
    redis_port: int = 0
    fake_url: str = ""
    env: dict = field(default_factory=dict)
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    litellm_key: str = field(default_factory=lambda: "sk-bench-" + secrets.token_hex(16))
    admin_email: str = "bench-admin@example.com"
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    def __post_init__(self) -> None:
        self.log_dir = self.workdir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, command: list[str], env: dict | None = None, cpus=None) -> Process:
        process = spawn(name, pinned(command, cpus), env=env or self.env, log_dir=self.log_dir)
        self.processes.append(process)
        return process

    def start_databases(self) -> None:
        self.postgres = Postgres(self.workdir, self.other_cpus)
        self.postgres.start()
        self.redis_port = free_port()
        redis = self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--maxclients",
                "10000",
            ],
            env=dict(os.environ),
            cpus=self.other_cpus,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
            if not redis.alive():
                raise StackError(f"redis-server exited:\n{redis.log_tail()}")
            time.sleep(0.1)
        else:
            raise StackError("redis-server did not answer")

    def prepare_database(self) -> None:
        import psycopg

        with psycopg.connect(self.postgres.admin_url(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {DB_ROLE} LOGIN")
            conn.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_ROLE}")
        with psycopg.connect(self.postgres.admin_url(DB_NAME), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def server_env(self) -> dict:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DATABASE_", "REDIS_", "DJANGO_", "GEMINI_"))
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "gemini_server.settings",
                "DJANGO_DEBUG": "false",
                "SECRET_KEY": self.secret_key,
                "JWT_SECRET": self.jwt_secret,
                # Plain HTTP on loopback: no TLS proxy in front to redirect to.
                "SECURE_SSL_REDIRECT": "false",
                "DATABASE_URL": self.postgres.server_url(),
                "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "GEMINI_API_KEY": UPSTREAM_KEY,
                "GEMINI_BASE_URL": self.fake_url,
                "GEMINI_MODEL": MODEL,
                "WORKSPACES_ROOT": str(self.workdir / "workspaces"),
                # The limits still run on every request (their Redis round trips are measured);
                # they are set high so that the load itself is not refused.
                "RATE_LIMIT_MAX_REQUESTS": "1000000000",
                "LOGIN_RATE_LIMIT_MAX": "1000000",
                "LOG_LEVEL": "WARNING",
                "PYTHON": PYTHON,
                "HOST": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.server_cpus and "WEB_CONCURRENCY" not in os.environ:
            # One worker per core it runs on, as in production (run-server's default is one per
            # core of the machine); LiteLLM, on the same cores, runs one worker.
            env["WEB_CONCURRENCY"] = str(cpu_count_of(self.server_cpus))
        return env

    def start_fake(self) -> None:
        port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for key in ("DJANGO_DEBUG", "DATABASE_URL", "REDIS_URL"):
            env.pop(key, None)
        fake = self._spawn(
            "fake-gemini",
            [PYTHON, "manage.py", "fake_gemini", "--port", str(port)],
            env=env,
            cpus=self.other_cpus,
        )
        self.fake_url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.fake_url}/_fake/streams", fake)

    def manage(self, *args: str, extra_env: dict | None = None) -> None:
        env = dict(self.env, **(extra_env or {}))
        completed = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if completed.returncode != 0:
            raise StackError(f"manage.py {args[0]} failed:\n{completed.stdout}\n{completed.stderr}")

    def start_server(self, name: str = "server") -> tuple[Process, str]:
        port = free_port()
        env = dict(self.env, PORT=str(port))
        command = shlex.split(self.server_command)
        if not os.path.isabs(command[0]) and (ROOT / command[0]).exists():
            command[0] = str(ROOT / command[0])
        server = self._spawn(name, command, env=env, cpus=self.server_cpus)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", server)
        return server, url

    def start_litellm(self) -> tuple[Process, str]:
        port = free_port()
        config = self.workdir / "litellm.yaml"
        # LiteLLM's gemini provider posts to `{api_base}/models/{model}:streamGenerateContent?alt=sse`.
        config.write_text(
            "model_list:\n"
            f"  - model_name: {MODEL}\n"
            "    litellm_params:\n"
            f"      model: gemini/{MODEL}\n"
            f"      api_base: {self.fake_url}/v1beta\n"
            f"      api_key: {UPSTREAM_KEY}\n"
            "general_settings:\n"
            f"  master_key: {self.litellm_key}\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
        )
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DATABASE_", "REDIS_", "DJANGO_", "GEMINI_", "LITELLM_"))
        }
        env.update(
            {
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
                "LITELLM_TELEMETRY": "False",
                "PYTHONUNBUFFERED": "1",
            }
        )
        command = [
            str(LITELLM_BIN),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ]
        litellm = self._spawn("litellm", command, env=env, cpus=self.server_cpus)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health/liveliness", litellm, timeout=120)
        return litellm, url

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if self.postgres is not None:
            self.postgres.stop()
