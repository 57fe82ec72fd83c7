"""Turns that outlive their client: background turns, `GET /chat/stream` replay, join-session replay."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from sessions_app.models import Session
from tests.asgi_http import asgi_request
from tests.chat import test_websocket as ws
from tests.chat.conftest import history_of, scripted

# The socket fixtures of the WebSocket tests, used here by name.
_channel_layer_per_test = ws._channel_layer_per_test
connect = ws.connect
joined = ws.joined
signed_in = ws.signed_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("turns_settle")]

CHAT = "/api/v1/chat/message"
WORDS = ["one ", "two ", "three ", "four ", "five ", "six"]
SLOW = scripted({"text": WORDS, "delay": 0.3})


async def chat(session, token, message, **kwargs):
    body = {"sessionId": str(session.id), "message": message}
    body |= kwargs.pop("extra", {})
    return await asgi_request("POST", CHAT, body=body, token=token, **kwargs)


async def attach(session, token, **headers):
    return await asgi_request(
        "GET", f"/api/v1/chat/stream?sessionId={session.id}", token=token, headers=headers
    )


def first_content(response) -> bool:
    return b'"content"' in response.body


async def claimed(session) -> bool:
    return await sync_to_async(lambda: Session.objects.get(pk=session.id).turn_id is not None)()


async def until(predicate, what: str, timeout: float = 10):
    for _ in range(int(timeout / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def texts(frames) -> str:
    return "".join(f["data"]["text"] for f in frames if f["type"] == "content")


async def test_stream_answers_204_when_no_turn_runs(session, token):
    response = await attach(session, token)

    assert response.status == 204
    assert response.body == b""


async def test_stream_of_another_users_session_is_404(make_session, other_user, token):
    theirs = await sync_to_async(make_session)(owner=other_user)

    response = await attach(theirs, token)

    assert response.status == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_a_bad_last_event_id_is_400(session, token):
    response = await attach(session, token, **{"Last-Event-ID": "abc"})

    assert response.status == 400
    assert response.json()["error"]["code"] == "bad_request"


async def test_a_background_turn_outlives_its_client_and_replays_from_its_start(
    session, token, fake_gemini
):
    started = await chat(
        session, token, SLOW, extra={"background": True}, hang_up_when=first_content
    )
    assert started.status == 200
    assert await claimed(session), "the turn stopped with its client"

    replay = await attach(session, token)

    assert replay.status == 200
    assert replay.headers["content-type"] == "text/event-stream"
    frames = replay.frames
    assert [int(f["_id"]) for f in frames] == list(range(1, len(frames) + 1))
    assert texts(frames) == "".join(WORDS)
    assert frames[-1]["type"] == "done" and frames[-1]["data"]["finishReason"] == "STOP"
    # The client that started it saw the same frames under the same ids.
    seen = started.frames
    assert seen and seen == frames[: len(seen)]
    history = await history_of(session)
    assert history[-1]["text"] == "".join(WORDS)
    assert history[-1]["id"] == frames[-1]["data"]["messageId"]
    assert history[-1]["finishReason"] == "STOP"


async def test_last_event_id_replays_only_what_came_after(session, token, fake_gemini):
    started = await chat(
        session, token, SLOW, extra={"background": True}, hang_up_when=first_content
    )
    last_seen = int(started.frames[-1]["_id"])

    rest = await attach(session, token, **{"Last-Event-ID": str(last_seen)})

    ids = [int(f["_id"]) for f in rest.frames]
    assert ids == list(range(last_seen + 1, last_seen + 1 + len(ids)))
    assert texts(started.frames) + texts(rest.frames) == "".join(WORDS)
    assert rest.frames[-1]["type"] == "done"


async def test_a_turn_without_background_still_stops_with_its_client(session, token, fake_gemini):
    await chat(session, token, SLOW, hang_up_when=first_content)

    await until(lambda: _released(session), "the turn to stop")
    history = await history_of(session)
    assert history[-1]["finishReason"] == "CANCELLED"
    assert (await attach(session, token)).status == 204


async def _released(session) -> bool:
    return not await claimed(session)


async def test_joining_a_session_replays_its_running_turn(
    session,
    token,
    user,
    joined,
    fake_gemini,
):
    sse = asyncio.create_task(chat(session, token, SLOW))
    await until(lambda: claimed(session), "the turn to start")
    await asyncio.sleep(0.5)  # a few frames go by before the socket joins

    socket = await joined(user, session)
    frames = await socket.until("gemini:done", timeout=15)

    response = await sse
    contents = [f["data"]["text"] for f in frames if f["event"] == "gemini:content"]
    assert "".join(contents) == "".join(WORDS)
    assert [f["event"] for f in frames][-2:] == ["gemini:usage", "gemini:done"]
    assert all(f["data"]["sessionId"] == str(session.id) for f in frames)
    assert len(frames) == len(response.frames)
    await socket.still_open()
