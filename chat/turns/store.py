"""Storing a turn's steps: each written once it is whole, with its audit record."""

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from chat.agent.history import parts_text
from chat.models import Message, MessageRole
from gemini_server.storable import storable
from monitoring.models import AuditAction
from monitoring.services import event_record
from sessions_app.models import Session
from sessions_app.services import session_ttl

EXCERPT_CHARS = 2000


def message_store(
    *,
    session: Session,
    user,
    role: str,
    parts: list[dict],
    usage: dict | None = None,
    finish_reason: str = "",
    ip=None,
) -> Message | None:
    """One step of a turn, written once it is whole; recorded in the audit trail.

    Returns None if the session was deleted meanwhile (nothing to attach the step to).
    """
    usage, parts = usage or {}, storable(parts)  # a NUL from the model is kept, as text
    now = timezone.now()
    try:
        with transaction.atomic():
            message = Message.objects.create(
                session_id=session.id,
                role=role,
                parts=parts,
                text=parts_text(parts),
                prompt_tokens=usage.get("promptTokens"),
                completion_tokens=usage.get("completionTokens"),
                total_tokens=usage.get("totalTokens"),
                finish_reason=finish_reason,
            )
            # One UPDATE of the session per step: activity keeps it alive, usage adds up.
            Session.objects.filter(pk=session.id).update(
                last_activity_at=now,
                expires_at=now + session_ttl(),
                prompt_tokens=F("prompt_tokens") + (usage.get("promptTokens") or 0),
                completion_tokens=F("completion_tokens") + (usage.get("completionTokens") or 0),
                total_tokens=F("total_tokens") + (usage.get("totalTokens") or 0),
            )
    except IntegrityError:
        return None
    if role == MessageRole.TOOL:
        return message  # tool calls have their own record (tool_call_record)
    data = {
        "messageId": str(message.id),
        "text": message.text[:EXCERPT_CHARS],
        "length": len(message.text),
    }
    if role == MessageRole.MODEL:
        data |= {
            "toolCalls": [p["functionCall"].get("name") for p in parts if "functionCall" in p],
            "usage": usage,
            "finishReason": finish_reason,
            "model": session.model_name,
        }
    action = AuditAction.USER_MESSAGE if role == MessageRole.USER else AuditAction.MODEL_RESPONSE
    event_record(type="chat", action=action, user=user, session_id=session.id, data=data, ip=ip)
    return message
