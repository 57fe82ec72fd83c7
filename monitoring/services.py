"""The one recorder every part of the server calls, and the publish step that feeds live subscribers."""

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from gemini_server.groups import MONITORING
from monitoring.models import Event
from monitoring.redaction import redact
from monitoring.selectors import event_to_dict

logger = logging.getLogger(__name__)


def event_record(
    *,
    type: str,
    action: str,
    user=None,
    user_email: str = "",
    session_id=None,
    data: dict | None = None,
    ip: str | None = None,
    secrets: tuple[str, ...] = (),
) -> Event | None:
    """Writes one audit event and publishes it once committed.

    Recording never fails the caller: a write that fails is logged and dropped. `secrets` names
    values that must not be stored even where they appear inside free text.
    """
    if not settings.MONITORING_ENABLED:
        return None
    try:
        # A savepoint, so a failed insert cannot poison a caller's open transaction.
        with transaction.atomic():
            event = Event.objects.create(
                type=type,
                action=action,
                user=user,
                user_email=user_email or (getattr(user, "email", "") or ""),
                session_id=session_id,
                data=redact(data or {}, secrets=secrets),
                ip=ip,
            )
    except Exception:
        logger.exception("Could not record the %s.%s event", type, action)
        return None
    transaction.on_commit(lambda: event_publish(event))
    return event


async def aevent_record(**kwargs) -> Event | None:
    """event_record for async callers: the write runs off the event loop."""
    return await database_sync_to_async(event_record)(**kwargs)


def event_publish(event: Event) -> None:
    """Sends a committed event to every live subscriber, on every process."""
    message = {"type": "monitoring.event", "event": event_to_dict(event), "seq": event.seq}
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        try:
            async_to_sync(layer.group_send)(MONITORING, message)
        except Exception:
            logger.exception("Could not publish event %s", event.uuid)
        return
    # Called on the event loop itself: publish without blocking it.
    task = asyncio.ensure_future(layer.group_send(MONITORING, message))
    task.add_done_callback(_log_publish_failure)


def _log_publish_failure(task: asyncio.Task) -> None:
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
