"""Rate limits on django-ratelimit's counters, kept in the shared cache (Redis when REDIS_URL is set)."""

from django.conf import settings
from django_ratelimit.core import get_usage
from rest_framework.throttling import BaseThrottle

from gemini_server.errors import RateLimited, request_ip


def rate_limit_hit(*, group: str, key: str, limit: int, window: int) -> float | None:
    """Counts one hit on `key`; the seconds to wait when over `limit` per `window`, else None."""
    usage = get_usage(
        None, group=group, key=lambda _group, _request: key, rate=(limit, window), increment=True
    )
    if usage is None or not usage["should_limit"]:
        return None
    return max(1, usage["time_left"])


def user_rate_limit_hit(*, user=None, ip: str | None = None) -> float | None:
    """The general per-user limit (per IP for anonymous callers), shared by REST and WebSocket."""
    key = f"user:{user.pk}" if user is not None and user.is_authenticated else f"ip:{ip}"
    return rate_limit_hit(
        group="api",
        key=key,
        limit=settings.RATE_LIMIT_MAX_REQUESTS,
        window=settings.RATE_LIMIT_WINDOW_SECONDS,
    )


def login_rate_limit_check(*, ip: str | None, email: str) -> None:
    """Brute-force guard: separate budgets per IP and per email address."""
    limit, window = settings.LOGIN_RATE_LIMIT_MAX, settings.LOGIN_RATE_LIMIT_WINDOW_SECONDS
    waits = [
        rate_limit_hit(group="login-ip", key=f"ip:{ip}", limit=limit, window=window),
        rate_limit_hit(
            group="login-email",
            key=f"email:{(email or '').strip().lower()}",
            limit=limit,
            window=window,
        ),
    ]
    waits = [wait for wait in waits if wait is not None]
    if waits:
        raise RateLimited("Too many login attempts; try again later", retry_after=max(waits))


class UserRateLimit(BaseThrottle):
    """DRF throttle for the general limit; a 429 carries Retry-After."""

    def allow_request(self, request, view):
        self._wait = user_rate_limit_hit(user=request.user, ip=request_ip(request))
        return self._wait is None

    def wait(self):
        return self._wait
