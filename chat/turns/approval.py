"""Which tool calls ask the user first, and which a session's approval mode refuses (gemini-cli's
policy engine, reduced to the server's modes: default, autoEdit, yolo, plan).
"""

import posixpath
import shlex

from chat.agent.tools import ToolKind
from sessions_app.models import ApprovalMode

SHELL_TOOL = "run_shell_command"
MEMORY_TOOL = "save_memory"
WEB_FETCH_TOOL = "web_fetch"
# Not read tools by kind, but harmless to a plan: asked (web_fetch) or session state only.
PLAN_ALLOWED = frozenset({WEB_FETCH_TOOL, "google_web_search", "write_todos"})
# Shell syntax that runs commands the root words do not show: never trusted by an allow-always.
HIDDEN_COMMANDS = ("$(", "`", "<(", ">(")
SEPARATORS = frozenset({"&&", "||", ";", "|", "&", "|&", ";;", "(", ")", "\n"})

PLAN_EDIT_DENIED = (
    "Tool execution denied by policy. You are in Plan Mode and cannot modify source code."
)
PLAN_DENIED = (
    "Tool execution denied by policy. You are in Plan Mode with access to read-only tools. "
    "Execution of scripts (including those from skills) is blocked."
)


def shell_allow_entry(root: str) -> str:
    """How an allowed command root is kept among the session's allowed tools (gemini-cli's syntax)."""
    return f"{SHELL_TOOL}({root})"


def command_roots(command: str) -> list[str] | None:
    """The root word of each command in a shell line (`git status && npm test` → git, npm).

    None when the line cannot be read with confidence (unbalanced quotes, command substitution),
    so that such a line always asks.
    """
    if any(marker in command for marker in HIDDEN_COMMANDS):
        return None
    lexer = shlex.shlex(command.replace("\n", " ; "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return None
    roots, expecting = [], True
    for token in tokens:
        if token in SEPARATORS or set(token) <= set("&|;()"):
            expecting = True
            continue
        if not expecting:
            continue
        if "=" in token and not token.startswith("=") and token.split("=", 1)[0].isidentifier():
            continue  # FOO=bar cmd: the assignment is not the command
        if token in {"sudo", "env", "command", "exec", "nohup", "time"}:
            roots.append(token)
            continue
        roots.append(posixpath.basename(token))
        expecting = False
    return [root for root in roots if root] or None


def shell_allowed(command: str, always: list[str]) -> bool:
    roots = command_roots(command)
    return roots is not None and all(shell_allow_entry(root) in always for root in roots)


def plan_refusal(kind: ToolKind, name: str, mode: str) -> str | None:
    """The policy error a call meets in plan mode; None when the call may go on."""
    if mode != ApprovalMode.PLAN or kind == ToolKind.READ or name in PLAN_ALLOWED:
        return None
    if kind == ToolKind.EDIT and name != MEMORY_TOOL:
        return PLAN_EDIT_DENIED
    return PLAN_DENIED


def needs_confirmation(kind: ToolKind, mode: str, always: list[str], name: str, args: dict) -> bool:
    """gemini-cli's approval rules: reads never ask; edits ask in default and run in autoEdit;
    save_memory and the shell ask unless yolo; an allowed shell command is trusted by its roots."""
    if name == WEB_FETCH_TOOL:
        return mode in (ApprovalMode.DEFAULT, ApprovalMode.PLAN) and name not in always
    # Reads and the session's own todo list never ask (gemini-cli's Kind.Read / Kind.Other).
    if kind in (ToolKind.READ, ToolKind.OTHER) or mode == ApprovalMode.YOLO:
        return False
    if name == SHELL_TOOL:
        return not shell_allowed(str(args.get("command", "")), always)
    if name in always:
        return False
    return not (mode == ApprovalMode.AUTO_EDIT and kind == ToolKind.EDIT and name != MEMORY_TOOL)


def always_entries(name: str, args: dict) -> list[str]:
    """What `proceed_always` adds to the session's allowed tools for this call."""
    if name == SHELL_TOOL:
        return [
            shell_allow_entry(root) for root in command_roots(str(args.get("command", ""))) or []
        ]
    return [name]
