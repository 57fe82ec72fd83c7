"""The list_directory tool: a directory's entries, directories first."""

from __future__ import annotations

import re

from .base import (
    ToolContext,
    ToolKind,
    ToolResult,
    tool_error,
)
from .fs import (
    WALK_EXCLUDED_DIRS,
    FileTool,
    check_path,
    os_failure,
    target_of,
    workspace_of,
)


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    # gemini-cli's list_directory ignore globs: only * and ? are special, matched on the name.
    escaped = re.sub(r"[.+^${}()|\[\]\\]", lambda m: "\\" + m.group(0), pattern)
    return re.compile("^" + escaped.replace("*", ".*").replace("?", ".") + "$")


class ListDirectoryTool(FileTool):
    name = "list_directory"
    display_name = "ReadFolder"
    aliases = ("listDirectory",)
    arg_aliases = {"path": "dir_path", "directory": "dir_path"}
    kind = ToolKind.READ
    description = (
        "Lists the names of files and subdirectories directly within a specified directory "
        "path. Can optionally ignore entries matching provided glob patterns."
    )
    parameters = {
        "type": "object",
        "properties": {
            "dir_path": {"description": "The path to the directory to list", "type": "string"},
            "ignore": {
                "description": "List of glob patterns to ignore",
                "items": {"type": "string"},
                "type": "array",
            },
        },
        "required": ["dir_path"],
    }

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        return check_path(ctx, args["dir_path"])

    def describe(self, args: dict, ctx: ToolContext) -> str:
        return str(args.get("dir_path", ""))

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        target = target_of(args["dir_path"])
        try:
            listed = workspace_of(ctx).listdir(target.relative)
        except FileNotFoundError:
            return tool_error(
                f"Error: Directory not found or inaccessible: {target.virtual}",
                "Error: Directory not found or inaccessible.",
            )
        except NotADirectoryError:
            return tool_error(
                f"Error: Path is not a directory: {target.virtual}",
                "Error: Path is not a directory.",
            )
        except OSError as exc:
            failure = os_failure("listing directory", target.virtual, exc)
            return tool_error(failure.message, "Error: Failed to list directory.")
        if not listed:
            return ToolResult(
                output=f"Directory {target.virtual} is empty.", display="Directory is empty."
            )

        ignores = [_ignore_regex(p) for p in args.get("ignore") or []]
        entries: list[tuple[bool, str, str]] = []
        ignored = 0
        for entry in listed:
            name = entry.name
            if name in WALK_EXCLUDED_DIRS and entry.is_dir:
                ignored += 1
                continue
            if any(rx.match(name) for rx in ignores):
                continue
            if entry.link == "outside":
                entries.append((False, name, f"{name} (symlink to outside the workspace)"))
            elif entry.stat is None:
                entries.append((False, name, f"{name} (broken symlink)"))
            elif entry.is_dir:
                entries.append((True, name, f"[DIR] {name}"))
            else:
                entries.append((False, name, f"{name} ({entry.stat.st_size} bytes)"))
        entries.sort(key=lambda entry: (not entry[0], entry[1].lower(), entry[1]))

        output = f"Directory listing for {target.virtual}:\n" + "\n".join(e[2] for e in entries)
        display = f"Listed {len(entries)} item(s)."
        if ignored:
            output += f"\n\n({ignored} ignored)"
            display += f" ({ignored} ignored)"
        return ToolResult(output=output, display=display)
