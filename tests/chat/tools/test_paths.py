"""Every way out of the workspace is refused, and refusals never show host paths."""

import os
import shutil

import pytest

from chat.agent.tools import tool_lookup
from sessions_app.workspace import PathRefused, Workspace, virtual_path

NOT_IN_WORKSPACE = (
    'Path not in workspace: Attempted path "{}" resolves outside the allowed workspace '
    "directories: /workspace"
)


def test_virtual_path_normalises_inside_the_workspace():
    assert virtual_path("a/./b/../c.txt") == "/workspace/a/c.txt"
    assert virtual_path("/workspace") == "/workspace"
    assert virtual_path("/workspace/") == "/workspace"
    assert virtual_path(".") == "/workspace"
    with pytest.raises(PathRefused):
        virtual_path("/workspace2/x")
    with pytest.raises(PathRefused):
        virtual_path("//etc/passwd")


def test_real_path_resolves_links_inside_the_workspace(ws):
    (ws / "real").mkdir()
    os.symlink("real", ws / "alias")
    assert Workspace(ws).real_path("/workspace/alias/f.txt") == "/workspace/real/f.txt"
    assert Workspace(ws).virtual("alias/f.txt") == "/workspace/alias/f.txt"


async def test_dot_dot_escape(call):
    result = await call("read_file", file_path="../x")
    assert result.error == NOT_IN_WORKSPACE.format("/x")


async def test_absolute_path_elsewhere(call):
    result = await call("read_file", file_path="/etc/passwd")
    assert result.error == NOT_IN_WORKSPACE.format("/etc/passwd")
    assert "root:" not in result.output


async def test_workspace_dot_dot_escape(call):
    result = await call("read_file", file_path="/workspace/../x")
    assert result.error == NOT_IN_WORKSPACE.format("/x")


async def test_parent_of_a_sibling_name_is_not_inside(call, workspaces):
    # "/workspace/../workspace-b" must not pass a plain prefix test.
    result = await call("read_file", file_path="/workspace/../workspace-b/secret.txt")
    assert result.error == NOT_IN_WORKSPACE.format("/workspace-b/secret.txt")


async def test_symlink_to_root(call, ws):
    os.symlink("/", ws / "root")
    result = await call("read_file", file_path="root/etc/passwd")
    assert result.error == NOT_IN_WORKSPACE.format("/workspace/root/etc/passwd")
    listing = await call("list_directory", dir_path="root")
    assert listing.error == NOT_IN_WORKSPACE.format("/workspace/root")
    escaped_write = await call("write_file", file_path="root/tmp/planted.txt", content="x")
    assert escaped_write.error == NOT_IN_WORKSPACE.format("/workspace/root/tmp/planted.txt")
    assert not os.path.exists("/tmp/planted.txt")


async def test_symlink_to_root_is_not_walked(call, ws):
    os.symlink("/", ws / "root")
    (ws / "mine.txt").write_text("")
    found = await call("glob", pattern="**/passwd")
    assert found.output == 'No files found matching pattern "**/passwd" within /workspace'
    listing = await call("list_directory", dir_path=".")
    assert "root (symlink to outside the workspace)" in listing.output
    grep = await call("grep_search", pattern="root:x:0")
    assert grep.output.startswith("No matches found")


async def test_symlink_to_sibling_workspace(call, ws, workspaces):
    sibling = workspaces[1]
    os.symlink(sibling, ws / "other")
    os.symlink("../session-b/secret.txt", ws / "peek.txt")
    for path in ("other/secret.txt", "peek.txt"):
        result = await call("read_file", file_path=path)
        assert result.error == NOT_IN_WORKSPACE.format(f"/workspace/{path}")
        assert str(sibling) not in result.error
    edit = await call("replace", file_path="peek.txt", old_string="sibling", new_string="mine")
    assert edit.error == NOT_IN_WORKSPACE.format("/workspace/peek.txt")
    assert (sibling / "secret.txt").read_text() == "sibling secret\n"
    many = await call("read_many_files", include=["**/*.txt", "other/secret.txt"])
    assert "sibling secret" not in many.output


async def test_symlink_planted_by_a_shell_command(call, ws, settings):
    if shutil.which("bwrap") is None:
        settings.SHELL_SANDBOX = "none"
    planted = await call(
        "run_shell_command", command="ln -s /etc/passwd passwd && ln -s / hostroot && echo ok"
    )
    assert planted.output.startswith("Output: ok\nProcess Group PGID: ")
    assert os.path.islink(ws / "passwd")
    result = await call("read_file", file_path="passwd")
    assert result.error == NOT_IN_WORKSPACE.format("/workspace/passwd")
    via_dir = await call("read_file", file_path="hostroot/etc/shadow")
    assert via_dir.error == NOT_IN_WORKSPACE.format("/workspace/hostroot/etc/shadow")
    overwrite = await call("write_file", file_path="passwd", content="pwned")
    assert overwrite.error == NOT_IN_WORKSPACE.format("/workspace/passwd")


async def test_nul_byte(call):
    result = await call("read_file", file_path="a\x00b.txt")
    assert result.error == "Path contains a NUL byte, which is not allowed in file paths."
    write = await call("write_file", file_path="x\x00", content="x")
    assert write.error == "Path contains a NUL byte, which is not allowed in file paths."


async def test_glob_and_grep_and_shell_dirs_are_checked(call, settings):
    settings.SHELL_SANDBOX = "none"
    assert (await call("glob", pattern="*", dir_path="/etc")).error == NOT_IN_WORKSPACE.format(
        "/etc"
    )
    assert (await call("glob", pattern="/etc/*")).error == NOT_IN_WORKSPACE.format("/etc/*")
    assert (await call("grep_search", pattern="x", dir_path="..")).error == (
        NOT_IN_WORKSPACE.format("/")
    )
    assert (await call("read_many_files", include=["../**"])).error == NOT_IN_WORKSPACE.format(
        "/**"
    )
    shell = await call("run_shell_command", command="ls", dir_path="/tmp")
    assert shell.error == NOT_IN_WORKSPACE.format("/tmp")


def test_confirmation_for_an_escape_reports_the_refusal(ctx):
    details = tool_lookup("write_file").confirmation_details(
        {"file_path": "../evil.txt", "content": "x"}, ctx
    )
    assert details["error"] == NOT_IN_WORKSPACE.format("/evil.txt")
    assert details["diff"] == ""


# A link out at each component, for every tool that takes a path.


@pytest.fixture
def host(tmp_path):
    directory = tmp_path / "host"
    (directory / "sub").mkdir(parents=True)
    (directory / "secret.txt").write_text("host secret\n")
    (directory / "sub" / "secret.txt").write_text("host secret\n")
    return directory


@pytest.mark.parametrize("link_at", ["out", "a/out", "a/b/out"])
async def test_a_link_out_at_any_component_is_refused_by_every_tool(call, ws, host, link_at):
    (ws / "a" / "b").mkdir(parents=True)
    os.symlink(host, ws / link_at)
    before = sorted(p.name for p in host.rglob("*"))
    file_path, dir_path = f"{link_at}/sub/secret.txt", f"{link_at}/sub"
    calls = {
        "read_file": {"file_path": file_path},
        "write_file": {"file_path": f"{link_at}/planted.txt", "content": "x"},
        "replace": {"file_path": file_path, "old_string": "host", "new_string": "pwned"},
        "list_directory": {"dir_path": dir_path},
        "glob": {"pattern": "*", "dir_path": dir_path},
        "grep_search": {"pattern": "secret", "dir_path": dir_path},
    }
    for name, args in calls.items():
        result = await call(name, **args)
        shown = args.get("file_path") or args.get("dir_path")
        assert result.error == NOT_IN_WORKSPACE.format(f"/workspace/{shown}"), name
    many = await call("read_many_files", include=[f"{link_at}/**", file_path])
    assert "host secret" not in many.output
    assert sorted(p.name for p in host.rglob("*")) == before
    assert (host / "sub" / "secret.txt").read_text() == "host secret\n"


async def test_links_inside_work_for_the_tools(call, ws):
    (ws / "real").mkdir()
    (ws / "real" / "f.txt").write_text("inside\n")
    os.symlink("real", ws / "alias")
    os.symlink("/workspace/real/f.txt", ws / "abs-link.txt")  # as written inside the sandbox
    assert (await call("read_file", file_path="alias/f.txt")).output == "inside\n"
    assert (await call("read_file", file_path="abs-link.txt")).output == "inside\n"
    written = await call("write_file", file_path="abs-link.txt", content="changed\n")
    assert written.ok
    assert (ws / "real" / "f.txt").read_text() == "changed\n"
    assert os.path.islink(ws / "abs-link.txt")
    listing = await call("list_directory", dir_path="alias")
    assert listing.output == "Directory listing for /workspace/alias:\nf.txt (8 bytes)"
    found = await call("glob", pattern="*.txt", dir_path="alias")
    assert found.output.endswith("\n/workspace/real/f.txt")
    top = await call("list_directory", dir_path=".")
    assert "[DIR] alias" in top.output and "abs-link.txt (8 bytes)" in top.output


async def test_dangling_links_and_loops(call, ws):
    os.symlink("made/later.txt", ws / "later")
    os.symlink("loop2", ws / "loop1")
    os.symlink("loop1", ws / "loop2")
    assert (await call("read_file", file_path="later")).error == "File not found: /workspace/later"
    created = await call("write_file", file_path="later", content="now\n")
    assert created.output.startswith("Successfully created and wrote to new file: /workspace/later")
    assert (ws / "made" / "later.txt").read_text() == "now\n"
    for name, args in {
        "read_file": {"file_path": "loop1"},
        "write_file": {"file_path": "loop1/x", "content": "x"},
        "list_directory": {"dir_path": "loop1"},
    }.items():
        result = await call(name, **args)
        shown = args.get("file_path") or args.get("dir_path")
        assert result.error == f"Too many levels of symbolic links: /workspace/{shown}", name
    listing = await call("list_directory", dir_path=".")
    # As gemini-cli's ls (fs.stat of each entry): a link that resolves to nothing is left out.
    assert listing.ok and "loop1" not in listing.output


async def test_a_name_too_long_is_reported_as_the_os_says(call, ws):
    name = "n" * 300
    read = await call("read_file", file_path=name)
    assert read.error == f"Error reading file /workspace/{name}: File name too long (ENAMETOOLONG)"
    write = await call("write_file", file_path=name, content="x")
    assert write.error == (
        f"Error writing to file /workspace/{name}: File name too long (ENAMETOOLONG)"
    )
    listing = await call("list_directory", dir_path=name)
    # gemini-cli's ls reports the Node error as it is.
    assert listing.error == (
        f"Error listing directory: ENAMETOOLONG: name too long, scandir '/workspace/{name}'"
    )
    assert list(ws.iterdir()) == []
