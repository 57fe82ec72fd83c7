"""A turn's frames, numbered from 1, kept where any process can replay them and follow the rest.

Every event a turn emits is a frame `{"type", "data"}` with the next number; the number is the
SSE `id:` the originating client sees, and the one `GET /chat/stream` replays after
(`Last-Event-ID`). With Redis the frames go to a stream per turn (`XADD` with the frame number as
its id), written by one background task per event loop that sends what every turn of the process
appended (over at most WRITE_BATCH_SECONDS) in one pipeline, so a turn never waits for Redis and a
thousand streaming turns cost a hundred pipelines a second, not ten thousand; without Redis (one
process) they stay in memory. Frames outlive their turn by FRAMES_TTL_DONE_SECONDS, so a client
can still catch up on the end.
"""

import asyncio
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import aclosing, suppress

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
# A running turn's stream has its expiry set again at most this often.
EXPIRY_REFRESH_SECONDS = 60.0
READ_BATCH = 500
# A follower with nothing to read checks this often that the turn still has a live worker.
LIVENESS_POLL_SECONDS = 2.0
WORKER_GONE_TEXT = (
    "The server running this turn stopped before it finished; what it produced is kept in the "
    "history. Send the message again to continue."
)
_KEY_PREFIX = "turn-frames:"

_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_writers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Running writers' tasks, held so the event loop does not drop them midway.
_writing: set[asyncio.Task] = set()
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
        self.key = _KEY_PREFIX + self.turn_id
        self.count = 0
        self._redis = bool(settings.REDIS_URL)
        # The write of the batch holding this log's latest frame (`_Writer`).
        self._written: asyncio.Future | None = None
        # Whether `done` was appended, when the stream's running expiry was last set
        # (monotonic), and whether its final one was.
        self.finished = False
        self._expiry_set_at: float | None = None
        self._final_expiry_set = False
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
        done = _is_done(payload)
        self.finished = self.finished or done
        data = json.dumps(payload, separators=(",", ":"))
        self._written = _writer().add(self, self.count, data, now=done)
        return self.count

    def expiry_due(self, now: float) -> int | None:
        """The TTL to set on the stream with this batch, if one is due: at the first write, at the
        end, and otherwise once every EXPIRY_REFRESH_SECONDS (the running TTL is hours long)."""
        if self.finished:
            if self._final_expiry_set:
                return None
            self._final_expiry_set = True
            return FRAMES_TTL_DONE_SECONDS
        if self._expiry_set_at is not None and now - self._expiry_set_at < EXPIRY_REFRESH_SECONDS:
            return None
        self._expiry_set_at = now
        return FRAMES_TTL_RUNNING_SECONDS

    async def flushed(self) -> None:
        """Until every frame appended so far is in the shared log."""
        if self._written is not None:
            await asyncio.shield(self._written)


class _Writer:
    """Every turn's frames on one event loop, sent to Redis in one pipeline per batch.

    It holds nothing bound to its loop between batches (the loop is the key it is kept under).
    """

    def __init__(self):
        self.pending: list[tuple[FrameLog, int, str]] = []
        # Resolved once the batch being gathered is written (or failed to be).
        self.batch_written: asyncio.Future | None = None
        # Set by a turn's last frame: the batch goes without waiting out WRITE_BATCH_SECONDS.
        self.hurry = False
        self.wake: asyncio.Future | None = None
        self.running = False

    def add(self, log: FrameLog, number: int, data: str, *, now: bool) -> asyncio.Future:
        """Queues a frame; returns the future of the batch that will hold it."""
        loop = asyncio.get_running_loop()
        self.pending.append((log, number, data))
        if self.batch_written is None:
            self.batch_written = loop.create_future()
        if now:
            self.hurry = True
            if self.wake is not None and not self.wake.done():
                self.wake.set_result(None)
        if not self.running:
            self.running = True
            task = loop.create_task(self._run())
            _writing.add(task)
            task.add_done_callback(_writing.discard)
        return self.batch_written

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                if not self.hurry:
                    self.wake = loop.create_future()
                    with suppress(TimeoutError):
                        async with asyncio.timeout(WRITE_BATCH_SECONDS):
                            await self.wake
                    self.wake = None
                self.hurry = False
                batch, self.pending = self.pending, []
                written, self.batch_written = self.batch_written, None
                try:
                    await self._send(batch)
                except Exception:
                    _warn("Turn frames could not be written to Redis; replays will miss them")
                finally:
                    written.set_result(None)
        finally:
            self.running = False

    @staticmethod
    async def _send(batch: list[tuple[FrameLog, int, str]]) -> None:
        pipe = _redis().pipeline(transaction=False)
        logs: dict[FrameLog, None] = {}
        for log, number, data in batch:
            pipe.xadd(log.key, {"f": data}, id=f"0-{number}")
            logs[log] = None
        now = time.monotonic()
        for log in logs:
            ttl = log.expiry_due(now)
            if ttl is not None:
                pipe.expire(log.key, ttl)
        await pipe.execute()


def _writer() -> _Writer:
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = _Writer()
    return writer


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
