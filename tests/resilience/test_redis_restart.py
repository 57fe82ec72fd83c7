"""A Redis restart while a turn waits: the confirmation and the cancel still reach it."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat.models import Message
from sessions_app.models import Session
from tests.asgi_http import asgi_request
from tests.chat.conftest import scripted

pytestmark = pytest.mark.django_db(transaction=True)

WRITE = {"calls": [{"name": "write_file", "args": {"file_path": "out.txt", "content": "kept\n"}}]}


def _waiting_call_id(session) -> str | None:
    if Session.objects.get(pk=session.id).turn_id is None:
        return None
    last = Message.objects.filter(session_id=session.id, role="model").order_by("-seq").first()
    for part in last.parts if last else []:
        if "functionCall" in part:
            return part["functionCall"]["id"]
    return None


async def _when_waiting(session) -> str:
    for _ in range(400):
        call_id = await sync_to_async(_waiting_call_id)(session)
        if call_id:
            return call_id
        await asyncio.sleep(0.05)
    raise AssertionError("the turn never asked for confirmation")


def _frames(response, kind):
    return [frame["data"] for frame in response.frames if frame["type"] == kind]


async def test_confirmation_lands_after_a_redis_restart(
    private_redis, session, token, workspace, fake_gemini
):
    async def confirm_across_restart():
        call_id = await _when_waiting(session)
        await asyncio.to_thread(private_redis.restart)
        return await asgi_request(
            "POST",
            "/api/v1/chat/confirm",
            body={"sessionId": str(session.id), "callId": call_id, "outcome": "proceed_once"},
            token=token,
        )

    confirming = asyncio.create_task(confirm_across_restart())
    response = await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={"sessionId": str(session.id), "message": scripted(WRITE, {"text": "Done."})},
        token=token,
    )
    confirmed = await confirming

    assert confirmed.status == 200
    assert _frames(response, "tool_result")[0]["status"] == "success"
    assert _frames(response, "done")[0]["finishReason"] == "STOP"
    assert (workspace / "out.txt").read_text() == "kept\n"


async def test_cancel_lands_after_a_redis_restart(private_redis, session, token, fake_gemini):
    async def cancel_across_restart():
        await _when_waiting(session)
        await asyncio.to_thread(private_redis.restart)
        return await asgi_request(
            "POST", "/api/v1/chat/cancel", body={"sessionId": str(session.id)}, token=token
        )

    cancelling = asyncio.create_task(cancel_across_restart())
    response = await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={"sessionId": str(session.id), "message": scripted(WRITE, {"text": "Done."})},
        token=token,
    )
    cancelled = await cancelling

    assert cancelled.status == 200
    assert _frames(response, "done")[0]["finishReason"] == "CANCELLED"
    assert await sync_to_async(lambda: Session.objects.get(pk=session.id).turn_id)() is None
