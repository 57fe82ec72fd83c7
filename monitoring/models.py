"""The audit trail: one row per thing a user or the agent did."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class EventType(models.TextChoices):
    CHAT = "chat"
    TOOL = "tool"
    SESSION = "session"
    ERROR = "error"
    AUTH = "auth"


class AuditAction(models.TextChoices):
    """Every action the audit trail records, each under one event type (ACTION_TYPES)."""

    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    USER_REGISTER = "user_register"
    USER_CREATE = "user_create"
    USER_UPDATE = "user_update"
    USER_DELETE = "user_delete"
    API_KEY_CREATE = "api_key_create"
    API_KEY_ROTATE = "api_key_rotate"
    API_KEY_REVOKE = "api_key_revoke"
    SESSION_CREATE = "create"
    SESSION_UPDATE = "update"
    SESSION_EXTEND = "extend"
    SESSION_DELETE = "delete"
    SESSION_EXPIRE = "expire"
    FILE_UPLOAD = "file_upload"
    FILE_DELETE = "file_delete"
    USER_MESSAGE = "user_message"
    MODEL_RESPONSE = "model_response"
    HISTORY_CLEAR = "history_clear"
    CHECKPOINT_SAVE = "checkpoint_save"
    CHECKPOINT_LOAD = "checkpoint_load"
    # A tool call is recorded before it runs (the run does not happen without this row) and
    # again with its outcome.
    TOOL_CALL_START = "call_start"
    TOOL_CALL = "call"
    INTERNAL_ERROR = "internal_error"
    UPSTREAM_FAILURE = "upstream_failure"
    TURN_ERROR = "turn_error"
    # Anonymous error events from one address (or from everyone) past their budget are not
    # written one by one; this one row says so, once per window.
    ERROR_FLOOD = "error_flood"


_TYPE_ACTIONS = {
    EventType.AUTH: "LOGIN LOGIN_FAILED USER_REGISTER USER_CREATE USER_UPDATE USER_DELETE"
    " API_KEY_CREATE API_KEY_ROTATE API_KEY_REVOKE",
    EventType.SESSION: "SESSION_CREATE SESSION_UPDATE SESSION_EXTEND SESSION_DELETE SESSION_EXPIRE"
    " FILE_UPLOAD FILE_DELETE",
    EventType.CHAT: "USER_MESSAGE MODEL_RESPONSE HISTORY_CLEAR CHECKPOINT_SAVE CHECKPOINT_LOAD",
    EventType.TOOL: "TOOL_CALL_START TOOL_CALL",
    EventType.ERROR: "INTERNAL_ERROR UPSTREAM_FAILURE TURN_ERROR ERROR_FLOOD",
}
# The one event type each action is recorded under.
ACTION_TYPES: dict[AuditAction, EventType] = {
    AuditAction[name]: event_type
    for event_type, names in _TYPE_ACTIONS.items()
    for name in names.split()
}


class Event(models.Model):
    # `seq` orders events as they were written; `uuid` is the id clients see (API.md: UUIDs).
    seq = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=16, choices=EventType.choices)
    # One of AuditAction, enforced by the recorder (no choices here: a new action needs no migration).
    action = models.CharField(max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
    )
    # Kept as written: the trail outlives deleted users and sessions.
    user_email = models.CharField(max_length=254, blank=True, default="")
    session_id = models.UUIDField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["type", "-seq"], name="event_type_seq"),
            models.Index(fields=["user", "-seq"], name="event_user_seq"),
            models.Index(fields=["session_id", "-seq"], name="event_session_seq"),
            models.Index(fields=["created_at"], name="event_created"),
        ]

    def __str__(self):
        return f"{self.type}.{self.action} by {self.user_email or 'anonymous'}"
