"""Database work from async code (turns, sockets, SSE streams): `db_async(func)(...)`.

Each call runs in the process's bounded thread pool (`threads_configure`, SYNC_THREADS threads)
and gives its connection back to the database pool when it ends. Channels'
`database_sync_to_async` is thread-sensitive: outside a request's own context every such call of
the process would queue for one thread, which a few hundred running turns (drafts, heartbeats,
decisions) would saturate. It also closes connections outside the context the function ran in,
where asgiref (3.9 on) keeps the thread's connections apart, so they stayed checked out of the
pool; here they are given back inside it.
"""

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import close_old_connections


def db_async(func):
    @functools.wraps(func)
    def released(*args, **kwargs):
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return SyncToAsync(released, thread_sensitive=False)


def threads_configure(loop: asyncio.AbstractEventLoop) -> None:
    """The pool that synchronous work of a serving process runs in (requests, database calls,
    `asyncio.to_thread`): as many threads as there are pooled database connections, so a thread
    never waits for a connection."""
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=settings.SYNC_THREADS, thread_name_prefix="sync")
    )
