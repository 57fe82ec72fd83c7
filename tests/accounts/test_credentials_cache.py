"""Credentials a process holds (accounts.credentials): read once, then no query per request, and
dropped at once, on every process, when the user or one of their keys changes."""

import base64
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts import authentication, credentials
from accounts.credentials import credentials_listen
from accounts.models import ApiKey
from accounts.services import api_key_create, token_pair_issue, user_update
from tests.accounts.conftest import ME_URL, assert_error

pytestmark = pytest.mark.django_db


def key_client(raw: str):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client


def me_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(ME_URL).status_code == 200
    return len(queries)


def test_a_known_api_key_costs_no_query_from_its_second_use_on(user):
    _key, raw = api_key_create(user=user)
    client = key_client(raw)
    assert client.get(ME_URL).status_code == 200  # learns the key's owner
    assert client.get(ME_URL).status_code == 200  # reads it with the owner's epoch

    assert me_queries(client) == 0


def test_a_jwt_users_second_request_costs_no_query(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user)['accessToken']}")
    assert client.get(ME_URL).status_code == 200

    assert me_queries(client) == 0


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda key, user: setattr(user, "is_active", False) or user.save(), id="user-saved"
        ),
        pytest.param(
            lambda key, user: setattr(key, "revoked_at", key.created_at) or key.save(),
            id="key-saved",
        ),
        pytest.param(lambda key, user: key.delete(), id="key-deleted"),
    ],
)
def test_a_change_saved_anywhere_is_seen_by_the_next_request(user, change):
    """The admin console and a shell save models directly: the model signals forget them."""
    key, raw = api_key_create(user=user)
    client = key_client(raw)
    for _ in range(2):
        assert client.get(ME_URL).status_code == 200

    change(ApiKey.objects.get(pk=key.pk), ApiKey.objects.get(pk=key.pk).user)

    assert client.get(ME_URL).status_code == 401


def test_a_renamed_user_is_shown_renamed_at_once(user, admin_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user)['accessToken']}")
    assert client.get(ME_URL).json()["name"] != "Renamed"

    user_update(user=user, actor=admin_user, name="Renamed")

    assert client.get(ME_URL).json()["name"] == "Renamed"


def test_what_a_request_does_to_its_user_is_not_shared(user):
    from accounts.services import api_key_authenticate

    _key, raw = api_key_create(user=user)
    api_key_authenticate(raw)
    first = api_key_authenticate(raw)
    first.user.name = "changed by a request"

    assert api_key_authenticate(raw).user.name == user.name


def test_without_a_cache_lifetime_every_request_reads_the_database(user, settings):
    settings.CREDENTIALS_CACHE_SECONDS = 0
    _key, raw = api_key_create(user=user)
    client = key_client(raw)
    client.get(ME_URL)

    assert me_queries(client) >= 1


def _me(base_url: str, raw: str) -> int:
    request = urllib.request.Request(f"{base_url}{ME_URL}", headers={"X-API-Key": raw})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.django_db(transaction=True)
def test_a_key_revoked_through_one_process_is_refused_by_another_at_once(live_pool, user):
    first, second = live_pool("a"), live_pool("b")
    key, raw = api_key_create(user=user)
    for base_url in (first, second, first, second):
        assert _me(base_url, raw) == 200  # both processes now hold the key

    token = token_pair_issue(user=user)["accessToken"]
    request = urllib.request.Request(
        f"{first}/api/v1/auth/api-keys/{key.id}",
        method="DELETE",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 204

    assert _me(second, raw) == 401
    assert _me(first, raw) == 401


def test_a_revoked_key_answers_why(user):
    key, raw = api_key_create(user=user)
    client = key_client(raw)
    client.get(ME_URL)
    client.get(ME_URL)
    key.revoked_at = key.created_at
    key.save()

    body = assert_error(client.get(ME_URL), 401, "unauthenticated")
    assert "revoked" in json.dumps(body).lower()


@pytest.fixture
def heard(settings):
    """This process's listener for credential announcements, once subscribed (needs Redis)."""
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (set REDIS_URL): announcements go through it")
    credentials_listen()
    listener = credentials._announcements
    for _ in range(500):
        if listener.since is not None:
            return listener
        time.sleep(0.01)
    raise AssertionError("the listener did not subscribe")


def test_a_held_key_costs_no_redis_round_trip_while_announcements_are_heard(heard, user):
    _key, raw = api_key_create(user=user)
    epoch_key = credentials._epoch_key(user.pk)
    # The user's epoch key exists, so Redis can say when it was read; its value is past the small
    # integers Redis shares between keys (whose idle time any key holding them resets).
    credentials.redis_client().set(epoch_key, 1_000_000)
    credentials._epoch_move(user.pk)
    client = key_client(raw)
    assert client.get(ME_URL).status_code == 200  # learns the key's owner
    assert client.get(ME_URL).status_code == 200  # reads it, with the owner's epoch
    time.sleep(2.1)

    for _ in range(5):
        assert client.get(ME_URL).status_code == 200

    # Nothing read the epoch since (Redis keeps when a key was last touched, in seconds).
    assert credentials.redis_client().object("idletime", epoch_key) >= 2


def test_a_change_announced_by_another_process_is_never_missed(heard, user):
    # Whether the announcement is still on the socket, being read, or heard, the next check
    # sees it; the epoch moves as another process's change would move it.
    for _ in range(200):
        mark = credentials.credentials_epoch(user.pk)
        assert credentials.credentials_unchanged(user.pk, mark)
        credentials._epoch_move(user.pk)
        assert not credentials.credentials_unchanged(user.pk, mark)


def test_a_change_announced_while_a_key_is_read_leaves_it_unvouched(heard, user):
    _key, raw = api_key_create(user=user)
    client = key_client(raw)
    assert client.get(ME_URL).status_code == 200  # learns the key's owner
    heard_then = heard.heard_for(user.pk)
    credentials._epoch_move(user.pk)  # a change lands between the epoch read and the load
    for _ in range(500):
        if heard.heard_for(user.pk) != heard_then:
            break
        time.sleep(0.01)

    assert not heard.vouches(user.pk, time.monotonic() + 1, heard_then)


class SilentRedis:
    """A peer of our own on loopback that accepts the listener's handshake and subscription, then
    answers nothing more: a Redis whose connection died without anything saying so."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.server.getsockname()[1]}/0"
        self.connections: list[socket.socket] = []
        self.subscribed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                if b"SUBSCRIBE" in data.upper():
                    channel = data.split(b"\r\n")[-2]
                    conn.sendall(
                        b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(channel), channel)
                    )
                    self.subscribed.set()
                elif b"PING" not in data.upper():
                    conn.sendall(b"+OK\r\n")  # the client's handshake (CLIENT SETINFO ...)
        except OSError:
            return

    def close(self) -> None:
        self.server.close()
        for conn in self.connections:
            conn.close()


def test_a_listener_whose_redis_goes_silent_stops_vouching_and_reconnects(monkeypatch, settings):
    silent = SilentRedis()
    monkeypatch.setattr(credentials, "LISTENER_PING_SECONDS", 0.2)
    monkeypatch.setattr(credentials, "LISTENER_SILENCE_SECONDS", 1.0)
    monkeypatch.setattr(credentials, "_announcements", None)  # put back (and so stopped) after
    settings.REDIS_URL = silent.url
    try:
        credentials_listen()
        listener = credentials._announcements
        assert silent.subscribed.wait(10)
        for _ in range(500):  # subscribed: it vouches, for now
            if listener.since is not None:
                break
            time.sleep(0.01)
        assert listener.since is not None

        for _ in range(1000):  # its pings go unanswered: it gives up and connects again
            if len(silent.connections) >= 2:
                break
            time.sleep(0.01)

        assert len(silent.connections) >= 2
    finally:
        silent.close()


def bearer_client(raw: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_a_jwt_is_verified_once_then_known_by_its_text(user, monkeypatch):
    verified = []

    class CountedAccessToken(AccessToken):
        def __init__(self, *args, **kwargs):
            verified.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(authentication, "AccessToken", CountedAccessToken)
    client = bearer_client(token_pair_issue(user=user)["accessToken"])

    assert [client.get(ME_URL).status_code for _ in range(3)] == [200, 200, 200]
    assert len(verified) == 1


def test_a_held_jwt_is_refused_once_it_expires(user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=1))
    client = bearer_client(str(token))
    assert client.get(ME_URL).status_code == 200

    time.sleep(1.1)

    error = assert_error(client.get(ME_URL), 401, "unauthenticated")
    assert "expired" in error["message"]


def test_a_held_jwts_claims_under_another_name_are_refused(user, other_user):
    """The signature of a token the process holds, put on claims that name someone else."""
    raw = token_pair_issue(user=user)["accessToken"]
    assert bearer_client(raw).get(ME_URL).status_code == 200
    header, claims, signature = raw.split(".")
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    payload["user_id"] = str(other_user.id)
    forged_claims = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()

    forged = bearer_client(f"{header}.{forged_claims}.{signature}")

    assert_error(forged.get(ME_URL), 401, "unauthenticated")


def test_a_held_jwt_of_a_deactivated_user_is_refused_at_once(user):
    client = bearer_client(token_pair_issue(user=user)["accessToken"])
    assert client.get(ME_URL).status_code == 200

    user.is_active = False
    user.save()

    assert_error(client.get(ME_URL), 401, "unauthenticated")
