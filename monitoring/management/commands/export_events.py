"""Exports audit events between two dates as JSON Lines or CSV."""

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import make_aware

from monitoring.export import events_export


def _moment(value: str | None, option: str) -> datetime | None:
    """A date-time, or a date (the start of that day), in UTC unless it says otherwise."""
    if not value:
        return None
    try:
        moment = parse_datetime(value)
        if moment is None and (day := parse_date(value)):
            moment = datetime(day.year, day.month, day.day)
    except ValueError:  # well formed but impossible, as 2026-02-30: Django raises, not None
        moment = None
    if moment is None:
        raise CommandError(f"{option} takes a date (2026-01-31) or an ISO date-time, not {value!r}")
    return moment if moment.tzinfo else make_aware(moment)


class Command(BaseCommand):
    help = (
        "Export monitoring events (oldest first) as jsonl or csv, to stdout or --output. "
        "--since is inclusive, --until exclusive: --since 2026-01-01 --until 2026-02-01 is January."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", default=None, help="2026-01-01 or 2026-01-01T08:00:00Z")
        parser.add_argument("--until", default=None, help="2026-02-01 or a date-time; exclusive")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument("--output", default=None, help="a file path; stdout when absent")

    def handle(self, *args, since, until, format, output, **options):
        since_at = _moment(since, "--since")
        until_at = _moment(until, "--until")
        if since_at and until_at and since_at >= until_at:
            raise CommandError("--since must be before --until")
        if output:
            with open(output, "w", newline="", encoding="utf-8") as out:
                count = events_export(out=out, since=since_at, until=until_at, fmt=format)
        else:
            count = events_export(out=self.stdout, since=since_at, until=until_at, fmt=format)
        self.stderr.write(f"Exported {count} event(s).")
