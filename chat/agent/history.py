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


def history_contents(messages) -> list[dict]:
    """Gemini `contents` for stored messages, oldest first.

    Thoughts are left out. Roles alternate as Gemini expects: consecutive contents of one role
    are merged. Every function call is followed by its response: a call left without one (a
    crash mid-turn, a cancel) gets an error response, so the model never sees a dangling call.
    """
    contents: list[dict] = []
    for message in messages:
        parts = model_visible_parts(message.parts)
        if not parts:
            continue
        role = "model" if message.role == "model" else "user"
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": list(parts)})

    repaired: list[dict] = []
    for index, content in enumerate(contents):
        repaired.append(content)
        if content["role"] != "model":
            continue
        calls = _function_calls(content["parts"])
        if not calls:
            continue
        following = contents[index + 1] if index + 1 < len(contents) else None
        answered = _function_response_ids(following["parts"]) if following else set()
        missing = [
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
        if not missing:
            continue
        if following is not None:
            # Responses must come first in the user content that follows the calls.
            following["parts"] = missing + following["parts"]
        else:
            repaired.append({"role": "user", "parts": missing})
    return repaired


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
