"""Validation of what clients send about sessions, and the schema of what they get back."""

import math

from rest_framework import serializers

from sessions_app.models import ApprovalMode


class FiniteFloatField(serializers.FloatField):
    """A float that is a number: DRF's FloatField lets the string "NaN" past min/max checks."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class SessionConfigSerializer(serializers.Serializer):
    model = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", required=False)
    systemInstruction = serializers.CharField(
        max_length=20000, required=False, allow_blank=True, trim_whitespace=False
    )
    temperature = FiniteFloatField(min_value=0, max_value=2, required=False)
    approvalMode = serializers.ChoiceField(choices=ApprovalMode.choices, required=False)
    title = serializers.CharField(max_length=200, required=False, allow_blank=True)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown setting."] for name in unknown})
        return super().to_internal_value(data)


class SessionCreateSerializer(serializers.Serializer):
    config = SessionConfigSerializer(required=False)


class SessionUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    config = SessionConfigSerializer(required=False)


class SessionExtendSerializer(serializers.Serializer):
    hours = FiniteFloatField(min_value=0.01, max_value=24 * 365)


class UsageSerializer(serializers.Serializer):
    promptTokens = serializers.IntegerField()
    completionTokens = serializers.IntegerField()
    totalTokens = serializers.IntegerField()


class SessionSerializer(serializers.Serializer):
    """Documents session_to_dict for the OpenAPI schema."""

    id = serializers.UUIDField()
    userId = serializers.UUIDField()
    title = serializers.CharField()
    config = serializers.DictField()
    workspaceDir = serializers.CharField()
    status = serializers.ChoiceField(choices=["active", "expired"])
    createdAt = serializers.DateTimeField()
    lastActivityAt = serializers.DateTimeField()
    expiresAt = serializers.DateTimeField()
    messageCount = serializers.IntegerField()
    usage = UsageSerializer()


class SessionCreatedSerializer(serializers.Serializer):
    sessionId = serializers.UUIDField()
    session = SessionSerializer()


class SessionEnvelopeSerializer(serializers.Serializer):
    session = SessionSerializer()


class SessionListSerializer(serializers.Serializer):
    sessions = SessionSerializer(many=True)
    nextCursor = serializers.CharField(
        allow_null=True, help_text="Pass as `cursor` for the next page; null on the last"
    )


class WorkspaceEntrySerializer(serializers.Serializer):
    name = serializers.CharField()
    path = serializers.CharField()
    type = serializers.ChoiceField(choices=["file", "directory"])
    size = serializers.IntegerField()
    modifiedAt = serializers.DateTimeField()


class WorkspaceListingSerializer(serializers.Serializer):
    path = serializers.CharField()
    entries = WorkspaceEntrySerializer(many=True)
    nextCursor = serializers.CharField(
        allow_null=True, help_text="Pass as `cursor` for the next page; null on the last"
    )
