"""The glob tool (gemini-cli tools/glob.ts): files matching a glob pattern, those changed in the
last 24 hours first (newest first), then the rest in alphabetical order."""

from __future__ import annotations

import posixpath
import time

from sessions_app.workspace import PathRefused, Workspace

from .base import ToolContext, ToolKind, ToolResult
from .fs import (
    FileTool,
    collation_key,
    glob_escape,
    glob_regex,
    pattern_relative,
    search_dir_problem,
    target_of,
    walk_files,
    workspace_of,
)
from .ignore import FileFilter

RECENCY_THRESHOLD_SECONDS = 24 * 60 * 60


def _lexists(ws: Workspace, relative: str) -> bool:
    try:
        return ws.lexists(relative)
    except PathRefused:
        return False


def sort_file_entries(found: list[tuple[str, float]], now: float) -> list[tuple[str, float]]:
    """sortFileEntries: recent files newest first, then older ones by path."""
    recent = sorted(
        (f for f in found if now - f[1] < RECENCY_THRESHOLD_SECONDS), key=lambda f: -f[1]
    )
    older = sorted(
        (f for f in found if now - f[1] >= RECENCY_THRESHOLD_SECONDS),
        key=lambda f: collation_key(f[0]),
    )
    return recent + older


class GlobTool(FileTool):
    name = "glob"
    display_name = "FindFiles"
    aliases = ("findFiles",)
    arg_aliases = {"path": "dir_path"}
    kind = ToolKind.READ

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        problem = search_dir_problem(
            ctx,
            args.get("dir_path") or ".",
            "Search path does not exist {path}",
            "Search path is not a directory: {path}",
        )
        if problem:
            return problem
        if not args["pattern"].strip():
            return "The 'pattern' parameter cannot be empty."
        if args["pattern"].startswith("/"):
            try:
                pattern_relative(args["pattern"])
            except PathRefused as refused:
                return str(refused)
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        text = f"'{args.get('pattern', '')}'"
        if args.get("dir_path"):
            text += f" within {args['dir_path']}"
        return text

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        pattern = args["pattern"]
        ws = workspace_of(ctx)
        search = target_of(ws.real_dir(args.get("dir_path") or "."))
        # An absolute pattern is matched against workspace-relative paths, a relative one
        # against paths relative to the search directory.
        from_root = pattern.startswith("/")
        glob_text = pattern_relative(pattern) if from_root else pattern
        base = "" if from_root else search.relative
        if _lexists(ws, posixpath.join(base, glob_text)):
            glob_text = glob_escape(glob_text)
        matcher = glob_regex(glob_text, bool(args.get("case_sensitive")))

        found: dict[str, tuple[str, float]] = {}
        for walked in walk_files(ws, search.relative):
            candidate = walked.relative if from_root else walked.path
            if matcher.fullmatch(candidate):
                found[walked.relative] = (walked.virtual, walked.stat.st_mtime)
        kept, ignored = FileFilter(ws).filter(
            list(found),
            respect_git=args.get("respect_git_ignore", True),
            respect_gemini=args.get("respect_gemini_ignore", True),
        )
        if not kept:
            message = f'No files found matching pattern "{pattern}" within {search.virtual}'
            if ignored:
                message += f" ({ignored} files were ignored)"
            return ToolResult(output=message, display="No files found")

        entries = sort_file_entries([found[relative] for relative in kept], time.time())
        message = f'Found {len(entries)} file(s) matching "{pattern}" within {search.virtual}'
        if ignored:
            message += f" ({ignored} additional files were ignored)"
        listing = "\n".join(virtual for virtual, _ in entries)
        return ToolResult(
            output=f"{message}, sorted by modification time (newest first):\n{listing}",
            display=f"Found {len(entries)} matching file(s)",
        )
