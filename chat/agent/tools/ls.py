"""The list_directory tool (gemini-cli tools/ls.ts): a directory's entries, directories first."""

from __future__ import annotations

import re

from .base import ToolContext, ToolKind, ToolResult, tool_error
from .fs import FileTool, check_path, collation_key, node_error, target_of, workspace_of
from .ignore import FileFilter


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

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        return check_path(ctx, args["dir_path"])

    def describe(self, args: dict, ctx: ToolContext) -> str:
        return str(args.get("dir_path", ""))

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        target = target_of(args["dir_path"])
        ws = workspace_of(ctx)
        try:
            listed = ws.listdir(target.relative)
        except NotADirectoryError:
            return tool_error(
                f"Error: Path is not a directory: {target.virtual}",
                "Error: Path is not a directory.",
            )
        except OSError as exc:
            syscall = "stat" if isinstance(exc, FileNotFoundError) else "scandir"
            return tool_error(
                f"Error listing directory: {node_error(exc, syscall, target.virtual)}",
                "Error: Failed to list directory.",
            )
        if not listed:
            return ToolResult(
                output=f"Directory {target.virtual} is empty.", display="Directory is empty."
            )

        options = args.get("file_filtering_options") or {}
        prefix = f"{target.relative}/" if target.relative else ""
        by_path = {prefix + entry.name: entry for entry in listed}
        kept, ignored = FileFilter(ws).filter(
            list(by_path),
            respect_git=options.get("respect_git_ignore", True),
            respect_gemini=options.get("respect_gemini_ignore", True),
        )
        ignores = [_ignore_regex(p) for p in args.get("ignore") or []]
        entries: list[tuple[bool, str, str]] = []
        for path in kept:
            entry = by_path[path]
            name = entry.name
            if any(rx.match(name) for rx in ignores):
                continue
            if entry.link == "outside":
                entries.append((False, name, f"{name} (symlink to outside the workspace)"))
            elif entry.stat is None:
                continue  # a broken link: stat fails, and gemini-cli leaves the entry out
            elif entry.is_dir:
                entries.append((True, name, f"[DIR] {name}"))
            else:
                entries.append((False, name, f"{name} ({entry.stat.st_size} bytes)"))
        entries.sort(key=lambda entry: (not entry[0], collation_key(entry[1])))

        output = f"Directory listing for {target.virtual}:\n" + "\n".join(e[2] for e in entries)
        display = f"Found {len(entries)} item(s)."
        if ignored:
            output += f"\n\n({ignored} ignored)"
            display += f" ({ignored} ignored)"
        return ToolResult(output=output, display=display)
