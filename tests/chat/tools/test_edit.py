"""replace, as gemini-cli's tools/edit.ts: exact, then whitespace-flexible lines re-indented to
the file, then a token regex, then a fuzzy match; texts name the path the model sent."""

import pytest

from chat.agent.tools import tool_lookup

CODE = (
    "def main():\n"
    "    value = compute(1, 2)\n"
    "    if value > 3:\n"
    "        print('big')\n"
    "    return value\n"
)


async def test_exact_edit_ends_with_the_updated_code(call, ws):
    """edit.ts execute: the success text, then getDiffContextSnippet's changed region (5 lines)."""
    (ws / "code.py").write_text(CODE)
    result = await call(
        "replace", file_path="code.py", old_string="print('big')", new_string="print('huge')"
    )
    assert result.output == (
        "Successfully modified file: /workspace/code.py (1 replacements). Here is the updated "
        "code:\n" + CODE.replace("big", "huge")
    )
    assert (ws / "code.py").read_text() == CODE.replace("big", "huge")


async def test_snippet_shows_only_the_changed_region_of_a_long_file(call, ws):
    lines = [f"line {i}" for i in range(1, 41)]
    (ws / "long.txt").write_text("\n".join(lines) + "\n")
    result = await call(
        "replace", file_path="long.txt", old_string="line 20\n", new_string="LINE 20\n"
    )
    assert result.output == (
        "Successfully modified file: /workspace/long.txt (1 replacements). Here is the updated "
        "code:\n...\nline 15\nline 16\nline 17\nline 18\nline 19\nLINE 20\nline 21\nline 22\n"
        "line 23\nline 24\nline 25\n..."
    )


async def test_an_indented_edit_recovers_with_the_files_indentation(call, ws):
    """calculateFlexibleReplacement: lines equal once trimmed match; the replacement takes the
    indentation of the match's first line."""
    (ws / "code.py").write_text(CODE)
    result = await call(
        "replace",
        file_path="code.py",
        old_string="if value > 3:\n    print('big')",
        new_string="if value > 10:\n    print('huge')",
    )
    assert result.ok, result.error
    assert (ws / "code.py").read_text() == (
        "def main():\n"
        "    value = compute(1, 2)\n"
        "    if value > 10:\n"
        "        print('huge')\n"
        "    return value\n"
    )
    assert result.output.startswith(
        "Successfully modified file: /workspace/code.py (1 replacements). Here is the updated code:\n"
    )
    assert "Applied fuzzy match" not in result.output


async def test_token_drift_is_matched_by_the_token_regex(call, ws):
    """calculateRegexReplacement: tokens split at delimiters, joined by flexible whitespace."""
    (ws / "code.py").write_text(CODE)
    result = await call(
        "replace",
        file_path="code.py",
        old_string="value = compute( 1,2 )",
        new_string="value = compute(3, 4)",
    )
    assert result.ok, result.error
    assert "    value = compute(3, 4)\n" in (ws / "code.py").read_text()


async def test_a_near_miss_is_a_fuzzy_edit_and_says_where(call, ws):
    """calculateFuzzyReplacement and getFuzzyMatchFeedback: within 10% weighted Levenshtein."""
    (ws / "code.py").write_text(CODE)
    result = await call(
        "replace",
        file_path="code.py",
        old_string="    if valeu > 3:\n        print('big')",
        new_string="    if value > 4:\n        print('big!')",
    )
    assert result.ok, result.error
    assert (ws / "code.py").read_text() == CODE.replace("value > 3", "value > 4").replace(
        "'big'", "'big!'"
    )
    assert result.output.endswith("    return value\n Applied fuzzy match at line 3-4.")


async def test_nothing_found_names_the_path_the_model_sent(call, ws):
    (ws / "code.py").write_text(CODE)
    result = await call("replace", file_path="code.py", old_string="absent text", new_string="x")
    assert result.error == (
        "Failed to edit, 0 occurrences found for old_string in code.py. Ensure you're not "
        "escaping content incorrectly and check whitespace, indentation, and context. Use "
        "read_file tool to verify."
    )
    assert result.display == "Failed to edit, could not find the string to replace."
    assert (ws / "code.py").read_text() == CODE


async def test_several_occurrences_need_allow_multiple(call, ws):
    (ws / "code.py").write_text("x\nx\nx\n")
    refused = await call("replace", file_path="/workspace/code.py", old_string="x", new_string="y")
    assert refused.error == (
        "Failed to edit, Expected 1 occurrence but found 3 for old_string in file: "
        "/workspace/code.py. If you intended to replace multiple occurrences, set "
        "'allow_multiple' to true."
    )
    allowed = await call(
        "replace", file_path="code.py", old_string="x", new_string="y", allow_multiple=True
    )
    assert allowed.output == (
        "Successfully modified file: /workspace/code.py (3 replacements). Here is the updated "
        "code:\ny\ny\ny\n"
    )


async def test_create_with_an_empty_old_string(call, ws):
    created = await call("replace", file_path="pkg/new.py", old_string="", new_string="pass\n")
    assert created.output == (
        "Created new file: /workspace/pkg/new.py with provided content. Here is the updated "
        "code:\npass\n"
    )
    assert (ws / "pkg" / "new.py").read_text() == "pass\n"
    again = await call("replace", file_path="pkg/new.py", old_string="", new_string="x")
    assert again.error == "File already exists, cannot create: /workspace/pkg/new.py"
    missing = await call("replace", file_path="gone.py", old_string="a", new_string="b")
    assert missing.error == "File not found: /workspace/gone.py"


async def test_identical_strings_are_refused(call, ws):
    (ws / "code.py").write_text(CODE)
    same = await call("replace", file_path="code.py", old_string="main", new_string="main")
    assert same.error == (
        "No changes to apply. The old_string and new_string are identical in file: code.py"
    )


async def test_crlf_files_keep_their_line_endings(call, ws):
    """The file is edited with \\n and written back with \\r\\n; as gemini-cli diffs the \\n text
    against the \\r\\n one, its snippet is then the whole file."""
    (ws / "win.txt").write_bytes(b"keep\r\nold\r\nlast\r\n")
    result = await call("replace", file_path="win.txt", old_string="old\r\n", new_string="new\r\n")
    assert (ws / "win.txt").read_bytes() == b"keep\r\nnew\r\nlast\r\n"
    assert result.output == (
        "Successfully modified file: /workspace/win.txt (1 replacements). Here is the updated "
        "code:\nkeep\nnew\nlast\n"
    )


async def test_omission_placeholders_are_refused(call, ws):
    (ws / "code.py").write_text(CODE)
    result = await call(
        "replace",
        file_path="code.py",
        old_string="def main():",
        new_string="def main():\n    // rest of methods ...",
    )
    assert result.error == (
        "`new_string` contains an omission placeholder (for example 'rest of methods ...'). "
        "Provide exact literal replacement text."
    )


@pytest.mark.parametrize("instruction", [None, "Rename the function."])
async def test_instruction_is_optional_for_callers(call, ws, instruction):
    (ws / "a.txt").write_text("one\n")
    args = {"file_path": "a.txt", "old_string": "one", "new_string": "two"}
    if instruction:
        args["instruction"] = instruction
    assert (await call("replace", **args)).ok


def test_confirmation_shows_the_diff_or_the_reason(ctx, ws):
    (ws / "a.txt").write_text("one\ntwo\n")
    tool = tool_lookup("replace")
    details = tool.confirmation_details(
        {"file_path": "a.txt", "old_string": "two", "new_string": "2"}, ctx
    )
    assert details == {
        "type": "edit",
        "filePath": "/workspace/a.txt",
        "diff": "--- a.txt\tCurrent\n+++ a.txt\tProposed\n@@ -1,2 +1,2 @@\n one\n-two\n+2\n",
        "isNewFile": False,
    }
    failing = tool.confirmation_details(
        {"file_path": "a.txt", "old_string": "zzz", "new_string": "2"}, ctx
    )
    assert failing["diff"] == "" and failing["error"].startswith("Failed to edit, 0 occurrences")
