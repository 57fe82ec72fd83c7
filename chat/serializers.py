"""Validation of chat and tool requests, and the schema of their answers."""

from rest_framework import serializers

from chat.agent.tools import ToolKind
from chat.turns.control import CONFIRM_OUTCOMES, MESSAGE_MAX_CHARS


class SessionRefSerializer(serializers.Serializer):
    sessionId = serializers.UUIDField()


class ChatMessageSerializer(SessionRefSerializer):
    message = serializers.CharField(max_length=MESSAGE_MAX_CHARS, trim_whitespace=False)
    # The turn goes on when the client disconnects; GET /chat/stream attaches to it again.
    background = serializers.BooleanField(required=False, default=False)

    def validate_message(self, value):
        if not value.strip():
            raise serializers.ValidationError("A non-empty message is required.")
        return value


class ConfirmSerializer(SessionRefSerializer):
    callId = serializers.CharField(max_length=200)
    outcome = serializers.ChoiceField(choices=CONFIRM_OUTCOMES)


class CheckpointRequestSerializer(SessionRefSerializer):
    tag = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$")


class OkSerializer(serializers.Serializer):
    ok = serializers.BooleanField()


class HistoryItemSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    role = serializers.ChoiceField(choices=["user", "model", "tool"])
    parts = serializers.ListField(child=serializers.DictField())
    text = serializers.CharField()
    createdAt = serializers.DateTimeField()
    usage = serializers.DictField(allow_null=True)
    # The model's (STOP, ...), CANCELLED, ERROR, or INTERRUPTED (its server stopped mid-turn);
    # null for user and tool messages and for an answer still streaming.
    finishReason = serializers.CharField(allow_null=True)


class HistorySerializer(serializers.Serializer):
    history = HistoryItemSerializer(many=True)
    nextCursor = serializers.CharField(
        allow_null=True, help_text="Pass as `cursor` for the next page; null on the last"
    )


class CheckpointSerializer(serializers.Serializer):
    tag = serializers.CharField()
    messageCount = serializers.IntegerField()
    createdAt = serializers.DateTimeField()


class CheckpointListSerializer(serializers.Serializer):
    checkpoints = CheckpointSerializer(many=True)


class ToolExecuteSerializer(SessionRefSerializer):
    name = serializers.CharField(max_length=100)
    args = serializers.DictField(required=False, default=dict)


class ToolResultSerializer(serializers.Serializer):
    callId = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["success", "error"])
    result = serializers.CharField(allow_blank=True)
    durationMs = serializers.IntegerField()


class ToolSerializer(serializers.Serializer):
    name = serializers.CharField()
    aliases = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField()
    parameters = serializers.DictField()
    kind = serializers.ChoiceField(choices=[kind.value for kind in ToolKind])
    available = serializers.BooleanField()
    unavailableReason = serializers.CharField(required=False)


class ToolListSerializer(serializers.Serializer):
    tools = ToolSerializer(many=True)
