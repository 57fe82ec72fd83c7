"""The session's one turn slot: claimed with a conditional UPDATE so it holds across processes.

A claim that stops beating (its process died) can be taken over; the session row carries the
claim, and `Session.turn_is_live` is how the rest of the server asks whether a turn runs.
"""

import uuid

from django.utils import timezone

from chat.models import TurnDecision
from gemini_server.errors import Conflict
from sessions_app.models import Session


def turn_claim(*, session: Session) -> uuid.UUID:
    """Claims the session's one turn slot, on any process, or raises Conflict (409)."""
    now = timezone.now()
    turn_id = uuid.uuid4()
    claimed = (
        Session.objects.filter(pk=session.pk)
        .filter(Session.turn_free(now))
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
    # Its decisions served their purpose; the audit trail keeps who decided what.
    TurnDecision.objects.filter(turn_id=turn_id).delete()


def turn_decisions_since(*, turn_id, after: int) -> list:
    """Decisions sent to the turn after the one numbered `after`, oldest first."""
    return list(TurnDecision.objects.filter(turn_id=turn_id, pk__gt=after).order_by("pk"))
