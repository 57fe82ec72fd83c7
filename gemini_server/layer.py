"""Channel-layer readers: stopped without cancelling receive(), and kept reading across a Redis restart.

channels_redis shares one receive lock per process: a receive() cancelled while it holds the lock
can lose a message popped for another channel (another socket's frame). So a reader is asked to
stop by a message on its own channel, and cancelled only if it does not stop in time.
"""

import asyncio
import logging
from contextlib import suppress

STOP = "receiver.stop"

logger = logging.getLogger(__name__)


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


# How long a reader waits before reading again after the layer failed (Redis restarting).
RETRY_SECONDS = (0.5, 1, 2, 5)


async def receive_resilient(receive, *, recover) -> dict:
    """`receive()` that outlives a Redis restart: on a failure it waits, lets `recover()` renew
    what Redis forgot (group memberships), and reads on, instead of ending the reader."""
    attempt = 0
    while True:
        try:
            return await receive()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("A channel-layer reader lost the layer; reading again", exc_info=True)
            await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
            attempt += 1
            with suppress(Exception):
                await recover()
