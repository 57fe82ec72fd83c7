"""Turn control: begin a turn, and confirm or cancel it from any process."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from accounts.models import Role
from chat.models import Message, MessageRole, TurnDecision
from chat.turns.slot import turn_claim, turn_claim_own, turn_release_dead
from gemini_server.errors import (
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    ServerRestarting,
    ValidationFailed,
)
from gemini_server.groups import turn_group
from gemini_server.lifecycle import draining
from sessions_app.models import Session
from sessions_app.selectors import session_get

logger = logging.getLogger(__name__)

MESSAGE_MAX_CHARS = 200_000
CONFIRM_OUTCOMES = ("proceed_once", "proceed_always", "cancel")


def message_validate(text) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValidationFailed(details={"message": ["A non-empty message is required."]})
    if len(text) > MESSAGE_MAX_CHARS:
        raise ValidationFailed(
            details={"message": [f"Messages are limited to {MESSAGE_MAX_CHARS} characters."]}
        )
    return text


def turn_begin(*, session_id, user, text: str) -> tuple:
    """Checks the message and claims the session's turn: (session, turn id, message).

    Raises NotFound for a session that is not the user's, Forbidden for a viewer, Gone for an
    expired session, Conflict while another turn runs, and ServerRestarting (503, retryable)
    while this process drains for a restart, in that order. The common case, a valid message to
    the user's own free session, is one UPDATE that claims it and reads it back. The user's
    message is stored by the turn while its model call is already under way, and the claim is
    released by the turn whatever happens, so the session is never left locked.
    """
    if user.role != Role.VIEWER and not draining() and _valid(text):
        claimed = turn_claim_own(session_id=session_id, user=user)
        if claimed is not None:
            session, turn_id = claimed
            return session, turn_id, text
    session = session_get(session_id=session_id, user=user, write=True)
    if user.role == Role.VIEWER:
        raise Forbidden("Your role may not chat")
    text = message_validate(text)
    if draining():
        raise ServerRestarting()
    if session.is_expired:
        raise Gone("This session has expired", details={"sessionId": str(session.id)})
    return session, turn_claim(session=session), text


def _valid(text) -> bool:
    try:
        message_validate(text)
    except ValidationFailed:
        return False
    return True


def tool_always_allow(*, session: Session, tool_name: str) -> None:
    """`proceed_always`: this tool stops asking for the rest of the session."""
    with transaction.atomic():
        locked = Session.objects.select_for_update().filter(pk=session.id).first()
        if locked is not None and tool_name not in locked.always_allowed_tools:
            locked.always_allowed_tools = [*locked.always_allowed_tools, tool_name]
            locked.save(update_fields=["always_allowed_tools"])


def pending_call(*, session: Session, call_id: str) -> dict | None:
    """The function call `call_id` of the session's latest model answer, if it has no response yet."""
    last_model = (
        Message.objects.filter(session_id=session.id, role=MessageRole.MODEL)
        .order_by("-seq")
        .first()
    )
    if last_model is None:
        return None
    call = next(
        (
            part["functionCall"]
            for part in last_model.parts
            if part.get("functionCall", {}).get("id") == call_id
        ),
        None,
    )
    if call is None:
        return None
    responses = Message.objects.filter(
        session_id=session.id, role=MessageRole.TOOL, seq__gt=last_model.seq
    ).values_list("parts", flat=True)
    answered = {
        part["functionResponse"].get("id")
        for parts in responses
        for part in parts
        if "functionResponse" in part
    }
    return None if call_id in answered else call


def _decision_send(*, session: Session, kind: str, actor, call_id: str = "", outcome: str = ""):
    """Stores the decision, then announces it; the turn reads the row if the message is lost."""
    decision = TurnDecision.objects.create(
        turn_id=session.turn_id,
        session_id=session.id,
        kind=kind,
        call_id=call_id,
        outcome=outcome,
        user_id=actor.pk,
        user_email=actor.email,
    )
    try:
        async_to_sync(get_channel_layer().group_send)(turn_group(session.id), decision.as_message())
    except Exception:
        logger.warning(
            "The channel layer did not take a %s for session %s; the turn will read it from "
            "the database",
            kind,
            session.id,
            exc_info=True,
        )


def turn_confirm(*, session: Session, call_id: str, outcome: str, actor) -> None:
    """Delivers a confirmation to the session's waiting turn, on whichever process runs it."""
    if outcome not in CONFIRM_OUTCOMES:
        raise ValidationFailed(
            details={"outcome": [f"Must be one of {', '.join(CONFIRM_OUTCOMES)}."]}
        )
    if not session.turn_is_live():
        raise Conflict("No turn is running in this session")
    if pending_call(session=session, call_id=call_id) is None:
        raise NotFound("No tool call with that id is waiting", details={"callId": call_id})
    _decision_send(
        session=session,
        kind=TurnDecision.Kind.CONFIRM,
        actor=actor,
        call_id=call_id,
        outcome=outcome,
    )


def turn_cancel(*, session: Session, actor) -> None:
    """Stops the session's running turn, on whichever process runs it.

    A claim left by a process that died (no heartbeat) is released here, freeing the session.
    """
    if session.turn_id is None:
        raise Conflict("No turn is running in this session")
    if not session.turn_is_live():
        turn_release_dead(session=session)
        return
    _decision_send(session=session, kind=TurnDecision.Kind.CANCEL, actor=actor)
