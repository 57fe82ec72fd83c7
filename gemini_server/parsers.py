"""JSON input with limits, for request bodies and WebSocket frames: a size and a nesting depth."""

import codecs
import json
from io import BytesIO

from django.conf import settings
from rest_framework.parsers import JSONParser

from gemini_server.errors import BadRequest, PayloadTooLarge

# No request of the API nests half as deep; past this, 40 KB of `[` would make the parser recurse
# into a RecursionError (a 500 anyone can cause) and every consumer of the data recurse again.
JSON_MAX_DEPTH = 64


def _constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def json_loads_limited(text: str | bytes, *, max_depth: int = JSON_MAX_DEPTH):
    """json.loads that answers BadRequest for malformed JSON and for nesting past `max_depth`."""
    try:
        value = json.loads(text, parse_constant=_constant)
    except RecursionError as exc:
        raise _too_deep(max_depth) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        # JSONDecodeError says where; NaN/Infinity and bad UTF-8 say what.
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise BadRequest(f"Malformed JSON: {reason}") from exc
    if _depth_exceeds(value, max_depth):
        raise _too_deep(max_depth)
    return value


def _too_deep(max_depth: int) -> BadRequest:
    return BadRequest(
        f"JSON nested more than {max_depth} levels deep is refused",
        details={"maxDepth": max_depth},
    )


def _depth_exceeds(value, max_depth: int) -> bool:
    """Walks the parsed value with a stack (not recursion): is any array or object deeper?"""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class LimitedJSONParser(JSONParser):
    """Refuses a JSON body over JSON_BODY_MAX_BYTES with 413 before parsing it, and one nested
    deeper than JSON_MAX_DEPTH with 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.JSON_BODY_MAX_BYTES
        parser_context = parser_context or {}
        request = parser_context.get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"JSON bodies are limited to {limit} bytes")
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise PayloadTooLarge(f"JSON bodies are limited to {limit} bytes")
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(BytesIO(body)).read()
        except (UnicodeDecodeError, LookupError) as exc:
            raise BadRequest(f"Malformed JSON: the body is not {encoding} text") from exc
        return json_loads_limited(text)
