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
