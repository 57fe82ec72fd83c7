"""Rows written by hand from a model's columns read back as the ORM writes and reads them."""

import pytest
from django.db import connection

from chat.models import Message, MessageRole
from gemini_server.columns import rows_insert
from monitoring.models import Event

pytestmark = pytest.mark.django_db


def test_inserted_rows_get_their_keys_in_order_and_read_back_as_written(session):
    rows = [
        Message(session_id=session.id, role=MessageRole.USER, parts=[{"text": f"q{n}"}], text="")
        for n in range(3)
    ]

    rows_insert(rows)

    assert all(not row._state.adding and row._state.db == connection.alias for row in rows)
    assert [row.seq for row in rows] == sorted(row.seq for row in rows)
    stored = list(Message.objects.filter(session_id=session.id).order_by("seq"))
    assert [(m.seq, m.id, m.parts, m.created_at) for m in stored] == [
        (row.seq, row.id, row.parts, row.created_at) for row in rows
    ]


def test_more_rows_than_one_statement_takes_go_in_batches(user):
    # SQLite binds at most 999 values per statement: 250 rows of 9 fields need three.
    events = [
        Event(type="chat", action="user_message", user=user, data={"n": n}) for n in range(250)
    ]

    rows_insert(events)

    assert len({event.pk for event in events}) == 250
    stored = list(Event.objects.order_by("pk").values_list("pk", "data"))
    assert stored == [(event.pk, {"n": n}) for n, event in enumerate(events)]


def test_nothing_to_insert_sends_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        rows_insert([])
