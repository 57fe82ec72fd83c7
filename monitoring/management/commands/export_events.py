"""Exports audit events between two dates as JSON Lines or CSV."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import make_aware

from monitoring.export import events_export


def _moment(value: str | None, option: str):
    if not value:
        return None
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"{option} takes a date (2026-01-31) or an ISO date-time")
        from datetime import datetime

        moment = datetime(day.year, day.month, day.day)
    return moment if moment.tzinfo else make_aware(moment)


class Command(BaseCommand):
    help = "Export monitoring events (oldest first) as jsonl or csv, to stdout or --output."

    def add_arguments(self, parser):
        parser.add_argument("--since", default=None)
        parser.add_argument("--until", default=None)
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument("--output", default=None, help="a file path; stdout when absent")

    def handle(self, *args, since, until, format, output, **options):
        since_at, until_at = _moment(since, "--since"), _moment(until, "--until")
        if output:
            with open(output, "w", newline="", encoding="utf-8") as out:
                count = events_export(out=out, since=since_at, until=until_at, fmt=format)
        else:
            count = events_export(out=self.stdout, since=since_at, until=until_at, fmt=format)
        self.stderr.write(f"Exported {count} event(s).")
