"""list_directory (tools/ls.ts), glob (tools/glob.ts) and read_many_files
(tools/read-many-files.ts): their texts, their order, and the project's ignore files."""

import base64
import os
import time


async def test_list_directory_puts_directories_first_in_locale_order(call, ws):
    """ls.ts sorts with localeCompare: case only breaks ties, punctuation before letters."""
    (ws / "src").mkdir()
    (ws / "Docs").mkdir()
    (ws / "b.txt").write_text("12345")
    (ws / "B.md").write_text("")
    (ws / "_init.py").write_text("x")
    (ws / "a-b.txt").write_text("")
    result = await call("list_directory", dir_path=".")
    assert result.output == (
        "Directory listing for /workspace:\n[DIR] Docs\n[DIR] src\n_init.py (1 bytes)\n"
        "a-b.txt (0 bytes)\nB.md (0 bytes)\nb.txt (5 bytes)"
    )
    assert result.display == "Found 6 item(s)."


async def test_list_directory_respects_ignore_files_and_patterns(call, ws):
    (ws / ".git").mkdir()
    (ws / ".gitignore").write_text("*.log\n")
    (ws / "run.log").write_text("")
    (ws / "keep.py").write_text("")
    (ws / "skip.tmp").write_text("")
    result = await call("list_directory", dir_path="/workspace", ignore=["*.tmp"])
    assert result.output == (
        "Directory listing for /workspace:\n.gitignore (6 bytes)\nkeep.py (0 bytes)\n\n(2 ignored)"
    )
    unfiltered = await call(
        "list_directory",
        dir_path=".",
        file_filtering_options={"respect_git_ignore": False},
    )
    assert "run.log (0 bytes)" in unfiltered.output and "[DIR] .git" in unfiltered.output


async def test_list_directory_empty_missing_and_not_a_directory(call, ws):
    (ws / "empty").mkdir()
    (ws / "file.txt").write_text("")
    empty = await call("list_directory", dir_path="empty")
    assert empty.ok and empty.output == "Directory /workspace/empty is empty."
    missing = await call("list_directory", dir_path="nowhere")
    assert missing.error == (
        "Error listing directory: ENOENT: no such file or directory, stat '/workspace/nowhere'"
    )
    not_dir = await call("list_directory", dir_path="file.txt")
    assert not_dir.error == "Error: Path is not a directory: /workspace/file.txt"


def _age(path, days: float) -> None:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))


async def test_glob_lists_recent_files_newest_first_then_older_ones_alphabetically(call, ws):
    """glob.ts sortFileEntries: within 24 hours by mtime, descending; older by path."""
    for name, days in (("old_b.py", 3), ("Old_a.py", 5), ("new1.py", 0.01), ("new2.py", 0.001)):
        (ws / name).write_text("")
        _age(ws / name, days)
    result = await call("glob", pattern="*.py")
    assert result.output == (
        'Found 4 file(s) matching "*.py" within /workspace, sorted by modification time (newest '
        "first):\n/workspace/new2.py\n/workspace/new1.py\n/workspace/Old_a.py\n/workspace/old_b.py"
    )
    assert result.display == "Found 4 matching file(s)"


async def test_glob_case_dir_path_ignores_and_no_match(call, ws):
    (ws / "web").mkdir()
    (ws / "web" / "App.TSX").write_text("")
    (ws / "node_modules").mkdir()
    (ws / "node_modules" / "x.tsx").write_text("")
    found = await call("glob", pattern="**/*.tsx")
    assert found.output.endswith(":\n/workspace/web/App.TSX")
    strict = await call("glob", pattern="*.tsx", dir_path="web", case_sensitive=True)
    assert strict.output == 'No files found matching pattern "*.tsx" within /workspace/web'
    (ws / ".geminiignore").write_text("web/\n")
    ignored = await call("glob", pattern="**/*.tsx")
    assert ignored.output == (
        'No files found matching pattern "**/*.tsx" within /workspace (1 files were ignored)'
    )


async def test_glob_bad_arguments(call, ws):
    (ws / "f.txt").write_text("")
    assert (await call("glob", pattern="  ")).error == "The 'pattern' parameter cannot be empty."
    assert (await call("glob", pattern="*", dir_path="nope")).error == (
        "Search path does not exist /workspace/nope"
    )
    assert (await call("glob", pattern="*", dir_path="f.txt")).error == (
        "Search path is not a directory: /workspace/f.txt"
    )


async def test_read_many_files_joins_parts_as_the_function_response_does(call, ws):
    """read-many-files.ts content parts, joined with "\\n" by convertToFunctionResponse."""
    (ws / "a.txt").write_text("alpha\n")
    (ws / "b.txt").write_bytes(b"one\r\ntwo")
    result = await call("read_many_files", include=["*.txt"])
    assert result.output == (
        "--- /workspace/a.txt ---\n\nalpha\n\n\n\n"
        "--- /workspace/b.txt ---\n\none\ntwo\n\n\n"
        "\n--- End of content ---"
    )
    assert result.display == "Read 2 files."


async def test_read_many_files_excludes_defaults_and_asks_for_assets_by_name(call, ws):
    (ws / "docs").mkdir()
    (ws / "docs" / "guide.md").write_text("guide")
    (ws / "skip.log").write_text("log")
    (ws / "node_modules").mkdir()
    (ws / "node_modules" / "dep.md").write_text("dependency")
    (ws / "archive.zip").write_bytes(b"PK\x03\x04")
    (ws / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    result = await call("read_many_files", include=["**"], exclude=["*.log"])
    assert "--- /workspace/docs/guide.md ---" in result.output
    for absent in ("skip.log", "dependency", "archive.zip", "pic.png"):
        assert absent not in result.output
    assert result.parts == []
    named = await call("read_many_files", include=["*.png"])
    assert named.parts == [
        {
            "inlineData": {
                "mimeType": "image/png",
                "data": base64.b64encode(b"\x89PNG\r\n\x1a\n").decode(),
            }
        }
    ]
    assert named.output == "\n--- End of content ---"


async def test_read_many_files_no_match_and_truncation_warning(call, ws):
    nothing = await call("read_many_files", include=["*.nothing"])
    assert nothing.output == "No files matching the criteria were found or all were skipped."
    (ws / "long.txt").write_text("\n".join(str(i) for i in range(2500)))
    long = await call("read_many_files", include=["long.txt"])
    assert long.output.startswith(
        "--- /workspace/long.txt ---\n\n[WARNING: This file was truncated. To view the full "
        "content, use the 'read_file' tool on this specific file.]\n\n0\n1\n"
    )


async def test_write_file_creates_overwrites_and_shows_the_change(call, ws):
    """write-file.ts: the success text ends with getDiffContextSnippet of the change."""
    created = await call("write_file", file_path="pkg/hello.txt", content="hi\n")
    assert created.output == (
        "Successfully created and wrote to new file: /workspace/pkg/hello.txt. Here is the "
        "updated code:\nhi\n"
    )
    overwritten = await call("write_file", file_path="pkg/hello.txt", content="hello\n")
    assert overwritten.output == (
        "Successfully overwrote file: /workspace/pkg/hello.txt. Here is the updated code:\nhello\n"
    )
    (ws / "win.txt").write_bytes(b"a\r\nb\r\n")
    crlf = await call("write_file", file_path="win.txt", content="a\nc\n")
    assert (ws / "win.txt").read_bytes() == b"a\r\nc\r\n"
    assert crlf.output.endswith("Here is the updated code:\na\nc\n")


async def test_write_file_refusals(call, ws):
    (ws / "dir").mkdir()
    assert (await call("write_file", file_path="dir", content="x")).error == (
        "Path is a directory, not a file: /workspace/dir"
    )
    assert (await call("write_file", file_path="", content="x")).error == (
        'Missing or empty "file_path"'
    )
    placeholder = await call("write_file", file_path="a.py", content="(rest of code ...)\n")
    assert placeholder.error == (
        "`content` contains an omission placeholder (for example 'rest of methods ...'). "
        "Provide complete file content."
    )
