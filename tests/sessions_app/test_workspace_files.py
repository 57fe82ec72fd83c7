"""Workspace files over REST: upload, list, download, delete, limits, and every way out refused."""

import errno
import hashlib
import os
from pathlib import Path

import pytest

from monitoring.models import Event
from sessions_app.workspace import session_workspace
from tests.sessions_app.conftest import error_of

pytestmark = pytest.mark.django_db

ENTRY_FIELDS = {"name", "path", "type", "size", "modifiedAt"}


def files_url(session) -> str:
    return f"/api/v1/sessions/{session.id}/files"


def content_url(session) -> str:
    return f"/api/v1/sessions/{session.id}/files/content"


def upload(client, session, path, data: bytes):
    return client.generic(
        "PUT", f"{content_url(session)}?path={path}", data, "application/octet-stream"
    )


# Upload


def test_upload_creates_then_overwrites(auth_client, session, workspace):
    created = upload(auth_client, session, "a/b.txt", b"first")

    assert created.status_code == 201
    entry = created.json()
    assert set(entry) == ENTRY_FIELDS
    assert entry["name"] == "b.txt"
    assert entry["path"] == "/workspace/a/b.txt"
    assert entry["type"] == "file"
    assert entry["size"] == 5
    assert entry["modifiedAt"].endswith("Z")
    assert (workspace / "a" / "b.txt").read_bytes() == b"first"

    overwritten = upload(auth_client, session, "a/b.txt", b"second version")

    assert overwritten.status_code == 200
    assert overwritten.json()["size"] == len(b"second version")
    assert (workspace / "a" / "b.txt").read_bytes() == b"second version"
    # No half-written leftovers next to the file.
    assert sorted(p.name for p in (workspace / "a").iterdir()) == ["b.txt"]
    uploads = Event.objects.filter(type="session", action="file_upload", session_id=session.id)
    assert [e.data["created"] for e in uploads.order_by("seq")] == [True, False]


def test_upload_accepts_workspace_paths(auth_client, session, workspace):
    response = upload(auth_client, session, "/workspace/a/b.txt", b"via mount path")

    assert response.status_code == 201
    assert response.json()["path"] == "/workspace/a/b.txt"
    assert (workspace / "a" / "b.txt").read_bytes() == b"via mount path"


def test_upload_takes_the_raw_body_whatever_its_content_type(auth_client, session, workspace):
    response = auth_client.generic(
        "PUT", f"{content_url(session)}?path=data.json", b'{"not": "parsed"}', "application/json"
    )

    assert response.status_code == 201
    assert (workspace / "data.json").read_bytes() == b'{"not": "parsed"}'


def test_upload_of_an_empty_file(auth_client, session, workspace):
    response = upload(auth_client, session, "empty.txt", b"")

    assert response.status_code == 201
    assert response.json()["size"] == 0
    assert (workspace / "empty.txt").read_bytes() == b""


@pytest.mark.parametrize("path", ["", ".", "/workspace", "/workspace/", "adir"])
def test_upload_onto_a_directory_is_refused(auth_client, session, workspace, path):
    (workspace / "adir").mkdir()

    response = upload(auth_client, session, path, b"x")

    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"
    assert (workspace / "adir").is_dir()


@pytest.mark.parametrize("path", ["notes.txt/inner.txt", "notes.txt/deeper/inner.txt"])
def test_upload_under_a_file_is_refused(auth_client, session, workspace, path):
    (workspace / "notes.txt").write_text("a file, not a directory")

    response = upload(auth_client, session, path, b"x")

    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"
    assert (workspace / "notes.txt").read_text() == "a file, not a directory"


def test_too_large_upload_is_refused(auth_client, session, workspace, settings):
    settings.UPLOAD_MAX_BYTES = 10

    response = upload(auth_client, session, "big.bin", b"x" * 11)

    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "payload_too_large"
    assert list(workspace.iterdir()) == []
    assert upload(auth_client, session, "ok.bin", b"x" * 10).status_code == 201


def test_upload_over_the_request_body_limit_is_refused(auth_client, session, workspace, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    response = upload(auth_client, session, "big.bin", b"x" * 101)

    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"
    assert list(workspace.iterdir()) == []


# List


def test_listing_shows_entries_under_workspace_paths(auth_client, session, workspace, tmp_path):
    (workspace / "src").mkdir()
    (workspace / "src" / "main.py").write_text("print('hi')\n")
    (workspace / "README.md").write_text("# readme\n")
    (workspace / "b.txt").write_bytes(b"12345")

    root = auth_client.get(files_url(session))

    assert root.status_code == 200
    body = root.json()
    assert body["path"] == "/workspace"
    entries = body["entries"]
    assert all(set(entry) == ENTRY_FIELDS for entry in entries)
    assert [(e["name"], e["path"], e["type"]) for e in entries] == [
        ("src", "/workspace/src", "directory"),
        ("b.txt", "/workspace/b.txt", "file"),
        ("README.md", "/workspace/README.md", "file"),
    ]
    assert entries[1]["size"] == 5
    assert all(e["modifiedAt"].endswith("Z") for e in entries)
    assert str(tmp_path) not in root.content.decode()

    for path in ("src", "/workspace/src", "src/"):
        nested = auth_client.get(files_url(session), {"path": path})
        assert nested.status_code == 200, path
        assert nested.json()["path"] == "/workspace/src"
        assert [e["path"] for e in nested.json()["entries"]] == ["/workspace/src/main.py"]


def test_listing_a_missing_directory_is_not_found(auth_client, session):
    response = auth_client.get(files_url(session), {"path": "nope"})

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_listing_a_file_is_a_bad_request(auth_client, session, workspace):
    (workspace / "a.txt").write_text("A")

    response = auth_client.get(files_url(session), {"path": "a.txt"})

    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


# Download


@pytest.mark.parametrize("path", ["bin/data.bin", "/workspace/bin/data.bin"])
def test_download_returns_the_exact_bytes(auth_client, session, workspace, path):
    payload = bytes(range(256)) * 64 + b"\x00\xff\r\n"
    assert upload(auth_client, session, "bin/data.bin", payload).status_code == 201

    response = auth_client.get(content_url(session), {"path": path})

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == payload
    assert 'filename="data.bin"' in response["Content-Disposition"]


@pytest.mark.parametrize("path", ["missing.txt", "adir", ""])
def test_download_of_what_is_not_a_file_is_not_found(auth_client, session, workspace, path):
    (workspace / "adir").mkdir()

    response = auth_client.get(content_url(session), {"path": path})

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# Delete


def test_delete_removes_a_file(auth_client, session, workspace):
    (workspace / "a.txt").write_text("A")
    (workspace / "b.txt").write_text("B")

    response = auth_client.delete(f"{content_url(session)}?path=/workspace/a.txt")

    assert response.status_code == 204
    assert not (workspace / "a.txt").exists()
    assert (workspace / "b.txt").read_text() == "B"
    event = Event.objects.get(type="session", action="file_delete", session_id=session.id)
    assert event.data == {"path": "/workspace/a.txt"}


def test_delete_removes_a_directory_tree(auth_client, session, workspace):
    (workspace / "src" / "pkg").mkdir(parents=True)
    (workspace / "src" / "pkg" / "mod.py").write_text("x = 1\n")

    response = auth_client.delete(f"{content_url(session)}?path=src")

    assert response.status_code == 204
    assert list(workspace.iterdir()) == []


@pytest.mark.parametrize("path", ["", ".", "/workspace", "/workspace/", "src/..", "./"])
def test_deleting_the_workspace_itself_is_refused(auth_client, session, workspace, path):
    (workspace / "src").mkdir()

    response = auth_client.delete(f"{content_url(session)}?path={path}")

    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"
    assert workspace.is_dir() and (workspace / "src").is_dir()


def test_deleting_a_missing_file_is_not_found(auth_client, session):
    response = auth_client.delete(f"{content_url(session)}?path=missing.txt")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_deleting_a_symlink_removes_the_link_not_its_target(auth_client, session, workspace):
    (workspace / "real.txt").write_text("keep me")
    (workspace / "link.txt").symlink_to("real.txt")

    response = auth_client.delete(f"{content_url(session)}?path=link.txt")

    assert response.status_code == 204
    assert not (workspace / "link.txt").is_symlink()
    assert (workspace / "real.txt").read_text() == "keep me"


def test_a_symlink_that_leads_out_can_be_deleted_without_touching_its_target(
    auth_client, session, workspace, tmp_path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("outside")
    (workspace / "out").symlink_to(outside)

    response = auth_client.delete(f"{content_url(session)}?path=out")

    assert response.status_code == 204
    assert not (workspace / "out").is_symlink()
    assert (outside / "keep.txt").read_text() == "outside"


# Every way out, one by one, through every file endpoint.


def _tree(root: Path) -> dict:
    """Every path under root with a digest of its content: a change anywhere shows."""
    found = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory) / name
            if path.is_symlink():
                found[str(path)] = "link:" + os.readlink(path)
            elif path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[str(path)] = "dir"
    return found


@pytest.fixture
def escape_setup(make_session, session, workspace, tmp_path):
    """A canary file just outside the workspace, a sibling session with a secret, and two links."""
    canary = workspace.parent / "x"
    canary.write_text("outside the workspace")
    sibling = make_session()
    sibling_workspace = session_workspace(sibling)
    (sibling_workspace / "secret.txt").write_text("sibling secret")
    (workspace / "link").symlink_to("/")
    (workspace / "sib").symlink_to(sibling_workspace)
    return {"canary": canary, "sibling": sibling_workspace}


# What each endpoint is sent for each escape: reads try the real /etc/passwd; writes and deletes
# aim at the canary instead, so that a regression could only ever damage the test's own files.
def _escape_paths(kind: str, canary: Path) -> dict:
    if kind == "dotdot":
        return {"list": "..", "read": "../x", "write": "../x"}
    if kind == "absolute":
        return {"list": "/etc", "read": "/etc/passwd", "write": str(canary)}
    if kind == "workspace-dotdot":
        return {"list": "/workspace/..", "read": "/workspace/../x", "write": "/workspace/../x"}
    if kind == "link-to-root":
        return {"list": "link/etc", "read": "link/etc/passwd", "write": f"link{canary}"}
    if kind == "link-to-sibling":
        return {"list": "sib", "read": "sib/secret.txt", "write": "sib/secret.txt"}
    if kind == "nul":
        return {"list": "src%00", "read": "x%00.txt", "write": "x%00.txt"}
    raise AssertionError(kind)


ESCAPES = ["dotdot", "absolute", "workspace-dotdot", "link-to-root", "link-to-sibling", "nul"]
ENDPOINTS = ["list", "download", "upload", "delete"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("kind", ESCAPES)
def test_every_way_out_is_refused(
    auth_client, session, escape_setup, tmp_path, settings, kind, endpoint
):
    paths = _escape_paths(kind, escape_setup["canary"])
    before = _tree(Path(settings.WORKSPACES_ROOT))
    passwd = Path("/etc/passwd").read_bytes()

    sent = paths["list" if endpoint == "list" else "read" if endpoint == "download" else "write"]
    if endpoint == "list":
        response = auth_client.get(f"{files_url(session)}?path={sent}")
    elif endpoint == "download":
        response = auth_client.get(f"{content_url(session)}?path={sent}")
    elif endpoint == "upload":
        response = upload(auth_client, session, sent, b"escaped!")
    else:
        response = auth_client.delete(f"{content_url(session)}?path={sent}")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "bad_request"
    text = response.content.decode()
    if str(tmp_path) not in sent:  # the answer may echo the caller's path, never reveal the host's
        assert str(tmp_path) not in text
    assert "root:" not in text and "sibling secret" not in text
    assert _tree(Path(settings.WORKSPACES_ROOT)) == before
    assert escape_setup["canary"].read_text() == "outside the workspace"
    assert (escape_setup["sibling"] / "secret.txt").read_text() == "sibling secret"
    assert Path("/etc/passwd").read_bytes() == passwd
    assert not Event.objects.filter(action__in=["file_upload", "file_delete"]).exists()


def test_listing_never_follows_a_link_out(auth_client, session, escape_setup, tmp_path):
    response = auth_client.get(files_url(session))

    assert response.status_code == 200
    text = response.content.decode()
    assert str(tmp_path) not in text
    assert all(e["path"].startswith("/workspace/") for e in response.json()["entries"])
    assert "etc" not in [e["name"] for e in response.json()["entries"]]


# What the kernel says becomes the contract's answer, never a 500.

TOO_LONG = "n" * 300


def _call(client, session, endpoint: str, path: str, body: bytes = b"x"):
    if endpoint == "list":
        return client.get(files_url(session), {"path": path})
    if endpoint == "download":
        return client.get(content_url(session), {"path": path})
    if endpoint == "upload":
        return upload(client, session, path, body)
    return client.delete(f"{content_url(session)}?path={path}")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("path", [TOO_LONG, f"src/{TOO_LONG}/x.txt"])
def test_a_name_too_long_is_a_validation_error(auth_client, session, workspace, endpoint, path):
    (workspace / "src").mkdir()

    response = _call(auth_client, session, endpoint, path)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert error["message"] == "File name too long"
    assert error["details"] == {"path": [f"File name too long: /workspace/{path}"]}
    assert sorted(p.name for p in workspace.iterdir()) == ["src"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_file_used_as_a_directory_is_a_bad_request(auth_client, session, workspace, endpoint):
    (workspace / "notes.txt").write_text("a file")

    response = _call(auth_client, session, endpoint, "notes.txt/inner/x.txt")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "bad_request"
    assert error["message"] == "A parent of the path is not a directory"
    assert (workspace / "notes.txt").read_text() == "a file"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_link_loop_is_a_bad_request(auth_client, session, workspace, endpoint):
    (workspace / "loop1").symlink_to("loop2")
    (workspace / "loop2").symlink_to("loop1")

    response = _call(auth_client, session, endpoint, "loop1/x.txt")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "bad_request"
    assert error["message"] == "Too many levels of symbolic links: /workspace/loop1/x.txt"


def test_links_inside_the_workspace_work_through_every_endpoint(auth_client, session, workspace):
    (workspace / "real").mkdir()
    (workspace / "alias").symlink_to("/workspace/real")  # as `ln -s` in the sandbox writes it

    assert upload(auth_client, session, "alias/a.txt", b"via link").status_code == 201
    assert (workspace / "real" / "a.txt").read_bytes() == b"via link"
    download = auth_client.get(content_url(session), {"path": "alias/a.txt"})
    assert b"".join(download.streaming_content) == b"via link"
    listing = auth_client.get(files_url(session), {"path": "alias"})
    assert listing.json()["entries"][0]["path"] == "/workspace/alias/a.txt"
    assert auth_client.delete(f"{content_url(session)}?path=alias/a.txt").status_code == 204
    assert not (workspace / "real" / "a.txt").exists()


def test_a_file_too_large_for_the_filesystem_is_413(auth_client, session, workspace):
    """EFBIG for real: the process's file size limit, as a full or capped disk would answer."""
    import resource
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        response = upload(auth_client, session, "big.bin", b"x" * 100_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)

    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "payload_too_large"
    assert error["message"] == "No room for the file: File too large"
    assert list(workspace.iterdir()) == []  # the temporary file went too


@pytest.mark.parametrize(
    ("code", "status", "error_code"),
    [
        # The ones a test cannot provoke here (a full disk, a quota, a root user's permissions).
        (errno.ENOSPC, 413, "payload_too_large"),
        (errno.EDQUOT, 413, "payload_too_large"),
        (errno.EXDEV, 400, "bad_request"),
        (errno.EACCES, 403, "forbidden"),
        (errno.ENOTEMPTY, 409, "conflict"),
        (errno.EIO, 400, "bad_request"),
    ],
)
def test_other_os_errors_map_to_the_contract(code, status, error_code):
    from sessions_app.services import _os_error

    error = _os_error(OSError(code, os.strerror(code)), "a/b.txt")

    assert (error.status, error.code) == (status, error_code)
    assert "/tmp" not in error.message


# The workspace quota.


def test_uploads_over_the_workspace_quota_are_refused(auth_client, session, workspace, settings):
    settings.WORKSPACE_MAX_BYTES = 10_000
    assert upload(auth_client, session, "a.bin", b"a" * 6000).status_code == 201

    refused = upload(auth_client, session, "b.bin", b"b" * 6000)

    assert refused.status_code == 413
    error = error_of(refused)
    assert error["code"] == "payload_too_large"
    assert error["message"] == (
        "Workspace quota exceeded: writing /workspace/b.bin (6000 bytes) would bring the "
        "workspace to 12000 bytes, over its limit of 10000 bytes. Delete files to free space."
    )
    assert error["details"] == {"path": "b.bin", "usedBytes": 6000, "limitBytes": 10000}
    assert sorted(p.name for p in workspace.iterdir()) == ["a.bin"]
    # Replacing a file counts only the difference; deleting frees the space.
    assert upload(auth_client, session, "a.bin", b"a" * 9000).status_code == 200
    assert auth_client.delete(f"{content_url(session)}?path=a.bin").status_code == 204
    assert upload(auth_client, session, "b.bin", b"b" * 6000).status_code == 201
