"""A session's conversation as the model sees it, and named snapshots of it."""

import uuid

from django.db import models
from django.utils import timezone


class MessageRole(models.TextChoices):
    USER = "user"  # what the user typed
    MODEL = "model"  # the model's answer: text, thoughts, function calls
    TOOL = "tool"  # function responses, sent to the model in a `user` content


# Finish reasons of answers the model did not finish: a draft its turn still updates while the
# answer streams, and an answer cut off by a server that stopped (a restart, a crash).
FINISH_STREAMING = "STREAMING"
FINISH_INTERRUPTED = "INTERRUPTED"


class Message(models.Model):
    seq = models.BigAutoField(primary_key=True)
    id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    session = models.ForeignKey(
        "sessions_app.Session", on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=8, choices=MessageRole.choices)
    # Gemini `parts`, as sent or received (thoughtSignature kept), with text chunks merged.
    parts = models.JSONField(default=list)
    text = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    prompt_tokens = models.IntegerField(null=True, blank=True)
    completion_tokens = models.IntegerField(null=True, blank=True)
    total_tokens = models.IntegerField(null=True, blank=True)
    # Set when the answer was cut short (cancel, disconnect, upstream failure).
    finish_reason = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["session", "seq"], name="message_session_seq")]

    def __str__(self):
        return f"{self.role}: {self.text[:60]}"


class Checkpoint(models.Model):
    """A named snapshot of a session's history (`/chat/save`, `/chat/load`)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(
        "sessions_app.Session", on_delete=models.CASCADE, related_name="checkpoints"
    )
    tag = models.CharField(max_length=100)
    history = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["session", "tag"], name="checkpoint_session_tag")
        ]

    def __str__(self):
        return self.tag


class TurnDecision(models.Model):
    """A confirmation or a cancel sent to a running turn, kept so no channel-layer loss can drop it.

    It is also announced through the channel layer, which is how it usually arrives; the turn
    reads these rows every couple of seconds, so a message lost with Redis costs only that.
    """

    class Kind(models.TextChoices):
        CONFIRM = "confirm"
        CANCEL = "cancel"

    turn_id = models.UUIDField(db_index=True)
    session = models.ForeignKey(
        "sessions_app.Session", on_delete=models.CASCADE, related_name="turn_decisions"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    call_id = models.CharField(max_length=200, blank=True, default="")
    outcome = models.CharField(max_length=32, blank=True, default="")
    user_id = models.UUIDField(null=True, blank=True)
    user_email = models.CharField(max_length=254, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"{self.kind} {self.call_id} {self.outcome}".strip()

    def as_message(self) -> dict:
        """The channel-layer message this decision is announced as."""
        if self.kind == self.Kind.CANCEL:
            return {"type": "turn.cancel", "userId": str(self.user_id or "")}
        return {
            "type": "turn.confirm",
            "callId": self.call_id,
            "outcome": self.outcome,
            "userId": str(self.user_id or ""),
            "userEmail": self.user_email,
        }


class HistorySnapshot(models.Model):
    """A compressed beginning of a session's history: what the model sees instead of it.

    The stored messages stay as they were; `messages_covered` says how many of them, oldest
    first, the snapshot stands for, within one history epoch (clear and checkpoint loads start
    another, which leaves the snapshot behind).
    """

    session = models.ForeignKey(
        "sessions_app.Session", on_delete=models.CASCADE, related_name="history_snapshots"
    )
    epoch = models.PositiveIntegerField()
    messages_covered = models.PositiveIntegerField()
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["session", "epoch"], name="snapshot_session_epoch")]

    def __str__(self):
        return f"{self.session_id} @{self.epoch}: {self.messages_covered} messages"
