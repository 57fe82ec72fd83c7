"""The one way to run a tool for a user directly (REST `POST /tools/execute`, `tool:execute`)."""

from chat.agent.tools import ToolContext, tool_lookup, tool_prepare
from gemini_server import metrics
from gemini_server.errors import Gone, NotFound
from gemini_server.request_id import request_id_current
from monitoring.models import AuditAction
from monitoring.services import aevent_record
from sessions_app.models import Session
from sessions_app.workspace import session_workspace

TOOL_EXCERPT_CHARS = 1000


async def tool_execute(
    *, session: Session, user, name: str, args: dict, ip=None, call_id: str | None = None
) -> dict:
    """A tool run by a user directly (REST or `tool:execute`): their request is the approval."""
    if session.is_expired:
        raise Gone("This session has expired", details={"sessionId": str(session.id)})
    context = ToolContext(
        workspace=session_workspace(session),
        session_id=str(session.id),
        model=session.model_name,
    )
    call = await tool_prepare(name, args, context, call_id or "")
    if call.tool is None:
        raise NotFound(f'Tool "{name}" not found', details={"name": name})
    call_id = call.call_id
    await tool_call_begin(
        session=session, user=user, call_id=call_id, name=call.name, args=args, source="user", ip=ip
    )
    outcome = await call.run()
    await tool_call_record(
        session=session,
        user=user,
        call_id=call_id,
        name=call.name,
        args=args,
        status=outcome.status,
        duration_ms=outcome.duration_ms,
        text=outcome.text,
        confirmation={"outcome": "direct", "userId": str(user.pk)},
        source="user",
        ip=ip,
    )
    return {
        "callId": call_id,
        "name": call.name,
        "status": outcome.status,
        "result": outcome.text,
        "durationMs": outcome.duration_ms,
    }


async def tool_call_begin(
    *, session: Session, user, call_id: str, name: str, args: dict, source: str, ip=None
) -> None:
    """The record that a tool call is about to run; it raises if it cannot be written.

    Nothing runs unaudited: a caller that gets an exception here must not run the tool.
    """
    await aevent_record(
        type="tool",
        action=AuditAction.TOOL_CALL_START,
        user=user,
        session_id=session.id,
        data={
            "callId": call_id,
            "name": name,
            "args": args,
            "source": source,
            "requestId": request_id_current(),
        },
        ip=ip,
        required=True,
    )


async def tool_call_record(
    *,
    session: Session,
    user,
    call_id: str,
    name: str,
    args: dict,
    status: str,
    duration_ms: int,
    text: str,
    confirmation: dict,
    source: str,
    ip=None,
) -> None:
    """The audit record of one tool call, whether the model or a user asked for it."""
    metrics.tool_call_observed(
        # Only known tools get a label of their own: the model may call any name it makes up.
        tool=name if tool_lookup(name) is not None else "unknown",
        status=status,
        source=source,
        duration_ms=duration_ms,
    )
    await aevent_record(
        type="tool",
        action=AuditAction.TOOL_CALL,
        user=user,
        session_id=session.id,
        data={
            "callId": call_id,
            "name": name,
            "args": args,
            "status": status,
            "durationMs": duration_ms,
            "resultExcerpt": text[:TOOL_EXCERPT_CHARS],
            "confirmation": confirmation,
            "source": source,
            "requestId": request_id_current(),
        },
        ip=ip,
    )
