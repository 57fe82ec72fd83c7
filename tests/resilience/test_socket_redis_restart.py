"""A WebSocket outlives a Redis restart: it stays open, renews its memberships and hears its session again."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from channels.testing import WebsocketCommunicator

from chat import protocol
from gemini_server.asgi import application
from tests.chat.conftest import scripted

pytestmark = pytest.mark.django_db(transaction=True)


async def _until(communicator, event: str, timeout: float = 20) -> list[dict]:
    frames = []
    async with asyncio.timeout(timeout):
        while True:
            output = await communicator.receive_output(timeout)
            assert output["type"] == "websocket.send", output
            frames.append(json.loads(output["text"]))
            if frames[-1]["event"] == event:
                return frames


async def test_a_websocket_outlives_a_redis_restart(
    private_redis, monkeypatch, session, token, fake_gemini
):
    monkeypatch.setattr(protocol, "MEMBERSHIP_RENEW_SECONDS", 0.5)
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    communicator = WebsocketCommunicator(application, f"/ws/?token={token}")
    connected, _ = await communicator.connect(timeout=20)
    assert connected
    try:
        await _until(communicator, "authenticated")
        await communicator.send_json_to(
            {"event": "join-session", "data": {"sessionId": str(session.id)}}
        )
        await _until(communicator, "session:joined")

        await asyncio.to_thread(private_redis.restart)
        await asyncio.sleep(3)  # the reader reconnects; memberships are renewed

        await communicator.send_json_to({"event": "ping", "data": {}})
        await _until(communicator, "pong")
        await communicator.send_json_to(
            {"event": "chat:message", "data": {"content": scripted({"text": "still here"})}}
        )
        frames = await _until(communicator, "gemini:done")
    finally:
        await communicator.disconnect(timeout=20)
        layer = channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
        if hasattr(layer, "close_pools"):
            await layer.close_pools()

    texts = [f["data"]["text"] for f in frames if f["event"] == "gemini:content"]
    assert "".join(texts) == "still here"
    assert (
        await sync_to_async(lambda: session.__class__.objects.get(pk=session.id).turn_id)() is None
    )
