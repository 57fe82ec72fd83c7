"""HTTP endpoints for sessions and their workspace files."""

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import BaseParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ReadOnlyForViewers
from gemini_server.errors import request_ip
from gemini_server.paging import PAGE_PARAMS, keyset_page, list_page, page_params
from gemini_server.schema import error_responses
from gemini_server.validation import validated
from sessions_app import serializers as s
from sessions_app.selectors import session_get, session_list, session_to_dict
from sessions_app.services import (
    session_create,
    session_delete,
    session_extend,
    session_update,
    workspace_file_delete,
    workspace_file_open,
    workspace_file_write,
    workspace_listing,
)

PATH_PARAM = OpenApiParameter(
    "path",
    str,
    description="Relative to the workspace, or starting with /workspace/",
    required=False,
)


class SessionView(APIView):
    permission_classes = [IsAuthenticated, ReadOnlyForViewers]

    def session(self, request, session_id, *, write: bool):
        return session_get(session_id=session_id, user=request.user, write=write)


class SessionListView(SessionView):
    @extend_schema(
        parameters=[
            OpenApiParameter("userId", OpenApiTypes.UUID, description="Admins only"),
            *PAGE_PARAMS,
        ],
        responses={200: s.SessionListSerializer},
        tags=["sessions"],
        operation_id="sessions_list",
    )
    def get(self, request):
        limit, cursor = page_params(request.query_params, default=100, maximum=500)
        sessions, next_cursor = keyset_page(
            session_list(user=request.user, user_id=request.query_params.get("userId")),
            order=["-last_activity_at", "-id"],
            limit=limit,
            cursor=cursor,
        )
        return Response(
            {
                "sessions": [session_to_dict(session) for session in sessions],
                "nextCursor": next_cursor,
            }
        )

    @extend_schema(
        request=s.SessionCreateSerializer,
        responses={201: s.SessionCreatedSerializer},
        tags=["sessions"],
    )
    def post(self, request):
        data = validated(s.SessionCreateSerializer, request.data)
        session = session_create(
            user=request.user, config=data.get("config"), ip=request_ip(request)
        )
        session = session_get(session_id=session.id, user=request.user)
        return Response(
            {"sessionId": str(session.id), "session": session_to_dict(session)},
            status=status.HTTP_201_CREATED,
        )


class SessionDetailView(SessionView):
    @extend_schema(responses={200: s.SessionEnvelopeSerializer}, tags=["sessions"])
    def get(self, request, session_id):
        return Response(
            {"session": session_to_dict(self.session(request, session_id, write=False))}
        )

    @extend_schema(
        request=s.SessionUpdateSerializer,
        responses={200: s.SessionEnvelopeSerializer},
        tags=["sessions"],
    )
    def patch(self, request, session_id):
        session = self.session(request, session_id, write=True)
        data = validated(s.SessionUpdateSerializer, request.data)
        session_update(
            session=session,
            title=data.get("title"),
            config=data.get("config"),
            actor=request.user,
            ip=request_ip(request),
        )
        return Response({"session": session_to_dict(self.session(request, session_id, write=True))})

    @extend_schema(
        responses={204: None, **error_responses(s409="A turn is running in this session")},
        tags=["sessions"],
    )
    def delete(self, request, session_id):
        session = self.session(request, session_id, write=True)
        session_delete(session=session, actor=request.user, ip=request_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionExtendView(SessionView):
    @extend_schema(
        request=s.SessionExtendSerializer,
        responses={200: s.SessionEnvelopeSerializer},
        tags=["sessions"],
    )
    def put(self, request, session_id):
        session = self.session(request, session_id, write=True)
        data = validated(s.SessionExtendSerializer, request.data)
        session_extend(
            session=session, actor=request.user, hours=data["hours"], ip=request_ip(request)
        )
        return Response({"session": session_to_dict(self.session(request, session_id, write=True))})


class WorkspaceListView(SessionView):
    @extend_schema(
        parameters=[PATH_PARAM, *PAGE_PARAMS],
        responses={200: s.WorkspaceListingSerializer},
        tags=["files"],
    )
    def get(self, request, session_id):
        session = self.session(request, session_id, write=False)
        limit, cursor = page_params(request.query_params, default=1000, maximum=5000)
        listing = workspace_listing(session=session, path=request.query_params.get("path"))
        entries, next_cursor = list_page(listing["entries"], limit=limit, cursor=cursor)
        return Response({**listing, "entries": entries, "nextCursor": next_cursor})


class RawBodyParser(BaseParser):
    """Uploads are the file's bytes as they are, whatever their content type."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read() if stream is not None else b""


class WorkspaceFileView(SessionView):
    parser_classes = [RawBodyParser]

    @extend_schema(
        parameters=[PATH_PARAM],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        tags=["files"],
    )
    def get(self, request, session_id):
        session = self.session(request, session_id, write=False)
        handle, name = workspace_file_open(session=session, path=request.query_params.get("path"))
        return FileResponse(handle, as_attachment=True, filename=name)

    @extend_schema(
        parameters=[PATH_PARAM],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={
            201: s.WorkspaceEntrySerializer,
            200: s.WorkspaceEntrySerializer,
            **error_responses(410),
        },
        tags=["files"],
    )
    def put(self, request, session_id):
        session = self.session(request, session_id, write=True)
        entry = workspace_file_write(
            session=session,
            path=request.query_params.get("path"),
            content=request.body,
            actor=request.user,
            ip=request_ip(request),
        )
        created = entry.pop("created")
        return Response(entry, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        parameters=[PATH_PARAM], responses={204: None, **error_responses(410)}, tags=["files"]
    )
    def delete(self, request, session_id):
        session = self.session(request, session_id, write=True)
        workspace_file_delete(
            session=session,
            path=request.query_params.get("path"),
            actor=request.user,
            ip=request_ip(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
