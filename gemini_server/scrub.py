"""Takes the server's own secrets out of text that came from elsewhere (an upstream error, a trace).

The model service may echo a request back in an error (Google puts the API key in the URL it
complains about); a database driver may print its connection string. Such text reaches clients,
logs and the audit only through secrets_scrub.
"""

import logging
import re
from urllib.parse import unquote, urlsplit

from django.conf import settings

SCRUBBED = "[redacted]"
# Shorter values would match ordinary words; no real secret of ours is this short.
_MIN_SECRET_CHARS = 6
# A Google API key, whoever's it is, wherever it appears.
_GOOGLE_API_KEY = re.compile(r"AIza[0-9A-Za-z_-]{35}")


def _url_password(url: str) -> list[str]:
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def own_secrets() -> list[str]:
    """The secret values in the running configuration, longest first."""
    values = [
        getattr(settings, "GEMINI_API_KEY", ""),
        getattr(settings, "SECRET_KEY", ""),
        getattr(settings, "JWT_SECRET", ""),
        getattr(settings, "METRICS_TOKEN", ""),
        *_url_password(getattr(settings, "DATABASE_URL", "") or ""),
        *_url_password(getattr(settings, "REDIS_URL", "") or ""),
    ]
    found = {
        value for value in values if isinstance(value, str) and len(value) >= _MIN_SECRET_CHARS
    }
    return sorted(found, key=len, reverse=True)


def secrets_scrub(text, *, secrets: list[str] | None = None):
    """`text` with every secret of the server's replaced by "[redacted]"; non-text is returned as is."""
    if not isinstance(text, str) or not text:
        return text
    for secret in own_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, SCRUBBED)
    return _GOOGLE_API_KEY.sub(SCRUBBED, text)


def secrets_scrub_all(value, *, secrets: list[str] | None = None):
    """secrets_scrub over every string inside dicts and lists (error details, event data)."""
    secrets = own_secrets() if secrets is None else secrets
    if isinstance(value, str):
        return secrets_scrub(value, secrets=secrets)
    if isinstance(value, dict):
        return {key: secrets_scrub_all(item, secrets=secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [secrets_scrub_all(item, secrets=secrets) for item in value]
    return value


class SecretsLogFilter(logging.Filter):
    """Scrubs each record's message and trace before a handler writes it (LOGGING's console)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = secrets_scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = secrets_scrub(record.exc_text)
        return True
