"""The typed events one turn produces; SSE and WebSocket are two encoders of this one stream."""

import secrets
import time
from dataclasses import dataclass, field

CONTENT = "content"
THOUGHT = "thought"
TOOL_CALL = "tool_call"
TOOL_CONFIRMATION = "tool_confirmation"
TOOL_RESULT = "tool_result"
TODOS = "todos"
USAGE = "usage"
ERROR = "error"
DONE = "done"


@dataclass(frozen=True)
class AgentEvent:
    type: str
    data: dict = field(default_factory=dict)
    # The frame's number in its turn (from 1): the SSE `id:`, the same for every client.
    id: int = 0

    def as_dict(self) -> dict:
        return {"type": self.type, "data": self.data}


def call_id_new(name: str) -> str:
    """An id for a tool call the model sent without one (gemini-cli's `name-millis-random`)."""
    return f"{name}-{int(time.time() * 1000)}-{secrets.token_hex(4)}"
