"""The process's Gemini streaming client: the turn's request body sent as is, chunks read as they come.

google-genai rebuilds and re-validates the whole request (system prompt, tool declarations, the
entire history) through pydantic on every call, which made a turn's cost grow with its history.
The turn builds its body itself and keeps it between model calls; this thin client of Gemini's
REST API only posts it and reads the stream. Its errors are google-genai's own (`APIError`);
its chunks are the wire's JSON (a GenerateContentResponse's), read through `chunk_parts`,
`chunk_finish` and `chunk_usage`: the parts are what the turn keeps and sends back, so they stay in
the wire's form, and a stream of thousands of chunks a second is not validated field by field
(the SDK's validation is most of a chunk's cost, and refuses any field newer than the SDK).
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
from django.conf import settings
from google.genai import errors as genai_errors
from google.genai import types

from gemini_server import metrics

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
# Transient statuses worth another try before any chunk arrived; 429 carries Google's own delay.
RETRY_STATUSES = frozenset({500, 502, 503, 504})
RETRY_INITIAL_DELAY = 1.0
RETRY_MAX_DELAY = 10.0
USER_AGENT = "gemini-server google-genai-types"

# One connection pool per event loop (tests run several loops; a server runs one).
_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


class GeminiNotConfigured(RuntimeError):
    """No GEMINI_API_KEY: the agent cannot reach a model."""


def thinking_supported(model: str) -> bool:
    """Models that can stream their thoughts (gemini-cli asks for them on these)."""
    return model.startswith(("gemini-2.5", "gemini-3"))


def _http() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        for other in [known for known in _sessions if known.is_closed()]:
            _sessions.pop(other, None)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(
                total=settings.GEMINI_TIMEOUT_SECONDS, sock_connect=30, sock_read=None
            ),
            headers={"User-Agent": USER_AGENT},
        )
        _sessions[loop] = session
    return session


def chunk_parts(chunk: dict) -> list[dict]:
    """The first candidate's parts, as the wire has them (camelCase, thoughtSignature in base64),
    fields without a value left out."""
    candidates = chunk.get("candidates") or []
    content = (candidates[0].get("content") or {}) if candidates else {}
    return [
        {key: value for key, value in part.items() if value is not None}
        for part in content.get("parts") or []
    ]


def chunk_finish(chunk: dict) -> str | None:
    """The first candidate's finish reason (STOP, MAX_TOKENS, ...), once it finished."""
    candidates = chunk.get("candidates") or []
    reason = candidates[0].get("finishReason") if candidates else None
    return str(reason) if reason else None


def chunk_usage(chunk: dict) -> dict | None:
    """The chunk's usageMetadata as the turn counts it: prompt, completion (thoughts included)
    and total tokens."""
    metadata = chunk.get("usageMetadata")
    if not metadata:
        return None
    prompt = metadata.get("promptTokenCount") or 0
    completion = (metadata.get("candidatesTokenCount") or 0) + (
        metadata.get("thoughtsTokenCount") or 0
    )
    total = metadata.get("totalTokenCount") or (prompt + completion)
    return {"promptTokens": prompt, "completionTokens": completion, "totalTokens": total}


def stream_url(model: str) -> str:
    base = (settings.GEMINI_BASE_URL or DEFAULT_BASE_URL).rstrip("/")
    return f"{base}/{settings.GEMINI_API_VERSION}/models/{model}:streamGenerateContent?alt=sse"


def _api_error(status: int, payload) -> genai_errors.APIError:
    if not isinstance(payload, dict) or "error" not in payload:
        payload = {"error": {"code": status, "message": str(payload)[:1000], "status": ""}}
    kind = genai_errors.ServerError if status >= 500 else genai_errors.ClientError
    return kind(status, payload)


async def _error_of(response: aiohttp.ClientResponse) -> genai_errors.APIError:
    text = await response.text(errors="replace")
    try:
        payload = json.loads(text)
    except ValueError:
        payload = text
    return _api_error(response.status, payload)


async def generate_stream(model: str, body: bytes) -> AsyncIterator[dict]:
    """The model's streamed answer to `body` (see `_generate_stream`), timed and counted in metrics."""
    call = metrics.UpstreamCall()
    stream = _generate_stream(model, body)
    outcome, kind = "ok", None
    try:
        async for chunk in stream:
            call.chunk()
            yield chunk
    except (GeneratorExit, asyncio.CancelledError):
        outcome = "cancelled"
        raise
    except BaseException as exc:
        outcome, kind = "error", _error_kind(exc)
        raise
    finally:
        try:
            await stream.aclose()
        finally:
            call.finished(outcome=outcome, error_kind=kind)


def _error_kind(exc: BaseException) -> str:
    """A few words for what failed, few enough to be a metric's label."""
    if isinstance(exc, GeminiNotConfigured):
        return "not_configured"
    if isinstance(exc, genai_errors.APIError):
        return str(exc.code or "unknown")
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientError):
        return "connection"
    return "unreadable"


async def _generate_stream(model: str, body: bytes) -> AsyncIterator[dict]:
    """POSTs `body` (a GenerateContentRequest as JSON) and yields each streamed chunk (its JSON).

    Transient failures (5xx, a refused connection) are retried before the first chunk, with
    backoff; after it, a failure is the caller's to report. Closing the iterator before the end
    closes the connection, which is how Google learns to stop generating.
    """
    api_key = settings.GEMINI_API_KEY
    if not api_key:
        raise GeminiNotConfigured(
            "The server has no GEMINI_API_KEY configured; an administrator must set it."
        )
    headers = {"Content-Type": "application/json", "x-goog-api-key": api_key}
    url = stream_url(model)
    attempts = max(1, settings.GEMINI_RETRY_ATTEMPTS)
    delay = RETRY_INITIAL_DELAY
    for attempt in range(1, attempts + 1):
        try:
            response = await _http().post(url, data=body, headers=headers)
        except aiohttp.ClientConnectionError:
            if attempt == attempts:
                raise
        else:
            if response.status == 200:
                break
            error = await _error_of(response)
            response.release()
            if response.status not in RETRY_STATUSES or attempt == attempts:
                raise error
        logger.info("Gemini call failed (attempt %s of %s); retrying", attempt, attempts)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_DELAY)
    read_to_end = False
    try:
        async for line in response.content:
            if not line.startswith(b"data:"):
                continue
            raw = line[5:].strip()
            if not raw:
                continue
            chunk = json.loads(raw)
            if not isinstance(chunk, dict):
                raise ValueError("A streamed chunk is not a JSON object")
            if "error" in chunk:
                error = chunk["error"]
                raise _api_error(
                    (error.get("code") if isinstance(error, dict) else 0) or 500, chunk
                )
            yield chunk
        read_to_end = True
    finally:
        # A stream read to its end leaves its connection to the next call; one cut short is
        # closed, which is how Google learns to stop generating.
        if read_to_end:
            response.release()
        else:
            response.close()


def generate_url(model: str) -> str:
    base = (settings.GEMINI_BASE_URL or DEFAULT_BASE_URL).rstrip("/")
    return f"{base}/{settings.GEMINI_API_VERSION}/models/{model}:generateContent"


async def generate_once(model: str, body: dict) -> types.GenerateContentResponse:
    """One unary generateContent call (the tools' utility calls: search grounding, web_fetch's
    summary); transient failures are retried like the stream's first request."""
    api_key = settings.GEMINI_API_KEY
    if not api_key:
        raise GeminiNotConfigured(
            "The server has no GEMINI_API_KEY configured; an administrator must set it."
        )
    headers = {"Content-Type": "application/json", "x-goog-api-key": api_key}
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    attempts = max(1, settings.GEMINI_RETRY_ATTEMPTS)
    delay = RETRY_INITIAL_DELAY
    attempt = 1
    while True:
        try:
            async with _http().post(generate_url(model), data=data, headers=headers) as response:
                if response.status == 200:
                    return types.GenerateContentResponse.model_validate_json(await response.read())
                error = await _error_of(response)
                if response.status not in RETRY_STATUSES or attempt == attempts:
                    raise error
        except aiohttp.ClientConnectionError:
            if attempt == attempts:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_DELAY)
        attempt += 1
