"""The live event stream: every committed event, from every process, as SSE; replays after Last-Event-ID."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import suppress

from channels.layers import get_channel_layer
from django.conf import settings

from gemini_server.db import db_async
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


# How long to wait before subscribing again when the channel layer (Redis) went away.
RESUBSCRIBE_SECONDS = (0.5, 1, 2, 5)
# A Redis restart forgets group memberships without a receiver noticing: this often the stream
# renews its membership and reads from the database what the live feed may have missed.
RENEW_SECONDS = 3
LAYER_LOST = {"type": "layer.lost"}


async def _receive_into(layer, channel: str, inbox: asyncio.Queue) -> None:
    """Moves messages from the layer to `inbox`; a layer failure is told as LAYER_LOST."""
    try:
        while True:
            message = await layer.receive(channel)
            if message.get("type") == RECEIVER_STOP:
                return
            await inbox.put(message)
    except Exception:
        logger.warning("The monitoring stream lost its channel layer; subscribing again")
        await inbox.put(LAYER_LOST)


def _latest_seq() -> int:
    return event_list().values_list("seq", flat=True).first() or 0


class _Subscription:
    """The stream's channel in the monitoring group, and the task reading it into `inbox`."""

    def __init__(self, layer, inbox: asyncio.Queue):
        self.layer, self.inbox = layer, inbox
        self.channel, self.receiver = None, None

    async def open(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(MONITORING, self.channel)
        self.receiver = asyncio.create_task(_receive_into(self.layer, self.channel, self.inbox))

    async def renew(self) -> None:
        """Membership again (idempotent); a reader that stopped on a layer failure is replaced."""
        if self.receiver is None or self.receiver.done():
            await self.close()
            await self.open()
        else:
            await self.layer.group_add(MONITORING, self.channel)

    async def close(self) -> None:
        if self.receiver is not None:
            await receiver_stop(self.layer, self.channel, self.receiver)
        if self.channel is not None:
            with suppress(Exception):
                await self.layer.group_discard(MONITORING, self.channel)
        self.channel, self.receiver = None, None


async def monitoring_sse(
    *, types: list[str] | None, user_id: str | None, last_event_id: str | None
) -> AsyncIterator[bytes]:
    """Subscribes before replaying, then skips live events already replayed: nothing is missed or sent twice.

    If the channel layer goes away (a Redis restart), the stream subscribes again and replays
    from the database what it missed meanwhile: it goes on rather than ending.
    """
    # layer.receive() is never cancelled while the stream lives: a cancelled channels_redis
    # receive() can drop a message (a third of them, with keep-alives close together). The
    # keep-alive timeout waits on a local queue instead, which gives nothing up when cancelled.
    inbox: asyncio.Queue = asyncio.Queue(maxsize=INBOX_SIZE)
    subscription = _Subscription(get_channel_layer(), inbox)
    await subscription.open()
    try:
        high_water = await db_async(_latest_seq)()
        if last_event_id:
            after_seq = await db_async(event_seq_of)(last_event_id)
            if after_seq is not None:
                high_water = after_seq
                for seq, event in await db_async(_missed)(after_seq, types, user_id):
                    high_water = seq
                    yield _frame(event)
        yield b": connected\n\n"
        loop = asyncio.get_running_loop()
        quiet_since = renewed_at = loop.time()
        while True:
            if loop.time() >= renewed_at + RENEW_SECONDS:
                async for frame in _renew(subscription):
                    yield frame
                renewed_at = loop.time()
                for seq, event in await db_async(_missed)(high_water, types, user_id):
                    high_water = seq
                    if event_matches(event, types=types, user_id=user_id):
                        quiet_since = loop.time()
                        yield _frame(event)
            wait = min(quiet_since + settings.SSE_KEEPALIVE_SECONDS, renewed_at + RENEW_SECONDS)
            try:
                async with asyncio.timeout(max(0.0, wait - loop.time())):
                    message = await inbox.get()
            except TimeoutError:
                if loop.time() >= quiet_since + settings.SSE_KEEPALIVE_SECONDS:
                    quiet_since = loop.time()
                    yield b": keep-alive\n\n"
                continue
            if message is LAYER_LOST:
                renewed_at = float("-inf")  # subscribe again and replay, right away
                continue
            if message.get("type") != "monitoring.events":
                continue
            for item in message["items"]:
                if item["seq"] <= high_water:
                    continue
                high_water = item["seq"]
                if event_matches(item["event"], types=types, user_id=user_id):
                    quiet_since = loop.time()
                    yield _frame(item["event"])
    finally:
        await subscription.close()


async def _renew(subscription: _Subscription) -> AsyncIterator[bytes]:
    """Renews the stream's membership; if the layer is away, subscribes again once it is back,
    keeping the client's connection alive meanwhile."""
    try:
        await subscription.renew()
        return
    except Exception:
        await subscription.close()
    attempt = 0
    while True:
        try:
            await subscription.open()
            return
        except Exception:
            yield b": waiting for the live feed\n\n"
            await asyncio.sleep(RESUBSCRIBE_SECONDS[min(attempt, len(RESUBSCRIBE_SECONDS) - 1)])
            attempt += 1
