"""Notices a model going round in circles, as gemini-cli's services/loopDetectionService.ts does.

Two signals: the same tool call (or the same short cycle of calls) repeated 5 times in a row,
and a 50-character chunk of streamed text repeated 10 times close together, outside code blocks,
tables, lists and headings. The first hit earns the model a nudge; the turn stops on the second.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from itertools import pairwise

TOOL_CALL_LOOP_THRESHOLD = 5
CONTENT_LOOP_THRESHOLD = 10
CONTENT_CHUNK_SIZE = 50
MAX_HISTORY_LENGTH = 5000
# Cycles of up to this many different calls count (a→b→a→b... repeated 5 times).
MAX_CYCLE_LENGTH = 5

_TABLE = re.compile(r"(^|\n)\s*(\|.*\||[|+-]{3,})")
_LIST_ITEM = re.compile(r"(^|\n)\s*[*+-]\s|(^|\n)\s*\d+\.\s")
_HEADING = re.compile(r"(^|\n)#+\s")
_BLOCKQUOTE = re.compile(r"(^|\n)>\s")
_DIVIDER = re.compile(r"^[+\-_=*\u2500-\u257F]+$")


def loop_feedback(detail: str) -> str:
    """The message gemini-cli sends the model after its first loop (core/client.ts)."""
    return (
        f"System: Potential loop detected. Details: {detail or 'Repetitive patterns identified'}. "
        "Please take a step back and confirm you're making forward progress. If not, take a step "
        "back, analyze your previous actions and rethink how you're approaching the problem. "
        "Avoid repeating the same tool calls or responses without new results."
    )


@dataclass
class LoopHit:
    count: int  # 1: nudge the model; 2 and more: stop
    kind: str  # "tool_call" or "content"
    detail: str


class LoopDetector:
    """One per user prompt: fed every tool call and every streamed text chunk."""

    def __init__(self) -> None:
        self.detected_count = 0
        self._calls: list[str] = []
        self._reset_content()

    def _reset_content(self) -> None:
        self._text = ""
        self._stats: dict[str, list[int]] = {}
        self._index = 0
        self._in_code_block = False

    def _hit(self, kind: str, detail: str) -> LoopHit:
        self.detected_count += 1
        return LoopHit(self.detected_count, kind, detail)

    def after_nudge(self) -> None:
        """The model was told; it starts from a clean slate (the count of hits stays)."""
        self._calls = []
        self._reset_content()

    # Tool calls.

    def tool_call(self, name: str, args: dict) -> LoopHit | None:
        self._reset_content()
        key = hashlib.sha256(
            f"{name}:{json.dumps(args, sort_keys=True, ensure_ascii=False)}".encode()
        ).hexdigest()
        self._calls.append(key)
        self._calls = self._calls[-MAX_CYCLE_LENGTH * TOOL_CALL_LOOP_THRESHOLD :]
        count = len(self._calls)
        for cycle in range(1, MAX_CYCLE_LENGTH + 1):
            needed = cycle * TOOL_CALL_LOOP_THRESHOLD
            if count < needed:
                break
            window = self._calls[-needed:]
            pattern = window[-cycle:]
            if all(window[i] == pattern[i % cycle] for i in range(needed)):
                return self._hit(
                    "tool_call",
                    f"Repeated tool call: {name} with arguments "
                    f"{json.dumps(args, separators=(',', ':'), ensure_ascii=False)}",
                )
        return None

    # Streamed text.

    def content(self, text: str) -> LoopHit | None:
        fences = text.count("```")
        is_divider = bool(_DIVIDER.match(text))
        if (
            fences
            or _TABLE.search(text)
            or _LIST_ITEM.search(text)
            or _HEADING.search(text)
            or _BLOCKQUOTE.search(text)
            or is_divider
        ):
            self._reset_content()
        was_in_code = self._in_code_block
        if fences % 2:
            self._in_code_block = not self._in_code_block
        if was_in_code or self._in_code_block or is_divider:
            return None
        self._text += text
        self._truncate()
        while self._index + CONTENT_CHUNK_SIZE <= len(self._text):
            chunk = self._text[self._index : self._index + CONTENT_CHUNK_SIZE]
            if self._chunk_repeats(chunk):
                start = max(0, self._index - 20)
                shown = self._text[start : self._index + CONTENT_CHUNK_SIZE].strip()
                return self._hit("content", f'Repeating content detected: "{shown}..."')
            self._index += 1
        return None

    def _truncate(self) -> None:
        excess = len(self._text) - MAX_HISTORY_LENGTH
        if excess <= 0:
            return
        self._text = self._text[excess:]
        self._index = max(0, self._index - excess)
        stats = {}
        for chunk_hash, places in self._stats.items():
            kept = [place - excess for place in places if place - excess >= 0]
            if kept:
                stats[chunk_hash] = kept
        self._stats = stats

    def _chunk_repeats(self, chunk: str) -> bool:
        chunk_hash = hashlib.sha256(chunk.encode()).hexdigest()
        places = self._stats.get(chunk_hash)
        if places is None:
            self._stats[chunk_hash] = [self._index]
            return False
        if self._text[places[0] : places[0] + CONTENT_CHUNK_SIZE] != chunk:
            return False
        places.append(self._index)
        if len(places) < CONTENT_LOOP_THRESHOLD:
            return False
        recent = places[-CONTENT_LOOP_THRESHOLD:]
        average = (recent[-1] - recent[0]) / (CONTENT_LOOP_THRESHOLD - 1)
        if average > CONTENT_CHUNK_SIZE * 5:
            return False
        periods = {self._text[a:b] for a, b in pairwise(recent)}
        return len(periods) <= CONTENT_LOOP_THRESHOLD // 2
