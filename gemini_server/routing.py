"""WebSocket routes: one socket at /ws/ carries chat, tools and monitoring."""

from django.urls import path

from chat.consumers import GeminiConsumer

websocket_urlpatterns = [path("ws/", GeminiConsumer.as_asgi())]
