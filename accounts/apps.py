"""App config for accounts: users, roles and API keys."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        # Registers the OpenAPI security schemes for our authentication classes.
        from accounts import schema  # noqa: F401
        from accounts.credentials import credentials_listen, credentials_watch
        from gemini_server.lifecycle import on_start

        credentials_watch()
        # Subscribed before the first request: what it reads is vouched for from the start.
        on_start(credentials_listen)
