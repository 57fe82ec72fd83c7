"""WebSocket routes: one socket at /ws/ carries chat, tools and monitoring."""

from django.urls import re_path

from chat.consumers import GeminiConsumer

# `/ws` as well as `/ws/`: a client cannot follow a redirect on a WebSocket handshake.
websocket_urlpatterns = [re_path(r"^ws/?$", GeminiConsumer.as_asgi())]
