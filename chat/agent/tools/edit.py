"""The replace tool: exact text replacement in a file, as gemini-cli's edit tool."""

from __future__ import annotations

from dataclasses import dataclass

from sessions_app.workspace import PathRefused

from .base import (
    ToolContext,
    ToolKind,
    ToolResult,
)
from .fs import (
    FileTool,
    Target,
    ToolFailure,
    check_path,
    decode_for_edit,
    edit_details_error,
    encode_for_edit,
    max_file_bytes,
    plural,
    read_limited,
    size_limit_failure,
    target_of,
    unified_diff,
    workspace_of,
    write_bytes,
)


@dataclass
class EditPlan:
    target: Target
    current: str  # "" for a new file; line endings normalised to \n
    new_content: str
    occurrences: int
    is_new: bool
    crlf: bool


class ReplaceTool(FileTool):
    name = "replace"
    display_name = "Edit"
    aliases = ()
    arg_aliases = {"path": "file_path"}
    kind = ToolKind.EDIT
    description = (
        "Replaces text within a file. By default, the tool expects to find and replace "
        "exactly ONE occurrence of `old_string`. If you want to replace multiple occurrences "
        "of the exact same string, set `allow_multiple` to true. This tool requires providing "
        "significant context around the change to ensure precise targeting. Always use the "
        "read_file tool to examine the file's current content before attempting a text "
        "replacement.\n      \n"
        "      The user has the ability to modify the `new_string` content. If modified, this "
        "will be stated in the response.\n      \n"
        "      Expectation for required parameters:\n"
        "      1. `old_string` MUST be the exact literal text to replace (including all "
        "whitespace, indentation, newlines, and surrounding code etc.).\n"
        "      2. `new_string` MUST be the exact literal text to replace `old_string` with "
        "(also including all whitespace, indentation, newlines, and surrounding code etc.). "
        "Ensure the resulting code is correct and idiomatic and that `old_string` and "
        "`new_string` are different.\n"
        "      3. `instruction` is the detailed instruction of what needs to be changed. It is "
        "important to Make it specific and detailed so developers or large language models "
        "can understand what needs to be changed and perform the changes on their own if "
        "necessary. \n"
        "      4. NEVER escape `old_string` or `new_string`, that would break the exact "
        "literal text requirement.\n"
        "      **Important:** If ANY of the above are not satisfied, the tool will fail. "
        "CRITICAL for `old_string`: Must uniquely identify the instance(s) to change. Include "
        "at least 3 lines of context BEFORE and AFTER the target text, matching whitespace "
        "and indentation precisely. If this string matches multiple locations and "
        "`allow_multiple` is not true, the tool will fail.\n"
        "      5. Prefer to break down complex and long changes into multiple smaller atomic "
        "calls to this tool. Always check the content of the file after changes or not "
        "finding a string to match.\n"
        "      **Multiple replacements:** Set `allow_multiple` to true if you want to replace "
        "ALL occurrences that match `old_string` exactly."
    )
    parameters = {
        "type": "object",
        "properties": {
            "file_path": {"description": "The path to the file to modify.", "type": "string"},
            "instruction": {
                "description": (
                    "A clear, semantic instruction for the code change, acting as a "
                    "high-quality prompt for an expert LLM assistant. It must be "
                    "self-contained and explain the goal of the change.\n\n"
                    "A good instruction should concisely answer:\n"
                    '1.  WHY is the change needed? (e.g., "To fix a bug where users can be '
                    'null...")\n'
                    '2.  WHERE should the change happen? (e.g., "...in the '
                    "'renderUserProfile' function...\")\n"
                    '3.  WHAT is the high-level change? (e.g., "...add a null check for the '
                    "'user' object...\")\n"
                    '4.  WHAT is the desired outcome? (e.g., "...so that it displays a '
                    'loading spinner instead of crashing.")\n\n'
                    "**GOOD Example:** \"In the 'calculateTotal' function, correct the sales "
                    "tax calculation by updating the 'taxRate' constant from 0.05 to 0.075 to "
                    'reflect the new regional tax laws."\n\n'
                    "**BAD Examples:**\n"
                    '- "Change the text." (Too vague)\n'
                    '- "Fix the bug." (Doesn\'t explain the bug or the fix)\n'
                    '- "Replace the line with this new line." (Brittle, just repeats the '
                    "other parameters)\n"
                ),
                "type": "string",
            },
            "old_string": {
                "description": (
                    "The exact literal text to replace, preferably unescaped. For single "
                    "replacements (default), include at least 3 lines of context BEFORE and "
                    "AFTER the target text, matching whitespace and indentation precisely. If "
                    "this string is not the exact literal text (i.e. you escaped it) or does "
                    "not match exactly, the tool will fail."
                ),
                "type": "string",
            },
            "new_string": {
                "description": (
                    "The exact literal text to replace `old_string` with, preferably "
                    "unescaped. Provide the EXACT text. Ensure the resulting code is correct "
                    "and idiomatic. Do not use omission placeholders like '(rest of methods "
                    "...)', '...', or 'unchanged code'; provide exact literal code."
                ),
                "type": "string",
            },
            "allow_multiple": {
                "type": "boolean",
                "description": (
                    "If true, the tool will replace all occurrences of `old_string`. If false "
                    "(default), it will only succeed if exactly one occurrence is found."
                ),
            },
        },
        "required": ["file_path", "old_string", "new_string"],
    }

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        if not args["file_path"].strip():
            return "The 'file_path' parameter must be non-empty."
        problem = check_path(ctx, args["file_path"])
        if problem:
            return problem
        size = len(encode_for_edit(args["new_string"]))
        if size > max_file_bytes():
            return size_limit_failure(args["file_path"], size, "Content size").message
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        path = args.get("file_path", "")
        old, new = args.get("old_string", ""), args.get("new_string", "")
        if old == "":
            return f"Create {path}"
        if old == new:
            return f"No file changes to {path}"

        def snippet(text: str) -> str:
            return text.split("\n")[0][:30] + ("..." if len(text) > 30 else "")

        return f"{path}: {snippet(old)} => {snippet(new)}"

    def plan(self, args: dict, ctx: ToolContext) -> EditPlan:
        """gemini-cli's calculateEdit, with exact matching only; raises ToolFailure."""
        target = target_of(args["file_path"])
        ws = workspace_of(ctx)
        old = args["old_string"].replace("\r\n", "\n")
        new = args["new_string"].replace("\r\n", "\n")
        shown = target.virtual
        if not ws.exists(target.relative):
            if old == "":
                return EditPlan(target, "", new, 1, True, False)
            raise ToolFailure(
                f"File not found: {shown}",
                "File not found. Cannot apply edit. Use an empty old_string to create a new file.",
            )
        raw = decode_for_edit(read_limited(ws, target.relative, shown))
        crlf = "\r\n" in raw
        current = raw.replace("\r\n", "\n")
        if old == "":
            raise ToolFailure(
                f"File already exists, cannot create: {shown}",
                "Failed to edit. Attempted to create a file that already exists.",
            )
        occurrences = current.count(old)
        if occurrences == 0:
            raise ToolFailure(
                f"Failed to edit, 0 occurrences found for old_string in {shown}. Ensure you're "
                "not escaping content incorrectly and check whitespace, indentation, and "
                "context. Use read_file tool to verify.",
                "Failed to edit, could not find the string to replace.",
            )
        if occurrences > 1 and not args.get("allow_multiple"):
            raise ToolFailure(
                f"Failed to edit, Expected 1 occurrence but found {occurrences} for old_string "
                f"in file: {shown}",
                f"Failed to edit, expected 1 occurrence but found {occurrences}.",
            )
        if old == new:
            raise ToolFailure(
                "No changes to apply. The old_string and new_string are identical in file: "
                f"{shown}",
                "No changes to apply. The old_string and new_string are identical.",
            )
        new_content = current.replace(old, new)
        if new_content == current:
            raise ToolFailure(
                "No changes to apply. The new content is identical to the current content in "
                f"file: {shown}",
                "No changes to apply. The new content is identical to the current content.",
            )
        return EditPlan(target, current, new_content, occurrences, False, crlf)

    def confirmation_details(self, args: dict, ctx: ToolContext) -> dict:
        try:
            plan = self.plan(args, ctx)
        except (ToolFailure, PathRefused) as exc:
            return edit_details_error(args.get("file_path", ""), exc)
        return {
            "type": "edit",
            "filePath": plan.target.virtual,
            "diff": unified_diff(plan.target.relative, plan.current, plan.new_content),
            "isNewFile": plan.is_new,
        }

    def work(self, args: dict, ctx: ToolContext) -> ToolResult:
        plan = self.plan(args, ctx)
        content = plan.new_content.replace("\n", "\r\n") if plan.crlf else plan.new_content
        write_bytes(
            workspace_of(ctx), plan.target.relative, encode_for_edit(content), plan.target.virtual
        )
        if plan.is_new:
            return ToolResult(
                output=f"Created new file: {plan.target.virtual} with provided content.",
                display=f"Created {plan.target.relative}",
            )
        return ToolResult(
            output=(
                f"Successfully modified file: {plan.target.virtual} "
                f"({plan.occurrences} replacements)."
            ),
            display=f"Edited {plan.target.relative} ({plural(plan.occurrences, 'replacement')})",
        )
