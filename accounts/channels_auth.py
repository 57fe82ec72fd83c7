"""WebSocket authentication: a JWT or API key from `?token=`, resolved before the consumer runs."""

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from accounts.authentication import credential_authenticate
from gemini_server.errors import Unauthenticated


@database_sync_to_async
def scope_credentials(raw: str) -> tuple:
    """(user, api key or None) for a raw token; raises Unauthenticated."""
    return credential_authenticate(raw)


class TokenAuthMiddleware:
    """Sets scope['user'] from `?token=`; a token that fails leaves scope['auth_error'] for the consumer.

    Without a token the consumer waits for an `auth` frame instead.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        scope = dict(scope)
        scope["user"], scope["api_key"], scope["auth_error"] = AnonymousUser(), None, None
        token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        if token:
            try:
                scope["user"], scope["api_key"] = await scope_credentials(token)
            except Unauthenticated as exc:
                scope["auth_error"] = exc.message
        return await self.app(scope, receive, send)
