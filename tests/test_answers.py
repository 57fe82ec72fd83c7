"""Answer serializers (gemini_server.answers) write exactly what DRF's own Serializer writes."""

import pytest
from django.utils import timezone
from rest_framework import serializers

from accounts.models import ApiKey
from accounts.serializers import ApiKeySerializer, TokenPairSerializer, UserSerializer
from gemini_server.answers import AnswerSerializer


def drf_answer(serializer_class, instance) -> dict:
    """What DRF's generic Serializer makes of `instance` with the same declared fields."""
    return dict(serializers.Serializer.to_representation(serializer_class(), instance))


@pytest.mark.django_db
def test_a_user_and_a_key_read_as_drf_reads_them(user):
    key = ApiKey.objects.create(user=user, prefix="abc123", digest="x" * 64, name="ci")
    key.last_used_at = timezone.now()

    assert UserSerializer(user).data == drf_answer(UserSerializer, user)
    assert ApiKeySerializer(key).data == drf_answer(ApiKeySerializer, key)
    answer = ApiKeySerializer(key).data
    assert answer["expiresAt"] is None and answer["revokedAt"] is None
    assert answer["createdAt"].endswith("Z") and answer["id"] == str(key.id)
    assert ApiKeySerializer([key, key], many=True).data == [drf_answer(ApiKeySerializer, key)] * 2


@pytest.mark.django_db
def test_an_answer_nested_in_another_and_read_from_a_mapping(user):
    pair = {
        "accessToken": "a",
        "refreshToken": "r",
        "tokenType": "Bearer",
        "expiresIn": 60,
        "user": user,
    }

    assert TokenPairSerializer(pair).data["user"] == drf_answer(UserSerializer, user)
    as_mapping = {"id": user.id, "email": user.email, "name": "", "role": "engineer"}
    as_mapping |= {"is_active": True, "date_joined": user.date_joined}
    assert UserSerializer(as_mapping).data == drf_answer(UserSerializer, as_mapping)


def test_write_only_fields_stay_out_of_answers():
    class Secretive(AnswerSerializer):
        shown = serializers.CharField()
        hidden = serializers.CharField(write_only=True)

    assert Secretive({"shown": "a", "hidden": "b"}).data == {"shown": "a"}
