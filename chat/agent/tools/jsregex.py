"""JavaScript regular expressions in Python: gemini-cli checks patterns with `new RegExp()` and
applies grep's exclude_pattern with it, so a pattern is judged (and worded) as JavaScript would."""

from __future__ import annotations

import re

# Escapes that mean something in a JavaScript pattern; any other escaped letter is the letter.
_JS_ESCAPES = set("dDwWsSbBnrtvf0cxuk123456789")
_REASONS = (
    ("missing ), unterminated subpattern", "Unterminated group"),
    ("unbalanced parenthesis", "Unmatched ')'"),
    ("unterminated character set", "Unterminated character class"),
    ("nothing to repeat", "Nothing to repeat"),
    ("multiple repeat", "Nothing to repeat"),
    ("bad escape (end of pattern)", "\\ at end of pattern"),
    ("bad character range", "Range out of order in character class"),
    ("unknown group name", "Invalid named capture referenced"),
    ("redefinition of group name", "Duplicate capture group name"),
)


def _translate(pattern: str) -> str:
    out: list[str] = []
    index = 0
    in_class = False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            following = pattern[index + 1]
            if following == "k" and pattern.startswith("<", index + 2):
                end = pattern.find(">", index + 3)
                if end != -1:
                    out.append(f"(?P={pattern[index + 3 : end]})")
                    index = end + 1
                    continue
            if following.isalpha() and following not in _JS_ESCAPES:
                out.append(re.escape(following))
            elif following == "d" and not in_class:
                out.append("[0-9]")
            else:
                out.append(pattern[index : index + 2])
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            if pattern.startswith("[^]", index):
                out.append("[\\s\\S]")
                index += 3
                in_class = False
                continue
        elif char == "]" and in_class:
            in_class = False
        elif char == "(" and not in_class and pattern.startswith("(?<", index):
            if not pattern.startswith(("(?<=", "(?<!"), index):
                out.append("(?P<")
                index += 3
                continue
        out.append(char)
        index += 1
    return "".join(out)


def js_regex(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """Compile a JavaScript pattern; raises ValueError worded as JavaScript's SyntaxError."""
    try:
        return re.compile(_translate(pattern), re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        message = exc.msg
        reason = next((js for py, js in _REASONS if message.startswith(py)), None)
        reason = reason or (message[:1].upper() + message[1:])
        raise ValueError(f"Invalid regular expression: /{pattern}/: {reason}") from None
