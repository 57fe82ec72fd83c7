"""Nothing runs unaudited: a tool call is recorded before it runs, and does not run without that row."""

import pytest
from django.db import connection

from monitoring.models import Event

pytestmark = pytest.mark.django_db(transaction=True)


def execute(client, session, name, args):
    return client.post(
        "/api/v1/tools/execute",
        {"sessionId": str(session.id), "name": name, "args": args},
        format="json",
    )


def test_a_direct_call_is_recorded_before_and_after_it_runs(auth_client, session, workspace):
    answer = execute(auth_client, session, "write_file", {"file_path": "a.txt", "content": "x"})

    assert answer.status_code == 200
    call_id = answer.json()["callId"]
    actions = list(
        Event.objects.filter(type="tool", data__callId=call_id)
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == ["call_start", "call"]


def test_a_call_whose_audit_cannot_be_written_does_not_run(auth_client, session, workspace):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE monitoring_event RENAME TO monitoring_event_away")
    try:
        answer = execute(auth_client, session, "write_file", {"file_path": "b.txt", "content": "x"})
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE monitoring_event_away RENAME TO monitoring_event")

    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal"
    assert not (workspace / "b.txt").exists()
