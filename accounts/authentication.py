"""How a request proves who it is: a JWT or an API key, for DRF and for Channels alike."""

from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import authentication as simplejwt
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import ApiKey, User
from accounts.services import api_key_authenticate
from gemini_server.errors import Unauthenticated

API_KEY_PREFIX = "gsk_"
WWW_AUTHENTICATE = 'Bearer realm="api"'


def jwt_authenticate(raw: str) -> User:
    """The active user behind an access token, or Unauthenticated."""
    try:
        token = AccessToken(raw)
    except TokenError as exc:
        raise Unauthenticated("Invalid or expired token") from exc
    user = User.objects.filter(pk=token.get("user_id")).first()
    if user is None or not user.is_active:
        raise Unauthenticated("This account is unknown or deactivated")
    return user


def credential_authenticate(raw: str) -> tuple[User, ApiKey | AccessToken | None]:
    """The user behind a JWT or a `gsk_` API key, told apart by the prefix."""
    raw = (raw or "").strip()
    if not raw:
        raise Unauthenticated("Authentication required")
    if raw.startswith(API_KEY_PREFIX):
        key = api_key_authenticate(raw)
        return key.user, key
    return jwt_authenticate(raw), None


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


class JWTAuthentication(simplejwt.JWTAuthentication):
    """simplejwt's Bearer scheme, stepping aside for API keys sent as Bearer tokens."""

    def authenticate(self, request):
        header = self.get_header(request)
        if header is None:
            return None
        raw = self.get_raw_token(header)
        if raw is None or raw.startswith(API_KEY_PREFIX.encode()):
            return None
        try:
            validated = self.get_validated_token(raw)
        except InvalidToken as exc:
            raise AuthenticationFailed(_("Invalid or expired token")) from exc
        user = self.get_user(validated)
        return user, validated

    def authenticate_header(self, request):
        return WWW_AUTHENTICATE
