"""The process's synchronous Redis client (REDIS_URL), for the hot paths that talk to Redis directly.

One client and one thread-safe connection pool per process (and per REDIS_URL, which tests change),
with timeouts, so a Redis that hangs fails a call instead of holding its thread:
no new connection per request or thread, and none of the per-context lookups of Django's cache
proxy. None when REDIS_URL is not set (the embedded defaults).
"""

import threading

import redis
from django.conf import settings

_held: tuple[str, redis.Redis] | None = None
_lock = threading.Lock()


def redis_client() -> redis.Redis | None:
    global _held
    url = settings.REDIS_URL
    if not url:
        return None
    held = _held
    if held is None or held[0] != url:
        with _lock:
            held = _held
            if held is None or held[0] != url:
                held = _held = (
                    url,
                    redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5),
                )
    return held[1]
