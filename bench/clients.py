"""The load generator's clients: gemini-server's API, LiteLLM's OpenAI API, the fake itself."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from bench.stack import MODEL, UPSTREAM_KEY

# One connection per concurrent request, none kept waiting for a free one.
CONNECTOR_LIMIT = 0


def fake_script(chunks: int, delay_ms: float = 0, word: str = "tok") -> str:
    """A message whose `[[fake:...]]` directive makes the fake stream `chunks` text chunks,
    `delay_ms` apart (the `CHUNKS n ms` of the issue)."""
    step = {"text": [f"{word}{index} " for index in range(chunks)]}
    if delay_ms:
        step["delay"] = delay_ms / 1000
    return f"[[fake:{json.dumps([step])}]]"


TRIVIAL = fake_script(2)


@dataclass
class StreamResult:
    """What one streamed answer looked like from the client's side (perf_counter seconds)."""

    started: float
    status: int = 0
    first: float | None = None
    chunks: list[float] = field(default_factory=list)
    done: bool = False
    error: str | None = None
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.done and self.error is None and self.first is not None

    @property
    def first_token(self) -> float | None:
        return None if self.first is None else self.first - self.started

    def gaps(self) -> list[float]:
        return [
            later - earlier for earlier, later in zip(self.chunks, self.chunks[1:], strict=False)
        ]

    def chunk(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.chunks.append(now)


def new_http(timeout: float = 120) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONNECTOR_LIMIT, force_close=False),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def _data_lines(response: aiohttp.ClientResponse):
    async for raw in response.content:
        line = raw.rstrip(b"\r\n")
        if line.startswith(b"data:"):
            yield line[5:].strip()


async def _error_text(response: aiohttp.ClientResponse) -> str:
    body = await response.text()
    try:
        error = json.loads(body).get("error", {})
        code = error.get("code") if isinstance(error, dict) else None
        return f"HTTP {response.status} {code or ''}".strip()
    except (ValueError, AttributeError):
        return f"HTTP {response.status}"


async def _stream(
    http: aiohttp.ClientSession,
    url: str,
    *,
    body: dict | bytes,
    headers: dict,
    timeout: float,
    read: Callable[[aiohttp.ClientResponse, StreamResult], Awaitable[None]],
) -> StreamResult:
    """One streamed answer: POST `body` (JSON, or bytes already serialized), then
    `read(response, result)` follows the protocol's frames. Every failure (a status, a timeout, a
    dropped connection) ends up in `result.error`."""
    if isinstance(body, bytes):
        sent = {"data": body, "headers": {**headers, "Content-Type": "application/json"}}
    else:
        sent = {"json": body, "headers": headers}
    result = StreamResult(started=time.perf_counter())
    try:
        async with asyncio.timeout(timeout):
            async with http.post(url, **sent) as response:
                result.status = response.status
                if response.status != 200:
                    result.error = await _error_text(response)
                    return result
                await read(response, result)
    except TimeoutError:
        result.error = "timeout"
    except (aiohttp.ClientError, OSError) as exc:
        result.error = type(exc).__name__
    return result


async def server_turn(
    http: aiohttp.ClientSession,
    base: str,
    token: str,
    session_id: str,
    message: str,
    *,
    on_first=None,
    timeout: float = 120,
) -> StreamResult:
    """One chat message over SSE (`POST /api/v1/chat/message`), read to its `done` frame."""

    async def read(response: aiohttp.ClientResponse, result: StreamResult) -> None:
        async for data in _data_lines(response):
            frame = json.loads(data)
            kind = frame.get("type")
            if kind == "content":
                first = result.first is None
                result.chunk()
                if first and on_first is not None:
                    await on_first()
            elif kind == "error":
                result.error = f"error frame {frame.get('data', {}).get('code')}"
            elif kind == "done":
                result.done = True
                break
        if not result.done and result.error is None:
            result.error = "stream ended without done"

    return await _stream(
        http,
        f"{base}/api/v1/chat/message",
        body={"sessionId": session_id, "message": message},
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
        read=read,
    )


async def litellm_turn(
    http: aiohttp.ClientSession,
    base: str,
    key: str,
    messages: list[dict],
    *,
    timeout: float = 120,
) -> StreamResult:
    """One OpenAI-style streaming chat completion through LiteLLM, read to `[DONE]`."""

    async def read(response: aiohttp.ClientResponse, result: StreamResult) -> None:
        text = []
        async for data in _data_lines(response):
            if data == b"[DONE]":
                result.done = True
                break
            frame = json.loads(data)
            if "error" in frame:
                result.error = "error frame"
                continue
            for choice in frame.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    text.append(content)
                    result.chunk()
        if not result.done and result.error is None:
            result.error = "stream ended without [DONE]"
        result.text = "".join(text)

    return await _stream(
        http,
        f"{base}/v1/chat/completions",
        body={"model": MODEL, "messages": messages, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
        read=read,
    )


async def direct_turn(
    http: aiohttp.ClientSession,
    fake_url: str,
    message: str,
    *,
    body: bytes | None = None,
    timeout: float = 60,
) -> StreamResult:
    """The same answer asked of the fake directly, as a raw streaming request: the baseline.
    With `body`, that request exactly (what a server sent the fake, replayed)."""

    async def read(response: aiohttp.ClientResponse, result: StreamResult) -> None:
        async for data in _data_lines(response):
            frame = json.loads(data)
            candidate = (frame.get("candidates") or [{}])[0]
            parts = (candidate.get("content") or {}).get("parts") or []
            if any(part.get("text") for part in parts):
                result.chunk()
            if candidate.get("finishReason"):
                result.done = True
        if not result.done:
            result.error = "stream ended without finishReason"

    return await _stream(
        http,
        f"{fake_url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
        body=body or {"contents": [{"role": "user", "parts": [{"text": message}]}]},
        headers={"x-goog-api-key": UPSTREAM_KEY},
        timeout=timeout,
        read=read,
    )


class Api:
    """The few gemini-server calls the benchmark makes to set itself up."""

    def __init__(self, http: aiohttp.ClientSession, base: str):
        self.http, self.base = http, base

    async def _json(self, method: str, path: str, *, token=None, expect=(200, 201), **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(
            method, f"{self.base}{path}", headers=headers, **kwargs
        ) as response:
            body = await response.text()
            if response.status not in expect:
                raise RuntimeError(f"{method} {path} answered {response.status}: {body[:300]}")
            return json.loads(body) if body else None

    async def login(self, email: str, password: str) -> str:
        body = await self._json(
            "POST", "/api/v1/auth/login", json={"email": email, "password": password}
        )
        return body["accessToken"]

    async def user_create(self, admin_token: str, email: str, password: str) -> None:
        await self._json(
            "POST",
            "/api/v1/users",
            token=admin_token,
            json={"email": email, "password": password, "name": "Bench", "role": "engineer"},
        )

    async def api_key_create(self, email: str, password: str) -> str:
        body = await self._json(
            "POST",
            "/api/v1/auth/api-key",
            json={"email": email, "password": password, "name": "bench"},
        )
        return body["apiKey"]

    async def session_create(self, token: str) -> str:
        body = await self._json(
            "POST",
            "/api/v1/sessions",
            token=token,
            json={"config": {"title": "bench", "approvalMode": "default"}},
        )
        return body["sessionId"]

    async def sessions_create(self, token: str, count: int, concurrency: int = 8) -> list[str]:
        created: list[str] = []
        gate = asyncio.Semaphore(concurrency)

        async def one():
            async with gate:
                created.append(await self.session_create(token))

        await asyncio.gather(*(one() for _ in range(count)))
        return created
