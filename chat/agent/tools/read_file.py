"""The read_file tool: one file's text, by line range, at most 2000 lines per call."""

from __future__ import annotations

from .base import (
    ToolContext,
    ToolKind,
    ToolResult,
)
from .fs import (
    FileTool,
    check_path,
    optional_int,
    read_limited,
    target_of,
    text_read,
    workspace_of,
)


class ReadFileTool(FileTool):
    name = "read_file"
    display_name = "ReadFile"
    aliases = ("readFile",)
    arg_aliases = {"path": "file_path", "absolute_path": "file_path"}
    kind = ToolKind.READ
    description = (
        "Reads and returns the content of a specified file. If the file is large, the content "
        "will be truncated. The tool's response will clearly indicate if truncation has "
        "occurred and will provide details on how to read more of the file using the "
        "'start_line' and 'end_line' parameters. Handles text files; the content of binary "
        "files (images, audio, PDF, archives) cannot be displayed. For text files, it can "
        "read specific line ranges."
    )
    parameters = {
        "type": "object",
        "properties": {
            "file_path": {"description": "The path to the file to read.", "type": "string"},
            "start_line": {
                "description": "Optional: The 1-based line number to start reading from.",
                "type": "number",
            },
            "end_line": {
                "description": "Optional: The 1-based line number to end reading at (inclusive).",
                "type": "number",
            },
        },
        "required": ["file_path"],
    }

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        if not args["file_path"].strip():
            return "The 'file_path' parameter must be non-empty."
        problem = check_path(ctx, args["file_path"])
        if problem:
            return problem
        start, end = args.get("start_line"), args.get("end_line")
        if start is not None and start < 1:
            return "start_line must be at least 1"
        if end is not None and end < 1:
            return "end_line must be at least 1"
        if start is not None and end is not None and start > end:
            return "start_line cannot be greater than end_line"
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        return str(args.get("file_path", ""))

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        target = target_of(args["file_path"])
        data = read_limited(workspace_of(ctx), target.relative, target.virtual)
        read = text_read(
            data,
            target.name,
            target.relative or ".",
            optional_int(args.get("start_line")),
            optional_int(args.get("end_line")),
        )
        if not read.truncated:
            return ToolResult(output=read.content, display=read.display)
        output = (
            "\nIMPORTANT: The file content has been truncated.\n"
            f"Status: Showing lines {read.first_shown}-{read.last_shown} of "
            f"{read.total_lines} total lines.\n"
            "Action: To read more of the file, you can use the 'start_line' and 'end_line' "
            "parameters in a subsequent 'read_file' call.\n\n"
            f"--- FILE CONTENT (truncated) ---\n{read.content}"
        )
        return ToolResult(output=output, display=read.display)
