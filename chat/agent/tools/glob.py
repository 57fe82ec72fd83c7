"""The glob tool: files matching a glob pattern, newest first."""

from __future__ import annotations

import posixpath
import time

from sessions_app.workspace import PathRefused, Workspace

from .base import (
    ToolContext,
    ToolKind,
    ToolResult,
)
from .fs import (
    FileTool,
    glob_escape,
    glob_regex,
    pattern_relative,
    search_dir_problem,
    target_of,
    walk_files,
    workspace_of,
)


def _lexists(ws: Workspace, relative: str) -> bool:
    try:
        return ws.lexists(relative)
    except PathRefused:
        return False


class GlobTool(FileTool):
    name = "glob"
    display_name = "FindFiles"
    aliases = ("findFiles",)
    arg_aliases = {"path": "dir_path"}
    kind = ToolKind.READ
    description = (
        "Efficiently finds files matching specific glob patterns (e.g., `src/**/*.ts`, "
        "`**/*.md`), returning absolute paths sorted by modification time (newest first). "
        "Ideal for quickly locating files based on their name or path structure, especially "
        "in large codebases."
    )
    parameters = {
        "type": "object",
        "properties": {
            "pattern": {
                "description": "The glob pattern to match against (e.g., '**/*.py', 'docs/*.md').",
                "type": "string",
            },
            "dir_path": {
                "description": (
                    "Optional: The absolute path to the directory to search within. If "
                    "omitted, searches the root directory."
                ),
                "type": "string",
            },
            "case_sensitive": {
                "description": (
                    "Optional: Whether the search should be case-sensitive. Defaults to false."
                ),
                "type": "boolean",
            },
        },
        "required": ["pattern"],
    }

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        if not args["pattern"].strip():
            return "The 'pattern' parameter cannot be empty."
        if args["pattern"].startswith("/"):
            try:
                pattern_relative(args["pattern"])
            except PathRefused as refused:
                return str(refused)
        return search_dir_problem(
            ctx,
            args.get("dir_path") or ".",
            "Search path does not exist {path}",
            "Search path is not a directory: {path}",
        )

    def describe(self, args: dict, ctx: ToolContext) -> str:
        text = f"'{args.get('pattern', '')}'"
        if args.get("dir_path"):
            text += f" within {args['dir_path']}"
        return text

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        pattern = args["pattern"]
        ws = workspace_of(ctx)
        search = target_of(args.get("dir_path") or ".")
        # An absolute pattern is matched against workspace-relative paths, a relative one
        # against paths relative to the search directory.
        from_root = pattern.startswith("/")
        glob_text = pattern_relative(pattern) if from_root else pattern
        base = "" if from_root else search.relative
        if _lexists(ws, posixpath.join(base, glob_text)):
            glob_text = glob_escape(glob_text)
        matcher = glob_regex(glob_text, bool(args.get("case_sensitive")))

        found: list[tuple[str, float]] = []
        for walked in walk_files(ws, search.relative):
            candidate = walked.relative if from_root else walked.path
            if matcher.fullmatch(candidate):
                found.append((walked.virtual, walked.stat.st_mtime))
        if not found:
            return ToolResult(
                output=f'No files found matching pattern "{pattern}" within {search.virtual}',
                display="No files found",
            )

        # gemini-cli: files changed within a day first (newest first), then the rest by path.
        recent_after = time.time() - 24 * 60 * 60
        recent = sorted((f for f in found if f[1] > recent_after), key=lambda f: -f[1])
        older = sorted((f for f in found if f[1] <= recent_after), key=lambda f: f[0])
        listing = "\n".join(virtual for virtual, _ in recent + older)
        return ToolResult(
            output=(
                f'Found {len(found)} file(s) matching "{pattern}" within {search.virtual}, '
                f"sorted by modification time (newest first):\n{listing}"
            ),
            display=f"Found {len(found)} matching file(s)",
        )
