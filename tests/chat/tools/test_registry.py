"""Registry behaviour: names, aliases, argument normalisation, declarations and result shapes."""

import shutil

from google.genai import types

from chat.agent.tools import (
    ToolResult,
    tool_args_normalize,
    tool_catalog,
    tool_declarations,
    tool_lookup,
)
from chat.agent.tools.base import MODEL_TEXT_LIMIT, cut_text, host_path_scrub

CANONICAL = [
    "read_file",
    "read_many_files",
    "list_directory",
    "glob",
    "grep_search",
    "write_file",
    "replace",
    "save_memory",
    "run_shell_command",
]


def test_declarations_use_canonical_names_and_valid_gemini_schemas(settings):
    settings.SHELL_SANDBOX = "none"
    declarations = tool_declarations()
    assert [d["name"] for d in declarations] == CANONICAL
    for declaration in declarations:
        parsed = types.FunctionDeclaration.model_validate(declaration)
        assert parsed.parameters.type == types.Type.OBJECT
        assert declaration["description"]


def test_catalog_lists_aliases_kinds_and_availability(settings):
    settings.SHELL_SANDBOX = "none"
    catalog = {entry["name"]: entry for entry in tool_catalog()}
    assert list(catalog) == CANONICAL
    assert catalog["grep_search"]["aliases"] == [
        "search_file_content",
        "grepSearch",
        "searchFileContent",
    ]
    assert catalog["read_file"]["kind"] == "read"
    assert catalog["replace"]["kind"] == "edit"
    assert catalog["save_memory"]["kind"] == "edit"
    assert catalog["run_shell_command"]["kind"] == "execute"
    assert all(entry["available"] for entry in catalog.values())


def test_lookup_by_name_alias_camel_case_and_api_prefix():
    assert tool_lookup("read_file").name == "read_file"
    assert tool_lookup("readFile").name == "read_file"
    assert tool_lookup("readManyFiles").name == "read_many_files"
    assert tool_lookup("listDirectory").name == "list_directory"
    assert tool_lookup("grepSearch").name == "grep_search"
    assert tool_lookup("searchFileContent").name == "grep_search"
    assert tool_lookup("search_file_content").name == "grep_search"
    assert tool_lookup("writeFile").name == "write_file"
    assert tool_lookup("saveMemory").name == "save_memory"
    assert tool_lookup("runShellCommand").name == "run_shell_command"
    assert tool_lookup("default_api:run_shell_command").name == "run_shell_command"
    assert tool_lookup("rm_rf") is None


def test_normalize_maps_camel_case_and_path_alias():
    read = tool_lookup("read_file")
    assert tool_args_normalize(read, {"path": "a.txt", "startLine": 2, "endLine": 3}) == {
        "file_path": "a.txt",
        "start_line": 2,
        "end_line": 3,
    }
    assert tool_args_normalize(read, {"filePath": "a.txt"}) == {"file_path": "a.txt"}
    # The canonical spelling wins when both are given; nulls count as absent.
    assert tool_args_normalize(read, {"path": "b", "file_path": "a", "end_line": None}) == {
        "file_path": "a"
    }
    replace = tool_lookup("replace")
    assert tool_args_normalize(
        replace, {"filePath": "x", "oldString": "a", "newString": "b", "allowMultiple": True}
    ) == {"file_path": "x", "old_string": "a", "new_string": "b", "allow_multiple": True}
    for name in ("list_directory", "glob", "grep_search"):
        assert tool_args_normalize(tool_lookup(name), {"path": "src"})["dir_path"] == "src"
    assert tool_args_normalize(tool_lookup("grep_search"), {"includePattern": "*.py"}) == {
        "include_pattern": "*.py"
    }


async def test_camel_case_tool_and_args_run_end_to_end(call, ws):
    (ws / "notes.txt").write_text("one\ntwo\nthree\n")
    result = await call("readFile", path="notes.txt", startLine=2, endLine=2)
    assert result.ok
    assert "Status: Showing lines 2-2 of 4 total lines." in result.output
    assert result.output.endswith("--- FILE CONTENT (truncated) ---\ntwo")


async def test_unknown_tool_uses_gemini_cli_wording(call):
    result = await call("read_fil")
    assert result.error.startswith(
        'Tool "read_fil" not found in registry. Tools must use the exact names that are '
        'registered. Did you mean one of: "read_file"'
    )
    assert result.function_response() == {"error": result.error}


async def test_missing_and_mistyped_parameters_are_reported_like_ajv(call):
    missing = await call("read_file")
    assert missing.error == "params must have required property 'file_path'"
    wrong_type = await call("read_file", file_path="a", start_line="two")
    assert wrong_type.error == "params/start_line must be number"
    empty_list = await call("read_many_files", include=[])
    assert empty_list.error == "params/include must NOT have fewer than 1 items"


def test_tool_result_shape():
    good = ToolResult(output="hi", display="Said hi")
    assert good.ok and good.function_response() == {"output": "hi"}
    bad = ToolResult(output="", error="nope")
    assert not bad.ok and bad.function_response() == {"error": "nope"}


def test_cut_text_marks_what_was_dropped():
    text = "x" * (MODEL_TEXT_LIMIT + 123)
    cut = cut_text(text)
    assert cut.startswith("x" * MODEL_TEXT_LIMIT)
    assert cut.endswith("\n... [output truncated: 123 characters omitted]")
    assert cut_text("short") == "short"


async def test_model_output_is_cut_at_40000_characters(call, ws):
    (ws / "big.txt").write_text("".join(f"{i:05d} " + "y" * 60 + "\n" for i in range(1500)))
    result = await call("read_file", file_path="big.txt")
    assert result.ok
    body, marker = result.output.rsplit("\n... [output truncated: ", 1)
    assert len(body) == MODEL_TEXT_LIMIT
    assert marker.endswith(" characters omitted]")


async def test_host_workspace_path_never_reaches_the_model(call, ws, settings):
    settings.SHELL_SANDBOX = "none"
    (ws / "where.txt").write_text(f"written at {ws}/where.txt\n")
    read = await call("read_file", file_path="where.txt")
    assert str(ws) not in read.output and "/workspace/where.txt" in read.output
    if shutil.which("bash"):
        shell = await call("run_shell_command", command="pwd; echo $HOME")
        assert shell.output == "Output: /workspace\n/workspace"
    missing = await call("read_file", file_path="nope/none.txt")
    assert missing.error == "File not found: /workspace/nope/none.txt"


def test_scrub_only_replaces_the_workspace_itself(ctx, ws):
    text = f"{ws}/a.txt {ws} {ws}0/other {ws}-b"
    assert host_path_scrub(text, ctx) == f"/workspace/a.txt /workspace {ws}0/other {ws}-b"
