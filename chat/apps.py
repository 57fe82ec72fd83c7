"""App config for chat: the agent, its tools, and the SSE and WebSocket transports."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"
