"""Helpers the file tools share: bounded reads and writes, text decoding, globs, walks, diffs."""

from __future__ import annotations

import asyncio
import codecs
import difflib
import errno
import mimetypes
import os
import posixpath
import re
import stat
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings

from sessions_app.workspace import (
    PathRefused,
    Workspace,
    WorkspaceQuotaExceeded,
    relative_path,
    virtual_of,
    virtual_path,
)

from .base import (
    Tool,
    ToolContext,
    ToolResult,
    tool_error,
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
# fmt: off
ARCHIVE_AND_OFFICE_EXTENSIONS = (
    ".7z", ".bin", ".bz2", ".class", ".db", ".dll", ".dmg", ".doc", ".docx", ".dylib", ".exe",
    ".gz", ".img", ".iso", ".jar", ".lz4", ".mdb", ".odp", ".ods", ".odt", ".ppt", ".pptx",
    ".rar", ".so", ".sqlite", ".tar", ".war", ".xls", ".xlsx", ".xz", ".zip", ".zst",
)
MEDIA_EXTENSIONS = (
    ".avi", ".bmp", ".flac", ".gif", ".jpeg", ".jpg", ".mkv", ".mov", ".mp3", ".mp4", ".ogg",
    ".otf", ".pdf", ".png", ".ttf", ".wav", ".webp", ".woff", ".woff2",
)
# fmt: on
BINARY_EXTENSIONS = frozenset(
    (*ARCHIVE_AND_OFFICE_EXTENSIONS, *MEDIA_EXTENSIONS, ".pyc", ".pyo", ".dat", ".obj", ".o")
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


@dataclass(frozen=True)
class Target:
    """A path as the model wrote it, normalised: what it is shown as, and where it is."""

    virtual: str  # /workspace or /workspace/...
    relative: str  # "" for the workspace root, else "a/b.txt"

    @property
    def name(self) -> str:
        return posixpath.basename(self.relative)


def target_of(raw: str) -> Target:
    """Lexical only (raises PathRefused for a path that leaves /workspace on its face)."""
    relative = relative_path(raw)
    return Target(virtual_of(relative), relative)


def workspace_of(ctx: ToolContext) -> Workspace:
    return Workspace(ctx.workspace)


def os_error_text(exc: OSError) -> str:
    # str(OSError) may embed a file name, so only the reason and the errno name are used.
    code = errno.errorcode.get(exc.errno, "") if exc.errno else ""
    suffix = f" ({code})" if code else ""
    return f"{exc.strerror or 'I/O error'}{suffix}"


def os_failure(action: str, virtual: str, exc: OSError) -> ToolFailure:
    return ToolFailure(f"Error {action} {virtual}: {os_error_text(exc)}")


def read_limited(ws: Workspace, path: str, virtual: str) -> bytes:
    """Read a regular file, refusing directories, special files and files over the size limit."""
    limit = max_file_bytes()
    try:
        fd, info = ws.open_file(path)
    except FileNotFoundError:
        raise ToolFailure(f"File not found: {virtual}", "File not found.") from None
    except OSError as exc:
        raise os_failure("reading file", virtual, exc) from None
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


def write_bytes(ws: Workspace, path: str, data: bytes, virtual: str) -> None:
    """Replace the file's content (through a temporary file), within the workspace's quota."""
    try:
        ws.write_bytes(path, data)
    except IsADirectoryError:
        raise ToolFailure(f"Target is a directory, not a file: {virtual} (EISDIR)") from None
    except WorkspaceQuotaExceeded as exc:
        raise ToolFailure(str(exc), "Workspace quota exceeded.") from None
    except OSError as exc:
        raise os_failure("writing to file", virtual, exc) from None


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


@dataclass(frozen=True)
class WalkedFile:
    path: str  # relative to the directory walked
    relative: str  # relative to the workspace root
    stat: os.stat_result  # the file's, or for a link its target's

    @property
    def virtual(self) -> str:
        return virtual_of(self.relative)


def walk_files(
    ws: Workspace, start: str, excluded_dirs: frozenset[str] = WALK_EXCLUDED_DIRS
) -> Iterator[WalkedFile]:
    """The regular files under start, sorted, walked by directory fds.

    Directory symlinks are never entered (one to "/" would walk the host, even when swapped in
    mid-walk) and file symlinks are kept only when their target is a file inside the workspace.
    """
    for entry in ws.walk(start, excluded_dirs=excluded_dirs):
        info = entry.lstat
        if stat.S_ISLNK(info.st_mode):
            try:
                info = ws.stat(entry.relative)
            except (OSError, PathRefused):
                continue
        if stat.S_ISREG(info.st_mode):
            yield WalkedFile(entry.path, entry.relative, info)


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
    return relative_path(pattern)


def optional_int(value: float | None) -> int | None:
    return None if value is None else int(value)


def plural(count: int, word: str) -> str:
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
        except OSError as exc:
            # What no tool expects (EACCES, EIO, ...): the model still gets the reason.
            return tool_error(f"Error executing tool {self.name}: {os_error_text(exc)}")

    @abstractmethod
    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        """The blocking part; raises ToolFailure or PathRefused for errors the model should see."""


def check_path(ctx: ToolContext, raw: str) -> str | None:
    """The refusal for a path that leads out of the workspace (links followed), else None."""
    try:
        workspace_of(ctx).check(raw)
    except PathRefused as refused:
        return str(refused)
    return None


def search_dir_problem(ctx: ToolContext, raw: str, missing: str, not_dir: str) -> str | None:
    try:
        target = target_of(raw)
        info = workspace_of(ctx).stat(raw)
    except PathRefused as refused:
        return str(refused)
    except OSError:
        return missing.format(path=target.virtual)
    if not stat.S_ISDIR(info.st_mode):
        return not_dir.format(path=target.virtual)
    return None


def decode_for_edit(data: bytes) -> str:
    # surrogateescape round-trips bytes that are not UTF-8, so an edit never corrupts them.
    return data.decode("utf-8", errors="surrogateescape")


def encode_for_edit(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def edit_details_error(shown: str, exc: Exception) -> dict:
    message = exc.message if isinstance(exc, ToolFailure) else str(exc)
    try:
        shown = virtual_path(shown)
    except PathRefused:
        pass
    return {"type": "edit", "filePath": shown, "diff": "", "isNewFile": False, "error": message}
