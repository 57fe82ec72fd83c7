"""The read_many_files tool (gemini-cli tools/read-many-files.ts): the files matching some globs,
each after a "--- path ---" separator, the parts joined as gemini-cli's function response joins
them; images, PDF and audio only when asked for by name or extension."""

from __future__ import annotations

import posixpath
import re

from sessions_app.workspace import PathRefused, virtual_of

from .base import ToolContext, ToolKind, ToolResult
from .fs import (
    BINARY_FILE_EXTENSIONS,
    COMMON_DIRECTORY_EXCLUDES,
    COMMON_IGNORED_DIRS,
    PYTHON_EXTENSIONS,
    FileTool,
    ToolFailure,
    detect_file_type,
    file_read,
    glob_escape,
    glob_regex,
    pattern_relative,
    plural,
    read_limited,
    walk_files,
    workspace_of,
)
from .ignore import FileFilter

# gemini-cli's getReadManyFilesExcludes: DEFAULT_FILE_EXCLUDES and the context file name.
DEFAULT_EXCLUDES = (
    *(f"**/{name}/**" for name in sorted(COMMON_IGNORED_DIRS | COMMON_DIRECTORY_EXCLUDES)),
    *(f"**/*{ext}" for ext in (*BINARY_FILE_EXTENSIONS, *PYTHON_EXTENSIONS)),
    "**/.DS_Store",
    "**/.env",
    "**/GEMINI.md",
)
SEPARATOR = "--- {path} ---"
TERMINATOR = "\n--- End of content ---"
NO_FILES = "No files matching the criteria were found or all were skipped."


def _exclude_regexes(patterns) -> list[re.Pattern[str]]:
    regexes = []
    for pattern in patterns:
        relative = pattern_relative(pattern).strip("/")
        regexes.append(glob_regex(relative or "**"))
        regexes.append(glob_regex((relative or "**") + "/**"))
    return regexes


class ReadManyFilesTool(FileTool):
    name = "read_many_files"
    display_name = "ReadManyFiles"
    aliases = ("readManyFiles",)
    arg_aliases = {"paths": "include", "patterns": "include"}
    kind = ToolKind.READ

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        for key in ("include", "exclude"):
            for pattern in args.get(key) or []:
                try:
                    pattern_relative(pattern.replace("\\", "/"))
                except PathRefused as refused:
                    return str(refused)
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        return "using patterns: " + ", ".join(f"`{p}`" for p in args.get("include") or [])

    def _selected(self, args: dict, ctx: ToolContext) -> tuple[list[str], int]:
        """The files to read, sorted, and how many the ignore files hid."""
        ws = workspace_of(ctx)
        includes = []
        for pattern in args["include"]:
            relative = pattern_relative(pattern.replace("\\", "/"))
            # A file named exactly is matched literally (glob's escape), anything else as a glob.
            if relative and ws.is_file(relative):
                relative = glob_escape(relative)
            includes.append(glob_regex(relative))
        excludes = list(args.get("exclude") or [])
        pruned: frozenset[str] = frozenset()
        if args.get("useDefaultExcludes", True) is not False:
            excludes = [*DEFAULT_EXCLUDES, *excludes]
            # glob's ignore never enters these directories; neither does the walk.
            pruned = COMMON_IGNORED_DIRS | COMMON_DIRECTORY_EXCLUDES
        exclude_regexes = _exclude_regexes(excludes)
        matched = []
        for walked in walk_files(ws, "", pruned):
            relative = walked.relative
            if not any(rx.fullmatch(relative) for rx in includes):
                continue
            if any(rx.fullmatch(relative) for rx in exclude_regexes):
                continue
            matched.append(relative)
        options = args.get("file_filtering_options") or {}
        kept, ignored = FileFilter(ws).filter(
            matched,
            respect_git=options.get("respect_git_ignore", True),
            respect_gemini=options.get("respect_gemini_ignore", True),
        )
        return sorted(kept, key=virtual_of), ignored

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        ws = workspace_of(ctx)
        files, ignored = self._selected(args, ctx)
        texts: list[str] = []
        media: list[dict] = []
        processed: list[str] = []
        skipped: list[tuple[str, str]] = []
        if ignored:
            skipped.append((f"{ignored} file(s)", "ignored by project ignore files"))
        for relative in files:
            virtual = virtual_of(relative)
            try:
                data = read_limited(ws, relative, virtual)
            except PathRefused:
                skipped.append((virtual, "Security: Path not in workspace"))
                continue
            except ToolFailure as failure:
                skipped.append((relative, f"Read error: {failure.message}"))
                continue
            kind = detect_file_type(relative, data)
            if kind in ("image", "pdf", "audio"):
                extension = posixpath.splitext(relative)[1].lower()
                stem = posixpath.splitext(posixpath.basename(relative))[0]
                if not any(
                    extension in pattern.lower() or stem in pattern for pattern in args["include"]
                ):
                    skipped.append(
                        (
                            relative,
                            "asset file (image/pdf/audio) was not explicitly requested by name "
                            "or extension",
                        )
                    )
                    continue
            read = file_read(data, relative)
            if read.error:
                skipped.append((relative, f"Read error: {read.error}"))
                continue
            if read.part is not None:
                media.append(read.part)
            else:
                warning = (
                    "[WARNING: This file was truncated. To view the full content, use the "
                    "'read_file' tool on this specific file.]\n\n"
                    if read.truncated
                    else ""
                )
                texts.append(f"{SEPARATOR.format(path=virtual)}\n\n{warning}{read.content}\n\n")
            processed.append(relative)

        # The function response joins the text parts with "\n" (convertToFunctionResponse).
        output = "\n".join([*texts, TERMINATOR]) if texts or media else NO_FILES
        display = f"Read {plural(len(processed), 'file')}."
        if skipped:
            display += f" Skipped {plural(len(skipped), 'item')}: " + "; ".join(
                f"{path} ({reason})" for path, reason in skipped[:5]
            )
            if len(skipped) > 5:
                display += f"; ...and {len(skipped) - 5} more"
        return ToolResult(output=output, display=display, parts=media)
