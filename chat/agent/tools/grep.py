"""The grep_search tool: lines matching a regular expression, by file."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from sessions_app.workspace import PathRefused, Workspace

from .base import (
    ToolContext,
    ToolKind,
    ToolResult,
)
from .fs import (
    FileTool,
    ToolFailure,
    decode_text,
    glob_regex,
    looks_binary,
    max_file_bytes,
    optional_int,
    read_limited,
    search_dir_problem,
    target_of,
    walk_files,
    workspace_of,
)

DEFAULT_TOTAL_MAX_MATCHES = 100


@dataclass
class GrepMatch:
    file: str
    relative: str  # the file's path from the workspace root
    line_number: int
    line: str
    is_context: bool = False


class GrepSearchTool(FileTool):
    name = "grep_search"
    display_name = "SearchText"
    aliases = ("search_file_content", "grepSearch", "searchFileContent")
    arg_aliases = {"path": "dir_path", "include": "include_pattern"}
    kind = ToolKind.READ
    description = "Searches for a regular expression pattern within file contents. Max 100 matches."
    parameters = {
        "type": "object",
        "properties": {
            "pattern": {
                "description": (
                    "The regular expression (regex) pattern to search for within file "
                    "contents (e.g., 'function\\s+myFunction', "
                    "'import\\s+\\{.*\\}\\s+from\\s+.*')."
                ),
                "type": "string",
            },
            "dir_path": {
                "description": (
                    "Optional: The absolute path to the directory to search within. If "
                    "omitted, searches the current working directory."
                ),
                "type": "string",
            },
            "include_pattern": {
                "description": (
                    "Optional: A glob pattern to filter which files are searched (e.g., "
                    "'*.js', '*.{ts,tsx}', 'src/**'). If omitted, searches all files "
                    "(respecting potential global ignores)."
                ),
                "type": "string",
            },
            "exclude_pattern": {
                "description": (
                    "Optional: A regular expression pattern to exclude from the search "
                    "results. If a line matches both the pattern and the exclude_pattern, it "
                    "will be omitted."
                ),
                "type": "string",
            },
            "names_only": {
                "description": (
                    "Optional: If true, only the file paths of the matches will be returned, "
                    "without the line content or line numbers. This is useful for gathering "
                    "a list of files."
                ),
                "type": "boolean",
            },
            "max_matches_per_file": {
                "description": (
                    "Optional: Maximum number of matches to return per file. Use this to "
                    "prevent being overwhelmed by repetitive matches in large files."
                ),
                "type": "integer",
                "minimum": 1,
            },
            "total_max_matches": {
                "description": (
                    "Optional: Maximum number of total matches to return. Use this to limit "
                    "the overall size of the response. Defaults to 100 if omitted."
                ),
                "type": "integer",
                "minimum": 1,
            },
        },
        "required": ["pattern"],
    }

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        try:
            re.compile(args["pattern"])
        except re.error as exc:
            return f"Invalid regular expression pattern provided: {args['pattern']}. Error: {exc}"
        if args.get("exclude_pattern"):
            try:
                re.compile(args["exclude_pattern"])
            except re.error as exc:
                return (
                    "Invalid exclude regular expression pattern provided: "
                    f"{args['exclude_pattern']}. Error: {exc}"
                )
        if args.get("dir_path"):
            return search_dir_problem(
                ctx,
                args["dir_path"],
                "Path does not exist: {path}",
                "Path is not a directory: {path}",
            )
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        text = f"'{args.get('pattern', '')}'"
        if args.get("include_pattern"):
            text += f" in {args['include_pattern']}"
        if args.get("dir_path"):
            text += f" within {args['dir_path']}"
        return text

    def _search(self, args: dict, ws: Workspace, start: str, limit: int) -> list[GrepMatch]:
        regex = re.compile(args["pattern"], re.IGNORECASE)
        exclude = (
            re.compile(args["exclude_pattern"], re.IGNORECASE)
            if args.get("exclude_pattern")
            else None
        )
        include = args.get("include_pattern")
        include_rx = glob_regex(include) if include else None
        per_file = optional_int(args.get("max_matches_per_file"))
        size_limit = max_file_bytes()
        matches: list[GrepMatch] = []
        for walked in walk_files(ws, start):
            relative = walked.path
            if include_rx and not (
                include_rx.fullmatch(relative)
                or ("/" not in include and include_rx.fullmatch(os.path.basename(relative)))
            ):
                continue
            if walked.stat.st_size > size_limit:
                continue
            try:
                data = read_limited(ws, walked.relative, relative)
            except (ToolFailure, PathRefused):
                continue
            if looks_binary(data):
                continue
            in_file = 0
            for number, line in enumerate(re.split(r"\r?\n", decode_text(data)), start=1):
                if not regex.search(line) or (exclude and exclude.search(line)):
                    continue
                matches.append(GrepMatch(relative, walked.relative, number, line))
                in_file += 1
                if len(matches) >= limit:
                    return matches
                if per_file and in_file >= per_file:
                    break
        return matches

    @staticmethod
    def _with_context(ws: Workspace, matches: list[GrepMatch]) -> dict[str, list[GrepMatch]]:
        """gemini-cli's auto context: with 1-3 matches, show lines around them (50 or 15)."""
        by_file: dict[str, list[GrepMatch]] = {}
        for match in matches:
            by_file.setdefault(match.file, []).append(match)
        if not 1 <= len(matches) <= 3:
            return by_file
        around = 50 if len(matches) == 1 else 15
        for file, file_matches in by_file.items():
            try:
                data = read_limited(ws, file_matches[0].relative, file)
            except (ToolFailure, PathRefused):
                continue
            lines = re.split(r"\r?\n", decode_text(data))
            hits = {m.line_number for m in file_matches}
            wanted: set[int] = set()
            for number in hits:
                wanted.update(range(max(1, number - around), min(len(lines), number + around) + 1))
            by_file[file] = [
                GrepMatch(file, file_matches[0].relative, n, lines[n - 1], n not in hits)
                for n in sorted(wanted)
            ]
        return by_file

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        pattern = args["pattern"]
        dir_path = args.get("dir_path")
        search = target_of(dir_path or ".")
        ws = workspace_of(ctx)
        total_max = optional_int(args.get("total_max_matches")) or DEFAULT_TOTAL_MAX_MATCHES
        matches = self._search(args, ws, search.relative, total_max)

        where = f'in path "{dir_path}"' if dir_path else "in the workspace directory"
        include = args.get("include_pattern")
        where += f' (filter: "{include}")' if include else ""
        if not matches:
            return ToolResult(
                output=f'No matches found for pattern "{pattern}" {where}.',
                display="No matches found",
            )
        limited = len(matches) >= total_max
        limit_note = f" (results limited to {total_max} matches for performance)" if limited else ""
        if args.get("names_only"):
            files = sorted({m.file for m in matches})
            return ToolResult(
                output=(
                    f'Found {len(files)} files with matches for pattern "{pattern}" '
                    f"{where}{limit_note}:\n" + "\n".join(files)
                ).strip(),
                display=f"Found {len(files)} files{' (limited)' if limited else ''}",
            )

        term = "match" if len(matches) == 1 else "matches"
        text = f'Found {len(matches)} {term} for pattern "{pattern}" {where}{limit_note}:\n---\n'
        for file, file_matches in self._with_context(ws, matches).items():
            text += f"File: {file}\n"
            for match in file_matches:
                separator = "-" if match.is_context else ":"
                text += f"L{match.line_number}{separator} {match.line.rstrip()}\n"
            text += "---\n"
        return ToolResult(
            output=text.strip(),
            display=f"Found {len(matches)} {term}{' (limited)' if limited else ''}",
        )
