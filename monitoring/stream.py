"""The live event stream: every committed event, from every process, as SSE; replays after Last-Event-ID."""

import asyncio
import json
from collections.abc import AsyncIterator

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from gemini_server.groups import MONITORING
from monitoring.selectors import event_list, event_seq_of, event_to_dict

REPLAY_LIMIT = 1000


def event_matches(event: dict, *, types: list[str] | None, user_id: str | None) -> bool:
    if types and event["type"] not in types:
        return False
    return not (user_id and event["userId"] != str(user_id))


def _missed(after_seq: int, types, user_id) -> list[tuple[int, dict]]:
    events = event_list(types=types, user_id=user_id, after_seq=after_seq).order_by("seq")
    return [(event.seq, event_to_dict(event)) for event in events[:REPLAY_LIMIT]]


def _frame(event: dict) -> bytes:
    return f"id: {event['id']}\nevent: monitoring\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


async def monitoring_sse(
    *, types: list[str] | None, user_id: str | None, last_event_id: str | None
) -> AsyncIterator[bytes]:
    """Subscribes before replaying, then skips live events already replayed: nothing is missed or sent twice."""
    layer = get_channel_layer()
    channel = await layer.new_channel("monitor.")
    await layer.group_add(MONITORING, channel)
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
                    message = await layer.receive(channel)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if message.get("type") != "monitoring.event" or message.get("seq", 0) <= high_water:
                continue
            event = message["event"]
            if event_matches(event, types=types, user_id=user_id):
                yield _frame(event)
    finally:
        await layer.group_discard(MONITORING, channel)
