"""Writes on a session's conversation: each step of a turn, clear, checkpoints, and turn control."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Role
from chat.agent.history import parts_text
from chat.models import Checkpoint, Message, MessageRole
from gemini_server.errors import Conflict, Forbidden, Gone, NotFound, ValidationFailed
from gemini_server.groups import turn_group
from gemini_server.storable import storable
from monitoring.models import AuditAction
from monitoring.services import event_record
from sessions_app.models import Session
from sessions_app.services import (
    session_touch,
    session_usage_add,
    turn_claim,
    turn_release,
    turn_running,
)

MESSAGE_MAX_CHARS = 200_000
EXCERPT_CHARS = 2000
TOOL_EXCERPT_CHARS = 1000
CONFIRM_OUTCOMES = ("proceed_once", "proceed_always", "cancel")


def message_validate(text) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValidationFailed(details={"message": ["A non-empty message is required."]})
    if len(text) > MESSAGE_MAX_CHARS:
        raise ValidationFailed(
            details={"message": [f"Messages are limited to {MESSAGE_MAX_CHARS} characters."]}
        )
    return text


def turn_begin(*, session: Session, user, text: str, ip=None):
    """Claims the session's turn and stores the user's message before the model is called.

    Raises Gone for an expired session and Conflict while another turn runs; on any failure
    after the claim, the claim is released so the session is not left locked.
    """
    if user.role == Role.VIEWER:
        raise Forbidden("Your role may not chat")
    text = message_validate(text)
    if session.is_expired:
        raise Gone("This session has expired", details={"sessionId": str(session.id)})
    turn_id = turn_claim(session=session)
    try:
        message = message_store(
            session=session, user=user, role=MessageRole.USER, parts=[{"text": text}], ip=ip
        )
        session_touch(session=session)
    except Exception:
        turn_release(session_id=session.id, turn_id=turn_id)
        raise
    return turn_id, message


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
            if usage:
                session_usage_add(
                    session_id=session.id,
                    prompt=usage.get("promptTokens") or 0,
                    completion=usage.get("completionTokens") or 0,
                    total=usage.get("totalTokens") or 0,
                )
            Session.objects.filter(pk=session.id).update(last_activity_at=timezone.now())
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


def tool_always_allow(*, session: Session, tool_name: str) -> None:
    """`proceed_always`: this tool stops asking for the rest of the session."""
    with transaction.atomic():
        locked = Session.objects.select_for_update().filter(pk=session.id).first()
        if locked is not None and tool_name not in locked.always_allowed_tools:
            locked.always_allowed_tools = [*locked.always_allowed_tools, tool_name]
            locked.save(update_fields=["always_allowed_tools"])


def history_clear(*, session: Session, actor, ip=None) -> int:
    if turn_running(session=session):
        raise Conflict("A turn is running in this session; cancel it first")
    count, _ = Message.objects.filter(session_id=session.id).delete()
    # The audit trail keeps its record of what was said; only the conversation is emptied.
    event_record(
        type="chat",
        action=AuditAction.HISTORY_CLEAR,
        user=actor,
        session_id=session.id,
        data={"deleted": count},
        ip=ip,
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
    )
    return checkpoint


def checkpoint_load(*, session: Session, tag: str, actor, ip=None) -> int:
    """Replaces the history with the snapshot `tag`; what the model sees next turn is that snapshot."""
    if turn_running(session=session):
        raise Conflict("A turn is running in this session; cancel it first")
    checkpoint = Checkpoint.objects.filter(session=session, tag=tag).first()
    if checkpoint is None:
        raise NotFound("No checkpoint with that tag", details={"tag": tag})
    with transaction.atomic():
        Message.objects.filter(session_id=session.id).delete()
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
    )
    return len(checkpoint.history)


def pending_call(*, session: Session, call_id: str) -> dict | None:
    """The function call `call_id` of the session's latest model answer, if it has no response yet."""
    last_model = (
        Message.objects.filter(session_id=session.id, role=MessageRole.MODEL)
        .order_by("-seq")
        .first()
    )
    if last_model is None:
        return None
    call = next(
        (
            part["functionCall"]
            for part in last_model.parts
            if part.get("functionCall", {}).get("id") == call_id
        ),
        None,
    )
    if call is None:
        return None
    responses = Message.objects.filter(
        session_id=session.id, role=MessageRole.TOOL, seq__gt=last_model.seq
    ).values_list("parts", flat=True)
    answered = {
        part["functionResponse"].get("id")
        for parts in responses
        for part in parts
        if "functionResponse" in part
    }
    return None if call_id in answered else call


def _turn_send(session: Session, message: dict) -> None:
    async_to_sync(get_channel_layer().group_send)(turn_group(session.id), message)


def turn_confirm(*, session: Session, call_id: str, outcome: str, actor) -> None:
    """Delivers a confirmation to the session's waiting turn, on whichever process runs it."""
    if outcome not in CONFIRM_OUTCOMES:
        raise ValidationFailed(
            details={"outcome": [f"Must be one of {', '.join(CONFIRM_OUTCOMES)}."]}
        )
    if not turn_running(session=session):
        raise Conflict("No turn is running in this session")
    if pending_call(session=session, call_id=call_id) is None:
        raise NotFound("No tool call with that id is waiting", details={"callId": call_id})
    _turn_send(
        session,
        {
            "type": "turn.confirm",
            "callId": call_id,
            "outcome": outcome,
            "userId": str(actor.pk),
            "userEmail": actor.email,
        },
    )


def turn_cancel(*, session: Session, actor) -> None:
    """Stops the session's running turn, on whichever process runs it.

    A claim left by a process that died (no heartbeat) is released here, freeing the session.
    """
    if session.turn_id is None:
        raise Conflict("No turn is running in this session")
    if not turn_running(session=session):
        turn_release(session_id=session.id, turn_id=session.turn_id)
        return
    _turn_send(session, {"type": "turn.cancel", "userId": str(actor.pk)})


async def tool_execute(
    *, session: Session, user, name: str, args: dict, ip=None, call_id: str | None = None
) -> dict:
    """A tool run by a user directly (REST or `tool:execute`): their request is the approval."""
    import time

    from chat.agent.events import call_id_new
    from chat.agent.tools import ToolContext, tool_lookup, tool_run
    from sessions_app.workspace import session_workspace

    if session.is_expired:
        raise Gone("This session has expired", details={"sessionId": str(session.id)})
    tool = tool_lookup(name)
    if tool is None:
        raise NotFound(f'Tool "{name}" not found', details={"name": name})
    call_id = call_id or call_id_new(tool.name)
    context = ToolContext(workspace=session_workspace(session), session_id=str(session.id))
    started = time.monotonic()
    result = await tool_run(name, args, context)
    duration = int((time.monotonic() - started) * 1000)
    status = "success" if result.ok else "error"
    text = result.output if result.ok else (result.error or "")
    await tool_call_record(
        session=session,
        user=user,
        call_id=call_id,
        name=tool.name,
        args=args,
        status=status,
        duration_ms=duration,
        text=text,
        confirmation={"outcome": "direct", "userId": str(user.pk)},
        source="user",
        ip=ip,
    )
    return {
        "callId": call_id,
        "name": tool.name,
        "status": status,
        "result": text,
        "durationMs": duration,
    }


async def tool_call_record(
    *,
    session: Session,
    user,
    call_id: str,
    name: str,
    args: dict,
    status: str,
    duration_ms: int,
    text: str,
    confirmation: dict,
    source: str,
    ip=None,
) -> None:
    """The audit record of one tool call, whether the model or a user asked for it."""
    from monitoring.services import aevent_record

    await aevent_record(
        type="tool",
        action=AuditAction.TOOL_CALL,
        user=user,
        session_id=session.id,
        data={
            "callId": call_id,
            "name": name,
            "args": args,
            "status": status,
            "durationMs": duration_ms,
            "resultExcerpt": text[:TOOL_EXCERPT_CHARS],
            "confirmation": confirmation,
            "source": source,
        },
        ip=ip,
    )
