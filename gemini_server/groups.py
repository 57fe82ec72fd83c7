"""Channel-layer group names, from one place, in the form Channels accepts."""

import re

_UNSAFE = re.compile(r"[^a-zA-Z0-9._-]")

MONITORING = "monitoring"


def group_name(kind: str, key: object) -> str:
    """`kind.key`, with anything Channels refuses replaced, and under its 100-character limit."""
    return _UNSAFE.sub("-", f"{kind}.{key}")[:99]


def session_group(session_id: object) -> str:
    """Every socket joined to a session, on any process, hears its stream here."""
    return group_name("session", session_id)


def user_group(user_id: object) -> str:
    """Every socket of a user, on any process: told at once when their credentials change."""
    return group_name("user", user_id)


def turn_group(session_id: object) -> str:
    """The running turn of a session listens here for confirmations and cancels."""
    return group_name("turn", session_id)
