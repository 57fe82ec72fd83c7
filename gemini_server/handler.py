"""Django's ASGI handler, with each request's synchronous part run in one hop to a thread pool.

Every view here is synchronous (DRF), and so are Django's own middleware. Django's stock ASGI
handler runs them by adapting each piece to async: two thread hops per middleware (process_request
and process_response) and one for the view, all in a thread it starts for each request
(`ThreadSensitiveContext`), then stops, plus a hop for the `request_started` signal, one to close
the response and a task that listens for a disconnect. That is most of a small request's CPU: a
`GET /health` costs 1.6 ms under uvicorn, an `auth/me` 5.3 ms.

Here the middleware chain is built synchronous once, and a request's synchronous part
(`request_started`, middleware, view, rendering, and for a response already in memory its close
and `request_finished`) runs in one call to the process's bounded thread pool
(`gemini_server.db`); the response is then sent from the loop. A streamed response (SSE, a file)
is sent as Django sends it, cancelled when the client disconnects, and closed by one more hop.
The thread's database connections go back to the pool when the call ends, so a connection is
held only while the request's synchronous part runs. The request's id is adopted by the
request's task, so the streamed body and the turn it starts log under it.
"""

import asyncio

from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.urls import set_script_prefix

from gemini_server.db import db_call
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

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(error_response, send)
                return
            response = await db_call(self._respond, request)
            request_id_adopt(request)
            if response.streaming:
                await self._stream(response, receive, send)
            else:
                await self.send_response(response, send)
        finally:
            body_file.close()

    def _respond(self, request):
        """The request's synchronous part, in the pool's thread."""
        signals.request_started.send(sender=self.__class__, scope=request.scope)
        response = self.get_response(request)
        response._handler_class = self.__class__
        if isinstance(response, FileResponse):
            # The ASGI server chunks the body itself.
            response.block_size = self.chunk_size
        if not response.streaming:
            # The body is in memory: the request's resources and connections go now.
            response.close()
        return response

    async def _stream(self, response, receive, send):
        """Sends a streamed body until it ends or the client disconnects, as Django does."""
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(self._send_streamed(response, send)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            await db_call(response.close)
        for outcome in outcomes:
            # A disconnect ends the response; anything else is a bug to be seen.
            if isinstance(outcome, Exception) and not isinstance(outcome, RequestAborted):
                raise outcome

    async def _send_streamed(self, response, send):
        try:
            await self.send_response(response, send)
        except asyncio.CancelledError:
            # The client disconnected while the body was being sent.
            pass
