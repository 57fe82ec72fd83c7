"""The one recorder every part of the server calls, and the publish step that feeds live subscribers."""

import asyncio
import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction

from gemini_server.columns import rows_insert
from gemini_server.db import db_async, serving_loop
from gemini_server.groups import MONITORING
from gemini_server.scrub import secrets_scrub_all
from gemini_server.storable import storable, storable_text
from monitoring.models import ACTION_TYPES, AuditAction, Event, EventType
from monitoring.redaction import redact
from monitoring.selectors import event_to_dict

logger = logging.getLogger(__name__)


def event_record(*, required: bool = False, **fields) -> Event | None:
    """Writes one audit event (`event_build`'s fields) and publishes it once committed.

    Called inside the caller's transaction, the row commits or rolls back with the change it
    records. `required` is for changes: a row that cannot be written raises, so the caller's
    transaction (and its change) rolls back too. Otherwise recording never fails the caller: a
    failed write is logged and dropped.
    """
    event = event_build(**fields)
    if event is None:
        return None
    if required:
        # A failure rolls the caller's change back with it: no savepoint to recover to.
        events_write([event])
        return event
    try:
        # A savepoint, so a failed insert cannot poison a caller's open transaction.
        with transaction.atomic():
            events_write([event])
    except Exception:
        logger.exception("Could not record the %s.%s event", event.type, event.action.value)
        return None
    return event


def event_build(
    *,
    type: str,
    action: AuditAction | str,
    user=None,
    user_email: str = "",
    session_id=None,
    data: dict | None = None,
    ip: str | None = None,
    secrets: tuple[str, ...] = (),
) -> Event | None:
    """An audit row, not written yet (None while monitoring is off). `secrets` names values that
    must not be stored even where they appear inside free text; the server's own secrets never
    are."""
    action = AuditAction(action)
    if ACTION_TYPES[action] != type:
        raise ValueError(f"The action {action.value!r} is recorded as {ACTION_TYPES[action]!r}")
    if not settings.MONITORING_ENABLED:
        return None
    return Event(
        type=type,
        action=action,
        user=user,
        user_email=storable_text(user_email or (getattr(user, "email", "") or ""))[:254],
        session_id=session_id,
        data=secrets_scrub_all(redact(storable(data or {}), secrets=secrets)),
        ip=ip,
    )


def events_write(events: list[Event]) -> None:
    """Built events, in one INSERT inside the caller's transaction (a failure raises there), each
    published in order once committed."""
    if not events:
        return
    rows_insert(events)
    transaction.on_commit(lambda: events_publish(events))


# Error events nobody is signed in for: anyone can cause them, so each address, and everyone
# together, gets a budget per window; past it one error_flood row says so and the rest reach the
# log only (where each 500 leaves its trace anyway). A signed-in user's errors are all recorded:
# the per-user request rate limit bounds them.
# Where the shared cache (Redis) fails, each process keeps its own count: still a bound.
_local_counts = LocMemCache("anonymous-error-budget", {"OPTIONS": {"MAX_ENTRIES": 10_000}})


def _window_count(name: str) -> int:
    """How many times `name` was counted in this window, this time included."""
    window = settings.ANON_ERROR_WINDOW_SECONDS
    key = f"audit-errors:{name}:{window}:{int(time.time() // window)}"
    try:
        return _count(cache, key)
    except Exception:
        logger.warning("The shared cache failed; counting error events in this process")
        return _count(_local_counts, key)


def _count(store, key: str) -> int:
    store.add(key, 0, timeout=settings.ANON_ERROR_WINDOW_SECONDS * 2)
    return store.incr(key)


def _anonymous_error_verdict(ip: str | None) -> str | None:
    """What to do with one more anonymous error: record it, write the one error_flood row
    ("flood-ip" or "flood-all"), or nothing (None) when its budget is spent."""
    per_ip = _window_count(f"ip:{ip or 'unknown'}")
    if per_ip > settings.ANON_ERROR_EVENTS_PER_IP + 1:
        return None
    total = _window_count("all")
    if total > settings.ANON_ERROR_EVENTS_MAX:
        return "flood-all" if total == settings.ANON_ERROR_EVENTS_MAX + 1 else None
    return "record" if per_ip <= settings.ANON_ERROR_EVENTS_PER_IP else "flood-ip"


def error_record(
    *, action: AuditAction | str, user=None, session_id=None, data: dict | None = None, ip=None
) -> Event | None:
    """Records an error event; without a user, within the anonymous error budget."""
    if user is None and settings.MONITORING_ENABLED:
        verdict = _anonymous_error_verdict(ip)
        if verdict is None:
            return None
        if verdict != "record":
            scope = "address" if verdict == "flood-ip" else "everyone"
            limit = (
                settings.ANON_ERROR_EVENTS_PER_IP
                if verdict == "flood-ip"
                else settings.ANON_ERROR_EVENTS_MAX
            )
            logger.warning(
                "Anonymous error events over budget (%s, %s): the rest of this minute's are not "
                "recorded",
                scope,
                ip,
            )
            return event_record(
                type=EventType.ERROR,
                action=AuditAction.ERROR_FLOOD,
                data={
                    "scope": scope,
                    "limit": limit,
                    "windowSeconds": settings.ANON_ERROR_WINDOW_SECONDS,
                    # The error that spent the budget, in place of its own row.
                    "error": {"action": str(action), **(data or {})},
                },
                ip=ip,
            )
    return event_record(
        type=EventType.ERROR, action=action, user=user, session_id=session_id, data=data, ip=ip
    )


async def aevent_record(**kwargs) -> Event | None:
    """event_record for async callers: the write runs off the event loop."""
    return await db_async(event_record)(**kwargs)


def events_publish(events: list[Event]) -> None:
    """Sends committed events, in order, to every live subscriber on every process: one layer
    message for the events of one transaction (`monitoring.events`; each item has the event and
    its `seq`)."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {
        "type": "monitoring.events",
        "items": [{"event": event_to_dict(event), "seq": event.seq} for event in events],
    }

    async def send() -> None:
        await layer.group_send(MONITORING, message)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # Called on the event loop itself: publish without blocking it.
        task = asyncio.ensure_future(send())
        task.add_done_callback(_log_publish_failure)
        return
    loop = serving_loop()
    if loop is not None:
        # A thread of a serving process (a view, a turn's database call): the loop publishes it,
        # and the thread goes on instead of waiting for Redis with a pooled connection in hand.
        future = asyncio.run_coroutine_threadsafe(send(), loop)
        future.add_done_callback(_log_publish_failure)
        return
    try:
        async_to_sync(send)()
    except Exception:
        logger.exception("Could not publish events %s", [str(event.uuid) for event in events])


def _log_publish_failure(task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("Could not publish an event", exc_info=task.exception())


def events_prune(*, older_than_days: int, dry_run: bool = False) -> int:
    """Deletes events older than the retention period; with dry_run only counts them."""
    from datetime import timedelta

    from django.utils import timezone

    old = Event.objects.filter(created_at__lt=timezone.now() - timedelta(days=older_than_days))
    if dry_run:
        return old.count()
    deleted, _ = old.delete()
    return deleted
