"""Reads of the audit trail: the one JSON form of an event, and the filtered queries."""

from django.db.models import BigIntegerField, Count, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from gemini_server.clock import iso_utc
from monitoring.models import AuditAction, Event, EventType


def event_to_dict(event: Event) -> dict:
    return {
        "id": str(event.uuid),
        "type": event.type,
        "action": event.action,
        "userId": str(event.user_id) if event.user_id else None,
        "userEmail": event.user_email or None,
        "sessionId": str(event.session_id) if event.session_id else None,
        "data": event.data,
        "ip": event.ip,
        "createdAt": iso_utc(event.created_at),
    }


def event_list(
    *,
    types: list[str] | None = None,
    user_id=None,
    session_id=None,
    since=None,
    before=None,
    before_seq: int | None = None,
    after_seq: int | None = None,
):
    """Events newest first, narrowed by every filter given."""
    events = Event.objects.all()
    if types:
        events = events.filter(type__in=types)
    if user_id:
        events = events.filter(user_id=user_id)
    if session_id:
        events = events.filter(session_id=session_id)
    if since:
        events = events.filter(created_at__gte=since)
    if before:
        events = events.filter(created_at__lt=before)
    if before_seq is not None:
        events = events.filter(seq__lt=before_seq)
    if after_seq is not None:
        events = events.filter(seq__gt=after_seq)
    return events.order_by("-seq")


def event_seq_of(event_id) -> int | None:
    return Event.objects.filter(uuid=event_id).values_list("seq", flat=True).first()


def event_stats() -> dict:
    """Counts per type and per user, and tokens per user, over the whole trail."""
    per_type = dict(Event.objects.values_list("type").annotate(n=Count("seq")).order_by())
    per_user = []
    rows = (
        Event.objects.exclude(user__isnull=True)
        .values("user_id", "user_email")
        .annotate(
            events=Count("seq"),
            chat=Count("seq", filter=Q(type="chat")),
            tool=Count("seq", filter=Q(type="tool")),
            errors=Count("seq", filter=Q(type="error")),
        )
        .order_by("-events")
    )
    for row in rows:
        per_user.append(
            {
                "userId": str(row["user_id"]),
                "userEmail": row["user_email"],
                "events": row["events"],
                "chat": row["chat"],
                "tool": row["tool"],
                "errors": row["errors"],
            }
        )
    return {"perType": per_type, "perUser": per_user}


def _token_sum(field: str) -> Sum:
    return Sum(Cast(KT(f"data__usage__{field}"), BigIntegerField()))


def tokens_by_user() -> list[dict]:
    """Token use per user, summed over the model answers recorded in the trail."""
    rows = (
        Event.objects.filter(
            type=EventType.CHAT, action=AuditAction.MODEL_RESPONSE, user__isnull=False
        )
        .values("user_id", "user_email")
        .annotate(
            promptTokens=_token_sum("promptTokens"),
            completionTokens=_token_sum("completionTokens"),
            totalTokens=_token_sum("totalTokens"),
        )
        .order_by("-totalTokens")
    )
    return [
        {
            "userId": str(row["user_id"]),
            "userEmail": row["user_email"],
            "promptTokens": row["promptTokens"] or 0,
            "completionTokens": row["completionTokens"] or 0,
            "totalTokens": row["totalTokens"] or 0,
        }
        for row in rows
    ]
