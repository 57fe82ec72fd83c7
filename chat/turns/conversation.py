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

from chat.agent.history import HistoryFold, contents_repaired, model_visible_parts
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
    # What the session's earlier turns in this process built of these steps (see `_Built`).
    built: "_Built" = field(default_factory=lambda: _Built())


@dataclass(frozen=True)
class Step:
    role: str
    parts: list


class _Built:
    """What a session's earlier turns in this process built of its stored steps, so that the next
    turn builds only what is new: its request costs as little at turn 100 as at turn 1.

    It keeps the steps folded into contents (`HistoryFold`), each content as it is sent and its
    JSON. Within an epoch steps are only ever added after the others, so the steps it folded are
    still the first ones while the step it folded last is still in its place; then the contents
    before the first one that new steps changed are sent as before, and only the rest are
    repaired and serialized. Anything else (another compression snapshot, another epoch's steps)
    builds it all again.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._start(covered=0)

    def _start(self, *, covered: int) -> None:
        self._fold = HistoryFold()
        self._covered = covered
        self._folded = 0  # steps folded in
        self._last = None  # the step folded last
        self._sent: list[dict] = []
        self._json: list[str] = []

    def contents(self, visible: list, covered: int) -> tuple[list[dict], list[int], list[str]]:
        """The contents sent for `visible` (the steps after the `covered` ones), how many steps
        each stands for, and each content's JSON."""
        with self._lock:
            folded = self._folded
            if (
                covered != self._covered
                or len(visible) < folded
                or (folded and visible[folded - 1] is not self._last)
            ):
                self._start(covered=covered)
                folded = 0
            fold = self._fold
            changed = len(fold.contents)
            for step in visible[folded:]:
                touched = fold.add(step)
                if touched is not None:
                    changed = min(changed, touched)
            self._folded, self._last = len(visible), visible[-1] if visible else None
            kept = min(changed, len(self._sent))
            fresh = contents_repaired(fold.contents, kept)
            self._sent = self._sent[:kept] + fresh
            self._json = self._json[:kept] + [_dumps(content) for content in fresh]
            counts = fold.counts + [0] * (len(self._sent) - len(fold.counts))
            return list(self._sent), counts, list(self._json)


_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def history_load(
    *, session_id, epoch: int, count: int | None = None
) -> tuple[list[Step], object, "_Built"]:
    """The session's stored steps, oldest first, the epoch's latest compression snapshot, and
    what this process already built of them (`Conversation(built=...)`).

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
            return list(cached.steps), cached.snapshot, cached.built
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
            built=cached.built,
        )
        _cache[session_id] = cached
        _cache.move_to_end(session_id)
        _trim()
    return list(steps), snapshot, cached.built


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
        built: _Built | None = None,
    ):
        self.environment = environment
        self.covered = covered if snapshot else 0
        self.contents: list[dict] = []
        self._steps: list[int] = []
        self._fragments: list[str] = []
        self._head(snapshot)
        contents, counts, texts = (built or _Built()).contents(steps[self.covered :], self.covered)
        first = 0
        if contents and self.contents and self.contents[-1]["role"] == contents[0]["role"]:
            # The history's first content joins the head's (roles alternate).
            self._add(contents[0]["role"], contents[0]["parts"], counts[0])
            first = 1
        self.contents += contents[first:]
        self._steps += counts[first:]
        self._fragments += texts[first:]
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

    def _add(self, role: str, parts: list[dict], steps: int) -> None:
        if self.contents and self.contents[-1]["role"] == role:
            # A merged copy: the contents may be shared with what the session built (`_Built`).
            self.contents[-1] = {"role": role, "parts": [*self.contents[-1]["parts"], *parts]}
            self._fragments[-1] = _dumps(self.contents[-1])
            self._steps[-1] += steps
        else:
            content = {"role": role, "parts": list(parts)}
            self.contents.append(content)
            self._fragments.append(_dumps(content))
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
