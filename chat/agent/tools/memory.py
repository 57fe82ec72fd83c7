"""The save_memory tool: remembers facts in the workspace's GEMINI.md, as gemini-cli does."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sessions_app.workspace import PathRefused

from .base import ToolContext, ToolKind, ToolResult, tool_error
from .fs import (
    FileTool,
    Target,
    ToolFailure,
    check_path,
    decode_for_edit,
    encode_for_edit,
    read_limited,
    target_of,
    unified_diff,
    workspace_of,
    write_bytes,
)

MEMORY_FILENAME = "GEMINI.md"
MEMORY_SECTION_HEADER = "## Gemini Added Memories"


def sanitize_fact(fact: str) -> str:
    """One line, no leading dashes, no angle brackets: a fact cannot inject markdown or tags."""
    text = re.sub(r"[\r\n]", " ", fact).strip()
    text = re.sub(r"^(-+\s*)+", "", text).strip()
    return re.sub(r"[<>]", " ", text)


def _separator_before(content: str) -> str:
    if not content or content.endswith(("\n\n", "\r\n\r\n")):
        return ""
    if content.endswith("\n"):
        return "\n"
    return "\n\n"


def memory_content_with(current: str, fact: str) -> str:
    """Add "- fact" at the end of the memories section, creating the section if needed."""
    item = f"- {sanitize_fact(fact)}"
    header_at = current.find(MEMORY_SECTION_HEADER)
    if header_at == -1:
        return f"{current}{_separator_before(current)}{MEMORY_SECTION_HEADER}\n{item}\n"
    section_start = header_at + len(MEMORY_SECTION_HEADER)
    section_end = current.find("\n## ", section_start)
    if section_end == -1:
        section_end = len(current)
    before = current[:section_start].rstrip()
    section = current[section_start:section_end].rstrip() + f"\n{item}"
    after = current[section_end:]
    return f"{before}\n{section.lstrip()}\n{after}".rstrip() + "\n"


@dataclass
class MemoryPlan:
    target: Target
    current: str
    new_content: str
    is_new: bool


class SaveMemoryTool(FileTool):
    name = "save_memory"
    display_name = "SaveMemory"
    aliases = ("saveMemory",)
    arg_aliases = {"text": "fact"}
    kind = ToolKind.EDIT

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        if not args["fact"].strip():
            return 'Parameter "fact" must be a non-empty string.'
        # GEMINI.md may have been replaced by a symlink from a shell command.
        return check_path(ctx, MEMORY_FILENAME)

    def describe(self, args: dict, ctx: ToolContext) -> str:
        return f"in {MEMORY_FILENAME}"

    def plan(self, args: dict, ctx: ToolContext) -> MemoryPlan:
        target = target_of(MEMORY_FILENAME)
        ws = workspace_of(ctx)
        is_new = not ws.exists(target.relative)
        current = (
            "" if is_new else decode_for_edit(read_limited(ws, target.relative, target.virtual))
        )
        return MemoryPlan(target, current, memory_content_with(current, args["fact"]), is_new)

    def confirmation_details(self, args: dict, ctx: ToolContext) -> dict:
        try:
            plan = self.plan(args, ctx)
        except (ToolFailure, PathRefused) as exc:
            message = exc.message if isinstance(exc, ToolFailure) else str(exc)
            return {
                "type": "edit",
                "filePath": f"/workspace/{MEMORY_FILENAME}",
                "diff": "",
                "isNewFile": False,
                "error": message,
            }
        return {
            "type": "edit",
            "filePath": plan.target.virtual,
            "diff": unified_diff(MEMORY_FILENAME, plan.current, plan.new_content),
            "isNewFile": plan.is_new,
        }

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        try:
            plan = self.plan(args, ctx)
            write_bytes(
                workspace_of(ctx),
                plan.target.relative,
                encode_for_edit(plan.new_content),
                plan.target.virtual,
            )
        except ToolFailure as failure:
            return tool_error(
                f"Failed to save memory. Detail: {failure.message}",
                f"Error saving memory: {failure.message}",
            )
        message = f'Okay, I\'ve remembered that: "{sanitize_fact(args["fact"])}"'
        # gemini-cli answers with JSON.stringify({success, message}); compact separators match it.
        output = json.dumps(
            {"success": True, "message": message}, ensure_ascii=False, separators=(",", ":")
        )
        return ToolResult(output=output, display=message)
