"""A turn's frames, numbered from 1, kept where any process can replay them and follow the rest.

Every event a turn emits is a frame `{"type", "data"}` with the next number; the number is the
SSE `id:` the originating client sees, and the one `GET /chat/stream` replays after
(`Last-Event-ID`). With Redis the frames go to a stream per turn (`XADD` with the frame number as
its id), written by a background task that sends whatever has piled up (over at most
WRITE_BATCH_SECONDS) in one pipeline, so the turn never waits for Redis; without Redis (one
process) they stay in memory. Frames outlive their turn by FRAMES_TTL_DONE_SECONDS, so a client
can still catch up on the end.
"""

import asyncio
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import aclosing

import redis.asyncio as aioredis
from django.conf import settings

from gemini_server.db import db_async
from sessions_app.models import Session

logger = logging.getLogger(__name__)

# A running turn's frames live this long after their latest write (confirmations may wait 10 min).
FRAMES_TTL_RUNNING_SECONDS = 6 * 3600
FRAMES_TTL_DONE_SECONDS = 600
# Frames appended within this time of each other go to Redis in one pipeline (a trivial turn's
# frames in one), and the write waits for none of the turn's own work on the loop.
WRITE_BATCH_SECONDS = 0.01
READ_BATCH = 500
# A follower with nothing to read checks this often that the turn still has a live worker.
LIVENESS_POLL_SECONDS = 2.0
WORKER_GONE_TEXT = (
    "The server running this turn stopped before it finished; what it produced is kept in the "
    "history. Send the message again to continue."
)
_KEY_PREFIX = "turn-frames:"

_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_memory: dict[str, "_MemoryFrames"] = {}
_warned_at = 0.0


def _redis() -> aioredis.Redis:
    """One asyncio Redis client per event loop (and per REDIS_URL, which tests may change)."""
    loop = asyncio.get_running_loop()
    held = _clients.get(loop)
    if held is None or held[0] != settings.REDIS_URL:
        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
        held = (settings.REDIS_URL, client)
        _clients[loop] = held
    return held[1]


def _warn(message: str) -> None:
    global _warned_at
    if time.monotonic() - _warned_at > 60:
        _warned_at = time.monotonic()
        logger.warning(message, exc_info=True)


def _is_done(payload: dict) -> bool:
    return payload.get("type") == "done"


class _MemoryFrames:
    def __init__(self):
        self.frames: list[dict] = []
        self.changed = asyncio.Event()

    def add(self, payload: dict) -> None:
        self.frames.append(payload)
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    @property
    def done(self) -> bool:
        return bool(self.frames) and _is_done(self.frames[-1])


class FrameLog:
    """The writing side, owned by the turn: `append` numbers a frame and stores it off the path."""

    def __init__(self, turn_id):
        self.turn_id = str(turn_id)
        self.count = 0
        self._redis = bool(settings.REDIS_URL)
        self._pending: list[tuple[int, str]] = []
        self._writer: asyncio.Task | None = None
        self._finished = False
        if not self._redis:
            _memory[self.turn_id] = _MemoryFrames()

    def append(self, payload: dict) -> int:
        """The frame's number; the frame reaches the shared log shortly after (never awaited)."""
        self.count += 1
        if not self._redis:
            _memory[self.turn_id].add(payload)
            if _is_done(payload):
                asyncio.get_running_loop().call_later(
                    FRAMES_TTL_DONE_SECONDS, _memory.pop, self.turn_id, None
                )
            return self.count
        self._finished = self._finished or _is_done(payload)
        self._pending.append((self.count, json.dumps(payload, separators=(",", ":"))))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return self.count

    async def _write(self) -> None:
        key = _KEY_PREFIX + self.turn_id
        if not self._finished:
            await asyncio.sleep(WRITE_BATCH_SECONDS)
        while self._pending:
            batch, self._pending = self._pending, []
            ttl = FRAMES_TTL_DONE_SECONDS if self._finished else FRAMES_TTL_RUNNING_SECONDS
            try:
                pipe = _redis().pipeline(transaction=False)
                for number, data in batch:
                    pipe.xadd(key, {"f": data}, id=f"0-{number}")
                pipe.expire(key, ttl)
                await pipe.execute()
            except Exception:
                _warn("Turn frames could not be written to Redis; replays will miss them")

    async def flushed(self) -> None:
        """Until every frame appended so far is in the shared log."""
        if self._writer is not None:
            await asyncio.shield(self._writer)


async def frames_follow(turn_id, *, after: int, idle: float) -> AsyncIterator[tuple | None]:
    """The turn's frames after number `after`, as `(number, payload)`, up to and with `done`.

    Yields None whenever `idle` seconds pass without a frame, so the caller can send a
    keep-alive or find out that the turn died. Ends at once when `done` was already sent.
    """
    source = _redis_follow if settings.REDIS_URL else _memory_follow
    async for item in source(str(turn_id), after, idle):
        yield item


async def _memory_follow(turn_id: str, after: int, idle: float):
    last = after
    while True:
        log = _memory.get(turn_id)
        if log is not None and len(log.frames) > last:
            for number in range(last + 1, len(log.frames) + 1):
                last = number
                yield number, log.frames[number - 1]
                if _is_done(log.frames[number - 1]):
                    return
            continue
        if log is not None and log.done:
            return
        try:
            async with asyncio.timeout(idle):
                await (log.changed.wait() if log is not None else asyncio.sleep(idle))
        except TimeoutError:
            yield None


def _entry(entry) -> tuple[int, dict]:
    entry_id, fields = entry
    number = int(entry_id.split(b"-", 1)[1])
    return number, json.loads(fields[b"f"])


async def _redis_follow(turn_id: str, after: int, idle: float):
    client = _redis()
    key = _KEY_PREFIX + turn_id
    tail = await client.xrevrange(key, count=1)
    if tail:
        number, payload = _entry(tail[0])
        if _is_done(payload) and number <= after:
            return
    last = after
    while True:
        reply = await client.xread({key: f"0-{last}"}, count=READ_BATCH, block=int(idle * 1000))
        if not reply:
            yield None
            continue
        for entry in reply[0][1]:
            number, payload = _entry(entry)
            last = number
            yield number, payload
            if _is_done(payload):
                return


def _turn_holds(session_id, turn_id) -> bool:
    session = Session.objects.filter(pk=session_id).first()
    return session is not None and str(session.turn_id) == str(turn_id) and session.turn_is_live()


async def turn_frames_follow(*, session_id, turn_id, after: int) -> AsyncIterator[tuple | None]:
    """`frames_follow` for a client attached to a session's turn, from any process.

    If the turn's worker dies (no `done` will ever come), the follower ends the stream itself,
    as a restart does: `error` (`server_restarting`, retryable) and `done` (`INTERRUPTED`).
    """
    last = after
    async with aclosing(frames_follow(turn_id, after=after, idle=LIVENESS_POLL_SECONDS)) as frames:
        async for item in frames:
            if item is not None:
                last = item[0]
                yield item
                continue
            yield None
            if not await db_async(_turn_holds)(session_id, turn_id):
                break
        else:
            return
    # The claim is gone: a turn that just finished writes `done` within moments; a dead one never.
    async with aclosing(frames_follow(turn_id, after=last, idle=1.0)) as frames:
        async for item in frames:
            if item is None:
                break
            last = item[0]
            yield item
            if _is_done(item[1]):
                return
        else:
            return
    yield (
        last + 1,
        {
            "type": "error",
            "data": {"code": "server_restarting", "message": WORKER_GONE_TEXT, "retryable": True},
        },
    )
    yield last + 2, {"type": "done", "data": {"messageId": "", "finishReason": "INTERRUPTED"}}
