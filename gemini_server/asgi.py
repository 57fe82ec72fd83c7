"""The ASGI application daphne serves: HTTP through Django, `/ws/` through Channels, and
Socket.IO at `/socket.io/` (both its transports) for the seed's clients, all on one port."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gemini_server.settings")
django.setup(set_prefix=False)

from gemini_server.handler import OneHopASGIHandler  # noqa: E402

django_asgi_app = OneHopASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from accounts.channels_auth import TokenAuthMiddleware  # noqa: E402
from chat.socketio_server import socketio_application  # noqa: E402
from gemini_server.lifecycle import CLOSE_SERVICE_RESTART, LifecycleMiddleware  # noqa: E402
from gemini_server.request_id import RequestIdWebSocket  # noqa: E402
from gemini_server.routing import websocket_urlpatterns  # noqa: E402

# The admin console and Swagger UI need their static files; daphne serves none by itself.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.SERVE_STATIC else django_asgi_app


def _daphne_leaves_bodies_to_django() -> None:
    """Twisted, under daphne, parses POST form bodies for itself before Django sees them, and
    answers a multipart body with a bad boundary with a bare 400 and no body. Nothing here reads
    Twisted's parse (Django reads the body), so daphne's requests are told not to make it."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # served by another ASGI server
        return
    # Twisted assigns this per request in __init__; a property that ignores the assignment keeps it off.
    WebRequest._parsePOSTFormSubmission = property(lambda request: False, lambda request, _: None)


_daphne_leaves_bodies_to_django()


def _daphne_closes_for_restart() -> None:
    """Autobahn, under daphne, refuses to send close codes other than 1000 and 3000-4999, so
    1012 (service restart, registered with IANA after RFC 6455) would raise instead of closing.
    Clients accept it; daphne's sockets are told to send that one code as it is."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # served by another ASGI server
        return
    close = WebSocketProtocol.serverClose

    def server_close(protocol, code=None):
        if code == CLOSE_SERVICE_RESTART:
            protocol.sendCloseFrame(code=code, isReply=False)
            return
        close(protocol, code=code)

    WebSocketProtocol.serverClose = server_close


_daphne_closes_for_restart()

# The outer layer sets the process up on its first call (worker registry, SIGTERM drain) and
# drains it on ASGI lifespan shutdown, for servers that speak lifespan (gemini_server.lifecycle);
# Socket.IO is served at /socket.io/ beside Channels, on the same port.
application = LifecycleMiddleware(
    socketio_application(
        ProtocolTypeRouter(
            {
                "http": http_app,
                # No Origin check: sockets are admitted by token only, never by a cookie a page
                # could ride on.
                "websocket": RequestIdWebSocket(
                    TokenAuthMiddleware(URLRouter(websocket_urlpatterns))
                ),
            }
        )
    )
)
