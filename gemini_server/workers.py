"""Which server processes are alive: a name per process, and a short-lived Redis key it refreshes.

A turn's claim on a session names the process (worker) that runs it. With Redis each worker
refreshes `workers:alive:<id>` (TTL WORKER_TTL_SECONDS) every third of that TTL from a thread of
its own, so a worker that dies (SIGKILL, OOM, a lost host) is known dead within the TTL and its
claims can be taken over at once; a worker that stops cleanly deletes its key. The answer is
three-valued: True (alive), False (known dead), None (cannot tell: no Redis, Redis unreachable, or
the registry too young for a missing key to prove anything), and None leaves the decision to the
claim's heartbeat, as before.

A Redis that lost its data (a restart without persistence) misses every worker's key until they
refresh; the registry's birth time, kept in Redis by Redis's own clock, says when a missing key
starts to mean a dead worker: only once the registry is a full TTL old.
"""

import logging
import os
import secrets
import socket
import threading
import time

from django.conf import settings

from gemini_server.shared_redis import redis_client

logger = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(4)}"
_ALIVE_PREFIX = "workers:alive:"
_BORN_KEY = "workers:registry-born"
# Registers the registry's birth with Redis's own clock, once (NX), in one round trip.
_BORN_SCRIPT = "redis.call('SET', KEYS[1], redis.call('TIME')[1], 'NX') return 1"

_lock = threading.Lock()
_refresher: threading.Thread | None = None
_stop = threading.Event()
_retired = False
_warned_at = 0.0


def worker_id() -> str:
    """This process's name in claims: host, pid and a random part (pids are reused)."""
    return WORKER_ID


def _client():
    return redis_client()


def _key(worker: str) -> str:
    return f"{_ALIVE_PREFIX}{worker}"


def _ttl() -> int:
    return max(1, int(settings.WORKER_TTL_SECONDS))


def _refresh_once() -> None:
    client = _client()
    pipe = client.pipeline(transaction=False)
    pipe.set(_key(WORKER_ID), "1", ex=_ttl())
    pipe.eval(_BORN_SCRIPT, 1, _BORN_KEY)
    pipe.execute()


def _warn(message: str) -> None:
    global _warned_at
    now = time.monotonic()
    if now - _warned_at > 60:
        _warned_at = now
        logger.warning(message, exc_info=True)


def _refresh_forever() -> None:
    period = _ttl() / 3
    while not _stop.is_set():
        try:
            _refresh_once()
        except Exception:
            _warn("The worker registry cannot reach Redis; claims fall back to heartbeats")
        _stop.wait(period)


def worker_start() -> None:
    """Announces this process as alive and keeps it announced (idempotent; Redis only)."""
    global _refresher
    if not settings.REDIS_URL or _retired:
        return
    with _lock:
        if _refresher is not None and _refresher.is_alive():
            return
        _stop.clear()
        try:
            _refresh_once()  # known alive before the first claim that names it
        except Exception:
            _warn("The worker registry cannot reach Redis; claims fall back to heartbeats")
        _refresher = threading.Thread(target=_refresh_forever, name="worker-alive", daemon=True)
        _refresher.start()


def worker_retire() -> None:
    """A clean stop: the key goes at once, so claims this process still held are free now."""
    global _retired
    _retired = True
    _stop.set()
    if _refresher is not None:
        _refresher.join(timeout=2)
    if settings.REDIS_URL:
        try:
            _client().delete(_key(WORKER_ID))
        except Exception:
            _warn("Could not remove this worker's key from Redis; it expires by itself")


def worker_alive(worker: str | None) -> bool | None:
    """Whether the process named `worker` runs: True, False (known dead) or None (cannot tell)."""
    if not worker:
        return None
    if worker == WORKER_ID:
        return not _retired
    if not settings.REDIS_URL:
        return None  # one process without Redis: a restart frees old claims at startup
    try:
        pipe = _client().pipeline(transaction=False)
        pipe.exists(_key(worker))
        pipe.get(_BORN_KEY)
        pipe.time()
        exists, born, (now, _micro) = pipe.execute()
    except Exception:
        _warn("The worker registry cannot reach Redis; claims fall back to heartbeats")
        return None
    if exists:
        return True
    if born is None or now - int(born) < _ttl():
        return None
    return False
