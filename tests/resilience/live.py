"""What the tests of real server processes share: reading an SSE stream, posting a chat
message, a user's token, the stored history and how a server process ended."""

import asyncio
import json
import signal
import time

import aiohttp
from asgiref.sync import sync_to_async

from accounts.services import token_pair_issue
from chat.selectors import history_page
from sessions_app.models import Session
from tests.chat.conftest import scripted

TIMEOUT = 20
WORDS = [f"w{n:02d} " for n in range(40)]
LONG = scripted({"text": WORDS, "delay": 0.2})  # about 8 s of streaming


class SSE:
    """Reads an SSE response frame by frame: `{"id", "type", "data"}`, with arrival times."""

    def __init__(self, response: aiohttp.ClientResponse):
        self.response = response
        self.frames: list[dict] = []

    async def next(self, timeout: float = TIMEOUT) -> dict | None:
        """The next frame, or None when the stream ended."""
        block: dict[str, str] = {}
        while True:
            line = await asyncio.wait_for(self.response.content.readline(), timeout)
            if not line:
                return None
            text = line.decode().rstrip("\r\n")
            if text.startswith(":"):
                continue
            if text:
                key, _, value = text.partition(": ")
                block[key] = value
                continue
            if "data" in block:
                frame = {
                    "id": int(block["id"]),
                    **json.loads(block["data"]),
                    "at": time.monotonic(),
                }
                self.frames.append(frame)
                return frame

    async def until_contents(self, count: int) -> None:
        while len(self.contents()) < count:
            assert await self.next() is not None, "the stream ended early"

    async def rest(self) -> list[dict]:
        while await self.next() is not None:
            pass
        return self.frames

    def contents(self, before: float | None = None) -> list[str]:
        return [
            frame["data"]["text"]
            for frame in self.frames
            if frame["type"] == "content" and (before is None or frame["at"] < before)
        ]

    def types(self) -> list[str]:
        return [frame["type"] for frame in self.frames]


async def token_for(user) -> str:
    return (await sync_to_async(token_pair_issue)(user=user))["accessToken"]


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def post_chat(http, server, token, session, message, **extra):
    """The request, to use as `async with post_chat(...) as response`."""
    return http.post(
        f"{server}/api/v1/chat/message",
        json={"sessionId": str(session.id), "message": message, **extra},
        headers=auth(token),
    )


async def stored_history(session) -> list[dict]:
    fresh = await sync_to_async(Session.objects.get)(pk=session.id)
    history, _ = await sync_to_async(history_page)(session=fresh, limit=10_000, cursor=None)
    return history


def exited(process, timeout: float = TIMEOUT) -> int:
    return process.wait(timeout=timeout)


# A server that stopped on its own after SIGTERM: uvicorn, once it has shut down, raises the
# signal again with its default action, so the exit status says which signal stopped it.
STOPPED_BY_SIGTERM = -signal.SIGTERM
