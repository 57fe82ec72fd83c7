"""Credentials that are empty, malformed or name nobody: a clean 401 (or 4401), never a repr or a 500."""

import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.services import token_pair_issue
from gemini_server.asgi import application

pytestmark = pytest.mark.django_db

ME = "/api/v1/auth/me"


def signed(user_id, kind=AccessToken) -> str:
    """A token signed with the server's own secret, naming whatever `user_id` the test wants."""
    token = kind()
    token["user_id"] = user_id
    return str(token)


def assert_clean_401(response, message: str) -> None:
    assert response.status_code == 401, response.content
    error = response.json()["error"]
    assert error == {"code": "unauthenticated", "message": message, "details": {}}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    for repr_marker in ("ErrorDetail", "{'", "detail"):
        assert repr_marker not in error["message"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer", "The Authorization header must be `Bearer <token>`"),
        ("Bearer ", "The Authorization header must be `Bearer <token>`"),
        ("Bearer a b", "The Authorization header must be `Bearer <token>`"),
        ("Bearer not-a-jwt", "Invalid or expired token"),
    ],
)
def test_a_malformed_authorization_header_is_a_clean_401(header, message):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    assert_clean_401(client.get(ME), message)


@pytest.mark.parametrize(
    "user_id", ["not-a-uuid", "", 12345, None, ["a"], {"id": 1}, "00000000-0000-0000-0000"]
)
def test_a_signed_jwt_with_a_malformed_user_id_is_a_401(user_id):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {signed(user_id)}")

    assert_clean_401(client.get(ME), "Invalid token")


def test_a_jwt_of_an_unknown_user_is_a_clean_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {signed(str(uuid.uuid4()))}")

    assert_clean_401(client.get(ME), "This account is unknown or deactivated")


def test_a_jwt_of_a_deactivated_user_is_a_clean_401(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user)['accessToken']}")
    user.is_active = False
    user.save()

    assert_clean_401(client.get(ME), "This account is unknown or deactivated")


@pytest.mark.parametrize("user_id", ["not-a-uuid", None, 7])
def test_a_refresh_token_with_a_malformed_user_id_is_a_401(api_client, user_id):
    response = api_client.post(
        "/api/v1/auth/refresh", {"refreshToken": signed(user_id, RefreshToken)}, format="json"
    )

    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "unauthenticated",
        "message": "Invalid token",
        "details": {},
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("user_id", ["not-a-uuid", "unknown"])
async def test_a_socket_with_a_malformed_or_unknown_jwt_is_closed_4401(user_id):
    token = signed(str(uuid.uuid4()) if user_id == "unknown" else user_id)

    in_url = WebsocketCommunicator(application, f"/ws/?token={token}")
    connected, _ = await in_url.connect()
    closed = await in_url.receive_output()

    in_frame = WebsocketCommunicator(application, "/ws/")
    await in_frame.connect()
    await in_frame.send_json_to({"event": "auth", "data": {"token": token}})
    closed_after_frame = await in_frame.receive_output()

    assert connected
    assert closed == {"type": "websocket.close", "code": 4401}
    assert closed_after_frame == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True)
async def test_a_socket_of_a_deactivated_user_is_closed_4401(user):
    token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]
    user.is_active = False
    await user.asave()

    socket = WebsocketCommunicator(application, f"/ws/?token={token}")
    await socket.connect()

    assert await socket.receive_output() == {"type": "websocket.close", "code": 4401}
