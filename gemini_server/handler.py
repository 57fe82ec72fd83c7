"""Django's ASGI handler, with each request's synchronous part run in one hop to a thread pool.

Every view here is synchronous (DRF), and so are Django's own middleware. Django's stock ASGI
handler runs them by adapting each piece to async: two thread hops per middleware (process_request
and process_response) and one for the view, all in a thread it starts for each request
(`ThreadSensitiveContext`), then stops. That is most of a small request's CPU: a `GET /health`
costs 1.6 ms under uvicorn, an `auth/me` 5.3 ms.

Here the middleware chain is built synchronous once, and a request's whole chain (middleware,
view, rendering) runs in one call to the process's bounded thread pool (`gemini_server.db`);
the response is then sent from the loop as Django's handler sends it,
SSE bodies (async iterators) included. The thread's database connections go back to the pool
when the call ends, as Django does at the end of a request, so a connection is held only while
the request's synchronous part runs. The request's id is adopted by the request's task, so the
streamed body and the turn it starts log under it.
"""

from django.core.handlers.asgi import ASGIHandler

from gemini_server.db import db_async
from gemini_server.request_id import request_id_adopt


class OneHopASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        # The synchronous chain replaces the adapted one that ASGIHandler.__init__ built.
        self.load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        # No ThreadSensitiveContext: nothing of a request needs a thread of its own.
        await self.handle(scope, receive, send)

    async def get_response_async(self, request):
        response = await db_async(self.get_response)(request)
        request_id_adopt(request)
        return response
