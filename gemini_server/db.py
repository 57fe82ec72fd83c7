"""Synchronous work from async code (requests, turns, sockets, SSE streams): `db_async(func)(...)`.

Each call runs in the process's bounded thread pool (`threads_configure`, SYNC_THREADS threads)
in a copy of the caller's context, and gives its database connection back to the pool when it
ends. This is one `run_in_executor` per call: asgiref's `SyncToAsync`, which channels'
`database_sync_to_async` and Django's handler use, builds a wrapper, a shielded future and two
context copies per call, which was a third of a small request's CPU. Channels' version is also
thread-sensitive: outside a request's own context every such call of the process would queue for
one thread, which a few hundred running turns (drafts, heartbeats, decisions) would saturate.

What a call changes in its context (contextvars) stays in its copy, as with `asyncio.to_thread`;
a request's id is carried back explicitly (`gemini_server.request_id.request_id_adopt`).
A call's thread knows the loop it serves, so `async_to_sync` inside a call runs its coroutine on
that loop, as it does under `SyncToAsync`.
"""

import asyncio
import contextvars
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import close_old_connections

_serving = threading.local()


def serving_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop whose synchronous work this thread is doing (in `db_call`), if
    any: what the thread may hand async work to instead of waiting for it."""
    loop = getattr(_serving, "loop", None)
    return loop if loop is not None and loop.is_running() else None


def _released(loop, func, args, kwargs):
    _serving.loop = loop
    # What asgiref's SyncToAsync sets in its threads, read by AsyncToSync to find the loop.
    SyncToAsync.threadlocal.main_event_loop = loop
    SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
    close_old_connections()
    try:
        return func(*args, **kwargs)
    finally:
        close_old_connections()


async def db_call(func, /, *args, **kwargs):
    """`func(*args, **kwargs)` in the pool, its connections given back when it returns."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    return await loop.run_in_executor(None, context.run, _released, loop, func, args, kwargs)


def db_async(func):
    """`func` as a coroutine function that runs it through `db_call`."""

    @functools.wraps(func)
    async def call(*args, **kwargs):
        return await db_call(func, *args, **kwargs)

    return call


def threads_configure(loop: asyncio.AbstractEventLoop) -> None:
    """The pool that synchronous work of a serving process runs in (requests, database calls,
    `asyncio.to_thread`): as many threads as there are pooled database connections, so a thread
    never waits for a connection."""
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=settings.SYNC_THREADS, thread_name_prefix="sync")
    )
