"""Core types shared by every agent tool: kinds, context, results, the Tool base class."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from sessions_app.workspace import WORKSPACE_MOUNT

logger = logging.getLogger(__name__)

MODEL_TEXT_LIMIT = 40_000
WORKSPACE_ROOT = WORKSPACE_MOUNT


class ToolKind(str, Enum):
    READ = "read"
    EDIT = "edit"
    EXECUTE = "execute"


@dataclass
class ToolContext:
    workspace: Path
    session_id: str


@dataclass
class ToolResult:
    output: str
    error: str | None = None
    display: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def function_response(self) -> dict:
        if self.error is not None:
            return {"error": self.error}
        return {"output": self.output}


def tool_error(message: str, display: str = "") -> ToolResult:
    return ToolResult(output="", error=message, display=display or message)


def cut_text(text: str, limit: int = MODEL_TEXT_LIMIT, *, keep_tail: bool = False) -> str:
    """Cut text for the model; with keep_tail the last 80% is kept too, as logs end with errors."""
    if len(text) <= limit:
        return text
    omitted = len(text) - limit
    if not keep_tail:
        return text[:limit] + f"\n... [output truncated: {omitted} characters omitted]"
    head = limit // 5
    tail = limit - head
    return (
        text[:head]
        + f"\n... [output truncated: {omitted} characters omitted] ...\n"
        + text[len(text) - tail :]
    )


def host_path_scrub(text: str, ctx: ToolContext) -> str:
    """Replace any spelling of the host workspace path with /workspace, so it never reaches clients."""
    if not text:
        return text
    spellings = {str(ctx.workspace).rstrip("/"), os.path.realpath(ctx.workspace).rstrip("/")}
    for spelling in sorted(spellings, key=len, reverse=True):
        if spelling:
            # Not when the name goes on: "/srv/ws/a1" must not rewrite "/srv/ws/a10".
            text = re.sub(re.escape(spelling) + r"(?![\w-])", WORKSPACE_ROOT, text)
    return text


# ajv-style wording, as gemini-cli reports schema violations to the model this way.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
}


def _type_ok(value: Any, expected: str) -> bool:
    if expected in ("number", "integer") and isinstance(value, bool):
        return False
    if expected == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES.get(expected, (object,)))


def schema_check(schema: dict, value: Any, where: str = "params") -> str | None:
    expected = schema.get("type")
    if expected and not _type_ok(value, expected):
        return f"{where} must be {expected}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be equal to one of the allowed values"
    if expected in ("number", "integer") and "minimum" in schema and value < schema["minimum"]:
        return f"{where} must be >= {schema['minimum']}"
    if expected == "array":
        if len(value) < schema.get("minItems", 0):
            return f"{where} must NOT have fewer than {schema['minItems']} items"
        item_schema = schema.get("items")
        if item_schema:
            for index, item in enumerate(value):
                problem = schema_check(item_schema, item, f"{where}/{index}")
                if problem:
                    return problem
    if expected == "object":
        for required in schema.get("required", []):
            if required not in value:
                return f"{where} must have required property '{required}'"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problem = schema_check(sub, value[key], f"{where}/{key}")
                if problem:
                    return problem
    return None


class Tool(ABC):
    """One model-callable tool. Subclasses implement `check` and `run`; callers use the public API."""

    name: str = ""
    display_name: str = ""
    aliases: tuple[str, ...] = ()
    # Extra argument spellings (besides camelCase) mapped to canonical parameter names.
    arg_aliases: dict[str, str] = {}
    description: str = ""
    parameters: dict = {}
    kind: ToolKind = ToolKind.READ

    def available(self) -> bool:
        return self.unavailable_reason() is None

    def unavailable_reason(self) -> str | None:
        return None

    def validate(self, args: dict, ctx: ToolContext) -> str | None:
        problem = schema_check(self.parameters, args)
        if problem:
            return problem
        problem = self.check(args, ctx)
        return host_path_scrub(problem, ctx) if problem else None

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        """Tool-specific validation after the schema check; None when the call may proceed."""
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        """One-line description of the call, as gemini-cli shows it next to the tool name."""
        return self.display_name or self.name

    def confirmation_details(self, args: dict, ctx: ToolContext) -> dict:
        return {
            "type": "info",
            "title": f"Confirm {self.display_name or self.name}",
            "prompt": host_path_scrub(self.describe(args, ctx), ctx),
        }

    async def execute(self, args: dict, ctx: ToolContext) -> ToolResult:
        """Validate, then run; never raises for a bad call, and the texts are scrubbed and cut."""
        try:
            problem = await asyncio.to_thread(self.validate, args, ctx)
            result = tool_error(problem) if problem else await self.run(args, ctx)
        except Exception as exc:
            # A bug or an unexpected OS condition must become a tool error, not kill the agent loop.
            logger.exception("tool %s failed", self.name)
            result = tool_error(f"Error executing tool {self.name}: {exc}")
        keep_tail = self.kind is ToolKind.EXECUTE
        return ToolResult(
            output=cut_text(host_path_scrub(result.output, ctx), keep_tail=keep_tail),
            error=(
                None
                if result.error is None
                else cut_text(host_path_scrub(result.error, ctx), keep_tail=keep_tail)
            ),
            display=host_path_scrub(result.display, ctx),
        )

    @abstractmethod
    async def run(self, args: dict, ctx: ToolContext) -> ToolResult:
        """Do the work; may return errors as results, and `execute` turns exceptions into errors."""
