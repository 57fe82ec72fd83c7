"""The replace tool, as gemini-cli's tools/edit.ts: an exact match first, then lines that match
once whitespace is ignored (re-indented to the file), then a token regex, then a fuzzy match
(weighted Levenshtein within 10%), whose success text says where it applied."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rapidfuzz.distance import Levenshtein

from sessions_app.workspace import PathRefused

from .base import ToolContext, ToolKind, ToolResult
from .fs import (
    FileTool,
    Target,
    ToolFailure,
    check_path,
    decode_for_edit,
    edit_details,
    edit_details_error,
    encode_for_edit,
    read_limited,
    target_of,
    workspace_of,
    write_bytes,
)
from .textdiff import diff_context_snippet

FUZZY_MATCH_THRESHOLD = 0.1  # up to 10% weighted difference
WHITESPACE_PENALTY_FACTOR = 0.1  # a whitespace difference costs 10% of a character's
FUZZY_MIN_LENGTH = 10
FUZZY_COMPLEXITY_LIMIT = 400_000_000

# What JavaScript's trim() and \s treat as whitespace.
JS_WHITESPACE = "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_JS_WS_CLASS = "[" + re.escape(JS_WHITESPACE) + "]"
# String.prototype.match(/.*(?:\n|$)/g): "." stops at JavaScript's line terminators.
_LINES = re.compile(r"[^\n\r\u2028\u2029]*(?:\n|\Z)")
_REGEX_DELIMITERS = ("(", ")", ":", "[", "]", "{", "}", ">", "<", "=")
_OMITTED_PREFIXES = frozenset(
    {
        "rest of",
        "rest of method",
        "rest of methods",
        "rest of code",
        "unchanged code",
        "unchanged method",
        "unchanged methods",
    }
)


def js_trim(text: str) -> str:
    return text.strip(JS_WHITESPACE)


def source_lines(text: str) -> list[str]:
    """Lines with their "\\n" kept, as gemini-cli splits them."""
    return [match.group(0) for match in _LINES.finditer(text)][:-1]


def restore_trailing_newline(original: str, modified: str) -> str:
    if original.endswith("\n") and not modified.endswith("\n"):
        return modified + "\n"
    if not original.endswith("\n") and modified.endswith("\n"):
        return modified[:-1]
    return modified


def apply_indentation(lines: list[str], target: str) -> list[str]:
    """Re-indent lines to `target`, keeping their indentation relative to the first line."""
    if not lines:
        return []
    reference = re.match(r"[ \t]*", lines[0]).group(0)
    indented = []
    for line in lines:
        if js_trim(line) == "":
            indented.append("")
        elif line.startswith(reference):
            indented.append(target + line[len(reference) :])
        else:
            indented.append(target + line.lstrip(JS_WHITESPACE))
    return indented


def _placeholder(line: str) -> str | None:
    text = js_trim(line)
    if not text:
        return None
    if text.startswith("//"):
        text = js_trim(text[2:])
    if text.startswith("(") and text.endswith(")"):
        text = js_trim(text[1:-1])
    at = text.find("...")
    if at < 0:
        return None
    prefix = " ".join(js_trim(text[:at]).lower().split())
    suffix = js_trim(text[at + 3 :])
    if prefix not in _OMITTED_PREFIXES:
        return None
    if suffix and set(suffix) != {"."}:
        return None
    return f"{prefix} ..."


def omission_placeholders(text: str) -> list[str]:
    """Shorthand like "(rest of methods ...)" that stands for code instead of being code."""
    found = (_placeholder(line) for line in text.replace("\r\n", "\n").split("\n"))
    return [placeholder for placeholder in found if placeholder]


@dataclass
class Replacement:
    new_content: str
    occurrences: int
    old: str
    new: str
    strategy: str = ""
    match_ranges: list[tuple[int, int]] = field(default_factory=list)


def _exact(current: str, old: str, new: str, allow_multiple: bool) -> Replacement | None:
    occurrences = current.count(old)
    if not allow_multiple and occurrences > 1:
        return Replacement(current, occurrences, old, new)
    if occurrences:
        return Replacement(
            restore_trailing_newline(current, current.replace(old, new)), occurrences, old, new
        )
    return None


def _flexible(current: str, old: str, new: str, raw_new: str) -> Replacement | None:
    lines = source_lines(current)
    search = [js_trim(line) for line in old.split("\n")]
    replace = new.split("\n")
    occurrences = 0
    index = 0
    while index <= len(lines) - len(search):
        window = lines[index : index + len(search)]
        if [js_trim(line) for line in window] == search:
            occurrences += 1
            indentation = re.match(r"[ \t]*", window[0]).group(0)
            text = "\n".join(apply_indentation(replace, indentation))
            if raw_new != "" and window[-1].endswith("\n") and not text.endswith("\n"):
                text += "\n"
            lines[index : index + len(search)] = [text]
        index += 1
    if occurrences:
        return Replacement(restore_trailing_newline(current, "".join(lines)), occurrences, old, new)
    return None


def _token_regex(current: str, old: str, new: str, allow_multiple: bool) -> Replacement | None:
    processed = old
    for delimiter in _REGEX_DELIMITERS:
        processed = processed.replace(delimiter, f" {delimiter} ")
    tokens = [token for token in re.split(_JS_WS_CLASS + "+", processed) if token]
    if not tokens:
        return None
    body = (_JS_WS_CLASS + "*").join(re.escape(token) for token in tokens)
    pattern = re.compile(r"(?:^|(?<=[\r\u2028\u2029]))([ \t]*)" + body, re.MULTILINE)
    occurrences = sum(1 for _ in pattern.finditer(current))
    if not occurrences:
        return None
    new_lines = new.split("\n")
    modified = pattern.sub(
        lambda match: "\n".join(apply_indentation(new_lines, match.group(1) or "")),
        current,
        count=0 if allow_multiple else 1,
    )
    return Replacement(restore_trailing_newline(current, modified), occurrences, old, new)


def _strip_whitespace(text: str) -> str:
    return re.sub(_JS_WS_CLASS, "", text)


def _fuzzy(current: str, raw_old: str, old: str, new: str) -> Replacement | None:
    if len(raw_old) < FUZZY_MIN_LENGTH:
        return None
    lines = source_lines(current)
    search = [line.rstrip(JS_WHITESPACE) for line in source_lines(old)]
    if len(lines) * len(raw_old) ** 2 > FUZZY_COMPLEXITY_LIMIT or not search:
        return None
    count = len(search)
    block = "\n".join(search)
    if not block:
        return None
    block_stripped = _strip_whitespace(block)
    candidates: list[tuple[float, int]] = []
    for index in range(len(lines) - count + 1):
        window = "\n".join(line.rstrip(JS_WHITESPACE) for line in lines[index : index + count])
        if (
            abs(len(window) - len(block)) / len(block)
            > FUZZY_MATCH_THRESHOLD / WHITESPACE_PENALTY_FACTOR
        ):
            continue
        raw_distance = Levenshtein.distance(window, block)
        norm_distance = Levenshtein.distance(_strip_whitespace(window), block_stripped)
        weighted = norm_distance + (raw_distance - norm_distance) * WHITESPACE_PENALTY_FACTOR
        score = weighted / len(block)
        if score <= FUZZY_MATCH_THRESHOLD:
            candidates.append((score, index))
    if not candidates:
        return None
    candidates.sort()
    selected: list[int] = []
    for _, index in candidates:
        if all(abs(chosen - index) >= count for chosen in selected):
            selected.append(index)
    ranges = sorted((index + 1, index + count) for index in selected)
    new_lines = new.split("\n")
    for index in sorted(selected, reverse=True):
        indentation = re.match(r"[ \t]*", lines[index]).group(0)
        text = "\n".join(apply_indentation(new_lines, indentation))
        if lines[index + count - 1].endswith("\n"):
            text += "\n"
        lines[index : index + count] = [text]
    return Replacement(
        restore_trailing_newline(current, "".join(lines)), len(selected), old, new, "fuzzy", ranges
    )


def calculate_replacement(
    current: str, old_string: str, new_string: str, allow_multiple: bool
) -> Replacement:
    """calculateReplacement: the first strategy that finds the text wins."""
    old = old_string.replace("\r\n", "\n")
    new = new_string.replace("\r\n", "\n")
    if old == "":
        return Replacement(current, 0, old, new)
    found = (
        _exact(current, old, new, allow_multiple)
        or _flexible(current, old, new, new_string)
        or _token_regex(current, old, new, allow_multiple)
        or _fuzzy(current, old_string, old, new)
    )
    return found or Replacement(current, 0, old, new)


def fuzzy_feedback(replacement: Replacement) -> str | None:
    if replacement.strategy != "fuzzy" or not replacement.match_ranges:
        return None
    ranges = ", ".join(
        f"{start}" if start == end else f"{start}-{end}" for start, end in replacement.match_ranges
    )
    plural = "s" if len(replacement.match_ranges) > 1 else ""
    return f"Applied fuzzy match at line{plural} {ranges}."


@dataclass
class EditPlan:
    target: Target
    current: str | None  # None for a new file; line endings normalised to \n
    new_content: str
    occurrences: int
    is_new: bool
    crlf: bool
    replacement: Replacement | None = None


class ReplaceTool(FileTool):
    name = "replace"
    display_name = "Edit"
    aliases = ()
    arg_aliases = {"path": "file_path"}
    kind = ToolKind.EDIT
    # Declared required as gemini-cli does; calls without it (the REST API's) still run.
    lenient_required = ("instruction",)

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        if not args["file_path"]:
            return "The 'file_path' parameter must be non-empty."
        problem = check_path(ctx, args["file_path"])
        if problem:
            return problem
        old_placeholders = set(omission_placeholders(args["old_string"]))
        for placeholder in omission_placeholders(args["new_string"]):
            if placeholder not in old_placeholders:
                return (
                    "`new_string` contains an omission placeholder (for example 'rest of "
                    "methods ...'). Provide exact literal replacement text."
                )
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        path = args.get("file_path", "")
        old, new = args.get("old_string", ""), args.get("new_string", "")
        if old == "":
            return f"Create {path}"

        def snippet(text: str) -> str:
            return text.split("\n")[0][:30] + ("..." if len(text) > 30 else "")

        if old == new:
            return f"No file changes to {path}"
        return f"{path}: {snippet(old)} => {snippet(new)}"

    def plan(self, args: dict, ctx: ToolContext) -> EditPlan:
        """gemini-cli's calculateEdit; raises ToolFailure with its texts."""
        target = target_of(args["file_path"])
        ws = workspace_of(ctx)
        shown = target.virtual
        if not ws.exists(target.relative):
            if args["old_string"] == "":
                return EditPlan(target, None, args["new_string"], 1, True, False)
            raise ToolFailure(
                f"File not found: {shown}",
                "File not found. Cannot apply edit. Use an empty old_string to create a new file.",
            )
        raw = decode_for_edit(read_limited(ws, target.relative, shown))
        crlf = "\r\n" in raw
        current = raw.replace("\r\n", "\n")
        if args["old_string"] == "":
            raise ToolFailure(
                f"File already exists, cannot create: {shown}",
                "Failed to edit. Attempted to create a file that already exists.",
            )
        allow_multiple = bool(args.get("allow_multiple"))
        replacement = calculate_replacement(
            current, args["old_string"], args["new_string"], allow_multiple
        )
        raw_path = args["file_path"]
        if replacement.occurrences == 0:
            raise ToolFailure(
                f"Failed to edit, 0 occurrences found for old_string in {raw_path}. Ensure you're "
                "not escaping content incorrectly and check whitespace, indentation, and "
                "context. Use read_file tool to verify.",
                "Failed to edit, could not find the string to replace.",
            )
        if not allow_multiple and replacement.occurrences != 1:
            raise ToolFailure(
                f"Failed to edit, Expected 1 occurrence but found {replacement.occurrences} for "
                f"old_string in file: {raw_path}. If you intended to replace multiple "
                "occurrences, set 'allow_multiple' to true.",
                f"Failed to edit, expected 1 occurrence but found {replacement.occurrences}.",
            )
        if replacement.old == replacement.new:
            raise ToolFailure(
                "No changes to apply. The old_string and new_string are identical in file: "
                f"{raw_path}",
                "No changes to apply. The old_string and new_string are identical.",
            )
        return EditPlan(
            target,
            current,
            replacement.new_content,
            replacement.occurrences,
            False,
            crlf,
            replacement,
        )

    def confirmation_details(self, args: dict, ctx: ToolContext) -> dict:
        try:
            plan = self.plan(args, ctx)
        except (ToolFailure, PathRefused) as exc:
            return edit_details_error(args.get("file_path", ""), exc)
        return edit_details(plan.target, plan.current, plan.new_content, is_new=plan.is_new)

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        plan = self.plan(args, ctx)
        final = plan.new_content.replace("\n", "\r\n") if plan.crlf else plan.new_content
        write_bytes(
            workspace_of(ctx), plan.target.relative, encode_for_edit(final), plan.target.virtual
        )
        shown = plan.target.virtual
        if plan.is_new:
            head = f"Created new file: {shown} with provided content."
            display = f"Created {plan.target.relative}"
        else:
            head = f"Successfully modified file: {shown} ({plan.occurrences} replacements)."
            display = f"Edited {plan.target.relative} ({plan.occurrences} replacements)"
        parts = [
            head,
            f"Here is the updated code:\n{diff_context_snippet(plan.current or '', final, 5)}",
        ]
        feedback = fuzzy_feedback(plan.replacement) if plan.replacement else None
        if feedback:
            parts.append(feedback)
        return ToolResult(output=" ".join(parts), display=display)
