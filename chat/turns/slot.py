"""The session's one turn slot: claimed with a conditional UPDATE so it holds across processes.

A claim names the worker that runs it (gemini_server.workers). It can be taken over when its
worker is known dead (within WORKER_TTL_SECONDS, with Redis) or when it stopped beating
(TURN_STALE_AFTER); the session row carries the claim, and `Session.turn_is_live` is how the rest
of the server asks whether a turn runs. Taking a dead claim over first closes the dead turn's
half-done answer (`turn_interrupted_close`).
"""

import functools
import logging
import threading
import uuid

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import Q
from django.utils import timezone

from chat.models import TurnDecision
from chat.turns.store import StepWrite, steps_store, turn_interrupted_close
from gemini_server.columns import Columns
from gemini_server.errors import Conflict
from gemini_server.workers import worker_alive, worker_id, worker_start
from sessions_app.models import Session

logger = logging.getLogger(__name__)


def turn_claim(*, session: Session) -> uuid.UUID:
    """Claims the session's one turn slot, on any process, or raises Conflict (409).

    The claim is a compare-and-set on what `session` says holds the slot (read a moment ago);
    if that changed meanwhile, the row is read once more.
    """
    worker_start()  # a claim names this worker, so it must be known alive
    turn_id = uuid.uuid4()
    for _attempt in range(2):
        now = timezone.now()
        held = session.turn_id
        if held is not None and session.turn_is_live(now):
            break
        slot = Q(turn_id__isnull=True) if held is None else Q(turn_id=held)
        claimed = (
            Session.objects.filter(pk=session.pk)
            .filter(slot)
            .update(turn_id=turn_id, turn_heartbeat_at=now, turn_worker=worker_id())
        )
        if claimed:
            if held is not None:
                logger.warning("Session %s: took over the claim of a dead turn", session.pk)
                _decisions_drop(held)
                turn_interrupted_close(session_id=session.pk)
            session.turn_id, session.turn_heartbeat_at = turn_id, now
            session.turn_worker = worker_id()
            return turn_id
        fresh = (
            Session.objects.filter(pk=session.pk)
            .values("turn_id", "turn_heartbeat_at", "turn_worker")
            .first()
        )
        if fresh is None:
            break
        session.turn_id = fresh["turn_id"]
        session.turn_heartbeat_at = fresh["turn_heartbeat_at"]
        session.turn_worker = fresh["turn_worker"]
    raise Conflict(
        "A turn is already running in this session", details={"sessionId": str(session.id)}
    )


# Sent ahead of the claim's UPDATE on PostgreSQL (`_claim_statement`).
_LEASE = "SET LOCAL synchronous_commit TO off; "


@functools.cache
def _claim_statement(alias: str) -> str:
    """The UPDATE of `turn_claim_own` for database `alias`, built once.

    On PostgreSQL the claim is committed without waiting for the write-ahead log to reach the disk
    (`synchronous_commit` off for that one transaction, a fourth of the claim's time): it is a
    lease, not a record. Any later durable commit, such as the turn's first stored step, flushes it
    too; only a crash of PostgreSQL itself in the moment after it can forget it, and then the
    session merely looks free again, as it does after a takeover (the turn's end frees only its
    own claim). The two statements go in one round trip, which client-side binding (Django's
    default for psycopg) allows.
    """
    columns = Columns(Session)
    connection = connections[alias]
    lease = ""
    if connection.vendor == "postgresql" and not connection.settings_dict["OPTIONS"].get(
        "server_side_binding"
    ):
        lease = _LEASE
    return (
        f"{lease}UPDATE {columns.table} "
        f"SET {columns['turn_id']} = %s, {columns['turn_heartbeat_at']} = %s, "
        f"{columns['turn_worker']} = %s "
        f"WHERE {columns['id']} = %s AND {columns['user']} = %s "
        f"AND {columns['turn_id']} IS NULL AND {columns['expires_at']} > %s RETURNING {columns.every}"
    )


def turn_claim_own(*, session_id, user) -> tuple[Session, uuid.UUID] | None:
    """The claim of the common case in one statement: the user's own session, not expired, with
    no turn claimed. Returns the session as it now is and the turn's id, or None when that is not
    the case (then `turn_claim`, after the usual reads, says why or takes a dead claim over)."""
    try:
        session_id = uuid.UUID(str(session_id))
    except (TypeError, ValueError, AttributeError):
        return None
    worker_start()  # a claim names this worker, so it must be known alive
    turn_id, now = uuid.uuid4(), timezone.now()
    columns = Columns(Session)
    connection = columns.connection
    sql = _claim_statement(connection.alias)
    params = [
        columns.value("turn_id", turn_id),
        columns.value("turn_heartbeat_at", now),
        columns.value("turn_worker", worker_id()),
        columns.value("id", session_id),
        columns.value("user", user.pk),
        columns.value("expires_at", now),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if sql.startswith(_LEASE):
            cursor.nextset()  # past the SET's empty result
        row = cursor.fetchone()
    if row is None:
        return None
    # The row as the ORM reads it, without the RawQuerySet machinery: a third less CPU.
    [session] = columns.instances([row])
    session.user = user
    return session, turn_id


def turn_heartbeat(*, session_id, turn_id) -> None:
    Session.objects.filter(pk=session_id, turn_id=turn_id).update(turn_heartbeat_at=timezone.now())


def turn_release(*, session_id, turn_id) -> None:
    Session.objects.filter(pk=session_id, turn_id=turn_id).update(**Session.SLOT_FREE)
    _decisions_drop(turn_id)


def _decisions_drop(turn_id) -> None:
    """A turn's decisions, which served their purpose once it ends (the audit trail keeps who
    decided what): one DELETE written by hand, as QuerySet.delete first asks its Collector
    whether anything cascades (nothing does), at a cost larger than the statement's own."""
    columns = Columns(TurnDecision)
    with columns.connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {columns.table} WHERE {columns['turn_id']} = %s",
            [columns.value("turn_id", turn_id)],
        )


def turn_end_store(*, session: Session, user, steps: list[StepWrite], turn_id, ip=None):
    """The turn's last steps and the release of its slot, in one transaction and one update of
    the session: it is free for the next message once the answer is stored. None if the session
    was deleted."""
    try:
        with transaction.atomic():
            stored = steps_store(
                session=session,
                user=user,
                steps=steps,
                ip=ip,
                release=turn_id,
            )
            if stored is not None:
                _decisions_drop(turn_id)
    except IntegrityError:
        return None
    return stored


def turn_release_dead(*, session: Session) -> bool:
    """Frees a session whose claim is dead (its worker died), closing the half-done turn."""
    held = session.turn_id
    if held is None or session.turn_is_live():
        return False
    turn_interrupted_close(session_id=session.pk)
    turn_release(session_id=session.pk, turn_id=held)
    return True


def turn_decisions_since(*, turn_id, after: int) -> list:
    """Decisions sent to the turn after the one numbered `after`, oldest first.

    A SELECT written by hand: every running turn asks every DECISION_POLL_SECONDS, and the
    queryset's building cost several times the statement's own round trip.
    """
    columns = Columns(TurnDecision)
    with columns.connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns.every} FROM {columns.table} "
            f"WHERE {columns['turn_id']} = %s AND {columns['id']} > %s ORDER BY {columns['id']}",
            [columns.value("turn_id", turn_id), columns.value("id", after)],
        )
        return columns.instances(cursor.fetchall())


def turn_claims_free_dead() -> int:
    """Frees every claim whose worker is dead: the sessions a crashed or stopped server left.

    Without Redis there is one process, so every claim another worker made is dead once this one
    starts. With Redis a worker is dead once its key is gone; a sweep at startup finds those
    that died before (claims are also taken over one by one as messages come).
    """
    me = worker_id()
    claimed = Session.objects.filter(turn_id__isnull=False).exclude(turn_worker="")
    freed = 0
    for session in claimed.exclude(turn_worker=me):
        if settings.REDIS_URL and worker_alive(session.turn_worker) is not False:
            continue
        held = session.turn_id
        turn_interrupted_close(session_id=session.pk)
        turn_release(session_id=session.pk, turn_id=held)
        freed += 1
    if freed:
        logger.warning("Freed %d session(s) left claimed by a server that stopped", freed)
    return freed


def turn_claims_sweep_at_start() -> None:
    """A start hook: frees the claims of dead workers now, and again once dead keys expired."""
    turn_claims_free_dead()
    if settings.REDIS_URL:
        # A worker killed just before this one started is still alive in Redis for a moment.
        timer = threading.Timer(settings.WORKER_TTL_SECONDS + 1, _sweep_later)
        timer.daemon = True
        timer.start()


def _sweep_later() -> None:
    try:
        turn_claims_free_dead()
    except Exception:
        logger.exception("Freeing the claims of dead workers failed")
    finally:
        connections.close_all()
