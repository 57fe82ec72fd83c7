"""Management command that runs the fake Gemini API in the foreground for offline demos."""

import asyncio

from django.core.management.base import BaseCommand

from devtools.fake_gemini import DEFAULT_HOST, DEFAULT_PORT, serve


class Command(BaseCommand):
    help = "Run a fake Gemini API (scripted answers, no network) that the google-genai SDK can use."
    # A developer tool that touches neither models nor the database.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default=DEFAULT_HOST)
        parser.add_argument("--port", type=int, default=DEFAULT_PORT)

    def handle(self, *args, **options):
        def announce(base_url):
            self.stdout.write(f"Fake Gemini API listening on {base_url} (Ctrl-C to stop)")
            self.stdout.write(f"Point the server at it with GEMINI_BASE_URL={base_url}")
            self.stdout.flush()

        try:
            asyncio.run(serve(options["host"], options["port"], on_ready=announce))
        except KeyboardInterrupt:
            self.stdout.write("Fake Gemini API stopped.")
