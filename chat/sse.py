"""Server-Sent Events: one of the encoders of a turn's event stream, for its client and for others.

Frame ids are the turn's frame numbers, so the client that started a turn and a client that
attaches to it later (`GET /chat/stream`, from any process) see the same `id:` for the same frame,
and `Last-Event-ID` means the same thing to both.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

from django.conf import settings

from chat.agent import events as ev
from chat.turns.frames import turn_frames_follow
from chat.turns.loop import Turn
from gemini_server.sse import KEEP_ALIVE, sse_frame


async def turn_sse(turn: Turn) -> AsyncIterator[bytes]:
    """Frames of the turn, a keep-alive comment when it is quiet, and cleanup when the client goes.

    A client that disconnects (Django cancels this generator, or closes it) cancels the turn:
    the upstream call stops and what was produced so far is stored before the session is freed.
    A background turn goes on instead; any client can attach to it again.
    """
    finished = False
    try:
        while True:
            event = await turn.next_event(settings.SSE_KEEPALIVE_SECONDS)
            if event is None:
                yield KEEP_ALIVE
                continue
            yield sse_frame(event.id, event.as_dict())
            if event.type == ev.DONE:
                finished = True
                return
    finally:
        if not finished:
            if turn.background:
                turn.detach()
            else:
                turn.cancel()
                await turn.wait()


async def turn_follow_sse(*, session_id, turn_id, after: int) -> AsyncIterator[bytes]:
    """A running turn's frames after number `after` (replayed, then live) up to `done`."""
    loop = asyncio.get_running_loop()
    written = loop.time()
    async with aclosing(
        turn_frames_follow(session_id=session_id, turn_id=turn_id, after=after)
    ) as frames:
        async for item in frames:
            if item is None:
                if loop.time() - written >= settings.SSE_KEEPALIVE_SECONDS:
                    written = loop.time()
                    yield KEEP_ALIVE
                continue
            number, payload = item
            written = loop.time()
            yield sse_frame(number, payload)
