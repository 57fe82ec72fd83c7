"""A small aiohttp application served on loopback for a test: an upstream of the test's own."""

from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def app_serving(app: web.Application):
    """`app` on a free port of 127.0.0.1 for the block; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
