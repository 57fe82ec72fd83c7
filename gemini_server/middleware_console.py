"""The cookie session, its user and its flash messages: the admin console's middleware, not the API's.

The API authenticates every request by its bearer token (an API key or a JWT, DRF's
authenticators) and never reads a cookie session, a session user or a message; its views are
CSRF-exempt. Django's session, authentication and message middleware still cost each API request
a lazy session store, a lazy user and a message storage built and then checked on the way out:
about a tenth of a millisecond of a small request here. These subclasses step aside for paths
under `/api/` and run as Django's own everywhere else (the admin console, its login), and being
subclasses, they satisfy the admin's checks that they are installed.
"""

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware

API_PREFIX = "/api/"


class _ConsoleOnly:
    def __call__(self, request):
        if request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        return super().__call__(request)


class ConsoleSessionMiddleware(_ConsoleOnly, SessionMiddleware):
    pass


class ConsoleAuthenticationMiddleware(_ConsoleOnly, AuthenticationMiddleware):
    pass


class ConsoleMessageMiddleware(_ConsoleOnly, MessageMiddleware):
    pass
