"""The Django admin as the monitoring console: the read-only trail, per-user activity, the live tail."""

import asyncio
import json
import re
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from chat.models import Message
from chat.turns.store import message_store
from monitoring.models import Event
from monitoring.services import event_record
from sessions_app.services import session_create
from tests.monitoring.conftest import TYPICAL_ACTION

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/monitoring/event/"
LIVE = "/admin/monitoring/event/live/"
ACTIVITY = "/admin/monitoring/event/activity/"


def shown(response) -> list[Event]:
    """The events on the changelist page, as rendered."""
    assert response.status_code == 200, response.content[:500]
    return list(response.context["cl"].result_list)


def record(type="chat", action=None, user=None, session_id=None, at=None, **data) -> Event:
    event = event_record(
        type=type,
        action=action or TYPICAL_ACTION[type],
        user=user,
        session_id=session_id,
        data=data,
    )
    if at is not None:
        Event.objects.filter(pk=event.pk).update(created_at=at)
        event.refresh_from_db()
    return event


@pytest.fixture
def engineer_client(user):
    client = Client()
    client.force_login(user)
    return client


def test_admin_client_is_an_admin_of_this_server(admin_client, admin_user):
    # pytest-django's admin_client logs in our admin_user: role=admin is what makes it staff.
    response = admin_client.get("/admin/")

    assert response.status_code == 200
    assert response.context["user"] == admin_user
    assert b"Events" in response.content


# The changelist.


def test_changelist_lists_events_newest_first_with_their_session_link(admin_client, user):
    session = session_create(user=user)
    note = record(user=user, session_id=session.id, text="hello there")

    response = admin_client.get(CHANGELIST)

    assert shown(response)[:2] == [note, Event.objects.get(action="create")]
    html = response.content.decode()
    assert f'href="{CHANGELIST}?session_id={session.id}"' in html
    assert "hello there" in html
    for link in (LIVE, ACTIVITY):
        assert f'href="{link}"' in html


def test_filter_by_type(admin_client, user):
    login = record("auth", "login", user=user)
    record("chat", user=user)

    response = admin_client.get(CHANGELIST, {"type__exact": "auth"})

    assert shown(response) == [login]


def test_filter_by_user(admin_client, user, other_user):
    mine = record(user=user)
    record(user=other_user)

    response = admin_client.get(CHANGELIST, {"user__id__exact": str(user.id)})

    assert shown(response) == [mine]
    assert user.email in response.content.decode()  # the user filter lists who has events


def test_filter_by_session(admin_client, user):
    first, second = session_create(user=user), session_create(user=user)
    note = record(user=user, session_id=first.id)
    record(user=user, session_id=second.id)

    response = admin_client.get(CHANGELIST, {"session_id": str(first.id)})

    assert shown(response) == [note, Event.objects.get(action="create", session_id=first.id)]


def test_filter_by_a_session_without_events_shows_none(admin_client, user):
    # A session's "events" link, when that session has no events left (pruned, or recorded
    # while monitoring was off), must show nothing rather than everything.
    Event.objects.all().delete()
    record(user=user)
    quiet = "9f1c2d3e-0000-4000-8000-000000000001"

    response = admin_client.get(CHANGELIST, {"session_id": quiet})

    assert shown(response) == []


def test_a_malformed_session_filter_is_refused_not_a_crash(admin_client, user):
    record(user=user, session_id=session_create(user=user).id)

    response = admin_client.get(CHANGELIST, {"session_id": "not-a-uuid"})

    # The admin's own answer to a bad lookup: back to the list with ?e=1.
    assert response.status_code == 302
    assert response.url.endswith("?e=1")


def test_date_hierarchy(admin_client):
    january = record(at=datetime(2026, 1, 15, 10, tzinfo=UTC))
    record(at=datetime(2026, 2, 3, 10, tzinfo=UTC))

    top = admin_client.get(CHANGELIST)
    month = admin_client.get(CHANGELIST, {"created_at__year": "2026", "created_at__month": "1"})
    day = admin_client.get(
        CHANGELIST,
        {"created_at__year": "2026", "created_at__month": "1", "created_at__day": "15"},
    )

    assert 'class="toplinks"' in top.content.decode()
    assert "created_at__month=1&amp;created_at__year=2026" in top.content.decode()
    assert shown(month) == [january]
    assert shown(day) == [january]


def test_search_finds_a_word_inside_the_data(admin_client, user):
    wanted = record("tool", "call", user=user, args={"command": "pytest -k flamingo"})
    record("tool", "call", user=user, args={"command": "ls"})

    response = admin_client.get(CHANGELIST, {"q": "flamingo"})

    assert shown(response) == [wanted]


def test_search_still_searches_action_and_email(admin_client, user, other_user):
    record(user=user)
    theirs = record(user=other_user)
    failed = record("auth", "login_failed", user_email="who@example.com")

    assert shown(admin_client.get(CHANGELIST, {"q": "other@"})) == [theirs]
    assert shown(admin_client.get(CHANGELIST, {"q": "login_failed"})) == [failed]


def test_search_in_data_keeps_the_filters(admin_client, user, other_user):
    mine = record("tool", "call", user=user, args={"file_path": "flamingo.txt"})
    record("chat", user=user, text="flamingo")
    record("tool", "call", user=other_user, args={"file_path": "flamingo.txt"})

    response = admin_client.get(
        CHANGELIST, {"q": "flamingo", "type__exact": "tool", "user__id__exact": str(user.id)}
    )

    assert shown(response) == [mine]


# Read-only evidence.


def test_events_cannot_be_added(admin_client):
    response = admin_client.get(CHANGELIST + "add/")

    assert response.status_code == 403


def test_the_change_page_is_read_only(admin_client, user):
    event = record(user=user, text="as it was")
    url = reverse("admin:monitoring_event_change", args=[event.pk])

    page = admin_client.get(url)
    posted = admin_client.post(url, {"action": "tampered", "data": "{}"})

    assert page.status_code == 200
    html = page.content.decode()
    assert "as it was" in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert '<div class="readonly">user_message</div>' in html
    assert posted.status_code == 403
    event.refresh_from_db()
    assert event.action == "user_message" and event.data == {"text": "as it was"}


def test_events_cannot_be_deleted(admin_client, user):
    event = record(user=user)

    listing = admin_client.get(CHANGELIST)
    delete_page = admin_client.get(reverse("admin:monitoring_event_delete", args=[event.pk]))
    bulk = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    )

    action_form = listing.context["action_form"]
    actions = [] if action_form is None else [c[0] for c in action_form.fields["action"].choices]
    assert "delete_selected" not in actions
    assert delete_page.status_code == 403
    assert bulk.status_code in (200, 302)
    assert Event.objects.filter(pk=event.pk).exists()


# Activity and live tail pages: admins only.


def test_activity_page_shows_events_and_tokens_per_user(admin_client, user, other_user):
    session = session_create(user=user)
    message_store(
        session=session,
        user=user,
        role="model",
        parts=[{"text": "an answer"}],
        usage={"promptTokens": 30, "completionTokens": 12, "totalTokens": 42},
    )
    record("error", "upstream_failure", user=user)
    record(user=other_user)

    response = admin_client.get(ACTIVITY)

    assert response.status_code == 200
    rows = {row["userEmail"]: row for row in response.context["rows"]}
    assert rows[user.email]["events"] == 3 and rows[user.email]["errors"] == 1
    assert rows[user.email]["totalTokens"] == 42 and rows[user.email]["promptTokens"] == 30
    assert rows[other_user.email]["events"] == 1
    html = response.content.decode()
    assert "<td>42</td>" in html
    assert f"{CHANGELIST}?user__id__exact={user.id}" in html
    assert response.context["per_type"] == {"session": 1, "chat": 2, "error": 1}


@pytest.mark.parametrize("url", [LIVE, ACTIVITY, CHANGELIST])
def test_console_pages_refuse_engineers_and_strangers(url, engineer_client, client):
    for who in (engineer_client, client):
        response = who.get(url)

        assert response.status_code == 302
        assert response.url.startswith("/admin/login/")


def test_live_tail_page_renders_with_a_short_lived_token(admin_client, admin_user):
    from rest_framework_simplejwt.tokens import AccessToken

    response = admin_client.get(LIVE)

    assert response.status_code == 200
    token = AccessToken(live_tail_token(response))
    assert token["user_id"] == str(admin_user.id) and token["role"] == "admin"
    assert token["exp"] - token["iat"] <= 10 * 60
    assert "monitoring:subscribe" in response.content.decode()


def live_tail_token(response) -> str:
    match = re.search(
        r'<script id="ws-token" type="application/json">(.*?)</script>', response.content.decode()
    )
    assert match, "the live tail page carries no ws-token"
    return json.loads(match.group(1))


# Links between the consoles.


def test_user_changelist_links_to_their_sessions_and_events(admin_client, user):
    session = session_create(user=user)

    users = admin_client.get("/admin/accounts/user/")
    sessions_url = f"/admin/sessions_app/session/?user__id__exact={user.id}"
    events_url = f"{CHANGELIST}?user__id__exact={user.id}"

    html = users.content.decode()
    assert escape(sessions_url) in html and escape(events_url) in html
    assert list(admin_client.get(sessions_url).context["cl"].result_list) == [session]
    assert shown(admin_client.get(events_url)) == [Event.objects.get(session_id=session.id)]


def test_session_admin_links_to_its_messages_and_events(admin_client, user):
    session = session_create(user=user)
    other = session_create(user=user)
    message = message_store(session=session, user=user, role="user", parts=[{"text": "hi"}])
    message_store(session=other, user=user, role="user", parts=[{"text": "elsewhere"}])

    page = admin_client.get(reverse("admin:sessions_app_session_change", args=[session.pk]))
    messages_url = f"/admin/chat/message/?session__id__exact={session.pk}"
    events_url = f"{CHANGELIST}?session_id={session.pk}"

    html = page.content.decode()
    assert escape(messages_url) in html and escape(events_url) in html
    assert escape(messages_url) in admin_client.get("/admin/sessions_app/session/").content.decode()
    assert list(admin_client.get(messages_url).context["cl"].result_list) == [message]
    assert [(e.action, e.session_id) for e in shown(admin_client.get(events_url))] == [
        ("user_message", session.id),
        ("create", session.id),
    ]
    assert Message.objects.count() == 2


# The live tail over a socket.


@pytest.mark.django_db(transaction=True)
async def test_the_live_tail_token_subscribes_over_the_websocket(admin_user, user):
    from channels.testing import WebsocketCommunicator

    from gemini_server.asgi import application

    client = Client()
    await sync_to_async(client.force_login)(admin_user)
    page = await sync_to_async(client.get)(LIVE)
    token = live_tail_token(page)

    # As the page's script does: ?token=<encodeURIComponent(token)>, then subscribe.
    socket = WebsocketCommunicator(application, f"/ws/?token={quote(token, safe='')}")
    connected, _ = await socket.connect(timeout=5)
    assert connected
    await socket.send_json_to({"event": "monitoring:subscribe", "data": {}})
    assert await frame_named(socket, "monitoring:subscribed") == {"types": []}

    event = await sync_to_async(event_record)(
        type="session", action="create", user=user, data={"title": "seen live"}
    )
    seen = await frame_named(socket, "monitoring:event")
    await socket.disconnect()

    assert seen["id"] == str(event.uuid)
    assert (seen["type"], seen["action"]) == ("session", "create")
    assert seen["userEmail"] == user.email and seen["data"]["title"] == "seen live"


async def frame_named(socket, name: str) -> dict:
    """The data of the next frame called `name`; others (`authenticated`) are skipped."""
    for _ in range(10):
        frame = await socket.receive_json_from(timeout=5)
        if frame["event"] == name:
            return frame["data"]
    raise AssertionError(f"no {name} frame")


@pytest.mark.django_db(transaction=True)
async def test_an_engineer_cannot_subscribe(user):
    from channels.testing import WebsocketCommunicator

    from accounts.services import token_pair_issue
    from gemini_server.asgi import application

    token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]
    socket = WebsocketCommunicator(application, f"/ws/?token={token}")
    assert (await socket.connect(timeout=5))[0]

    await socket.send_json_to({"event": "monitoring:subscribe", "data": {}})
    answer = await frame_named(socket, "error")
    await sync_to_async(event_record)(type="chat", action="user_message", user=user)
    nothing_more = await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()

    assert answer["code"] == "forbidden" and answer["event"] == "monitoring:subscribe"
    assert nothing_more


async def _live_tail_socket(base_url: str, token: str):
    import websockets

    ws_url = base_url.replace("http://", "ws://") + f"/ws/?token={quote(token, safe='')}"
    return await websockets.connect(ws_url, open_timeout=10)


async def _next_event(socket, name: str, where=lambda data: True) -> dict:
    async with asyncio.timeout(20):
        while True:
            frame = json.loads(await socket.recv())
            if frame["event"] == name and where(frame["data"]):
                return frame["data"]


async def test_the_live_tail_receives_an_event_from_another_server(live_servers, admin_user, user):
    import aiohttp

    from accounts.services import token_pair_issue

    server_a, server_b = live_servers(), live_servers()
    client = Client()
    await sync_to_async(client.force_login)(admin_user)
    token = live_tail_token(await sync_to_async(client.get)(LIVE))
    engineer_token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]

    socket = await _live_tail_socket(server_a, token)
    try:
        await socket.send(json.dumps({"event": "monitoring:subscribe", "data": {}}))
        await _next_event(socket, "monitoring:subscribed")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{server_b}/api/v1/sessions",
                json={"config": {"title": "from b"}},
                headers={"Authorization": f"Bearer {engineer_token}"},
            ) as created,
        ):
            assert created.status == 201
            session_id = (await created.json())["sessionId"]
        event = await _next_event(
            socket, "monitoring:event", lambda data: data["sessionId"] == session_id
        )
    finally:
        await socket.close()

    assert (event["type"], event["action"], event["sessionId"]) == ("session", "create", session_id)
    assert event["data"]["title"] == "from b"


# The live tail page's own JavaScript, in a real browser.


def _chromium() -> str | None:
    import shutil

    return next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )


class DevTools:
    """Just enough of the Chrome DevTools Protocol to load a page and read its DOM."""

    def __init__(self, socket):
        self.socket, self.next_id, self.session = socket, 0, None

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        await self.socket.send(json.dumps(message))
        async with asyncio.timeout(20):
            while True:
                answer = json.loads(await self.socket.recv())
                if answer.get("id") == self.next_id:
                    assert "error" not in answer, answer
                    return answer["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20):
        async with asyncio.timeout(timeout):
            while not (value := await self.evaluate(expression)):
                await asyncio.sleep(0.1)
        return value


@pytest.fixture
async def browser(tmp_path):
    import websockets

    executable = _chromium()
    if executable is None:
        pytest.skip("needs chromium (apt-get install -y chromium)")
    profile = tmp_path / "chromium-profile"
    process = await asyncio.create_subprocess_exec(
        executable,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        active = profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while not (active.exists() and len(active.read_text().splitlines()) >= 2):
                await asyncio.sleep(0.1)
        port, path = active.read_text().splitlines()[:2]
        async with websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as socket:
            yield DevTools(socket)
    finally:
        process.terminate()
        await process.wait()


async def open_live_tail(browser, base_url: str, admin, *, before_load: str = "") -> None:
    """Logs `admin` in (a session cookie) and opens the live tail page until it says it is live."""
    from django.conf import settings

    client = Client()
    await sync_to_async(client.force_login)(admin)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    target = await browser.call("Target.createTarget", url="about:blank")
    attached = await browser.call(
        "Target.attachToTarget", targetId=target["targetId"], flatten=True
    )
    browser.session = attached["sessionId"]
    if before_load:
        await browser.call("Page.enable")
        await browser.call("Page.addScriptToEvaluateOnNewDocument", source=before_load)
    await browser.call(
        "Network.setCookie", name=settings.SESSION_COOKIE_NAME, value=cookie, url=base_url
    )
    await browser.call("Page.navigate", url=base_url + LIVE)
    # The page's script sets this once the server answered monitoring:subscribed.
    assert await browser.wait_for("document.body && document.body.dataset.tail") == "live"
    assert await browser.evaluate("document.getElementById('state').textContent") == "live"


async def test_the_live_tail_page_shows_an_event_in_a_real_browser(
    live_servers, browser, admin_user, user
):
    import aiohttp

    from accounts.services import token_pair_issue

    server_a, server_b = live_servers(), live_servers()
    engineer_token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]
    await open_live_tail(browser, server_a, admin_user)

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server_b}/api/v1/sessions",
            json={"config": {"title": "seen in the browser"}},
            headers={"Authorization": f"Bearer {engineer_token}"},
        ) as created,
    ):
        assert created.status == 201
        session_id = (await created.json())["sessionId"]

    row = (
        "[...document.querySelectorAll('#tail tbody tr')]"
        f".find(tr => tr.cells[4].textContent === '{session_id[:8]}')"
    )
    cells = await browser.wait_for(f"({row} || null) && [...{row}.cells].map(td => td.textContent)")
    _, type_, action, email, _, data = cells
    assert (type_, action, email) == ("session", "create", user.email)
    assert "seen in the browser" in data

    # The type filter hides the row while it runs, and shows it again.
    pick = (
        "(v => {const s = document.getElementById('type');"
        " s.value = v; s.dispatchEvent(new Event('change'));})"
    )
    assert await browser.evaluate(f"{pick}('auth'); {row}.hidden") is True
    assert await browser.evaluate(f"{pick}(''); {row}.hidden") is False


# Lets the test drop the page's socket, as a network hiccup or a server restart would.
KEEP_SOCKETS = """
window.__sockets = [];
const PageSocket = window.WebSocket;
window.WebSocket = function (...args) { const s = new PageSocket(...args); window.__sockets.push(s); return s; };
"""


async def test_the_live_tail_page_stops_retrying_once_its_token_is_refused(
    live_servers, browser, admin_user
):
    server = live_servers()
    await open_live_tail(browser, server, admin_user, before_load=KEEP_SOCKETS)
    # The admin's account is closed while the page is open (saved, as the admin console does);
    # then the socket drops.
    admin_user.is_active = False
    await sync_to_async(admin_user.save)(update_fields=["is_active"])
    await browser.evaluate("window.__sockets[0].close(); true")

    # The page retries once, is refused (4401), and stops there instead of retrying forever.
    assert await browser.wait_for("document.body.dataset.tail === 'refused'")
    assert await browser.evaluate("document.getElementById('state').textContent") == (
        "signed out (4401): reload the page"
    )
    assert await browser.evaluate("window.__sockets.length") == 2
