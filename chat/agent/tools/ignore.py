"""The project's ignore files, as gemini-cli's FileDiscoveryService reads them: .gitignore
(hierarchically, in a git repository only, with .git/info/exclude) and .geminiignore (the
workspace root's), .geminiignore taking precedence. Files are read through the workspace."""

from __future__ import annotations

import posixpath
import re
from functools import lru_cache

import pathspec

from sessions_app.workspace import PathRefused, Workspace

GEMINI_IGNORE = ".geminiignore"
IGNORE_FILE_MAX_BYTES = 1024 * 1024


def _read_lines(ws: Workspace, relative: str) -> list[str]:
    try:
        data = ws.read_head(relative, IGNORE_FILE_MAX_BYTES)
    except (OSError, PathRefused):
        return []
    return re.split(r"\r\n|\n|\r", data.decode("utf-8", errors="replace"))


def _gitignore_patterns(lines: list[str], base_dir: str) -> list[str]:
    """GitIgnoreParser.processPatterns: a nested file's patterns rewritten to the root."""
    patterns = []
    for line in lines:
        pattern = line.lstrip()
        if not pattern or pattern.startswith("#"):
            continue
        negative = pattern.startswith("!")
        if negative:
            pattern = pattern[1:]
        anchored = pattern.startswith("/")
        if anchored:
            pattern = pattern[1:]
        if not pattern:
            continue
        if base_dir and base_dir != ".":
            if not anchored and "/" not in pattern:
                pattern = posixpath.join("**", pattern)
            pattern = posixpath.join(base_dir, pattern)
            if not pattern.startswith("/"):
                pattern = "/" + pattern
        if anchored and not pattern.startswith("/"):
            pattern = "/" + pattern
        patterns.append(("!" if negative else "") + pattern)
    return patterns


class _Rules:
    """An `ignore` instance: patterns in order, the last match decides, and a path under an
    ignored directory is ignored whatever later patterns say."""

    def __init__(self, patterns: list[str]):
        self.patterns = list(patterns)
        self.spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)

    def ignores(self, path: str) -> bool:
        if not self.patterns:
            return False
        parts = path.rstrip("/").split("/")
        for depth in range(1, len(parts)):
            if self.spec.match_file("/".join(parts[:depth]) + "/"):
                return True
        return self.spec.match_file(path)


@lru_cache(maxsize=256)
def _rules(patterns: tuple[str, ...]) -> _Rules:
    return _Rules(list(patterns))


class FileFilter:
    """Which workspace-relative paths the project's ignore files hide (a trailing "/" marks a
    directory, as gemini-cli's filterFiles reads it)."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.git_repo = ws.lexists(".git")
        self.gemini_patterns = [
            line.strip()
            for line in _read_lines(ws, GEMINI_IGNORE)
            if line.strip() and not line.strip().startswith("#")
        ]
        self._gemini = _Rules(self.gemini_patterns)
        self._dir_patterns: dict[str, list[str]] = {}
        self._exclude: list[str] | None = None

    def _patterns_in(self, directory: str) -> list[str]:
        if directory not in self._dir_patterns:
            name = posixpath.join(directory, ".gitignore") if directory else ".gitignore"
            self._dir_patterns[directory] = _gitignore_patterns(
                _read_lines(self.ws, name), directory or "."
            )
        return self._dir_patterns[directory]

    def _git_ignores(self, path: str, extra: list[str]) -> bool:
        """GitIgnoreParser.isIgnored: .git, info/exclude, each directory's .gitignore on the
        way down (stopping at an ignored directory), then the extra patterns last."""
        if self._exclude is None:
            self._exclude = _gitignore_patterns(_read_lines(self.ws, ".git/info/exclude"), ".")
        patterns = [".git", *self._exclude]
        parts = path.rstrip("/").split("/")
        for depth in range(len(parts)):
            directory = "/".join(parts[:depth])
            if directory and _rules(tuple(patterns + extra)).ignores(directory + "/"):
                break
            patterns += self._patterns_in(directory)
        return _rules(tuple(patterns + extra)).ignores(path)

    def ignored(self, path: str, *, respect_git: bool = True, respect_gemini: bool = True) -> bool:
        path = path.lstrip("/")
        if not path or path == "/":
            return False
        if respect_git and respect_gemini:
            if self.git_repo:
                return self._git_ignores(path, self.gemini_patterns)
            return self._gemini.ignores(path)
        if respect_git and self.git_repo and self._git_ignores(path, []):
            return True
        return respect_gemini and self._gemini.ignores(path)

    def filter(
        self, paths: list[str], *, respect_git: bool = True, respect_gemini: bool = True
    ) -> tuple[list[str], int]:
        """filterFilesWithReport: the paths kept, and how many were ignored."""
        kept = [
            path
            for path in paths
            if not self.ignored(path, respect_git=respect_git, respect_gemini=respect_gemini)
        ]
        return kept, len(paths) - len(kept)

    def ignore_file_paths(self) -> list[str]:
        """The .geminiignore files in use (for ripgrep's --ignore-file), workspace-relative."""
        return [GEMINI_IGNORE] if self.ws.is_file(GEMINI_IGNORE) else []
