"""Management commands: create, rotate and revoke API keys; createsuperuser makes an admin."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from monitoring.models import Event
from tests.accounts.conftest import LOGIN_URL, ME_URL
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def run(*args, **options) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def me_with(raw: str):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client.get(ME_URL)


# create_api_key


def test_create_api_key_prints_a_working_key_once(user):
    out, err = run("create_api_key", "--email", "Engineer@Example.com", "--name", "deploy")

    raw = out.strip()
    assert raw.startswith("gsk_")
    assert raw not in err
    key = ApiKey.objects.get()
    assert key.name == "deploy"
    assert key.prefix in err
    assert raw.startswith(f"gsk_{key.prefix}.")
    assert key.expires_at is None
    response = me_with(raw)
    assert response.status_code == 200
    assert response.json()["email"] == user.email
    assert raw not in json.dumps(list(Event.objects.values("data")))


def test_create_api_key_with_expiry(user):
    out, _err = run("create_api_key", "--email", user.email, "--expires-days", "10")

    key = ApiKey.objects.get()
    assert key.expires_at - key.created_at == timedelta(days=10)
    assert me_with(out.strip()).status_code == 200


def test_create_api_key_refuses_unknown_email_and_bad_expiry(user):
    with pytest.raises(CommandError, match="No user"):
        run("create_api_key", "--email", "ghost@example.com")
    with pytest.raises(CommandError, match="at least 1"):
        run("create_api_key", "--email", user.email, "--expires-days", "0")

    assert ApiKey.objects.count() == 0


# rotate_api_keys


def test_rotate_by_email_replaces_that_users_keys(user, other_user):
    _mine, mine_raw = api_key_create(user=user, name="mine")
    _theirs, theirs_raw = api_key_create(user=other_user, name="theirs")

    out, err = run("rotate_api_keys", "--email", user.email, "--grace-hours", "0")

    lines = out.strip().splitlines()
    assert len(lines) == 1
    email, change, new_raw = lines[0].split("\t")
    assert email == user.email
    assert new_raw.startswith("gsk_")
    assert "Rotated 1 key(s)" in err
    assert me_with(new_raw).status_code == 200
    assert me_with(mine_raw).status_code == 401
    assert me_with(theirs_raw).status_code == 200
    new = ApiKey.objects.get(prefix=new_raw[4:16])
    assert change == f"{new.rotated_from.prefix} -> {new.prefix}"


def test_rotate_with_grace_keeps_the_old_key_working_until_it_ends(user):
    old, old_raw = api_key_create(user=user)

    out, _err = run("rotate_api_keys", "--email", user.email, "--grace-hours", "5")

    new_raw = out.strip().split("\t")[2]
    assert me_with(old_raw).status_code == 200
    assert me_with(new_raw).status_code == 200
    old.refresh_from_db()
    assert timedelta(hours=4, minutes=59) < old.expires_at - timezone.now() <= timedelta(hours=5)
    ApiKey.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert me_with(old_raw).status_code == 401
    assert me_with(new_raw).status_code == 200


def test_rotate_older_than_days_leaves_young_keys_alone(user, other_user):
    old, old_raw = api_key_create(user=user, name="old")
    ApiKey.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    _young, young_raw = api_key_create(user=other_user, name="young")

    out, _err = run("rotate_api_keys", "--older-than-days", "30", "--grace-hours", "0")

    lines = out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(user.email + "\t")
    assert me_with(old_raw).status_code == 401
    assert me_with(young_raw).status_code == 200
    assert me_with(lines[0].split("\t")[2]).status_code == 200


def test_rotate_skips_revoked_keys_and_keys_already_replaced(user):
    revoked, _ = api_key_create(user=user, name="revoked")
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    api_key_create(user=user, name="live")

    first, _ = run("rotate_api_keys", "--email", user.email, "--grace-hours", "1")
    second, _ = run("rotate_api_keys", "--email", user.email, "--grace-hours", "1")

    assert len(first.strip().splitlines()) == 1
    # The second run rotates only the key the first one made, not the one in its grace period.
    assert len(second.strip().splitlines()) == 1
    assert ApiKey.objects.count() == 4


def test_rotate_needs_a_selection_and_a_sane_grace(user):
    api_key_create(user=user)

    with pytest.raises(CommandError, match="--email"):
        run("rotate_api_keys")
    with pytest.raises(CommandError, match="negative"):
        run("rotate_api_keys", "--email", user.email, "--grace-hours", "-1")

    assert ApiKey.objects.count() == 1


# revoke_api_key


@pytest.mark.parametrize("form", ["prefix", "gsk_prefix", "raw key"])
def test_revoke_by_prefix(user, form):
    key, raw = api_key_create(user=user, name="doomed")
    _kept, kept_raw = api_key_create(user=user, name="kept")
    given = {"prefix": key.prefix, "gsk_prefix": f"gsk_{key.prefix}", "raw key": raw}[form]

    out, _err = run("revoke_api_key", "--prefix", given)

    assert f"Revoked gsk_{key.prefix}" in out
    assert raw not in out
    assert me_with(raw).status_code == 401
    assert me_with(kept_raw).status_code == 200
    assert Event.objects.filter(action="api_key_revoke").count() == 1


def test_revoke_unknown_prefix_fails():
    with pytest.raises(CommandError, match="No API key"):
        run("revoke_api_key", "--prefix", "0123456789ab")


# createsuperuser


def test_createsuperuser_noinput_makes_an_admin_who_can_log_in(monkeypatch, api_client):
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "Root@Example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)

    run("createsuperuser", interactive=False)

    root = User.objects.get()
    assert root.email == "root@example.com"
    assert root.role == "admin"
    assert root.is_staff and root.is_superuser
    login = api_client.post(
        LOGIN_URL, {"email": "root@example.com", "password": PASSWORD}, format="json"
    )
    assert login.status_code == 200
    assert login.json()["user"]["role"] == "admin"
    users = APIClient()
    users.credentials(HTTP_AUTHORIZATION=f"Bearer {login.json()['accessToken']}")
    assert users.get("/api/v1/users").status_code == 200


def test_createsuperuser_refuses_a_taken_email(monkeypatch):
    make_user("root@example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "root@example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)

    with pytest.raises(CommandError):
        run("createsuperuser", interactive=False)

    assert User.objects.get().role == "engineer"
