"""Drives Django's real ASGI handler in-process: streamed bodies, and a client that hangs up."""

import asyncio
import json
from dataclasses import dataclass, field

from gemini_server.handler import OneHopASGIHandler


@dataclass
class StreamedResponse:
    status: int = 0
    headers: dict = field(default_factory=dict)
    chunks: list = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def json(self):
        return json.loads(self.body)

    @property
    def frames(self) -> list[dict]:
        """The SSE data frames, parsed, in order, with their `id:` as `_id`."""
        frames = []
        for block in self.body.decode().split("\n\n"):
            lines = [line for line in block.split("\n") if line and not line.startswith(":")]
            if not lines:
                continue
            fields = dict(line.split(": ", 1) for line in lines if ": " in line)
            if "data" in fields:
                frames.append({**json.loads(fields["data"]), "_id": fields.get("id")})
        return frames

    @property
    def comments(self) -> list[str]:
        return [line for line in self.body.decode().split("\n") if line.startswith(":")]


async def asgi_request(
    method: str,
    path: str,
    *,
    body=None,
    token: str | None = None,
    headers: dict | None = None,
    hang_up_when=None,
    timeout: float = 20,
) -> StreamedResponse:
    """Sends one request through the ASGI app and collects the response.

    `hang_up_when(response)` is checked after every body chunk; once it is true the client
    sends `http.disconnect`, as a browser closing the tab would.
    """
    app = OneHopASGIHandler()  # the handler the server runs (gemini_server.asgi)
    path, _, query = path.partition("?")
    raw = (
        body
        if isinstance(body, bytes)
        else (json.dumps(body).encode() if body is not None else b"")
    )
    header_list = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        (b"host", b"testserver"),
    ]
    if token:
        header_list.append((b"authorization", f"Bearer {token}".encode()))
    for name, value in (headers or {}).items():
        header_list.append((name.lower().encode(), value.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": header_list,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    response = StreamedResponse()
    body_sent = False
    hang_up = asyncio.Event()

    async def receive():
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            response.status = message["status"]
            response.headers = {
                k.decode().lower(): v.decode() for k, v in message.get("headers", [])
            }
        elif message["type"] == "http.response.body":
            response.chunks.append(message.get("body", b""))
            if hang_up_when is not None and hang_up_when(response):
                hang_up.set()

    await asyncio.wait_for(app(scope, receive, send), timeout)
    return response
