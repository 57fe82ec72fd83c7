"""Writes on users and API keys: every view, admin action and command calls these."""

import hashlib
import hmac
import logging
import re
import secrets
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.credentials import credential_cached, credential_cached_touch
from accounts.models import ApiKey, Role, User
from gemini_server.errors import Conflict, Unauthenticated, ValidationFailed
from gemini_server.groups import user_group
from monitoring.models import AuditAction, EventType
from monitoring.services import event_record

API_KEY_FORMAT = re.compile(r"^gsk_(?P<prefix>[0-9a-f]{12})\.(?P<secret>[A-Za-z0-9_-]{32,64})$")
LAST_USED_RESOLUTION = timedelta(minutes=1)

# A fixed hash to compare against when the email is unknown, so both failures take as long.
_UNKNOWN_USER_PASSWORD = User(email="nobody@invalid")
_UNKNOWN_USER_PASSWORD.set_password(secrets.token_urlsafe(16))


logger = logging.getLogger(__name__)


def _password_check(password: str, user: User | None = None) -> None:
    try:
        password_validation.validate_password(password, user)
    except DjangoValidationError as exc:
        raise ValidationFailed(
            "Invalid password", details={"password": list(exc.messages)}
        ) from exc


def user_create(
    *, email: str, password: str, name: str = "", role: str = Role.ENGINEER, actor=None, ip=None
) -> User:
    email = User.objects.normalize_email(email).lower()
    if User.objects.filter(email__iexact=email).exists():
        raise Conflict("A user with this email already exists", details={"email": email})
    _password_check(password, User(email=email, name=name))
    with transaction.atomic():
        user = User.objects.create_user(email=email, password=password, name=name or "", role=role)
        event_record(
            type=EventType.AUTH,
            action=AuditAction.USER_CREATE if actor else AuditAction.USER_REGISTER,
            user=actor or user,
            data={"targetUserId": str(user.id), "email": user.email, "role": user.role},
            ip=ip,
            required=True,
        )
    return user


def credentials_changed_announce(user_id) -> None:
    """Once committed, tells the user's open sockets, on every process, to check their
    credentials now (they keep a checked answer for a while otherwise)."""

    def announce():
        try:
            async_to_sync(get_channel_layer().group_send)(
                user_group(user_id), {"type": "credentials.changed"}
            )
        except Exception:
            # Sockets then notice at their next check (CREDENTIALS_CACHE_SECONDS at most).
            logger.warning("Could not announce a credentials change for user %s", user_id)

    transaction.on_commit(announce)


def user_update(
    *,
    user: User,
    actor: User,
    name: str | None = None,
    role: str | None = None,
    is_active: bool | None = None,
    password: str | None = None,
    ip=None,
) -> User:
    changes = {}
    if name is not None and name != user.name:
        user.name = name
        changes["name"] = name
    if role is not None and role != user.role:
        user.role = role
        changes["role"] = role
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        changes["isActive"] = is_active
    if password is not None:
        _password_check(password, user)
        user.set_password(password)
        changes["password"] = "changed"
    if changes:
        with transaction.atomic():
            user.save()
            event_record(
                type=EventType.AUTH,
                action=AuditAction.USER_UPDATE,
                user=actor,
                data={"targetUserId": str(user.id), "email": user.email, "changes": changes},
                ip=ip,
                required=True,
            )
            if {"role", "isActive", "password"} & changes.keys():
                credentials_changed_announce(user.pk)
    return user


def user_delete(*, user: User, actor: User, ip=None) -> None:
    from sessions_app.services import session_delete_all_for_user

    if user.pk == actor.pk:
        raise Conflict("You cannot delete your own account")
    target = {"targetUserId": str(user.id), "email": user.email}
    with transaction.atomic():
        credentials_changed_announce(user.pk)
        sessions = session_delete_all_for_user(user=user)
        user.delete()
        event_record(
            type=EventType.AUTH,
            action=AuditAction.USER_DELETE,
            user=actor,
            data={**target, "sessionsDeleted": sessions},
            ip=ip,
            required=True,
        )


def user_authenticate(*, email: str, password: str, ip=None, record_login: bool = True) -> User:
    """The user behind an email and password; the same failure for an unknown email and a wrong password.

    Failures are always recorded (brute force shows in the trail); a success is recorded as a
    login only where tokens are issued, since API key creation records its own event.
    """
    user = User.objects.filter(email__iexact=(email or "").strip()).first()
    if user is None:
        _UNKNOWN_USER_PASSWORD.check_password(password)
        valid = False
    else:
        valid = user.check_password(password) and user.is_active
    if not valid:
        event_record(
            type=EventType.AUTH,
            action=AuditAction.LOGIN_FAILED,
            user=user,
            user_email=(email or "")[:254],
            data={"email": (email or "")[:254]},
            ip=ip,
            secrets=(password,),
        )
        raise Unauthenticated("Invalid email or password")
    if record_login:
        event_record(type=EventType.AUTH, action=AuditAction.LOGIN, user=user, ip=ip)
    return user


def token_pair_issue(*, user: User) -> dict:
    refresh = RefreshToken.for_user(user)
    refresh["role"] = user.role
    access = refresh.access_token
    access["role"] = user.role
    return {
        "accessToken": str(access),
        "refreshToken": str(refresh),
        "tokenType": "Bearer",
        "expiresIn": int(settings.JWT_EXPIRES_IN.total_seconds()),
    }


def _api_key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(
    *,
    user: User,
    name: str = "",
    expires_in_days: int | None = None,
    actor: User | None = None,
    rotated_from: ApiKey | None = None,
    ip=None,
) -> tuple[ApiKey, str]:
    """A new key for `user`; the raw key is returned here and nowhere else."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        key = ApiKey.objects.create(
            user=user,
            name=name,
            prefix=prefix,
            digest=_api_key_digest(secret),
            created_at=now,
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
            rotated_from=rotated_from,
        )
        # A rotation records itself (api_key_rotate), in the same transaction.
        if rotated_from is None:
            event_record(
                type=EventType.AUTH,
                action=AuditAction.API_KEY_CREATE,
                user=actor or user,
                data={
                    "keyId": str(key.id),
                    "prefix": prefix,
                    "name": name,
                    "ownerId": str(user.id),
                },
                ip=ip,
                required=True,
            )
    return key, f"gsk_{prefix}.{secret}"


def api_key_revoke(*, key: ApiKey, actor: User, ip=None) -> ApiKey:
    """Revokes for good; a revoked key cannot be brought back."""
    if key.revoked_at is None:
        with transaction.atomic():
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            credentials_changed_announce(key.user_id)
            event_record(
                type=EventType.AUTH,
                action=AuditAction.API_KEY_REVOKE,
                user=actor,
                data={"keyId": str(key.id), "prefix": key.prefix, "ownerId": str(key.user_id)},
                ip=ip,
                required=True,
            )
    return key


def api_key_rotate(
    *, key: ApiKey, actor: User, grace: timedelta = timedelta(hours=24), ip=None
) -> tuple[ApiKey, str]:
    """A new key replacing `key`; the old one keeps working for `grace`, then fails."""
    if not key.is_usable():
        raise Conflict("This API key is revoked or expired and cannot be rotated")
    with transaction.atomic():
        remaining_days = None
        if key.expires_at is not None:
            remaining_days = max(1, (key.expires_at - key.created_at).days)
        new_key, raw = api_key_create(
            user=key.user,
            name=key.name,
            expires_in_days=remaining_days,
            actor=actor,
            rotated_from=key,
        )
        ends = timezone.now() + grace
        if key.expires_at is None or key.expires_at > ends:
            key.expires_at = ends
            key.save(update_fields=["expires_at"])
        event_record(
            type=EventType.AUTH,
            action=AuditAction.API_KEY_ROTATE,
            user=actor,
            data={
                "keyId": str(key.id),
                "newKeyId": str(new_key.id),
                "prefix": new_key.prefix,
                "oldPrefix": key.prefix,
                "graceHours": grace.total_seconds() / 3600,
                "ownerId": str(key.user_id),
            },
            ip=ip,
            required=True,
        )
    return new_key, raw


def api_keys_rotate_many(
    *, email: str | None = None, older_than_days: int | None = None, grace: timedelta, actor=None
) -> list[tuple[ApiKey, str]]:
    """Rotates every usable key of one user, or every usable key older than a number of days."""
    now = timezone.now()
    keys = ApiKey.objects.select_related("user").filter(revoked_at__isnull=True)
    keys = keys.exclude(expires_at__lte=now)
    if email:
        keys = keys.filter(user__email__iexact=email)
    if older_than_days is not None:
        keys = keys.filter(created_at__lte=now - timedelta(days=older_than_days))
    # A key already replaced is in its grace period: rotating it again would fork the chain.
    keys = keys.filter(rotated_to__isnull=True)
    return [api_key_rotate(key=key, actor=actor or key.user, grace=grace) for key in keys]


def api_key_authenticate(raw: str) -> ApiKey:
    """The usable key behind a raw `gsk_` key, or Unauthenticated; a malformed key costs no query,
    a known one usually none either (accounts.credentials)."""
    match = API_KEY_FORMAT.match(raw or "")
    if not match:
        raise Unauthenticated("Malformed API key")
    prefix = match["prefix"]
    key = credential_cached(
        f"key:{prefix}",
        lambda: ApiKey.objects.select_related("user").filter(prefix=prefix).first(),
    )
    if key is None or not hmac.compare_digest(key.digest, _api_key_digest(match["secret"])):
        raise Unauthenticated("Invalid API key")
    now = timezone.now()
    if key.revoked_at is not None:
        raise Unauthenticated("This API key has been revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthenticated("This API key has expired")
    if not key.user.is_active:
        raise Unauthenticated("This account is deactivated")
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        # An update, not a save: it changes no credential (and keeps the cached key).
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
        credential_cached_touch(f"key:{prefix}", last_used_at=now)
    return key
