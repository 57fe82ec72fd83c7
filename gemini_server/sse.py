"""Server-Sent Events framing, shared by the chat stream and the monitoring stream."""

import json
from collections.abc import AsyncIterator, Callable

from django.http import StreamingHttpResponse
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation

from gemini_server import metrics

KEEP_ALIVE = b": keep-alive\n\n"


class EventStreamNegotiation(BaseContentNegotiation):
    """For views whose success is an event stream: any Accept (EventSource sends
    `text/event-stream`) is served, and an error before the stream is the contract's JSON."""

    def select_parser(self, request, parsers):
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def sse_frame(number: int | str, payload: dict) -> bytes:
    return f"id: {number}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


class EventStreamResponse(StreamingHttpResponse):
    """An SSE response that tells its producer when it is closed, streamed or not.

    A client that leaves before the first frame never runs the stream's own cleanup (an async
    generator that was never started has no `finally` to run); `on_close` still runs.
    """

    def __init__(self, stream: AsyncIterator[bytes], *, on_close: Callable[[], None] | None = None):
        super().__init__(stream, content_type="text/event-stream")
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"
        self._on_close = on_close
        # Counted from here to close(), which Django's handler calls on every response it sent.
        self._open = True
        metrics.sse_stream_opened()

    def close(self):
        try:
            super().close()
        finally:
            if self._open:
                self._open = False
                metrics.sse_stream_closed()
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close()


def sse_response(
    stream: AsyncIterator[bytes], *, on_close: Callable[[], None] | None = None
) -> StreamingHttpResponse:
    return EventStreamResponse(stream, on_close=on_close)
