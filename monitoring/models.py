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


class Event(models.Model):
    # `seq` orders events as they were written; `uuid` is the id clients see (API.md: UUIDs).
    seq = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=16, choices=EventType.choices)
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
