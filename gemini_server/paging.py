"""Cursor paging for list endpoints: `?limit=&cursor=` in, the page and its `nextCursor` out.

A cursor is opaque to clients: the sort key of the last item returned (keyset paging), so a page
costs one indexed query however deep it is. `nextCursor` is null on the last page.
"""

import base64
import binascii
import json
from datetime import datetime
from uuid import UUID

from django.db.models import Q
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

from gemini_server.errors import ValidationFailed

PAGE_PARAMS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="Items per page"),
    OpenApiParameter("cursor", OpenApiTypes.STR, description="The `nextCursor` of the page before"),
]


def page_params(params, *, default: int, maximum: int) -> tuple[int, dict | None]:
    """The limit and the decoded cursor of a request, or a validation error naming the field."""
    raw = params.get("limit")
    limit = default
    if raw not in (None, ""):
        try:
            limit = int(raw)
        except (TypeError, ValueError):
            limit = 0
        if not 1 <= limit <= maximum:
            raise ValidationFailed(
                details={"limit": [f"Must be a whole number from 1 to {maximum}."]}
            )
    return limit, cursor_decode(params.get("cursor"))


def cursor_encode(values: dict) -> str:
    text = json.dumps(values, default=str, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def cursor_decode(cursor: str | None) -> dict | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        values = None
    if not isinstance(values, dict):
        raise ValidationFailed(details={"cursor": ["Invalid cursor: pass back a nextCursor."]})
    return values


def _key_value(value):
    if isinstance(value, (datetime, UUID)):
        return str(value)
    return value


def _cursor_values(order: list[str], cursor: dict) -> dict:
    """The cursor's sort key, each value checked against the kind of field it names."""
    values = {}
    for spec in order:
        field = spec.lstrip("-")
        value = cursor.get(field)
        try:
            if field.endswith("_at"):
                value = parse_datetime(value) if isinstance(value, str) else None
            elif field == "id":
                value = UUID(str(value))
            elif not isinstance(value, int) or isinstance(value, bool):
                value = None
        except ValueError:
            value = None
        if value is None:
            raise ValidationFailed(details={"cursor": ["Invalid cursor: pass back a nextCursor."]})
        values[field] = value
    return values


def _after(order: list[str], cursor: dict) -> Q:
    """Rows strictly after the cursor in `order` (fields, `-` for descending)."""
    values = _cursor_values(order, cursor)
    condition = Q()
    for index, spec in enumerate(order):
        field = spec.lstrip("-")
        step = Q(**{f"{field}__{'lt' if spec.startswith('-') else 'gt'}": values[field]})
        for earlier in order[:index]:
            step &= Q(**{earlier.lstrip("-"): values[earlier.lstrip("-")]})
        condition |= step
    return condition


def keyset_page(queryset, *, order: list[str], limit: int, cursor: dict | None):
    """One page of `queryset` in `order`, and the cursor of the next page (None at the end)."""
    if cursor is not None:
        queryset = queryset.filter(_after(order, cursor))
    rows = list(queryset.order_by(*order)[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, cursor_encode(
        {spec.lstrip("-"): _key_value(getattr(last, spec.lstrip("-"))) for spec in order}
    )


def list_page(items: list, *, limit: int, cursor: dict | None):
    """One page of a list built in memory (a directory listing), by position."""
    start = 0
    if cursor is not None:
        start = cursor.get("offset")
        if not isinstance(start, int) or start < 0:
            raise ValidationFailed(details={"cursor": ["Invalid cursor: pass back a nextCursor."]})
    page = items[start : start + limit]
    more = start + limit < len(items)
    return page, cursor_encode({"offset": start + limit}) if more else None
