"""The Django admin for users and API keys: lists, forms, actions, and who may open it."""

import json
import re
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from monitoring.models import Event
from tests.accounts.conftest import LOGIN_URL, ME_URL
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db

RAW_KEY = re.compile(r"gsk_[0-9a-f]{12}\.[A-Za-z0-9_-]+")


def works(raw: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client.get(ME_URL).status_code == 200


def shown_keys(response) -> list[str]:
    return [
        m for message in get_messages(response.wsgi_request) for m in RAW_KEY.findall(str(message))
    ]


def test_admin_client_is_our_admin(admin_client, admin_user):
    response = admin_client.get("/admin/")

    assert response.status_code == 200
    assert response.wsgi_request.user == admin_user
    assert b"API keys" in response.content


def test_user_changelist_renders_with_filters_and_search(admin_client, user, viewer):
    everyone = admin_client.get("/admin/accounts/user/")
    viewers = admin_client.get("/admin/accounts/user/?role__exact=viewer")
    searched = admin_client.get("/admin/accounts/user/?q=engineer")

    assert everyone.status_code == 200
    assert b"engineer@example.com" in everyone.content
    assert b"viewer@example.com" in everyone.content
    assert b"By role" in everyone.content
    assert viewers.status_code == 200
    assert b"viewer@example.com" in viewers.content
    assert b"engineer@example.com" not in viewers.content
    assert searched.status_code == 200
    assert b"engineer@example.com" in searched.content
    assert b"viewer@example.com" not in searched.content


def test_user_change_form_never_shows_the_password_hash(admin_client, user):
    response = admin_client.get(f"/admin/accounts/user/{user.pk}/change/")

    assert response.status_code == 200
    assert b"engineer@example.com" in response.content
    assert user.password.encode() not in response.content


def test_admin_adds_a_user_through_the_service(admin_client, admin_user, api_client):
    response = admin_client.post(
        "/admin/accounts/user/add/",
        {"email": "added@example.com", "name": "Added", "role": "viewer", "password": PASSWORD},
    )

    assert response.status_code == 302
    added = User.objects.get(email="added@example.com")
    assert added.role == "viewer"
    login = api_client.post(LOGIN_URL, {"email": added.email, "password": PASSWORD}, format="json")
    assert login.status_code == 200
    event = Event.objects.get(action="user_create")
    assert event.user == admin_user


def test_admin_deactivates_a_user_and_their_key_stops(admin_client, user, api_key):
    _key, raw = api_key
    assert works(raw)

    response = admin_client.post(
        f"/admin/accounts/user/{user.pk}/change/",
        {"name": "Test", "role": "engineer", "new_password": ""},
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.is_active is False
    assert not works(raw)
    assert Event.objects.get(action="user_update").data["changes"] == {"isActive": False}


def test_key_changelist_renders_with_filters_and_search(admin_client, user, other_user):
    mine, _ = api_key_create(user=user, name="laptop")
    theirs, _ = api_key_create(user=other_user, name="ci-runner")

    everyone = admin_client.get("/admin/accounts/apikey/")
    searched = admin_client.get("/admin/accounts/apikey/?q=other@example.com")
    by_name = admin_client.get("/admin/accounts/apikey/?q=laptop")
    revoked = admin_client.get("/admin/accounts/apikey/?revoked_at__isnull=True")

    assert everyone.status_code == 200
    assert mine.prefix.encode() in everyone.content
    assert theirs.prefix.encode() in everyone.content
    assert b"By revoked at" in everyone.content
    assert searched.status_code == 200
    assert theirs.prefix.encode() in searched.content
    assert mine.prefix.encode() not in searched.content
    assert mine.prefix.encode() in by_name.content
    assert theirs.prefix.encode() not in by_name.content
    assert revoked.status_code == 200


def test_key_change_page_never_shows_the_digest(admin_client, api_key):
    key, raw = api_key

    response = admin_client.get(f"/admin/accounts/apikey/{key.pk}/change/")

    assert response.status_code == 200
    assert key.prefix.encode() in response.content
    assert key.digest.encode() not in response.content
    assert raw.split(".")[1].encode() not in response.content


def test_editing_a_revoked_key_in_the_admin_cannot_bring_it_back(admin_client, api_key):
    key, raw = api_key
    revoked_at = timezone.now() - timedelta(hours=1)
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=revoked_at)

    response = admin_client.post(
        f"/admin/accounts/apikey/{key.pk}/change/",
        {"name": "renamed", "revoked_at": "", "expires_at": ""},
    )

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.name == "renamed"
    assert key.revoked_at == revoked_at
    assert not works(raw)


def test_adding_a_key_in_the_admin_shows_the_raw_key_once(admin_client, admin_user, user):
    response = admin_client.post(
        "/admin/accounts/apikey/add/",
        {"user": str(user.pk), "name": "from admin", "expires_in_days": "7"},
        follow=True,
    )

    assert response.status_code == 200
    keys = shown_keys(response)
    assert len(keys) == 1
    raw = keys[0]
    assert raw.encode() in response.content
    key = ApiKey.objects.get(name="from admin")
    assert raw.startswith(f"gsk_{key.prefix}.")
    assert key.user == user
    assert timedelta(days=6, hours=23) < key.expires_at - timezone.now() <= timedelta(days=7)
    assert works(raw)
    # Shown once: the next page no longer carries it.
    again = admin_client.get("/admin/accounts/apikey/")
    assert raw.encode() not in again.content
    assert Event.objects.get(action="api_key_create").user == admin_user


def test_revoke_action_revokes_through_the_service(admin_client, admin_user, user):
    first, first_raw = api_key_create(user=user, name="one")
    second, second_raw = api_key_create(user=user, name="two")
    _kept, kept_raw = api_key_create(user=user, name="kept")

    response = admin_client.post(
        "/admin/accounts/apikey/",
        {"action": "revoke_keys", "_selected_action": [str(first.pk), str(second.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert b"Revoked 2 key(s)." in response.content
    assert not works(first_raw)
    assert not works(second_raw)
    assert works(kept_raw)
    revokes = Event.objects.filter(action="api_key_revoke")
    assert revokes.count() == 2
    assert {e.user_id for e in revokes} == {admin_user.pk}


def test_rotate_action_shows_new_keys_and_keeps_old_ones_for_the_grace(admin_client, user):
    old, old_raw = api_key_create(user=user, name="rotating")
    dead, _dead_raw = api_key_create(user=user, name="dead")
    dead.revoked_at = timezone.now()
    dead.save()

    response = admin_client.post(
        "/admin/accounts/apikey/",
        {"action": "rotate_keys", "_selected_action": [str(old.pk), str(dead.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    keys = shown_keys(response)
    assert len(keys) == 1
    new_raw = keys[0]
    assert works(new_raw)
    assert works(old_raw)
    # The admin capitalises the first letter of a message: the prefix must not start it.
    assert f"API key gsk_{dead.prefix} is revoked or expired".encode() in response.content
    assert f"API key gsk_{old.prefix} replaced".encode() in response.content
    new = ApiKey.objects.get(rotated_from=old)
    assert new_raw.startswith(f"gsk_{new.prefix}.")
    old.refresh_from_db()
    assert timedelta(hours=23) < old.expires_at - timezone.now() <= timedelta(hours=24)
    ApiKey.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert not works(old_raw)
    assert works(new_raw)


def test_admin_records_never_hold_raw_keys(admin_client, user):
    old, old_raw = api_key_create(user=user)
    added = admin_client.post(
        "/admin/accounts/apikey/add/", {"user": str(user.pk), "name": "n"}, follow=True
    )
    rotated = admin_client.post(
        "/admin/accounts/apikey/",
        {"action": "rotate_keys", "_selected_action": [str(old.pk)]},
        follow=True,
    )

    raws = [old_raw, *shown_keys(added), *shown_keys(rotated)]
    assert len(raws) == 3
    stored = json.dumps(list(Event.objects.values("data", "user_email", "action")))
    from django.contrib.admin.models import LogEntry

    stored += json.dumps(list(LogEntry.objects.values("object_repr", "change_message")))
    for raw in raws:
        assert raw not in stored
        assert raw.split(".")[1] not in stored


@pytest.mark.parametrize("role", ["engineer", "viewer"])
def test_non_admins_are_refused_the_admin(role):
    person = make_user(f"{role}-person@example.com", role=role)
    client = Client()
    client.force_login(person)

    home = client.get("/admin/")
    keys = client.get("/admin/accounts/apikey/")

    for response in (home, keys):
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/admin/login/")


def test_deactivated_admin_is_refused_the_admin(admin_user):
    client = Client()
    client.force_login(admin_user)
    User.objects.filter(pk=admin_user.pk).update(is_active=False)

    response = client.get("/admin/accounts/user/")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login/")


def test_anonymous_is_sent_to_the_admin_login(client):
    response = client.get("/admin/accounts/user/")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login/")


def test_admin_login_with_email_and_password(client, admin_user, user):
    refused = client.post(
        "/admin/login/?next=/admin/", {"username": user.email, "password": PASSWORD}
    )
    assert refused.status_code == 200
    assert client.get("/admin/").status_code == 302

    admitted = client.post(
        "/admin/login/?next=/admin/", {"username": admin_user.email, "password": PASSWORD}
    )

    assert admitted.status_code == 302
    assert client.get("/admin/").status_code == 200
