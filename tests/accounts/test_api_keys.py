"""API keys: creation, both headers, listing without secrets, revoke, rotate with a grace period."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from accounts.authentication import ApiKeyAuthentication, credential_authenticate
from accounts.credentials import credentials_cache_clear
from accounts.models import ApiKey
from accounts.services import api_key_create
from gemini_server.errors import Unauthenticated
from monitoring.models import Event
from tests.accounts.conftest import ME_URL, assert_error
from tests.conftest import PASSWORD, client_for

pytestmark = pytest.mark.django_db

CREATE_URL = "/api/v1/auth/api-key"
LIST_URL = "/api/v1/auth/api-keys"
MALFORMED_KEYS = [
    "gsk_",
    "gsk_short",
    "gsk_0123456789ab",
    "gsk_0123456789ab.tooshort",
    "gsk_XYZ3456789ab." + "a" * 43,
    "gsk_0123456789ab." + "a" * 43 + "!",
    "gsk_0123456789ab." + "a" * 65,
]


def key_client(raw: str, *, header: str = "x-api-key") -> APIClient:
    client = APIClient()
    if header == "x-api-key":
        client.credentials(HTTP_X_API_KEY=raw)
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def rotate_url(key_id) -> str:
    return f"/api/v1/auth/api-keys/{key_id}/rotate"


# Creation


def test_create_api_key_with_email_and_password(api_client, user):
    response = api_client.post(
        CREATE_URL,
        {"email": user.email, "password": PASSWORD, "name": "ci", "expiresInDays": 30},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"apiKey", "id", "prefix", "name", "createdAt", "expiresAt"}
    assert body["apiKey"].startswith(f"gsk_{body['prefix']}.")
    assert body["name"] == "ci"
    key = ApiKey.objects.get(pk=body["id"])
    assert key.user == user
    assert key.expires_at - key.created_at == timedelta(days=30)
    secret = body["apiKey"].split(".", 1)[1]
    assert secret not in key.digest
    me = key_client(body["apiKey"]).get(ME_URL)
    assert me.status_code == 200
    assert me.json()["id"] == str(user.id)


def test_create_api_key_without_expiry_never_expires(api_client, user):
    response = api_client.post(
        CREATE_URL, {"email": user.email, "password": PASSWORD}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["expiresAt"] is None
    assert response.json()["name"] == ""


def test_create_api_key_with_wrong_password_or_unknown_email_is_the_same_401(api_client, user):
    wrong = api_client.post(
        CREATE_URL, {"email": user.email, "password": "nope-nope-1"}, format="json"
    )
    unknown = api_client.post(
        CREATE_URL, {"email": "ghost@example.com", "password": "nope-nope-1"}, format="json"
    )

    assert_error(wrong, 401, "unauthenticated")
    assert wrong.json() == unknown.json()
    assert ApiKey.objects.count() == 0


def test_create_api_key_validates_its_fields(api_client, user):
    bad_json = api_client.post(CREATE_URL, data="{", content_type="application/json")
    missing = api_client.post(CREATE_URL, {"name": "x"}, format="json")
    wrong_types = api_client.post(
        CREATE_URL,
        {"email": user.email, "password": PASSWORD, "expiresInDays": "soon", "name": ["x"]},
        format="json",
    )
    zero_days = api_client.post(
        CREATE_URL, {"email": user.email, "password": PASSWORD, "expiresInDays": 0}, format="json"
    )

    assert_error(bad_json, 400, "bad_request")
    assert set(assert_error(missing, 400, "validation_error")["details"]) == {"email", "password"}
    assert set(assert_error(wrong_types, 400, "validation_error")["details"]) == {
        "expiresInDays",
        "name",
    }
    assert "expiresInDays" in assert_error(zero_days, 400, "validation_error")["details"]
    assert ApiKey.objects.count() == 0


# Both ways to send a key


@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
def test_api_key_works_in_either_header(api_key, user, header):
    _key, raw = api_key

    response = key_client(raw, header=header).get(ME_URL)

    assert response.status_code == 200
    assert response.json()["email"] == user.email


def test_using_a_key_records_last_used(api_key):
    key, raw = api_key
    assert key.last_used_at is None

    key_client(raw).get(ME_URL)

    key.refresh_from_db()
    assert key.last_used_at is not None


def test_last_used_is_written_at_most_once_a_minute(api_key):
    key, raw = api_key
    key_client(raw).get(ME_URL)
    first = ApiKey.objects.get(pk=key.pk).last_used_at

    key_client(raw).get(ME_URL)

    assert ApiKey.objects.get(pk=key.pk).last_used_at == first
    a_while_ago = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=a_while_ago)
    # The process holds the key with the last use it wrote; this one reads the moved-back one.
    credentials_cache_clear()
    key_client(raw).get(ME_URL)
    assert ApiKey.objects.get(pk=key.pk).last_used_at > a_while_ago


def test_wrong_secret_for_a_real_prefix_is_refused(api_key):
    _key, raw = api_key
    prefix_part, secret = raw.split(".")
    wrong = f"{prefix_part}.{'A' * len(secret)}"

    assert_error(key_client(wrong).get(ME_URL), 401, "unauthenticated")


def test_unknown_well_formed_key_is_refused(api_key):
    assert_error(key_client("gsk_0123456789ab." + "a" * 43).get(ME_URL), 401, "unauthenticated")


@pytest.mark.parametrize("raw", MALFORMED_KEYS)
@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
def test_malformed_key_is_refused_over_http(raw, header):
    response = key_client(raw, header=header).get(ME_URL)

    assert_error(response, 401, "unauthenticated")


@pytest.mark.parametrize("raw", MALFORMED_KEYS)
def test_malformed_key_is_refused_before_any_query(raw, django_assert_num_queries):
    request = Request(APIRequestFactory().get(ME_URL, HTTP_X_API_KEY=raw))

    with django_assert_num_queries(0), pytest.raises(AuthenticationFailed):
        ApiKeyAuthentication().authenticate(request)


@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
def test_malformed_key_request_costs_no_query_at_all(django_assert_num_queries, header):
    client = key_client("gsk_not-a-key", header=header)

    with django_assert_num_queries(0):
        response = client.get(ME_URL)

    assert_error(response, 401, "unauthenticated")


@pytest.mark.parametrize("raw", MALFORMED_KEYS)
def test_malformed_key_is_refused_before_any_query_on_websockets_too(
    raw, django_assert_num_queries
):
    with django_assert_num_queries(0), pytest.raises(Unauthenticated):
        credential_authenticate(raw)


def test_expired_key_is_refused(api_key):
    key, raw = api_key
    key.expires_at = timezone.now() - timedelta(seconds=1)
    key.save()

    error = assert_error(key_client(raw).get(ME_URL), 401, "unauthenticated")
    assert "expired" in error["message"]


def test_expires_in_days_key_works_until_then(user):
    key, raw = api_key_create(user=user, expires_in_days=1)
    assert key_client(raw).get(ME_URL).status_code == 200

    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    assert_error(key_client(raw).get(ME_URL), 401, "unauthenticated")


# Listing


def test_list_shows_own_keys_without_any_secret(auth_client, user, other_user):
    key, raw = api_key_create(user=user, name="mine")
    _other_key, other_raw = api_key_create(user=other_user, name="theirs")

    response = auth_client.get(LIST_URL)

    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["apiKeys"]
    assert body["apiKeys"] == [
        {
            "id": str(key.id),
            "prefix": key.prefix,
            "name": "mine",
            "createdAt": body["apiKeys"][0]["createdAt"],
            "expiresAt": None,
            "lastUsedAt": None,
            "revokedAt": None,
        }
    ]
    text = response.content.decode()
    for leaked in (raw, raw.split(".")[1], key.digest, other_raw):
        assert leaked not in text


def test_list_requires_authentication(api_client):
    assert_error(api_client.get(LIST_URL), 401, "unauthenticated")


# Revoke


def test_revoke_makes_the_key_fail_at_once(auth_client, api_key):
    key, raw = api_key
    assert key_client(raw).get(ME_URL).status_code == 200

    response = auth_client.delete(f"/api/v1/auth/api-keys/{key.id}")

    assert response.status_code == 204
    assert response.content == b""
    error = assert_error(key_client(raw).get(ME_URL), 401, "unauthenticated")
    assert "revoked" in error["message"]
    listed = auth_client.get(LIST_URL).json()["apiKeys"]
    assert listed[0]["revokedAt"] is not None


def test_revoke_with_the_key_itself(api_key):
    key, raw = api_key
    client = key_client(raw)

    assert client.delete(f"/api/v1/auth/api-keys/{key.id}").status_code == 204
    assert_error(client.get(ME_URL), 401, "unauthenticated")


def test_revoke_twice_keeps_the_first_revocation(auth_client, api_key):
    key, _raw = api_key
    auth_client.delete(f"/api/v1/auth/api-keys/{key.id}")
    first = ApiKey.objects.get(pk=key.pk).revoked_at

    again = auth_client.delete(f"/api/v1/auth/api-keys/{key.id}")

    assert again.status_code == 204
    assert ApiKey.objects.get(pk=key.pk).revoked_at == first


def test_another_users_key_is_not_found_on_delete_and_rotate(other_user, api_key):
    key, raw = api_key
    intruder = client_for(other_user)

    deleted = intruder.delete(f"/api/v1/auth/api-keys/{key.id}")
    rotated = intruder.post(rotate_url(key.id), {}, format="json")

    unknown = intruder.delete("/api/v1/auth/api-keys/00000000-0000-0000-0000-000000000000")

    assert_error(deleted, 404, "not_found")
    assert_error(rotated, 404, "not_found")
    # Existence is not leaked: someone else's key looks exactly like no key.
    assert deleted.json() == unknown.json()
    key.refresh_from_db()
    assert key.revoked_at is None
    assert key.expires_at is None
    assert ApiKey.objects.count() == 1
    assert key_client(raw).get(ME_URL).status_code == 200


def test_unknown_key_id_and_a_non_uuid_are_not_found(auth_client):
    unknown = auth_client.delete("/api/v1/auth/api-keys/00000000-0000-0000-0000-000000000000")
    not_uuid = auth_client.delete("/api/v1/auth/api-keys/123")

    assert_error(unknown, 404, "not_found")
    assert_error(not_uuid, 404, "not_found")


# Rotate


def test_rotate_gives_a_new_key_and_the_old_works_during_grace(auth_client, api_key, user):
    old, old_raw = api_key

    response = auth_client.post(rotate_url(old.id), {"graceHours": 2}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"apiKey", "id", "prefix", "name", "createdAt", "expiresAt"}
    assert body["apiKey"] != old_raw
    assert body["name"] == "test key"
    assert key_client(body["apiKey"]).get(ME_URL).json()["id"] == str(user.id)
    assert key_client(old_raw).get(ME_URL).status_code == 200
    old.refresh_from_db()
    assert timedelta(hours=1, minutes=59) < old.expires_at - timezone.now() <= timedelta(hours=2)

    # The grace period ends.
    ApiKey.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert_error(key_client(old_raw).get(ME_URL), 401, "unauthenticated")
    assert key_client(body["apiKey"]).get(ME_URL).status_code == 200


def test_rotate_grace_defaults_to_24_hours(auth_client, api_key):
    old, _raw = api_key

    response = auth_client.post(rotate_url(old.id), {}, format="json")

    assert response.status_code == 201
    old.refresh_from_db()
    remaining = old.expires_at - timezone.now()
    assert timedelta(hours=23, minutes=59) < remaining <= timedelta(hours=24)


def test_rotate_with_zero_grace_ends_the_old_key_at_once(auth_client, api_key):
    old, old_raw = api_key

    response = auth_client.post(rotate_url(old.id), {"graceHours": 0}, format="json")

    assert response.status_code == 201
    assert_error(key_client(old_raw).get(ME_URL), 401, "unauthenticated")
    assert key_client(response.json()["apiKey"]).get(ME_URL).status_code == 200


def test_rotate_validates_grace_hours(auth_client, api_key):
    key, _raw = api_key

    negative = auth_client.post(rotate_url(key.id), {"graceHours": -1}, format="json")
    wrong_type = auth_client.post(rotate_url(key.id), {"graceHours": "long"}, format="json")
    bad_json = auth_client.post(rotate_url(key.id), data="{", content_type="application/json")

    assert "graceHours" in assert_error(negative, 400, "validation_error")["details"]
    assert "graceHours" in assert_error(wrong_type, 400, "validation_error")["details"]
    assert_error(bad_json, 400, "bad_request")
    assert ApiKey.objects.count() == 1


def test_a_revoked_key_cannot_be_rotated(auth_client, api_key):
    key, _raw = api_key
    auth_client.delete(f"/api/v1/auth/api-keys/{key.id}")

    response = auth_client.post(rotate_url(key.id), {}, format="json")

    assert_error(response, 409, "conflict")
    assert ApiKey.objects.count() == 1


# What the audit trail keeps


def test_key_lifecycle_is_recorded_without_the_raw_keys(api_client, user):
    created = api_client.post(
        CREATE_URL, {"email": user.email, "password": PASSWORD, "name": "ci"}, format="json"
    ).json()
    client = client_for(user)
    rotated = client.post(rotate_url(created["id"]), {"graceHours": 1}, format="json").json()
    client.delete(f"/api/v1/auth/api-keys/{rotated['id']}")

    actions = set(Event.objects.filter(type="auth").values_list("action", flat=True))
    assert {"api_key_create", "api_key_rotate", "api_key_revoke"} <= actions
    create_event = Event.objects.get(action="api_key_create")
    assert create_event.data["keyId"] == created["id"]
    assert create_event.data["prefix"] == created["prefix"]
    stored = json.dumps(list(Event.objects.values("data", "user_email", "action")))
    for secret in (
        created["apiKey"],
        created["apiKey"].split(".")[1],
        rotated["apiKey"],
        rotated["apiKey"].split(".")[1],
        PASSWORD,
    ):
        assert secret not in stored
