"""Core types shared by every agent tool: kinds, context, results, the schema check, the Tool class."""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from sessions_app.workspace import WORKSPACE_MOUNT

WORKSPACE_ROOT = WORKSPACE_MOUNT


class ToolKind(str, Enum):
    """What a tool does, which decides whether it asks first (as gemini-cli's Kind)."""

    READ = "read"
    EDIT = "edit"
    EXECUTE = "execute"
    FETCH = "fetch"
    OTHER = "other"


@dataclass
class ToolContext:
    workspace: Path
    session_id: str
    # The session's model: it picks the declarations' family and how binary content is sent.
    model: str = ""


@dataclass
class ToolResult:
    """What a tool produced: the text the model reads, or an error, and what users are shown.

    `parts` are inlineData parts (images, PDF, audio) that go to the model beside the text;
    `data` is structured output for clients (the todo list, a saved output file).
    """

    output: str
    error: str | None = None
    display: str = ""
    parts: list[dict] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def tool_error(message: str, display: str = "") -> ToolResult:
    return ToolResult(output="", error=message, display=display or message)


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


# ajv's wording (errorsText with dataVar "params"), as gemini-cli reports schema violations.
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
    """The first violation, worded as ajv words it; None when the value fits the schema."""
    expected = schema.get("type")
    if expected and not _type_ok(value, expected):
        return f"{where} must be {expected}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be equal to one of the allowed values"
    if expected in ("number", "integer") and "minimum" in schema and value < schema["minimum"]:
        return f"{where} must be >= {schema['minimum']}"
    if expected == "string" and len(value) < schema.get("minLength", 0):
        return f"{where} must NOT have fewer than {schema['minLength']} characters"
    if expected == "array":
        if len(value) < schema.get("minItems", 0):
            return f"{where} must NOT have fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{where} must NOT have more than {schema['maxItems']} items"
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
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False and any(
            key not in properties for key in value
        ):
            return f"{where} must NOT have additional properties"
        for key, sub in properties.items():
            if key in value:
                problem = schema_check(sub, value[key], f"{where}/{key}")
                if problem:
                    return problem
    return None


class Tool(ABC):
    """One model-callable tool. The one entry point (invoke.py) validates, then runs it."""

    name: str = ""
    display_name: str = ""
    aliases: tuple[str, ...] = ()
    # Extra argument spellings (besides camelCase) mapped to canonical parameter names.
    arg_aliases: dict[str, str] = {}
    kind: ToolKind = ToolKind.READ
    # Required parameters gemini-cli declares but this server does not insist on.
    lenient_required: tuple[str, ...] = ()

    def declaration(self, model: str = "") -> dict:
        """{name, description, parametersJsonSchema} as the model sees it."""
        from .declarations import declaration_for

        return declaration_for(self.name, model)

    @property
    def description(self) -> str:
        return self.declaration()["description"]

    @property
    def parameters(self) -> dict:
        return self.declaration()["parametersJsonSchema"]

    def available(self) -> bool:
        return self.unavailable_reason() is None

    def unavailable_reason(self) -> str | None:
        return None

    def validate(self, args: dict, ctx: ToolContext) -> str | None:
        """The schema check, then the tool's own; None when the call may run."""
        schema = self.parameters
        if self.lenient_required:
            required = [
                key for key in schema.get("required", []) if key not in self.lenient_required
            ]
            schema = {**schema, "required": required}
        problem = schema_check(schema, args)
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

    @abstractmethod
    async def run(self, args: dict, ctx: ToolContext) -> ToolResult:
        """Do the work on validated arguments; errors come back as results where foreseen."""
