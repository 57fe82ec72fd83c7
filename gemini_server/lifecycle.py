"""A server process's life: set up on its first ASGI call, drained when it is asked to stop.

Running turns and open sockets register here, so the process knows what it would cut off (and
holds background turns that no client holds). `drain(seconds)` stops taking new work (a new chat
answers 503 `server_restarting`, a new socket is closed with 1012, /health/ready says draining),
lets running turns finish for `seconds`, stops the rest the way a cancel does (each stores what
it produced, tells its clients `server_restarting` and `done`, and releases its session), then
closes the open sockets with 1012 (service restart) so their clients reconnect elsewhere.

What calls `drain`: daphne has no ASGI lifespan, so on its first ASGI call the process puts its
own SIGTERM handler in front of the server's (Twisted's, or uvicorn's): the signal starts the
drain, and the server's own handler runs once the drain is over, so the server then stops as it
always does. A second SIGTERM cuts the waiting short. Servers that speak the ASGI lifespan
protocol (uvicorn, hypercorn) also get the drain from `lifespan.shutdown`; it runs once either way.
"""

import asyncio
import gc
import logging
import signal
import threading
import weakref
from collections.abc import Callable
from contextlib import suppress

from django.conf import settings

from gemini_server.db import db_async, threads_configure
from gemini_server.workers import worker_retire, worker_start

logger = logging.getLogger(__name__)

CLOSE_SERVICE_RESTART = 1012
# How long stopped turns get to store what they produced and say `done`.
STOP_TIMEOUT_SECONDS = 15
# Time for transports to write the last frames of the stopped turns before sockets close.
FLUSH_SECONDS = 0.3


class _State:
    def __init__(self):
        self.started: asyncio.Future | None = None
        self.draining = False
        self.drain_task: asyncio.Task | None = None
        self.hurry: asyncio.Event | None = None
        # Turns are held here (a background turn has no other owner); sockets are not.
        self.turns: set = set()
        self.sockets: weakref.WeakSet = weakref.WeakSet()
        self.start_hooks: list[Callable[[], None]] = []
        self.signal_installed = False
        self.signalled = False
        self.shutdown_task: asyncio.Task | None = None


_state = _State()


def draining() -> bool:
    """True from the moment the process was asked to stop: it takes no new turns or sockets."""
    return _state.draining


def turn_register(turn) -> None:
    """A running turn (`restart_stop()` and `async wait()`); held here until it unregisters."""
    _state.turns.add(turn)


def turn_unregister(turn) -> None:
    _state.turns.discard(turn)


def socket_register(sock) -> None:
    """An open socket (`async restart_close()`), closed with 1012 at the end of a drain."""
    _state.sockets.add(sock)


def socket_unregister(sock) -> None:
    _state.sockets.discard(sock)


def on_start(hook: Callable[[], None]) -> None:
    """A synchronous function run once when the process starts serving (apps register in ready())."""
    _state.start_hooks.append(hook)


async def process_start(*, lifespan: bool = False) -> None:
    """Once per process, before its first request: the thread pool, the worker registry, start
    hooks, SIGTERM, and what it loaded set aside from the garbage collector.

    Only a process that a server runs does this: one that speaks the lifespan protocol, or one
    whose server handles SIGTERM (daphne's Twisted, uvicorn). A test's event loop does not.
    """
    if _state.started is not None:
        if not _state.started.done():
            await asyncio.shield(_state.started)
        return
    loop = asyncio.get_running_loop()
    _state.started = loop.create_future()
    try:
        if lifespan or _server_handles_sigterm():
            threads_configure(loop)
            await db_async(_start_sync)()
            _sigterm_install(loop)
            _collector_settle()
    except BaseException as exc:
        _state.started.set_exception(exc)
        _state.started.exception()  # retrieved: the caller sees it raised here
        raise
    _state.started.set_result(None)


def _start_sync() -> None:
    worker_start()
    for hook in _state.start_hooks:
        try:
            hook()
        except Exception:
            logger.exception("A start hook failed: %s", getattr(hook, "__name__", hook))


def _collector_settle() -> None:
    """What the process loaded to serve (modules, settings, URL patterns, models, the SDK's
    types: some 200,000 objects) lives as long as the process. It is collected once now and
    moved out of the cyclic garbage collector's reach (`gc.freeze`), so that a full collection
    scans only what serving made: on the development machine a full collection took 220 to
    290 ms of CPU before, about 22 ms after, and came up every 150 trivial turns or so, a pause
    in whichever turn it fell on. The generation thresholds stay Python's: a larger young
    generation saved little more CPU and made each young collection a pause of several ms."""
    gc.collect()
    gc.freeze()


def _server_handles_sigterm() -> bool:
    return threading.current_thread() is threading.main_thread() and callable(
        signal.getsignal(signal.SIGTERM)
    )


def _sigterm_install(loop: asyncio.AbstractEventLoop) -> None:
    """Puts the drain in front of the server's SIGTERM handler (when the server installed one)."""
    if _state.signal_installed or not _server_handles_sigterm():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        if _state.signalled:
            loop.call_soon_threadsafe(_hurry)
            return
        _state.signalled = True
        try:
            loop.call_soon_threadsafe(_shutdown_begin, loop, previous, signum)
        except RuntimeError:  # the loop is gone: nothing left to drain
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    _state.signal_installed = True


def _hurry() -> None:
    if _state.hurry is not None:
        _state.hurry.set()


def _shutdown_begin(loop, previous, signum) -> None:
    async def shutdown():
        try:
            await drain(settings.DRAIN_SECONDS)
            await asyncio.to_thread(worker_retire)
        except Exception:
            logger.exception("The drain failed; stopping anyway")
        finally:
            previous(signum, None)

    _state.shutdown_task = loop.create_task(shutdown())


async def drain(seconds: float) -> None:
    """Stops taking work, lets running turns finish for `seconds`, stops the rest; runs once."""
    if _state.drain_task is None:
        _state.draining = True
        _state.hurry = asyncio.Event()
        _state.drain_task = asyncio.ensure_future(_drain(seconds))
    await asyncio.shield(_state.drain_task)


async def _drain(seconds: float) -> None:
    loop = asyncio.get_running_loop()
    logger.warning(
        "Draining: %d turn(s) running get up to %s s to finish", len(_state.turns), seconds
    )
    deadline = loop.time() + seconds
    while _state.turns and loop.time() < deadline and not _state.hurry.is_set():
        with suppress(TimeoutError):
            async with asyncio.timeout(min(0.1, max(0, deadline - loop.time()))):
                await _state.hurry.wait()
    remaining = list(_state.turns)
    if remaining:
        logger.warning("Draining: stopping %d turn(s) still running", len(remaining))
        for turn in remaining:
            turn.restart_stop()
        waits = [asyncio.ensure_future(turn.wait()) for turn in remaining]
        _done, late = await asyncio.wait(waits, timeout=STOP_TIMEOUT_SECONDS)
        for waiting in late:
            waiting.cancel()
        if late:
            logger.error("Draining: %d turn(s) did not stop in time", len(late))
    await asyncio.sleep(FLUSH_SECONDS)
    for sock in list(_state.sockets):
        with suppress(Exception):
            await sock.restart_close()
    logger.warning("Drained")


class LifecycleMiddleware:
    """The ASGI application's outer layer: sets the process up, and drains it on lifespan shutdown."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await process_start()
        await self.app(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await process_start(lifespan=True)
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await drain(settings.DRAIN_SECONDS)
                await asyncio.to_thread(worker_retire)
                await send({"type": "lifespan.shutdown.complete"})
                return
