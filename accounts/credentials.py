"""Who a credential names, remembered by the process briefly and forgotten at once on a change.

Each request would otherwise read its API key and user (or its JWT's user) from the database.
Each user has a credentials epoch in Redis (with REDIS_URL, so every process sees it; in the
process on the embedded defaults); it moves on after any change to the user or to one of their
API keys commits (saved or deleted, by a service, the admin console or a shell), and the move is
announced on a Redis channel. A process keeps what it read with the epoch it saw *before*
reading, and uses it while it is younger than CREDENTIALS_CACHE_SECONDS and the epoch has not
moved.

Whether the epoch moved costs nothing while the process's listener (one thread) has been
subscribed to the announcements since before the epoch was read, has heard none for the user
since, and has none waiting unread on its socket; otherwise it costs one Redis GET. When Redis
cannot be read, the database is read each time; when it cannot be written, processes other than
the one that made the change may use what they hold for up to CREDENTIALS_CACHE_SECONDS (logged).

Callers get their own copies of the user and key: nothing a request does to them is shared.
"""

import logging
import select
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models.base import ModelState
from django.db.models.signals import post_delete, post_save
from redis import Redis

from gemini_server.shared_redis import redis_client

logger = logging.getLogger(__name__)

_EPOCH_PREFIX = "credentials-epoch:"
_CHANNEL = "credentials-changed"
# A bound on what a process holds (keys and users it has seen recently).
_MAX_ENTRIES = 10_000

# name -> (the user's epoch when it was read, the user's id, the value)
_entries: dict[str, tuple["_Mark", object, object]] = {}
# Who owns an API key (by prefix): learnt once, never changes.
_owners: dict[str, object] = {}
_lock = threading.Lock()

T = TypeVar("T")


# The epochs of the embedded defaults (no REDIS_URL: one process).
_local_epochs: dict[object, int] = {}


def _epoch_key(user_id) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:{_EPOCH_PREFIX}{user_id}"


def _epoch(user_id) -> object:
    """The user's epoch (None until their first change); raises when Redis is unreachable."""
    client = redis_client()
    if client is None:
        return _local_epochs.get(user_id)
    return client.get(_epoch_key(user_id))


def _epoch_move(user_id) -> None:
    client = redis_client()
    if client is None:
        with _lock:
            _local_epochs[user_id] = _local_epochs.get(user_id, 0) + 1
        return
    pipe = client.pipeline(transaction=True)
    pipe.incr(_epoch_key(user_id))
    pipe.publish(f"{settings.CACHE_KEY_PREFIX}:{_CHANNEL}", str(user_id))
    pipe.execute()


# The listener pings Redis every LISTENER_PING_SECONDS; silence for longer than
# LISTENER_SILENCE_SECONDS means the connection is gone, and the listener reconnects.
LISTENER_PING_SECONDS = 5
LISTENER_SILENCE_SECONDS = 15


class _Announcements:
    """The process's subscription to epoch moves: one thread, reconnecting after a failure."""

    def __init__(self, url: str):
        self.url = url
        # When the subscription was confirmed (time.monotonic()), and its socket; None while
        # not subscribed.
        self.since: float | None = None
        self.fileno: int | None = None
        self.reading = False
        # Announcements heard per user (by str(id)): an entry read before one is not trusted.
        self.heard: dict[str, int] = {}
        self.thread = threading.Thread(
            target=self._run, name="credentials-announcements", daemon=True
        )

    def _run(self) -> None:
        while _announcements is self:
            client = Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(f"{settings.CACHE_KEY_PREFIX}:{_CHANNEL}")
                fileno = pubsub.connection._sock.fileno()
                last_heard = pinged = time.monotonic()
                while _announcements is self:
                    if time.monotonic() - pinged > LISTENER_PING_SECONDS:
                        pubsub.ping("credentials-listener")  # answered with a "pong" message
                        pinged = time.monotonic()
                    select.select([fileno], [], [], 1.0)
                    # Raised before anything is read off the socket, lowered once all that was
                    # read is heard: `vouches` never misses an announcement in between.
                    self.reading = True
                    try:
                        while (message := pubsub.get_message(timeout=0)) is not None:
                            last_heard = time.monotonic()
                            if message["type"] == "subscribe":
                                self.fileno, self.since = fileno, time.monotonic()
                            elif message["type"] == "message":
                                self._heard(message["data"].decode())
                    finally:
                        self.reading = False
                    # Redis answers the PING every few seconds: a connection that stays silent
                    # is dead even if no error says so (a half-open socket).
                    if time.monotonic() - last_heard > LISTENER_SILENCE_SECONDS:
                        raise ConnectionError("Redis stopped answering the announcements' channel")
            except Exception:
                _warn_unreachable(
                    "Credential announcements cannot be heard (Redis unreachable): each use of a "
                    "held credential asks Redis"
                )
            finally:
                self.since, self.fileno = None, None
                pubsub.close()
                client.close()
            time.sleep(1.0)

    def _heard(self, user_id: str) -> None:
        with _lock:
            self.heard[user_id] = self.heard.get(user_id, 0) + 1
            _drop(user_id)

    def heard_for(self, user_id) -> int:
        return self.heard.get(str(user_id), 0)

    def vouches(self, user_id, read_at: float, heard: int) -> bool:
        """Whether an epoch read at `read_at` (when `heard` announcements for the user were
        known) still holds, without asking Redis."""
        since, fileno = self.since, self.fileno
        if since is None or fileno is None or since >= read_at:
            return False
        # In this order: nothing unread on the socket, nothing being read, nothing heard since.
        try:
            waiting, _, _ = select.select([fileno], [], [], 0)
        except (OSError, ValueError):
            return False
        return not waiting and not self.reading and self.heard_for(user_id) == heard


_announcements: _Announcements | None = None


def _listener() -> _Announcements | None:
    """The process's listener for REDIS_URL, started on first use (None without Redis)."""
    global _announcements
    url = settings.REDIS_URL
    if not url:
        return None
    listener = _announcements
    if listener is None or listener.url != url:
        with _lock:
            listener = _announcements
            if listener is None or listener.url != url:
                listener = _announcements = _Announcements(url)
                listener.thread.start()  # it runs while it is the process's listener
    return listener


def credentials_listen() -> None:
    """Starts this process's listener for credential announcements (with REDIS_URL)."""
    _listener()


class _Mark:
    """What was known of a user's credentials epoch at one moment: the epoch, when it was read,
    and how many announcements for the user had been heard then."""

    __slots__ = ("epoch", "heard", "read_at")

    def __init__(self, epoch, read_at: float, heard: int):
        self.epoch, self.read_at, self.heard = epoch, read_at, heard


def _mark(user_id) -> _Mark:
    """The user's epoch now; raises when Redis cannot be read."""
    listener = _listener()
    read_at = time.monotonic()
    heard = listener.heard_for(user_id) if listener is not None else 0
    return _Mark(_epoch(user_id), read_at, heard)


def _holds(user_id, mark: _Mark) -> bool:
    """Whether the epoch has not moved since `mark`: nothing to ask while the listener vouches
    for it, else one Redis GET (which raises when Redis cannot be read)."""
    listener = _listener()
    if listener is not None and listener.vouches(user_id, mark.read_at, mark.heard):
        return True
    return _epoch(user_id) == mark.epoch


# An epoch that could not be read (Redis away).
UNKNOWN = object()


def credentials_epoch(user_id) -> object:
    """The user's credentials epoch now, as an opaque mark for `credentials_unchanged`, or
    UNKNOWN when Redis cannot be read."""
    try:
        return _mark(user_id)
    except Exception:
        return UNKNOWN


def credentials_unchanged(user_id, mark) -> bool:
    """Whether nothing about the user's credentials changed since `mark` was taken. True when
    Redis cannot tell (a socket then relies on the channel layer's announcement and its periodic
    re-check)."""
    if mark is UNKNOWN:
        return credentials_epoch(user_id) is UNKNOWN
    try:
        return _holds(user_id, mark)
    except Exception:
        return True


def credential_cached(name: str, load: Callable[[], T | None], *, user_id=None) -> T | None:
    """What `load()` returns for `name` (an API key's prefix, a user id), from the process's
    memory while its user's epoch is unchanged; a None (nothing found) is never kept. `user_id`
    is the user it belongs to when known before loading (a JWT's); an API key's owner is learnt
    from its first load, and its answer is kept from the second on (an owner never changes)."""
    seconds = settings.CREDENTIALS_CACHE_SECONDS
    if seconds <= 0:
        return load()
    held = _entries.get(name)
    if held is not None:
        mark, owner, value = held
        if time.monotonic() - mark.read_at < seconds:
            try:
                if _holds(owner, mark):
                    return _copy(value)
            except Exception:
                _warn_unreachable()
                return load()
        user_id = owner
    if user_id is None:
        user_id = _owners.get(name)
    if user_id is None:
        value = load()
        if value is not None:
            _owners[name] = _user_id_of(value)
        return value
    # The epoch is read before the database: a change committed after this read moves it on (and
    # is heard after it), and the next use sees that.
    try:
        mark = _mark(user_id)
    except Exception:
        _warn_unreachable()
        return load()
    value = load()
    if value is not None and _user_id_of(value) == user_id:
        with _lock:
            if len(_entries) >= _MAX_ENTRIES:
                _entries.clear()
                _owners.clear()
            _entries[name] = (mark, user_id, value)
        return _copy(value)
    return value


_warned_at = 0.0


def _warn_unreachable(
    text: str = "Redis is unreachable: credentials are read from the database",
) -> None:
    """Once a minute at most: every request says it otherwise."""
    global _warned_at
    if time.monotonic() - _warned_at > 60:
        _warned_at = time.monotonic()
        logger.warning(text)


def _drop(user_id) -> None:
    """Forgets what is held for the user (under _lock)."""
    for name in [name for name, held in _entries.items() if str(held[1]) == str(user_id)]:
        del _entries[name]


def _user_id_of(value) -> object:
    """The user a held value belongs to: an API key's owner, or the user itself."""
    return value.user_id if hasattr(value, "user_id") else value.pk


def _copy(value):
    duplicate = _model_copy(value)
    if hasattr(value, "user_id"):
        duplicate.user = _model_copy(value.user)
    return duplicate


def _model_copy(instance):
    """What copy.copy makes of a model instance (its own field values and state), without the
    pickling protocol copy.copy goes through."""
    duplicate = instance.__class__.__new__(instance.__class__)
    duplicate.__dict__.update(instance.__dict__)
    state = duplicate._state = ModelState()
    state.__dict__.update(instance._state.__dict__)
    state.fields_cache = dict(instance._state.fields_cache)
    return duplicate


def credential_cached_touch(name: str, **fields) -> None:
    """Sets fields of what is held for `name` that are no credential (a key's last use)."""
    held = _entries.get(name)
    if held is not None:
        for field, value in fields.items():
            setattr(held[2], field, value)


def credentials_forget(user_id) -> None:
    """This process drops what it holds for the user now; once the change commits, the user's
    epoch moves on and every other process drops it at its next use."""
    with _lock:
        _drop(user_id)

    def publish():
        try:
            _epoch_move(user_id)
        except Exception:
            logger.warning(
                "Could not publish a credentials change of user %s: other processes may use what "
                "they hold for up to %s s",
                user_id,
                settings.CREDENTIALS_CACHE_SECONDS,
            )

    transaction.on_commit(publish)


def credentials_cache_clear() -> None:
    """Forgets everything this process holds (a test starting afresh)."""
    with _lock:
        _entries.clear()
        _owners.clear()


def _on_user_change(sender, instance, **kwargs) -> None:
    credentials_forget(instance.pk)


def _on_key_change(sender, instance, **kwargs) -> None:
    credentials_forget(instance.user_id)


def credentials_watch() -> None:
    """Connects the model signals that forget a user's credentials (AccountsConfig.ready)."""
    from accounts.models import ApiKey, User

    for signal in (post_save, post_delete):
        signal.connect(_on_user_change, sender=User, dispatch_uid=f"credentials-user-{signal}")
        signal.connect(_on_key_change, sender=ApiKey, dispatch_uid=f"credentials-key-{signal}")
