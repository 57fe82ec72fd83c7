"""Counts and times every HTTP request by its URL route (the pattern, so ids do not multiply labels).

With LOG_FORMAT=json it also writes the access log, one JSON line per request with its request id
(scripts/run-daphne then turns daphne's own text access log off).
"""

import logging
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings

from gemini_server import metrics

access_log = logging.getLogger("gemini_server.access")


def _route(request) -> str | None:
    match = getattr(request, "resolver_match", None)
    return match.route if match is not None else None


class HttpMetricsMiddleware:
    """Records the status and the time until the response starts (a stream's headers)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        started = time.perf_counter()
        response = self.get_response(request)
        self._observe(request, response, started)
        return response

    async def __acall__(self, request):
        started = time.perf_counter()
        response = await self.get_response(request)
        self._observe(request, response, started)
        return response

    @staticmethod
    def _observe(request, response, started: float) -> None:
        seconds = time.perf_counter() - started
        metrics.http_observed(
            route=_route(request),
            method=request.method if request.method in _METHODS else "OTHER",
            status=response.status_code,
            seconds=seconds,
        )
        if settings.LOG_FORMAT == "json":
            access_log.info(
                '"%s %s" %s %.1fms',
                request.method,
                request.path,
                response.status_code,
                seconds * 1000,
            )


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
