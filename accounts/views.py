"""HTTP endpoints for login, tokens, API keys, registration and user management."""

from datetime import timedelta

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import serializers as s
from accounts.authentication import token_user
from accounts.models import ApiKey, Role, User
from accounts.permissions import IsAdmin
from accounts.services import (
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    token_pair_issue,
    user_authenticate,
    user_create,
    user_delete,
    user_update,
)
from accounts.throttling import login_rate_limit_check
from gemini_server.errors import NotFound, Unauthenticated, request_ip
from gemini_server.schema import error_responses
from gemini_server.validation import validated


def _login_checked(request, data, *, record_login: bool = True) -> User:
    login_rate_limit_check(ip=request_ip(request), email=data["email"])
    return user_authenticate(
        email=data["email"],
        password=data["password"],
        ip=request_ip(request),
        record_login=record_login,
    )


class PublicView(APIView):
    """Reached without credentials; a stale Authorization header must not get in the way."""

    authentication_classes: list = []
    permission_classes = [AllowAny]


class LoginView(PublicView):
    @extend_schema(
        request=s.LoginSerializer,
        responses={
            200: s.TokenPairSerializer,
            401: OpenApiResponse(description="Invalid email or password"),
        },
        tags=["auth"],
    )
    def post(self, request):
        user = _login_checked(request, validated(s.LoginSerializer, request.data))
        return Response({**token_pair_issue(user=user), "user": s.UserSerializer(user).data})


class RefreshView(PublicView):
    @extend_schema(
        request=s.RefreshSerializer,
        responses={
            200: s.AccessTokenSerializer,
            **error_responses(s401="The refresh token is invalid or expired, or names nobody"),
        },
        tags=["auth"],
    )
    def post(self, request):
        data = validated(s.RefreshSerializer, request.data)
        try:
            refresh = RefreshToken(data["refreshToken"])
        except TokenError as exc:
            raise Unauthenticated("Invalid or expired refresh token") from exc
        user = token_user(refresh)
        access = refresh.access_token
        access["role"] = user.role
        return Response(
            {"accessToken": str(access), "expiresIn": int(settings.JWT_EXPIRES_IN.total_seconds())}
        )


class ApiKeyCreateView(PublicView):
    @extend_schema(
        request=s.ApiKeyCreateSerializer,
        responses={
            201: s.NewApiKeySerializer,
            **error_responses(s401="Invalid email or password"),
        },
        tags=["auth"],
    )
    def post(self, request):
        data = validated(s.ApiKeyCreateSerializer, request.data)
        user = _login_checked(request, data, record_login=False)
        key, raw = api_key_create(
            user=user,
            name=data["name"],
            expires_in_days=data.get("expiresInDays"),
            ip=request_ip(request),
        )
        return Response(s.new_api_key_body(key, raw), status=status.HTTP_201_CREATED)


class RegisterView(PublicView):
    @extend_schema(
        request=s.RegisterSerializer,
        responses={
            201: s.UserSerializer,
            404: OpenApiResponse(description="Registration is off"),
            **error_responses(s409="A user with this email already exists"),
        },
        tags=["auth"],
    )
    def post(self, request):
        if not settings.ALLOW_REGISTRATION:
            raise NotFound("Not found")
        data = validated(s.RegisterSerializer, request.data)
        user = user_create(
            email=data["email"],
            password=data["password"],
            name=data["name"],
            role=Role.ENGINEER,
            ip=request_ip(request),
        )
        return Response(s.UserSerializer(user).data, status=status.HTTP_201_CREATED)


class MeView(APIView):
    @extend_schema(responses={200: s.UserSerializer}, tags=["auth"])
    def get(self, request):
        return Response(s.UserSerializer(request.user).data)


def _own_key(request, key_id) -> ApiKey:
    key = ApiKey.objects.filter(pk=key_id, user=request.user).first()
    if key is None:
        raise NotFound("API key not found")
    return key


class ApiKeyListView(APIView):
    @extend_schema(responses={200: s.ApiKeyListSerializer}, tags=["auth"])
    def get(self, request):
        keys = ApiKey.objects.filter(user=request.user)
        return Response({"apiKeys": s.ApiKeySerializer(keys, many=True).data})


class ApiKeyDetailView(APIView):
    @extend_schema(responses={204: None}, tags=["auth"])
    def delete(self, request, key_id):
        api_key_revoke(key=_own_key(request, key_id), actor=request.user, ip=request_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyRotateView(APIView):
    @extend_schema(
        request=s.RotateSerializer,
        responses={
            201: s.NewApiKeySerializer,
            **error_responses(s409="The key is revoked or expired"),
        },
        tags=["auth"],
    )
    def post(self, request, key_id):
        key = _own_key(request, key_id)
        data = validated(s.RotateSerializer, request.data)
        new_key, raw = api_key_rotate(
            key=key,
            actor=request.user,
            grace=timedelta(hours=data["graceHours"]),
            ip=request_ip(request),
        )
        return Response(s.new_api_key_body(new_key, raw), status=status.HTTP_201_CREATED)


class UserListView(APIView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(responses={200: s.UserListSerializer}, tags=["users"], operation_id="users_list")
    def get(self, request):
        return Response({"users": s.UserSerializer(User.objects.all(), many=True).data})

    @extend_schema(
        request=s.UserCreateSerializer,
        responses={
            201: s.UserSerializer,
            **error_responses(s409="A user with this email already exists"),
        },
        tags=["users"],
    )
    def post(self, request):
        data = validated(s.UserCreateSerializer, request.data)
        user = user_create(**data, actor=request.user, ip=request_ip(request))
        return Response(s.UserSerializer(user).data, status=status.HTTP_201_CREATED)


class UserDetailView(APIView):
    permission_classes = [IsAuthenticated, IsAdmin]

    def _user(self, user_id) -> User:
        user = User.objects.filter(pk=user_id).first()
        if user is None:
            raise NotFound("User not found")
        return user

    @extend_schema(responses={200: s.UserSerializer}, tags=["users"])
    def get(self, request, user_id):
        return Response(s.UserSerializer(self._user(user_id)).data)

    @extend_schema(
        request=s.UserUpdateSerializer, responses={200: s.UserSerializer}, tags=["users"]
    )
    def patch(self, request, user_id):
        user = self._user(user_id)
        data = validated(s.UserUpdateSerializer, request.data)
        user = user_update(
            user=user,
            actor=request.user,
            name=data.get("name"),
            role=data.get("role"),
            is_active=data.get("isActive"),
            password=data.get("password"),
            ip=request_ip(request),
        )
        return Response(s.UserSerializer(user).data)

    @extend_schema(
        responses={204: None, **error_responses(s409="An admin cannot delete their own account")},
        tags=["users"],
    )
    def delete(self, request, user_id):
        user_delete(user=self._user(user_id), actor=request.user, ip=request_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
