"""Makes any value storable as JSON in PostgreSQL and SQLite alike (the audit, the conversation).

Nothing is dropped: a value a database refuses is written as visible text instead. NUL (refused
by PostgreSQL's text and jsonb) becomes the six characters `\\u0000`, a lone surrogate (not valid
UTF-8) becomes `\\udXXX`, bytes that are not UTF-8 keep their bad bytes as `\\xNN`, NaN and the
infinities (not JSON) become the strings "NaN", "Infinity" and "-Infinity". Structures nested
deeper than either database parses are kept as their JSON text.
"""

import datetime
import decimal
import json
import math
import re
import uuid

# PostgreSQL reads jsonb recursively and SQLite's JSON functions stop at 1000 levels; the audit
# needs neither, so structures past this depth are stored as one string of JSON text.
MAX_DEPTH = 64
# Python refuses to print an int of more than 4300 digits (sys.int_info); such a number is kept
# in hexadecimal, which has no such limit.
_INT_MAX_BITS = 14_000
_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """`text` with NUL and lone surrogates written out as `\\uXXXX`; other text is unchanged."""
    if not _UNSTORABLE_CHARS.search(text):
        return text
    return _UNSTORABLE_CHARS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def storable(value, *, _depth: int = 0, _path: frozenset = frozenset()):
    """A copy of `value` made of dicts, lists, str, int, float, bool and None that any database takes."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, int):
        return value if value.bit_length() <= _INT_MAX_BITS else hex(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return storable_text(bytes(value).decode("utf-8", errors="backslashreplace"))
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        if id(value) in _path:
            return "[circular reference]"
        if _depth >= MAX_DEPTH:
            return storable_text(_json_text(value))
        inner = {"_depth": _depth + 1, "_path": _path | {id(value)}}
        if isinstance(value, dict):
            return _storable_dict(value, inner)
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [storable(item, **inner) for item in items]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return storable(float(value)) if value.is_finite() else str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return storable_text(str(value))


def _storable_dict(value: dict, inner: dict) -> dict:
    result = {}
    for key, item in value.items():
        name = storable_text(key) if isinstance(key, str) else _key_text(key)
        # Two keys that read the same once written as text (1 and "1") both stay.
        while name in result:
            name += "'"
        result[name] = storable(item, **inner)
    return result


def _key_text(key) -> str:
    """A non-string key as JSON writes one (True → "true", 1 → "1"), else as its text."""
    if key is None or isinstance(key, (bool, int, float)):
        stored = storable(key)
        return stored if isinstance(stored, str) else json.dumps(stored)
    return storable_text(storable(key) if isinstance(key, bytes) else str(key))


class _Raw(str):
    """A piece of JSON text already written, on _json_text's stack."""


def _json_text(value) -> str:
    """Compact JSON text of `value` at any depth, written with a stack instead of recursion."""
    out, stack, open_ids = [], [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item)
            continue
        if isinstance(item, tuple) and len(item) == 2 and item[0] is _json_text:
            open_ids.discard(item[1])  # a container's closing marker
            continue
        if isinstance(item, (dict, list, tuple, set, frozenset)):
            if id(item) in open_ids:
                out.append('"[circular reference]"')
                continue
            open_ids.add(id(item))
            is_dict = isinstance(item, dict)
            entries = list(item.items()) if is_dict else [(None, child) for child in item]
            stack.append((_json_text, id(item)))
            stack.append(_Raw("}" if is_dict else "]"))
            for index in range(len(entries) - 1, -1, -1):
                key, child = entries[index]
                stack.append(child)
                if is_dict:
                    name = key if isinstance(key, str) else _key_text(key)
                    stack.append(_Raw(json.dumps(storable_text(name)) + ":"))
                if index:
                    stack.append(_Raw(","))
            out.append("{" if is_dict else "[")
            continue
        out.append(json.dumps(storable(item)))
    return "".join(out)
