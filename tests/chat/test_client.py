"""The streaming client reads chunks as the wire sends them: fields it does not know are no error,
and the parts keep the wire's form (what the turn stores and sends back)."""

import json

import pytest
from aiohttp import web

from chat.agent.client import chunk_finish, chunk_parts, chunk_usage, generate_stream
from tests.loopback import app_serving

NEWER = {
    "candidates": [
        {
            "content": {
                "parts": [
                    {"text": "thinking it over", "thought": True},
                    {"text": "Hello", "thoughtSignature": "c2ln", "aFieldNewerThanTheSdk": 1},
                    {"functionCall": {"name": "read_file", "args": {"path": "a"}}, "text": None},
                ],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
            "someNewCandidateField": {"x": 1},
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 10,
        "candidatesTokenCount": 3,
        "thoughtsTokenCount": 2,
        "totalTokenCount": 15,
    },
    "modelVersion": "gemini-2.5-pro",
}


@pytest.fixture
async def upstream(settings):
    """A one-route upstream on loopback that streams the given chunks as Gemini's SSE does."""
    served: list[bytes] = []

    async def stream(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in served:
            await response.write(b"data: " + chunk + b"\r\n\r\n")
        return response

    app = web.Application()
    app.router.add_post("/v1beta/models/{model}", stream)
    async with app_serving(app) as base:
        settings.GEMINI_API_KEY = "test-key"
        settings.GEMINI_BASE_URL = base
        settings.GEMINI_API_VERSION = "v1beta"
        settings.GEMINI_RETRY_ATTEMPTS = 1
        yield served


async def _chunks(model="gemini-2.5-pro") -> list[dict]:
    return [chunk async for chunk in generate_stream(model, b'{"contents":[]}')]


async def test_a_chunk_with_fields_newer_than_the_sdk_is_read(upstream):
    upstream.append(json.dumps(NEWER).encode())

    [chunk] = await _chunks()

    assert chunk_parts(chunk) == [
        {"text": "thinking it over", "thought": True},
        {"text": "Hello", "thoughtSignature": "c2ln", "aFieldNewerThanTheSdk": 1},
        {"functionCall": {"name": "read_file", "args": {"path": "a"}}},
    ]
    assert chunk_finish(chunk) == "STOP"
    assert chunk_usage(chunk) == {"promptTokens": 10, "completionTokens": 5, "totalTokens": 15}


async def test_a_chunk_without_candidates_or_usage_has_nothing_to_read(upstream):
    upstream.append(b'{"modelVersion": "gemini-2.5-pro"}')

    [chunk] = await _chunks()

    assert chunk_parts(chunk) == [] and chunk_finish(chunk) is None and chunk_usage(chunk) is None


async def test_an_error_in_the_stream_is_the_sdks_api_error(upstream):
    from google.genai import errors as genai_errors

    upstream.append(b'{"modelVersion": "gemini-2.5-pro"}')
    upstream.append(b'{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}')

    with pytest.raises(genai_errors.ServerError) as raised:
        await _chunks()

    assert raised.value.code == 503 and "overloaded" in raised.value.message


async def test_a_chunk_that_is_not_an_object_cannot_be_read(upstream):
    upstream.append(b'["not", "an", "object"]')

    with pytest.raises(ValueError):
        await _chunks()
