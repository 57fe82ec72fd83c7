"""Admin-only HTTP endpoints over the audit trail: search, live stream, stats, active sessions."""

import base64
import binascii
import uuid

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsAdmin
from gemini_server.clock import iso_utc
from gemini_server.errors import ValidationFailed
from gemini_server.sse import EventStreamNegotiation, sse_response
from monitoring.models import EventType
from monitoring.selectors import event_list, event_stats, event_to_dict, tokens_by_user
from monitoring.stream import monitoring_sse
from sessions_app.models import Session


class EventQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=100)
    type = serializers.CharField(required=False, allow_blank=True)
    userId = serializers.UUIDField(required=False)
    sessionId = serializers.UUIDField(required=False)
    since = serializers.DateTimeField(required=False)
    before = serializers.DateTimeField(required=False)
    cursor = serializers.CharField(required=False, allow_blank=True)

    def validate_type(self, value):
        types = [item.strip() for item in value.split(",") if item.strip()]
        unknown = sorted(set(types) - set(EventType.values))
        if unknown:
            raise serializers.ValidationError(f"Unknown event type(s): {', '.join(unknown)}.")
        return types

    def validate_cursor(self, value):
        if not value:
            return None
        try:
            return int(base64.urlsafe_b64decode(value.encode()).decode().removeprefix("seq:"))
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise serializers.ValidationError("Invalid cursor.") from exc


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode()


class EventSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=EventType.choices)
    action = serializers.CharField()
    userId = serializers.UUIDField(allow_null=True)
    userEmail = serializers.CharField(allow_null=True)
    sessionId = serializers.UUIDField(allow_null=True)
    data = serializers.DictField()
    ip = serializers.IPAddressField(allow_null=True)
    createdAt = serializers.DateTimeField()


class EventPageSerializer(serializers.Serializer):
    events = EventSerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True)


class AdminView(APIView):
    permission_classes = [IsAuthenticated, IsAdmin]


def _query(request) -> dict:
    serializer = EventQuerySerializer(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class EventListView(AdminView):
    @extend_schema(
        parameters=[
            OpenApiParameter("limit", int),
            OpenApiParameter(
                "type", str, description="chat, tool, session, error, auth; comma-separated"
            ),
            OpenApiParameter("userId", OpenApiTypes.UUID),
            OpenApiParameter("sessionId", OpenApiTypes.UUID),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("before", OpenApiTypes.DATETIME),
            OpenApiParameter("cursor", str, description="nextCursor of the previous page"),
        ],
        responses={200: EventPageSerializer},
        tags=["monitoring"],
    )
    def get(self, request):
        query = _query(request)
        if not settings.MONITORING_ENABLED:
            return Response({"events": [], "nextCursor": None})
        limit = query["limit"]
        events = list(
            event_list(
                types=query.get("type"),
                user_id=query.get("userId"),
                session_id=query.get("sessionId"),
                since=query.get("since"),
                before=query.get("before"),
                before_seq=query.get("cursor"),
            )[: limit + 1]
        )
        next_cursor = _cursor(events[limit - 1].seq) if len(events) > limit else None
        return Response(
            {"events": [event_to_dict(e) for e in events[:limit]], "nextCursor": next_cursor}
        )


class EventStreamView(AdminView):
    content_negotiation_class = EventStreamNegotiation

    @extend_schema(
        parameters=[
            OpenApiParameter("type", str, description="comma-separated event types"),
            OpenApiParameter("userId", OpenApiTypes.UUID),
            OpenApiParameter(
                "Last-Event-ID",
                str,
                location=OpenApiParameter.HEADER,
                description="Replay events after this id",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                response=OpenApiTypes.STR, description="`id: <event id>` / `data: <event>` frames"
            )
        },
        tags=["monitoring"],
    )
    def get(self, request):
        query = _query(request)
        if not settings.MONITORING_ENABLED:
            return sse_response(_disabled_stream())
        user_id = query.get("userId")
        return sse_response(
            monitoring_sse(
                types=query.get("type"),
                user_id=str(user_id) if user_id else None,
                last_event_id=_last_event_id(request),
            )
        )


def _last_event_id(request) -> str | None:
    """Checked before the stream starts: once the 200 is out, a bad id could only cut it off."""
    value = request.headers.get("Last-Event-ID") or request.query_params.get("lastEventId")
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise ValidationFailed(
            details={"Last-Event-ID": ["Must be the id of an event this stream sent (a UUID)."]}
        ) from exc


async def _disabled_stream():
    yield b": monitoring is disabled\n\n"


def _active_sessions():
    return (
        Session.objects.filter(expires_at__gt=timezone.now())
        .select_related("user")
        .order_by("-last_activity_at")
    )


class StatsView(AdminView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, tags=["monitoring"])
    def get(self, request):
        if not settings.MONITORING_ENABLED:
            return Response({"perType": {}, "perUser": [], "tokensByUser": [], "activeSessions": 0})
        return Response(
            {
                **event_stats(),
                "tokensByUser": tokens_by_user(),
                "activeSessions": _active_sessions().count(),
            }
        )


class ActiveSessionsView(AdminView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, tags=["monitoring"])
    def get(self, request):
        if not settings.MONITORING_ENABLED:
            return Response({"sessions": []})
        sessions = [
            {
                "id": str(session.id),
                "userId": str(session.user_id),
                "userEmail": session.user.email,
                "title": session.title,
                "model": session.model_name,
                "turnRunning": session.turn_id is not None,
                "lastActivityAt": iso_utc(session.last_activity_at),
                "expiresAt": iso_utc(session.expires_at),
                "usage": {
                    "promptTokens": session.prompt_tokens,
                    "completionTokens": session.completion_tokens,
                    "totalTokens": session.total_tokens,
                },
            }
            for session in _active_sessions()
        ]
        return Response({"sessions": sessions})
