"""Retention: deletes audit events older than N days."""

from django.core.management.base import BaseCommand, CommandError

from monitoring.services import events_prune


class Command(BaseCommand):
    help = "Delete monitoring events older than --older-than-days (use --dry-run to count first)."

    def add_arguments(self, parser):
        parser.add_argument("--older-than-days", type=int, required=True)
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, older_than_days, dry_run, **options):
        if older_than_days < 0:
            raise CommandError("--older-than-days cannot be negative")
        count = events_prune(older_than_days=older_than_days, dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(f"{verb} {count} event(s) older than {older_than_days} day(s).")
