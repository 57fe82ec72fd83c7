"""Storing a turn's steps: each written once it is whole, with its audit record."""

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from chat.agent.history import parts_text
from chat.models import Message, MessageRole
from gemini_server.request_id import request_id_current
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
                message_count=F("message_count") + 1,
                prompt_tokens=F("prompt_tokens") + (usage.get("promptTokens") or 0),
                completion_tokens=F("completion_tokens") + (usage.get("completionTokens") or 0),
                total_tokens=F("total_tokens") + (usage.get("totalTokens") or 0),
            )
            # The step and its audit row commit together (tool calls have their own record).
            if role != MessageRole.TOOL:
                event_record(
                    type="chat",
                    action=AuditAction.USER_MESSAGE
                    if role == MessageRole.USER
                    else AuditAction.MODEL_RESPONSE,
                    user=user,
                    session_id=session.id,
                    data=_audit_data(message, session=session, usage=usage, finish=finish_reason),
                    ip=ip,
                    required=True,
                )
    except IntegrityError:
        return None
    return message


def _audit_data(message: Message, *, session: Session, usage: dict, finish: str) -> dict:
    data = {
        "messageId": str(message.id),
        "text": message.text[:EXCERPT_CHARS],
        "length": len(message.text),
    }
    if message.role == MessageRole.MODEL:
        data |= {
            "toolCalls": [
                part["functionCall"].get("name") for part in message.parts if "functionCall" in part
            ],
            "usage": usage,
            "finishReason": finish,
            "model": session.model_name,
        }
    if request_id := request_id_current():
        data["requestId"] = request_id
    return data
