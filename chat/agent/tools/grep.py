"""The grep_search tool as gemini-cli registers it when ripgrep is there (tools/ripGrep.ts, with
tools/grep-utils.ts formatting): ripgrep runs in the same sandbox as the shell, over the
workspace only; without ripgrep (or without its sandbox) a Python search gives the same output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import re
import shutil
import stat
from dataclasses import dataclass

from sessions_app.workspace import PathRefused, Workspace, virtual_of

from .base import WORKSPACE_ROOT, Tool, ToolContext, ToolKind, ToolResult
from .fs import (
    COMMON_DIRECTORY_EXCLUDES,
    COMMON_IGNORED_DIRS,
    MAX_LINE_LENGTH_TEXT_FILE,
    ToolFailure,
    decode_text,
    glob_regex,
    max_file_bytes,
    optional_int,
    read_limited,
    target_of,
    walk_files,
    workspace_of,
)
from .ignore import GEMINI_IGNORE, FileFilter
from .jsregex import js_regex
from .shell import bwrap_argv, sandbox_env, sandbox_mode, shell_unavailable_reason

DEFAULT_TOTAL_MAX_MATCHES = 100
SEARCH_TIMEOUT_MS = 30_000
# getGlobExcludes(COMMON_DIRECTORY_EXCLUDES, '*.log', '*.tmp'), as ripgrep --glob '!...'.
RG_EXCLUDES = (
    *(f"**/{name}/**" for name in ("node_modules", ".git", "bower_components", ".svn", ".hg")),
    *(f"**/{name}/**" for name in (".vscode", ".idea", "dist", "build", "coverage", "__pycache__")),
    "*.log",
    "*.tmp",
)
_JS_WHITESPACE = "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


@dataclass
class GrepMatch:
    file: str  # relative to the directory searched (the file's name when a file was searched)
    relative: str  # relative to the workspace root
    line_number: int
    line: str
    is_context: bool = False


class SearchFailed(Exception):
    pass


def ripgrep_path() -> str | None:
    found = shutil.which("rg")
    return os.path.realpath(found) if found else None


def ripgrep_usable() -> bool:
    """ripgrep is run only inside the shell's sandbox (or unsandboxed where the shell is)."""
    return ripgrep_path() is not None and shell_unavailable_reason() is None


class GrepSearchTool(Tool):
    name = "grep_search"
    display_name = "SearchText"
    aliases = ("search_file_content", "grepSearch", "searchFileContent")
    arg_aliases = {"path": "dir_path", "include": "include_pattern"}
    kind = ToolKind.READ

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        if not args.get("fixed_strings"):
            try:
                js_regex(args["pattern"])
            except ValueError as exc:
                return (
                    f"Invalid regular expression pattern provided: {args['pattern']}. Error: {exc}"
                )
        if args.get("exclude_pattern"):
            try:
                js_regex(args["exclude_pattern"])
            except ValueError as exc:
                return (
                    "Invalid exclude regular expression pattern provided: "
                    f"{args['exclude_pattern']}. Error: {exc}"
                )
        if args.get("dir_path"):
            return _search_path_problem(ctx, args["dir_path"])
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        text = f"'{args.get('pattern', '')}'"
        if args.get("include_pattern"):
            text += f" in {args['include_pattern']}"
        dir_path = args.get("dir_path") or "."
        return text + (" within ./" if dir_path in (".", WORKSPACE_ROOT) else f" within {dir_path}")

    async def run(self, args: dict, ctx: ToolContext) -> ToolResult:
        dir_path = args.get("dir_path") or "."
        problem = await asyncio.to_thread(_search_path_problem, ctx, dir_path)
        if problem:
            return ToolResult(output="", error=problem, display="Error: Path does not exist.")
        ws = workspace_of(ctx)
        try:
            search = target_of(await asyncio.to_thread(ws.real_path, dir_path))
        except PathRefused as refused:
            return ToolResult(
                output="", error=str(refused), display="Error: Path not in workspace."
            )
        total_max = optional_int(args.get("total_max_matches")) or DEFAULT_TOTAL_MAX_MATCHES
        try:
            async with asyncio.timeout(SEARCH_TIMEOUT_MS / 1000):
                matches = await self._search(args, ctx, search, [search.relative], total_max)
                if not args.get("no_ignore"):
                    matches = await asyncio.to_thread(_allowed, ws, matches)
                count = sum(1 for match in matches if not match.is_context)
                context = None
                if (
                    1 <= count <= 3
                    and not args.get("names_only")
                    and all(args.get(key) is None for key in ("context", "before", "after"))
                ):
                    context = 50 if count == 1 else 15
                    files = list(dict.fromkeys(match.relative for match in matches))
                    enriched = {**args, "context": context, "before": None, "after": None}
                    matches = await self._search(enriched, ctx, search, files, total_max)
                    if not args.get("no_ignore"):
                        matches = await asyncio.to_thread(_allowed, ws, matches)
        except TimeoutError:
            message = (
                f"Operation timed out after {SEARCH_TIMEOUT_MS}ms. In large repositories, "
                "consider narrowing your search scope by specifying a 'dir_path' or an "
                "'include_pattern'."
            )
            return _search_error(message)
        except SearchFailed as exc:
            return _search_error(str(exc))
        except PathRefused as refused:
            # The directory was swapped for a link leading out while the search ran.
            return ToolResult(
                output="", error=str(refused), display="Error: Path not in workspace."
            )
        return format_grep_results(matches, args, f'in path "{dir_path}"', total_max)

    async def _search(
        self, args: dict, ctx: ToolContext, search, paths: list[str], total_max: int
    ) -> list[GrepMatch]:
        if ripgrep_usable():
            return await _ripgrep(args, ctx, search, paths, total_max)
        return await asyncio.to_thread(_python_search, args, ctx, search, paths, total_max)


def _search_error(message: str) -> ToolResult:
    # gemini-cli answers these as output, not as a tool error.
    return ToolResult(
        output=f"Error during grep search operation: {message}", display=f"Error: {message}"
    )


def _search_path_problem(ctx: ToolContext, raw: str) -> str | None:
    try:
        ws = workspace_of(ctx)
        target = target_of(ws.real_path(raw))
        info = ws.stat(target.relative)
    except PathRefused as refused:
        return str(refused)
    except FileNotFoundError:
        return f"Path does not exist: {target_of(raw).virtual}"
    except OSError as exc:
        return f"Failed to access path stats for {target_of(raw).virtual}: {exc.strerror}"
    if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
        return f"Path is not a valid directory or file: {target.virtual}"
    return None


def _allowed(ws: Workspace, matches: list[GrepMatch]) -> list[GrepMatch]:
    """The project's ignore files, applied after the search as gemini-cli does."""
    files = list(dict.fromkeys(match.relative for match in matches))
    kept, _ = FileFilter(ws).filter(files)
    allowed = set(kept)
    return [match for match in matches if match.relative in allowed]


def _exclude(args: dict):
    if not args.get("exclude_pattern"):
        return None
    return js_regex(args["exclude_pattern"], ignore_case=not args.get("case_sensitive"))


async def _ripgrep(
    args: dict, ctx: ToolContext, search, paths: list[str], total_max: int
) -> list[GrepMatch]:
    """performRipgrepSearch, with ripgrep in the shell's sandbox (paths as /workspace/...)."""
    sandboxed = sandbox_mode() == "bwrap"
    host_root = os.path.realpath(ctx.workspace)
    root = WORKSPACE_ROOT if sandboxed else host_root

    def absolute(relative: str) -> str:
        return f"{root}/{relative}" if relative else root

    rg_args = ["--json"]
    if not args.get("case_sensitive"):
        rg_args.append("--ignore-case")
    if args.get("fixed_strings"):
        rg_args.append("--fixed-strings")
    rg_args += ["--regexp", args["pattern"]]
    for key, option in (
        ("context", "--context"),
        ("after", "--after-context"),
        ("before", "--before-context"),
    ):
        if args.get(key):
            rg_args += [option, str(int(args[key]))]
    if args.get("no_ignore"):
        rg_args.append("--no-ignore")
    if args.get("max_matches_per_file"):
        rg_args += ["--max-count", str(int(args["max_matches_per_file"]))]
    if args.get("include_pattern"):
        rg_args += ["--glob", args["include_pattern"]]
    if not args.get("no_ignore"):
        for exclude in RG_EXCLUDES:
            rg_args += ["--glob", f"!{exclude}"]
        if await asyncio.to_thread(workspace_of(ctx).is_file, GEMINI_IGNORE):
            rg_args += ["--ignore-file", absolute(GEMINI_IGNORE)]
    # One thread and sorted paths: the same search gives the same answer every time.
    rg_args += ["--sort", "path", *[absolute(path) for path in paths]]

    program = [ripgrep_path(), *rg_args]
    if sandboxed:
        argv = await asyncio.to_thread(
            bwrap_argv, shutil.which("bwrap") or "bwrap", host_root, WORKSPACE_ROOT, program
        )
        env = sandbox_env(WORKSPACE_ROOT)
    else:
        argv, env = program, sandbox_env(host_root)
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=host_root,
        env=env,
        start_new_session=True,
        limit=16 * 1024 * 1024,
    )
    exclude = _exclude(args)
    base = absolute(search.relative)
    results: list[GrepMatch] = []
    found = 0
    stopped = False
    try:
        while line := await process.stdout.readline():
            match = _parse_rg_line(line, base, root)
            if match is None or (exclude and exclude.search(match.line)):
                continue
            results.append(match)
            found += 0 if match.is_context else 1
            if found >= total_max:
                stopped = True
                break
        stderr = b"" if stopped else await process.stderr.read(20 * 1024)
    finally:
        if process.returncode is None and stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
        await process.wait()
    if not stopped and process.returncode not in (0, 1):
        text = stderr.decode("utf-8", "replace")
        if sandboxed is False:
            text = text.replace(host_root, WORKSPACE_ROOT)
        raise SearchFailed(f"Process exited with code {process.returncode}: {text}")
    return results


def _parse_rg_line(line: bytes, base: str, root: str) -> GrepMatch | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if event.get("type") not in ("match", "context"):
        return None
    data = event.get("data") or {}
    path = (data.get("path") or {}).get("text")
    text = (data.get("lines") or {}).get("text")
    if not path or text is None:
        return None
    absolute = posixpath.normpath(posixpath.join(base, path))
    relative_to_base = posixpath.relpath(absolute, base)
    if relative_to_base == ".." or relative_to_base.startswith("../"):
        return None
    relative = posixpath.relpath(absolute, root)
    return GrepMatch(
        file=posixpath.basename(absolute) if relative_to_base == "." else relative_to_base,
        relative="" if relative == "." else relative,
        line_number=int(data.get("line_number") or 0),
        line=text.rstrip(_JS_WHITESPACE),
        is_context=event["type"] == "context",
    )


def _include_matches(include: str | None, path_from_search: str) -> bool:
    if not include:
        return True
    rx = glob_regex(include, case_sensitive=True)
    if "/" in include.strip("/"):
        return bool(rx.fullmatch(path_from_search))
    return bool(rx.fullmatch(posixpath.basename(path_from_search)))


def _python_search(
    args: dict, ctx: ToolContext, search, paths: list[str], total_max: int
) -> list[GrepMatch]:
    """ripgrep's behaviour, without ripgrep: hidden files and binaries skipped, the same globs."""
    ws = workspace_of(ctx)
    flags = 0 if args.get("case_sensitive") else re.IGNORECASE
    if args.get("fixed_strings"):
        regex = re.compile(re.escape(args["pattern"]), flags)
    else:
        regex = js_regex(args["pattern"], ignore_case=not args.get("case_sensitive"))
    exclude = _exclude(args)
    no_ignore = bool(args.get("no_ignore"))
    pruned = frozenset() if no_ignore else COMMON_IGNORED_DIRS | COMMON_DIRECTORY_EXCLUDES
    gemini_rules = FileFilter(ws) if not no_ignore else None
    context = int(args.get("context") or 0)
    before = int(args.get("before") or 0) or context
    after = int(args.get("after") or 0) or context
    per_file = optional_int(args.get("max_matches_per_file"))
    results: list[GrepMatch] = []
    found = 0
    for relative in _candidate_files(ws, search, paths, pruned):
        from_search = posixpath.relpath(relative, search.relative) if search.relative else relative
        if from_search == ".":
            from_search = posixpath.basename(relative)
        explicit = relative in paths
        if not explicit:
            if any(part.startswith(".") for part in from_search.split("/")):
                continue
            if not _include_matches(args.get("include_pattern"), from_search):
                continue
            if not no_ignore and (
                posixpath.basename(relative).endswith((".log", ".tmp"))
                or gemini_rules.ignored(relative)
            ):
                continue
        try:
            data = read_limited(ws, relative, virtual_of(relative))
        except (ToolFailure, PathRefused):
            continue
        if b"\x00" in data[: 64 * 1024]:
            continue
        lines = re.split(r"\r?\n", decode_text(data))
        if lines and lines[-1] == "":
            lines.pop()
        hits = []
        for number, line in enumerate(lines, start=1):
            if regex.search(line):
                hits.append(number)
                if per_file and len(hits) >= per_file:
                    break
        shown: dict[int, bool] = {}
        for number in hits:
            for around in range(max(1, number - before), min(len(lines), number + after) + 1):
                shown.setdefault(around, False)
            shown[number] = True
        for number in sorted(shown):
            match = GrepMatch(
                from_search,
                relative,
                number,
                lines[number - 1].rstrip(_JS_WHITESPACE),
                not shown[number],
            )
            if exclude and exclude.search(match.line):
                continue
            results.append(match)
            if not match.is_context:
                found += 1
                if found >= total_max:
                    return results
    return results


def _candidate_files(ws: Workspace, search, paths: list[str], pruned: frozenset[str]):
    for path in paths:
        try:
            info = ws.stat(path)
        except (OSError, PathRefused):
            continue
        if stat.S_ISREG(info.st_mode):
            if info.st_size <= max_file_bytes():
                yield path
            continue
        for walked in walk_files(ws, path, pruned):
            if walked.stat.st_size <= max_file_bytes():
                yield walked.relative


def format_grep_results(
    matches: list[GrepMatch], args: dict, location: str, total_max: int
) -> ToolResult:
    """formatGrepResults: a header, then each file's lines as `L<n>: text` (context `L<n>-`)."""
    pattern = args["pattern"]
    include = args.get("include_pattern")
    where = f"{location}{f' (filter: {chr(34)}{include}{chr(34)})' if include else ''}"
    if not matches:
        return ToolResult(
            output=f'No matches found for pattern "{pattern}" {where}.', display="No matches found"
        )
    by_file: dict[str, list[GrepMatch]] = {}
    for match in matches:
        by_file.setdefault(match.file, []).append(match)
    for file_matches in by_file.values():
        file_matches.sort(key=lambda match: match.line_number)
    count = sum(1 for match in matches if not match.is_context)
    term = "match" if count == 1 else "matches"
    limited = count >= total_max
    limit_note = f" (results limited to {total_max} matches for performance)" if limited else ""
    if args.get("names_only"):
        files = sorted(by_file)
        text = (
            f'Found {len(files)} files with matches for pattern "{pattern}" {where}{limit_note}:\n'
            + "\n".join(files)
        )
        return ToolResult(
            output=text.strip(_JS_WHITESPACE),
            display=f"Found {len(files)} files{' (limited)' if limited else ''}",
        )
    text = f'Found {count} {term} for pattern "{pattern}" {where}{limit_note}:\n---\n'
    for file, file_matches in by_file.items():
        text += f"File: {file}\n"
        for match in file_matches:
            line = match.line.rstrip(_JS_WHITESPACE)
            if len(line) > MAX_LINE_LENGTH_TEXT_FILE:
                line = line[:MAX_LINE_LENGTH_TEXT_FILE] + "... [truncated]"
            text += f"L{match.line_number}{'-' if match.is_context else ':'} {line}\n"
        text += "---\n"
    return ToolResult(
        output=text.strip(_JS_WHITESPACE),
        display=f"Found {count} {term}{' (limited)' if limited else ''}",
    )
