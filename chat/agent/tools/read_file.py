"""The read_file tool (gemini-cli tools/read-file.ts): a file's text by line range, at most 2000
lines per call, with a note on how to read on; images, PDF and audio as inline data."""

from __future__ import annotations

from .base import ToolContext, ToolKind, ToolResult
from .fs import (
    FileTool,
    ToolFailure,
    check_path,
    file_read,
    optional_int,
    read_limited,
    target_of,
    workspace_of,
)
from .ignore import FileFilter


class ReadFileTool(FileTool):
    name = "read_file"
    display_name = "ReadFile"
    aliases = ("readFile",)
    arg_aliases = {"path": "file_path", "absolute_path": "file_path"}
    kind = ToolKind.READ

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        if not args["file_path"].strip():
            return "The 'file_path' parameter must be non-empty."
        problem = check_path(ctx, args["file_path"])
        if problem:
            return problem
        start, end = args.get("start_line"), args.get("end_line")
        if start is not None and end is not None and start > end:
            return "start_line cannot be greater than end_line"
        target = target_of(args["file_path"])
        if target.relative and FileFilter(workspace_of(ctx)).ignored(target.relative):
            return f"File path '{target.virtual}' is ignored by configured ignore patterns."
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        return str(args.get("file_path", ""))

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        target = target_of(args["file_path"])
        data = read_limited(workspace_of(ctx), target.relative, target.virtual)
        read = file_read(
            data,
            target.relative,
            optional_int(args.get("start_line")),
            optional_int(args.get("end_line")),
        )
        if read.error:
            raise ToolFailure(read.error, read.display)
        if read.part is not None:
            return ToolResult(output="", display=read.display, parts=[read.part])
        if not read.truncated:
            return ToolResult(output=read.content, display=read.display)
        start, end = read.shown
        output = (
            "\nIMPORTANT: The file content has been truncated.\n"
            f"Status: Showing lines {start}-{end} of {read.total_lines} total lines.\n"
            "Action: To read more of the file, you can use the 'start_line' and 'end_line' "
            "parameters in a subsequent 'read_file' call. For example, to read the next section "
            f"of the file, use start_line: {end + 1}.\n\n"
            f"--- FILE CONTENT (truncated) ---\n{read.content}"
        )
        return ToolResult(output=output, display=read.display)
