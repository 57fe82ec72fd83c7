"""Retention and audits handed out: prune_events and export_events."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from monitoring.models import Event
from monitoring.services import event_record
from tests.monitoring.conftest import TYPICAL_ACTION

pytestmark = pytest.mark.django_db


def record(at, type="chat", action=None, user=None, **data) -> Event:
    event = event_record(type=type, action=action or TYPICAL_ACTION[type], user=user, data=data)
    Event.objects.filter(pk=event.pk).update(created_at=at)
    event.refresh_from_db()
    return event


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# prune_events


@pytest.fixture
def ages():
    now = timezone.now()
    return {days: record(now - timedelta(days=days, minutes=1), n=days) for days in (0, 29, 31, 90)}


def test_prune_deletes_only_events_older_than_the_period(ages):
    out, _ = run("prune_events", "--older-than-days", "30")

    assert out.strip() == "Deleted 2 event(s) older than 30 day(s)."
    assert sorted(Event.objects.values_list("data__n", flat=True)) == [0, 29]


def test_prune_dry_run_counts_and_deletes_nothing(ages):
    out, _ = run("prune_events", "--older-than-days", "30", "--dry-run")

    assert out.strip() == "Would delete 2 event(s) older than 30 day(s)."
    assert Event.objects.count() == 4


def test_prune_with_nothing_old_deletes_nothing(ages):
    out, _ = run("prune_events", "--older-than-days", "365")

    assert out.strip() == "Deleted 0 event(s) older than 365 day(s)."
    assert Event.objects.count() == 4


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_prune_refuses_a_bad_period(ages, value):
    with pytest.raises(CommandError):
        run("prune_events", "--older-than-days", value)

    assert Event.objects.count() == 4


def test_prune_needs_a_period():
    with pytest.raises(CommandError, match="older-than-days"):
        run("prune_events")


# export_events


@pytest.fixture
def january(user):
    return [
        record(datetime(2025, 12, 31, 23, 59, tzinfo=UTC), n="before"),
        record(datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "auth", "login", user=user, n="first"),
        record(datetime(2026, 1, 15, 12, 0, tzinfo=UTC), "tool", "call", user=user, n="middle"),
        record(datetime(2026, 1, 31, 18, 0, tzinfo=UTC), n="last day"),
        record(datetime(2026, 2, 1, 0, 0, tzinfo=UTC), n="after"),
    ]


def test_export_jsonl_to_stdout_oldest_first(january, user):
    # As the README has it: --until is exclusive, so this is the whole of January.
    out, err = run("export_events", "--since", "2026-01-01", "--until", "2026-02-01")

    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["data"]["n"] for line in lines] == ["first", "middle", "last day"]
    assert [line["id"] for line in lines] == [str(e.uuid) for e in january[1:4]]
    assert lines[0] == {
        "id": str(january[1].uuid),
        "type": "auth",
        "action": "login",
        "userId": str(user.id),
        "userEmail": user.email,
        "sessionId": None,
        "data": {"n": "first"},
        "ip": None,
        "createdAt": "2026-01-01T00:00:00Z",
    }
    assert err.strip() == "Exported 3 event(s)."


def test_export_is_since_inclusive_until_exclusive(january):
    times, _ = run(
        "export_events", "--since", "2026-01-01T00:00:00Z", "--until", "2026-01-31T18:00:00Z"
    )
    dates, _ = run("export_events", "--since", "2026-01-15", "--until", "2026-01-31")

    assert [json.loads(line)["data"]["n"] for line in times.splitlines()] == ["first", "middle"]
    assert [json.loads(line)["data"]["n"] for line in dates.splitlines()] == ["middle"]


def test_export_without_bounds_writes_everything(january):
    out, _ = run("export_events")

    assert [json.loads(line)["data"]["n"] for line in out.splitlines()] == [
        "before",
        "first",
        "middle",
        "last day",
        "after",
    ]


def test_export_csv_has_a_header_and_one_row_per_event(january, user):
    out, _ = run(
        "export_events", "--since", "2026-01-01", "--until", "2026-02-01", "--format", "csv"
    )

    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == [
        "id",
        "createdAt",
        "type",
        "action",
        "userId",
        "userEmail",
        "sessionId",
        "ip",
        "data",
    ]
    assert [row["id"] for row in rows] == [str(e.uuid) for e in january[1:4]]
    assert rows[1]["type"] == "tool" and rows[1]["userEmail"] == user.email
    assert json.loads(rows[1]["data"]) == {"n": "middle"}
    assert rows[2]["userId"] == ""


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_to_a_file(january, tmp_path, fmt):
    target = tmp_path / f"audit.{fmt}"

    out, err = run(
        "export_events", "--since", "2026-01-15", "--format", fmt, "--output", str(target)
    )

    assert out == ""
    assert err.strip() == "Exported 3 event(s)."
    text = target.read_text(encoding="utf-8")
    if fmt == "jsonl":
        ids = [json.loads(line)["id"] for line in text.splitlines()]
    else:
        ids = [row["id"] for row in csv.DictReader(io.StringIO(text, newline=""))]
    assert ids == [str(e.uuid) for e in january[2:]]


def test_export_keeps_text_with_commas_quotes_and_newlines_intact(tmp_path):
    tricky = 'line one, "quoted"\nline two — café'
    event = record(datetime(2026, 3, 1, tzinfo=UTC), text=tricky)
    target = tmp_path / "audit.csv"

    run("export_events", "--format", "csv", "--output", str(target))

    with open(target, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == [str(event.uuid)]
    assert json.loads(rows[0]["data"]) == {"text": tricky}


@pytest.mark.parametrize(
    "args",
    [
        ("--since", "yesterday"),
        ("--until", "2026-13-01"),
        ("--since", "2026-02-30"),
        ("--until", "2026-01-01T25:00:00"),
        ("--since", "2026-02-01", "--until", "2026-01-01"),
        ("--format", "xml"),
    ],
)
def test_export_refuses_bad_input_with_a_command_error(january, tmp_path, args):
    target = tmp_path / "audit.jsonl"

    with pytest.raises(CommandError):
        run("export_events", *args, "--output", str(target))

    assert not target.exists()
