"""Liveness and readiness probes."""

import asyncio
import functools
import inspect

from channels.layers import get_channel_layer
from django.db import connection
from django.http import JsonResponse

from gemini_server.db import db_async
from gemini_server.errors import BadRequest, json_error_response
from gemini_server.lifecycle import draining


def _refused(request):
    """Anything but GET, answered in the contract's error shape (None for a GET)."""
    if request.method == "GET":
        return None
    error = BadRequest(f'Method "{request.method}" not allowed.')
    error.status = 405
    response = json_error_response(error)
    response["Allow"] = "GET"
    return response


def get_only(view):
    """Django's require_GET, answering other methods in the contract's error shape."""
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def wrapper(request, *args, **kwargs):
            return _refused(request) or await view(request, *args, **kwargs)

        return wrapper

    @functools.wraps(view)
    def sync_wrapper(request, *args, **kwargs):
        return _refused(request) or view(request, *args, **kwargs)

    return sync_wrapper


@get_only
def health(request):
    """Alive: answers without touching the database (synchronous, like the whole request chain:
    an async view there would cost a trip back to the event loop)."""
    return JsonResponse({"status": "ok"})


def _database_answers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _channel_layer_answers() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError("unexpected message")


@get_only
async def ready(request):
    """Ready: the database and the channel layer both answer, else 503 naming what failed.

    A process draining for a restart is not ready (503 `draining`): load balancers stop sending
    it new work while its running turns finish.
    """
    if draining():
        body = {
            "error": {
                "code": "server_restarting",
                "message": "This server is draining for a restart",
                "details": {"retryable": True},
            },
            "status": "draining",
        }
        return JsonResponse(body, status=503)
    checks = {
        "database": db_async(_database_answers)(),
        "channelLayer": _channel_layer_answers(),
    }
    results = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check, timeout=3)
            results[name] = "ok"
        except Exception as exc:  # any failure means not ready; say which part
            results[name] = f"failed: {type(exc).__name__}"
    failed = [name for name, result in results.items() if result != "ok"]
    if failed:
        body = {
            "error": {
                "code": "upstream_unavailable",
                "message": f"Not ready: {', '.join(failed)} did not answer",
                "details": results,
            },
            "status": "unavailable",
            "checks": results,
        }
        return JsonResponse(body, status=503)
    return JsonResponse({"status": "ok", "checks": results})
