"""When a model answer is worth another try: gemini-cli's invalid-stream retries (core/geminiChat.ts)
and its back-off on 429 (utils/retry.ts), honouring the delay Google asks for.
"""

from dataclasses import dataclass, field

from django.conf import settings

# 1 call and 3 retries for an answer that came back empty, thought-only or malformed.
INVALID_ANSWER_ATTEMPTS = 4
RATE_LIMIT_INITIAL_DELAY = 5.0
RATE_LIMIT_MAX_DELAY = 30.0

THINKING_ONLY_NUDGE = (
    "\n[System: You previously generated thoughts but failed to provide a final user-facing "
    "response. Please ensure you provide your final answer or call a tool now.]"
)
EMPTY_NUDGE = (
    "\n[System: You previously returned an empty response with no text or thoughts. Please "
    "ensure you provide your final answer or call a tool now.]"
)


@dataclass(frozen=True)
class AnswerProblem:
    kind: str  # gemini-cli's InvalidStreamError types
    message: str
    nudge: str = ""


def answer_problem(
    parts: list[dict], finish: str | None, *, after_tool: bool = False
) -> AnswerProblem | None:
    """Why an answer without tool calls cannot end the turn, or None when it can.

    After a tool's response the model may end without a word (`after_tool`), as in gemini-cli.
    """
    if any("functionCall" in part for part in parts):
        return None
    if not finish and not after_tool:
        return AnswerProblem("NO_FINISH_REASON", "Model stream ended without a finish reason.")
    if finish == "MALFORMED_FUNCTION_CALL":
        return AnswerProblem(
            "MALFORMED_FUNCTION_CALL", "Model stream ended with malformed function call."
        )
    if finish == "UNEXPECTED_TOOL_CALL":
        return AnswerProblem(
            "UNEXPECTED_TOOL_CALL", "Model stream ended with unexpected tool call."
        )
    text = "".join(part.get("text", "") for part in parts if not part.get("thought")).strip()
    if text:
        return None
    if finish in {"MAX_TOKENS", "SAFETY", "RECITATION", "OTHER"}:
        return AnswerProblem(
            f"{finish}_EMPTY", f"Model stream ended ({finish}) with empty response text."
        )
    if any(part.get("thought") for part in parts):
        return AnswerProblem(
            "THINKING_ONLY_RESPONSE",
            "Model stream ended with empty response text but contained reasoning thoughts.",
            THINKING_ONLY_NUDGE,
        )
    if after_tool:
        return None
    return AnswerProblem(
        "NO_RESPONSE_TEXT", "Model stream ended with empty response text.", EMPTY_NUDGE
    )


@dataclass
class AnswerRetries:
    """One model call's retry budget: invalid answers, and the time spent waiting out 429s."""

    invalid: int = 0
    rate_limited: int = 0
    waited: float = 0.0
    nudge: str = ""
    problems: list[AnswerProblem] = field(default_factory=list)

    def retry_invalid(self, problem: AnswerProblem) -> float | None:
        """Seconds to wait before asking again, or None when the retries are spent."""
        self.problems.append(problem)
        self.invalid += 1
        if self.invalid >= INVALID_ANSWER_ATTEMPTS:
            return None
        self.nudge = problem.nudge
        return settings.AGENT_INVALID_ANSWER_RETRY_DELAY_SECONDS * (2 ** (self.invalid - 1))

    def retry_rate_limited(self, retry_after: float | None) -> float | None:
        """Seconds to wait after a 429 (Google's retryDelay, else exponential back-off), or None
        when that would pass GEMINI_RATE_LIMIT_MAX_WAIT_SECONDS or the attempts are spent."""
        self.rate_limited += 1
        if self.rate_limited >= settings.GEMINI_RATE_LIMIT_ATTEMPTS:
            return None
        backoff = min(
            RATE_LIMIT_INITIAL_DELAY * (2 ** (self.rate_limited - 1)), RATE_LIMIT_MAX_DELAY
        )
        delay = retry_after if retry_after is not None else backoff
        if self.waited + delay > settings.GEMINI_RATE_LIMIT_MAX_WAIT_SECONDS:
            return None
        self.waited += delay
        return delay
