"""scripts/run-server with one worker process per core: the workers share the port, each is
registered alive, a worker that dies is replaced, and SIGTERM drains every worker."""

import asyncio
import os
import signal
import time

import pytest
from asgiref.sync import sync_to_async

from gemini_server.shared_redis import redis_client
from sessions_app.services import session_create
from tests.resilience.live import (
    LONG,
    SSE,
    TIMEOUT,
    exited,
    post_chat,
    token_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def workers_of(process) -> set[int]:
    """The pids of the supervisor's worker processes: its children started by multiprocessing's
    spawn (not its resource tracker)."""
    try:
        with open(f"/proc/{process.pid}/task/{process.pid}/children") as children:
            pids = [int(pid) for pid in children.read().split()]
    except FileNotFoundError:
        return set()
    workers = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"spawn_main" in cmdline.read():
                    workers.add(pid)
        except FileNotFoundError:
            continue
    return workers


def registered(pids: set[int]) -> set[int]:
    """Those of `pids` whose worker key is in Redis (gemini_server.workers)."""
    keys = [key.decode() for key in redis_client().scan_iter(match="workers:alive:*")]
    return {pid for pid in pids if any(f"-{pid}-" in key for key in keys)}


async def eventually(check, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(check)
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_each_worker_is_registered_and_a_dead_one_is_replaced(live_servers, http):
    server = live_servers(WEB_CONCURRENCY="2")
    workers = await eventually(lambda: len(workers_of(server.process)) == 2, "two workers")
    workers = workers_of(server.process)
    await eventually(lambda: registered(workers) == workers, "both workers registered in Redis")

    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)

    await eventually(
        lambda: len(workers_of(server.process) - {victim}) == 2, "the supervisor to replace it"
    )
    replacement = workers_of(server.process) - workers
    await eventually(lambda: registered(replacement) == replacement, "the new worker registered")
    for _ in range(10):
        async with http.get(f"{server}/health") as answer:
            assert answer.status == 200


async def test_sigterm_lets_the_turns_of_every_worker_finish_then_stops(
    live_servers,
    user,
    http,
):
    server = live_servers(WEB_CONCURRENCY="2", DRAIN_SECONDS="30")
    await eventually(lambda: len(workers_of(server.process)) == 2, "two workers")
    token = await token_for(user)
    sessions = [await sync_to_async(session_create)(user=user) for _ in range(4)]

    async def turn(session, started: asyncio.Event):
        async with post_chat(http, server, token, session, LONG) as response:
            assert response.status == 200
            stream = SSE(response)
            await stream.until_contents(1)
            started.set()
            return await stream.rest()

    events = [asyncio.Event() for _ in sessions]
    turns = [
        asyncio.create_task(turn(session, started))
        for session, started in zip(sessions, events, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), TIMEOUT)
    server.process.send_signal(signal.SIGTERM)
    frames = await asyncio.wait_for(asyncio.gather(*turns), 40)

    # Every turn, on whichever worker it ran, finished its answer during the drain.
    for turn_frames in frames:
        assert turn_frames[-1]["type"] == "done"
        assert turn_frames[-1]["data"]["finishReason"] == "STOP"
        assert "".join(f["data"]["text"] for f in turn_frames if f["type"] == "content") == (
            "".join(f"w{n:02d} " for n in range(40))
        )
    assert await asyncio.to_thread(exited, server.process, 40) == 0
