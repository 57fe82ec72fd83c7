"""The workspace module on its own: every way out refused, links inside followed, fd-based
removal and walks, temp-then-rename writes and the quota, with openat2 and with the walk."""

import ctypes
import errno
import hashlib
import os
import platform
import posixpath
import stat
import threading
from pathlib import Path

import pytest

from sessions_app import workspace as workspace_module
from sessions_app.workspace import (
    MAX_WALK_DEPTH,
    LinkLoop,
    PathRefused,
    Workspace,
    WorkspaceQuotaExceeded,
    workspace_tree_remove,
)

NOT_IN_WORKSPACE = (
    'Path not in workspace: Attempted path "{}" resolves outside the allowed workspace '
    "directories: /workspace"
)


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    """Each test runs with openat2 (where the kernel has it) and with the O_NOFOLLOW walk."""
    if request.param == "openat2" and not workspace_module.OPENAT2:
        pytest.skip("this kernel has no openat2")
    monkeypatch.setattr(workspace_module, "OPENAT2", request.param == "openat2")
    return request.param


@pytest.fixture
def host(tmp_path):
    """A host directory outside the workspace, with files that must never be reached."""
    directory = tmp_path / "host"
    directory.mkdir()
    (directory / "secret.txt").write_text("host secret")
    (directory / "sub").mkdir()
    (directory / "sub" / "deep.txt").write_text("host secret")
    return directory


@pytest.fixture
def root(tmp_path, host):
    """A workspace with a directory tree and links out at each depth."""
    workspace = tmp_path / "workspaces" / "u" / "s"
    (workspace / "a" / "b").mkdir(parents=True)
    (workspace / "real").mkdir()
    (workspace / "real" / "f.txt").write_text("inside")
    (workspace / "out").symlink_to(host)  # absolute host path, first component
    (workspace / "a" / "out").symlink_to(host)  # second component
    (workspace / "a" / "b" / "out").symlink_to(host)  # third component
    (workspace / "rel").symlink_to("../../../../host")  # relative, climbing out
    (workspace / "a" / "rel").symlink_to("../../../../../host")
    (workspace / "via-mount-dotdot").symlink_to("/workspace/../host")
    (workspace / "final-out").symlink_to(host / "secret.txt")
    (workspace / "dangling-out").symlink_to(host / "planted.txt")
    (workspace / "proc-root").symlink_to("/proc/self/root")
    return workspace


@pytest.fixture
def ws(root, resolver):
    return Workspace(root, max_bytes=0)


def _tree(path: Path) -> dict:
    found = {}
    for directory, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            entry = Path(directory) / name
            if entry.is_symlink():
                found[str(entry)] = "link:" + os.readlink(entry)
            elif entry.is_file():
                found[str(entry)] = hashlib.sha256(entry.read_bytes()).hexdigest()
            else:
                found[str(entry)] = "dir"
    return found


def test_openat2_is_used_where_the_kernel_has_it():
    release = tuple(int(part) for part in platform.release().split(".")[:2])
    if platform.machine() in ("x86_64", "aarch64") and release >= (5, 6):
        assert workspace_module.OPENAT2 is True


# Every way out, one by one, through every operation.

ESCAPES = [
    "../x",
    "/etc/passwd",
    "/workspace/../x",
    "out/secret.txt",
    "a/out/secret.txt",
    "a/b/out/secret.txt",
    "a/b/out/sub/deep.txt",
    "rel/secret.txt",
    "a/rel/secret.txt",
    "via-mount-dotdot/secret.txt",
    "proc-root/etc/passwd",
]
# Paths whose last component is a link out: following it is refused (removing it is not).
FINAL_LINKS = ["final-out", "dangling-out", "out", "rel"]


def _shown(path: str) -> str:
    joined = path if path.startswith("/") else f"/workspace/{path}"
    return "/" + posixpath.normpath(joined).lstrip("/")


OPERATIONS = ["read", "stat", "check", "listdir", "write", "mkdirs", "real_path", "walk"]


@pytest.mark.parametrize(
    ("path", "operation"),
    [(path, operation) for path in ESCAPES + FINAL_LINKS for operation in OPERATIONS]
    # Renaming onto a link replaces the link itself, inside the workspace: not a way out.
    + [(path, "rename_to") for path in ESCAPES],
)
def test_every_way_out_is_refused(ws, root, host, tmp_path, path, operation):
    before = _tree(tmp_path)
    calls = {
        "read": lambda: ws.read_head(path, 100),
        "stat": lambda: ws.stat(path),
        "check": lambda: ws.check(path),
        "listdir": lambda: ws.listdir(path),
        "write": lambda: ws.write_bytes(path, b"escaped"),
        "mkdirs": lambda: ws.mkdirs(path),
        "real_path": lambda: ws.real_path(path),
        "walk": lambda: list(ws.walk(path)),
        "rename_to": lambda: ws.rename("real/f.txt", path),
    }
    with pytest.raises(PathRefused) as refused:
        calls[operation]()
    assert str(refused.value) == NOT_IN_WORKSPACE.format(_shown(path))
    assert str(tmp_path) not in str(refused.value)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("path", ESCAPES)
def test_removing_through_a_link_out_is_refused(ws, tmp_path, path):
    before = _tree(tmp_path)
    with pytest.raises(PathRefused):
        ws.remove(path)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("path", ESCAPES)
def test_renaming_from_outside_is_refused(ws, tmp_path, path):
    before = _tree(tmp_path)
    with pytest.raises(PathRefused):
        ws.rename(path, "stolen.txt")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("path", FINAL_LINKS)
def test_a_link_out_is_removed_itself_never_its_target(ws, root, host, path):
    ws.remove(path)
    assert not os.path.lexists(root / path)
    assert (host / "secret.txt").read_text() == "host secret"
    assert (host / "sub" / "deep.txt").exists()


def test_exists_and_lexists_on_links_out(ws):
    assert ws.exists("final-out") is False
    assert ws.lexists("final-out") is True
    with pytest.raises(PathRefused):
        ws.lexists("out/secret.txt")


# Links that stay inside the workspace work.


@pytest.mark.parametrize(
    "target",
    ["real", "./real/", "/workspace/real", "//workspace/./real", "a/../real", "/workspace/a/.."],
)
def test_links_inside_are_followed(ws, root, target):
    (root / "alias").symlink_to(target)
    expected = "/workspace" if target.endswith("..") else "/workspace/real"
    assert ws.real_path("alias") == expected
    if expected == "/workspace/real":
        assert ws.read_head("alias/f.txt", 100) == b"inside"
        ws.write_bytes("alias/new.txt", b"through the link")
        assert (root / "real" / "new.txt").read_bytes() == b"through the link"
        assert sorted(entry.name for entry in ws.listdir("alias")) == ["f.txt", "new.txt"]
        assert [entry.relative for entry in ws.walk("alias")] == ["real/f.txt", "real/new.txt"]


def test_a_chain_of_links_and_a_file_link_inside(ws, root):
    (root / "one").symlink_to("two")
    (root / "two").symlink_to("/workspace/a/three")
    (root / "a" / "three").symlink_to("../real/f.txt")
    assert ws.read_head("one", 100) == b"inside"
    assert ws.real_path("one") == "/workspace/real/f.txt"
    ws.write_bytes("one", b"written through three links")
    assert (root / "real" / "f.txt").read_bytes() == b"written through three links"
    assert (root / "one").is_symlink() and (root / "two").is_symlink()


def test_a_dangling_link_inside_reads_as_missing_and_writes_its_target(ws, root):
    (root / "later").symlink_to("real/later.txt")
    with pytest.raises(FileNotFoundError):
        ws.read_head("later", 10)
    assert ws.exists("later") is False
    assert ws.lexists("later") is True
    entry = next(e for e in ws.listdir("") if e.name == "later")
    assert entry.link == "broken"
    assert ws.write_bytes("later", b"made").created is True
    assert (root / "real" / "later.txt").read_bytes() == b"made"


@pytest.mark.parametrize("operation", ["read", "stat", "write", "listdir"])
def test_link_loops_are_refused_as_loops(ws, root, operation):
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    (root / "self").symlink_to("self/x")
    for path in ("loop1", "self", "loop1/x"):
        with pytest.raises(LinkLoop) as loop:
            {
                "read": lambda path=path: ws.read_head(path, 10),
                "stat": lambda path=path: ws.stat(path),
                "write": lambda path=path: ws.write_bytes(path, b"x"),
                "listdir": lambda path=path: ws.listdir(path),
            }[operation]()
        assert str(loop.value) == f"Too many levels of symbolic links: /workspace/{path}"


def test_listing_judges_links_without_following_them_out(ws, root):
    (root / "alias").symlink_to("real")
    (root / "loop").symlink_to("loop")
    links = {entry.name: entry.link for entry in ws.listdir("")}
    assert links["real"] is None
    assert links["alias"] == "inside"
    assert links["loop"] == "broken"
    for name in ("out", "rel", "final-out", "via-mount-dotdot", "proc-root"):
        assert links[name] == "outside", name
    assert links["dangling-out"] == "outside"
    alias = next(entry for entry in ws.listdir("") if entry.name == "alias")
    assert alias.is_dir and stat.S_ISLNK(alias.lstat.st_mode)


# Walks and removal by fds.


def test_walks_never_enter_a_link(ws, root):
    (root / "alias").symlink_to("real")
    (root / "node_modules").mkdir()
    (root / "node_modules" / "dep.js").write_text("")
    walked = {entry.relative for entry in ws.walk("", excluded_dirs=frozenset({"node_modules"}))}
    assert "real/f.txt" in walked
    assert "alias" in walked and not any(path.startswith("alias/") for path in walked)
    assert not any(path.startswith(("out/", "rel/", "a/out/")) for path in walked)
    assert not any("node_modules" in path for path in walked)


def test_walks_stop_at_the_depth_limit_and_the_quota_says_so(root, resolver):
    deep = root / "deep"
    path = deep
    for level in range(MAX_WALK_DEPTH + 3):
        path = path / f"d{level}"
    path.mkdir(parents=True)
    (path / "hidden.bin").write_bytes(b"x" * 10)
    ws = Workspace(root, max_bytes=10**9)
    walked = [entry.relative for entry in ws.walk("deep")]
    assert not any(entry.endswith("hidden.bin") for entry in walked)
    assert "nested deeper than" in ws.over_quota()
    with pytest.raises(WorkspaceQuotaExceeded):
        Workspace(root, max_bytes=10**9).write_bytes("small.txt", b"x")


def test_removing_a_tree_leaves_the_host_alone_and_any_depth_goes(ws, root, host, tmp_path):
    tree = root / "tree"
    (tree / "x" / "y").mkdir(parents=True)
    (tree / "x" / "y" / "to-host").symlink_to(host)
    (tree / "x" / "file").write_text("mine")
    path = tree / "deep"
    for level in range(300):
        path = path / f"{level}"
    path.mkdir(parents=True)
    (path / "leaf.txt").write_text("bottom")
    host_before = _tree(host)
    ws.remove("tree")
    assert not tree.exists()
    assert _tree(host) == host_before
    assert not any(name.startswith(".gw-rm-") for name in os.listdir(root))


def test_removing_a_whole_workspace_by_fds(root, host):
    path = root / "deep"
    for level in range(200):
        path = path / f"{level}"
    path.mkdir(parents=True)
    host_before = _tree(host)
    workspace_tree_remove(root)
    assert not root.exists()
    assert _tree(host) == host_before
    workspace_tree_remove(root)  # already gone: nothing to do


def test_remove_missing_and_root(ws):
    with pytest.raises(FileNotFoundError):
        ws.remove("missing.txt")
    with pytest.raises(PathRefused):
        ws.remove("/workspace")


# Writes.


def test_write_replaces_through_a_temporary_file_and_keeps_the_mode(ws, root):
    script = root / "run.sh"
    script.write_text("old")
    script.chmod(0o755)
    old_inode = script.stat().st_ino
    outcome = ws.write_bytes("run.sh", b"#!/bin/sh\necho new\n")
    assert outcome.created is False
    assert outcome.stat.st_size == len(b"#!/bin/sh\necho new\n")
    assert script.read_bytes() == b"#!/bin/sh\necho new\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert script.stat().st_ino != old_inode  # renamed into place, never truncated in place
    assert not [name for name in os.listdir(root) if name.startswith(".gw-")]


def test_write_makes_parents_and_refuses_directories_and_files_as_parents(ws, root):
    assert ws.write_bytes("new/dir/file.txt", b"x").created is True
    assert (root / "new" / "dir" / "file.txt").read_bytes() == b"x"
    with pytest.raises(IsADirectoryError):
        ws.write_bytes("new/dir", b"x")
    with pytest.raises(IsADirectoryError):
        ws.write_bytes("/workspace", b"x")
    with pytest.raises(NotADirectoryError):
        ws.write_bytes("new/dir/file.txt/inner.txt", b"x")


def test_names_near_and_over_the_limit(ws, root):
    near = "n" * 250
    ws.write_bytes(near, b"fits")  # the temporary name is short whatever the real one
    assert (root / near).read_bytes() == b"fits"
    over = "o" * 300
    for call in (
        lambda: ws.write_bytes(over, b"x"),
        lambda: ws.read_head(over, 1),
        lambda: ws.listdir(over),
        lambda: ws.remove(over),
    ):
        with pytest.raises(OSError) as too_long:
            call()
        assert too_long.value.errno == errno.ENAMETOOLONG


def test_rename_and_mkdirs_inside(ws, root):
    (root / "alias").symlink_to("real")
    ws.rename("alias/f.txt", "moved/here/f.txt")
    assert (root / "moved" / "here" / "f.txt").read_text() == "inside"
    ws.rename("alias", "alias2")
    assert os.readlink(root / "alias2") == "real"
    ws.mkdirs("alias2/x/y")
    assert (root / "real" / "x" / "y").is_dir()
    ws.mkdirs("alias2/x/y")  # already there
    with pytest.raises(FileExistsError):
        ws.mkdirs("moved/here/f.txt")


# The quota.


def test_usage_counts_apparent_sizes_and_hard_links_once(root, resolver):
    for child in list(root.iterdir()):
        if child.is_symlink() or child.is_file():
            child.unlink()
        else:
            workspace_tree_remove(child)
    (root / "a.bin").write_bytes(b"x" * 1000)
    os.link(root / "a.bin", root / "same.bin")
    (root / "d").mkdir()
    (root / "d" / "b.bin").write_bytes(b"y" * 500)
    (root / "link").symlink_to("a.bin")
    expected = 1000 + 500 + (root / "d").lstat().st_size + len("a.bin")
    assert Workspace(root, max_bytes=0).usage() == expected


def test_quota_refuses_growth_and_lets_shrinking_through(root, resolver):
    for child in list(root.iterdir()):
        if child.is_symlink() or child.is_file():
            child.unlink()
        else:
            workspace_tree_remove(child)
    ws = Workspace(root, max_bytes=1000)
    ws.write_bytes("a.bin", b"x" * 600)
    with pytest.raises(WorkspaceQuotaExceeded) as exceeded:
        Workspace(root, max_bytes=1000).write_bytes("b.bin", b"y" * 600)
    assert str(exceeded.value) == (
        "Workspace quota exceeded: writing /workspace/b.bin (600 bytes) would bring the "
        "workspace to 1200 bytes, over its limit of 1000 bytes. Delete files to free space."
    )
    assert not (root / "b.bin").exists()
    Workspace(root, max_bytes=1000).write_bytes("a.bin", b"x" * 900)  # replacing counts
    (root / "c.bin").write_bytes(b"z" * 500)  # as a shell command would
    over = Workspace(root, max_bytes=1000)
    assert over.over_quota().startswith("Workspace quota exceeded: the workspace uses 1400 bytes")
    with pytest.raises(WorkspaceQuotaExceeded):
        over.write_bytes("empty.txt", b"")
    over.write_bytes("a.bin", b"x" * 100)  # shrinking is how usage drops
    assert Workspace(root, max_bytes=1000).over_quota() is None
    assert Workspace(root, max_bytes=0).over_quota() is None


# The race, with a swapper on the host side: quick, and for both resolvers.


def test_a_swap_racing_every_lookup_never_escapes(root, host, tmp_path, resolver):
    (root / "flip").mkdir()
    (root / "flip" / "secret.txt").write_text("inside")
    (root / "link").symlink_to(host)
    before = _tree(host)
    libc = ctypes.CDLL(None, use_errno=True)
    stop = threading.Event()
    swaps = 0

    def swap() -> None:
        nonlocal swaps
        flip, link = os.fsencode(root / "flip"), os.fsencode(root / "link")
        while not stop.is_set():
            assert libc.renameat2(-100, flip, -100, link, 2) == 0
            swaps += 1

    swapper = threading.Thread(target=swap)
    swapper.start()
    ws = Workspace(root, max_bytes=0)
    outcomes: dict[str, int] = {}
    try:
        # At least 1,500 lookups, and on until the swapper has raced them over 1,000 times (on a
        # loaded machine the swapper thread can get fewer turns than the lookups).
        n = -1
        while n < 1500 or (swaps <= 1000 and n < 200_000):
            n += 1
            operation = n % 5
            try:
                if operation == 0:
                    data = ws.read_head("flip/secret.txt", 100)
                    assert data == b"inside"
                elif operation == 1:
                    ws.write_bytes(f"flip/w{n}.txt", b"w")
                elif operation == 2:
                    names = {entry.name for entry in ws.listdir("flip")}
                    assert "sub" not in names
                elif operation == 3:
                    ws.remove(f"flip/w{n - 2}.txt")
                else:
                    assert all(
                        not entry.relative.startswith("flip/sub") for entry in ws.walk("flip")
                    )
                outcomes["ok"] = outcomes.get("ok", 0) + 1
            except PathRefused:
                outcomes["refused"] = outcomes.get("refused", 0) + 1
            except FileNotFoundError:
                outcomes["missing"] = outcomes.get("missing", 0) + 1
    finally:
        stop.set()
        swapper.join()
    assert swaps > 1000
    assert outcomes.get("ok", 0) > 0 and outcomes.get("refused", 0) > 0, outcomes
    assert _tree(host) == before
