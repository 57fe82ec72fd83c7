"""Times as the API writes them: ISO-8601 UTC with a Z."""

from datetime import UTC, datetime


def iso_utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
