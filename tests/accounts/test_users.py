"""Admin-only user management: list, create, read, update, delete, and who may not."""

import json

import pytest

from accounts.models import User
from monitoring.models import Event
from tests.accounts.conftest import LOGIN_URL, ME_URL, assert_error
from tests.conftest import PASSWORD, client_for

pytestmark = pytest.mark.django_db

USERS_URL = "/api/v1/users"
NEW_PASSWORD = "a-fresh-and-long-passphrase"
USER_FIELDS = {"id", "email", "name", "role", "isActive", "createdAt"}


def user_url(user_id) -> str:
    return f"{USERS_URL}/{user_id}"


def test_admin_lists_users(admin_api_client, admin_user, user, viewer):
    response = admin_api_client.get(USERS_URL)

    assert response.status_code == 200
    users = response.json()["users"]
    assert [u["email"] for u in users] == [
        "admin@example.com",
        "engineer@example.com",
        "viewer@example.com",
    ]
    assert all(set(u) == USER_FIELDS for u in users)
    assert "password" not in response.content.decode()


def test_admin_creates_a_user_who_can_log_in(admin_api_client, api_client):
    response = admin_api_client.post(
        USERS_URL,
        {"email": "New@Example.com", "password": PASSWORD, "name": "New", "role": "viewer"},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["email"] == "new@example.com"
    assert body["role"] == "viewer"
    assert body["isActive"] is True
    login = api_client.post(
        LOGIN_URL, {"email": "new@example.com", "password": PASSWORD}, format="json"
    )
    assert login.status_code == 200
    assert login.json()["user"]["role"] == "viewer"


def test_created_user_defaults_to_engineer(admin_api_client):
    response = admin_api_client.post(
        USERS_URL, {"email": "plain@example.com", "password": PASSWORD}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["role"] == "engineer"


def test_duplicate_email_is_a_conflict(admin_api_client, user):
    response = admin_api_client.post(
        USERS_URL, {"email": "ENGINEER@example.com", "password": PASSWORD}, format="json"
    )

    assert_error(response, 409, "conflict")
    assert User.objects.filter(email__iexact="engineer@example.com").count() == 1


@pytest.mark.parametrize("weak", ["123", "qwertyuiop", "98765432109876"])
def test_weak_password_is_a_validation_error(admin_api_client, weak):
    response = admin_api_client.post(
        USERS_URL, {"email": "weak@example.com", "password": weak}, format="json"
    )

    error = assert_error(response, 400, "validation_error")
    assert list(error["details"]) == ["password"]
    assert error["details"]["password"]
    assert weak not in json.dumps(error)
    assert not User.objects.filter(email="weak@example.com").exists()


def test_create_validates_fields(admin_api_client):
    missing = admin_api_client.post(USERS_URL, {}, format="json")
    wrong = admin_api_client.post(
        USERS_URL,
        {"email": "nope", "password": 12, "role": "superuser", "name": {"a": 1}},
        format="json",
    )
    bad_json = admin_api_client.post(USERS_URL, data="{", content_type="application/json")

    assert set(assert_error(missing, 400, "validation_error")["details"]) == {"email", "password"}
    assert {"email", "role", "name"} <= set(assert_error(wrong, 400, "validation_error")["details"])
    assert_error(bad_json, 400, "bad_request")


def test_admin_reads_one_user(admin_api_client, user):
    response = admin_api_client.get(user_url(user.id))

    assert response.status_code == 200
    assert response.json()["id"] == str(user.id)
    assert response.json()["email"] == user.email


def test_unknown_user_is_not_found(admin_api_client):
    missing = "00000000-0000-0000-0000-000000000000"

    assert_error(admin_api_client.get(user_url(missing)), 404, "not_found")
    assert_error(
        admin_api_client.patch(user_url(missing), {"name": "x"}, format="json"), 404, "not_found"
    )
    assert_error(admin_api_client.delete(user_url(missing)), 404, "not_found")


def test_admin_updates_name_and_role(admin_api_client, user):
    response = admin_api_client.patch(
        user_url(user.id), {"name": "Renamed", "role": "viewer"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"
    assert response.json()["role"] == "viewer"
    user.refresh_from_db()
    assert (user.name, user.role) == ("Renamed", "viewer")


def test_role_change_applies_to_the_users_existing_token(admin_api_client, user):
    token_client = client_for(user)
    assert_error(token_client.get(USERS_URL), 403, "forbidden")

    admin_api_client.patch(user_url(user.id), {"role": "admin"}, format="json")

    assert token_client.get(USERS_URL).status_code == 200


def test_admin_sets_a_new_password(admin_api_client, api_client, user):
    response = admin_api_client.patch(user_url(user.id), {"password": NEW_PASSWORD}, format="json")

    assert response.status_code == 200
    old = api_client.post(LOGIN_URL, {"email": user.email, "password": PASSWORD}, format="json")
    new = api_client.post(LOGIN_URL, {"email": user.email, "password": NEW_PASSWORD}, format="json")
    assert_error(old, 401, "unauthenticated")
    assert new.status_code == 200


def test_update_refuses_a_weak_password_and_bad_values(admin_api_client, api_client, user):
    weak = admin_api_client.patch(user_url(user.id), {"password": "123"}, format="json")
    bad = admin_api_client.patch(
        user_url(user.id), {"role": "root", "isActive": "perhaps"}, format="json"
    )

    assert list(assert_error(weak, 400, "validation_error")["details"]) == ["password"]
    assert set(assert_error(bad, 400, "validation_error")["details"]) == {"role", "isActive"}
    user.refresh_from_db()
    assert user.role == "engineer" and user.is_active
    login = api_client.post(LOGIN_URL, {"email": user.email, "password": PASSWORD}, format="json")
    assert login.status_code == 200


def test_admin_deletes_a_user(admin_api_client, user, api_key):
    _key, raw = api_key
    token_client = client_for(user)

    response = admin_api_client.delete(user_url(user.id))

    assert response.status_code == 204
    assert not User.objects.filter(pk=user.pk).exists()
    assert_error(admin_api_client.get(user_url(user.id)), 404, "not_found")
    assert_error(token_client.get(ME_URL), 401, "unauthenticated")
    token_client.credentials(HTTP_X_API_KEY=raw)
    assert_error(token_client.get(ME_URL), 401, "unauthenticated")


def test_admin_cannot_delete_themselves(admin_api_client, admin_user):
    response = admin_api_client.delete(user_url(admin_user.id))

    assert_error(response, 409, "conflict")
    assert User.objects.filter(pk=admin_user.pk).exists()


@pytest.mark.parametrize("role_fixture", ["user", "viewer"])
def test_non_admins_are_forbidden_everywhere_under_users(request, role_fixture, other_user):
    client = client_for(request.getfixturevalue(role_fixture))
    calls = [
        client.get(USERS_URL),
        client.post(USERS_URL, {"email": "x@example.com", "password": PASSWORD}, format="json"),
        client.get(user_url(other_user.id)),
        client.patch(user_url(other_user.id), {"role": "admin"}, format="json"),
        client.delete(user_url(other_user.id)),
    ]

    for response in calls:
        assert_error(response, 403, "forbidden")
    other_user.refresh_from_db()
    assert other_user.role == "engineer"
    assert not User.objects.filter(email="x@example.com").exists()


def test_anonymous_is_unauthenticated_under_users(api_client, user):
    assert_error(api_client.get(USERS_URL), 401, "unauthenticated")
    assert_error(api_client.delete(user_url(user.id)), 401, "unauthenticated")


def test_user_changes_are_recorded_without_passwords(admin_api_client, admin_user):
    created = admin_api_client.post(
        USERS_URL, {"email": "audited@example.com", "password": PASSWORD}, format="json"
    ).json()
    admin_api_client.patch(
        user_url(created["id"]), {"role": "viewer", "password": NEW_PASSWORD}, format="json"
    )
    admin_api_client.delete(user_url(created["id"]))

    events = {e.action: e for e in Event.objects.filter(type="auth")}
    assert {"user_create", "user_update", "user_delete"} <= set(events)
    for action in ("user_create", "user_update", "user_delete"):
        assert events[action].user_id == admin_user.id
        assert events[action].data["targetUserId"] == created["id"]
    assert events["user_update"].data["changes"]["role"] == "viewer"
    assert "password" in events["user_update"].data["changes"]
    stored = json.dumps(list(Event.objects.values("data", "user_email", "action")))
    assert PASSWORD not in stored
    assert NEW_PASSWORD not in stored
