"""Server-Sent Events: one of the two encoders of a turn's event stream."""

import json
from collections.abc import AsyncIterator

from django.conf import settings
from django.http import StreamingHttpResponse

from chat.agent import events as ev
from chat.agent.turn import Turn

KEEP_ALIVE = b": keep-alive\n\n"


def sse_frame(number: int, payload: dict) -> bytes:
    return f"id: {number}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


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


def sse_response(stream: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
