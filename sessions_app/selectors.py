"""Reads of sessions: who may see which, listings, and the one JSON form of a session."""

from accounts.models import Role
from gemini_server.clock import iso_utc
from gemini_server.errors import NotFound, ValidationFailed
from sessions_app.models import Session
from sessions_app.workspace import WORKSPACE_MOUNT


def session_get(*, session_id, user, write: bool = False) -> Session:
    """The session if `user` may reach it, else NotFound: owners always, admins for reading.

    Another user's session is 404, never 403, so its existence does not leak.
    """
    session = Session.objects.filter(pk=session_id).first() if _is_uuid(session_id) else None
    if session is None:
        raise NotFound("Session not found", details={"sessionId": str(session_id)})
    if session.user_id == user.pk:
        session.user = user  # known already: no join, no second query
        return session
    if not write and user.role == Role.ADMIN:
        return session
    raise NotFound("Session not found", details={"sessionId": str(session_id)})


def _is_uuid(value) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def session_list(*, user, user_id=None):
    """The caller's sessions, newest activity first; an admin may ask for another user's."""
    owner = user.pk
    if user_id and user.role == Role.ADMIN:
        if not _is_uuid(user_id):
            raise ValidationFailed(details={"userId": ["Must be a user id (a UUID)."]})
        owner = user_id
    return Session.objects.filter(user_id=owner)


def session_to_dict(session: Session) -> dict:
    return {
        "id": str(session.id),
        "userId": str(session.user_id),
        "title": session.title,
        "config": session.config,
        "workspaceDir": WORKSPACE_MOUNT,
        "status": session.status,
        "createdAt": iso_utc(session.created_at),
        "lastActivityAt": iso_utc(session.last_activity_at),
        "expiresAt": iso_utc(session.expires_at),
        "messageCount": session.message_count,
        "usage": {
            "promptTokens": session.prompt_tokens,
            "completionTokens": session.completion_tokens,
            "totalTokens": session.total_tokens,
        },
    }
