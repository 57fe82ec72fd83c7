"""The live monitoring stream goes on across a Redis restart: it subscribes again and replays what it missed."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from accounts.services import token_pair_issue
from monitoring.models import AuditAction, EventType
from monitoring.services import event_record
from tests.asgi_http import asgi_request

pytestmark = pytest.mark.django_db(transaction=True)


def _data_frames(response) -> list[bytes]:
    return [line for line in b"".join(response.chunks).split(b"\n") if line.startswith(b"data:")]


def _record(user, action):
    event_record(type=EventType.AUTH, action=action, user=user, data={"mark": str(action)})


async def test_the_stream_outlives_a_redis_restart(private_redis, admin_user, user):
    token = (await sync_to_async(token_pair_issue)(user=admin_user))["accessToken"]
    connected = asyncio.Event()

    def until_two_events(response) -> bool:
        if b": connected" in b"".join(response.chunks):
            connected.set()
        return len(_data_frames(response)) >= 2

    stream = asyncio.create_task(
        asgi_request(
            "GET",
            "/api/v1/monitoring/stream?type=auth",
            token=token,
            hang_up_when=until_two_events,
            timeout=30,
        )
    )
    await asyncio.wait_for(connected.wait(), 20)

    await sync_to_async(_record)(user, AuditAction.LOGIN)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(private_redis.restart)
    # Published while the stream's subscription is gone: only the replay can bring it.
    await sync_to_async(_record)(user, AuditAction.LOGIN_FAILED)

    response = await stream

    frames = b"".join(_data_frames(response))
    assert response.status == 200
    assert b'"action":"login"' in frames
    assert b'"action":"login_failed"' in frames
