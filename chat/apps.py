"""App config for chat: the agent, its tools, and the SSE and WebSocket transports."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self):
        from chat.turns.slot import turn_claims_sweep_at_start
        from gemini_server.lifecycle import on_start

        # A server that starts frees the sessions a stopped or crashed one left claimed.
        on_start(turn_claims_sweep_at_start)
