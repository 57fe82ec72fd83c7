"""The one way to run a tool: look up, normalise, validate once, run, time, and shape the result
for the model. Used by the turn, by POST /tools/execute and by the WebSocket (through
chat/tools_run.py); the callers keep their audit records around it.

What the model reads is gemini-cli's: only the shell's output is cut, at 40,000 characters
(first 20%, last 80%, with its "Output too large" header), and the full text is saved in the
workspace, as gemini-cli's tool executor does (scheduler/tool-executor.ts, utils/fileUtils.ts).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass

from sessions_app.workspace import PathRefused, Workspace, WorkspaceQuotaExceeded

from .base import Tool, ToolContext, ToolResult, host_path_scrub, tool_error

logger = logging.getLogger(__name__)

SHELL_TOOL = "run_shell_command"
OUTPUT_TRUNCATION_THRESHOLD = 40_000
# Where the full text of a cut output is kept: the workspace's temp area, readable by read_file.
TOOL_OUTPUTS_DIR = ".gemini/tmp/tool-outputs"
READ_TOOLS = ("read_file", "read_many_files")


@dataclass
class ToolOutcome:
    result: ToolResult
    duration_ms: int

    @property
    def status(self) -> str:
        return "success" if self.result.ok else "error"

    @property
    def text(self) -> str:
        return self.result.output if self.result.ok else (self.result.error or "")


@dataclass
class ToolCall:
    """A call looked up, normalised and validated, ready to run (or to report why not)."""

    requested: str
    tool: Tool | None
    args: dict
    ctx: ToolContext
    call_id: str
    problem: str | None

    @property
    def name(self) -> str:
        return self.tool.name if self.tool is not None else self.requested

    @property
    def valid(self) -> bool:
        return self.problem is None

    async def run(self) -> ToolOutcome:
        """Run the validated call (or answer its problem), timed; never raises for a bad call."""
        started = time.monotonic()
        if self.problem is not None:
            result = tool_error(self.problem)
        else:
            try:
                result = await self.tool.run(self.args, self.ctx)
            except Exception as exc:
                # A bug or an unexpected OS condition must become a tool error, not kill the turn.
                logger.exception("tool %s failed", self.name)
                result = tool_error(f"Error executing tool {self.name}: {exc}")
            result = _scrubbed(result, self.ctx)
            if self.tool.name == SHELL_TOOL and result.ok:
                result = await asyncio.to_thread(_truncate_and_save, result, self)
        return ToolOutcome(result, int((time.monotonic() - started) * 1000))


def _scrubbed(result: ToolResult, ctx: ToolContext) -> ToolResult:
    return ToolResult(
        output=host_path_scrub(result.output, ctx),
        error=None if result.error is None else host_path_scrub(result.error, ctx),
        display=host_path_scrub(result.display, ctx),
        parts=result.parts,
        data=result.data,
    )


def _safe_name_part(part: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", part)


def truncated_output_text(content: str, output_file: str, max_chars: int) -> str:
    """formatTruncatedToolOutput: the first 20% and the last 80% of what fits, and where the rest is."""
    if len(content) <= max_chars:
        return content
    head_chars = max_chars // 5
    tail_chars = max_chars - head_chars
    omitted = len(content) - head_chars - tail_chars
    return (
        f"Output too large. Showing first {head_chars:,} and last {tail_chars:,} characters. "
        f"For full output see: {output_file}\n"
        f"{content[:head_chars]}\n\n... [{omitted:,} characters omitted] ...\n\n"
        f"{content[-tail_chars:]}"
    )


def output_file_path(tool_name: str, call_id: str, session_id: str) -> str:
    """saveTruncatedToolOutput's file name, under the workspace's temp area."""
    safe_tool = _safe_name_part(tool_name).lower()
    safe_id = _safe_name_part(call_id).lower()
    name = f"{safe_id}.txt" if safe_id.startswith(safe_tool) else f"{safe_tool}_{safe_id}.txt"
    return f"{TOOL_OUTPUTS_DIR}/session-{_safe_name_part(session_id)}/{name}"


def _truncate_and_save(result: ToolResult, call: ToolCall) -> ToolResult:
    content = result.output
    if len(content) <= OUTPUT_TRUNCATION_THRESHOLD:
        return result
    relative = output_file_path(call.name, call.call_id, call.ctx.session_id)
    shown = f"/workspace/{relative}"
    try:
        Workspace(call.ctx.workspace).write_bytes(
            relative, content.encode("utf-8", "surrogateescape")
        )
    except (OSError, PathRefused, WorkspaceQuotaExceeded) as exc:
        # The model still gets the cut text; only the pointer to the full one is lost.
        logger.warning("Could not save the full output of %s: %s", call.call_id, exc)
        shown = f"(not saved: {exc})"
    text = truncated_output_text(content, shown, OUTPUT_TRUNCATION_THRESHOLD)
    return ToolResult(
        output=text,
        display=result.display,
        parts=result.parts,
        data={**result.data, "outputFile": shown},
    )


def function_response_parts(
    *, call_id: str, name: str, result: ToolResult, model: str
) -> tuple[list[dict], list[dict]]:
    """The parts that answer one call (convertToFunctionResponse), and binary parts gemini-cli
    injects after a synthetic model turn instead (audio and video read by the read tools).

    Images and PDFs go beside the functionResponse, or inside it (functionResponse.parts) for
    Gemini 3 models, which accept multimodal function responses.
    """
    if not result.ok:
        return [_response(call_id, name, {"error": result.error})], []
    texts = [result.output] if result.output or not result.parts else []
    inline, unsupported = [], []
    for part in result.parts:
        mime = part.get("inlineData", {}).get("mimeType", "")
        (unsupported if mime.startswith(("audio/", "video/")) else inline).append(part)
    injected: list[dict] = []
    if unsupported:
        mimes = ", ".join(dict.fromkeys(p["inlineData"]["mimeType"] for p in unsupported))
        if name in READ_TOOLS:
            texts.insert(
                0,
                f"Binary content ({mimes}) read successfully. Content will be injected for "
                "analysis in the next sequence.",
            )
            injected = unsupported
        else:
            texts.insert(
                0,
                f"[SYSTEM: Binary content ({mimes}) stripped from response due to protocol "
                "limitations.]",
            )
    response: dict = {"output": "\n".join(texts)} if texts else {}
    part = _response(call_id, name, response)
    siblings: list[dict] = []
    if inline:
        if model.startswith("gemini-3-"):
            part["functionResponse"]["parts"] = inline
        else:
            siblings = inline
        if not texts:
            part["functionResponse"]["response"] = {
                "output": f"Binary content provided ({len(inline)} item(s))."
            }
    return [part, *siblings], injected


def _response(call_id: str, name: str, response: dict) -> dict:
    return {"functionResponse": {"id": call_id, "name": name, "response": response}}
