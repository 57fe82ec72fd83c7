"""Django's Redis cache with one client, and so one connection pool, per process.

Django keeps a cache object per thread and per async context (`django.core.cache.caches` is
context-local), and each object makes its own client and connection pool. A request served from
a pool thread, in a context of its own, would so open a new Redis connection (and import-time
driver metadata with it) for its first cache call. Here every cache object of a process with the
same servers and options shares one client; redis-py's pools are thread-safe.
"""

import threading

from django.core.cache.backends.redis import RedisCache
from django.utils.functional import cached_property

_clients: dict = {}
_lock = threading.Lock()


class ProcessRedisCache(RedisCache):
    @cached_property
    def _cache(self):
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        client = _clients.get(key)
        if client is None:
            with _lock:
                client = _clients.get(key)
                if client is None:
                    client = _clients[key] = self._class(self._servers, **self._options)
        return client
