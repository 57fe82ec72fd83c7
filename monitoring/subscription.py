"""A socket's live subscription to the audit trail: the event types it wants, through the channel
layer's monitoring group, so it hears every process. Who may subscribe is the socket's to decide."""

from gemini_server.errors import ValidationFailed
from gemini_server.groups import MONITORING
from monitoring.models import EventType
from monitoring.stream import event_matches


class MonitoringSubscription:
    def __init__(self, layer, channel: str):
        self.layer = layer
        self.channel = channel
        # None: not subscribed; [] : every type.
        self.types: list[str] | None = None

    @property
    def active(self) -> bool:
        return self.types is not None

    async def subscribe(self, types: list | None) -> list[str]:
        if types is not None:
            unknown = sorted({str(t) for t in types} - set(EventType.values))
            if unknown:
                raise ValidationFailed(
                    details={"types": [f"Unknown event type(s): {', '.join(unknown)}."]}
                )
        self.types = list(types) if types else []
        await self.layer.group_add(MONITORING, self.channel)
        return self.types

    async def renew(self) -> None:
        """The membership again, after the channel layer (Redis) may have forgotten it."""
        if self.types is not None:
            await self.layer.group_add(MONITORING, self.channel)

    async def unsubscribe(self) -> None:
        if self.types is not None:
            self.types = None
            await self.layer.group_discard(MONITORING, self.channel)

    def wanted(self, message: dict) -> list[dict]:
        """The events of a `monitoring.events` layer message this subscription takes, in order."""
        if self.types is None:
            return []
        return [
            item["event"]
            for item in message["items"]
            if event_matches(item["event"], types=self.types, user_id=None)
        ]
