"""The /ws/ transport: JSON frames `{"event", "data"}` in and out, over chat.protocol.

The consumer only decodes frames and encodes what the protocol emits; the protocol holds the
handlers, shared with the Socket.IO server. A turn's events reach every socket joined to a
session through its channel-layer group, on any process.
"""

import json

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

# _RELAYS and _TOOL_RUNS: the protocol's running turn relays and tool runs, which tests wait for.
from chat.protocol import (  # noqa: F401
    _RELAYS,
    _TOOL_RUNS,
    SocketProtocol,
    error_payload,
    frame_field,
)
from gemini_server.db import db_async
from gemini_server.errors import (
    ApiError,
    BadRequest,
    PayloadTooLarge,
    ValidationFailed,
    api_error_from_exception,
    internal_error_report,
)
from gemini_server.layer import receive_resilient
from gemini_server.lifecycle import CLOSE_SERVICE_RESTART, draining
from gemini_server.parsers import json_loads_limited


class GeminiConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        if draining():
            # A draining server takes no new sockets: 1012 tells the client to reconnect elsewhere.
            await self.accept()
            await self.close(code=CLOSE_SERVICE_RESTART)
            return
        client = self.scope.get("client")
        self.protocol = SocketProtocol(
            self,
            layer=self.channel_layer,
            channel=self.channel_name,
            ip=client[0] if client else None,
        )
        await self.accept()
        await self.protocol.start(
            user=self.scope.get("user"),
            api_key=self.scope.get("api_key"),
            token_expires_at=self.scope.get("token_expires_at"),
            auth_error=self.scope.get("auth_error"),
        )

    async def disconnect(self, code):
        if hasattr(self, "protocol"):  # not when refused while draining
            await self.protocol.end()

    # Channels reads the socket's channel through `channel_receive`; reading goes on across a
    # Redis restart (the memberships Redis forgot are renewed) instead of closing with 1011.

    @property
    def channel_receive(self):
        return self._receive_resilient

    @channel_receive.setter
    def channel_receive(self, receive):
        self._layer_receive = receive

    async def _receive_resilient(self):
        protocol = getattr(self, "protocol", None)
        return await receive_resilient(
            self._layer_receive,
            recover=protocol.renew_memberships if protocol is not None else _nothing,
        )

    async def credentials_changed(self, message: dict) -> None:
        await self.protocol.credentials_changed(message)

    # Frames.

    async def emit(self, event: str, data: dict) -> None:
        await self.send(text_data=json.dumps({"event": event, "data": data}, default=str))

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
            name = frame_field(frame, "event")
        except ApiError as error:
            await self.emit("error", error_payload(error))
            return
        except Exception as exc:
            await db_async(internal_error_report)(exc, user=self.protocol.user)
            await self.emit("error", error_payload(api_error_from_exception(exc)))
            return
        answer = await self.protocol.receive(name, frame.get("data"))
        if answer.error is not None:
            await self.emit("error", error_payload(answer.error, event=name))

    async def session_agent_event(self, message: dict) -> None:
        await self.protocol.session_agent_event(message)

    async def monitoring_events(self, message: dict) -> None:
        await self.protocol.monitoring_events(message)


async def _nothing() -> None:
    return None
