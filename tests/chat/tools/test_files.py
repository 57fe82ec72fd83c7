"""The file tools: the texts the model and the user see on success and on failure."""

import os
import time

from chat.agent.tools import tool_lookup

# read_file


async def test_read_file_returns_the_content(call, ws):
    (ws / "hello.txt").write_text("hello\nworld")
    result = await call("read_file", file_path="hello.txt")
    assert result.output == "hello\nworld"
    assert result.display == "Read 2 lines from hello.txt"


async def test_read_file_accepts_workspace_absolute_paths(call, ws):
    (ws / "src").mkdir()
    (ws / "src" / "a.py").write_text("print(1)\n")
    result = await call("read_file", file_path="/workspace/src/a.py")
    assert result.output == "print(1)\n"


async def test_read_file_line_range(call, ws):
    (ws / "f.txt").write_text("\n".join(f"line {i}" for i in range(1, 11)))
    result = await call("read_file", file_path="f.txt", start_line=3, end_line=5)
    assert result.output == (
        "\nIMPORTANT: The file content has been truncated.\n"
        "Status: Showing lines 3-5 of 10 total lines.\n"
        "Action: To read more of the file, you can use the 'start_line' and 'end_line' "
        "parameters in a subsequent 'read_file' call.\n\n"
        "--- FILE CONTENT (truncated) ---\n"
        "line 3\nline 4\nline 5"
    )
    assert result.display == "Read lines 3-5 of 10 from f.txt"


async def test_read_file_start_line_only_reads_to_the_end(call, ws):
    (ws / "f.txt").write_text("a\nb\nc")
    result = await call("read_file", file_path="f.txt", start_line=2)
    assert "Status: Showing lines 2-3 of 3 total lines." in result.output
    assert result.output.endswith("--- FILE CONTENT (truncated) ---\nb\nc")


async def test_read_file_caps_at_2000_lines_and_says_how_to_continue(call, ws):
    (ws / "long.txt").write_text("\n".join(f"L{i}" for i in range(1, 2501)))
    first = await call("read_file", file_path="long.txt")
    assert "Status: Showing lines 1-2000 of 2500 total lines." in first.output
    assert "use the 'start_line' and 'end_line' parameters" in first.output
    assert first.output.endswith("L1999\nL2000")
    rest = await call("read_file", file_path="long.txt", start_line=2001, end_line=2500)
    assert "Showing lines 2001-2500 of 2500" in rest.output
    assert rest.output.endswith("L2500")
    # Even an explicit range is capped at 2000 lines per call.
    wide = await call("read_file", file_path="long.txt", start_line=1, end_line=2500)
    assert "Status: Showing lines 1-2000 of 2500 total lines." in wide.output


async def test_read_file_shortens_very_long_lines(call, ws):
    (ws / "min.js").write_text("x" * 2500 + "\nshort")
    result = await call("read_file", file_path="min.js")
    assert "x" * 2000 + "... [truncated]\nshort" in result.output
    assert "IMPORTANT: The file content has been truncated." in result.output
    assert result.display == "Read all 2 lines from min.js (some lines were shortened)"


async def test_read_file_bad_line_numbers(call, ws):
    (ws / "f.txt").write_text("a")
    assert (await call("read_file", file_path="f.txt", start_line=0)).error == (
        "start_line must be at least 1"
    )
    assert (await call("read_file", file_path="f.txt", end_line=0)).error == (
        "end_line must be at least 1"
    )
    assert (await call("read_file", file_path="f.txt", start_line=3, end_line=2)).error == (
        "start_line cannot be greater than end_line"
    )
    assert (await call("read_file", file_path=" ")).error == (
        "The 'file_path' parameter must be non-empty."
    )


async def test_read_file_missing_file_and_directory(call, ws):
    (ws / "dir").mkdir()
    missing = await call("read_file", file_path="missing.txt")
    assert missing.error == "File not found: /workspace/missing.txt"
    assert missing.display == "File not found."
    directory = await call("read_file", file_path="dir")
    assert directory.error == "Path is a directory, not a file: /workspace/dir"


async def test_read_file_too_large(call, ws, settings):
    settings.TOOL_MAX_FILE_BYTES = 10
    (ws / "big.txt").write_text("0123456789ABC")
    result = await call("read_file", file_path="big.txt")
    assert result.error == "File size exceeds the 10 bytes limit: /workspace/big.txt (13 bytes)"
    (ws / "ok.txt").write_text("0123456789")
    assert (await call("read_file", file_path="ok.txt")).output == "0123456789"


async def test_read_file_refuses_to_display_binary_content(call, ws):
    (ws / "blob.dat").write_bytes(b"\x00\x01\x02garbage\xff\xfe")
    (ws / "data").write_bytes(b"ELF\x00\x00\x00" + bytes(range(256)))
    (ws / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    for name in ("blob.dat", "data", "pic.png"):
        result = await call("read_file", file_path=name)
        assert result.output == f"Cannot display content of binary file: {name}"
        assert result.display == f"Skipped binary file: {name}"


async def test_read_file_decodes_a_utf16_file_with_bom(call, ws):
    (ws / "u16.txt").write_bytes("\ufeffhéllo".encode("utf-16-le"))
    assert (await call("read_file", file_path="u16.txt")).output == "héllo"


async def test_read_file_does_not_hang_on_a_fifo(call, ws):
    os.mkfifo(ws / "pipe")
    result = await call("read_file", file_path="pipe")
    assert result.error == "Cannot read /workspace/pipe: it is not a regular file."


# read_many_files


async def test_read_many_files_concatenates_with_separators(call, ws):
    (ws / "src").mkdir()
    (ws / "src" / "a.py").write_text("A = 1\n")
    (ws / "src" / "b.py").write_text("B = 2\n")
    (ws / "README.md").write_text("# Readme\n")
    result = await call("read_many_files", include=["src/**/*.py", "README.md"])
    assert result.output == (
        "--- /workspace/README.md ---\n\n# Readme\n\n\n"
        "--- /workspace/src/a.py ---\n\nA = 1\n\n\n"
        "--- /workspace/src/b.py ---\n\nB = 2\n\n\n"
        "\n--- End of content ---"
    )
    assert result.display == "Read 3 files."


async def test_read_many_files_directory_exclude_and_default_excludes(call, ws):
    (ws / "docs").mkdir()
    (ws / "docs" / "guide.md").write_text("guide\n")
    (ws / "docs" / "skip.log").write_text("log\n")
    (ws / "node_modules" / "pkg").mkdir(parents=True)
    (ws / "node_modules" / "pkg" / "index.md").write_text("dependency\n")
    (ws / "archive.zip").write_bytes(b"PK\x03\x04")
    result = await call("read_many_files", include=["docs/", "**/*.md", "*.zip"], exclude=["*.log"])
    assert "--- /workspace/docs/guide.md ---" in result.output
    assert "skip.log" not in result.output
    assert "dependency" not in result.output
    assert "archive.zip" not in result.output


async def test_read_many_files_no_match(call, ws):
    result = await call("read_many_files", include=["**/*.rs"])
    assert result.output == "No files matching the criteria were found or all were skipped."
    assert result.display == "Read 0 files."


async def test_read_many_files_skips_files_over_the_limit(call, ws, settings):
    settings.TOOL_MAX_FILE_BYTES = 10
    (ws / "small.txt").write_text("tiny")
    (ws / "large.txt").write_text("much too large")
    result = await call("read_many_files", include=["*.txt"])
    assert "--- /workspace/small.txt ---" in result.output
    assert "much too large" not in result.output
    assert "large.txt (Read error: File size exceeds the 10 bytes limit" in result.display


async def test_read_many_files_warns_about_truncated_files(call, ws):
    (ws / "long.txt").write_text("\n".join(str(i) for i in range(3000)))
    result = await call("read_many_files", include=["long.txt"])
    assert "[WARNING: This file was truncated. To view the full content, use the 'read_file'" in (
        result.output
    )


# list_directory


async def test_list_directory_lists_dirs_first_with_sizes(call, ws):
    (ws / "zeta.txt").write_text("12345")
    (ws / "Alpha.md").write_text("")
    (ws / "src").mkdir()
    (ws / ".git").mkdir()
    (ws / "node_modules").mkdir()
    result = await call("list_directory", dir_path=".")
    assert result.output == (
        "Directory listing for /workspace:\n"
        "[DIR] src\n"
        "Alpha.md (0 bytes)\n"
        "zeta.txt (5 bytes)\n"
        "\n(2 ignored)"
    )
    assert result.display == "Listed 3 item(s). (2 ignored)"


async def test_list_directory_ignore_patterns_and_path_alias(call, ws):
    (ws / "sub").mkdir()
    (ws / "sub" / "keep.py").write_text("")
    (ws / "sub" / "drop.log").write_text("")
    result = await call("listDirectory", path="/workspace/sub", ignore=["*.log"])
    assert result.output == "Directory listing for /workspace/sub:\nkeep.py (0 bytes)"


async def test_list_directory_empty_missing_and_not_a_directory(call, ws):
    (ws / "empty").mkdir()
    (ws / "file.txt").write_text("x")
    empty = await call("list_directory", dir_path="empty")
    assert empty.ok and empty.output == "Directory /workspace/empty is empty."
    missing = await call("list_directory", dir_path="nowhere")
    assert missing.error == "Error: Directory not found or inaccessible: /workspace/nowhere"
    not_dir = await call("list_directory", dir_path="file.txt")
    assert not_dir.error == "Error: Path is not a directory: /workspace/file.txt"


# glob


async def test_glob_finds_files_newest_first(call, ws):
    (ws / "src" / "pkg").mkdir(parents=True)
    old = ws / "src" / "old.py"
    old.write_text("")
    os.utime(old, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    (ws / "src" / "pkg" / "new.py").write_text("")
    (ws / "src" / "notes.md").write_text("")
    result = await call("glob", pattern="**/*.py")
    assert result.output == (
        'Found 2 file(s) matching "**/*.py" within /workspace, sorted by modification time '
        "(newest first):\n/workspace/src/pkg/new.py\n/workspace/src/old.py"
    )
    assert result.display == "Found 2 matching file(s)"


async def test_glob_dir_path_braces_and_case(call, ws):
    (ws / "web").mkdir()
    (ws / "web" / "App.TSX").write_text("")
    (ws / "web" / "util.ts").write_text("")
    (ws / "top.ts").write_text("")
    # One mtime for both: newest first would otherwise depend on a clock tick between writes.
    now = time.time()
    for name in ("App.TSX", "util.ts"):
        os.utime(ws / "web" / name, (now, now))
    found = await call("glob", pattern="*.{ts,tsx}", dir_path="web")
    assert found.output.splitlines()[1:] == ["/workspace/web/App.TSX", "/workspace/web/util.ts"]
    strict = await call("glob", pattern="*.tsx", dir_path="web", case_sensitive=True)
    assert strict.output == 'No files found matching pattern "*.tsx" within /workspace/web'


async def test_glob_skips_git_and_node_modules(call, ws):
    (ws / ".git").mkdir()
    (ws / ".git" / "config.txt").write_text("")
    (ws / "node_modules").mkdir()
    (ws / "node_modules" / "x.txt").write_text("")
    result = await call("glob", pattern="**/*.txt")
    assert result.output == 'No files found matching pattern "**/*.txt" within /workspace'
    assert result.display == "No files found"


async def test_glob_bad_arguments(call, ws):
    (ws / "f.txt").write_text("")
    assert (await call("glob", pattern="  ")).error == "The 'pattern' parameter cannot be empty."
    assert (await call("glob", pattern="*", dir_path="nope")).error == (
        "Search path does not exist /workspace/nope"
    )
    assert (await call("glob", pattern="*", dir_path="f.txt")).error == (
        "Search path is not a directory: /workspace/f.txt"
    )


# grep_search


async def test_grep_search_lists_matches_by_file(call, ws):
    (ws / "a.py").write_text("def main():\n    return 1\n")
    (ws / "b.py").write_text("x = 1\ndef helper():\n    pass\ndef other():\n    pass\n")
    (ws / "c.txt").write_text("nothing here\n")
    result = await call("grep_search", pattern=r"def \w+\(")
    assert result.output.startswith(
        'Found 3 matches for pattern "def \\w+\\(" in the workspace directory:\n---\nFile: a.py\n'
    )
    assert "L1: def main():" in result.output
    assert "L2: def helper():" in result.output and "L4: def other():" in result.output
    assert "File: c.txt" not in result.output
    assert result.display == "Found 3 matches"


async def test_grep_search_single_match_shows_context(call, ws):
    (ws / "a.txt").write_text("alpha\nbeta\ngamma\n")
    result = await call("grep_search", pattern="BETA")
    assert result.output == (
        'Found 1 match for pattern "BETA" in the workspace directory:\n---\n'
        "File: a.txt\nL1- alpha\nL2: beta\nL3- gamma\nL4- \n---"
    )


async def test_grep_search_include_pattern_and_dir_path(call, ws):
    (ws / "src").mkdir()
    (ws / "src" / "a.py").write_text("token = 1\n")
    (ws / "src" / "a.js").write_text("token = 2\n")
    (ws / "node_modules").mkdir()
    (ws / "node_modules" / "dep.py").write_text("token = 3\n")
    result = await call("grep_search", pattern="token", dir_path="src", include_pattern="*.py")
    assert result.output.startswith(
        'Found 1 match for pattern "token" in path "src" (filter: "*.py"):\n---\nFile: a.py\n'
    )
    assert "a.js" not in result.output and "dep.py" not in result.output


async def test_grep_search_no_matches_and_invalid_regex(call, ws):
    (ws / "a.txt").write_text("hello\n")
    none = await call("grep_search", pattern="absent")
    assert none.ok
    assert none.output == 'No matches found for pattern "absent" in the workspace directory.'
    bad = await call("grep_search", pattern="(unclosed")
    assert bad.error.startswith(
        "Invalid regular expression pattern provided: (unclosed. Error: missing ), "
    )
    missing_dir = await call("grep_search", pattern="x", dir_path="nope")
    assert missing_dir.error == "Path does not exist: /workspace/nope"


async def test_grep_search_limits_total_matches_and_skips_binary(call, ws):
    (ws / "many.txt").write_text("hit\n" * 150)
    (ws / "bin.dat").write_bytes(b"hit\x00\x00")
    result = await call("search_file_content", pattern="hit")
    assert result.output.startswith(
        'Found 100 matches for pattern "hit" in the workspace directory (results limited to '
        "100 matches for performance):"
    )
    assert "bin.dat" not in result.output
    names = await call("grep_search", pattern="hit", names_only=True)
    assert names.output.endswith(":\nmany.txt")


# write_file


async def test_write_file_creates_and_overwrites(call, ws):
    created = await call("write_file", file_path="pkg/hello.txt", content="hi\n")
    assert created.output == (
        "Successfully created and wrote to new file: /workspace/pkg/hello.txt. "
        "Here is the updated code:\nhi\n"
    )
    assert (ws / "pkg" / "hello.txt").read_text() == "hi\n"
    assert created.display == "Created pkg/hello.txt (1 line)"
    overwritten = await call("writeFile", path="pkg/hello.txt", content="hello\n")
    assert overwritten.output.startswith(
        "Successfully overwrote file: /workspace/pkg/hello.txt. Here is the updated code:\n"
    )
    assert (ws / "pkg" / "hello.txt").read_text() == "hello\n"


async def test_write_file_keeps_crlf_line_endings(call, ws):
    (ws / "win.txt").write_bytes(b"a\r\nb\r\n")
    await call("write_file", file_path="win.txt", content="x\ny\n")
    assert (ws / "win.txt").read_bytes() == b"x\r\ny\r\n"


async def test_write_file_errors(call, ws, settings):
    (ws / "dir").mkdir()
    assert (await call("write_file", file_path="dir", content="x")).error == (
        "Path is a directory, not a file: /workspace/dir"
    )
    assert (await call("write_file", file_path="", content="x")).error == (
        'Missing or empty "file_path"'
    )
    settings.TOOL_MAX_FILE_BYTES = 10
    too_big = await call("write_file", file_path="big.txt", content="x" * 11)
    assert too_big.error == "Content size exceeds the 10 bytes limit: /workspace/big.txt (11 bytes)"
    assert not (ws / "big.txt").exists()


def test_write_file_confirmation_shows_a_diff(ctx, ws):
    (ws / "a.txt").write_text("one\ntwo\n")
    tool = tool_lookup("write_file")
    details = tool.confirmation_details({"file_path": "a.txt", "content": "one\n2\n"}, ctx)
    assert details["type"] == "edit"
    assert details["filePath"] == "/workspace/a.txt"
    assert details["isNewFile"] is False
    assert details["diff"].startswith("--- a.txt\tCurrent\n+++ a.txt\tProposed\n@@")
    assert "-two\n+2\n" in details["diff"]
    new = tool.confirmation_details({"file_path": "b.txt", "content": "x"}, ctx)
    assert new["isNewFile"] is True
    assert "+x\n\\ No newline at end of file" in new["diff"]


# replace


async def test_replace_one_occurrence(call, ws):
    (ws / "code.py").write_text("a = 1\nb = 2\n")
    result = await call("replace", file_path="code.py", old_string="b = 2", new_string="b = 3")
    assert result.output == "Successfully modified file: /workspace/code.py (1 replacements)."
    assert (ws / "code.py").read_text() == "a = 1\nb = 3\n"
    assert result.display == "Edited code.py (1 replacement)"


async def test_replace_not_found(call, ws):
    (ws / "code.py").write_text("a = 1\n")
    result = await call("replace", file_path="code.py", old_string="zzz", new_string="y")
    assert result.error == (
        "Failed to edit, 0 occurrences found for old_string in /workspace/code.py. Ensure "
        "you're not escaping content incorrectly and check whitespace, indentation, and "
        "context. Use read_file tool to verify."
    )
    assert result.display == "Failed to edit, could not find the string to replace."


async def test_replace_multiple_needs_allow_multiple(call, ws):
    (ws / "code.py").write_text("x\nx\nx\n")
    refused = await call("replace", file_path="code.py", old_string="x", new_string="y")
    assert refused.error == (
        "Failed to edit, Expected 1 occurrence but found 3 for old_string in file: "
        "/workspace/code.py"
    )
    assert (ws / "code.py").read_text() == "x\nx\nx\n"
    allowed = await call(
        "replace", filePath="code.py", oldString="x", newString="y", allowMultiple=True
    )
    assert allowed.output == "Successfully modified file: /workspace/code.py (3 replacements)."
    assert (ws / "code.py").read_text() == "y\ny\ny\n"


async def test_replace_creates_missing_file_with_empty_old_string(call, ws):
    created = await call("replace", file_path="new.py", old_string="", new_string="pass\n")
    assert created.output == "Created new file: /workspace/new.py with provided content."
    assert (ws / "new.py").read_text() == "pass\n"
    again = await call("replace", file_path="new.py", old_string="", new_string="pass\n")
    assert again.error == "File already exists, cannot create: /workspace/new.py"
    missing = await call("replace", file_path="gone.py", old_string="a", new_string="b")
    assert missing.error == "File not found: /workspace/gone.py"


async def test_replace_identical_strings_and_crlf(call, ws):
    (ws / "win.txt").write_bytes(b"keep\r\nold\r\n")
    same = await call("replace", file_path="win.txt", old_string="old", new_string="old")
    assert same.error == (
        "No changes to apply. The old_string and new_string are identical in file: "
        "/workspace/win.txt"
    )
    await call("replace", file_path="win.txt", old_string="keep\nold", new_string="keep\nnew")
    assert (ws / "win.txt").read_bytes() == b"keep\r\nnew\r\n"


async def test_replace_too_large_file(call, ws, settings):
    settings.TOOL_MAX_FILE_BYTES = 10
    (ws / "big.txt").write_text("a" * 20)
    result = await call("replace", file_path="big.txt", old_string="a", new_string="b")
    assert result.error == "File size exceeds the 10 bytes limit: /workspace/big.txt (20 bytes)"


def test_replace_confirmation_details(ctx, ws):
    (ws / "c.py").write_text("x = 1\n")
    tool = tool_lookup("replace")
    details = tool.confirmation_details(
        {"file_path": "c.py", "old_string": "x = 1", "new_string": "x = 2"}, ctx
    )
    assert details == {
        "type": "edit",
        "filePath": "/workspace/c.py",
        "diff": "--- c.py\tCurrent\n+++ c.py\tProposed\n@@ -1 +1 @@\n-x = 1\n+x = 2\n",
        "isNewFile": False,
    }
    failing = tool.confirmation_details(
        {"file_path": "c.py", "old_string": "nope", "new_string": "x"}, ctx
    )
    assert failing["diff"] == "" and failing["error"].startswith("Failed to edit, 0 occurrences")


async def test_glob_accepts_a_workspace_absolute_pattern(call, ws):
    (ws / "src").mkdir()
    (ws / "src" / "m.py").write_text("")
    result = await call("glob", pattern="/workspace/src/*.py")
    assert result.output.endswith(":\n/workspace/src/m.py")


def test_read_tools_ask_for_plain_information_confirmation(ctx):
    details = tool_lookup("read_file").confirmation_details({"file_path": "a.txt"}, ctx)
    assert details == {"type": "info", "title": "Confirm ReadFile", "prompt": "a.txt"}


async def test_write_file_reports_a_file_too_large_for_the_filesystem(call, ws):
    """EFBIG for real (the process's file size limit), as a capped disk would answer."""
    import resource
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        result = await call("write_file", file_path="big.txt", content="x" * 100_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert result.error == "Error writing to file /workspace/big.txt: File too large (EFBIG)"
    assert list(ws.iterdir()) == []
