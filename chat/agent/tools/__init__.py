"""Registry of the agent's tools, under gemini-cli's names, and the one entry point to run them."""

from __future__ import annotations

import asyncio
import functools
import json
import re

from google.genai import types

from chat.agent.events import call_id_new

from .base import Tool, ToolContext, ToolKind, ToolResult
from .edit import ReplaceTool
from .glob import GlobTool
from .grep import GrepSearchTool
from .invoke import ToolCall, ToolOutcome, function_response_parts
from .ls import ListDirectoryTool
from .memory import SaveMemoryTool
from .read_file import ReadFileTool
from .read_many_files import ReadManyFilesTool
from .shell import ShellTool
from .todos import WriteTodosTool
from .web_fetch import WebFetchTool
from .web_search import WebSearchTool
from .write_file import WriteFileTool

__all__ = [
    "TOOLS",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolKind",
    "ToolOutcome",
    "ToolResult",
    "function_response_parts",
    "tool_args_normalize",
    "tool_catalog",
    "tool_declarations",
    "tool_lookup",
    "tool_prepare",
    "tool_run",
]

# gemini-cli's registration order (config.ts createToolRegistry), then this server's extras.
TOOLS: tuple[Tool, ...] = (
    ListDirectoryTool(),
    ReadFileTool(),
    GrepSearchTool(),
    GlobTool(),
    ReplaceTool(),
    WriteFileTool(),
    WebFetchTool(),
    ShellTool(),
    WebSearchTool(),
    WriteTodosTool(),
    ReadManyFilesTool(),
    SaveMemoryTool(),
)

_BY_NAME: dict[str, Tool] = {}
for _tool in TOOLS:
    for _name in (_tool.name, *_tool.aliases):
        _BY_NAME[_name] = _tool

# Models sometimes prefix calls with the namespace the API shows them ("default_api:read_file").
_NAMESPACE_PREFIX = re.compile(r"^(?:default_api|functions)[.:]")


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def tool_lookup(name: str) -> Tool | None:
    """Find a tool by canonical name, alias, or camelCase spelling."""
    if not isinstance(name, str):
        return None
    name = _NAMESPACE_PREFIX.sub("", name.strip())
    return _BY_NAME.get(name) or _BY_NAME.get(_camel_to_snake(name))


def tool_args_normalize(tool: Tool, args: dict) -> dict:
    """Map camelCase keys and per-tool aliases (such as `path`) to canonical parameter names.

    A canonical key wins over an alias for the same parameter; null values count as absent;
    unknown keys are kept, since the schema check ignores them as gemini-cli's does.
    """
    properties = tool.parameters.get("properties", {})
    canonical: dict = {}
    aliased: dict = {}
    for key, value in (args or {}).items():
        if value is None:
            continue
        if key in properties:
            canonical[key] = value
            continue
        snake = _camel_to_snake(key)
        target = (
            snake
            if snake in properties
            else tool.arg_aliases.get(key) or tool.arg_aliases.get(snake) or key
        )
        aliased.setdefault(target, value)
    return {**aliased, **canonical}


def tool_declarations(model: str = "") -> list[dict]:
    """functionDeclarations for Gemini: the tools available now, as the model's family sees them."""
    return [tool.declaration(model) for tool in TOOLS if tool.available()]


def tool_declarations_wire(model: str = "") -> str:
    """The request's `tools` value as JSON (the SDK's Tool type, dumped), for the tools available
    now; built once per model and set of tools, since every turn sends it."""
    available = tuple(tool.name for tool in TOOLS if tool.available())
    return _wire(model, available) if available else ""


@functools.lru_cache(maxsize=32)
def _wire(model: str, available: tuple[str, ...]) -> str:
    declarations = [tool.declaration(model) for tool in TOOLS if tool.name in available]
    tool = types.Tool(function_declarations=declarations)
    return json.dumps([tool.model_dump(mode="json", exclude_none=True, by_alias=True)])


def tool_catalog() -> list[dict]:
    """Every tool, with its aliases, kind and whether this server can run it now."""
    catalog = []
    for tool in TOOLS:
        reason = tool.unavailable_reason()
        declaration = tool.declaration()
        parameters = declaration["parametersJsonSchema"]
        if tool.lenient_required:
            # What a caller must send: the model is asked for more than the server insists on.
            required = [key for key in parameters["required"] if key not in tool.lenient_required]
            parameters = {**parameters, "required": required}
        entry = {
            "name": tool.name,
            "aliases": list(tool.aliases),
            "description": declaration["description"],
            "parameters": parameters,
            "kind": tool.kind.value,
            "available": reason is None,
        }
        if reason:
            entry["unavailableReason"] = reason
        catalog.append(entry)
    return catalog


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def tool_not_found(name: str) -> str:
    """The scheduler's wording, with getToolSuggestion's three closest names."""
    names = [tool.name for tool in TOOLS if tool.available()]
    closest = sorted(names, key=lambda candidate: _levenshtein(str(name), candidate))[:3]
    quoted = ", ".join(f'"{candidate}"' for candidate in closest)
    if len(closest) > 1:
        suggestion = f" Did you mean one of: {quoted}?"
    elif closest:
        suggestion = f" Did you mean {quoted}?"
    else:
        suggestion = ""
    return f'Tool "{name}" not found.{suggestion}'


async def tool_prepare(name: str, args, ctx: ToolContext, call_id: str = "") -> ToolCall:
    """Look up, normalise and validate a call once; the result says what is wrong, if anything."""
    tool = tool_lookup(name)
    call_id = call_id or call_id_new(tool.name if tool else str(name))
    if tool is None:
        return ToolCall(
            str(name),
            None,
            args if isinstance(args, dict) else {},
            ctx,
            call_id,
            tool_not_found(name),
        )
    if not isinstance(args, dict):
        return ToolCall(str(name), tool, {}, ctx, call_id, "Value of params must be an object")
    normalized = tool_args_normalize(tool, args)
    # Validation resolves paths on disk: off the event loop, like the tools themselves.
    problem = await asyncio.to_thread(tool.validate, normalized, ctx)
    return ToolCall(str(name), tool, normalized, ctx, call_id, problem)


async def tool_run(name: str, args, ctx: ToolContext, call_id: str = "") -> ToolResult:
    """Prepare and run one call; failures come back as results."""
    call = await tool_prepare(name, args, ctx, call_id)
    return (await call.run()).result
