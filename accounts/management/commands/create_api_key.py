"""Creates an API key for a user and prints the raw key, once."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from accounts.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a user; the raw key is printed once and never stored."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--name", default="")
        parser.add_argument("--expires-days", type=int, default=None)

    def handle(self, *args, email, name, expires_days, **options):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with the email {email}")
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be at least 1")
        key, raw = api_key_create(user=user, name=name, expires_in_days=expires_days)
        self.stderr.write(
            f"Created key {key.id} (prefix {key.prefix}) for {user.email}. Store it now:"
        )
        self.stdout.write(raw)
