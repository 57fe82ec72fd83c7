"""Server-Sent Events framing, shared by the chat stream and the monitoring stream."""

import json
from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse

KEEP_ALIVE = b": keep-alive\n\n"


def sse_frame(number: int | str, payload: dict) -> bytes:
    return f"id: {number}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def sse_response(stream: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
