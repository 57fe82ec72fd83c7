"""Removes secrets from whatever is about to be written to the audit trail."""

import re

REDACTED = "[redacted]"
# "token" names a secret, but "promptTokens" / "candidatesTokenCount" / "tokenType" name counts and
# kinds: masking those would blank the token usage the audit trail exists to show.
_SECRET_KEY = re.compile(
    r"(pass(word)?|secret|token(?!s|_?count|_?type)|api[_-]?key|apikey|authorization|credential"
    r"|cookie|private[_-]?key)",
    re.I,
)
# Raw API keys and JWTs, wherever they turn up inside free text (a shell command, a prompt).
_SECRET_VALUE = re.compile(
    r"gsk_[0-9a-f]{12}\.[A-Za-z0-9_-]+|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"
)


def redact(value, *, secrets: tuple[str, ...] = ()):
    """A copy of `value` with secret-named keys masked and secret-looking strings cut out."""
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and _SECRET_KEY.search(key) and value[key] not in (None, "")
            else redact(value[key], secrets=secrets)
            for key in value
        }
    if isinstance(value, (list, tuple)):
        return [redact(item, secrets=secrets) for item in value]
    if isinstance(value, str):
        text = _SECRET_VALUE.sub(REDACTED, value)
        for secret in secrets:
            if secret:
                text = text.replace(secret, REDACTED)
        return text
    return value
