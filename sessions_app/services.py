"""Writes on sessions and their workspaces: create, change, extend, delete, expire, and the turn claim."""

import errno
import logging
import os
import posixpath
import stat
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gemini_server.clock import iso_utc
from gemini_server.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from monitoring.models import AuditAction, EventType
from monitoring.services import event_record
from sessions_app.models import Session
from sessions_app.workspace import (
    WORKSPACE_MOUNT,
    ListEntry,
    PathRefused,
    Workspace,
    WorkspaceQuotaExceeded,
    not_in_workspace,
    session_workspace,
    workspace_create,
    workspace_tree_remove,
)

logger = logging.getLogger(__name__)


def session_ttl() -> timedelta:
    """How long a session lives after its last activity."""
    return timedelta(hours=settings.SESSION_TTL_HOURS)


def session_create(*, user, config: dict | None = None, ip=None) -> Session:
    """A new session with an empty workspace; no row without its directory, no directory without its row."""
    config = dict(config or {})
    title = config.pop("title", "") or ""
    config.setdefault("model", settings.GEMINI_MODEL)
    config.setdefault("approvalMode", "default")
    now = timezone.now()
    with transaction.atomic():
        session = Session.objects.create(
            user=user,
            title=title,
            config=config,
            created_at=now,
            last_activity_at=now,
            expires_at=now + session_ttl(),
        )
        event_record(
            type=EventType.SESSION,
            action=AuditAction.SESSION_CREATE,
            user=user,
            session_id=session.id,
            data={"title": title, "config": config},
            ip=ip,
            required=True,
        )
        # Last in the transaction: if the directory cannot be made, the row and its record are
        # rolled back; if they cannot be written, no directory is made.
        workspace_create(session)
    return session


def session_update(
    *,
    session: Session,
    title: str | None = None,
    config: dict | None = None,
    actor=None,
    ip=None,
) -> Session:
    """Changes the title and merges `config` into the session's; recorded with what changed."""
    fields = []
    if title is not None:
        session.title = title
        fields.append("title")
    if config is not None:
        config = dict(config)
        if "title" in config:
            session.title = config.pop("title") or ""
            fields.append("title")
        session.config = {**session.config, **config}
        fields.append("config")
    if fields:
        with transaction.atomic():
            session.save(update_fields=sorted(set(fields)))
            event_record(
                type=EventType.SESSION,
                action=AuditAction.SESSION_UPDATE,
                user=actor,
                session_id=session.id,
                data={"title": session.title, "config": config or {}},
                ip=ip,
                required=True,
            )
    return session


def session_extend(*, session: Session, actor, hours: float, ip=None) -> Session:
    """Moves the expiry `hours` past now (or past the current expiry, when that is later)."""
    base = max(session.expires_at, timezone.now())
    session.expires_at = base + timedelta(hours=hours)
    with transaction.atomic():
        session.save(update_fields=["expires_at"])
        event_record(
            type=EventType.SESSION,
            action=AuditAction.SESSION_EXTEND,
            user=actor,
            session_id=session.id,
            data={"hours": hours, "expiresAt": iso_utc(session.expires_at)},
            ip=ip,
            required=True,
        )
    return session


def session_touch(*, session: Session) -> None:
    """Activity keeps a session alive for another SESSION_TTL_HOURS."""
    now = timezone.now()
    Session.objects.filter(pk=session.pk).update(
        last_activity_at=now, expires_at=now + session_ttl()
    )
    session.last_activity_at, session.expires_at = now, now + session_ttl()


def _session_remove(session: Session) -> None:
    """Deletes the row now and the directory once that is committed."""
    session_id, workspace = session.id, session_workspace(session)
    session.delete()
    transaction.on_commit(lambda: _workspace_tree_remove(workspace))
    logger.info("Removed session %s", session_id)


def _workspace_tree_remove(workspace) -> None:
    try:
        workspace_tree_remove(workspace)
    except OSError:
        # After commit nobody can be told; what is left is an orphan directory, not a leak.
        logger.exception("Could not remove the workspace of a deleted session")


def session_delete(*, session: Session, actor, ip=None, force: bool = False) -> None:
    """Deletes the session and its workspace; refused while a turn runs, unless `force` (admin console)."""
    with transaction.atomic():
        locked = Session.objects.select_for_update().filter(pk=session.pk).first()
        if locked is None:
            raise NotFound("Session not found", details={"sessionId": str(session.pk)})
        if not force and locked.turn_is_live():
            raise Conflict(
                "A turn is running in this session; cancel it first",
                details={"sessionId": str(session.pk)},
            )
        session_id = locked.id
        _session_remove(locked)
        event_record(
            type=EventType.SESSION,
            action=AuditAction.SESSION_DELETE,
            user=actor,
            session_id=session_id,
            ip=ip,
            required=True,
        )


def session_delete_all_for_user(*, user) -> int:
    sessions = list(Session.objects.filter(user=user))
    for session in sessions:
        _session_remove(session)
    return len(sessions)


def sessions_expire(*, now=None) -> int:
    """Deletes every expired session without a live turn, with its workspace; records each."""
    now = now or timezone.now()
    expired = Session.objects.filter(expires_at__lte=now).select_related("user")
    expired = expired.filter(Session.turn_free(now))
    count = 0
    for candidate in expired:
        with transaction.atomic():
            # Checked again under a lock: the user may have extended it or started a turn since.
            session = (
                Session.objects.select_for_update(of=("self",))
                .filter(pk=candidate.pk, expires_at__lte=now)
                .select_related("user")
                .first()
            )
            if session is None or session.turn_is_live(now):
                continue
            event_record(
                type=EventType.SESSION,
                action=AuditAction.SESSION_EXPIRE,
                user=session.user,
                session_id=session.id,
                data={"expiresAt": iso_utc(session.expires_at)},
                required=True,
            )
            _session_remove(session)
        count += 1
    return count


# Workspace files, as the REST endpoints expose them. Every access goes through the workspace
# module (sessions_app.workspace); its refusals and the kernel's errors become the contract's.


def _writable(session: Session) -> None:
    """An expired session takes no more changes until it is extended (as chat answers 410)."""
    if session.is_expired:
        raise Gone(
            "This session has expired; extend it to change its files",
            details={"sessionId": str(session.id)},
        )


def _workspace(session: Session) -> Workspace:
    root = session_workspace(session)
    if not root.is_dir():
        workspace_create(session)
    return Workspace(root)


def _shown(path: str) -> str:
    """The path for a message: its /workspace form, or as sent when it is not one."""
    try:
        return Workspace.virtual(path)
    except PathRefused:
        return path


def _os_error(exc: OSError, path: str) -> ApiError:
    """The contract's answer for what the kernel said; never a 500, never a host path."""
    shown = _shown(path)
    details = {"path": path}
    code = exc.errno
    if code == errno.ENAMETOOLONG:
        return ValidationFailed(
            "File name too long", details={"path": [f"File name too long: {shown}"]}
        )
    if code == errno.ENOENT:
        return NotFound("No such file or directory in the workspace", details=details)
    if code == errno.ENOTDIR:
        return BadRequest("A parent of the path is not a directory", details=details)
    if code == errno.EISDIR:
        return BadRequest("The path names a directory, not a file", details=details)
    if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return PayloadTooLarge(f"No room for the file: {os.strerror(code)}", details=details)
    if code in (errno.ELOOP, errno.EXDEV):
        return BadRequest(not_in_workspace(shown), details=details)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Forbidden(f"Permission denied: {shown}", details=details)
    if code in (errno.ENOTEMPTY, errno.EEXIST, errno.EBUSY):
        return Conflict(f"The workspace changed meanwhile: {shown}", details=details)
    name = errno.errorcode.get(code, "") if code else ""
    reason = f"{exc.strerror or 'I/O error'}{f' ({name})' if name else ''}"
    return BadRequest(f"Cannot access {shown}: {reason}", details=details)


@contextmanager
def _file_errors(path: str):
    try:
        yield
    except PathRefused as exc:
        raise BadRequest(str(exc), details={"path": path}) from exc
    except WorkspaceQuotaExceeded as exc:
        raise PayloadTooLarge(
            str(exc),
            details={"path": path, "usedBytes": exc.used, "limitBytes": exc.limit},
        ) from exc
    except OSError as exc:
        raise _os_error(exc, path) from exc


def _modified_at(info: os.stat_result) -> str:
    return iso_utc(datetime.fromtimestamp(info.st_mtime, tz=UTC))


def _entry(name: str, virtual: str, info: os.stat_result) -> dict:
    is_dir = stat.S_ISDIR(info.st_mode)
    return {
        "name": name,
        "path": virtual,
        "type": "directory" if is_dir else "file",
        "size": 0 if is_dir else info.st_size,
        "modifiedAt": _modified_at(info),
    }


def workspace_listing(*, session: Session, path: str | None) -> dict:
    """A directory's entries; links are not listed (the API shows only what it can serve)."""
    path = (path or "").strip()
    workspace = _workspace(session)
    with _file_errors(path):
        shown = workspace.virtual(path)
        listed = workspace.listdir(path)
    entries: list[ListEntry] = sorted(
        (entry for entry in listed if entry.link is None),
        key=lambda entry: (not entry.is_dir, entry.name.lower()),
    )
    return {
        "path": shown,
        "entries": [_entry(entry.name, f"{shown}/{entry.name}", entry.lstat) for entry in entries],
    }


def workspace_file_open(*, session: Session, path: str | None) -> tuple[BinaryIO, str]:
    """The file open for reading (the caller closes it) and its name, for a download."""
    path = (path or "").strip()
    workspace = _workspace(session)
    with _file_errors(path):
        shown = workspace.virtual(path)
        fd, info = workspace.open_file(path)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NotFound("No such file in the workspace", details={"path": path})
    return os.fdopen(fd, "rb"), posixpath.basename(shown)


def workspace_file_write(
    *, session: Session, path: str | None, content: bytes, actor, ip=None
) -> dict:
    if len(content) > settings.UPLOAD_MAX_BYTES:
        raise PayloadTooLarge(
            f"Files over {settings.UPLOAD_MAX_BYTES} bytes are refused",
            details={"size": len(content)},
        )
    _writable(session)
    path = (path or "").strip()
    workspace = _workspace(session)
    with _file_errors(path):
        shown = workspace.virtual(path)
        if shown == WORKSPACE_MOUNT:
            raise BadRequest("The path names a directory, not a file", details={"path": path})
        # Written beside the file and renamed into place: a reader never sees half a file.
        outcome = workspace.write_bytes(path, content)
    session_touch(session=session)
    entry = _entry(posixpath.basename(shown), shown, outcome.stat)
    event_record(
        type=EventType.SESSION,
        action=AuditAction.FILE_UPLOAD,
        user=actor,
        session_id=session.id,
        data={"path": shown, "size": len(content), "created": outcome.created},
        ip=ip,
    )
    return {**entry, "created": outcome.created}


def workspace_file_delete(*, session: Session, path: str | None, actor, ip=None) -> None:
    """Removes a file or a directory tree; a symlink is removed itself, never what it points to."""
    _writable(session)
    path = (path or "").strip()
    workspace = _workspace(session)
    with _file_errors(path):
        shown = workspace.virtual(path)
        if shown == WORKSPACE_MOUNT:
            raise BadRequest("The workspace itself cannot be deleted", details={"path": path})
        workspace.remove(path)
    event_record(
        type=EventType.SESSION,
        action=AuditAction.FILE_DELETE,
        user=actor,
        session_id=session.id,
        data={"path": shown},
        ip=ip,
    )
