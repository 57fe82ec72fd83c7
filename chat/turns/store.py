"""Storing a turn's steps: each written once it is whole, with its audit record.

A model answer that streams for longer than a second is also kept while it streams, as a draft
(finish reason STREAMING) that its turn updates at most once a second and finalizes at the end;
a shorter answer is written once, as before. A draft whose turn died stays STREAMING until the
session is next claimed or its server restarts, when `turn_interrupted_close` marks it
INTERRUPTED and answers its function calls.
"""

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from chat.agent.history import INTERRUPTED, parts_text
from chat.models import FINISH_INTERRUPTED, FINISH_STREAMING, Message, MessageRole
from gemini_server.columns import Columns, rows_insert
from gemini_server.request_id import request_id_current
from gemini_server.storable import storable
from monitoring.models import AuditAction
from monitoring.services import event_build, event_record, events_write
from sessions_app.models import Session
from sessions_app.services import session_ttl

EXCERPT_CHARS = 2000


@dataclass(frozen=True)
class StepWrite:
    """One whole step of a turn to store; a model answer also has its usage, finish reason and
    the draft it was kept in while it streamed."""

    role: str
    parts: list[dict]
    usage: dict | None = None
    finish_reason: str = ""
    draft_id: int | None = None


def message_store(*, session: Session, user, ip=None, **step) -> Message | None:
    """One step of a turn, written once it is whole (see `steps_store`)."""
    stored = steps_store(session=session, user=user, steps=[StepWrite(**step)], ip=ip)
    return stored[0] if stored else None


def steps_store(
    *, session: Session, user, steps: list[StepWrite], ip=None, release=None
) -> list[Message] | None:
    """Steps of a turn, in order, each over its draft if it had one, with their audit rows and
    one update of the session: one transaction (the caller's, when it has one open). With
    `release` (a turn's id), that update also frees the session's slot if that turn holds it.

    Returns None if the session was deleted meanwhile (nothing to attach the steps to).
    """
    now = timezone.now()
    messages, new, events = [], [], []
    totals = {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0}
    try:
        # No savepoint inside a caller's transaction: a failure fails the caller's whole work.
        with transaction.atomic(savepoint=False):
            for step in steps:
                usage, parts = step.usage or {}, storable(step.parts)  # a NUL is kept, as text
                fields = {
                    "parts": parts,
                    "text": parts_text(parts),
                    "prompt_tokens": usage.get("promptTokens"),
                    "completion_tokens": usage.get("completionTokens"),
                    "total_tokens": usage.get("totalTokens"),
                    "finish_reason": step.finish_reason,
                }
                if step.draft_id is not None:
                    # The answer was kept as a draft while it streamed: it becomes the step.
                    Message.objects.filter(pk=step.draft_id).update(**fields)
                    message = Message.objects.filter(pk=step.draft_id).first()
                    if message is None:
                        return None
                else:
                    # Inserted together below, after any draft's update: a draft is written only
                    # once the steps before it are stored, so no new row belongs before it.
                    message = Message(session_id=session.id, role=step.role, **fields)
                    new.append(message)
                messages.append(message)
                for key in totals:
                    totals[key] += usage.get(key) or 0
            rows_insert(new)
            _session_update(session.id, now=now, steps=len(steps), totals=totals, release=release)
            # The steps and their audit rows commit together (tool calls have their own record).
            for step, message in zip(steps, messages, strict=True):
                if step.role != MessageRole.TOOL:
                    events.append(
                        event_build(
                            type="chat",
                            action=AuditAction.USER_MESSAGE
                            if step.role == MessageRole.USER
                            else AuditAction.MODEL_RESPONSE,
                            user=user,
                            session_id=session.id,
                            data=_audit_data(
                                message,
                                session=session,
                                usage=step.usage or {},
                                finish=step.finish_reason,
                            ),
                            ip=ip,
                        )
                    )
            events_write([event for event in events if event is not None])
    except IntegrityError:
        return None
    return messages


def _session_update(session_id, *, now, steps: int, totals: dict, release) -> None:
    """One UPDATE of the session for stored steps: activity keeps it alive, usage adds up, and
    with `release` the slot is freed if that turn still holds it (a takeover may have given it to
    another). Written from the model's columns rather than through F() and Case expressions,
    whose building cost more CPU than the statement's own round trip (counted with callgrind).
    """
    columns = Columns(Session)
    assignments = [f"{columns['last_activity_at']} = %s", f"{columns['expires_at']} = %s"]
    params = [
        columns.value("last_activity_at", now),
        columns.value("expires_at", now + session_ttl()),
    ]
    for name, added in (
        ("message_count", steps),
        ("prompt_tokens", totals["promptTokens"]),
        ("completion_tokens", totals["completionTokens"]),
        ("total_tokens", totals["totalTokens"]),
    ):
        assignments.append(f"{columns[name]} = {columns[name]} + %s")
        params.append(added)
    if release is not None:
        held = columns.value("turn_id", release)
        # Every SET expression reads the row as it was, so each asks who held the slot before.
        for name, free in Session.SLOT_FREE.items():
            assignments.append(
                f"{columns[name]} = CASE WHEN {columns['turn_id']} = %s THEN %s "
                f"ELSE {columns[name]} END"
            )
            params.extend([held, columns.value(name, free)])
    sql = f"UPDATE {columns.table} SET {', '.join(assignments)} WHERE {columns['id']} = %s"
    with columns.connection.cursor() as cursor:
        cursor.execute(sql, [*params, columns.value("id", session_id)])


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


def _answer_record(*, session: Session, user, message: Message, usage: dict, ip=None) -> None:
    """The audit record of an answer finalized outside message_store (a turn that died)."""
    action = (
        AuditAction.USER_MESSAGE if message.role == MessageRole.USER else AuditAction.MODEL_RESPONSE
    )
    event_record(
        type="chat",
        action=action,
        user=user,
        session_id=session.id,
        data=_audit_data(message, session=session, usage=usage, finish=message.finish_reason),
        ip=ip,
    )


def message_draft_save(*, session_id, draft_id: int | None, parts: list[dict]) -> int | None:
    """The streaming answer so far: inserted the first time, then updated; its primary key.

    One statement, no audit (the finished answer is audited), no session update. None when the
    session is gone. Written by hand (`rows_insert`, an UPDATE from the model's columns): every
    answer that streams for long writes one a second, a thousand a second under a thousand
    streams, and the ORM's save and update cost several times the statement's own round trip.
    """
    parts = storable(parts)
    text = parts_text(parts)
    if draft_id is not None:
        columns = Columns(Message)
        with columns.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {columns.table} SET {columns['parts']} = %s, {columns['text']} = %s "
                f"WHERE {columns['seq']} = %s",
                [
                    columns.value("parts", parts),
                    columns.value("text", text),
                    columns.value("seq", draft_id),
                ],
            )
        return draft_id
    draft = Message(
        session_id=session_id,
        role=MessageRole.MODEL,
        parts=parts,
        text=text,
        finish_reason=FINISH_STREAMING,
    )
    try:
        rows_insert([draft])
    except IntegrityError:
        return None
    return draft.pk


def turn_interrupted_close(*, session_id) -> bool:
    """Marks the session's last turn as cut off, if it was: for a turn whose server died.

    The last model answer of that turn (after the latest user message) becomes INTERRUPTED if it
    was still streaming or has function calls without a response, and each such call gets an
    error response, so the stored history reads as it happened and stays valid for the model.
    Returns whether anything was changed.
    """
    with transaction.atomic():
        # One repair at a time per session (a takeover and a startup sweep may meet here).
        session = (
            Session.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(pk=session_id)
            .first()
        )
        if session is None:
            return False
        steps = list(Message.objects.filter(session_id=session_id).order_by("-seq")[:200])
        turn = []
        for step in steps:
            if step.role == MessageRole.USER:
                break
            turn.append(step)
        answers = [step for step in turn if step.role == MessageRole.MODEL]
        if not answers:
            return False
        last = answers[0]
        answered = {
            part["functionResponse"].get("id")
            for step in turn
            if step.role == MessageRole.TOOL and step.seq > last.seq
            for part in step.parts
            if "functionResponse" in part
        }
        dangling = [
            part["functionCall"]
            for part in last.parts
            if "functionCall" in part and part["functionCall"].get("id") not in answered
        ]
        if last.finish_reason != FINISH_STREAMING and not dangling:
            return False
        Message.objects.filter(pk=last.pk).update(finish_reason=FINISH_INTERRUPTED)
        # A draft was not counted yet (finalizing counts it), nor is the repair's response.
        counted = (last.finish_reason == FINISH_STREAMING) + bool(dangling)
        Session.objects.filter(pk=session_id).update(message_count=F("message_count") + counted)
        if dangling:
            Message.objects.create(
                session_id=session_id,
                role=MessageRole.TOOL,
                parts=[
                    {
                        "functionResponse": {
                            "id": call.get("id"),
                            "name": call.get("name", ""),
                            "response": {"error": INTERRUPTED},
                        }
                    }
                    for call in dangling
                ],
            )
        if last.finish_reason == FINISH_STREAMING:
            # The answer was never audited while it streamed; it is, now that it is final.
            last.finish_reason = FINISH_INTERRUPTED
            _answer_record(session=session, user=session.user, message=last, usage={})
    return True
