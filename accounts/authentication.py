"""How a request proves who it is: a JWT or an API key, for DRF and for Channels alike."""

import time
import uuid

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from accounts.credentials import credential_cached
from accounts.models import ApiKey, User
from accounts.services import api_key_authenticate
from gemini_server.errors import Unauthenticated

API_KEY_PREFIX = "gsk_"
WWW_AUTHENTICATE = 'Bearer realm="api"'

# Access tokens this process verified, by their whole text, with their expiry: a client sends the
# same token with every request, and checking its signature and decoding its claims (simplejwt
# over PyJWT) cost about 130 µs each time. The text includes the signature, so only a token that
# was verified here is found; its expiry is checked at every use, and the user it names is looked
# up as before, so a deactivated user or a password change is seen just as quickly.
_VERIFIED_MAX = 4096
_verified: dict[str, tuple[float, AccessToken]] = {}


def token_user(token) -> User:
    """The active user a validated token names, or Unauthenticated (also for a malformed claim)."""
    try:
        user_id = uuid.UUID(str(token.get("user_id")))
    except ValueError as exc:
        raise Unauthenticated("Invalid token") from exc
    user = credential_cached(
        f"user:{user_id}", lambda: User.objects.filter(pk=user_id).first(), user_id=user_id
    )
    if user is None or not user.is_active:
        raise Unauthenticated("This account is unknown or deactivated")
    return user


def access_token(raw: str) -> AccessToken:
    """The valid, unexpired access token `raw` is, or Unauthenticated."""
    held = _verified.get(raw)
    if held is not None:
        if time.time() < held[0]:
            return held[1]
        _verified.pop(raw, None)
    try:
        token = AccessToken(raw)
    except TokenError as exc:
        raise Unauthenticated("Invalid or expired token") from exc
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[raw] = (token["exp"], token)
    return token


def jwt_authenticate(raw: str) -> tuple[User, AccessToken]:
    """The active user behind an access token, and the token, or Unauthenticated."""
    token = access_token(raw)
    return token_user(token), token


def credential_authenticate(raw: str) -> tuple[User, ApiKey | AccessToken]:
    """The user behind a JWT or a `gsk_` API key, told apart by the prefix, and the credential."""
    raw = (raw or "").strip()
    if not raw:
        raise Unauthenticated("Authentication required")
    if raw.startswith(API_KEY_PREFIX):
        key = api_key_authenticate(raw)
        return key.user, key
    return jwt_authenticate(raw)


class ApiKeyAuthentication(BaseAuthentication):
    """`X-API-Key: gsk_...` or `Authorization: Bearer gsk_...`."""

    def authenticate(self, request):
        raw = request.META.get("HTTP_X_API_KEY")
        if not raw:
            parts = get_authorization_header(request).split()
            if len(parts) != 2 or parts[0].lower() != b"bearer":
                return None
            if not parts[1].startswith(API_KEY_PREFIX.encode()):
                return None
            raw = parts[1].decode("latin-1")
        try:
            key = api_key_authenticate(raw)
        except Unauthenticated as exc:
            raise AuthenticationFailed(exc.message) from exc
        return key.user, key

    def authenticate_header(self, request):
        return WWW_AUTHENTICATE


class JWTAuthentication(BaseAuthentication):
    """`Authorization: Bearer <jwt>`, stepping aside for API keys sent as Bearer tokens."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("The Authorization header must be `Bearer <token>`")
        if parts[1].startswith(API_KEY_PREFIX.encode()):
            return None
        try:
            return jwt_authenticate(parts[1].decode("latin-1"))
        except Unauthenticated as exc:
            raise AuthenticationFailed(exc.message) from exc

    def authenticate_header(self, request):
        return WWW_AUTHENTICATE
