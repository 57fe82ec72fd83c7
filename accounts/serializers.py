"""JSON in and out for users, logins and API keys, in the contract's camelCase."""

from rest_framework import serializers

from accounts.models import ApiKey, Role
from gemini_server.answers import AnswerSerializer

# The two answers below are declared field by field rather than as ModelSerializers (DRF builds a
# ModelSerializer's fields from the model again for each instance, a sixth of the CPU of a
# `GET /auth/me`), and their fields are built once (gemini_server.answers).


class UserSerializer(AnswerSerializer):
    id = serializers.UUIDField(read_only=True)
    email = serializers.EmailField(read_only=True)
    name = serializers.CharField(read_only=True)
    role = serializers.ChoiceField(choices=Role.choices, read_only=True)
    isActive = serializers.BooleanField(source="is_active", read_only=True)
    createdAt = serializers.DateTimeField(source="date_joined", read_only=True)


class LoginSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(trim_whitespace=False)


class TokenPairSerializer(serializers.Serializer):
    accessToken = serializers.CharField()
    refreshToken = serializers.CharField()
    tokenType = serializers.CharField()
    expiresIn = serializers.IntegerField()
    user = UserSerializer()


class RefreshSerializer(serializers.Serializer):
    refreshToken = serializers.CharField()


class AccessTokenSerializer(serializers.Serializer):
    accessToken = serializers.CharField()
    expiresIn = serializers.IntegerField()


class ApiKeyCreateSerializer(LoginSerializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    expiresInDays = serializers.IntegerField(min_value=1, max_value=3650, required=False)


class RegisterSerializer(LoginSerializer):
    name = serializers.CharField(max_length=150)


class ApiKeySerializer(AnswerSerializer):
    id = serializers.UUIDField(read_only=True)
    prefix = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    expiresAt = serializers.DateTimeField(source="expires_at", allow_null=True, read_only=True)
    lastUsedAt = serializers.DateTimeField(source="last_used_at", allow_null=True, read_only=True)
    revokedAt = serializers.DateTimeField(source="revoked_at", allow_null=True, read_only=True)


class ApiKeyListSerializer(serializers.Serializer):
    apiKeys = ApiKeySerializer(many=True)


class NewApiKeySerializer(serializers.Serializer):
    """The only answer that ever carries a raw key."""

    apiKey = serializers.CharField()
    id = serializers.UUIDField()
    prefix = serializers.CharField()
    name = serializers.CharField()
    createdAt = serializers.DateTimeField()
    expiresAt = serializers.DateTimeField(allow_null=True)


class RotateSerializer(serializers.Serializer):
    graceHours = serializers.FloatField(min_value=0, max_value=24 * 90, required=False, default=24)


class UserCreateSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(trim_whitespace=False)
    name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    role = serializers.ChoiceField(choices=Role.choices, default=Role.ENGINEER)


class UserUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    isActive = serializers.BooleanField(required=False)
    password = serializers.CharField(trim_whitespace=False, required=False)


class UserListSerializer(serializers.Serializer):
    users = UserSerializer(many=True)


def new_api_key_body(key: ApiKey, raw: str) -> dict:
    return NewApiKeySerializer(
        {
            "apiKey": raw,
            "id": key.id,
            "prefix": key.prefix,
            "name": key.name,
            "createdAt": key.created_at,
            "expiresAt": key.expires_at,
        }
    ).data
