"""Deletes expired sessions and their workspaces."""

from django.core.management.base import BaseCommand

from sessions_app.services import sessions_expire


class Command(BaseCommand):
    help = "Delete sessions past their expiry, with their workspaces (run it from cron)."

    def handle(self, *args, **options):
        self.stdout.write(f"Deleted {sessions_expire()} expired session(s).")
