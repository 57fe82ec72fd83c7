"""The live event stream: every committed event, from every process, as SSE; replays after Last-Event-ID."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from gemini_server.groups import MONITORING
from gemini_server.layer import STOP as RECEIVER_STOP
from gemini_server.layer import receiver_stop
from monitoring.selectors import event_list, event_seq_of, event_to_dict

logger = logging.getLogger(__name__)

REPLAY_LIMIT = 1000
# Live events held for a slow client; beyond it the layer's own capacity applies.
INBOX_SIZE = 1000


def event_matches(event: dict, *, types: list[str] | None, user_id: str | None) -> bool:
    if types and event["type"] not in types:
        return False
    return not (user_id and event["userId"] != str(user_id))


def _missed(after_seq: int, types, user_id) -> list[tuple[int, dict]]:
    events = event_list(types=types, user_id=user_id, after_seq=after_seq).order_by("seq")
    return [(event.seq, event_to_dict(event)) for event in events[:REPLAY_LIMIT]]


def _frame(event: dict) -> bytes:
    return f"id: {event['id']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


async def _receive_into(layer, channel: str, inbox: asyncio.Queue) -> None:
    """Moves messages from the layer to `inbox`; a layer failure ends the stream (None)."""
    try:
        while True:
            message = await layer.receive(channel)
            if message.get("type") == RECEIVER_STOP:
                return
            await inbox.put(message)
    except Exception:
        logger.exception("The monitoring stream lost its channel layer")
        await inbox.put(None)


async def monitoring_sse(
    *, types: list[str] | None, user_id: str | None, last_event_id: str | None
) -> AsyncIterator[bytes]:
    """Subscribes before replaying, then skips live events already replayed: nothing is missed or sent twice."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(MONITORING, channel)
    # layer.receive() is never cancelled while the stream lives: a cancelled channels_redis
    # receive() can drop a message (a third of them, with keep-alives close together). The
    # keep-alive timeout waits on a local queue instead, which gives nothing up when cancelled.
    inbox: asyncio.Queue = asyncio.Queue(maxsize=INBOX_SIZE)
    receiver = asyncio.create_task(_receive_into(layer, channel, inbox))
    try:
        high_water = 0
        if last_event_id:
            after_seq = await database_sync_to_async(event_seq_of)(last_event_id)
            if after_seq is not None:
                high_water = after_seq
                for seq, event in await database_sync_to_async(_missed)(after_seq, types, user_id):
                    high_water = seq
                    yield _frame(event)
        yield b": connected\n\n"
        while True:
            try:
                async with asyncio.timeout(settings.SSE_KEEPALIVE_SECONDS):
                    message = await inbox.get()
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if message is None:
                return
            if message.get("type") != "monitoring.event" or message.get("seq", 0) <= high_water:
                continue
            event = message["event"]
            if event_matches(event, types=types, user_id=user_id):
                yield _frame(event)
    finally:
        await receiver_stop(layer, channel, receiver)
        await layer.group_discard(MONITORING, channel)
