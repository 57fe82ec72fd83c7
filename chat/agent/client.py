"""The process's one long-lived async Gemini client, built from settings."""

import threading

from django.conf import settings
from google import genai
from google.genai import types

# Transient statuses worth another try; 429 is not here because Google's delay goes to the user.
RETRY_STATUSES = [500, 502, 503, 504]

_lock = threading.Lock()
_client: genai.Client | None = None
_client_config: tuple | None = None


class GeminiNotConfigured(RuntimeError):
    """No GEMINI_API_KEY: the agent cannot reach a model."""


def _config() -> tuple:
    return (
        settings.GEMINI_API_KEY,
        settings.GEMINI_BASE_URL or None,
        settings.GEMINI_API_VERSION,
        settings.GEMINI_TIMEOUT_SECONDS,
        settings.GEMINI_RETRY_ATTEMPTS,
    )


def gemini_client() -> genai.Client:
    """The shared client; rebuilt only when its settings change (tests point it elsewhere)."""
    global _client, _client_config
    config = _config()
    api_key, base_url, api_version, timeout, attempts = config
    if not api_key:
        raise GeminiNotConfigured(
            "The server has no GEMINI_API_KEY configured; an administrator must set it."
        )
    with _lock:
        if _client is None or _client_config != config:
            _client = genai.Client(
                api_key=api_key,
                http_options=types.HttpOptions(
                    base_url=base_url,
                    # Set explicitly: google-genai's default changed in 3.0.
                    api_version=api_version,
                    timeout=int(timeout * 1000),
                    retry_options=types.HttpRetryOptions(
                        attempts=max(1, attempts),
                        initial_delay=1.0,
                        max_delay=10.0,
                        http_status_codes=RETRY_STATUSES,
                    ),
                ),
            )
            _client_config = config
        return _client


def thinking_supported(model: str) -> bool:
    """Models that can stream their thoughts (gemini-cli asks for them on these)."""
    return model.startswith(("gemini-2.5", "gemini-3"))
