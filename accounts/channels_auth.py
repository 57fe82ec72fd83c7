"""WebSocket authentication: a JWT or API key from `?token=`, resolved before the consumer runs."""

from datetime import UTC, datetime
from urllib.parse import parse_qs

from django.contrib.auth.models import AnonymousUser

from accounts.authentication import credential_authenticate
from accounts.models import ApiKey
from gemini_server.db import db_async
from gemini_server.errors import Unauthenticated


@db_async
def scope_credentials(raw: str) -> tuple:
    """(user, api key or None, when a JWT expires or None) for a raw token; raises Unauthenticated.

    A socket outlives the request that opened it, so the consumer keeps the JWT's expiry and
    re-checks it (and the key) on every frame.
    """
    user, credential = credential_authenticate(raw)
    if isinstance(credential, ApiKey):
        return user, credential, None
    expires = credential.get("exp")
    return user, None, datetime.fromtimestamp(expires, tz=UTC) if expires else None


class TokenAuthMiddleware:
    """Sets scope['user'] from `?token=`; a token that fails leaves scope['auth_error'] for the consumer.

    Without a token the consumer waits for an `auth` frame instead.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        scope = dict(scope)
        scope["user"], scope["api_key"], scope["auth_error"] = AnonymousUser(), None, None
        scope["token_expires_at"] = None
        token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        if token:
            try:
                user, key, expires_at = await scope_credentials(token)
            except Unauthenticated as exc:
                scope["auth_error"] = exc.message
            else:
                scope["user"], scope["api_key"], scope["token_expires_at"] = user, key, expires_at
        return await self.app(scope, receive, send)
