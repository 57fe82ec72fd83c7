"""The function declarations the model sees: gemini-cli 0.56's, by model family, with this
server's few deliberate changes (the sandboxed shell, web_fetch's public-only fetching).

declarations.json holds gemini-cli's own texts and schemas (tools/definitions/model-family-sets,
default-legacy and gemini-3), so a prompt written for gemini-cli meets the same tool surface.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path

LEGACY = "default-legacy"
GEMINI_3 = "gemini-3"

SHELL_BACKGROUND_SENTENCE = "Command can start background processes using `&`."
SHELL_SANDBOX_TEXT = (
    "Command runs in a sandbox: the project is at `/workspace` (the only writable directory "
    "besides a private `/tmp`) and there is no network access. Processes started with `&` end "
    "when the command ends; set `is_background` to true to keep a server or watcher running."
)
WEB_FETCH_LOCAL_CLAUSE = (
    "Processes content from URL(s), including local and private network addresses "
    "(e.g., localhost), embedded in a prompt."
)
WEB_FETCH_PUBLIC_CLAUSE = (
    "Processes content from URL(s) embedded in a prompt. Only public addresses are fetched: "
    "local and private network addresses (e.g., localhost) are refused."
)

SAVE_MEMORY = {
    "name": "save_memory",
    "description": (
        "\nSaves concise user context (preferences, facts) for use across future sessions.\n\n"
        "Facts are appended to the workspace's GEMINI.md under the \"## Gemini Added "
        'Memories" section. Use for "Remember X" or clear personal facts, and for facts '
        "specific to the current workspace.\n\n"
        "Do NOT use for session-specific context or temporary data."
    ),
    "parametersJsonSchema": {
        "type": "object",
        "properties": {
            "fact": {
                "type": "string",
                "description": (
                    "The specific fact or piece of information to remember. Should be a "
                    "clear, self-contained statement."
                ),
            },
        },
        "required": ["fact"],
    },
}


def model_family(model: str) -> str:
    """gemini-cli's getToolFamily: Gemini 3 models get their own set, every other the legacy one."""
    return GEMINI_3 if re.match(r"^gemini-3(\.|-|$)", model or "") else LEGACY


@cache
def _families() -> dict:
    raw = json.loads((Path(__file__).with_name("declarations.json")).read_text())
    for family in raw.values():
        shell = family["run_shell_command"]
        shell["description"] = shell["description"].replace(
            SHELL_BACKGROUND_SENTENCE, f"{SHELL_BACKGROUND_SENTENCE} {SHELL_SANDBOX_TEXT}"
        )
        fetch = family["web_fetch"]
        fetch["description"] = fetch["description"].replace(
            WEB_FETCH_LOCAL_CLAUSE, WEB_FETCH_PUBLIC_CLAUSE
        )
    return raw


def declaration_for(name: str, model: str = "") -> dict:
    """{name, description, parametersJsonSchema} of one tool for the given model (a copy)."""
    if name == SAVE_MEMORY["name"]:
        return copy.deepcopy(SAVE_MEMORY)
    entry = _families()[model_family(model)][name]
    return {
        "name": name,
        "description": entry["description"],
        "parametersJsonSchema": copy.deepcopy(entry["parameters"]),
    }
