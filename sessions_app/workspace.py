"""Where a session's files live on the host, and the one rule that keeps every path inside them."""

import os
import shutil
from pathlib import Path

from django.conf import settings

WORKSPACE_MOUNT = "/workspace"


class WorkspacePathError(ValueError):
    """A path that would leave the workspace, or cannot be a path at all."""


def session_workspace(session) -> Path:
    return Path(settings.WORKSPACES_ROOT) / str(session.user_id) / str(session.id)


def workspace_create(session) -> Path:
    path = session_workspace(session)
    path.mkdir(parents=True, exist_ok=True)
    return path


def workspace_remove(session) -> None:
    shutil.rmtree(session_workspace(session), ignore_errors=True)


def workspace_resolve(workspace: Path, user_path: str | None) -> Path:
    """The host path for `user_path` (relative, or under /workspace), refusing any way out.

    Symlinks are resolved before the check, so a link planted inside the workspace that points
    elsewhere (`/`, a sibling session) is refused rather than followed. For a path that does not
    exist yet, its nearest existing parent is what gets checked.
    """
    raw = "" if user_path is None else str(user_path)
    if "\x00" in raw:
        raise WorkspacePathError("Path contains a NUL byte.")
    raw = raw.strip()
    if raw == WORKSPACE_MOUNT or raw.startswith(WORKSPACE_MOUNT + "/"):
        raw = raw[len(WORKSPACE_MOUNT) :].lstrip("/")
    elif os.path.isabs(raw):
        raise WorkspacePathError(
            f"Path must be within the workspace ({WORKSPACE_MOUNT}): {user_path}"
        )
    root = Path(os.path.realpath(workspace))
    candidate = Path(os.path.realpath(root / raw)) if raw not in ("", ".") else root
    if candidate != root and root not in candidate.parents:
        raise WorkspacePathError(
            f"Path must be within the workspace ({WORKSPACE_MOUNT}): {user_path}"
        )
    return candidate


def workspace_display(workspace: Path, host_path: Path) -> str:
    """The path as users and the model see it: under /workspace, never the host's."""
    root = Path(os.path.realpath(workspace))
    try:
        relative = Path(host_path).relative_to(root)
    except ValueError:
        relative = Path(os.path.realpath(host_path)).relative_to(root)
    text = relative.as_posix()
    return WORKSPACE_MOUNT if text in ("", ".") else f"{WORKSPACE_MOUNT}/{text}"
