"""Turns stored messages into the `contents` the model sees, keeping them valid for Gemini."""

# The signature gemini-cli gives a thought it writes itself (the turn before injected audio).
SYNTHETIC_THOUGHT_SIGNATURE = "skip_thought_signature_validator"

INTERRUPTED = "The tool call was interrupted before it finished; it did not run to completion."


def _function_calls(parts: list[dict]) -> list[dict]:
    return [part["functionCall"] for part in parts if "functionCall" in part]


def _function_response_ids(parts: list[dict]) -> set:
    return {
        (part["functionResponse"].get("id"), part["functionResponse"].get("name"))
        for part in parts
        if "functionResponse" in part
    }


def model_visible_parts(parts: list[dict]) -> list[dict]:
    """The parts sent back to the model: thoughts are left out, as gemini-cli does.

    A function call keeps its thoughtSignature, which the model needs back verbatim; so does the
    synthetic model turn that precedes injected audio (gemini-cli's geminiChat.ts sends it).
    """
    return [
        part
        for part in parts or []
        if part
        and (not part.get("thought") or part.get("thoughtSignature") == SYNTHETIC_THOUGHT_SIGNATURE)
    ]


class HistoryFold:
    """Stored messages, oldest first, folded into the contents the model sees, before
    `contents_repaired`: thoughts are left out, and consecutive contents of one role are merged,
    as Gemini wants roles to alternate. Each content counts the messages it stands for; those the
    model does not see count with the content before them.

    `add` folds in the next message. It adds a content or replaces the last one with a merged
    copy: a content, once made, is never changed, so what was handed out stays as it was.
    """

    def __init__(self):
        self.contents: list[dict] = []
        self.counts: list[int] = []
        self._unseen = 0  # messages the model does not see, before its first content

    def add(self, message) -> int | None:
        """Folds in `message`; the index of the content it made or replaced (None: not seen)."""
        parts = model_visible_parts(message.parts)
        if not parts:
            if self.counts:
                self.counts[-1] += 1
            else:
                self._unseen += 1
            return None
        role = "model" if message.role == "model" else "user"
        if self.contents and self.contents[-1]["role"] == role:
            self.contents[-1] = {"role": role, "parts": [*self.contents[-1]["parts"], *parts]}
            self.counts[-1] += 1
        else:
            self.contents.append({"role": role, "parts": list(parts)})
            self.counts.append(1 + self._unseen)
            self._unseen = 0
        return len(self.contents) - 1


def contents_repaired(contents: list[dict], start: int = 0) -> list[dict]:
    """`contents[start:]` as sent to the model: every function call followed by its response. A
    call left without one (a crash mid-turn, a cancel) gets an error response, first in the
    content that follows, or in a content of its own after the last one, so the model never sees
    a dangling call.

    What a content becomes depends only on it and on the content before it, so contents repaired
    once stay right while later ones are added, up to the content before the first that changed.
    """
    repaired = []
    for index in range(start, len(contents)):
        content = contents[index]
        missing = _responses_missing(contents[index - 1], content) if index else []
        repaired.append({**content, "parts": missing + content["parts"]} if missing else content)
    if contents:
        missing = _responses_missing(contents[-1], None)
        if missing:
            repaired.append({"role": "user", "parts": missing})
    return repaired


def _responses_missing(content: dict, following: dict | None) -> list[dict]:
    """Error responses for the calls of a model content that the content after it leaves unanswered."""
    if content["role"] != "model":
        return []
    calls = _function_calls(content["parts"])
    if not calls:
        return []
    answered = _function_response_ids(following["parts"]) if following else set()
    return [
        {
            "functionResponse": {
                **({"id": call["id"]} if call.get("id") else {}),
                "name": call.get("name", ""),
                "response": {"error": INTERRUPTED},
            }
        }
        for call in calls
        if (call.get("id"), call.get("name")) not in answered
    ]


def parts_text(parts: list[dict]) -> str:
    """The visible text of a message: its non-thought text parts."""
    return "".join(
        part.get("text", "") for part in parts if "text" in part and not part.get("thought")
    )


def parts_merge(parts: list[dict]) -> list[dict]:
    """Streamed chunks folded into as few parts as Gemini sent meaning in.

    Consecutive text parts of the same kind (thought or answer) become one; a part carrying a
    `thoughtSignature` keeps it on the merged part, since the model needs it back verbatim.
    """
    merged: list[dict] = []
    for part in parts:
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and "text" in part
            and "text" in previous
            and bool(part.get("thought")) == bool(previous.get("thought"))
            and not (part.get("thoughtSignature") and previous.get("thoughtSignature"))
        ):
            previous["text"] += part["text"]
            if part.get("thoughtSignature"):
                previous["thoughtSignature"] = part["thoughtSignature"]
            continue
        merged.append(dict(part))
    return merged
