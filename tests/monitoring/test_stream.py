"""The live SSE stream of events: in order, filtered, replayed after Last-Event-ID, across processes."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from accounts.services import token_pair_issue
from monitoring.services import event_record
from tests.asgi_http import asgi_request
from tests.monitoring.conftest import event_rows

pytestmark = pytest.mark.django_db(transaction=True)

STREAM = "/api/v1/monitoring/stream"
WAIT = 20


async def token_of(user) -> str:
    return (await sync_to_async(token_pair_issue)(user=user))["accessToken"]


class Subscriber:
    """A stream request running in the background; it hangs up after `frames` events or once `until(frames)`."""

    def __init__(self, token: str, *, frames=0, until=None, query: str = "", headers=None):
        self.connected = asyncio.Event()
        self.until = until or (lambda seen: len(seen) >= frames)
        self.task = asyncio.create_task(
            asgi_request(
                "GET",
                STREAM + query,
                token=token,
                headers=headers,
                hang_up_when=self._enough,
                timeout=60,
            )
        )

    def _enough(self, response) -> bool:
        if b": connected\n\n" in response.body:
            self.connected.set()
        return self.until(response.frames)

    async def ready(self) -> "Subscriber":
        waiter = asyncio.create_task(self.connected.wait())
        await asyncio.wait({waiter, self.task}, timeout=WAIT, return_when="FIRST_COMPLETED")
        waiter.cancel()
        assert self.connected.is_set(), "the stream never said it was connected"
        return self

    async def result(self):
        return await asyncio.wait_for(self.task, WAIT)


def frame_ids(response) -> list[str]:
    return [frame["_id"] for frame in response.frames]


async def test_a_subscriber_sees_the_whole_story_in_order(story_runner, admin_user):
    def story_over(frames) -> bool:
        return any(f["action"] == "delete" for f in frames)

    subscriber = await Subscriber(await token_of(admin_user), until=story_over).ready()

    story = await story_runner()
    response = await subscriber.result()

    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    rows = await sync_to_async(event_rows)()
    assert frame_ids(response) == [row["id"] for row in rows]
    assert [(f["type"], f["action"], f["userEmail"], f["sessionId"]) for f in response.frames] == (
        story.expected
    )
    # Each frame is the event as the REST API renders it, its id the event's id.
    assert all(frame["id"] == frame["_id"] for frame in response.frames)
    assert response.comments[0] == ": connected"


async def test_last_event_id_replays_what_was_missed_then_goes_live(story_runner, admin_user, user):
    story = await story_runner()
    rows = await sync_to_async(event_rows)()
    k = 5
    missed = [row["id"] for row in rows[k:]]
    token = await token_of(admin_user)

    subscriber = await Subscriber(
        token, frames=len(missed) + 1, headers={"Last-Event-ID": rows[k - 1]["id"]}
    ).ready()
    live = await sync_to_async(event_record)(type="chat", action="user_message", user=user)
    response = await subscriber.result()

    assert len(missed) == len(story.expected) - k
    assert frame_ids(response) == [*missed, str(live.uuid)]
    assert len(set(frame_ids(response))) == len(response.frames)
    # The replay comes before the stream says it is live.
    body = response.body.decode()
    assert body.index(missed[-1]) < body.index(": connected") < body.index(str(live.uuid))


async def test_last_event_id_of_the_newest_event_replays_nothing(admin_user, user):
    newest = await sync_to_async(event_record)(type="auth", action="login", user=user)
    subscriber = await Subscriber(
        await token_of(admin_user), frames=1, headers={"Last-Event-ID": str(newest.uuid)}
    ).ready()

    live = await sync_to_async(event_record)(type="auth", action="login", user=user)
    response = await subscriber.result()

    assert frame_ids(response) == [str(live.uuid)]


async def test_replay_honours_the_filters(admin_user, user, other_user):
    first = await sync_to_async(event_record)(type="chat", action="user_message", user=user)
    missed_tool = await sync_to_async(event_record)(type="tool", action="call", user=user)
    await sync_to_async(event_record)(type="tool", action="call", user=other_user)
    await sync_to_async(event_record)(type="chat", action="user_message", user=user)

    subscriber = await Subscriber(
        await token_of(admin_user),
        frames=2,
        query=f"?type=tool&userId={user.id}",
        headers={"Last-Event-ID": str(first.uuid)},
    ).ready()
    live_tool = await sync_to_async(event_record)(type="tool", action="call", user=user)
    response = await subscriber.result()

    assert frame_ids(response) == [str(missed_tool.uuid), str(live_tool.uuid)]


async def test_type_and_user_filters_apply_live(admin_user, user, other_user):
    subscriber = await Subscriber(
        await token_of(admin_user), frames=2, query=f"?type=session,auth&userId={user.id}"
    ).ready()
    engineer_token = await token_of(user)
    other_token = await token_of(other_user)

    # Not shown: another user's session, and this user's chat and error events.
    assert (
        await asgi_request("POST", "/api/v1/sessions", body={}, token=other_token)
    ).status == 201
    await sync_to_async(event_record)(type="chat", action="user_message", user=user)
    await sync_to_async(event_record)(type="error", action="upstream_failure", user=user)
    # Shown.
    created = await asgi_request("POST", "/api/v1/sessions", body={}, token=engineer_token)
    await sync_to_async(event_record)(type="auth", action="api_key_create", user=user)
    response = await subscriber.result()

    assert [(f["type"], f["action"], f["userId"]) for f in response.frames] == [
        ("session", "create", str(user.id)),
        ("auth", "api_key_create", str(user.id)),
    ]
    assert response.frames[0]["sessionId"] == created.json()["sessionId"]


async def test_bad_filters_are_refused_before_streaming(admin_user):
    token = await token_of(admin_user)

    bad_type = await asgi_request("GET", STREAM + "?type=nope", token=token, timeout=5)
    bad_user = await asgi_request("GET", STREAM + "?userId=42", token=token, timeout=5)

    assert bad_type.status == bad_user.status == 400
    assert bad_type.json()["error"]["code"] == "validation_error"
    assert "userId" in bad_user.json()["error"]["details"]


@pytest.mark.parametrize(
    ("headers", "query"), [({"Last-Event-ID": "42"}, ""), ({}, "?lastEventId=not-an-id")]
)
async def test_a_malformed_last_event_id_is_refused_before_streaming(admin_user, headers, query):
    response = await asgi_request(
        "GET", STREAM + query, token=await token_of(admin_user), headers=headers, timeout=5
    )

    assert response.status == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "Last-Event-ID" in response.json()["error"]["details"]


async def test_an_unknown_last_event_id_goes_live_without_replay(admin_user, user):
    await sync_to_async(event_record)(type="chat", action="user_message", user=user)
    pruned = "00000000-0000-4000-8000-000000000000"
    subscriber = await Subscriber(
        await token_of(admin_user), frames=1, query=f"?lastEventId={pruned}"
    ).ready()

    live = await sync_to_async(event_record)(type="chat", action="user_message", user=user)
    response = await subscriber.result()

    assert frame_ids(response) == [str(live.uuid)]


async def test_a_silent_stream_sends_keep_alives(admin_user, settings):
    settings.SSE_KEEPALIVE_SECONDS = 0.05

    def two_keep_alives(response) -> bool:
        return response.body.count(b": keep-alive") >= 2

    response = await asgi_request(
        "GET", STREAM, token=await token_of(admin_user), hang_up_when=two_keep_alives, timeout=10
    )

    assert response.status == 200
    assert response.comments[:3] == [": connected", ": keep-alive", ": keep-alive"]
    assert response.frames == []


async def test_an_event_recorded_on_one_server_reaches_a_stream_on_another(
    live_servers, admin_user, user
):
    import aiohttp

    server_a, server_b = live_servers(), live_servers()
    admin_token, engineer_token = await token_of(admin_user), await token_of(user)

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http,
        http.get(
            f"{server_a}{STREAM}?type=session",
            headers={"Authorization": f"Bearer {admin_token}"},
        ) as stream,
    ):
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        async with asyncio.timeout(WAIT):
            while await read_line(stream.content) != ": connected":
                pass

        async with http.post(
            f"{server_b}/api/v1/sessions",
            json={},
            headers={"Authorization": f"Bearer {engineer_token}"},
        ) as created:
            assert created.status == 201
            session_id = (await created.json())["sessionId"]

        async with asyncio.timeout(WAIT):
            while True:
                frame = await read_frame(stream.content)
                if frame["event"].get("sessionId") == session_id:
                    break

    event = frame["event"]
    assert (event["type"], event["action"], event["userId"]) == ("session", "create", str(user.id))
    assert frame["id"] == event["id"]


async def read_line(content) -> str:
    raw = await content.readline()
    assert raw, "the server closed the stream"
    return raw.decode().rstrip("\n")


async def read_frame(content) -> dict:
    """The next SSE frame with data, read line by line off the wire: its id and its event."""
    fields = {}
    while True:
        line = await read_line(content)
        if not line:
            if "data" in fields:
                return {"id": fields.get("id"), "event": json.loads(fields["data"])}
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


async def test_keep_alives_never_lose_an_event(admin_user, user, settings):
    # Every keep-alive interrupts the wait for the next event; with channels_redis an interrupted
    # receive() used to drop the message it was reading. Keep-alives every millisecond make that
    # window wide open while 200 events go by.
    settings.SSE_KEEPALIVE_SECONDS = 0.001
    subscriber = await Subscriber(await token_of(admin_user), frames=200).ready()

    recorded = []
    for n in range(200):
        event = await sync_to_async(event_record)(
            type="chat", action="user_message", user=user, data={"n": n}
        )
        recorded.append(str(event.uuid))
        if n % 10 == 0:
            await asyncio.sleep(0.005)  # let keep-alives interleave with the events
    response = await subscriber.result()

    assert frame_ids(response) == recorded
    assert response.body.count(b": keep-alive") > 0
