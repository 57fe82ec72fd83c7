"""Writes on a session's conversation: each step of a turn, clear, checkpoints, and turn control."""

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chat.agent.history import parts_text
from chat.models import Checkpoint, Message
from gemini_server.errors import Conflict, NotFound
from monitoring.models import AuditAction
from monitoring.services import event_record
from sessions_app.models import Session

MESSAGE_MAX_CHARS = 200_000
EXCERPT_CHARS = 2000
TOOL_EXCERPT_CHARS = 1000
CONFIRM_OUTCOMES = ("proceed_once", "proceed_always", "cancel")


def history_clear(*, session: Session, actor, ip=None) -> int:
    if session.turn_is_live():
        raise Conflict("A turn is running in this session; cancel it first")
    with transaction.atomic():
        count, _ = Message.objects.filter(session_id=session.id).delete()
        Session.objects.filter(pk=session.id).update(
            history_epoch=F("history_epoch") + 1, message_count=0
        )
        # The audit trail keeps its record of what was said; only the conversation is emptied.
        event_record(
            type="chat",
            action=AuditAction.HISTORY_CLEAR,
            user=actor,
            session_id=session.id,
            data={"deleted": count},
            ip=ip,
            required=True,
        )
    return count


def _snapshot(session: Session) -> list[dict]:
    return [
        {
            "role": message.role,
            "parts": message.parts,
            "createdAt": message.created_at.isoformat(),
            "usage": {
                "promptTokens": message.prompt_tokens,
                "completionTokens": message.completion_tokens,
                "totalTokens": message.total_tokens,
            },
            "finishReason": message.finish_reason,
        }
        for message in Message.objects.filter(session_id=session.id).order_by("seq")
    ]


def checkpoint_save(*, session: Session, tag: str, actor, ip=None) -> Checkpoint:
    """Saves the history under `tag`, replacing an older snapshot of the same name."""
    with transaction.atomic():
        checkpoint, _ = Checkpoint.objects.update_or_create(
            session=session,
            tag=tag,
            defaults={"history": _snapshot(session), "created_at": timezone.now()},
        )
        event_record(
            type="chat",
            action=AuditAction.CHECKPOINT_SAVE,
            user=actor,
            session_id=session.id,
            data={"tag": tag, "messages": len(checkpoint.history)},
            ip=ip,
            required=True,
        )
    return checkpoint


def checkpoint_load(*, session: Session, tag: str, actor, ip=None) -> int:
    """Replaces the history with the snapshot `tag`; what the model sees next turn is that snapshot."""
    if session.turn_is_live():
        raise Conflict("A turn is running in this session; cancel it first")
    checkpoint = Checkpoint.objects.filter(session=session, tag=tag).first()
    if checkpoint is None:
        raise NotFound("No checkpoint with that tag", details={"tag": tag})
    with transaction.atomic():
        Message.objects.filter(session_id=session.id).delete()
        Session.objects.filter(pk=session.id).update(
            history_epoch=F("history_epoch") + 1, message_count=len(checkpoint.history)
        )
        Message.objects.bulk_create(
            Message(
                session_id=session.id,
                role=item["role"],
                parts=item["parts"],
                text=parts_text(item["parts"]),
                prompt_tokens=(item.get("usage") or {}).get("promptTokens"),
                completion_tokens=(item.get("usage") or {}).get("completionTokens"),
                total_tokens=(item.get("usage") or {}).get("totalTokens"),
                finish_reason=item.get("finishReason", ""),
            )
            for item in checkpoint.history
        )
        event_record(
            type="chat",
            action=AuditAction.CHECKPOINT_LOAD,
            user=actor,
            session_id=session.id,
            data={"tag": tag, "messages": len(checkpoint.history)},
            ip=ip,
            required=True,
        )
    return len(checkpoint.history)
