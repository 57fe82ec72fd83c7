"""Helpers the file tools share: bounded reads and writes, text decoding, file types as
gemini-cli detects them, the single-file read (utils/fileUtils.ts), globs and walks."""

from __future__ import annotations

import asyncio
import base64
import codecs
import difflib
import errno
import json
import os
import posixpath
import re
import stat
import unicodedata
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.conf import settings

from sessions_app.workspace import (
    PathRefused,
    Workspace,
    WorkspaceQuotaExceeded,
    relative_path,
    virtual_of,
    virtual_path,
)

from .base import Tool, ToolContext, ToolResult, tool_error

DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_LINES_TEXT_FILE = 2000
MAX_LINE_LENGTH_TEXT_FILE = 2000
SVG_MAX_SIZE_BYTES = 1024 * 1024
MB = 1024 * 1024

# gemini-cli's COMMON_IGNORE_PATTERNS (utils/ignorePatterns.ts): glob and the walks skip them.
COMMON_IGNORED_DIRS = frozenset({"node_modules", ".git", "bower_components", ".svn", ".hg"})
# COMMON_DIRECTORY_EXCLUDES: read_many_files and grep also skip these.
COMMON_DIRECTORY_EXCLUDES = frozenset(
    {".vscode", ".idea", "dist", "build", "coverage", "__pycache__"}
)
# fmt: off
BINARY_FILE_EXTENSIONS = (
    ".bin", ".exe", ".dll", ".so", ".dylib", ".class", ".jar", ".war", ".zip", ".tar", ".gz",
    ".bz2", ".rar", ".7z", ".pak", ".rpa", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx",
    ".odt", ".ods", ".odp",
)
MEDIA_FILE_EXTENSIONS = (".pdf", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg")
# fmt: on
PYTHON_EXTENSIONS = (".pyc", ".pyo")
# gemini-cli's BINARY_EXTENSIONS: judged binary by name before any content check.
BINARY_EXTENSIONS = frozenset(
    (*BINARY_FILE_EXTENSIONS, *MEDIA_FILE_EXTENSIONS, *PYTHON_EXTENSIONS)
) | {".dat", ".obj", ".o", ".a", ".lib", ".wasm"}

SUPPORTED_AUDIO_MIME_TYPES = {
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".aiff": "audio/aiff",
    ".aif": "audio/aiff",
    ".aac": "audio/aac",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
}
AUDIO_MIME_NORMALIZATION = {
    "audio/mp3": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/wave": "audio/wav",
    "audio/x-wav": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-pn-wav": "audio/wav",
    "audio/x-aiff": "audio/aiff",
    "audio/aif": "audio/aiff",
    "audio/x-aac": "audio/aac",
}
SUPPORTED_AUDIO_FORMATS_DISPLAY = "MP3, WAV, AIFF, AAC, OGG, and FLAC"


class ToolFailure(Exception):
    """A failure to report to the model (message) and to the user (display)."""

    def __init__(self, message: str, display: str = ""):
        super().__init__(message)
        self.message = message
        self.display = display or message


def max_file_bytes() -> int:
    return int(getattr(settings, "TOOL_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES))


def limit_text() -> str:
    limit = max_file_bytes()
    return f"{limit // MB}MB" if limit >= MB and limit % MB == 0 else f"{limit} bytes"


def size_limit_failure(virtual: str, size: int, what: str = "File size") -> ToolFailure:
    """gemini-cli's "File size exceeds the 20MB limit: <path> (20.50MB)"."""
    limit = max_file_bytes()
    in_mb = limit >= MB and limit % MB == 0
    size_text = f"{size / MB:.2f}MB" if in_mb else f"{size} bytes"
    return ToolFailure(
        f"{what} exceeds the {limit_text()} limit: {virtual} ({size_text})",
        f"{what} exceeds the {limit_text()} limit.",
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


# Text.


def bom_encoding(data: bytes) -> tuple[str, int] | None:
    """gemini-cli's detectBOM, in its order (UTF-32 LE before UTF-16 LE)."""
    if data.startswith(codecs.BOM_UTF32_LE):
        return "utf-32-le", 4
    if data.startswith(codecs.BOM_UTF32_BE):
        return "utf-32-be", 4
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if data.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if data.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    return None


def decode_text(data: bytes) -> str:
    """readFileWithEncoding: honour a UTF-8/16/32 BOM (and drop it), else UTF-8."""
    found = bom_encoding(data)
    if found:
        encoding, skip = found
        return data[skip:].decode(encoding, errors="replace")
    return data.decode("utf-8", errors="replace")


def decode_for_edit(data: bytes) -> str:
    # surrogateescape round-trips bytes that are not UTF-8, so an edit never corrupts them.
    return data.decode("utf-8", errors="surrogateescape")


def encode_for_edit(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


_ANSI = re.compile(
    r"\x1b\](?:P[\dA-Fa-f]{7}|R)(?:\x07|(?:\x1b\\|\x9c))?"
    r"|(?:\x1b\]|\x9d)[^\x07\x18\x1a\x1b\x80-\x9f]*(?:\x07|(?:\x1b\\|\x9c))"
    r"|(?:\x1b[PX^_k]|[\x90\x98\x9e\x9f])[^\x18\x1a\x1b\x80-\x9f]*(?:\x1b\\|\x9c)"
    r"|(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
    r"|\x1b(?:[\x20-\x2f]+[\x30-\x7e]|[\dA-PR-TZcf-oq-uy=><~|}])"
)


def strip_ansi(text: str) -> str:
    """strip-ansi (ansi-regex 6): terminal escape sequences out, text kept."""
    return _ANSI.sub("", text)


# File types, as gemini-cli's detectFileType sees them.

ISBINARY_MAX_BYTES = 512
UTF8_BOUNDARY_RESERVE = 3


def _proto_varint(reader: list) -> int:
    data, size = reader[0], reader[1]
    index = 0
    value = 0
    while not reader[3]:
        if reader[2] == size:
            reader[3] = True
            byte = 0xFF
        else:
            byte = data[reader[2]]
            reader[2] += 1
        shift = (7 * index) & 31
        value = (value | ((byte & 0x7F) << shift)) & 0xFFFFFFFF
        if not byte & 0x80:
            break
        if index >= 10:
            reader[3] = True
            break
        index += 1
    return value - (1 << 32) if value & 0x80000000 else value


def _proto_skip(reader: list, count: int) -> None:
    for _ in range(max(count, 0)):
        if reader[3]:
            return
        if reader[2] == reader[1]:
            reader[3] = True
            return
        reader[2] += 1


def _looks_like_protobuf(data: bytes, size: int) -> bool:
    reader = [data, size, 0, False]  # data, size, offset, error
    messages = 0
    while True:
        wire = _proto_varint(reader) & 0x7
        if wire == 0:
            _proto_varint(reader)
        elif wire == 1:
            _proto_skip(reader, 8)
        elif wire == 2:
            _proto_skip(reader, _proto_varint(reader))
        elif wire == 5:
            _proto_skip(reader, 4)
        elif not reader[3]:
            return False
        if reader[3]:
            break
        messages += 1
    return messages > 0


def is_binary(data: bytes) -> bool:
    """isbinaryfile 5's check on a file's first bytes (what gemini-cli's isBinaryFile uses)."""
    head = data[: ISBINARY_MAX_BYTES + UTF8_BOUNDARY_RESERVE]
    total = len(head)
    if total == 0:
        return False
    scan = min(total, ISBINARY_MAX_BYTES)
    if head.startswith(
        (b"\xef\xbb\xbf", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", b"\x84\x31\x95\x33")
    ):
        return False
    if total >= 5 and head[:5] == b"%PDF-":
        return True
    if head.startswith((b"\xfe\xff", b"\xff\xfe")):
        return False
    suspicious = 0
    index = 0
    while index < scan:
        byte = head[index]
        if byte == 0:
            return True
        if (byte < 7 or byte > 14) and (byte < 32 or byte > 127):
            if 0xC0 <= byte <= 0xDF and index + 1 < total:
                index += 1
                if 0x80 <= head[index] <= 0xBF:
                    index += 1
                    continue
            elif 0xE0 <= byte <= 0xEF and index + 2 < total:
                index += 1
                if 0x80 <= head[index] <= 0xBF and 0x80 <= head[index + 1] <= 0xBF:
                    index += 2
                    continue
            elif 0xF0 <= byte <= 0xF7 and index + 3 < total:
                index += 1
                if all(0x80 <= head[index + step] <= 0xBF for step in range(3)):
                    index += 3
                    continue
            suspicious += 1
            if index >= 32 and suspicious * 100 / scan > 10:
                return True
        index += 1
    if suspicious * 100 / scan > 10:
        return True
    return suspicious > 1 and _looks_like_protobuf(head, scan)


@cache
def _mime_table() -> dict[str, str]:
    return json.loads(Path(__file__).with_name("mime_types.json").read_text())


def mime_type(path: str) -> str | None:
    """mime/lite's getType: the standard (IANA) types by extension, nothing for dotfiles."""
    last = posixpath.basename(path).lower()
    extension = last.rsplit(".", 1)[-1]
    if len(extension) >= len(last) - 1:
        return None
    return _mime_table().get(extension)


def audio_mime_type(path: str) -> str | None:
    extension = posixpath.splitext(path)[1].lower()
    looked_up = (mime_type(path) or "").lower()
    normalized = AUDIO_MIME_NORMALIZATION.get(looked_up, looked_up)
    if normalized and normalized in SUPPORTED_AUDIO_MIME_TYPES.values():
        return normalized
    return SUPPORTED_AUDIO_MIME_TYPES.get(extension)


def detect_file_type(path: str, head: bytes) -> str:
    """'text', 'image', 'pdf', 'audio', 'video', 'binary' or 'svg', by name then by content."""
    extension = posixpath.splitext(path)[1].lower()
    if extension in (".ts", ".mts", ".cts"):
        return "text"
    if extension == ".svg":
        return "svg"
    looked_up = mime_type(path)
    if looked_up:
        if looked_up.startswith("image/"):
            return "image"
        if looked_up.startswith(("audio/", "video/")):
            if not is_binary(head):
                return "text"
            return "audio" if looked_up.startswith("audio/") else "video"
        if looked_up == "application/pdf":
            return "pdf"
    if audio_mime_type(path):
        return "audio" if is_binary(head) else "text"
    if extension in BINARY_EXTENSIONS:
        return "binary"
    return "binary" if is_binary(head) else "text"


@dataclass
class FileRead:
    """processSingleFileContent's result for a file that could be read."""

    content: str | None  # the text for the model, or None for inline data
    display: str
    part: dict | None = None  # {"inlineData": {...}} for images, PDF, audio, video
    truncated: bool = False
    total_lines: int = 0
    shown: tuple[int, int] = (0, 0)
    error: str | None = None  # e.g. an unsupported audio format


def inline_part(data: bytes, mime: str) -> dict:
    return {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode("ascii")}}


def file_read(
    data: bytes, relative: str, start_line: int | None = None, end_line: int | None = None
) -> FileRead:
    """The read of one file's bytes: text by line range, SVG as text, media as inline data."""
    kind = detect_file_type(relative, data[: ISBINARY_MAX_BYTES + UTF8_BOUNDARY_RESERVE])
    if kind == "binary":
        return FileRead(
            f"Cannot display content of binary file: {relative}", f"Skipped binary file: {relative}"
        )
    if kind == "svg":
        if len(data) > SVG_MAX_SIZE_BYTES:
            return FileRead(
                f"Cannot display content of SVG file larger than 1MB: {relative}",
                f"Skipped large SVG file (>1MB): {relative}",
            )
        return FileRead(decode_text(data), f"Read SVG as text: {relative}")
    if kind == "audio":
        mime = audio_mime_type(relative)
        if mime is None:
            return FileRead(
                None,
                f"Unsupported audio file format: {relative}",
                error=(
                    f"Unsupported audio file format for {virtual_of(relative)}. Supported audio "
                    f"formats are {SUPPORTED_AUDIO_FORMATS_DISPLAY}."
                ),
            )
        return FileRead(None, f"Read audio file: {relative}", inline_part(data, mime))
    if kind in ("image", "pdf", "video"):
        mime = mime_type(relative) or "application/octet-stream"
        return FileRead(None, f"Read {kind} file: {relative}", inline_part(data, mime))

    lines = re.split(r"\r?\n", decode_text(data))
    total = len(lines)
    start, end = 0, total
    if start_line is not None or end_line is not None:
        start = start_line - 1 if start_line else 0
        end = min(end_line, total) if end_line else min(start + MAX_LINES_TEXT_FILE, total)
    else:
        end = min(MAX_LINES_TEXT_FILE, total)
    first = min(start, total)
    shortened = False
    selected = []
    for line in lines[first:end]:
        if len(line) > MAX_LINE_LENGTH_TEXT_FILE:
            shortened = True
            line = line[:MAX_LINE_LENGTH_TEXT_FILE] + "... [truncated]"
        selected.append(line)
    partial = first > 0 or end < total
    display = ""
    if partial:
        display = f"Read lines {first + 1}-{end} of {total} from {relative}"
        if shortened:
            display += " (some lines were shortened)"
    elif shortened:
        display = f"Read all {total} lines from {relative} (some lines were shortened)"
    return FileRead(
        "\n".join(selected),
        display,
        truncated=partial or shortened,
        total_lines=total,
        shown=(first + 1, end),
    )


# Globs.


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
        elif char == "\\" and index + 1 < length:
            out.append(re.escape(pattern[index + 1]))
            index += 2
            continue
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


def pattern_relative(pattern: str) -> str:
    """A glob given relative to the workspace or under /workspace, as a workspace-relative glob."""
    return relative_path(pattern)


# Walks.


@dataclass(frozen=True)
class WalkedFile:
    path: str  # relative to the directory walked
    relative: str  # relative to the workspace root
    stat: os.stat_result  # the file's, or for a link its target's

    @property
    def virtual(self) -> str:
        return virtual_of(self.relative)


def walk_files(
    ws: Workspace, start: str, excluded_dirs: frozenset[str] = COMMON_IGNORED_DIRS
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


# Diffs for confirmations.


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


def edit_details(target, before: str | None, after: str, *, is_new: bool) -> dict:
    """The confirmation an edit tool (write_file, replace) shows: the file and its diff."""
    return {
        "type": "edit",
        "filePath": target.virtual,
        "diff": unified_diff(target.relative, before or "", after),
        "isNewFile": is_new,
    }


def edit_details_error(shown: str, exc: Exception) -> dict:
    message = exc.message if isinstance(exc, ToolFailure) else str(exc)
    try:
        shown = virtual_path(shown)
    except PathRefused:
        pass
    return {"type": "edit", "filePath": shown, "diff": "", "isNewFile": False, "error": message}


# Ordering as JavaScript's String.prototype.localeCompare orders names (ICU's root collation):
# punctuation and symbols before digits before letters, letters without regard to case first,
# and lower case before upper case only between otherwise equal names.
_ICU_SYMBOL_ORDER = "_-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$"
_SYMBOL_RANK = {char: rank for rank, char in enumerate(_ICU_SYMBOL_ORDER)}


def _collation_weight(char: str) -> tuple:
    if char.isspace():
        return (0, ord(char))
    if char in _SYMBOL_RANK:
        return (1, _SYMBOL_RANK[char])
    if char.isdigit():
        return (3, char)
    base = unicodedata.normalize("NFD", char)[0]
    if base.isalpha():
        return (4, base.casefold())
    return (2, ord(char))


def collation_key(text: str) -> tuple:
    """A sort key that orders strings as localeCompare does for file names and paths."""
    primary = tuple(_collation_weight(char) for char in text)
    accents = tuple(len(unicodedata.normalize("NFD", char)) for char in text)
    case = tuple(char.isupper() for char in text)
    return (primary, accents, case, text)


# Node's error messages (libuv's), which gemini-cli passes on where a system call fails.
_UV_MESSAGES = {
    errno.ENOENT: "no such file or directory",
    errno.EACCES: "permission denied",
    errno.ENOTDIR: "not a directory",
    errno.EISDIR: "illegal operation on a directory",
    errno.ELOOP: "too many symbolic links encountered",
    errno.EPERM: "operation not permitted",
    errno.EIO: "i/o error",
    errno.ENAMETOOLONG: "name too long",
}


def node_error(exc: OSError, syscall: str, virtual: str) -> str:
    """ "ENOENT: no such file or directory, stat '/workspace/x'", as Node words a failed call."""
    code = errno.errorcode.get(exc.errno, "EIO") if exc.errno else "EIO"
    message = _UV_MESSAGES.get(exc.errno, (exc.strerror or "unknown error").lower())
    return f"{code}: {message}, {syscall} '{virtual}'"
