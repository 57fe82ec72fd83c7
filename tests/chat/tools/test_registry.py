"""The registry and the one entry point: names, aliases, declarations, validation wording, timing
and the function responses the model gets back (gemini-cli's scheduler and tool executor)."""

import json

from google.genai import types

from chat.agent.tools import (
    ToolResult,
    function_response_parts,
    tool_args_normalize,
    tool_catalog,
    tool_declarations,
    tool_lookup,
    tool_prepare,
)
from chat.agent.tools.base import host_path_scrub
from chat.agent.tools.declarations import model_family

CANONICAL = [
    "list_directory",
    "read_file",
    "grep_search",
    "glob",
    "replace",
    "write_file",
    "web_fetch",
    "run_shell_command",
    "google_web_search",
    "write_todos",
    "read_many_files",
    "save_memory",
]


def test_declarations_are_gemini_clis_for_the_models_family(settings):
    """tools/definitions/model-family-sets: default-legacy for 2.5 models, gemini-3 for 3."""
    settings.SHELL_SANDBOX = "none"
    legacy = {d["name"]: d for d in tool_declarations("gemini-2.5-flash")}
    assert list(legacy) == CANONICAL
    for declaration in legacy.values():
        parsed = types.FunctionDeclaration.model_validate(declaration)
        assert parsed.parameters_json_schema["type"] == "object"
    read = legacy["read_file"]
    assert read["description"].startswith(
        "Reads and returns the content of a specified file. If the file is large"
    )
    assert read["parametersJsonSchema"]["properties"]["start_line"] == {
        "description": "Optional: The 1-based line number to start reading from.",
        "type": "integer",
        "minimum": 1,
    }
    grep = legacy["grep_search"]["parametersJsonSchema"]["properties"]
    for name in ("case_sensitive", "fixed_strings", "context", "before", "after", "no_ignore"):
        assert name in grep
    assert legacy["replace"]["parametersJsonSchema"]["required"] == [
        "file_path",
        "instruction",
        "old_string",
        "new_string",
    ]
    shell = legacy["run_shell_command"]
    assert "is_background" in shell["parametersJsonSchema"]["properties"]
    assert "Process Group PGID: Only included if available." in shell["description"]
    assert "no network access" in shell["description"]
    assert "only public addresses" in legacy["web_fetch"]["description"].lower()
    assert model_family("gemini-3-pro-preview") == "gemini-3"
    three = {d["name"]: d for d in tool_declarations("gemini-3-pro-preview")}
    assert three["read_file"]["description"].startswith(
        "Reads and returns the content of a specified file. To maintain context efficiency"
    )


def test_catalog_lists_aliases_kinds_and_availability(settings):
    settings.SHELL_SANDBOX = "none"
    catalog = {entry["name"]: entry for entry in tool_catalog()}
    assert list(catalog) == CANONICAL
    assert catalog["grep_search"]["aliases"] == [
        "search_file_content",
        "grepSearch",
        "searchFileContent",
    ]
    kinds = {name: entry["kind"] for name, entry in catalog.items()}
    assert kinds["read_file"] == "read" and kinds["google_web_search"] == "read"
    assert kinds["replace"] == "edit" and kinds["save_memory"] == "edit"
    assert kinds["run_shell_command"] == "execute"
    assert kinds["web_fetch"] == "fetch" and kinds["write_todos"] == "other"
    assert catalog["read_file"]["parameters"]["required"] == ["file_path"]
    assert all(entry["available"] for entry in catalog.values())


def test_lookup_by_name_alias_camel_case_and_api_prefix():
    assert tool_lookup("readFile").name == "read_file"
    assert tool_lookup("search_file_content").name == "grep_search"
    assert tool_lookup("writeTodos").name == "write_todos"
    assert tool_lookup("webFetch").name == "web_fetch"
    assert tool_lookup("default_api:run_shell_command").name == "run_shell_command"
    assert tool_lookup("rm_rf") is None


def test_normalize_maps_camel_case_and_path_alias():
    read = tool_lookup("read_file")
    assert tool_args_normalize(read, {"path": "a.txt", "startLine": 2, "endLine": 3}) == {
        "file_path": "a.txt",
        "start_line": 2,
        "end_line": 3,
    }
    assert tool_args_normalize(read, {"path": "b", "file_path": "a", "end_line": None}) == {
        "file_path": "a"
    }
    grep = tool_lookup("grep_search")
    assert tool_args_normalize(grep, {"path": "src", "caseSensitive": True}) == {
        "dir_path": "src",
        "case_sensitive": True,
    }


async def test_unknown_tool_uses_the_schedulers_wording(call):
    """scheduler.ts _createToolNotFoundErroredToolCall with utils/tool-utils.ts getToolSuggestion."""
    result = await call("read_fil")
    assert result.error == (
        'Tool "read_fil" not found. Did you mean one of: "read_file", "write_file", "replace"?'
    )


async def test_schema_violations_are_worded_as_ajv_words_them(call):
    """utils/schemaValidator.ts: ajv's errorsText with dataVar "params"."""
    assert (await call("read_file")).error == "params must have required property 'file_path'"
    assert (await call("read_file", file_path="a", start_line="two")).error == (
        "params/start_line must be integer"
    )
    assert (await call("read_file", file_path="a", start_line=0)).error == (
        "params/start_line must be >= 1"
    )
    assert (await call("read_many_files", include=[])).error == (
        "params/include must NOT have fewer than 1 items"
    )
    assert (await call("read_many_files", include=[""])).error == (
        "params/include/0 must NOT have fewer than 1 characters"
    )
    assert (
        await call("write_todos", todos=[{"description": "x", "status": "done"}])
    ).error == "params/todos/0/status must be equal to one of the allowed values"
    assert (await call("write_todos", todos=[], extra=1)).error == (
        "params must NOT have additional properties"
    )


async def test_prepare_validates_once_and_run_times_the_call(ctx, ws):
    (ws / "a.txt").write_text("x\n")
    call = await tool_prepare("readFile", {"path": "a.txt"}, ctx, "call-1")
    assert call.valid and call.name == "read_file" and call.args == {"file_path": "a.txt"}
    (ws / "a.txt").write_text("changed\n")
    outcome = await call.run()
    assert outcome.status == "success" and outcome.text == "changed\n"
    assert outcome.duration_ms >= 0
    bad = await tool_prepare(
        "read_file", {"file_path": "a.txt", "start_line": 3, "end_line": 1}, ctx
    )
    assert not bad.valid
    assert (await bad.run()).text == "start_line cannot be greater than end_line"


def test_function_responses_are_shaped_as_gemini_cli_sends_them():
    """utils/generateContentResponseUtilities.ts convertToFunctionResponse."""
    text = ToolResult(output="hi")
    assert function_response_parts(
        call_id="c", name="read_file", result=text, model="gemini-2.5-flash"
    ) == (
        [{"functionResponse": {"id": "c", "name": "read_file", "response": {"output": "hi"}}}],
        [],
    )
    error = ToolResult(output="", error="nope")
    assert function_response_parts(call_id="c", name="x", result=error, model="m")[0] == [
        {"functionResponse": {"id": "c", "name": "x", "response": {"error": "nope"}}}
    ]
    png = {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}
    image = ToolResult(output="", parts=[png])
    parts, injected = function_response_parts(
        call_id="c", name="read_file", result=image, model="gemini-2.5-flash"
    )
    assert parts == [
        {
            "functionResponse": {
                "id": "c",
                "name": "read_file",
                "response": {"output": "Binary content provided (1 item(s))."},
            }
        },
        png,
    ]
    assert injected == []
    nested, _ = function_response_parts(
        call_id="c", name="read_file", result=image, model="gemini-3-pro-preview"
    )
    assert nested == [
        {
            "functionResponse": {
                "id": "c",
                "name": "read_file",
                "response": {"output": "Binary content provided (1 item(s))."},
                "parts": [png],
            }
        }
    ]
    mp3 = {"inlineData": {"mimeType": "audio/mpeg", "data": "AAAA"}}
    audio, injected = function_response_parts(
        call_id="c",
        name="read_file",
        result=ToolResult(output="", parts=[mp3]),
        model="gemini-2.5-flash",
    )
    assert audio[0]["functionResponse"]["response"] == {
        "output": "Binary content (audio/mpeg) read successfully. Content will be injected for "
        "analysis in the next sequence."
    }
    assert injected == [mp3]
    json.dumps(audio)


async def test_host_workspace_path_never_reaches_the_model(call, ws, settings):
    (ws / "where.txt").write_text(f"written at {ws}/where.txt\n")
    read = await call("read_file", file_path="where.txt")
    assert str(ws) not in read.output and "/workspace/where.txt" in read.output
    missing = await call("read_file", file_path="nope/none.txt")
    assert missing.error == "File not found: /workspace/nope/none.txt"


def test_scrub_only_replaces_the_workspace_itself(ctx, ws):
    text = f"{ws}/a.txt {ws} {ws}0/other {ws}-b"
    assert host_path_scrub(text, ctx) == f"/workspace/a.txt /workspace {ws}0/other {ws}-b"
