"""Line diffs as gemini-cli computes them (jsdiff's diffLines) and the code snippet its edit tools
end their success text with (tools/diff-utils.ts getDiffContextSnippet)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

# Myers' algorithm explores editLength * (old + new) cells; past this budget the snippet falls
# back to difflib, which is fast on files rewritten wholesale.
MYERS_BUDGET = 20_000_000


@dataclass
class Change:
    count: int
    added: bool = False
    removed: bool = False


def line_tokens(text: str) -> list[str]:
    """jsdiff's line tokenizer: each line keeps its own "\\n" or "\\r\\n"; no empty last token."""
    pieces = re.split(r"(\n|\r\n)", text)
    if pieces and not pieces[-1]:
        pieces.pop()
    tokens: list[str] = []
    for index, piece in enumerate(pieces):
        if index % 2:
            tokens[-1] += piece
        else:
            tokens.append(piece)
    return [token for token in tokens if token]


def _append(changes: list[Change], count: int, added: bool, removed: bool) -> None:
    if changes and changes[-1].added == added and changes[-1].removed == removed:
        changes[-1].count += count
    else:
        changes.append(Change(count, added, removed))


def _myers(old: list[str], new: list[str]) -> list[Change] | None:
    """jsdiff's Myers variant (base.ts), which prefers the path reaching furthest in the old text
    and, between equals, the removal; None when it would take too long."""
    old_len, new_len = len(old), len(new)

    def extract_common(path: dict, k: int) -> int:
        old_pos = path["old"]
        new_pos = old_pos - k
        common = 0
        while (
            new_pos + 1 < new_len and old_pos + 1 < old_len and old[old_pos + 1] == new[new_pos + 1]
        ):
            new_pos += 1
            old_pos += 1
            common += 1
        if common:
            path["ops"] = (path["ops"], (common, False, False))
        path["old"] = old_pos
        return new_pos

    initial = {"old": -1, "ops": None}
    new_pos = extract_common(initial, 0)
    if initial["old"] + 1 >= old_len and new_pos + 1 >= new_len:
        return _build(initial["ops"])
    best: dict[int, dict | None] = {0: initial}
    min_k, max_k = -(10**12), 10**12
    if initial["old"] + 1 >= old_len:
        max_k = -1
    if new_pos + 1 >= new_len:
        min_k = 1
    edit_length = 1
    spent = 0
    while edit_length <= old_len + new_len:
        for k in range(max(min_k, -edit_length), min(max_k, edit_length) + 1, 2):
            remove_path = best.get(k - 1)
            add_path = best.get(k + 1)
            if remove_path is not None:
                best[k - 1] = None
            can_add = False
            if add_path is not None:
                add_new_pos = add_path["old"] - k
                can_add = 0 <= add_new_pos < new_len
            can_remove = remove_path is not None and remove_path["old"] + 1 < old_len
            if not can_add and not can_remove:
                best[k] = None
                continue
            if not can_remove or (can_add and remove_path["old"] < add_path["old"]):
                base = {"old": add_path["old"], "ops": (add_path["ops"], (1, True, False))}
            else:
                base = {
                    "old": remove_path["old"] + 1,
                    "ops": (remove_path["ops"], (1, False, True)),
                }
            new_pos = extract_common(base, k)
            if base["old"] + 1 >= old_len and new_pos + 1 >= new_len:
                return _build(base["ops"])
            best[k] = base
            if base["old"] + 1 >= old_len:
                max_k = min(max_k, k - 1)
            if new_pos + 1 >= new_len:
                min_k = max(min_k, k + 1)
        spent += (old_len + new_len) * 2
        if spent > MYERS_BUDGET:
            return None
        edit_length += 1
    return None


def _build(ops) -> list[Change]:
    flat = []
    while ops is not None:
        ops, op = ops
        flat.append(op)
    changes: list[Change] = []
    for count, added, removed in reversed(flat):
        _append(changes, count, added, removed)
    return changes


def _difflib(old: list[str], new: list[str]) -> list[Change]:
    changes: list[Change] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            _append(changes, i2 - i1, False, False)
            continue
        if i2 > i1:
            _append(changes, i2 - i1, False, True)
        if j2 > j1:
            _append(changes, j2 - j1, True, False)
    return changes


def diff_lines(old_text: str, new_text: str) -> list[Change]:
    old, new = line_tokens(old_text), line_tokens(new_text)
    return _myers(old, new) or _difflib(old, new)


def diff_context_snippet(original: str, new: str, context_lines: int = 5) -> str:
    """The changed regions of the new text with `context_lines` around them, "..." between."""
    if not original:
        return new
    new_lines = re.split(r"\r?\n", new)
    ranges: list[list[int]] = []
    index = 0
    for change in diff_lines(original, new):
        if change.added:
            ranges.append([index, index + change.count])
            index += change.count
        elif change.removed:
            ranges.append([index, index])
        else:
            index += change.count
    if not ranges:
        return new
    expanded = sorted(
        (
            [max(0, start - context_lines), min(len(new_lines), end + context_lines)]
            for start, end in ranges
        ),
        key=lambda pair: pair[0],
    )
    merged: list[list[int]] = []
    current = expanded[0]
    for following in expanded[1:]:
        if following[0] <= current[1]:
            current[1] = max(current[1], following[1])
        else:
            merged.append(current)
            current = following
    merged.append(current)
    parts: list[str] = []
    last_end = 0
    for start, end in merged:
        if start > last_end:
            parts.append("...")
        parts.append("\n".join(new_lines[start:end]))
        last_end = end
    if last_end < len(new_lines):
        parts.append("...")
    return "\n".join(parts)
