"""A user's working session with the agent: its settings, lifetime, token use and running turn."""

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from gemini_server.workers import worker_alive

# A turn whose process stopped beating for this long is considered dead and can be replaced.
# Sooner than that, a claim whose worker is known dead (gemini_server.workers) is free too.
TURN_STALE_AFTER = timedelta(seconds=90)


class ApprovalMode(models.TextChoices):
    DEFAULT = "default"
    AUTO_EDIT = "autoEdit"
    YOLO = "yolo"
    PLAN = "plan"  # read-only: edits, memory and the shell are refused


class Session(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sessions"
    )
    title = models.CharField(max_length=200, blank=True, default="")
    # model, systemInstruction, temperature, approvalMode, as the client set them.
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_activity_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    # Tools the user answered `proceed_always` for: they no longer ask in this session.
    always_allowed_tools = models.JSONField(default=list, blank=True)
    # The agent's todo list (write_todos): [{description, status}], replaced as a whole.
    todos = models.JSONField(default=list, blank=True)
    # The one running turn, claimed with a conditional UPDATE so it holds across processes;
    # a turn that stops beating (its process died) can be taken over.
    turn_id = models.UUIDField(null=True, blank=True)
    turn_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The process (gemini_server.workers.worker_id) running the turn: when it is known dead,
    # the claim is free within seconds rather than after TURN_STALE_AFTER.
    turn_worker = models.CharField(max_length=100, blank=True, default="")
    # Moves on whenever stored history is rewritten (clear, checkpoint load), so a process that
    # keeps a session's conversation in memory knows when to read it again.
    history_epoch = models.PositiveIntegerField(default=0)
    # Kept by the writes on the history (a step adds one; clear and load set it), so listing
    # sessions needs no count over their messages.
    message_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-last_activity_at"]
        indexes = [
            models.Index(fields=["user", "-last_activity_at"], name="session_user_activity"),
            models.Index(fields=["expires_at"], name="session_expires"),
        ]

    def __str__(self):
        return self.title or str(self.id)

    def turn_is_live(self, now=None) -> bool:
        """A turn holds the session: claimed, still beating, and its worker not known dead.

        chat.turns.slot writes the claim; this is the question the session's own rules ask of it.
        """
        if self.turn_id is None:
            return False
        beat = self.turn_heartbeat_at
        if beat is not None and beat < (now or timezone.now()) - TURN_STALE_AFTER:
            return False
        return worker_alive(self.turn_worker) is not False

    # What a released slot holds (chat.turns.slot frees it; so does a turn's last write).
    SLOT_FREE = {"turn_id": None, "turn_heartbeat_at": None, "turn_worker": ""}

    @staticmethod
    def turn_free(now) -> Q:
        """Sessions whose turn slot is free, or held by a claim that stopped beating."""
        return Q(turn_id__isnull=True) | Q(turn_heartbeat_at__lt=now - TURN_STALE_AFTER)

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        return "expired" if self.is_expired else "active"

    @property
    def approval_mode(self) -> str:
        return self.config.get("approvalMode") or ApprovalMode.DEFAULT

    @property
    def model_name(self) -> str:
        return self.config.get("model") or settings.GEMINI_MODEL
