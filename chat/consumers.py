"""The WebSocket transport: JSON frames `{"event", "data"}` in and out, dispatched by event name.

The consumer only parses, authorizes and calls the same services as REST; the agent's events
reach every socket joined to a session through its channel-layer group, on any process.
"""

import asyncio
import json
import logging
import time
from contextlib import suppress
from datetime import datetime

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from accounts.channels_auth import scope_credentials
from accounts.models import ApiKey, Role, User
from accounts.serializers import UserSerializer
from accounts.throttling import user_rate_limit_hit
from chat.agent import events as ev
from chat.agent.events import call_id_new
from chat.agent.tools import tool_lookup
from chat.tools_run import tool_execute as tool_execute_service
from chat.turns.control import turn_cancel, turn_confirm
from chat.turns.loop import turn_open
from gemini_server.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    Gone,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
    api_error_from_exception,
    internal_error_report,
)
from gemini_server.groups import MONITORING, session_group, turn_group
from gemini_server.parsers import json_loads_limited
from monitoring.models import EventType
from monitoring.stream import event_matches
from sessions_app.selectors import session_get, session_to_dict

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
GEMINI_EVENTS = {
    ev.CONTENT: "gemini:content",
    ev.THOUGHT: "gemini:thought",
    ev.TOOL_CALL: "gemini:tool-request",
    ev.TOOL_CONFIRMATION: "gemini:tool-confirmation",
    ev.TOOL_RESULT: "gemini:tool-result",
    ev.TODOS: "gemini:todos",
    ev.USAGE: "gemini:usage",
    ev.ERROR: "gemini:error",
    ev.DONE: "gemini:done",
}
# Streamed frames re-check the socket's credentials at most this often; inbound frames and
# monitoring events (every user's activity) always check.
CREDENTIALS_RECHECK_SECONDS = 1.0
# Running relays and direct tool runs, held so the event loop does not drop them midway.
_RELAYS: set[asyncio.Task] = set()
_TOOL_RUNS: set[asyncio.Task] = set()


def _members_key(session_id) -> str:
    return f"ws-members:{session_id}"


def _members_change(session_id, delta: int) -> int:
    """Sockets joined to a session, across processes (the shared cache); the last to leave cancels."""
    key = _members_key(session_id)
    cache.add(key, 0, timeout=None)
    try:
        return cache.incr(key, delta)
    except ValueError:
        cache.set(key, max(0, delta), timeout=None)
        return max(0, delta)


def _field(data: dict, name: str, kind=str, required: bool = True):
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationFailed(details={name: ["This field is required."]})
        return None
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        expected = {str: "a non-empty string", dict: "an object", list: "a list"}.get(
            kind, kind.__name__
        )
        raise ValidationFailed(details={name: [f"Must be {expected}."]})
    return value


class GeminiConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.user = None
        self.api_key = None
        self.session_id = None
        self.monitoring_types = None
        self.auth_timer = None
        self.token_expires_at = None
        self.checked_at = 0.0
        self.refused = False
        await self.accept()
        if self.scope.get("auth_error"):
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            await self._authenticated(
                user, self.scope.get("api_key"), self.scope.get("token_expires_at")
            )
        else:
            self.auth_timer = asyncio.create_task(self._auth_deadline())

    async def disconnect(self, code):
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        await self._leave()
        if self.monitoring_types is not None:
            await self.channel_layer.group_discard(MONITORING, self.channel_name)

    # Frames.

    async def send_event(self, event: str, data: dict | None = None) -> None:
        await self.send(text_data=json.dumps({"event": event, "data": data or {}}, default=str))

    async def send_error(self, error: ApiError, *, event: str | None = None) -> None:
        data = {"code": error.code, "message": error.message, "details": error.details}
        if event:
            data["event"] = event
        await self.send_event("error", data)

    async def receive(self, text_data=None, bytes_data=None):
        name = None
        try:
            if bytes_data is not None:
                raise BadRequest("Frames must be JSON text")
            if len(text_data.encode()) > settings.WS_MAX_FRAME_BYTES:
                raise PayloadTooLarge(
                    f"Frames over {settings.WS_MAX_FRAME_BYTES} bytes are refused"
                )
            frame = json_loads_limited(text_data)
            if not isinstance(frame, dict):
                raise ValidationFailed(
                    "A frame is an object",
                    details={"body": ['Expected {"event": ..., "data": {...}}.']},
                )
            name = _field(frame, "event")
            data = frame.get("data") if frame.get("data") is not None else {}
            if not isinstance(data, dict):
                raise ValidationFailed(details={"data": ["Must be an object."]})
            await self._dispatch(name, data)
        except ApiError as error:
            await self.send_error(error, event=name)
        except Exception as exc:
            internal_error_report(exc)
            await self.send_error(api_error_from_exception(exc), event=name)

    async def _dispatch(self, name: str, data: dict) -> None:
        if name == "auth":
            await self.event_auth(data)
            return
        # Any frame, even a ping, finds out that the user was deactivated or the key revoked.
        if self.user is not None and not await self._still_allowed():
            await self._refuse()
            return
        if name == "ping":
            await self.send_event("pong", {})
            return
        handler = {
            "join-session": self.event_join_session,
            "leave-session": self.event_leave_session,
            "chat:message": self.event_chat_message,
            "chat:cancel": self.event_chat_cancel,
            "tool:confirm": self.event_tool_confirm,
            "tool:execute": self.event_tool_execute,
            "monitoring:subscribe": self.event_monitoring_subscribe,
            "monitoring:unsubscribe": self.event_monitoring_unsubscribe,
        }.get(name)
        if handler is None:
            raise BadRequest(f"Unknown event: {name}")
        if self.user is None:
            raise Unauthenticated(
                'Authenticate first: send {"event": "auth", "data": {"token": ...}}'
            )
        # Every action spends the user's budget, as every REST request does.
        wait = await database_sync_to_async(user_rate_limit_hit)(user=self.user)
        if wait is not None:
            raise RateLimited(retry_after=wait)
        await handler(data)

    # Authentication.

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(settings.WS_AUTH_TIMEOUT_SECONDS)
        if self.user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def _authenticated(
        self, user: User, api_key: ApiKey | None, token_expires_at: datetime | None
    ) -> None:
        self.user, self.api_key, self.token_expires_at = user, api_key, token_expires_at
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        await self.send_event("authenticated", {"user": UserSerializer(user).data})

    async def event_auth(self, data: dict) -> None:
        if self.user is not None:
            raise BadRequest("Already authenticated")
        token = data.get("token")
        try:
            if not isinstance(token, str) or not token:
                raise Unauthenticated("A token is required")
            user, api_key, token_expires_at = await scope_credentials(token)
        except Unauthenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self._authenticated(user, api_key, token_expires_at)

    async def _still_allowed(self, *, max_age: float = 0.0) -> bool:
        """Whether the user is active and the key usable; `max_age` reuses a recent answer."""
        if self.refused or self.user is None:
            return False
        if max_age and time.monotonic() - self.checked_at < max_age:
            return True
        allowed = await database_sync_to_async(self._credentials_check)()
        if allowed:
            self.checked_at = time.monotonic()
        return allowed

    def _credentials_check(self) -> bool:
        """A deactivated user, a revoked key or an expired JWT loses an open socket at its next frame."""
        if self.token_expires_at is not None and self.token_expires_at <= timezone.now():
            return False
        user = User.objects.filter(pk=self.user.pk).first()
        if user is None or not user.is_active:
            return False
        self.user = user
        if self.api_key is not None:
            key = ApiKey.objects.filter(pk=self.api_key.pk).first()
            return key is not None and key.is_usable()
        return True

    async def _refuse(self) -> None:
        """Closes a socket whose credentials stopped working; it hears nothing more."""
        if self.refused:
            return
        self.refused = True
        if self.monitoring_types is not None:
            self.monitoring_types = None
            await self.channel_layer.group_discard(MONITORING, self.channel_name)
        await self._leave()
        await self.close(code=CLOSE_UNAUTHENTICATED)

    # Sessions.

    async def event_join_session(self, data: dict) -> None:
        session_id = _field(data, "sessionId")
        session = await database_sync_to_async(session_get)(session_id=session_id, user=self.user)
        body = await database_sync_to_async(session_to_dict)(session)
        if self.session_id != str(session.id):
            await self._leave()
            self.session_id = str(session.id)
            await self.channel_layer.group_add(session_group(session.id), self.channel_name)
            await database_sync_to_async(_members_change)(session.id, 1)
        await self.send_event("session:joined", {"sessionId": str(session.id), "session": body})

    async def event_leave_session(self, data: dict) -> None:
        session_id = self.session_id
        if session_id is None:
            raise BadRequest("No session joined")
        await self._leave()
        await self.send_event("session:left", {"sessionId": session_id})

    async def _leave(self) -> None:
        if self.session_id is None:
            return
        session_id, self.session_id = self.session_id, None
        await self.channel_layer.group_discard(session_group(session_id), self.channel_name)
        remaining = await database_sync_to_async(_members_change)(session_id, -1)
        if remaining <= 0:
            # Nobody is watching any more: stop the turn; its partial answer is kept.
            await self.channel_layer.group_send(
                turn_group(session_id), {"type": "turn.cancel", "reason": "no_listeners"}
            )

    async def _joined_session(self, *, write: bool):
        if self.session_id is None:
            raise BadRequest("Join a session first (join-session)")
        return await database_sync_to_async(session_get)(
            session_id=self.session_id, user=self.user, write=write
        )

    def _require_operator(self) -> None:
        if self.user.role == Role.VIEWER:
            raise Forbidden("Your role may not chat or run tools")

    # Chat.

    async def event_chat_message(self, data: dict) -> None:
        self._require_operator()
        content = _field(data, "content")
        session = await self._joined_session(write=True)
        turn = await database_sync_to_async(turn_open)(
            session=session, user=self.user, text=content, ip=self._ip()
        )
        # The relay belongs to no socket: the turn goes on for the others if this one drops.
        relay = asyncio.create_task(_turn_relay(self.channel_layer, turn))
        _RELAYS.add(relay)
        relay.add_done_callback(_RELAYS.discard)

    async def event_chat_cancel(self, data: dict) -> None:
        self._require_operator()
        session = await self._joined_session(write=True)
        await database_sync_to_async(turn_cancel)(session=session, actor=self.user)
        await self.send_event("chat:cancelled", {"sessionId": str(session.id)})

    async def event_tool_confirm(self, data: dict) -> None:
        self._require_operator()
        call_id = _field(data, "callId")
        outcome = _field(data, "outcome")
        session = await self._joined_session(write=True)
        await database_sync_to_async(turn_confirm)(
            session=session, call_id=call_id, outcome=outcome, actor=self.user
        )
        await self.send_event("tool:confirmed", {"callId": call_id, "outcome": outcome})

    async def event_tool_execute(self, data: dict) -> None:
        self._require_operator()
        name = _field(data, "name")
        args = _field(data, "args", dict, required=False) or {}
        session = await self._joined_session(write=True)
        # Refusals come before the start event, so every start has a complete or an error.
        tool = tool_lookup(name)
        if tool is None:
            raise NotFound(f'Tool "{name}" not found', details={"name": name})
        if session.is_expired:
            raise Gone("This session has expired", details={"sessionId": str(session.id)})
        call_id = call_id_new(tool.name)
        await self.send_event(
            "tool:execution-start", {"callId": call_id, "name": tool.name, "args": args}
        )
        # A long command must not hold up this socket's other frames (a cancel, the stream).
        run = asyncio.create_task(self._tool_run(session, tool.name, args, call_id))
        _TOOL_RUNS.add(run)
        run.add_done_callback(_TOOL_RUNS.discard)

    async def _tool_run(self, session, name: str, args: dict, call_id: str) -> None:
        try:
            result = await tool_execute_service(
                session=session,
                user=self.user,
                name=name,
                args=args,
                ip=self._ip(),
                call_id=call_id,
            )
        except Exception as exc:
            error = exc if isinstance(exc, ApiError) else api_error_from_exception(exc)
            if not isinstance(exc, ApiError):
                internal_error_report(exc)
            with suppress(Exception):
                await self.send_event(
                    "tool:execution-error",
                    {"callId": call_id, "name": name, "error": error.message, "code": error.code},
                )
            return
        # The socket may have gone meanwhile; the run is recorded either way.
        with suppress(Exception):
            await self._tool_outcome(call_id, result)

    async def _tool_outcome(self, call_id: str, result: dict) -> None:
        if result["status"] == "success":
            await self.send_event(
                "tool:execution-complete",
                {
                    "callId": call_id,
                    "name": result["name"],
                    "result": result["result"],
                    "durationMs": result["durationMs"],
                },
            )
        else:
            await self.send_event(
                "tool:execution-error",
                {
                    "callId": call_id,
                    "name": result["name"],
                    "error": result["result"],
                    "durationMs": result["durationMs"],
                },
            )

    async def session_agent_event(self, message: dict) -> None:
        """A turn's event, relayed to every socket of the session."""
        if not await self._still_allowed(max_age=CREDENTIALS_RECHECK_SECONDS):
            await self._refuse()
            return
        event = message["event"]
        data = {**event["data"], "sessionId": message["sessionId"]}
        await self.send_event(GEMINI_EVENTS[event["type"]], data)

    # Monitoring.

    async def event_monitoring_subscribe(self, data: dict) -> None:
        if self.user.role != Role.ADMIN:
            raise Forbidden("Admins only")
        types = _field(data, "types", list, required=False)
        if types is not None:
            unknown = sorted({str(t) for t in types} - set(EventType.values))
            if unknown:
                raise ValidationFailed(
                    details={"types": [f"Unknown event type(s): {', '.join(unknown)}."]}
                )
        self.monitoring_types = list(types) if types else []
        await self.channel_layer.group_add(MONITORING, self.channel_name)
        await self.send_event("monitoring:subscribed", {"types": self.monitoring_types})

    async def event_monitoring_unsubscribe(self, data: dict) -> None:
        if self.monitoring_types is not None:
            await self.channel_layer.group_discard(MONITORING, self.channel_name)
        self.monitoring_types = None
        await self.send_event("monitoring:unsubscribed", {})

    async def monitoring_event(self, message: dict) -> None:
        if self.monitoring_types is None:
            return
        if not await self._still_allowed():
            await self._refuse()
            return
        if self.user.role != Role.ADMIN:
            # Demoted while subscribed: the audit trail is for admins only.
            self.monitoring_types = None
            await self.channel_layer.group_discard(MONITORING, self.channel_name)
            await self.send_error(Forbidden("Admins only"), event="monitoring:event")
            return
        event = message["event"]
        if event_matches(event, types=self.monitoring_types, user_id=None):
            await self.send_event("monitoring:event", event)

    def _ip(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None


async def _turn_relay(layer, turn) -> None:
    """Publishes a turn's events to its session group until `done`."""
    group = session_group(turn.session.id)
    session_id = str(turn.session.id)
    try:
        async for event in turn.events():
            with suppress(Exception):
                await layer.group_send(
                    group,
                    {
                        "type": "session.agent_event",
                        "event": event.as_dict(),
                        "sessionId": session_id,
                    },
                )
    except Exception:
        logger.exception("Relaying turn events failed for session %s", session_id)
        turn.cancel()
