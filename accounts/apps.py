"""App config for accounts: users, roles and API keys."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        # Registers the OpenAPI security schemes for our authentication classes.
        from accounts import schema  # noqa: F401
        from accounts.credentials import credentials_watch

        credentials_watch()
