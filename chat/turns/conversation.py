"""A turn's conversation, kept in memory: loaded once, appended to, and sent as a prebuilt body.

The stored history is read once per turn, and only what is new since this process last saw the
session (a per-process cache, checked against the session's history epoch, which clear and
checkpoint loads move on). During the turn each step is appended in memory; each model call
serializes the contents once, next to request pieces built once per turn (system instruction,
tool declarations, generation config). Nothing is re-validated on the way out.
"""

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

from google.genai import types

from chat.agent.history import history_contents
from chat.models import Message

CACHED_SESSIONS = 512


@dataclass
class _Cached:
    epoch: int
    last_seq: int
    steps: list = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    role: str
    parts: list


_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def history_steps(*, session_id, epoch: int, count: int | None = None) -> list[Step]:
    """The session's stored steps, oldest first: cached steps plus one query for newer rows.

    With the session's message count, a cache that already holds every step costs no query.
    """
    with _cache_lock:
        cached = _cache.get(session_id)
        if cached is not None and cached.epoch != epoch:
            cached = None
        if cached is not None and count is not None and len(cached.steps) == count:
            _cache.move_to_end(session_id)
            return list(cached.steps)
        last_seq = cached.last_seq if cached is not None else 0
    rows = list(
        Message.objects.filter(session_id=session_id, seq__gt=last_seq)
        .order_by("seq")
        .values_list("seq", "role", "parts")
    )
    with _cache_lock:
        if cached is None:
            cached = _Cached(epoch=epoch, last_seq=0)
        steps = cached.steps + [Step(role, parts or []) for _, role, parts in rows]
        if rows:
            cached = _Cached(epoch=epoch, last_seq=rows[-1][0], steps=steps)
        _cache[session_id] = cached
        _cache.move_to_end(session_id)
        while len(_cache) > CACHED_SESSIONS:
            _cache.popitem(last=False)
    return list(steps)


def history_remember(*, session_id, epoch: int, message) -> None:
    """A step this process just stored: the next turn here needs no query to know it."""
    with _cache_lock:
        cached = _cache.get(session_id)
        if cached is None or cached.epoch != epoch or message.seq <= cached.last_seq:
            return
        cached.steps.append(Step(message.role, message.parts or []))
        cached.last_seq = message.seq


def history_forget(session_id) -> None:
    with _cache_lock:
        _cache.pop(session_id, None)


@lru_cache(maxsize=8)
def _tools_json(declarations: str) -> str:
    """Tool declarations in the SDK's wire form (its Schema types), built once per set."""
    tool = types.Tool(function_declarations=json.loads(declarations))
    return json.dumps([tool.model_dump(mode="json", exclude_none=True, by_alias=True)])


class Conversation:
    """The contents the model sees, in memory, and the request body for the next model call."""

    def __init__(
        self,
        steps: list[Step],
        *,
        system_instruction: str,
        declarations: list[dict],
        generation_config: dict,
    ):
        self.contents: list[dict] = history_contents(steps)
        self._fragments: list[str] = [_dumps(content) for content in self.contents]
        tail = {"systemInstruction": {"parts": [{"text": system_instruction}], "role": "user"}}
        if generation_config:
            tail["generationConfig"] = generation_config
        tools = _tools_json(json.dumps(declarations)) if declarations else None
        self._tail = "," + _dumps(tail)[1:-1] + (f',"tools":{tools}' if tools else "") + "}"

    def append(self, role: str, parts: list[dict]) -> None:
        """A step of the turn; consecutive steps of one role form one content, as Gemini wants."""
        role = "model" if role == "model" else "user"
        if self.contents and self.contents[-1]["role"] == role:
            self.contents[-1]["parts"].extend(parts)
            self._fragments[-1] = _dumps(self.contents[-1])
        else:
            content = {"role": role, "parts": list(parts)}
            self.contents.append(content)
            self._fragments.append(_dumps(content))

    def body(self) -> bytes:
        return ('{"contents":[' + ",".join(self._fragments) + "]" + self._tail).encode()


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
