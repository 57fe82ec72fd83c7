"""The OpenAPI schema's error answers: one AutoSchema works out which ones each operation can give.

Every error has the contract's shape (the `Error` component). Which statuses an operation can
answer follows from what it is: every one can fail (500); one that reads a body or query can be
malformed (400), and a body can be too large (413); one that needs credentials can lack them
(401); one whose permissions can refuse a signed-in caller can be forbidden (403); one that names
an object (a path id or a `sessionId`) can miss it (404); a throttled one can be rate limited
(429). Conflicts, expiry and the like (409, 410, ...) are the operation's own: a view declares them
with `extend_schema(responses={409: OpenApiResponse(description=...)})` and gets the shape here.
"""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import force_instance
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated

ERROR_CODES = [
    "bad_request",
    "validation_error",
    "unauthenticated",
    "forbidden",
    "not_found",
    "conflict",
    "gone",
    "payload_too_large",
    "rate_limited",
    "upstream_error",
    "upstream_unavailable",
    "internal",
]

DESCRIPTIONS = {
    400: "The request is malformed or invalid: `bad_request`, or `validation_error` with "
    "`details` per field",
    401: "No credentials, or ones that are malformed, expired, revoked or of a deactivated "
    "account: `unauthenticated`",
    403: "The caller's role may not do this: `forbidden`",
    404: "No such object, or not the caller's: `not_found`",
    409: "In conflict with the object's state: `conflict`",
    410: "The session has expired: `gone`",
    413: "The request body is too large: `payload_too_large`",
    429: "Too many requests: `rate_limited`; `Retry-After` says when to try again",
    500: "An unexpected failure, recorded for the admins: `internal`",
    502: "The model service refused the request: `upstream_error`",
    503: "The model service is unavailable: `upstream_unavailable`",
}

HEADERS = {
    401: {
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": {"type": "integer", "minimum": 1},
            "required": True,
        }
    },
}


def error_responses(*statuses: int, **descriptions: str) -> dict:
    """An operation's own error statuses for `extend_schema(responses=...)`: `error_responses(409)`,
    or with a description of its own, `error_responses(s409="A turn is running")`."""
    declared = {status: DESCRIPTIONS[status] for status in statuses}
    declared |= {int(name.lstrip("s")): text for name, text in descriptions.items()}
    return {status: OpenApiResponse(description=text) for status, text in declared.items()}


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=ERROR_CODES)
    message = serializers.CharField()
    details = serializers.DictField(help_text="Per field for validation errors, else context")


class ErrorSerializer(serializers.Serializer):
    """Every error answer of the API, from every endpoint."""

    error = ErrorBodySerializer()


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        error = {
            "application/json": {"schema": self.resolve_serializer(ErrorSerializer, "response").ref}
        }
        responses = operation["responses"]
        for status in self.error_statuses(operation):
            responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
        for status, response in responses.items():
            if int(status) >= 400:
                # Declared by the view with a description only: the body is the error shape.
                response.setdefault("content", error)
                if int(status) in HEADERS:
                    response.setdefault("headers", HEADERS[int(status)])
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def error_statuses(self, operation: dict) -> set[int]:
        parameters = operation.get("parameters", [])
        reads_input = bool(operation.get("requestBody")) or any(
            parameter["in"] == "query" for parameter in parameters
        )
        statuses = {500}
        if reads_input:
            statuses.add(400)
        if operation.get("requestBody"):
            statuses.add(413)
        if self._needs_credentials():
            statuses.add(401)
        if self._may_refuse_a_signed_in_caller():
            statuses.add(403)
        if any(parameter["in"] == "path" for parameter in parameters) or self._acts_on_a_session(
            operation
        ):
            statuses.add(404)
        if self.view.get_throttles():
            statuses.add(429)
        return statuses

    def _needs_credentials(self) -> bool:
        return not all(isinstance(p, AllowAny) for p in self.view.get_permissions())

    def _may_refuse_a_signed_in_caller(self) -> bool:
        """A permission beyond "signed in" can refuse; one that only guards writes
        (`refuses_reads = False`) cannot refuse a read."""
        for permission in self.view.get_permissions():
            if isinstance(permission, (AllowAny, IsAuthenticated)):
                continue
            if self.method in SAFE_METHODS and getattr(permission, "refuses_reads", True) is False:
                continue
            return True
        return False

    def _acts_on_a_session(self, operation: dict) -> bool:
        """A required `sessionId` (query or body) names the session acted on; an optional one
        only filters."""
        if any(
            parameter["name"] == "sessionId" and parameter.get("required")
            for parameter in operation.get("parameters", [])
        ):
            return True
        if not operation.get("requestBody"):
            return False
        field = getattr(force_instance(self.get_request_serializer()), "fields", {}).get(
            "sessionId"
        )
        return field is not None and field.required
