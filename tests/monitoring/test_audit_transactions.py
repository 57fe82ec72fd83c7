"""A change and its audit row commit together: no change without its row, no row without its change."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, User
from accounts.services import (
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    user_create,
    user_delete,
    user_update,
)
from monitoring.models import AuditAction, Event
from sessions_app.models import Session
from sessions_app.services import (
    session_create,
    session_delete,
    session_extend,
    session_update,
    sessions_expire,
)
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


class AuditDown(Exception):
    pass


@pytest.fixture
def audit_down(monkeypatch):
    """From here on, writing an audit row fails as a database that refuses it would."""

    def refuse(*args, **kwargs):
        raise AuditDown("the audit table refuses the row")

    def start():
        monkeypatch.setattr("monitoring.services.rows_insert", refuse)

    return start


@pytest.fixture
def world(user, admin_user):
    session = session_create(user=user)
    key, _ = api_key_create(user=user, name="k")
    # Ids kept apart: a deleted instance forgets its own.
    return {
        "user": user,
        "admin": admin_user,
        "session": session,
        "key": key,
        "user_id": user.pk,
        "session_id": session.pk,
    }


CHANGES = {
    "user_create": (
        lambda w: user_create(email="new@example.com", password="a-long-pass-phrase-9"),
        lambda w: User.objects.filter(email="new@example.com").exists(),
    ),
    "user_update": (
        lambda w: user_update(user=w["user"], actor=w["admin"], name="Renamed"),
        lambda w: User.objects.get(pk=w["user"].pk).name,
    ),
    "user_delete": (
        lambda w: user_delete(user=w["user"], actor=w["admin"]),
        lambda w: (
            User.objects.filter(pk=w["user_id"]).exists(),
            Session.objects.filter(pk=w["session_id"]).exists(),
        ),
    ),
    "api_key_create": (
        lambda w: api_key_create(user=w["user"], name="another"),
        lambda w: ApiKey.objects.count(),
    ),
    "api_key_revoke": (
        lambda w: api_key_revoke(key=w["key"], actor=w["user"]),
        lambda w: ApiKey.objects.get(pk=w["key"].pk).revoked_at,
    ),
    "api_key_rotate": (
        lambda w: api_key_rotate(key=w["key"], actor=w["user"]),
        lambda w: (ApiKey.objects.count(), ApiKey.objects.get(pk=w["key"].pk).expires_at),
    ),
    "session_create": (
        lambda w: session_create(user=w["user"]),
        lambda w: Session.objects.count(),
    ),
    "session_update": (
        lambda w: session_update(session=w["session"], title="Renamed", actor=w["user"]),
        lambda w: Session.objects.get(pk=w["session"].pk).title,
    ),
    "session_extend": (
        lambda w: session_extend(session=w["session"], actor=w["user"], hours=5),
        lambda w: Session.objects.get(pk=w["session"].pk).expires_at,
    ),
    "session_delete": (
        lambda w: session_delete(session=w["session"], actor=w["user"]),
        lambda w: Session.objects.filter(pk=w["session_id"]).exists(),
    ),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_change_whose_audit_row_fails_is_rolled_back(name, world, audit_down):
    change, observe = CHANGES[name]
    before = observe(world)
    audit_down()

    with pytest.raises(AuditDown):
        change(world)

    assert observe(world) == before


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_change_and_its_row_are_written_together(name, world):
    change, observe = CHANGES[name]
    before, events = observe(world), Event.objects.count()

    change(world)

    assert observe(world) != before
    assert Event.objects.count() == events + 1


def test_an_expiry_whose_audit_row_fails_leaves_the_session(user, audit_down):
    session = session_create(user=user)
    Session.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    audit_down()

    with pytest.raises(AuditDown):
        sessions_expire()

    assert Session.objects.filter(pk=session.pk).exists()


def test_the_row_of_a_rolled_back_change_goes_with_it(user):
    session = session_create(user=user)

    with pytest.raises(RuntimeError), transaction.atomic():
        session_extend(session=session, actor=user, hours=3)
        raise RuntimeError("the caller's transaction fails after the change")

    assert not Event.objects.filter(action=AuditAction.SESSION_EXTEND).exists()


def test_the_live_publish_waits_for_the_commit(
    user, monkeypatch, django_capture_on_commit_callbacks
):
    published = []
    monkeypatch.setattr("monitoring.services.events_publish", published.extend)
    session = session_create(user=make_user("watcher@example.com"))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        session_extend(session=session, actor=user, hours=1)
        assert published == []  # written, not yet committed: nobody has seen it

    assert len(callbacks) == 1
    assert [event.action for event in published] == [AuditAction.SESSION_EXTEND]
