"""The Docker image's start command, run as the image runs it (no Docker engine here).

A copy of the tree is owned by uid 10001 as in the image; the entrypoint and the server run with the
Dockerfile's ENV (paths under /app moved into the copy) and the seed's `docker run` variables
only (JWT_SECRET, GEMINI_API_KEY; no SECRET_KEY, no DJANGO_DEBUG), plus the first admin's.
"""

import http.cookiejar
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import _free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APP_UID = 10001
ADMIN_EMAIL = "first-admin@example.com"
ADMIN_PASSWORD = "a-first-admin-password-for-the-image"
# What .dockerignore leaves out, and what a test run leaves behind.
NOT_COPIED = shutil.ignore_patterns(
    ".venv", ".git", "workspaces", "db.sqlite3", ".test-db*", "staticfiles", "__pycache__",
    ".pytest_cache", ".ruff_cache", ".env", "data",
)  # fmt: skip

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="Running the image's start command as uid 10001 needs root here"
)


def dockerfile_env() -> dict[str, str]:
    """The ENV instruction of the Dockerfile, as the image's processes see it."""
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    block = re.search(r"^ENV (.*?)(?<!\\)$", text, re.M | re.S).group(1)
    return dict(re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")))


def python_for_the_app_user(tmp_path: Path) -> list[str]:
    """A prefix for commands, so that uid 10001 can run this interpreter as the image's `python`.

    When the interpreter lives under a directory other users cannot pass (pyenv in root's home),
    the command runs in a mount namespace of its own where that directory is replaced by one
    holding only the interpreter's installation: nothing else of it becomes visible.
    """
    as_app = ["setpriv", f"--reuid={APP_UID}", f"--regid={APP_UID}", "--clear-groups"]
    here = Path(sys.executable).parent
    probe = [*as_app, "env", f"PATH={here}", "python", "-c", "import django"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return []
    installation = Path(sys.base_prefix).resolve()
    closed = next(
        (parent for parent in reversed(installation.parents) if not parent.stat().st_mode & 0o001),
        None,
    )
    if closed is None:
        pytest.skip(f"uid {APP_UID} cannot run {sys.executable}")
    stand_in = tmp_path / "stand-in"
    mount_point = stand_in / installation.relative_to(closed)
    mount_point.mkdir(parents=True)
    for path in [stand_in, *mount_point.relative_to(stand_in).parents]:
        (stand_in / path).chmod(0o755)
    show_only = 'mount --bind "$1" "$2" && mount --rbind "$3" "$4" && shift 4 && exec "$@"'
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", show_only, "sh"]
    return [*prefix, str(installation), str(mount_point), str(stand_in), str(closed)]


def image_copy(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    shutil.copytree(PROJECT_ROOT, app, ignore=NOT_COPIED, symlinks=True)
    (tmp_path / "home").mkdir()
    # As the Dockerfile's RUN does: only the data and workspace volumes are the app user's.
    (app / "data").mkdir()
    for path in (app / "data", tmp_path / "home"):
        os.chown(path, APP_UID, APP_UID)
    return app


def image_environment(app: Path, port: int) -> dict[str, str]:
    environment = {
        name: value.replace("/app", str(app)) for name, value in dockerfile_env().items()
    }
    environment.update(
        # The server is only reached over loopback here; the image binds 0.0.0.0.
        HOST="127.0.0.1",
        PORT=str(port),
        HOME=str(app.parent / "home"),
        PROMETHEUS_MULTIPROC_DIR=str(app.parent / "home" / "metrics"),
        # The image's `python` is the one with the requirements installed.
        PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        JWT_SECRET="a-jwt-secret-given-with-docker-run-0123456789",
        GEMINI_API_KEY="offline",
        GEMINI_BASE_URL="http://127.0.0.1:9",
        DJANGO_SUPERUSER_EMAIL=ADMIN_EMAIL,
        DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
    )
    return environment


def wait_until_healthy(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"The start command exited ({process.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"/health never answered:\n{log.read_text()}")


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def start(app: Path, environment: dict, command: list[str]) -> tuple[subprocess.Popen, Path]:
    log = app.parent / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*python_for_the_app_user(app.parent), *command],
            cwd=app,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return process, log


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def check_served_over_plain_http(base: str, app: Path) -> None:
    """Health, readiness, the API login and the admin login, over http:// with DEBUG off."""
    with urllib.request.urlopen(f"{base}/health/ready", timeout=10) as response:
        assert json.load(response)["status"] == "ok"
        assert response.headers["X-Request-ID"]

    request = urllib.request.Request(
        f"{base}/api/v1/auth/login",
        data=json.dumps({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["user"]["role"] == "admin"

    # The admin, as a browser does it: a cookie jar sends Secure cookies back over HTTPS only.
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirects)
    with browser.open(f"{base}/admin/login/", timeout=10) as page:
        assert page.status == 200  # not a redirect to https://
        form = page.read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    login = urllib.request.Request(
        f"{base}/admin/login/?next=/admin/",
        data=urllib.parse.urlencode(
            {"csrfmiddlewaretoken": csrf, "username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        ).encode(),
        headers={"Origin": base, "Referer": f"{base}/admin/login/"},
    )
    with pytest.raises(urllib.error.HTTPError) as redirected:
        browser.open(login, timeout=10)
    assert redirected.value.code == 302, redirected.value.read()[:2000]
    assert redirected.value.headers["Location"] == "/admin/"
    assert "Strict-Transport-Security" not in redirected.value.headers
    assert {cookie.name for cookie in jar} >= {"csrftoken", "sessionid"}
    assert not any(cookie.secure for cookie in jar)
    with browser.open(f"{base}/admin/", timeout=10) as console:
        assert console.status == 200
        assert "Site administration" in console.read().decode()

    # The database and the generated SECRET_KEY are on the data volume, the app user's.
    for name in ("db.sqlite3", "secret_key"):
        assert (app / "data" / name).stat().st_uid == APP_UID


def test_the_start_command_serves_plain_http_as_uid_10001(tmp_path):
    app = image_copy(tmp_path)
    (app / "workspaces").mkdir()
    subprocess.run(["chown", "-R", f"{APP_UID}:{APP_UID}", str(app)], check=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process, log = start(
        app,
        image_environment(app, port),
        [
            "setpriv",
            f"--reuid={APP_UID}",
            f"--regid={APP_UID}",
            "--clear-groups",
            str(app / "scripts" / "docker-entrypoint"),
            str(app / "scripts" / "run-server"),
        ],
    )
    try:
        wait_until_healthy(base, process, log)
        check_served_over_plain_http(base, app)
        assert f"Created admin {ADMIN_EMAIL}." in log.read_text()
    finally:
        stop(process)


def test_started_as_root_it_takes_over_a_root_owned_workspaces_mount_and_drops_to_10001(
    tmp_path,
):
    """`-v $(pwd)/workspaces:/app/workspaces` on a host without that directory: Docker makes it,
    owned by root. The image's default start (root) gives it to uid 10001, then runs as 10001."""
    app = image_copy(tmp_path)
    (app / "workspaces" / "old-user" / "old-session").mkdir(
        parents=True
    )  # root's, as Docker made it
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process, log = start(
        app,
        image_environment(app, port),
        [str(app / "scripts" / "docker-entrypoint"), str(app / "scripts" / "run-server")],
    )
    try:
        wait_until_healthy(base, process, log)
        status = Path(f"/proc/{process.pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{APP_UID}\s+{APP_UID}\s+{APP_UID}\s+{APP_UID}$", status, re.M)
        assert (app / "workspaces").stat().st_uid == APP_UID
        assert (app / "workspaces" / "old-user" / "old-session").stat().st_uid == APP_UID
        check_served_over_plain_http(base, app)
    finally:
        stop(process)


def test_a_workspaces_mount_uid_10001_cannot_write_is_reported_clearly(tmp_path):
    app = image_copy(tmp_path)
    (app / "workspaces").mkdir()  # root's, mode 0755
    os.chown(app / "data", APP_UID, APP_UID)

    result = subprocess.run(
        [
            *python_for_the_app_user(tmp_path),
            "setpriv",
            f"--reuid={APP_UID}",
            f"--regid={APP_UID}",
            "--clear-groups",
            str(app / "scripts" / "docker-entrypoint"),
            str(app / "scripts" / "run-server"),
        ],
        cwd=app,
        env=image_environment(app, _free_port()),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert f"{app / 'workspaces'} is not writable by uid {APP_UID}" in result.stderr
    assert "chown -R 10001:10001" in result.stderr
