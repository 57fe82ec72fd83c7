"""The request id: taken from `X-Request-ID` (when sane) or made up, echoed back, and carried into logs.

The id lives in a context variable, so everything a request or a socket starts (a turn's task, a
thread through sync_to_async) logs under the same id.
"""

import contextvars
import re
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

HEADER = "X-Request-ID"
# Proxies and clients send UUIDs, hex strings or their own tokens; anything else is replaced,
# so a header cannot inject text into log lines or grow them without bound.
_SANE = re.compile(r"^[A-Za-z0-9._:@+=/-]{1,128}$")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def request_id_current() -> str | None:
    """The id of the request or socket this code runs for, if any."""
    return _current.get()


def request_id_of(value: str | bytes | None) -> str:
    """The client's id when it is sane, else a new one."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and _SANE.match(value):
        return value
    return uuid.uuid4().hex


def request_id_adopt(request) -> None:
    """The request's id (set by the middleware) becomes the current one, for what runs after
    the view returned: a streamed body and the turn it starts."""
    request_id = getattr(request, "request_id", None)
    if request_id:
        _current.set(request_id)


class RequestIdMiddleware:
    """Django middleware: sets the id for the request and puts it on every response.

    In async mode the id is not reset when the response is returned: a streamed body (SSE) and
    the turn it starts run after this returns, in the same request task, and log under the id.
    Synchronous chains reset it (a thread serves many requests); the ASGI handler that runs them
    from the loop then adopts the request's id for the body it streams (`request_id_adopt`).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        request_id = request_id_of(request.headers.get(HEADER))
        request.request_id = request_id
        token = _current.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response[HEADER] = request_id
        return response

    async def __acall__(self, request):
        request_id = request_id_of(request.headers.get(HEADER))
        request.request_id = request_id
        _current.set(request_id)
        response = await self.get_response(request)
        response[HEADER] = request_id
        return response


class RequestIdWebSocket:
    """ASGI middleware for sockets: one id per connection, echoed on the handshake's answer."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        sent = dict(scope.get("headers") or []).get(HEADER.lower().encode())
        request_id = request_id_of(sent)
        _current.set(request_id)

        async def send_with_id(message):
            if message.get("type") == "websocket.accept":
                headers = [
                    (name, value)
                    for name, value in message.get("headers") or []
                    if name.lower() != HEADER.lower().encode()
                ]
                headers.append((HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app({**scope, "request_id": request_id}, receive, send_with_id)
