"""HTTP endpoints for chat (the SSE stream, confirm, cancel, history, checkpoints) and tools."""

import threading

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import CanOperate
from accounts.throttling import RateLimitOverlapped
from chat import serializers as s
from chat.agent.tools import tool_catalog
from chat.selectors import checkpoint_list, history_page
from chat.services import checkpoint_load, checkpoint_save, history_clear
from chat.sse import turn_follow_sse, turn_sse
from chat.tools_run import tool_execute
from chat.turns.control import turn_cancel, turn_confirm
from chat.turns.loop import Turn, turn_open
from gemini_server.errors import BadRequest, RateLimited, ValidationFailed, request_ip
from gemini_server.paging import PAGE_PARAMS, page_params
from gemini_server.schema import error_responses
from gemini_server.sse import EventStreamNegotiation, sse_response
from gemini_server.validation import validated
from sessions_app.selectors import session_get

SESSION_PARAM = OpenApiParameter("sessionId", OpenApiTypes.UUID, required=True)


def _history(session, params) -> dict:
    limit, cursor = page_params(params, default=1000, maximum=1000)
    history, next_cursor = history_page(session=session, limit=limit, cursor=cursor)
    return {"history": history, "nextCursor": next_cursor}


class OperateView(APIView):
    """Engineers and admins, on their own sessions."""

    permission_classes = [IsAuthenticated, CanOperate]

    def session(self, request, data):
        return session_get(session_id=data["sessionId"], user=request.user, write=True)


class ChatMessageView(RateLimitOverlapped, OperateView):
    content_negotiation_class = EventStreamNegotiation

    @extend_schema(
        request=s.ChatMessageSerializer,
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description='SSE frames `id: n` / `data: {"type": ..., "data": {...}}`, ending with `done`.',
            ),
            409: OpenApiResponse(description="A turn is already running in this session"),
            410: OpenApiResponse(description="The session has expired"),
            503: OpenApiResponse(
                description="`server_restarting`: this server is draining; retry (retryable)"
            ),
        },
        tags=["chat"],
    )
    def post(self, request):
        # The turn is claimed while the rate limit's hit is on its way; over the limit, the
        # claim is released unused and the 429 is the answer.
        turn = self.rate_limited_after(lambda: self._turn_open(request), undo=Turn.drop)
        turn.start_served()
        return sse_response(turn_sse(turn), on_close=turn.abandon)

    def _turn_open(self, request) -> Turn:
        data = validated(s.ChatMessageSerializer, request.data)
        return turn_open(
            session_id=data["sessionId"],
            user=request.user,
            text=data["message"],
            ip=request_ip(request),
            cancel_when_unwatched=False,
            background=data["background"],
            start=False,
        )


def _last_event_id(request) -> int:
    """`Last-Event-ID` (what EventSource sends on reconnect), or `?lastEventId=`; 0 for none."""
    raw = request.headers.get("Last-Event-ID") or request.query_params.get("lastEventId") or "0"
    if not raw.strip().isdigit():
        raise BadRequest(
            "Last-Event-ID must be a frame number of the turn", details={"lastEventId": raw}
        )
    return int(raw.strip())


class ChatStreamView(APIView):
    content_negotiation_class = EventStreamNegotiation

    @extend_schema(
        parameters=[
            SESSION_PARAM,
            OpenApiParameter(
                "Last-Event-ID",
                OpenApiTypes.INT,
                location=OpenApiParameter.HEADER,
                required=False,
                description="Replay the frames after this one (also `?lastEventId=`).",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                description="The running turn's frames from its start (or after Last-Event-ID), "
                "then live, ending with `done`."
            ),
            204: OpenApiResponse(description="No turn is running in this session"),
            400: OpenApiResponse(description="Last-Event-ID is not a frame number"),
            404: OpenApiResponse(description="No such session of yours"),
        },
        tags=["chat"],
    )
    def get(self, request):
        data = validated(s.SessionRefSerializer, request.query_params)
        after = _last_event_id(request)
        session = session_get(session_id=data["sessionId"], user=request.user)
        if not session.turn_is_live():
            return HttpResponse(status=204)
        return sse_response(
            turn_follow_sse(session_id=session.id, turn_id=session.turn_id, after=after)
        )


class ChatConfirmView(OperateView):
    @extend_schema(
        request=s.ConfirmSerializer,
        responses={200: s.OkSerializer, **error_responses(s409="No turn is running")},
        tags=["chat"],
    )
    def post(self, request):
        data = validated(s.ConfirmSerializer, request.data)
        turn_confirm(
            session=self.session(request, data),
            call_id=data["callId"],
            outcome=data["outcome"],
            actor=request.user,
        )
        return Response({"ok": True})


class ChatCancelView(OperateView):
    @extend_schema(
        request=s.SessionRefSerializer,
        responses={200: s.OkSerializer, **error_responses(s409="No turn is running")},
        tags=["chat"],
    )
    def post(self, request):
        data = validated(s.SessionRefSerializer, request.data)
        turn_cancel(session=self.session(request, data), actor=request.user)
        return Response({"ok": True})


class ChatHistoryView(APIView):
    @extend_schema(
        parameters=[SESSION_PARAM, *PAGE_PARAMS],
        responses={200: s.HistorySerializer},
        tags=["chat"],
    )
    def get(self, request):
        data = validated(s.SessionRefSerializer, request.query_params)
        session = session_get(session_id=data["sessionId"], user=request.user)
        return Response(_history(session, request.query_params))


class ChatClearView(OperateView):
    @extend_schema(
        # A DELETE body is not in OpenAPI's model; the view also takes `sessionId` from the query.
        parameters=[SESSION_PARAM],
        responses={200: s.OkSerializer, **error_responses(s409="A turn is running")},
        tags=["chat"],
    )
    def delete(self, request):
        data = validated(s.SessionRefSerializer, request.data or request.query_params)
        history_clear(
            session=self.session(request, data), actor=request.user, ip=request_ip(request)
        )
        return Response({"ok": True})


class ChatSaveView(OperateView):
    @extend_schema(
        request=s.CheckpointRequestSerializer,
        responses={200: s.CheckpointSerializer},
        tags=["chat"],
    )
    def post(self, request):
        data = validated(s.CheckpointRequestSerializer, request.data)
        checkpoint = checkpoint_save(
            session=self.session(request, data),
            tag=data["tag"],
            actor=request.user,
            ip=request_ip(request),
        )
        return Response(
            {
                "tag": checkpoint.tag,
                "messageCount": len(checkpoint.history),
                "createdAt": checkpoint.created_at,
            }
        )


class ChatLoadView(OperateView):
    @extend_schema(
        request=s.CheckpointRequestSerializer,
        responses={200: s.HistorySerializer, **error_responses(s409="A turn is running")},
        tags=["chat"],
    )
    def post(self, request):
        data = validated(s.CheckpointRequestSerializer, request.data)
        session = self.session(request, data)
        checkpoint_load(
            session=session, tag=data["tag"], actor=request.user, ip=request_ip(request)
        )
        return Response(_history(session, request.query_params))


class ChatCheckpointsView(APIView):
    @extend_schema(
        parameters=[SESSION_PARAM], responses={200: s.CheckpointListSerializer}, tags=["chat"]
    )
    def get(self, request):
        data = validated(s.SessionRefSerializer, request.query_params)
        session = session_get(session_id=data["sessionId"], user=request.user)
        return Response({"checkpoints": checkpoint_list(session=session)})


class ToolListView(APIView):
    @extend_schema(responses={200: s.ToolListSerializer}, tags=["tools"])
    def get(self, request):
        return Response({"tools": tool_catalog()})


# A direct run holds its request's thread of the pool (gemini_server.db) while the tool runs on
# the event loop, and the run's own database work needs threads of that pool too: if every thread
# waited on a tool, none would be left for them. At most half the pool waits on direct runs; a run
# past that is refused at once (429, retry shortly): waiting for a turn would hold a thread too.
_direct_runs = threading.BoundedSemaphore(max(1, settings.SYNC_THREADS // 2))


class ToolExecuteView(OperateView):
    @extend_schema(
        request=s.ToolExecuteSerializer,
        responses={200: s.ToolResultSerializer, **error_responses(410, 429)},
        tags=["tools"],
    )
    def post(self, request):
        data = validated(s.ToolExecuteSerializer, request.data)
        if not isinstance(request.data.get("args", {}), dict):
            raise ValidationFailed(details={"args": ["Must be an object."]})
        session = self.session(request, data)
        if not _direct_runs.acquire(blocking=False):
            raise RateLimited("This server is running as many tools as it can; try again shortly")
        try:
            result = async_to_sync(tool_execute)(
                session=session,
                user=request.user,
                name=data["name"],
                args=data["args"],
                ip=request_ip(request),
            )
        finally:
            _direct_runs.release()
        return Response(result)
