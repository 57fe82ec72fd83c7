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


def _tool_path(workspace: Path, user_path: str | None):
    """The agent's tools and the file endpoints share one confinement rule: the tools' resolve."""
    from chat.agent.tools.base import ToolContext
    from chat.agent.tools.paths import PathRefused, resolve

    raw = "" if user_path is None else str(user_path).strip()
    try:
        return resolve(ToolContext(workspace=Path(workspace), session_id=""), raw)
    except PathRefused as exc:
        raise WorkspacePathError(str(exc)) from exc


def workspace_resolve(workspace: Path, user_path: str | None) -> Path:
    """The host path for `user_path` (relative, or under /workspace), refusing any way out.

    Symlinks are resolved before the check, so a link planted inside the workspace that points
    elsewhere (`/`, a sibling session) is refused rather than followed. For a path that does not
    exist yet, its nearest existing parent is what gets checked.
    """
    return _tool_path(workspace, user_path).host


def workspace_display(workspace: Path, host_path: Path) -> str:
    """The path as users and the model see it: under /workspace, never the host's."""
    root = Path(os.path.realpath(workspace))
    try:
        relative = Path(host_path).relative_to(root)
    except ValueError:
        relative = Path(os.path.realpath(host_path)).relative_to(root)
    text = relative.as_posix()
    return WORKSPACE_MOUNT if text in ("", ".") else f"{WORKSPACE_MOUNT}/{text}"


def workspace_resolve_entry(workspace: Path, user_path: str | None) -> Path:
    """Like workspace_resolve, but a symlink in the last component is the link itself.

    For removing an entry: deleting a link must remove the link (which is inside the workspace),
    not the file it points to, and must work for a link that points out. Its parent directory
    still has to resolve inside the workspace.
    """
    virtual = _tool_path_lexical(user_path)
    if virtual == WORKSPACE_MOUNT:
        return workspace_resolve(workspace, user_path)
    head, _, name = virtual.rpartition("/")
    return _tool_path(workspace, head).host / name


def _tool_path_lexical(user_path: str | None) -> str:
    from chat.agent.tools.paths import PathRefused, virtual_path

    try:
        return virtual_path("" if user_path is None else str(user_path).strip())
    except PathRefused as exc:
        raise WorkspacePathError(str(exc)) from exc
