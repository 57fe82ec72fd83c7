"""The file tools (read, list, glob, grep, write, replace) and the file helpers they share."""

from __future__ import annotations

import asyncio
import codecs
import difflib
import errno
import mimetypes
import os
import re
import stat
import time
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from .base import (
    MODEL_TEXT_LIMIT,
    WORKSPACE_ROOT,
    Tool,
    ToolContext,
    ToolKind,
    ToolResult,
    tool_error,
)
from .paths import (
    PathRefused,
    WorkspacePath,
    host_is_contained,
    resolve,
    virtual_of_host,
    virtual_path,
    workspace_root,
)

DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_LINES_TEXT_FILE = 2000
MAX_LINE_LENGTH_TEXT_FILE = 2000
SVG_MAX_SIZE_BYTES = 1024 * 1024
MB = 1024 * 1024

# gemini-cli's COMMON_IGNORE_PATTERNS directories, plus __pycache__ from its directory excludes.
WALK_EXCLUDED_DIRS = frozenset(
    {"node_modules", ".git", "bower_components", ".svn", ".hg", "__pycache__"}
)
# read_many_files also applies gemini-cli's DEFAULT_FILE_EXCLUDES.
READ_MANY_EXCLUDED_DIRS = WALK_EXCLUDED_DIRS | {".vscode", ".idea", "dist", "build", "coverage"}
# fmt: off
_ARCHIVE_AND_OFFICE_EXTENSIONS = (
    ".7z", ".bin", ".bz2", ".class", ".db", ".dll", ".dmg", ".doc", ".docx", ".dylib", ".exe",
    ".gz", ".img", ".iso", ".jar", ".lz4", ".mdb", ".odp", ".ods", ".odt", ".ppt", ".pptx",
    ".rar", ".so", ".sqlite", ".tar", ".war", ".xls", ".xlsx", ".xz", ".zip", ".zst",
)
_MEDIA_EXTENSIONS = (
    ".avi", ".bmp", ".flac", ".gif", ".jpeg", ".jpg", ".mkv", ".mov", ".mp3", ".mp4", ".ogg",
    ".otf", ".pdf", ".png", ".ttf", ".wav", ".webp", ".woff", ".woff2",
)
# fmt: on
READ_MANY_EXCLUDED_FILE_PATTERNS = (
    *(f"**/*{ext}" for ext in (*_ARCHIVE_AND_OFFICE_EXTENSIONS, ".pyc", ".pyo")),
    "**/.DS_Store",
    "**/.env",
    "**/GEMINI.md",
)
BINARY_EXTENSIONS = frozenset(
    (*_ARCHIVE_AND_OFFICE_EXTENSIONS, *_MEDIA_EXTENSIONS, ".pyc", ".pyo", ".dat", ".obj", ".o")
) | {".a", ".lib", ".wasm"}

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class ToolFailure(Exception):
    """A failure to report to the model (message) and to the user (display)."""

    def __init__(self, message: str, display: str = ""):
        super().__init__(message)
        self.message = message
        self.display = display or message


def max_file_bytes() -> int:
    return int(getattr(settings, "TOOL_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES))


def _size_text(size: int, in_mb: bool) -> str:
    return f"{size / MB:.2f}MB" if in_mb else f"{size} bytes"


def size_limit_failure(virtual: str, size: int, what: str = "File size") -> ToolFailure:
    limit = max_file_bytes()
    in_mb = limit >= MB and limit % MB == 0
    limit_text = f"{limit // MB}MB" if in_mb else f"{limit} bytes"
    return ToolFailure(
        f"{what} exceeds the {limit_text} limit: {virtual} ({_size_text(size, in_mb)})",
        f"{what} exceeds the {limit_text} limit.",
    )


def os_failure(action: str, virtual: str, exc: OSError) -> ToolFailure:
    # str(OSError) embeds the host path, so only the reason and the errno name are used.
    code = errno.errorcode.get(exc.errno, "") if exc.errno else ""
    suffix = f" ({code})" if code else ""
    return ToolFailure(f"Error {action} {virtual}: {exc.strerror or 'I/O error'}{suffix}")


def read_limited(host: Path, virtual: str) -> bytes:
    """Read a regular file, refusing directories, special files and files over the size limit."""
    limit = max_file_bytes()
    try:
        # O_NOFOLLOW: the host path was resolved already, so a symlink here appeared since.
        # O_NONBLOCK: a FIFO planted in the workspace must not hang the server.
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ToolFailure(f"File not found: {virtual}", "File not found.") from None
    except OSError as exc:
        raise os_failure("reading file", virtual, exc) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ToolFailure(f"Path is a directory, not a file: {virtual}", "Path is a directory.")
        if not stat.S_ISREG(info.st_mode):
            raise ToolFailure(f"Cannot read {virtual}: it is not a regular file.")
        raise size_limit_failure(virtual, info.st_size)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise size_limit_failure(virtual, len(data))
    return data


def write_bytes(host: Path, data: bytes, virtual: str) -> None:
    try:
        host.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(
            host,
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
            0o644,
        )
    except IsADirectoryError:
        raise ToolFailure(f"Target is a directory, not a file: {virtual} (EISDIR)") from None
    except OSError as exc:
        raise os_failure("writing to file", virtual, exc) from None
    with os.fdopen(fd, "wb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ToolFailure(f"Cannot write {virtual}: it is not a regular file.")
        handle.write(data)


def bom_encoding(data: bytes) -> tuple[str, int] | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, len(bom)
    return None


def decode_text(data: bytes) -> str:
    """Decode like gemini-cli: honour a UTF-8/16/32 BOM (and drop it), else UTF-8."""
    found = bom_encoding(data)
    if found:
        encoding, skip = found
        return data[skip:].decode(encoding, errors="replace")
    return data.decode("utf-8", errors="replace")


def looks_binary(data: bytes) -> bool:
    """gemini-cli's heuristic: a NUL byte, or over 30% control bytes, in the first 4 KB."""
    sample = data[:4096]
    if not sample or bom_encoding(sample[:4]):
        return False
    if b"\x00" in sample:
        return True
    control = sum(1 for byte in sample if byte < 9 or 13 < byte < 32)
    return control / len(sample) > 0.3


def file_kind(name: str, data: bytes) -> str:
    """'text', 'svg' or 'binary'; images, audio, video and PDF count as binary here."""
    extension = os.path.splitext(name)[1].lower()
    if extension in (".ts", ".mts", ".cts"):
        return "text"
    if extension == ".svg":
        return "svg"
    mime, _ = mimetypes.guess_type(name)
    if mime and (mime.startswith("image/") or mime == "application/pdf"):
        return "binary"
    if mime and (mime.startswith("audio/") or mime.startswith("video/")):
        return "binary" if looks_binary(data) else "text"
    if extension in BINARY_EXTENSIONS or looks_binary(data):
        return "binary"
    return "text"


@dataclass
class TextRead:
    content: str
    display: str
    truncated: bool
    total_lines: int
    first_shown: int
    last_shown: int


def text_read(
    data: bytes,
    name: str,
    relative: str,
    start_line: int | None = None,
    end_line: int | None = None,
) -> TextRead:
    """gemini-cli's processSingleFileContent for text, with at most 2000 lines per read."""
    kind = file_kind(name, data)
    if kind == "binary":
        return TextRead(
            f"Cannot display content of binary file: {relative}",
            f"Skipped binary file: {relative}",
            False,
            0,
            0,
            0,
        )
    if kind == "svg":
        if len(data) > SVG_MAX_SIZE_BYTES:
            return TextRead(
                f"Cannot display content of SVG file larger than 1MB: {relative}",
                f"Skipped large SVG file (>1MB): {relative}",
                False,
                0,
                0,
                0,
            )
        return TextRead(decode_text(data), f"Read SVG as text: {relative}", False, 0, 0, 0)

    lines = decode_text(data).split("\n")
    total = len(lines)
    if start_line is None and end_line is None:
        start, end = 0, total
    else:
        start = start_line - 1 if start_line else 0
        end = min(end_line, total) if end_line else total
    start = min(start, total)
    end = min(end, start + MAX_LINES_TEXT_FILE)

    shortened = False
    selected = []
    for line in lines[start:end]:
        if len(line) > MAX_LINE_LENGTH_TEXT_FILE:
            shortened = True
            line = line[:MAX_LINE_LENGTH_TEXT_FILE] + "... [truncated]"
        selected.append(line)

    partial = start > 0 or end < total
    if partial:
        display = f"Read lines {start + 1}-{end} of {total} from {relative}"
        if shortened:
            display += " (some lines were shortened)"
    elif shortened:
        display = f"Read all {total} lines from {relative} (some lines were shortened)"
    else:
        display = f"Read {total} line{'s' if total != 1 else ''} from {relative}"
    return TextRead("\n".join(selected), display, partial or shortened, total, start + 1, end)


def brace_expand(pattern: str, budget: int = 256) -> list[str]:
    """Expand {a,b} alternatives as minimatch does; braces without a comma stay literal."""
    depth = 0
    start = -1
    for index, char in enumerate(pattern):
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                options = _split_top_level(pattern[start + 1 : index])
                if len(options) > 1:
                    head, tail = pattern[:start], pattern[index + 1 :]
                    expanded: list[str] = []
                    for option in options:
                        expanded.extend(brace_expand(head + option + tail, budget))
                        if len(expanded) >= budget:
                            return expanded[:budget]
                    return expanded
    return [pattern]


def _split_top_level(body: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in body:
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        current.append(char)
    parts.append("".join(current))
    return parts


def _glob_part_regex(pattern: str) -> str:
    out: list[str] = []
    index = 0
    length = len(pattern)
    while index < length:
        char = pattern[index]
        if char == "*":
            if pattern.startswith("**", index):
                after = index + 2
                segment_start = index == 0 or pattern[index - 1] == "/"
                if segment_start and after == length:
                    out.append(".*")
                    index = after
                    continue
                if segment_start and pattern[after] == "/":
                    out.append("(?:[^/]*/)*")
                    index = after + 1
                    continue
                index = after
            else:
                index += 1
            out.append("[^/]*")
            continue
        if char == "?":
            out.append("[^/]")
        elif char == "[":
            close = pattern.find("]", index + 2)
            if close == -1:
                out.append(re.escape(char))
            else:
                body = pattern[index + 1 : close]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                index = close + 1
                continue
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def glob_regex(pattern: str, case_sensitive: bool = False) -> re.Pattern[str]:
    """Compile a glob (**, *, ?, [...], {a,b}) into a regex matched against a relative path."""
    alternatives = []
    for expanded in brace_expand(pattern):
        while expanded.startswith("./"):
            expanded = expanded[2:]
        alternatives.append(_glob_part_regex(expanded))
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.compile("(?:" + "|".join(alternatives) + ")", flags)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]{}])", r"[\1]", text)


def walk_files(
    ctx: ToolContext, start: str, excluded_dirs: frozenset[str] = WALK_EXCLUDED_DIRS
) -> Iterator[tuple[str, str]]:
    """Yield (host path, path relative to start) for regular files under start, sorted.

    Directory symlinks are never entered (one to "/" would walk the host) and file symlinks
    are kept only when their target stays inside the workspace.
    """
    for dirpath, dirnames, filenames in os.walk(start, followlinks=False):
        dirnames[:] = sorted(
            name
            for name in dirnames
            if name not in excluded_dirs and not os.path.islink(os.path.join(dirpath, name))
        )
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                info = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISLNK(info.st_mode):
                if not host_is_contained(ctx, full) or not os.path.isfile(full):
                    continue
            elif not stat.S_ISREG(info.st_mode):
                continue
            yield full, os.path.relpath(full, start)


def _lines_keepends(text: str) -> list[str]:
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1] + "\n\\ No newline at end of file\n")
    return lines


def unified_diff(name: str, old: str, new: str) -> str:
    """A unified diff like gemini-cli's Diff.createPatch(name, old, new, 'Current', 'Proposed')."""
    return "".join(
        difflib.unified_diff(
            _lines_keepends(old),
            _lines_keepends(new),
            fromfile=name,
            tofile=name,
            fromfiledate="Current",
            tofiledate="Proposed",
        )
    )


def diff_context_snippet(old: str, new: str, context_lines: int = 5) -> str:
    """The changed regions of new with a few lines around them, '...' between (gemini-cli)."""
    if not old:
        return new
    old_lines = old.replace("\r\n", "\n").split("\n")
    new_lines = new.replace("\r\n", "\n").split("\n")
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    ranges = [(j1, j2) for tag, _, _, j1, j2 in matcher.get_opcodes() if tag != "equal"]
    if not ranges:
        return new
    merged: list[list[int]] = []
    for first, last in sorted(
        (max(0, a - context_lines), min(len(new_lines), b + context_lines)) for a, b in ranges
    ):
        if merged and first <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    parts: list[str] = []
    previous_end = 0
    for first, last in merged:
        if first > previous_end:
            parts.append("...")
        parts.append("\n".join(new_lines[first:last]))
        previous_end = last
    if previous_end < len(new_lines):
        parts.append("...")
    return "\n".join(parts)


def pattern_relative(pattern: str) -> str:
    """A glob given relative to the workspace or under /workspace, as a workspace-relative glob."""
    return virtual_path(pattern)[len(WORKSPACE_ROOT) :].lstrip("/")


def _number(value: float | None) -> int | None:
    return None if value is None else int(value)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class FileTool(Tool):
    """A tool whose work is blocking file I/O, run in a worker thread."""

    async def run(self, args: dict, ctx: ToolContext) -> ToolResult:
        return await asyncio.to_thread(self._guarded_work, args, ctx)

    def _guarded_work(self, args: dict, ctx: ToolContext) -> ToolResult:
        try:
            return self.work(args, ctx)
        except ToolFailure as failure:
            return tool_error(failure.message, failure.display)
        except PathRefused as refused:
            return tool_error(str(refused), "Path not in workspace.")

    @abstractmethod
    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        """The blocking part; raises ToolFailure or PathRefused for errors the model should see."""


def _check_path(ctx: ToolContext, raw: str) -> str | None:
    try:
        resolve(ctx, raw)
    except PathRefused as refused:
        return str(refused)
    return None


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
        problem = _check_path(ctx, args["file_path"])
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
        target = resolve(ctx, args["file_path"])
        data = read_limited(target.host, target.virtual)
        read = text_read(
            data,
            target.host.name,
            target.relative or ".",
            _number(args.get("start_line")),
            _number(args.get("end_line")),
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


class ReadManyFilesTool(FileTool):
    name = "read_many_files"
    display_name = "ReadManyFiles"
    aliases = ("readManyFiles",)
    arg_aliases = {"paths": "include", "patterns": "include"}
    kind = ToolKind.READ
    description = (
        "Reads content from multiple files specified by glob patterns within a configured "
        "target directory. For text files, it concatenates their content into a single "
        "string. It is primarily designed for text-based files; the content of binary files "
        "(images, audio, PDF) cannot be displayed.\n\n"
        "This tool is useful when you need to understand or analyze a collection of files, "
        "such as:\n"
        "- Getting an overview of a codebase or parts of it (e.g., all TypeScript files in "
        "the 'src' directory).\n"
        "- Finding where specific functionality is implemented if the user asks broad "
        "questions about code.\n"
        "- Reviewing documentation files (e.g., all Markdown files in the 'docs' directory).\n"
        "- Gathering context from multiple configuration files.\n"
        '- When the user asks to "read all files in X directory" or "show me the content of '
        'all Y files".\n\n'
        "Use this tool when the user's query implies needing the content of several files "
        "simultaneously for context, analysis, or summarization. For text files, it uses "
        "default UTF-8 encoding and a '--- {filePath} ---' separator between file contents. "
        "The tool inserts a '--- End of content ---' after the last file. Ensure glob "
        "patterns are relative to the target directory. Glob patterns like 'src/**/*.js' are "
        "supported. Avoid using for single files if a more specific single-file reading tool "
        "is available, unless the user specifically requests to process a list containing "
        "just one file via this tool. Default excludes apply to common non-text files and "
        "large dependency directories."
    )
    parameters = {
        "type": "object",
        "properties": {
            "include": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "description": (
                    'An array of glob patterns or paths. Examples: ["src/**/*.ts"], '
                    '["README.md", "docs/"]'
                ),
            },
            "exclude": {
                "type": "array",
                "items": {"type": "string"},
                "description": (
                    "Optional. Glob patterns for files/directories to exclude. Added to "
                    'default excludes. Example: "**/*.log", "temp/"'
                ),
            },
        },
        "required": ["include"],
    }

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        for key in ("include", "exclude"):
            for pattern in args.get(key) or []:
                if not pattern.strip():
                    return f"params/{key} must not contain empty patterns"
                try:
                    pattern_relative(pattern)
                except PathRefused as refused:
                    return str(refused)
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        return "using patterns: " + ", ".join(f"`{p}`" for p in args.get("include") or [])

    def _selected(self, args: dict, ctx: ToolContext) -> list[str]:
        root = workspace_root(ctx)
        include_regexes: list[re.Pattern[str]] = []
        literal_files: list[str] = []
        for pattern in args["include"]:
            relative = pattern_relative(pattern)
            literal = os.path.join(root, relative)
            if not relative:
                include_regexes.append(glob_regex("**"))
            elif os.path.isdir(literal) and host_is_contained(ctx, literal):
                include_regexes.append(glob_regex(glob_escape(relative) + "/**"))
            elif os.path.lexists(literal):
                literal_files.append(relative)
            else:
                include_regexes.append(glob_regex(relative))

        exclude_regexes = [glob_regex(p) for p in READ_MANY_EXCLUDED_FILE_PATTERNS]
        user_excludes = []
        for pattern in args.get("exclude") or []:
            relative = pattern_relative(pattern) or "**"
            user_excludes += [glob_regex(relative), glob_regex(relative + "/**")]
            if "/" not in relative:
                # Like .gitignore, a pattern without a slash applies at any depth.
                user_excludes.append(glob_regex("**/" + relative))

        chosen = set()
        for _, relative in walk_files(ctx, root, READ_MANY_EXCLUDED_DIRS):
            if not any(rx.fullmatch(relative) for rx in include_regexes):
                continue
            if any(rx.fullmatch(relative) for rx in exclude_regexes + user_excludes):
                continue
            chosen.add(relative)
        # A file named explicitly is read even if a default exclude would hide it.
        for relative in literal_files:
            if not any(rx.fullmatch(relative) for rx in user_excludes):
                chosen.add(relative)
        return sorted(chosen)

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        parts: list[str] = []
        processed: list[str] = []
        skipped: list[tuple[str, str]] = []
        length = 0
        for relative in self._selected(args, ctx):
            if length > MODEL_TEXT_LIMIT:
                skipped.append((relative, "not read: the output limit was already reached"))
                continue
            try:
                target = resolve(ctx, relative)
            except PathRefused:
                skipped.append((relative, "Security: path resolves outside the workspace"))
                continue
            extension = os.path.splitext(relative)[1].lower()
            mime, _ = mimetypes.guess_type(relative)
            is_asset = bool(mime) and (mime.startswith("image/") or mime == "application/pdf")
            stem = os.path.splitext(os.path.basename(relative))[0]
            if is_asset and not any(extension in p.lower() or stem in p for p in args["include"]):
                skipped.append(
                    (
                        relative,
                        "asset file (image/pdf) was not explicitly requested by name or extension",
                    )
                )
                continue
            try:
                data = read_limited(target.host, target.virtual)
            except ToolFailure as failure:
                skipped.append((relative, f"Read error: {failure.message}"))
                continue
            read = text_read(data, target.host.name, relative)
            warning = (
                "[WARNING: This file was truncated. To view the full content, use the "
                "'read_file' tool on this specific file.]\n\n"
                if read.truncated
                else ""
            )
            part = f"--- {target.virtual} ---\n\n{warning}{read.content}\n\n"
            parts.append(part)
            length += len(part)
            processed.append(relative)

        if parts:
            output = "".join(parts) + "\n--- End of content ---"
        else:
            output = "No files matching the criteria were found or all were skipped."
        display = f"Read {_plural(len(processed), 'file')}."
        if skipped:
            display += f" Skipped {_plural(len(skipped), 'item')}: " + "; ".join(
                f"{path} ({reason})" for path, reason in skipped[:5]
            )
            if len(skipped) > 5:
                display += f"; ...and {len(skipped) - 5} more"
        return ToolResult(output=output, display=display)


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
        return _check_path(ctx, args["dir_path"])

    def describe(self, args: dict, ctx: ToolContext) -> str:
        return str(args.get("dir_path", ""))

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        target = resolve(ctx, args["dir_path"])
        if not target.host.exists():
            return tool_error(
                f"Error: Directory not found or inaccessible: {target.virtual}",
                "Error: Directory not found or inaccessible.",
            )
        if not target.host.is_dir():
            return tool_error(
                f"Error: Path is not a directory: {target.virtual}",
                "Error: Path is not a directory.",
            )
        try:
            names = os.listdir(target.host)
        except OSError as exc:
            failure = os_failure("listing directory", target.virtual, exc)
            return tool_error(failure.message, "Error: Failed to list directory.")
        if not names:
            return ToolResult(
                output=f"Directory {target.virtual} is empty.", display="Directory is empty."
            )

        ignores = [_ignore_regex(p) for p in args.get("ignore") or []]
        entries: list[tuple[bool, str, str]] = []
        ignored = 0
        for name in names:
            full = os.path.join(target.host, name)
            if name in WALK_EXCLUDED_DIRS and os.path.isdir(full):
                ignored += 1
                continue
            if any(rx.match(name) for rx in ignores):
                continue
            if os.path.islink(full) and not host_is_contained(ctx, full):
                entries.append((False, name, f"{name} (symlink to outside the workspace)"))
                continue
            try:
                info = os.stat(full)
            except OSError:
                entries.append((False, name, f"{name} (broken symlink)"))
                continue
            if stat.S_ISDIR(info.st_mode):
                entries.append((True, name, f"[DIR] {name}"))
            else:
                entries.append((False, name, f"{name} ({info.st_size} bytes)"))
        entries.sort(key=lambda entry: (not entry[0], entry[1].lower(), entry[1]))

        output = f"Directory listing for {target.virtual}:\n" + "\n".join(e[2] for e in entries)
        display = f"Listed {len(entries)} item(s)."
        if ignored:
            output += f"\n\n({ignored} ignored)"
            display += f" ({ignored} ignored)"
        return ToolResult(output=output, display=display)


def _search_dir_problem(ctx: ToolContext, raw: str, missing: str, not_dir: str) -> str | None:
    try:
        target = resolve(ctx, raw)
    except PathRefused as refused:
        return str(refused)
    if not target.host.exists():
        return missing.format(path=target.virtual)
    if not target.host.is_dir():
        return not_dir.format(path=target.virtual)
    return None


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
        return _search_dir_problem(
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
        search = resolve(ctx, args.get("dir_path") or ".")
        root = workspace_root(ctx)
        # An absolute pattern is matched against workspace-relative paths, a relative one
        # against paths relative to the search directory.
        from_root = pattern.startswith("/")
        glob_text = pattern_relative(pattern) if from_root else pattern
        base = root if from_root else str(search.host)
        if os.path.lexists(os.path.join(base, glob_text)):
            glob_text = glob_escape(glob_text)
        matcher = glob_regex(glob_text, bool(args.get("case_sensitive")))

        found: list[tuple[str, float]] = []
        for host, relative in walk_files(ctx, str(search.host)):
            candidate = os.path.relpath(host, root) if from_root else relative
            if matcher.fullmatch(candidate):
                try:
                    found.append((host, os.stat(host).st_mtime))
                except OSError:
                    continue
        if not found:
            return ToolResult(
                output=f'No files found matching pattern "{pattern}" within {search.virtual}',
                display="No files found",
            )

        # gemini-cli: files changed within a day first (newest first), then the rest by path.
        recent_after = time.time() - 24 * 60 * 60
        recent = sorted((f for f in found if f[1] > recent_after), key=lambda f: -f[1])
        older = sorted((f for f in found if f[1] <= recent_after), key=lambda f: f[0])
        listing = "\n".join(virtual_of_host(ctx, host) for host, _ in recent + older)
        return ToolResult(
            output=(
                f'Found {len(found)} file(s) matching "{pattern}" within {search.virtual}, '
                f"sorted by modification time (newest first):\n{listing}"
            ),
            display=f"Found {len(found)} matching file(s)",
        )


DEFAULT_TOTAL_MAX_MATCHES = 100


@dataclass
class GrepMatch:
    file: str
    host: str
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
            return _search_dir_problem(
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

    def _search(self, args: dict, ctx: ToolContext, start: str, limit: int) -> list[GrepMatch]:
        regex = re.compile(args["pattern"], re.IGNORECASE)
        exclude = (
            re.compile(args["exclude_pattern"], re.IGNORECASE)
            if args.get("exclude_pattern")
            else None
        )
        include = args.get("include_pattern")
        include_rx = glob_regex(include) if include else None
        per_file = _number(args.get("max_matches_per_file"))
        size_limit = max_file_bytes()
        matches: list[GrepMatch] = []
        for host, relative in walk_files(ctx, start):
            if include_rx and not (
                include_rx.fullmatch(relative)
                or ("/" not in include and include_rx.fullmatch(os.path.basename(relative)))
            ):
                continue
            try:
                if os.stat(host).st_size > size_limit:
                    continue
                data = read_limited(Path(host), relative)
            except (OSError, ToolFailure):
                continue
            if looks_binary(data):
                continue
            in_file = 0
            for number, line in enumerate(re.split(r"\r?\n", decode_text(data)), start=1):
                if not regex.search(line) or (exclude and exclude.search(line)):
                    continue
                matches.append(GrepMatch(relative, host, number, line))
                in_file += 1
                if len(matches) >= limit:
                    return matches
                if per_file and in_file >= per_file:
                    break
        return matches

    @staticmethod
    def _with_context(matches: list[GrepMatch]) -> dict[str, list[GrepMatch]]:
        """gemini-cli's auto context: with 1-3 matches, show lines around them (50 or 15)."""
        by_file: dict[str, list[GrepMatch]] = {}
        for match in matches:
            by_file.setdefault(match.file, []).append(match)
        if not 1 <= len(matches) <= 3:
            return by_file
        around = 50 if len(matches) == 1 else 15
        for file, file_matches in by_file.items():
            try:
                data = read_limited(Path(file_matches[0].host), file)
            except ToolFailure:
                continue
            lines = re.split(r"\r?\n", decode_text(data))
            hits = {m.line_number for m in file_matches}
            wanted: set[int] = set()
            for number in hits:
                wanted.update(range(max(1, number - around), min(len(lines), number + around) + 1))
            by_file[file] = [
                GrepMatch(file, file_matches[0].host, n, lines[n - 1], n not in hits)
                for n in sorted(wanted)
            ]
        return by_file

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        pattern = args["pattern"]
        dir_path = args.get("dir_path")
        search = resolve(ctx, dir_path or ".")
        total_max = _number(args.get("total_max_matches")) or DEFAULT_TOTAL_MAX_MATCHES
        matches = self._search(args, ctx, str(search.host), total_max)

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
        for file, file_matches in self._with_context(matches).items():
            text += f"File: {file}\n"
            for match in file_matches:
                separator = "-" if match.is_context else ":"
                text += f"L{match.line_number}{separator} {match.line.rstrip()}\n"
            text += "---\n"
        return ToolResult(
            output=text.strip(),
            display=f"Found {len(matches)} {term}{' (limited)' if limited else ''}",
        )


@dataclass
class WritePlan:
    target: WorkspacePath
    original: str | None  # None when the file is new (or too large to show)
    is_new: bool
    content: str  # what will be written, line endings already matched to the old file


def decode_for_edit(data: bytes) -> str:
    # surrogateescape round-trips bytes that are not UTF-8, so an edit never corrupts them.
    return data.decode("utf-8", errors="surrogateescape")


def encode_for_edit(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


class WriteFileTool(FileTool):
    name = "write_file"
    display_name = "WriteFile"
    aliases = ("writeFile",)
    arg_aliases = {"path": "file_path"}
    kind = ToolKind.EDIT
    description = (
        "Writes content to a specified file in the local filesystem.\n\n"
        "      The user has the ability to modify `content`. If modified, this will be "
        "stated in the response."
    )
    parameters = {
        "type": "object",
        "properties": {
            "file_path": {"description": "The path to the file to write to.", "type": "string"},
            "content": {
                "description": (
                    "The content to write to the file. Do not use omission placeholders like "
                    "'(rest of methods ...)', '...', or 'unchanged code'; provide complete "
                    "literal content."
                ),
                "type": "string",
            },
        },
        "required": ["file_path", "content"],
    }

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        if not args["file_path"]:
            return 'Missing or empty "file_path"'
        try:
            target = resolve(ctx, args["file_path"])
        except PathRefused as refused:
            return str(refused)
        if target.host.is_dir():
            return f"Path is a directory, not a file: {target.virtual}"
        size = len(encode_for_edit(args["content"]))
        if size > max_file_bytes():
            return size_limit_failure(target.virtual, size, "Content size").message
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        return f"Writing to {args.get('file_path', '')}"

    def plan(self, args: dict, ctx: ToolContext) -> WritePlan:
        target = resolve(ctx, args["file_path"])
        content = args["content"]
        if not os.path.lexists(target.host):
            return WritePlan(target, None, True, content)
        try:
            data = read_limited(target.host, target.virtual)
        except ToolFailure as failure:
            if target.host.is_file() and "exceeds" in failure.message:
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
            return _edit_details_error(args.get("file_path", ""), exc)
        return {
            "type": "edit",
            "filePath": plan.target.virtual,
            "diff": unified_diff(plan.target.relative, plan.original or "", plan.content),
            "isNewFile": plan.is_new,
        }

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        plan = self.plan(args, ctx)
        write_bytes(plan.target.host, encode_for_edit(plan.content), plan.target.virtual)
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
            f"({_plural(lines, 'line')})",
        )


def _edit_details_error(shown: str, exc: Exception) -> dict:
    message = exc.message if isinstance(exc, ToolFailure) else str(exc)
    try:
        shown = virtual_path(shown)
    except PathRefused:
        pass
    return {"type": "edit", "filePath": shown, "diff": "", "isNewFile": False, "error": message}


@dataclass
class EditPlan:
    target: WorkspacePath
    current: str  # "" for a new file; line endings normalised to \n
    new_content: str
    occurrences: int
    is_new: bool
    crlf: bool


class ReplaceTool(FileTool):
    name = "replace"
    display_name = "Edit"
    aliases = ()
    arg_aliases = {"path": "file_path"}
    kind = ToolKind.EDIT
    description = (
        "Replaces text within a file. By default, the tool expects to find and replace "
        "exactly ONE occurrence of `old_string`. If you want to replace multiple occurrences "
        "of the exact same string, set `allow_multiple` to true. This tool requires providing "
        "significant context around the change to ensure precise targeting. Always use the "
        "read_file tool to examine the file's current content before attempting a text "
        "replacement.\n      \n"
        "      The user has the ability to modify the `new_string` content. If modified, this "
        "will be stated in the response.\n      \n"
        "      Expectation for required parameters:\n"
        "      1. `old_string` MUST be the exact literal text to replace (including all "
        "whitespace, indentation, newlines, and surrounding code etc.).\n"
        "      2. `new_string` MUST be the exact literal text to replace `old_string` with "
        "(also including all whitespace, indentation, newlines, and surrounding code etc.). "
        "Ensure the resulting code is correct and idiomatic and that `old_string` and "
        "`new_string` are different.\n"
        "      3. `instruction` is the detailed instruction of what needs to be changed. It is "
        "important to Make it specific and detailed so developers or large language models "
        "can understand what needs to be changed and perform the changes on their own if "
        "necessary. \n"
        "      4. NEVER escape `old_string` or `new_string`, that would break the exact "
        "literal text requirement.\n"
        "      **Important:** If ANY of the above are not satisfied, the tool will fail. "
        "CRITICAL for `old_string`: Must uniquely identify the instance(s) to change. Include "
        "at least 3 lines of context BEFORE and AFTER the target text, matching whitespace "
        "and indentation precisely. If this string matches multiple locations and "
        "`allow_multiple` is not true, the tool will fail.\n"
        "      5. Prefer to break down complex and long changes into multiple smaller atomic "
        "calls to this tool. Always check the content of the file after changes or not "
        "finding a string to match.\n"
        "      **Multiple replacements:** Set `allow_multiple` to true if you want to replace "
        "ALL occurrences that match `old_string` exactly."
    )
    parameters = {
        "type": "object",
        "properties": {
            "file_path": {"description": "The path to the file to modify.", "type": "string"},
            "instruction": {
                "description": (
                    "A clear, semantic instruction for the code change, acting as a "
                    "high-quality prompt for an expert LLM assistant. It must be "
                    "self-contained and explain the goal of the change.\n\n"
                    "A good instruction should concisely answer:\n"
                    '1.  WHY is the change needed? (e.g., "To fix a bug where users can be '
                    'null...")\n'
                    '2.  WHERE should the change happen? (e.g., "...in the '
                    "'renderUserProfile' function...\")\n"
                    '3.  WHAT is the high-level change? (e.g., "...add a null check for the '
                    "'user' object...\")\n"
                    '4.  WHAT is the desired outcome? (e.g., "...so that it displays a '
                    'loading spinner instead of crashing.")\n\n'
                    "**GOOD Example:** \"In the 'calculateTotal' function, correct the sales "
                    "tax calculation by updating the 'taxRate' constant from 0.05 to 0.075 to "
                    'reflect the new regional tax laws."\n\n'
                    "**BAD Examples:**\n"
                    '- "Change the text." (Too vague)\n'
                    '- "Fix the bug." (Doesn\'t explain the bug or the fix)\n'
                    '- "Replace the line with this new line." (Brittle, just repeats the '
                    "other parameters)\n"
                ),
                "type": "string",
            },
            "old_string": {
                "description": (
                    "The exact literal text to replace, preferably unescaped. For single "
                    "replacements (default), include at least 3 lines of context BEFORE and "
                    "AFTER the target text, matching whitespace and indentation precisely. If "
                    "this string is not the exact literal text (i.e. you escaped it) or does "
                    "not match exactly, the tool will fail."
                ),
                "type": "string",
            },
            "new_string": {
                "description": (
                    "The exact literal text to replace `old_string` with, preferably "
                    "unescaped. Provide the EXACT text. Ensure the resulting code is correct "
                    "and idiomatic. Do not use omission placeholders like '(rest of methods "
                    "...)', '...', or 'unchanged code'; provide exact literal code."
                ),
                "type": "string",
            },
            "allow_multiple": {
                "type": "boolean",
                "description": (
                    "If true, the tool will replace all occurrences of `old_string`. If false "
                    "(default), it will only succeed if exactly one occurrence is found."
                ),
            },
        },
        "required": ["file_path", "old_string", "new_string"],
    }

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        if not args["file_path"].strip():
            return "The 'file_path' parameter must be non-empty."
        problem = _check_path(ctx, args["file_path"])
        if problem:
            return problem
        size = len(encode_for_edit(args["new_string"]))
        if size > max_file_bytes():
            return size_limit_failure(args["file_path"], size, "Content size").message
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        path = args.get("file_path", "")
        old, new = args.get("old_string", ""), args.get("new_string", "")
        if old == "":
            return f"Create {path}"
        if old == new:
            return f"No file changes to {path}"

        def snippet(text: str) -> str:
            return text.split("\n")[0][:30] + ("..." if len(text) > 30 else "")

        return f"{path}: {snippet(old)} => {snippet(new)}"

    def plan(self, args: dict, ctx: ToolContext) -> EditPlan:
        """gemini-cli's calculateEdit, with exact matching only; raises ToolFailure."""
        target = resolve(ctx, args["file_path"])
        old = args["old_string"].replace("\r\n", "\n")
        new = args["new_string"].replace("\r\n", "\n")
        shown = target.virtual
        if not os.path.lexists(target.host):
            if old == "":
                return EditPlan(target, "", new, 1, True, False)
            raise ToolFailure(
                f"File not found: {shown}",
                "File not found. Cannot apply edit. Use an empty old_string to create a new file.",
            )
        raw = decode_for_edit(read_limited(target.host, shown))
        crlf = "\r\n" in raw
        current = raw.replace("\r\n", "\n")
        if old == "":
            raise ToolFailure(
                f"File already exists, cannot create: {shown}",
                "Failed to edit. Attempted to create a file that already exists.",
            )
        occurrences = current.count(old)
        if occurrences == 0:
            raise ToolFailure(
                f"Failed to edit, 0 occurrences found for old_string in {shown}. Ensure you're "
                "not escaping content incorrectly and check whitespace, indentation, and "
                "context. Use read_file tool to verify.",
                "Failed to edit, could not find the string to replace.",
            )
        if occurrences > 1 and not args.get("allow_multiple"):
            raise ToolFailure(
                f"Failed to edit, Expected 1 occurrence but found {occurrences} for old_string "
                f"in file: {shown}",
                f"Failed to edit, expected 1 occurrence but found {occurrences}.",
            )
        if old == new:
            raise ToolFailure(
                "No changes to apply. The old_string and new_string are identical in file: "
                f"{shown}",
                "No changes to apply. The old_string and new_string are identical.",
            )
        new_content = current.replace(old, new)
        if new_content == current:
            raise ToolFailure(
                "No changes to apply. The new content is identical to the current content in "
                f"file: {shown}",
                "No changes to apply. The new content is identical to the current content.",
            )
        return EditPlan(target, current, new_content, occurrences, False, crlf)

    def confirmation_details(self, args: dict, ctx: ToolContext) -> dict:
        try:
            plan = self.plan(args, ctx)
        except (ToolFailure, PathRefused) as exc:
            return _edit_details_error(args.get("file_path", ""), exc)
        return {
            "type": "edit",
            "filePath": plan.target.virtual,
            "diff": unified_diff(plan.target.relative, plan.current, plan.new_content),
            "isNewFile": plan.is_new,
        }

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        plan = self.plan(args, ctx)
        content = plan.new_content.replace("\n", "\r\n") if plan.crlf else plan.new_content
        write_bytes(plan.target.host, encode_for_edit(content), plan.target.virtual)
        if plan.is_new:
            return ToolResult(
                output=f"Created new file: {plan.target.virtual} with provided content.",
                display=f"Created {plan.target.relative}",
            )
        return ToolResult(
            output=(
                f"Successfully modified file: {plan.target.virtual} "
                f"({plan.occurrences} replacements)."
            ),
            display=f"Edited {plan.target.relative} ({_plural(plan.occurrences, 'replacement')})",
        )
