"""Who a credential names, remembered by the process briefly and forgotten at once on a change.

Each request would otherwise read its API key and user (or its JWT's user) from the database.
Each user has a credentials epoch in Redis (with REDIS_URL, so every process sees it; in the
process on the embedded defaults); it moves on after any change to the user or to one of their API keys commits
(saved or deleted, by a service, the admin console or a shell). A process keeps what it read with
the epoch it saw *before* reading, and uses it while it is younger than
CREDENTIALS_CACHE_SECONDS and the epoch has not moved: one Redis GET instead of a query. When
Redis cannot be read, the database is read each time; when it cannot be written, processes
other than the one that made the change may use what they hold for up to
CREDENTIALS_CACHE_SECONDS (logged).

Callers get their own copies of the user and key: nothing a request does to them is shared.
"""

import copy
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from gemini_server.shared_redis import redis_client

logger = logging.getLogger(__name__)

_EPOCH_PREFIX = "credentials-epoch:"
# A bound on what a process holds (keys and users it has seen recently).
_MAX_ENTRIES = 10_000

_entries: dict[str, tuple[float, object, object]] = {}
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
    client.incr(_epoch_key(user_id))


# An epoch that could not be read (Redis away).
UNKNOWN = object()


def credentials_epoch(user_id) -> object:
    """The user's credentials epoch now (None before their first change), or UNKNOWN."""
    try:
        return _epoch(user_id)
    except Exception:
        return UNKNOWN


def credentials_unchanged(user_id, epoch) -> bool:
    """Whether nothing about the user's credentials changed since `epoch` was read: one Redis GET.
    True when Redis cannot tell (a socket then relies on the announcement and its periodic
    re-check, as without the epoch)."""
    now = credentials_epoch(user_id)
    return now is UNKNOWN or now == epoch


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
        cached_at, epoch, value = held
        if time.monotonic() - cached_at < seconds:
            try:
                if _epoch(_user_id_of(value)) == epoch:
                    return _copy(value)
            except Exception:
                _warn_unreachable()
                return load()
        user_id = _user_id_of(value)
    if user_id is None:
        user_id = _owners.get(name)
    if user_id is None:
        value = load()
        if value is not None:
            _owners[name] = _user_id_of(value)
        return value
    # The epoch is read before the database: a change committed after this read moves it on, and
    # the next use sees that.
    try:
        epoch = _epoch(user_id)
    except Exception:
        _warn_unreachable()
        return load()
    value = load()
    if value is not None and _user_id_of(value) == user_id:
        with _lock:
            if len(_entries) >= _MAX_ENTRIES:
                _entries.clear()
                _owners.clear()
            _entries[name] = (time.monotonic(), epoch, value)
        return _copy(value)
    return value


_warned_at = 0.0


def _warn_unreachable() -> None:
    """Once a minute at most: every request says it otherwise."""
    global _warned_at
    if time.monotonic() - _warned_at > 60:
        _warned_at = time.monotonic()
        logger.warning("Redis is unreachable: credentials are read from the database")


def _user_id_of(value) -> object:
    """The user a held value belongs to: an API key's owner, or the user itself."""
    return value.user_id if hasattr(value, "user_id") else value.pk


def _copy(value):
    duplicate = copy.copy(value)
    if hasattr(value, "user_id"):
        duplicate.user = copy.copy(value.user)
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
        for name in [
            name for name, (_, _, value) in _entries.items() if _user_id_of(value) == user_id
        ]:
            del _entries[name]

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
