"""Reads of a session's conversation, in the form the API returns."""

from chat.models import FINISH_INTERRUPTED, FINISH_STREAMING, Checkpoint, Message
from gemini_server.clock import iso_utc
from gemini_server.paging import keyset_page


def message_to_dict(message: Message, *, turn_live: bool = False) -> dict:
    usage = None
    if message.total_tokens is not None:
        usage = {
            "promptTokens": message.prompt_tokens or 0,
            "completionTokens": message.completion_tokens or 0,
            "totalTokens": message.total_tokens or 0,
        }
    return {
        "id": str(message.id),
        "role": message.role,
        "parts": message.parts,
        "text": message.text,
        "createdAt": iso_utc(message.created_at),
        "usage": usage,
        "finishReason": _finish_reason(message, turn_live=turn_live),
    }


def _finish_reason(message: Message, *, turn_live: bool) -> str | None:
    if message.finish_reason == FINISH_STREAMING:
        # Streaming still, or cut off by a server that died (stored as such once noticed).
        return None if turn_live else FINISH_INTERRUPTED
    return message.finish_reason or None


def history_page(*, session, limit: int, cursor: dict | None) -> tuple[list[dict], str | None]:
    """The history oldest first, a page at a time."""
    messages, next_cursor = keyset_page(
        Message.objects.filter(session=session), order=["seq"], limit=limit, cursor=cursor
    )
    streaming = any(message.finish_reason == FINISH_STREAMING for message in messages)
    turn_live = streaming and session.turn_is_live()
    return [message_to_dict(message, turn_live=turn_live) for message in messages], next_cursor


def checkpoint_list(*, session) -> list[dict]:
    return [
        {"tag": c.tag, "messageCount": len(c.history), "createdAt": iso_utc(c.created_at)}
        for c in Checkpoint.objects.filter(session=session).order_by("-created_at")
    ]
