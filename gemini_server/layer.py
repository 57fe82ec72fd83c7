"""Stopping a task that reads from the channel layer without cancelling its receive().

channels_redis shares one receive lock per process: a receive() cancelled while it holds the lock
can lose a message popped for another channel (another socket's frame). So a reader is asked to
stop by a message on its own channel, and cancelled only if it does not stop in time.
"""

import asyncio
from contextlib import suppress

STOP = "receiver.stop"


async def receiver_stop(layer, channel: str, task: asyncio.Task, *, timeout: float = 5) -> None:
    if task.done():
        return
    with suppress(Exception):
        await layer.send(channel, {"type": STOP})
    try:
        async with asyncio.timeout(timeout):
            await asyncio.shield(task)
    except (TimeoutError, asyncio.CancelledError):
        task.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await task
    except Exception:
        pass
