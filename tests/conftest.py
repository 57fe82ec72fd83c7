"""Shared fixtures: users of each role, authenticated clients, API keys, and the fake Gemini upstream."""

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import Role, User
from accounts.services import api_key_create, token_pair_issue

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _close_worker_thread_connections():
    """Async tests reach the ORM through asgiref's worker thread; close what it opened, so the
    test database can be dropped at the end (PostgreSQL refuses while a session is open)."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """Each test gets its own channel layer object: channels_redis refuses a receive() from a new
    event loop while one from an earlier test's (closed) loop never returned."""
    from channels.layers import channel_layers

    yield
    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def _searchable_temp_root():
    root = Path(tempfile.mkdtemp(prefix="gemini-server-tests-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tmp_path(_searchable_temp_root, request) -> Path:
    """pytest's tmp_path, but under a directory other users may pass through (mode 0711), not
    pytest's private /tmp/pytest-of-<user> (0700): run as root, the shell sandbox runs commands
    as an unprivileged uid, and bubblewrap must reach the workspace as that uid."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:40]
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_searchable_temp_root))
    path.chmod(0o711)
    return path


@pytest.fixture(autouse=True)
def _isolated_settings(settings, tmp_path):
    """Fast hashing, a private workspace root, empty rate-limit counters and no credentials held
    from an earlier test."""
    from accounts.credentials import credentials_cache_clear

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.WORKSPACES_ROOT = tmp_path / "workspaces"
    settings.MONITORING_ENABLED = True
    cache.clear()
    credentials_cache_clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _a_process_that_takes_work():
    """Each test starts in a process that is not draining, with its worker announced alive: a
    drain or a worker retirement that a test of the restart path ran does not follow the next."""
    from gemini_server import lifecycle, workers

    state = lifecycle._state
    if state.draining:
        state.draining, state.drain_task, state.hurry = False, None, None
        state.signalled, state.shutdown_task = False, None
    if workers._retired or workers._stop.is_set():
        workers._retired = False
        workers.worker_start()
    yield


def make_user(email: str, role: str = Role.ENGINEER, **fields) -> User:
    return User.objects.create_user(
        email=email, password=PASSWORD, role=role, name=fields.pop("name", "Test"), **fields
    )


@pytest.fixture
def user(db):
    return make_user("engineer@example.com")


@pytest.fixture
def other_user(db):
    return make_user("other@example.com")


@pytest.fixture
def viewer(db):
    return make_user("viewer@example.com", role=Role.VIEWER)


@pytest.fixture
def admin_user(db):
    return make_user("admin@example.com", role=Role.ADMIN)


@pytest.fixture
def api_client():
    return APIClient()


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user)['accessToken']}")
    return client


@pytest.fixture
def auth_client(user):
    return client_for(user)


@pytest.fixture
def admin_api_client(admin_user):
    return client_for(admin_user)


@pytest.fixture
def api_key(user):
    """(ApiKey, raw key) for `user`."""
    return api_key_create(user=user, name="test key")


@pytest.fixture
def make_session(user):
    """`make_session(owner=None, **config)`: a session with its workspace, for `user` by default."""
    from sessions_app.services import session_create

    def make(owner=None, **config):
        return session_create(user=owner or user, config=config or None)

    return make


@pytest.fixture
def session(make_session):
    return make_session()


@pytest.fixture
def workspace(session):
    from sessions_app.workspace import session_workspace

    return session_workspace(session)


@pytest.fixture(scope="session")
def fake_gemini_server():
    """The project's fake Gemini upstream on loopback, for the whole test run."""
    from devtools.fake_gemini import FakeGemini

    fake = FakeGemini(host="127.0.0.1", port=0)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_gemini(fake_gemini_server, settings):
    """Points the real google-genai SDK at the fake upstream, with a clean request log."""
    settings.GEMINI_API_KEY = "test-key"
    settings.GEMINI_BASE_URL = fake_gemini_server.base_url
    settings.GEMINI_API_VERSION = "v1beta"
    settings.GEMINI_RETRY_ATTEMPTS = 1
    settings.GEMINI_STREAM_IDLE_SECONDS = 5
    # A 429 reaches the client at once and an empty answer is asked again without waiting,
    # unless a test allows the wait.
    settings.GEMINI_RATE_LIMIT_MAX_WAIT_SECONDS = 0
    settings.AGENT_INVALID_ANSWER_RETRY_DELAY_SECONDS = 0
    fake_gemini_server.reset()
    return fake_gemini_server


def _subprocess_database_url() -> str | None:
    """The test database as a URL another process can open (PostgreSQL only: SQLite's is in memory)."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        return None
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


LIVE_SKIP_REASON = (
    "needs PostgreSQL and Redis shared by several processes (set DATABASE_URL and REDIS_URL)"
)


class LiveServer(str):
    """A live server's base URL, with its process (to stop it as an operator or a crash would)."""

    process = None


class ServerProcesses:
    """Real server processes (scripts/run-server, the production command line) on the test
    database, Redis and the fake Gemini upstream; `start(*server_args, **env)` returns a base URL
    (`script="run-daphne"` starts the development server instead).
    Each is one process (WEB_CONCURRENCY=1, so that `.process` is the server a test stops or
    kills) unless the test asks for more workers."""

    def __init__(self, *, database_url: str, redis_url: str, workspaces_root, fake_base_url: str):
        self.database_url = database_url
        self.redis_url = redis_url
        self.workspaces_root = workspaces_root
        self.fake_base_url = fake_base_url
        self.processes, self.logs = [], []

    def start(self, *server_args: str, script: str = "run-server", **env) -> str:
        import os
        import subprocess
        import sys
        import tempfile
        import time
        import urllib.request
        from pathlib import Path

        port = _free_port()
        log = tempfile.TemporaryFile()  # noqa: SIM115 -- outlives this call; closed at teardown
        self.logs.append(log)
        environment = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "DJANGO_DEBUG": "true",
            "WORKSPACES_ROOT": str(self.workspaces_root),
            "GEMINI_API_KEY": "test-key",
            "GEMINI_BASE_URL": self.fake_base_url,
            "GEMINI_RETRY_ATTEMPTS": "1",
            "WEB_CONCURRENCY": "1",
            # The production command line (scripts/run-server), run by this interpreter.
            "PYTHON": sys.executable,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            **{key: str(value) for key, value in env.items()},
        }
        process = subprocess.Popen(
            ["bash", f"scripts/{script}", *server_args],
            cwd=Path(__file__).resolve().parent.parent,
            env=environment,
            stdout=subprocess.DEVNULL,
            # A file, not a pipe: a full pipe would block the server in a long test.
            stderr=log,
        )
        self.processes.append(process)
        base_url = LiveServer(f"http://127.0.0.1:{port}")
        base_url.process = process
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the server exited: {log.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return base_url
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the server did not become healthy within 60 s")

    def stop(self) -> None:
        import subprocess

        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in self.logs:
            log.close()


@pytest.fixture
def live_servers(transactional_db, settings, fake_gemini_server):
    """Starts real server processes on the test database and Redis: `start(*server_args, **env)`
    returns the base URL (a LiveServer: `.process` is the server process).

    Several processes share state only through PostgreSQL and Redis, so these tests need both
    (CI sets DATABASE_URL and REDIS_URL); without them they are skipped with that reason.
    """
    database_url = _subprocess_database_url()
    if not database_url or not settings.REDIS_URL:
        pytest.skip(LIVE_SKIP_REASON)
    servers = ServerProcesses(
        database_url=database_url,
        redis_url=settings.REDIS_URL,
        workspaces_root=settings.WORKSPACES_ROOT,
        fake_base_url=fake_gemini_server.base_url,
    )
    yield servers.start
    servers.stop()


@pytest.fixture(scope="session")
def server_pool(django_db_setup, fake_gemini_server, tmp_path_factory):
    """Named server processes kept for the whole run (each takes seconds to start), stopped before
    the test database goes; tests reach them through `live_pool`."""
    from django.conf import settings

    database_url = _subprocess_database_url()
    if not database_url or not settings.REDIS_URL:
        pytest.skip(LIVE_SKIP_REASON)
    servers = ServerProcesses(
        database_url=database_url,
        redis_url=settings.REDIS_URL,
        workspaces_root=tmp_path_factory.mktemp("live-workspaces"),
        fake_base_url=fake_gemini_server.base_url,
    )
    urls: dict[str, str] = {}

    def url(name: str = "a") -> str:
        if name not in urls:
            urls[name] = servers.start()
        return urls[name]

    url.workspaces_root = servers.workspaces_root
    yield url
    servers.stop()


@pytest.fixture
def live_pool(transactional_db, settings, server_pool):
    """`live_pool(name="a")`: the base URL of the pool's server process of that name, started on
    first use. Sessions this test creates get their workspaces where those processes look."""
    settings.WORKSPACES_ROOT = server_pool.workspaces_root
    return server_pool
