"""Revokes an API key by its prefix."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiKey
from accounts.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key for good, by its prefix (the part after gsk_ and before the dot)."

    def add_arguments(self, parser):
        parser.add_argument("--prefix", required=True)

    def handle(self, *args, prefix, **options):
        prefix = prefix.removeprefix("gsk_").split(".")[0]
        key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
        if key is None:
            raise CommandError(f"No API key with the prefix {prefix}")
        api_key_revoke(key=key, actor=key.user)
        self.stdout.write(f"Revoked gsk_{key.prefix} ({key.name or 'unnamed'}) of {key.user.email}")
