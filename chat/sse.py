"""Server-Sent Events: one of the two encoders of a turn's event stream."""

from collections.abc import AsyncIterator

from django.conf import settings

from chat.agent import events as ev
from chat.turns.loop import Turn
from gemini_server.sse import KEEP_ALIVE, sse_frame


async def turn_sse(turn: Turn) -> AsyncIterator[bytes]:
    """Frames of the turn, a keep-alive comment when it is quiet, and cleanup when the client goes.

    A client that disconnects (Django cancels this generator, or closes it) cancels the turn:
    the upstream call stops and what was produced so far is stored before the session is freed.
    """
    number, finished = 0, False
    try:
        while True:
            event = await turn.next_event(settings.SSE_KEEPALIVE_SECONDS)
            if event is None:
                yield KEEP_ALIVE
                continue
            number += 1
            yield sse_frame(number, event.as_dict())
            if event.type == ev.DONE:
                finished = True
                return
    finally:
        if not finished:
            turn.cancel()
            await turn.wait()
