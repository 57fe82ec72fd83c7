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

from chat.agent.history import history_contents, model_visible_parts
from chat.models import Message
from chat.turns.compression import SNAPSHOT_ACK, snapshot_latest

CACHED_SESSIONS = 512


_UNKNOWN = object()


@dataclass
class _Cached:
    epoch: int
    last_seq: int
    steps: list = field(default_factory=list)
    # The epoch's latest compression snapshot (None: there is none), once looked up.
    snapshot: object = _UNKNOWN
    # The JSON of the contents built from these steps, by role and parts (see `_Fragments`).
    fragments: "_Fragments" = field(default_factory=lambda: _Fragments())


@dataclass(frozen=True)
class Step:
    role: str
    parts: list


class _Fragments:
    """The JSON of each content a session's earlier turns sent, so the next turn in this process
    serializes only what is new: its request stays as cheap at turn 50 as at turn 1.

    A content is known by its role and its parts, which are the stored steps' own part objects
    (held, never changed once stored); the entry keeps them, so their identity stays theirs.
    """

    def __init__(self):
        self._known: dict[tuple, tuple[list, str]] = {}

    def json(self, content: dict) -> str:
        parts = content["parts"]
        key = (content["role"], *map(id, parts))
        known = self._known.get(key)
        if known is not None and all(a is b for a, b in zip(known[0], parts, strict=True)):
            return known[1]
        text = _dumps(content)
        if len(self._known) > 4096:
            self._known.clear()
        self._known[key] = (list(parts), text)
        return text


_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def history_load(
    *, session_id, epoch: int, count: int | None = None
) -> tuple[list[Step], object, "_Fragments"]:
    """The session's stored steps, oldest first, the epoch's latest compression snapshot, and the
    JSON this process already made of their contents (`Conversation(fragments=...)`).

    Cached steps plus one query for newer rows; with the session's message count, a cache that
    already holds every step (and knows the snapshot) costs no query at all. A snapshot is only
    written during a turn, which adds messages, so a whole cache knows the latest one too, and a
    session with no message in its epoch (its first turn) has no snapshot either.
    """
    with _cache_lock:
        cached = _cache.get(session_id)
        if cached is not None and cached.epoch != epoch:
            cached = None
        if cached is None and count == 0:
            cached = _cache[session_id] = _Cached(epoch=epoch, last_seq=0, snapshot=None)
            _trim()
        if (
            cached is not None
            and count is not None
            and len(cached.steps) == count
            and cached.snapshot is not _UNKNOWN
        ):
            _cache.move_to_end(session_id)
            return list(cached.steps), cached.snapshot, cached.fragments
        last_seq = cached.last_seq if cached is not None else 0
    rows = list(
        Message.objects.filter(session_id=session_id, seq__gt=last_seq)
        .order_by("seq")
        .values_list("seq", "role", "parts")
    )
    snapshot = snapshot_latest(session_id=session_id, epoch=epoch)
    with _cache_lock:
        if cached is None:
            cached = _Cached(epoch=epoch, last_seq=0)
        steps = cached.steps + [Step(role, parts or []) for _, role, parts in rows]
        last = rows[-1][0] if rows else cached.last_seq
        cached = _Cached(
            epoch=epoch,
            last_seq=last,
            steps=steps,
            snapshot=snapshot,
            fragments=cached.fragments,
        )
        _cache[session_id] = cached
        _cache.move_to_end(session_id)
        _trim()
    return list(steps), snapshot, cached.fragments


def _trim() -> None:
    """Forgets the least recently used sessions past CACHED_SESSIONS (under `_cache_lock`)."""
    while len(_cache) > CACHED_SESSIONS:
        _cache.popitem(last=False)


def snapshot_remember(*, session_id, epoch: int, snapshot) -> None:
    """A snapshot this process just stored: the next turn here starts from it without a query."""
    with _cache_lock:
        cached = _cache.get(session_id)
        if cached is not None and cached.epoch == epoch:
            cached.snapshot = snapshot


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


def _steps_per_content(steps: list[Step], contents_count: int) -> list[int]:
    """How many stored steps each content of `history_contents(steps)` stands for.

    Steps the model does not see (empty, thoughts only) count with the content before them, so
    the sum up to any content is the number of stored messages that come before it.
    """
    counts: list[int] = []
    role, waiting = None, 0
    for step in steps:
        if not model_visible_parts(step.parts):
            if counts:
                counts[-1] += 1
            else:
                waiting += 1
            continue
        step_role = "model" if step.role == "model" else "user"
        if counts and step_role == role:
            counts[-1] += 1
        else:
            counts.append(1 + waiting)
            waiting = 0
        role = step_role
    counts.extend([0] * (contents_count - len(counts)))
    return counts


class Conversation:
    """The contents the model sees, in memory, and the request body for the next model call.

    It starts with the session's environment context and, when the session was compressed, the
    stored state snapshot in place of the messages it covers (`covered`, oldest first).
    """

    def __init__(
        self,
        steps: list[Step],
        *,
        system_instruction: str,
        tools: str,
        generation_config: dict,
        environment: str = "",
        snapshot: str = "",
        covered: int = 0,
        fragments: _Fragments | None = None,
    ):
        self.environment = environment
        self.covered = covered if snapshot else 0
        self.contents: list[dict] = []
        self._steps: list[int] = []
        self._fragments: list[str] = []
        self._head(snapshot)
        visible = steps[self.covered :]
        contents = history_contents(visible)
        for content, count in zip(
            contents, _steps_per_content(visible, len(contents)), strict=True
        ):
            self._add(content["role"], content["parts"], count, fragments)
        # A note added to the system instruction for one call (gemini-cli's retry nudges).
        self.system_note = ""
        self._system_instruction = system_instruction
        self._generation_config = generation_config
        # The `tools` value as JSON (chat.agent.tools.tool_declarations_wire); "" for none.
        self._tools = tools
        self._tail = self._tail_of(system_instruction)

    def _head(self, snapshot: str) -> None:
        """The environment context, then the snapshot and the model's acknowledgement."""
        parts = [{"text": self.environment}] if self.environment else []
        if snapshot:
            parts.append({"text": snapshot})
        if parts:
            self._add("user", parts, 0)
        if snapshot:
            self._add("model", [{"text": SNAPSHOT_ACK}], 0)

    def _tail_of(self, system_instruction: str) -> str:
        tail = {"systemInstruction": {"parts": [{"text": system_instruction}], "role": "user"}}
        if self._generation_config:
            tail["generationConfig"] = self._generation_config
        tools = f',"tools":{self._tools}' if self._tools else ""
        return "," + _dumps(tail)[1:-1] + tools + "}"

    def _add(
        self, role: str, parts: list[dict], steps: int, fragments: _Fragments | None = None
    ) -> None:
        if self.contents and self.contents[-1]["role"] == role:
            self.contents[-1]["parts"].extend(parts)
            self._fragments[-1] = _dumps(self.contents[-1])
            self._steps[-1] += steps
        else:
            content = {"role": role, "parts": list(parts)}
            self.contents.append(content)
            self._fragments.append(fragments.json(content) if fragments else _dumps(content))
            self._steps.append(steps)

    def append(self, role: str, parts: list[dict], *, stored: bool = True) -> None:
        """A step of the turn; consecutive steps of one role form one content, as Gemini wants.

        Thoughts are left out (gemini-cli does not send them back); a function call keeps its
        thoughtSignature. `stored` says whether the step is a stored message (a nudge is not).
        """
        role = "model" if role == "model" else "user"
        visible = model_visible_parts(parts)
        if not visible:
            if stored and self._steps:
                self._steps[-1] += 1
            return
        self._add(role, visible, 1 if stored else 0)

    def compress(self, split: int, snapshot: str) -> None:
        """Replaces the contents before `split` with the snapshot; the rest stays as it was."""
        kept = list(zip(self.contents[split:], self._steps[split:], strict=True))
        self.covered += sum(self._steps[:split])
        self.contents, self._steps, self._fragments = [], [], []
        self._head(snapshot)
        for content, count in kept:
            self._add(content["role"], content["parts"], count)

    def compressible(self, split: int) -> list[dict]:
        """The contents before `split` as the summariser sees them: without the environment."""
        contents = self.contents[:split]
        if not self.environment or not contents:
            return contents
        first = contents[0]
        parts = [part for part in first["parts"] if part.get("text") != self.environment]
        return ([{**first, "parts": parts}] if parts else []) + contents[1:]

    def body(self) -> bytes:
        tail = self._tail
        if self.system_note:
            tail = self._tail_of(self._system_instruction + self.system_note)
        return ('{"contents":[' + ",".join(self._fragments) + "]" + tail).encode()


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
