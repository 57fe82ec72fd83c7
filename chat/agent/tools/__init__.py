"""Registry of the agent's tools, under gemini-cli's names, and the entry points the agent uses."""

from __future__ import annotations

import re

from .base import Tool, ToolContext, ToolKind, ToolResult, tool_error
from .edit import ReplaceTool
from .glob import GlobTool
from .grep import GrepSearchTool
from .ls import ListDirectoryTool
from .memory import SaveMemoryTool
from .read_file import ReadFileTool
from .read_many_files import ReadManyFilesTool
from .shell import ShellTool
from .write_file import WriteFileTool

__all__ = [
    "TOOLS",
    "Tool",
    "ToolContext",
    "ToolKind",
    "ToolResult",
    "tool_args_normalize",
    "tool_catalog",
    "tool_declarations",
    "tool_lookup",
    "tool_run",
]

TOOLS: tuple[Tool, ...] = (
    ReadFileTool(),
    ReadManyFilesTool(),
    ListDirectoryTool(),
    GlobTool(),
    GrepSearchTool(),
    WriteFileTool(),
    ReplaceTool(),
    SaveMemoryTool(),
    ShellTool(),
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


def tool_declarations() -> list[dict]:
    """functionDeclarations for Gemini: canonical names of the tools available right now."""
    return [
        {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
        for tool in TOOLS
        if tool.available()
    ]


def tool_catalog() -> list[dict]:
    """Every tool, with its aliases, kind and whether this server can run it now."""
    catalog = []
    for tool in TOOLS:
        reason = tool.unavailable_reason()
        entry = {
            "name": tool.name,
            "aliases": list(tool.aliases),
            "description": tool.description,
            "parameters": tool.parameters,
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


def _not_found(name: str) -> str:
    names = [tool.name for tool in TOOLS if tool.available()]
    closest = sorted(names, key=lambda candidate: _levenshtein(str(name), candidate))[:3]
    quoted = ", ".join(f'"{candidate}"' for candidate in closest)
    suggestion = f" Did you mean one of: {quoted}?" if len(closest) > 1 else ""
    if len(closest) == 1:
        suggestion = f" Did you mean {quoted}?"
    return (
        f'Tool "{name}" not found in registry. Tools must use the exact names that are '
        f"registered.{suggestion}"
    )


async def tool_run(name: str, args: dict, ctx: ToolContext) -> ToolResult:
    """Look up, normalise, validate and execute one call; failures come back as results."""
    tool = tool_lookup(name)
    if tool is None:
        return tool_error(_not_found(name), f"Unknown tool: {name}")
    if not isinstance(args, dict):
        return tool_error("params must be object", "Invalid arguments.")
    # execute() validates first, so callers that skip tool_run get the same checks.
    return await tool.execute(tool_args_normalize(tool, args), ctx)
