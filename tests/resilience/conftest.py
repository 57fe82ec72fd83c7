"""A redis-server of a test's own, on a private port, that the test may stop and start again."""

import shutil
import socket
import subprocess
import time

import aiohttp
import pytest
from django.core.cache import caches

from accounts.services import token_pair_issue


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateRedis:
    def __init__(self):
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(200):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def private_redis(settings):
    """The cache and the channel layer on a private redis-server (REDIS_URL says so too)."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    redis = PrivateRedis()
    redis.start()
    original = (settings.REDIS_URL, settings.CACHES, settings.CHANNEL_LAYERS)
    settings.REDIS_URL = redis.url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis.url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis.url], "prefix": "resilience"},
        }
    }
    yield redis
    redis.stop()
    caches["default"].close()
    # Back to the suite's cache and layer before its own teardown uses them.
    settings.REDIS_URL, settings.CACHES, settings.CHANNEL_LAYERS = original


@pytest.fixture
def token(user):
    return token_pair_issue(user=user)["accessToken"]


@pytest.fixture
async def http():
    """An HTTP client for the tests of real server processes."""
    async with aiohttp.ClientSession() as client:
        yield client
