"""Writes on sessions and their workspaces: create, change, extend, delete, expire, and the turn claim."""

import logging
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from gemini_server.clock import iso_utc
from gemini_server.errors import BadRequest, Conflict, Gone, NotFound, PayloadTooLarge
from monitoring.models import AuditAction, EventType
from monitoring.services import event_record
from sessions_app.models import Session
from sessions_app.workspace import (
    WorkspacePathError,
    session_workspace,
    workspace_create,
    workspace_display,
    workspace_resolve,
    workspace_resolve_entry,
)

logger = logging.getLogger(__name__)

# A turn whose process stopped beating for this long is considered dead and can be replaced.
TURN_STALE_AFTER = timedelta(seconds=90)


def _ttl() -> timedelta:
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
            expires_at=now + _ttl(),
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
    Session.objects.filter(pk=session.pk).update(last_activity_at=now, expires_at=now + _ttl())
    session.last_activity_at, session.expires_at = now, now + _ttl()


def session_usage_add(*, session_id, prompt: int, completion: int, total: int) -> None:
    Session.objects.filter(pk=session_id).update(
        prompt_tokens=F("prompt_tokens") + prompt,
        completion_tokens=F("completion_tokens") + completion,
        total_tokens=F("total_tokens") + total,
    )


def _session_remove(session: Session) -> None:
    """Deletes the row now and the directory once that is committed."""
    session_id, workspace = session.id, session_workspace(session)
    session.delete()
    transaction.on_commit(lambda: shutil.rmtree(workspace, ignore_errors=True))
    logger.info("Removed session %s", session_id)


def turn_running(*, session: Session, now=None) -> bool:
    """A turn holds the session: claimed and still beating (a dead process's claim does not count)."""
    if session.turn_id is None:
        return False
    now = now or timezone.now()
    beat = session.turn_heartbeat_at
    return beat is None or beat >= now - TURN_STALE_AFTER


def session_delete(*, session: Session, actor, ip=None, force: bool = False) -> None:
    """Deletes the session and its workspace; refused while a turn runs, unless `force` (admin console)."""
    with transaction.atomic():
        locked = Session.objects.select_for_update().filter(pk=session.pk).first()
        if locked is None:
            raise NotFound("Session not found", details={"sessionId": str(session.pk)})
        if not force and turn_running(session=locked):
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
    expired = expired.filter(
        Q(turn_id__isnull=True) | Q(turn_heartbeat_at__lt=now - TURN_STALE_AFTER)
    )
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
            if session is None or turn_running(session=session, now=now):
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


def turn_claim(*, session: Session) -> uuid.UUID:
    """Claims the session's one turn slot, on any process, or raises Conflict (409)."""
    now = timezone.now()
    turn_id = uuid.uuid4()
    claimed = (
        Session.objects.filter(pk=session.pk)
        .filter(Q(turn_id__isnull=True) | Q(turn_heartbeat_at__lt=now - TURN_STALE_AFTER))
        .update(turn_id=turn_id, turn_heartbeat_at=now)
    )
    if not claimed:
        raise Conflict(
            "A turn is already running in this session", details={"sessionId": str(session.id)}
        )
    session.turn_id, session.turn_heartbeat_at = turn_id, now
    return turn_id


def turn_heartbeat(*, session_id, turn_id) -> None:
    Session.objects.filter(pk=session_id, turn_id=turn_id).update(turn_heartbeat_at=timezone.now())


def turn_release(*, session_id, turn_id) -> None:
    Session.objects.filter(pk=session_id, turn_id=turn_id).update(
        turn_id=None, turn_heartbeat_at=None
    )


# Workspace files, as the REST endpoints expose them.


def _writable(session: Session) -> None:
    """An expired session takes no more changes until it is extended (as chat answers 410)."""
    if session.is_expired:
        raise Gone(
            "This session has expired; extend it to change its files",
            details={"sessionId": str(session.id)},
        )


def _resolved(session: Session, path: str | None, *, entry: bool = False) -> tuple[Path, Path]:
    workspace = session_workspace(session)
    if not workspace.is_dir():
        workspace_create(session)
    resolve = workspace_resolve_entry if entry else workspace_resolve
    try:
        return workspace, resolve(workspace, path)
    except WorkspacePathError as exc:
        raise BadRequest(str(exc), details={"path": path}) from exc


def _entry(workspace: Path, host_path: Path) -> dict:
    stat = host_path.stat()
    return {
        "name": host_path.name or "workspace",
        "path": workspace_display(workspace, host_path),
        "type": "directory" if host_path.is_dir() else "file",
        "size": 0 if host_path.is_dir() else stat.st_size,
        "modifiedAt": iso_utc(datetime.fromtimestamp(stat.st_mtime, tz=UTC)),
    }


def workspace_listing(*, session: Session, path: str | None) -> dict:
    workspace, target = _resolved(session, path)
    if not target.exists():
        raise NotFound("No such directory in the workspace", details={"path": path})
    if not target.is_dir():
        raise BadRequest("Not a directory", details={"path": path})
    entries = sorted(target.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower()))
    return {
        "path": workspace_display(workspace, target),
        "entries": [_entry(workspace, entry) for entry in entries if not entry.is_symlink()],
    }


def workspace_file_for_download(*, session: Session, path: str | None) -> Path:
    _, target = _resolved(session, path)
    if not target.is_file():
        raise NotFound("No such file in the workspace", details={"path": path})
    return target


def workspace_file_write(
    *, session: Session, path: str | None, content: bytes, actor, ip=None
) -> dict:
    if len(content) > settings.UPLOAD_MAX_BYTES:
        raise PayloadTooLarge(
            f"Files over {settings.UPLOAD_MAX_BYTES} bytes are refused",
            details={"size": len(content)},
        )
    _writable(session)
    workspace, target = _resolved(session, path)
    if target == Path(workspace).resolve() or target.is_dir():
        raise BadRequest("The path names a directory, not a file", details={"path": path})
    created = not target.exists()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise BadRequest("A parent of the path is a file", details={"path": path}) from exc
    # Write then rename: a reader never sees half a file.
    partial = target.with_name(f".{target.name}.upload-{uuid.uuid4().hex}")
    try:
        partial.write_bytes(content)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    session_touch(session=session)
    entry = _entry(workspace, target)
    event_record(
        type=EventType.SESSION,
        action=AuditAction.FILE_UPLOAD,
        user=actor,
        session_id=session.id,
        data={"path": entry["path"], "size": len(content), "created": created},
        ip=ip,
    )
    return {**entry, "created": created}


def workspace_file_delete(*, session: Session, path: str | None, actor, ip=None) -> None:
    """Removes a file or a directory tree; a symlink is removed itself, never what it points to."""
    _writable(session)
    workspace, target = _resolved(session, path, entry=True)
    if target == Path(workspace).resolve():
        raise BadRequest("The workspace itself cannot be deleted", details={"path": path})
    if not target.exists() and not target.is_symlink():
        raise NotFound("No such file in the workspace", details={"path": path})
    display = workspace_display(workspace, target)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    else:
        target.unlink()
    event_record(
        type=EventType.SESSION,
        action=AuditAction.FILE_DELETE,
        user=actor,
        session_id=session.id,
        data={"path": display},
        ip=ip,
    )
