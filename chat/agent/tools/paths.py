"""Resolve paths given by the model or a client to host paths inside a session workspace."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from .base import WORKSPACE_ROOT, ToolContext


class PathRefused(Exception):
    """The path is unusable or leads outside the workspace; str(exc) is the text for the model."""


@dataclass(frozen=True)
class WorkspacePath:
    host: Path  # fully resolved (symlinks followed) host path, inside the workspace
    virtual: str  # what the model sees: /workspace or /workspace/...
    relative: str  # "" for the workspace root, else "a/b.txt"


def not_in_workspace(shown: str) -> str:
    return (
        f'Path not in workspace: Attempted path "{shown}" resolves outside the allowed '
        f"workspace directories: {WORKSPACE_ROOT}"
    )


def workspace_root(ctx: ToolContext) -> str:
    return os.path.realpath(ctx.workspace)


def is_inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def virtual_path(raw: str) -> str:
    """Lexically normalise a path to its /workspace form, without touching the disk."""
    if "\x00" in raw:
        raise PathRefused("Path contains a NUL byte, which is not allowed in file paths.")
    joined = raw if raw.startswith("/") else posixpath.join(WORKSPACE_ROOT, raw)
    # normpath keeps a leading "//" (POSIX allows it to mean something else), so fold it.
    normalized = "/" + posixpath.normpath(joined).lstrip("/")
    if not is_inside(normalized, WORKSPACE_ROOT):
        raise PathRefused(not_in_workspace(normalized))
    return normalized


def resolve(ctx: ToolContext, raw: str) -> WorkspacePath:
    """Resolve raw (relative, or under /workspace) following symlinks; refuse anything outside.

    os.path.realpath follows every symlink that exists on the way and keeps missing tail
    components as they are, so a file that does not exist yet is judged by its nearest
    existing parent. The shown path is the lexical one: the real target may be a host path.
    """
    virtual = virtual_path(raw)
    root = workspace_root(ctx)
    relative = virtual[len(WORKSPACE_ROOT) :].lstrip("/")
    host = os.path.realpath(os.path.join(root, relative)) if relative else root
    if not is_inside(host, root):
        raise PathRefused(not_in_workspace(virtual))
    return WorkspacePath(host=Path(host), virtual=virtual, relative=relative)


def virtual_of_host(ctx: ToolContext, host: str | Path) -> str:
    """The /workspace form of a host path already known to be inside the workspace."""
    relative = os.path.relpath(os.fspath(host), workspace_root(ctx))
    if relative == ".":
        return WORKSPACE_ROOT
    return f"{WORKSPACE_ROOT}/{relative}"


def host_is_contained(ctx: ToolContext, host: str | Path) -> bool:
    """True when host, with its symlinks followed, stays inside the workspace."""
    return is_inside(os.path.realpath(host), workspace_root(ctx))
