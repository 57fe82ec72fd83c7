"""`manage.py cleanup_sessions`: expired sessions go with their workspaces; live ones stay."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from chat.models import Checkpoint, Message
from chat.turns.store import message_store
from monitoring.models import Event
from sessions_app.models import Session
from sessions_app.workspace import session_workspace

# Workspaces are removed once the deletion commits, so these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)


def cleanup() -> str:
    out = StringIO()
    call_command("cleanup_sessions", stdout=out)
    return out.getvalue().strip()


def expire(session, *, ago=timedelta(minutes=1), **fields):
    Session.objects.filter(pk=session.pk).update(expires_at=timezone.now() - ago, **fields)


def test_expired_sessions_go_with_their_workspaces_and_live_ones_stay(make_session, user):
    expired, live = make_session(), make_session()
    expired_workspace, live_workspace = session_workspace(expired), session_workspace(live)
    (expired_workspace / "old.txt").write_text("old")
    (live_workspace / "new.txt").write_text("new")
    message_store(session=expired, user=user, role="user", parts=[{"text": "hello"}])
    Checkpoint.objects.create(session=expired, tag="t", history=[])
    expire(expired)

    assert cleanup() == "Deleted 1 expired session(s)."

    assert not Session.objects.filter(pk=expired.pk).exists()
    assert not expired_workspace.exists()
    assert not Message.objects.filter(session_id=expired.pk).exists()
    assert not Checkpoint.objects.filter(session_id=expired.pk).exists()
    assert Session.objects.filter(pk=live.pk).exists()
    assert (live_workspace / "new.txt").read_text() == "new"

    event = Event.objects.get(type="session", action="expire")
    assert event.session_id == expired.id
    assert event.user == user and event.user_email == user.email
    assert event.data["expiresAt"].endswith("Z")
    # The audit trail keeps what happened in the session.
    assert Event.objects.filter(type="chat", session_id=expired.id).exists()


def test_a_second_run_finds_nothing(make_session):
    expire(make_session())

    assert cleanup() == "Deleted 1 expired session(s)."
    assert cleanup() == "Deleted 0 expired session(s)."
    assert Event.objects.filter(type="session", action="expire").count() == 1


def test_an_expired_session_with_a_live_turn_is_kept(make_session):
    running = make_session()
    expire(
        running,
        turn_id="11111111-1111-4111-8111-111111111111",
        turn_heartbeat_at=timezone.now(),
    )

    assert cleanup() == "Deleted 0 expired session(s)."

    assert Session.objects.filter(pk=running.pk).exists()
    assert session_workspace(running).is_dir()
    assert not Event.objects.filter(type="session", action="expire").exists()


def test_an_expired_session_whose_turn_died_is_removed(make_session):
    abandoned = make_session()
    expire(
        abandoned,
        turn_id="11111111-1111-4111-8111-111111111111",
        turn_heartbeat_at=timezone.now() - timedelta(minutes=10),
    )

    assert cleanup() == "Deleted 1 expired session(s)."

    assert not Session.objects.filter(pk=abandoned.pk).exists()
    assert not session_workspace(abandoned).exists()


def test_sessions_of_every_user_are_cleaned(make_session, other_user):
    mine, theirs = make_session(), make_session(owner=other_user)
    expire(mine)
    expire(theirs, ago=timedelta(days=30))

    assert cleanup() == "Deleted 2 expired session(s)."

    assert Session.objects.count() == 0
    assert not session_workspace(mine).exists() and not session_workspace(theirs).exists()
    users = set(
        Event.objects.filter(type="session", action="expire").values_list("user_id", flat=True)
    )
    assert users == {mine.user_id, other_user.id}
