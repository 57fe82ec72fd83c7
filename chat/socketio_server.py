"""The Socket.IO transport at /socket.io/ for the seed's clients: Socket.IO v5 over Engine.IO v4,
long-polling and WebSocket, its events carried over chat.protocol as /ws/ carries JSON frames.

Each socket gets its own channel on the channel layer, as a Channels consumer does: the protocol
subscribes it to its session's group and the monitoring group, and a reader task hands what
arrives there to the socket, whichever process sent it. A socket's events and its layer messages
go through one queue and are handled one at a time, in order: the seed emits join-session and
chat:message without waiting for an answer.
"""

import asyncio
import json
import logging
from contextlib import suppress
from functools import partial
from urllib.parse import parse_qs, urlsplit

import socketio
from channels.layers import get_channel_layer
from corsheaders.conf import conf as cors
from django.conf import settings
from engineio import packet as engineio_packet
from engineio.payload import Payload
from socketio.exceptions import ConnectionRefusedError as SocketIORefused

from accounts.channels_auth import scope_credentials
from chat.protocol import CLOSE_UNAUTHENTICATED, Answer, SocketProtocol, error_payload
from gemini_server.db import db_async
from gemini_server.errors import (
    ApiError,
    BadRequest,
    PayloadTooLarge,
    ServerRestarting,
    Unauthenticated,
    ValidationFailed,
    api_error_from_exception,
    internal_error_report,
)
from gemini_server.layer import STOP as RECEIVER_STOP
from gemini_server.layer import receive_resilient, receiver_stop
from gemini_server.lifecycle import CLOSE_SERVICE_RESTART, draining

logger = logging.getLogger(__name__)

SOCKETIO_PATH = "socket.io"
# daphne's own WebSocket cap (scripts/run-daphne). Engine.IO drops a connection whose packet is
# larger; a packet between WS_MAX_FRAME_BYTES and this gets `payload_too_large`, as on /ws/.
PACKET_CAP_BYTES = 4 * 1024 * 1024
# Engine.IO drops a whole long-polling POST of more packets than this (16 by default, against
# floods); a client's events buffered while its previous POST was out can be more. Each packet
# still spends the user's rate limit, and a POST is capped at PACKET_CAP_BYTES.
Payload.max_decode_packets = 256
_STOP = object()
# Each socket's worker and reader, held so the event loop does not drop them midway.
_SOCKET_TASKS: set[asyncio.Task] = set()


def _task(coroutine) -> asyncio.Task:
    task = asyncio.create_task(coroutine)
    _SOCKET_TASKS.add(task)
    task.add_done_callback(_SOCKET_TASKS.discard)
    return task


def _jsonable(data: dict) -> dict:
    """What /ws/ would send: the same JSON, with anything else (a UUID, a time) as its string."""
    return json.loads(json.dumps(data, default=str))


def _no_binary(value):
    raise BadRequest("Events carry JSON; binary data is refused")


def _event_data(name: str, args: list):
    """The one object an event carries (an acknowledgement callback is not counted)."""
    size = len(json.dumps([name, *args], default=_no_binary).encode())
    if size > settings.WS_MAX_FRAME_BYTES:
        raise PayloadTooLarge(f"Events over {settings.WS_MAX_FRAME_BYTES} bytes are refused")
    if len(args) > 1:
        raise ValidationFailed(details={"data": ["Send one object."]})
    return args[0] if args else None


def _ack(answer: Answer) -> dict | None:
    if answer.error is not None:
        error = answer.error
        return {"error": {"code": error.code, "message": error.message, "details": error.details}}
    if answer.reply is None:
        return None
    return {"ok": True, **answer.reply}


class SocketIOConnection:
    """One Socket.IO socket: the protocol's transport, its channel and its ordered queue."""

    def __init__(self, server: socketio.AsyncServer, sid: str, *, layer, channel: str, ip):
        self.server = server
        self.sid = sid
        self.layer = layer
        self.channel = channel
        self.protocol = SocketProtocol(self, layer=layer, channel=channel, ip=ip)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.reader: asyncio.Task | None = None

    # The protocol's transport.

    async def emit(self, event: str, data: dict) -> None:
        await self.server.emit(event, _jsonable(data), to=self.sid)

    async def close(self, code: int) -> None:
        # Socket.IO has no close codes: the reason goes first, as an `error` event.
        if code == CLOSE_UNAUTHENTICATED:
            error = Unauthenticated("Your credentials are no longer valid")
            await self.emit("error", error_payload(error))
        elif code == CLOSE_SERVICE_RESTART:
            await self.emit("error", error_payload(ServerRestarting()))
        await self.server.disconnect(self.sid)

    # The socket's life.

    def start(self, **credentials) -> None:
        self.queue.put_nowait(("start", credentials, None))
        _task(self._work())
        self.reader = _task(self._read_layer())

    def stop(self) -> None:
        self.queue.put_nowait(_STOP)

    def malformed(self) -> None:
        """A packet that decoded to no event: answered in its place among the socket's events."""
        self.queue.put_nowait(("malformed", None, None))

    async def event(self, name, args: list) -> dict | None:
        """Queues a client event behind the ones before it; returns its acknowledgement."""
        answered = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(("event", (name, args), answered))
        return await answered

    async def _work(self) -> None:
        try:
            while (item := await self.queue.get()) is not _STOP:
                kind, payload, answered = item
                try:
                    result = await self._handle(kind, payload)
                except Exception as exc:
                    await db_async(internal_error_report)(exc, user=self.protocol.user)
                    result = None
                if answered is not None and not answered.done():
                    answered.set_result(result)
        finally:
            await self._end()

    async def _handle(self, kind: str, payload) -> dict | None:
        if kind == "event":
            return await self._event(*payload)
        if kind == "layer":
            await self.protocol.layer_message(payload)
        elif kind == "malformed":
            await self.emit("error", error_payload(BadRequest("Malformed Socket.IO packet")))
        elif kind == "start":
            await self.protocol.start(**payload)
        return None

    async def _event(self, name, args: list) -> dict | None:
        if not isinstance(name, str) or not name:
            answer = Answer(error=ValidationFailed(details={"event": ["Must be an event name."]}))
            name = None
        else:
            try:
                data = _event_data(name, args)
            except ApiError as error:
                answer = Answer(error=error)
            else:
                answer = await self.protocol.receive(name, data)
        if answer.error is not None:
            await self.emit("error", error_payload(answer.error, event=name))
        return _ack(answer)

    async def _end(self) -> None:
        with suppress(Exception):
            await self.protocol.end()
        if self.reader is not None:
            await receiver_stop(self.layer, self.channel, self.reader)
        # Events that came after the disconnect: nobody is left to acknowledge.
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item is not _STOP and item[2] is not None and not item[2].done():
                item[2].set_result(None)

    async def _read_layer(self) -> None:
        """Moves the channel's messages (a turn's stream, the audit trail) into the queue."""
        while True:
            # Across a Redis restart it reads on, once the memberships Redis forgot are renewed.
            message = await receive_resilient(
                partial(self.layer.receive, self.channel),
                recover=self.protocol.renew_memberships,
            )
            if message.get("type") == RECEIVER_STOP:
                return
            self.queue.put_nowait(("layer", message, None))


def _token(auth, environ: dict) -> str | None:
    """`io(url, {auth: {token}})`, or `?token=` on the URL."""
    if isinstance(auth, dict) and isinstance(auth.get("token"), str) and auth["token"]:
        return auth["token"]
    return parse_qs(environ.get("QUERY_STRING", "")).get("token", [None])[0]


class GeminiNamespace(socketio.AsyncNamespace):
    """The default namespace: every event but connect and disconnect goes to its socket's queue."""

    def __init__(self):
        super().__init__("/")
        self.connections: dict[str, SocketIOConnection] = {}

    async def trigger_event(self, event, *args):
        if event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        sid, *payload = args
        connection = self.connections.get(sid)
        if connection is None:
            return None
        return await connection.event(event, payload)

    async def on_connect(self, sid: str, environ: dict, auth=None) -> None:
        if draining():
            # A draining server takes no new sockets; the client reconnects (elsewhere).
            error = ServerRestarting()
            raise SocketIORefused(error.message, error_payload(error))
        try:
            token = _token(auth, environ)
            if not token:
                raise Unauthenticated("A token is required: io(url, {auth: {token}}) or ?token=")
            user, api_key, token_expires_at = await scope_credentials(token)
        except Unauthenticated as error:
            # The client's connect_error: `message`, and the contract's error as `data`.
            raise SocketIORefused(error.message, error_payload(error)) from error
        except Exception as exc:
            await db_async(internal_error_report)(exc)
            error = api_error_from_exception(exc)
            raise SocketIORefused(error.message, error_payload(error)) from exc
        layer = get_channel_layer()
        client = environ.get("asgi.scope", {}).get("client")
        connection = SocketIOConnection(
            self.server,
            sid,
            layer=layer,
            channel=await layer.new_channel(),
            ip=client[0] if client else None,
        )
        self.connections[sid] = connection
        connection.start(user=user, api_key=api_key, token_expires_at=token_expires_at)

    async def on_disconnect(self, sid: str, reason=None) -> None:
        connection = self.connections.pop(sid, None)
        if connection is not None:
            connection.stop()


class GeminiSocketIOServer(socketio.AsyncServer):
    """python-socketio's server, with two answers it leaves out: to a malformed packet (an `error`
    event, where it only logs), and to the long-poll request a closing client still has out."""

    async def _handle_eio_message(self, eio_sid, data):
        try:
            await super()._handle_eio_message(eio_sid, data)
        except (ValueError, TypeError, KeyError, IndexError):
            sid = self.manager.sid_from_eio_sid(eio_sid, "/")
            namespace = self.namespace_handlers.get("/")
            connection = namespace.connections.get(sid) if namespace and sid else None
            if connection is None:
                raise
            connection.malformed()

    async def _handle_eio_disconnect(self, eio_sid, reason):
        await super()._handle_eio_disconnect(eio_sid, reason)
        # python-engineio leaves a polling client's pending GET open until its poll timeout
        # (45 s) when the client closes; Node's socket.io-client waits for it before its process
        # can exit. The seed's server answers it at once, and so does this one, with a no-op.
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None and not socket.upgraded:
            socket.queue.put_nowait(engineio_packet.Packet(engineio_packet.NOOP))


def _origin_allowed(origin: str, environ: dict) -> bool:
    """CORS_ORIGIN's origins (or any with `*`), as the REST API allows, and the server's own pages."""
    if cors.CORS_ALLOW_ALL_ORIGINS or origin in cors.CORS_ALLOWED_ORIGINS:
        return True
    # Behind a TLS-terminating proxy the request may look like plain HTTP: compare hosts only.
    host = environ.get("HTTP_HOST")
    return bool(host) and urlsplit(origin).netloc == host


def socketio_application(other_app):
    """Socket.IO at /socket.io/; every other request goes on to `other_app` (Django, Channels)."""
    server = GeminiSocketIOServer(
        async_mode="asgi",
        cors_allowed_origins=_origin_allowed,
        # Tokens, never cookies, admit a socket.
        cors_credentials=False,
        max_http_buffer_size=max(PACKET_CAP_BYTES, 2 * settings.WS_MAX_FRAME_BYTES),
    )
    server.register_namespace(GeminiNamespace())
    return socketio.ASGIApp(server, other_asgi_app=other_app, socketio_path=SOCKETIO_PATH)
