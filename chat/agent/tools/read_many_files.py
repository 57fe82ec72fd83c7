"""The read_many_files tool: the text of every file matching some globs, concatenated."""

from __future__ import annotations

import mimetypes
import os
import re

from sessions_app.workspace import PathRefused, virtual_of

from .base import (
    MODEL_TEXT_LIMIT,
    ToolContext,
    ToolKind,
    ToolResult,
)
from .fs import (
    ARCHIVE_AND_OFFICE_EXTENSIONS,
    WALK_EXCLUDED_DIRS,
    FileTool,
    ToolFailure,
    glob_escape,
    glob_regex,
    pattern_relative,
    plural,
    read_limited,
    text_read,
    walk_files,
    workspace_of,
)

# read_many_files also applies gemini-cli's DEFAULT_FILE_EXCLUDES.
READ_MANY_EXCLUDED_DIRS = WALK_EXCLUDED_DIRS | {".vscode", ".idea", "dist", "build", "coverage"}
READ_MANY_EXCLUDED_FILE_PATTERNS = (
    *(f"**/*{ext}" for ext in (*ARCHIVE_AND_OFFICE_EXTENSIONS, ".pyc", ".pyo")),
    "**/.DS_Store",
    "**/.env",
    "**/GEMINI.md",
)
SECURITY_SKIP = "Security: path resolves outside the workspace"


def _lexists(ws, relative: str) -> bool:
    """A name that exists, even as a link that leads out (it is then skipped for security)."""
    try:
        return ws.lexists(relative)
    except PathRefused:
        return True


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
        ws = workspace_of(ctx)
        include_regexes: list[re.Pattern[str]] = []
        literal_files: list[str] = []
        for pattern in args["include"]:
            relative = pattern_relative(pattern)
            if not relative:
                include_regexes.append(glob_regex("**"))
            elif ws.is_dir(relative):
                include_regexes.append(glob_regex(glob_escape(relative) + "/**"))
            elif _lexists(ws, relative):
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
        for walked in walk_files(ws, "", READ_MANY_EXCLUDED_DIRS):
            relative = walked.relative
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
        ws = workspace_of(ctx)
        for relative in self._selected(args, ctx):
            if length > MODEL_TEXT_LIMIT:
                skipped.append((relative, "not read: the output limit was already reached"))
                continue
            virtual = virtual_of(relative)
            try:
                ws.check(relative)
            except PathRefused:
                skipped.append((relative, SECURITY_SKIP))
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
                data = read_limited(ws, relative, virtual)
            except PathRefused:
                skipped.append((relative, SECURITY_SKIP))
                continue
            except ToolFailure as failure:
                skipped.append((relative, f"Read error: {failure.message}"))
                continue
            read = text_read(data, os.path.basename(relative), relative)
            warning = (
                "[WARNING: This file was truncated. To view the full content, use the "
                "'read_file' tool on this specific file.]\n\n"
                if read.truncated
                else ""
            )
            part = f"--- {virtual} ---\n\n{warning}{read.content}\n\n"
            parts.append(part)
            length += len(part)
            processed.append(relative)

        if parts:
            output = "".join(parts) + "\n--- End of content ---"
        else:
            output = "No files matching the criteria were found or all were skipped."
        display = f"Read {plural(len(processed), 'file')}."
        if skipped:
            display += f" Skipped {plural(len(skipped), 'item')}: " + "; ".join(
                f"{path} ({reason})" for path, reason in skipped[:5]
            )
            if len(skipped) > 5:
                display += f"; ...and {len(skipped) - 5} more"
        return ToolResult(output=output, display=display)
