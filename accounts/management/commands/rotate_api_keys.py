"""Rotates API keys (one user's, or all older than N days) and prints the new raw keys, once."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from accounts.services import api_keys_rotate_many


class Command(BaseCommand):
    help = "Rotate API keys; the old keys keep working for the grace period."

    def add_arguments(self, parser):
        parser.add_argument("--email", default=None)
        parser.add_argument("--older-than-days", type=int, default=None)
        parser.add_argument("--grace-hours", type=float, default=24)

    def handle(self, *args, email, older_than_days, grace_hours, **options):
        if not email and older_than_days is None:
            raise CommandError("Name the keys to rotate: --email and/or --older-than-days")
        if grace_hours < 0:
            raise CommandError("--grace-hours cannot be negative")
        rotated = api_keys_rotate_many(
            email=email, older_than_days=older_than_days, grace=timedelta(hours=grace_hours)
        )
        for key, raw in rotated:
            self.stdout.write(f"{key.user.email}\t{key.rotated_from.prefix} -> {key.prefix}\t{raw}")
        self.stderr.write(
            f"Rotated {len(rotated)} key(s); old keys stop working in {grace_hours:g} hour(s)."
        )
