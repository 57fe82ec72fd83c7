"""The domain errors and the one place that renders every error in the contract's JSON shape."""

import ipaddress
import logging
import math

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions as drf
from rest_framework.response import Response

from gemini_server.scrub import secrets_scrub, secrets_scrub_all

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a client should see: it carries the contract's code, status and message."""

    status = 400
    code = "bad_request"
    default_message = "Bad request"

    def __init__(self, message: str | None = None, *, details: dict | None = None, headers=None):
        self.message = message or self.default_message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict:
        # The message may quote an upstream service, which may quote a secret of ours.
        return error_body(self.code, secrets_scrub(self.message), secrets_scrub_all(self.details))


class BadRequest(ApiError):
    pass


class ValidationFailed(ApiError):
    code = "validation_error"
    default_message = "Invalid input"


class Unauthenticated(ApiError):
    status = 401
    code = "unauthenticated"
    default_message = "Authentication required"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"
    default_message = "You do not have permission to do this"


class NotFound(ApiError):
    status = 404
    code = "not_found"
    default_message = "Not found"


class Conflict(ApiError):
    status = 409
    code = "conflict"
    default_message = "Conflict"


class Gone(ApiError):
    status = 410
    code = "gone"
    default_message = "Gone"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"
    default_message = "Payload too large"


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"
    default_message = "Too many requests"

    def __init__(self, message: str | None = None, *, retry_after: float = 1, **kwargs):
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, **kwargs)
        self.details.setdefault("retryAfter", self.retry_after)
        self.headers.setdefault("Retry-After", str(self.retry_after))


class UpstreamError(ApiError):
    status = 502
    code = "upstream_error"
    default_message = "The model service rejected the request"


class UpstreamUnavailable(ApiError):
    status = 503
    code = "upstream_unavailable"
    default_message = "The model service is unavailable"


class ServerRestarting(ApiError):
    """This process is draining for a restart; the same request succeeds on another (or soon)."""

    status = 503
    code = "server_restarting"
    default_message = "The server is restarting; try again in a moment"

    def __init__(self, message: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.details.setdefault("retryable", True)
        self.headers.setdefault("Retry-After", "1")


class Internal(ApiError):
    status = 500
    code = "internal"
    default_message = "Internal server error"


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _validation_details(detail) -> dict:
    """DRF's nested error lists flattened to {field: [messages]}."""
    if isinstance(detail, dict):
        flat = {}
        for field, value in detail.items():
            name = "body" if field == "non_field_errors" else field
            if isinstance(value, dict):
                for sub, messages in _validation_details(value).items():
                    flat[name if sub == "body" else f"{name}.{sub}"] = messages
            else:
                flat[name] = [str(m) for m in (value if isinstance(value, list) else [value])]
        return flat
    messages = detail if isinstance(detail, list) else [detail]
    return {"body": [str(m) for m in messages]}


def detail_text(detail) -> str:
    """A DRF exception's detail as a sentence: simplejwt and others put dicts and lists there."""
    if isinstance(detail, dict):
        detail = detail.get("detail", next(iter(detail.values()), ""))
    if isinstance(detail, (list, tuple)):
        return " ".join(detail_text(item) for item in detail)
    return str(detail)


def api_error_from_exception(exc: Exception) -> ApiError:
    """Maps any exception that reaches a transport to the ApiError a client should see."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Ratelimited):
        return RateLimited(retry_after=getattr(exc, "retry_after", 1))
    if isinstance(exc, drf.Throttled):
        return RateLimited(retry_after=exc.wait or 1)
    if isinstance(exc, drf.ParseError):
        return BadRequest(f"Malformed request body: {detail_text(exc.detail)}")
    if isinstance(exc, drf.UnsupportedMediaType):
        # The contract's code for a body the server cannot read is bad_request, with its 400.
        content_type = str(exc.args[0] if exc.args else "")[:200]
        return BadRequest(
            f'Unsupported content type "{content_type}"; send application/json',
            details={"contentType": content_type},
        )
    if isinstance(exc, drf.ValidationError):
        return ValidationFailed(details=_validation_details(exc.detail))
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        return Unauthenticated(detail_text(exc.detail))
    if isinstance(exc, (drf.PermissionDenied, DjangoPermissionDenied)):
        return Forbidden()
    if isinstance(exc, (drf.NotFound, Http404)):
        return NotFound()
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge("The request body is too large")
    if isinstance(exc, drf.APIException):
        error = BadRequest(detail_text(exc.detail))
        error.status = exc.status_code
        return error
    if isinstance(exc, SuspiciousOperation):
        return BadRequest("Bad request")
    return Internal()


def internal_error_report(exc: Exception, *, request=None, user=None) -> None:
    """Logs an unexpected failure with its trace and records it for the admins, never for the client.

    `user` names the caller where there is no request (a socket); without one the event counts
    against the anonymous error budget.
    """
    from monitoring.models import AuditAction
    from monitoring.services import error_record

    logger.error("Unhandled error", exc_info=exc)
    path = getattr(request, "path", "")
    error_record(
        action=AuditAction.INTERNAL_ERROR,
        user=user or _request_user(request),
        data={
            "path": path,
            "method": getattr(request, "method", ""),
            "exception": type(exc).__name__,
        },
        ip=request_ip(request) if request is not None else None,
    )


def _request_user(request):
    user = getattr(request, "user", None)
    return user if getattr(user, "is_authenticated", False) else None


def request_ip(request) -> str | None:
    """The client's address. X-Forwarded-For is anyone's to write, so it counts only as far as
    TRUSTED_PROXY_COUNT proxies of ours appended to it; a forged or garbled value is ignored."""
    address = request.META.get("REMOTE_ADDR")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies > 0:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [hop for hop in hops if hop]
        if len(hops) >= proxies:
            address = hops[-proxies]
    return address if _is_ip(address) else None


def _is_ip(value) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every error from every API view leaves in the one shape."""
    error = api_error_from_exception(exc)
    request = context.get("request")
    if isinstance(error, Internal) and not isinstance(exc, Internal):
        internal_error_report(exc, request=request)
    headers = dict(error.headers)
    if isinstance(exc, drf.APIException) and getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if error.status == 401 and "WWW-Authenticate" not in headers:
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return Response(error.body(), status=error.status, headers=headers)


def json_error_response(error: ApiError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


# Django's own handlers, for paths no DRF view serves (unknown URLs, the admin, failures in middleware).
def handler400(request, exception=None):
    return json_error_response(BadRequest())


def handler403(request, exception=None):
    return json_error_response(Forbidden())


def handler404(request, exception=None):
    return json_error_response(NotFound("Not found"))


def handler500(request):
    import sys

    exc = sys.exc_info()[1]
    if exc is not None:
        internal_error_report(exc, request=request)
    return json_error_response(Internal())


def rate_limited_view(request, exception):
    """RATELIMIT_VIEW: django-ratelimit's decorator raises into this on non-DRF views."""
    return json_error_response(RateLimited(retry_after=getattr(exception, "retry_after", 1)))
