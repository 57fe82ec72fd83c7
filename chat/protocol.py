"""One socket connection's protocol, whatever carries it: authentication, sessions, chat,
confirmations, cancels, tool runs and the monitoring subscription.

The /ws/ consumer and the Socket.IO server only decode what arrives into `receive(event, data)`
and encode what the protocol emits. Both subscribe the connection's channel to the same
channel-layer groups, so a turn's stream and the audit trail reach either kind of socket, on any
process.
"""

import asyncio
import logging
import time
import weakref
from contextlib import aclosing, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from accounts.channels_auth import scope_credentials
from accounts.credentials import UNKNOWN, credentials_epoch, credentials_unchanged
from accounts.models import ApiKey, Role, User
from accounts.serializers import UserSerializer
from accounts.throttling import user_rate_limit_hit
from chat.agent import events as ev
from chat.agent.events import call_id_new
from chat.agent.tools import tool_lookup
from chat.tools_run import tool_execute as tool_execute_service
from chat.turns.control import turn_cancel, turn_confirm
from chat.turns.frames import turn_frames_follow
from chat.turns.loop import turn_open
from gemini_server import metrics
from gemini_server.db import db_async
from gemini_server.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    Gone,
    NotFound,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
    api_error_from_exception,
    internal_error_report,
)
from gemini_server.groups import session_group, turn_group, user_group
from gemini_server.lifecycle import CLOSE_SERVICE_RESTART, socket_register, socket_unregister
from monitoring.subscription import MonitoringSubscription
from sessions_app.selectors import session_get, session_to_dict

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
GEMINI_EVENTS = {
    ev.CONTENT: "gemini:content",
    ev.THOUGHT: "gemini:thought",
    ev.TOOL_CALL: "gemini:tool-request",
    ev.TOOL_CONFIRMATION: "gemini:tool-confirmation",
    ev.TOOL_RESULT: "gemini:tool-result",
    ev.USAGE: "gemini:usage",
    ev.ERROR: "gemini:error",
    ev.TODOS: "gemini:todos",
    ev.DONE: "gemini:done",
}
# Streamed events re-check the socket's credentials at most this often; inbound events and
# monitoring events (every user's activity) always check.
CREDENTIALS_RECHECK_SECONDS = 1.0
# A socket's credentials are read from the database at most this often, and at once when the
# user's credentials epoch moved (any event compares it) or a change is announced to the user's
# sockets (user group).
CREDENTIALS_CACHE_SECONDS = 30.0
# Redis forgets group memberships when it restarts, without telling the readers: a socket
# renews its memberships this often (idempotent), which also outlasts channels_redis's expiry.
MEMBERSHIP_RENEW_SECONDS = 10.0
# Signed-in sockets of this process, whose memberships one task renews (_renewal_join).
_RENEWED: "weakref.WeakSet[SocketProtocol]" = weakref.WeakSet()
_renewer: asyncio.Task | None = None
# Running relays and direct tool runs, held so the event loop does not drop them midway.
_RELAYS: set[asyncio.Task] = set()
_TOOL_RUNS: set[asyncio.Task] = set()


def _renewal_join(protocol: "SocketProtocol") -> None:
    """The socket's memberships are renewed every MEMBERSHIP_RENEW_SECONDS from now on, by one
    task of the process for every socket (a task per socket would cost each idle socket memory)."""
    global _renewer
    _RENEWED.add(protocol)
    loop = asyncio.get_running_loop()
    if _renewer is None or _renewer.done() or _renewer.get_loop() is not loop:
        _renewer = loop.create_task(_renew_memberships_forever())


def _renewal_leave(protocol: "SocketProtocol") -> None:
    _RENEWED.discard(protocol)


async def _renew_memberships_forever() -> None:
    while _RENEWED:
        await asyncio.sleep(MEMBERSHIP_RENEW_SECONDS)
        for protocol in list(_RENEWED):
            try:
                await protocol.renew_memberships()
            except Exception:
                logger.warning("A socket could not renew its channel-layer memberships")


class SocketTransport(Protocol):
    """What a transport gives the protocol: a way to send an event and a way to hang up."""

    async def emit(self, event: str, data: dict) -> None: ...

    async def close(self, code: int) -> None: ...


@dataclass
class Answer:
    """The outcome of one client event: what an acknowledgement carries, or the error."""

    reply: dict | None = None
    error: ApiError | None = None


def error_payload(error: ApiError, *, event: str | None = None) -> dict:
    """An `error` event's data: the contract's error, naming the event that caused it."""
    data = {"code": error.code, "message": error.message, "details": error.details}
    if event:
        data["event"] = event
    return data


def frame_field(data: dict, name: str, kind=str, required: bool = True):
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


# The client events after `auth` and `ping`, and the methods that answer them (one table for the
# process, not a dict of bound methods on every socket).
HANDLERS = {
    "join-session": "join_session",
    "leave-session": "leave_session",
    "chat:message": "chat_message",
    "chat:cancel": "chat_cancel",
    "tool:confirm": "tool_confirm",
    "tool:execute": "tool_execute",
    "monitoring:subscribe": "monitoring_subscribe",
    "monitoring:unsubscribe": "monitoring_unsubscribe",
}


class SocketProtocol:
    """The state and handlers of one connection; handler names mirror event names."""

    def __init__(self, transport: SocketTransport, *, layer, channel: str, ip: str | None):
        self.transport = transport
        self.layer = layer
        self.channel = channel
        self.ip = ip
        self.user: User | None = None
        self.api_key: ApiKey | None = None
        self.token_expires_at: datetime | None = None
        self.session_id: str | None = None
        self.monitoring = MonitoringSubscription(layer, channel)
        self.auth_timer: asyncio.Task | None = None
        # The running turn this socket replays from its frame log (then ignores its live relay).
        self.followed_turn: str | None = None
        self.follow_task: asyncio.Task | None = None
        self.checked_at = 0.0
        # The user's credentials epoch when they were last read (accounts.credentials).
        self.checked_epoch = UNKNOWN
        self.refused = False

    async def _reply(self, event: str, data: dict) -> dict:
        """Sends this socket its answer event; the same data goes into an acknowledgement."""
        await self.transport.emit(event, data)
        return data

    # The connection's life.

    async def start(
        self,
        *,
        user: User | None,
        api_key: ApiKey | None = None,
        token_expires_at: datetime | None = None,
        auth_error: str | None = None,
    ) -> None:
        """Opens with the credentials the connection came with, or waits for an `auth` event."""
        metrics.websocket_opened()
        socket_register(self)
        if auth_error:
            await self.transport.close(CLOSE_UNAUTHENTICATED)
        elif user is not None and user.is_authenticated:
            await self.authenticated(user, api_key, token_expires_at)
        else:
            self.auth_timer = asyncio.create_task(self._auth_deadline())

    async def end(self) -> None:
        """The connection is gone: it leaves its session and stops hearing the audit trail."""
        metrics.websocket_closed()
        socket_unregister(self)
        self._turn_follow_stop()
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        _renewal_leave(self)
        await self._leave()
        await self.monitoring.unsubscribe()
        if self.user is not None:
            with suppress(Exception):
                await self.layer.group_discard(user_group(self.user.pk), self.channel)

    async def renew_memberships(self) -> None:
        """Joins again every group this connection belongs to (after Redis forgot them)."""
        if self.user is not None and not self.refused:
            await self.layer.group_add(user_group(self.user.pk), self.channel)
        if self.session_id is not None:
            await self.layer.group_add(session_group(self.session_id), self.channel)
        await self.monitoring.renew()

    async def receive(self, name: str, data) -> Answer:
        """Runs one client event; every failure comes back as the contract's error."""
        try:
            return Answer(reply=await self._dispatch(name, data))
        except ApiError as error:
            return Answer(error=error)
        except Exception as exc:
            await db_async(internal_error_report)(exc, user=self.user)
            return Answer(error=api_error_from_exception(exc))

    async def _dispatch(self, name: str, data) -> dict | None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValidationFailed(details={"data": ["Must be an object."]})
        if name == "auth":
            return await self.auth(data)
        # Any event, even a ping, finds out that the user was deactivated or the key revoked
        # (read at most every CREDENTIALS_CACHE_SECONDS, and at once after a change).
        if self.user is not None and not await self._still_allowed(
            max_age=CREDENTIALS_CACHE_SECONDS, epoch_check=True
        ):
            await self._refuse()
            return None
        if name == "ping":
            return await self._reply("pong", {})
        handler = HANDLERS.get(name)
        if handler is None:
            raise BadRequest(f"Unknown event: {name}")
        if self.user is None:
            raise Unauthenticated(
                'Authenticate first: send {"event": "auth", "data": {"token": ...}}'
            )
        # Every action spends the user's budget, as every REST request does.
        wait = await db_async(user_rate_limit_hit)(user=self.user)
        if wait is not None:
            raise RateLimited(retry_after=wait)
        return await getattr(self, handler)(data)

    async def layer_message(self, message: dict) -> None:
        """A channel-layer message for this connection (a transport without Channels' dispatch)."""
        kind = message.get("type")
        if kind == "session.agent_event":
            await self.session_agent_event(message)
        elif kind == "monitoring.events":
            await self.monitoring_events(message)
        elif kind == "credentials.changed":
            await self.credentials_changed(message)

    # Authentication.

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(settings.WS_AUTH_TIMEOUT_SECONDS)
        if self.user is None:
            await self.transport.close(CLOSE_UNAUTHENTICATED)

    async def authenticated(
        self, user: User, api_key: ApiKey | None, token_expires_at: datetime | None
    ) -> dict:
        self.user, self.api_key, self.token_expires_at = user, api_key, token_expires_at
        # Read at the first event, which reads the user's epoch with them.
        self.checked_at, self.checked_epoch = time.monotonic(), UNKNOWN
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        await self.layer.group_add(user_group(user.pk), self.channel)
        _renewal_join(self)
        return await self._reply("authenticated", {"user": UserSerializer(user).data})

    async def auth(self, data: dict) -> dict | None:
        if self.user is not None:
            raise BadRequest("Already authenticated")
        token = data.get("token")
        try:
            if not isinstance(token, str) or not token:
                raise Unauthenticated("A token is required")
            user, api_key, token_expires_at = await scope_credentials(token)
        except Unauthenticated:
            await self.transport.close(CLOSE_UNAUTHENTICATED)
            return None
        return await self.authenticated(user, api_key, token_expires_at)

    async def _still_allowed(self, *, max_age: float = 0.0, epoch_check: bool = False) -> bool:
        """Whether the user is active and the key usable; `max_age` reuses a recent answer (with
        `epoch_check`, only while the user's credentials epoch has not moved)."""
        if self.refused or self.user is None:
            return False
        if self.token_expires_at is not None and self.token_expires_at <= timezone.now():
            return False
        if (
            max_age
            and time.monotonic() - self.checked_at < max_age
            # An inbound event also finds out whether the user's epoch moved (a change to them
            # or their keys; accounts.credentials): then they are read again now.
            and (
                not epoch_check
                or await db_async(credentials_unchanged)(self.user.pk, self.checked_epoch)
            )
        ):
            return True
        epoch, allowed = await db_async(self._credentials_check)()
        if allowed:
            self.checked_at, self.checked_epoch = time.monotonic(), epoch
        return allowed

    async def credentials_changed(self, message: dict) -> None:
        """The user's account or one of their keys changed somewhere: check now, not later."""
        if self.user is not None and not await self._still_allowed():
            await self._refuse()

    def _credentials_check(self) -> tuple[object, bool]:
        """A deactivated user, a revoked key or an expired JWT loses an open socket at its next
        event. Returns the user's credentials epoch, read before them, and the answer."""
        epoch = credentials_epoch(self.user.pk)
        if self.token_expires_at is not None and self.token_expires_at <= timezone.now():
            return epoch, False
        user = User.objects.filter(pk=self.user.pk).first()
        if user is None or not user.is_active:
            return epoch, False
        self.user = user
        if self.api_key is not None:
            key = ApiKey.objects.filter(pk=self.api_key.pk).first()
            return epoch, key is not None and key.is_usable()
        return epoch, True

    async def _refuse(self) -> None:
        """Closes a socket whose credentials stopped working; it hears nothing more."""
        if self.refused:
            return
        self.refused = True
        await self.monitoring.unsubscribe()
        await self._leave()
        await self.transport.close(CLOSE_UNAUTHENTICATED)

    # Sessions.

    async def join_session(self, data: dict) -> dict:
        session_id = frame_field(data, "sessionId")
        session = await db_async(session_get)(session_id=session_id, user=self.user)
        body = await db_async(session_to_dict)(session)
        joined_now = self.session_id != str(session.id)
        if joined_now:
            await self._leave()
            self.session_id = str(session.id)
            await self.layer.group_add(session_group(session.id), self.channel)
            await db_async(_members_change)(session.id, 1)
        answer = await self._reply(
            "session:joined", {"sessionId": str(session.id), "session": body}
        )
        if joined_now:
            await self._turn_follow_start(session)
        return answer

    async def leave_session(self, data: dict) -> dict:
        session_id = self.session_id
        if session_id is None:
            raise BadRequest("No session joined")
        await self._leave()
        return await self._reply("session:left", {"sessionId": session_id})

    async def _leave(self) -> None:
        self._turn_follow_stop()
        if self.session_id is None:
            return
        session_id, self.session_id = self.session_id, None
        await self.layer.group_discard(session_group(session_id), self.channel)
        remaining = await db_async(_members_change)(session_id, -1)
        if remaining <= 0:
            # Nobody is watching any more: stop the turn; its partial answer is kept.
            await self.layer.group_send(
                turn_group(session_id), {"type": "turn.cancel", "reason": "no_listeners"}
            )

    def _joined_session_id(self) -> str:
        if self.session_id is None:
            raise BadRequest("Join a session first (join-session)")
        return self.session_id

    async def _joined_session(self, *, write: bool):
        return await db_async(session_get)(
            session_id=self._joined_session_id(), user=self.user, write=write
        )

    def _require_operator(self) -> None:
        if self.user.role == Role.VIEWER:
            raise Forbidden("Your role may not chat or run tools")

    # Chat.

    async def chat_message(self, data: dict) -> dict:
        self._require_operator()
        content = frame_field(data, "content")
        turn = await db_async(turn_open)(
            session_id=self._joined_session_id(), user=self.user, text=content, ip=self.ip
        )
        # The relay belongs to no socket: the turn goes on for the others if this one drops.
        relay = asyncio.create_task(_turn_relay(self.layer, turn))
        _RELAYS.add(relay)
        relay.add_done_callback(_RELAYS.discard)
        return {"sessionId": str(turn.session.id)}

    async def chat_cancel(self, data: dict) -> dict:
        self._require_operator()
        session = await self._joined_session(write=True)
        await db_async(turn_cancel)(session=session, actor=self.user)
        return await self._reply("chat:cancelled", {"sessionId": str(session.id)})

    async def tool_confirm(self, data: dict) -> dict:
        self._require_operator()
        call_id = frame_field(data, "callId")
        outcome = frame_field(data, "outcome")
        session = await self._joined_session(write=True)
        await db_async(turn_confirm)(
            session=session, call_id=call_id, outcome=outcome, actor=self.user
        )
        return await self._reply("tool:confirmed", {"callId": call_id, "outcome": outcome})

    async def tool_execute(self, data: dict) -> dict:
        self._require_operator()
        name = frame_field(data, "name")
        args = frame_field(data, "args", dict, required=False) or {}
        session = await self._joined_session(write=True)
        # Refusals come before the start event, so every start has a complete or an error.
        tool = tool_lookup(name)
        if tool is None:
            raise NotFound(f'Tool "{name}" not found', details={"name": name})
        if session.is_expired:
            raise Gone("This session has expired", details={"sessionId": str(session.id)})
        call_id = call_id_new(tool.name)
        reply = await self._reply(
            "tool:execution-start", {"callId": call_id, "name": tool.name, "args": args}
        )
        # A long command must not hold up this socket's other events (a cancel, the stream).
        run = asyncio.create_task(self._tool_run(session, tool.name, args, call_id))
        _TOOL_RUNS.add(run)
        run.add_done_callback(_TOOL_RUNS.discard)
        return reply

    async def _tool_run(self, session, name: str, args: dict, call_id: str) -> None:
        try:
            result = await tool_execute_service(
                session=session,
                user=self.user,
                name=name,
                args=args,
                ip=self.ip,
                call_id=call_id,
            )
        except Exception as exc:
            error = exc if isinstance(exc, ApiError) else api_error_from_exception(exc)
            if not isinstance(exc, ApiError):
                await db_async(internal_error_report)(exc, user=self.user)
            with suppress(Exception):
                await self.transport.emit(
                    "tool:execution-error",
                    {"callId": call_id, "name": name, "error": error.message, "code": error.code},
                )
            return
        # The socket may have gone meanwhile; the run is recorded either way.
        with suppress(Exception):
            await self._tool_outcome(call_id, result)

    async def _tool_outcome(self, call_id: str, result: dict) -> None:
        if result["status"] == "success":
            await self.transport.emit(
                "tool:execution-complete",
                {
                    "callId": call_id,
                    "name": result["name"],
                    "result": result["result"],
                    "durationMs": result["durationMs"],
                },
            )
        else:
            await self.transport.emit(
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
        if message.get("turnId") is not None and message["turnId"] == self.followed_turn:
            return  # this socket replays that turn from its frame log instead
        event = message["event"]
        data = {**event["data"], "sessionId": message["sessionId"]}
        await self.transport.emit(GEMINI_EVENTS[event["type"]], data)

    # Restarts and reattaching: a socket that joins while a turn runs gets it from its start.

    async def restart_close(self) -> None:
        """The end of a drain (gemini_server.lifecycle): close with 1012, service restart."""
        self._turn_follow_stop()
        await self.transport.close(CLOSE_SERVICE_RESTART)

    async def _turn_follow_start(self, session) -> None:
        """Replays the session's running turn from its frame log, then follows it to `done`."""
        if not await db_async(session.turn_is_live)():
            return
        self.followed_turn = str(session.turn_id)
        self.follow_task = asyncio.create_task(
            self._turn_follow(str(session.id), self.followed_turn)
        )

    def _turn_follow_stop(self) -> None:
        if self.follow_task is not None:
            self.follow_task.cancel()
            self.follow_task = None
        self.followed_turn = None

    async def _turn_follow(self, session_id: str, turn_id: str) -> None:
        frames = turn_frames_follow(session_id=session_id, turn_id=turn_id, after=0)
        try:
            async with aclosing(frames):
                async for item in frames:
                    if item is None:
                        continue
                    if not await self._still_allowed(max_age=CREDENTIALS_RECHECK_SECONDS):
                        await self._refuse()
                        return
                    payload = item[1]
                    data = {**payload["data"], "sessionId": session_id}
                    await self.transport.emit(GEMINI_EVENTS[payload["type"]], data)
        except Exception:
            logger.exception("Following the turn of session %s failed", session_id)

    # Monitoring.

    async def monitoring_subscribe(self, data: dict) -> dict:
        if self.user.role != Role.ADMIN:
            raise Forbidden("Admins only")
        types = frame_field(data, "types", list, required=False)
        subscribed = await self.monitoring.subscribe(types)
        return await self._reply("monitoring:subscribed", {"types": subscribed})

    async def monitoring_unsubscribe(self, data: dict) -> dict:
        await self.monitoring.unsubscribe()
        return await self._reply("monitoring:unsubscribed", {})

    async def monitoring_events(self, message: dict) -> None:
        if not self.monitoring.active:
            return
        if not await self._still_allowed(max_age=CREDENTIALS_CACHE_SECONDS):
            await self._refuse()
            return
        if self.user.role != Role.ADMIN:
            # Demoted while subscribed: the audit trail is for admins only.
            await self.monitoring.unsubscribe()
            await self.transport.emit(
                "error", error_payload(Forbidden("Admins only"), event="monitoring:event")
            )
            return
        for event in self.monitoring.wanted(message):
            await self.transport.emit("monitoring:event", event)


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
                        "turnId": str(turn.turn_id),
                    },
                )
    except Exception:
        logger.exception("Relaying turn events failed for session %s", session_id)
        turn.cancel()
