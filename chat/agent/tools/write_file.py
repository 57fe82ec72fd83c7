"""The write_file tool (gemini-cli tools/write-file.ts): a file's whole new content, with a diff
to confirm and the changed region in the success text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sessions_app.workspace import PathRefused

from .base import (
    ToolContext,
    ToolKind,
    ToolResult,
)
from .edit import omission_placeholders
from .fs import (
    FileTool,
    Target,
    ToolFailure,
    check_path,
    decode_for_edit,
    edit_details,
    edit_details_error,
    encode_for_edit,
    max_file_bytes,
    plural,
    read_limited,
    size_limit_failure,
    target_of,
    workspace_of,
    write_bytes,
)
from .textdiff import diff_context_snippet


@dataclass
class WritePlan:
    target: Target
    original: str | None  # None when the file is new (or too large to show)
    is_new: bool
    content: str  # what will be written, line endings already matched to the old file


class WriteFileTool(FileTool):
    name = "write_file"
    display_name = "WriteFile"
    aliases = ("writeFile",)
    arg_aliases = {"path": "file_path"}
    kind = ToolKind.EDIT

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        if not args["file_path"]:
            return 'Missing or empty "file_path"'
        problem = check_path(ctx, args["file_path"])
        if problem:
            return problem
        target = target_of(args["file_path"])
        if workspace_of(ctx).is_dir(target.relative):
            return f"Path is a directory, not a file: {target.virtual}"
        size = len(encode_for_edit(args["content"]))
        if size > max_file_bytes():
            return size_limit_failure(target.virtual, size, "Content size").message
        if omission_placeholders(args["content"]):
            return (
                "`content` contains an omission placeholder (for example 'rest of methods "
                "...'). Provide complete file content."
            )
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        return f"Writing to {args.get('file_path', '')}"

    def plan(self, args: dict, ctx: ToolContext) -> WritePlan:
        target = target_of(args["file_path"])
        ws = workspace_of(ctx)
        content = args["content"]
        if not ws.exists(target.relative):
            return WritePlan(target, None, True, content)
        try:
            data = read_limited(ws, target.relative, target.virtual)
        except ToolFailure as failure:
            if ws.is_file(target.relative) and "exceeds" in failure.message:
                return WritePlan(target, None, False, content)
            raise
        original = decode_for_edit(data)
        if "\r\n" in original:
            content = re.sub(r"\r?\n", "\r\n", content)
        return WritePlan(target, original, False, content)

    def confirmation_details(self, args: dict, ctx: ToolContext) -> dict:
        try:
            plan = self.plan(args, ctx)
        except (ToolFailure, PathRefused) as exc:
            return edit_details_error(args.get("file_path", ""), exc)
        return edit_details(plan.target, plan.original, plan.content, is_new=plan.is_new)

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        plan = self.plan(args, ctx)
        write_bytes(
            workspace_of(ctx),
            plan.target.relative,
            encode_for_edit(plan.content),
            plan.target.virtual,
        )
        head = (
            f"Successfully created and wrote to new file: {plan.target.virtual}."
            if plan.is_new
            else f"Successfully overwrote file: {plan.target.virtual}."
        )
        snippet = diff_context_snippet(plan.original or "", plan.content)
        lines = plan.content.count("\n") + (0 if plan.content.endswith("\n") else 1)
        return ToolResult(
            output=f"{head} Here is the updated code:\n{snippet}",
            display=f"{'Created' if plan.is_new else 'Wrote'} {plan.target.relative} "
            f"({plural(lines, 'line')})",
        )
