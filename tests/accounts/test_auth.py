"""Login, refresh, /me, registration, and every way a JWT can be refused."""

import base64
import json
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from accounts.models import Role, User
from accounts.services import token_pair_issue
from monitoring.models import Event
from tests.accounts.conftest import LOGIN_URL, ME_URL, assert_error
from tests.conftest import PASSWORD, client_for

pytestmark = pytest.mark.django_db

REFRESH_URL = "/api/v1/auth/refresh"
REGISTER_URL = "/api/v1/auth/register"


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


# Login


def test_login_returns_tokens_and_the_user(login, user):
    response = login("engineer@example.com")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"accessToken", "refreshToken", "tokenType", "expiresIn", "user"}
    assert body["tokenType"] == "Bearer"
    assert body["expiresIn"] == 7 * 24 * 3600
    assert body["user"] == {
        "id": str(user.id),
        "email": "engineer@example.com",
        "name": "Test",
        "role": "engineer",
        "isActive": True,
        "createdAt": body["user"]["createdAt"],
    }
    me = bearer(body["accessToken"]).get(ME_URL)
    assert me.status_code == 200
    assert me.json()["email"] == "engineer@example.com"


def test_login_email_is_case_insensitive(login, user):
    response = login("Engineer@Example.COM")

    assert response.status_code == 200
    assert response.json()["user"]["id"] == str(user.id)


def test_wrong_password_and_unknown_email_get_the_same_401(login, user):
    wrong_password = login("engineer@example.com", "not-the-password")
    unknown_email = login("nobody@example.com", "not-the-password")

    assert_error(wrong_password, 401, "unauthenticated")
    assert_error(unknown_email, 401, "unauthenticated")
    assert wrong_password.json() == unknown_email.json()
    assert "accessToken" not in wrong_password.content.decode()


def test_a_deactivated_user_cannot_log_in_and_gets_the_same_401(login, user):
    user.is_active = False
    user.save()

    refused = login("engineer@example.com")
    unknown = login("nobody@example.com")

    assert_error(refused, 401, "unauthenticated")
    assert refused.json() == unknown.json()


def test_login_with_malformed_json_is_bad_request(api_client, user):
    response = api_client.post(
        LOGIN_URL, data='{"email": "engineer@', content_type="application/json"
    )

    assert_error(response, 400, "bad_request")


def test_login_with_missing_fields_names_each_field(api_client):
    response = api_client.post(LOGIN_URL, {}, format="json")

    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"email", "password"}
    assert all(isinstance(m, str) for m in error["details"]["email"])


def test_login_with_wrong_types_names_each_field(api_client):
    response = api_client.post(
        LOGIN_URL, {"email": "not-an-email", "password": ["a", "list"]}, format="json"
    )

    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"email", "password"}


def test_login_body_that_is_not_an_object_is_refused(api_client):
    response = api_client.post(LOGIN_URL, data="[1, 2]", content_type="application/json")

    error = assert_error(response, 400, "validation_error")
    assert list(error["details"]) == ["body"]


def test_login_ignores_a_stale_authorization_header(user):
    response = bearer("garbage.token.here").post(
        LOGIN_URL, {"email": user.email, "password": PASSWORD}, format="json"
    )

    assert response.status_code == 200


# Refresh


def test_refresh_gives_an_access_token_that_works(login, api_client, user):
    refresh_token = login(user.email).json()["refreshToken"]

    response = api_client.post(REFRESH_URL, {"refreshToken": refresh_token}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"accessToken", "expiresIn"}
    assert body["expiresIn"] == 7 * 24 * 3600
    me = bearer(body["accessToken"]).get(ME_URL)
    assert me.status_code == 200
    assert me.json()["id"] == str(user.id)


def test_refresh_refuses_an_access_token(api_client, user):
    access = token_pair_issue(user=user)["accessToken"]

    response = api_client.post(REFRESH_URL, {"refreshToken": access}, format="json")

    assert_error(response, 401, "unauthenticated")


def test_refresh_refuses_garbage_and_a_missing_field(api_client):
    garbage = api_client.post(REFRESH_URL, {"refreshToken": "not-a-token"}, format="json")
    missing = api_client.post(REFRESH_URL, {}, format="json")

    assert_error(garbage, 401, "unauthenticated")
    assert "refreshToken" in assert_error(missing, 400, "validation_error")["details"]


def test_refresh_refuses_a_deactivated_user(api_client, user):
    refresh = token_pair_issue(user=user)["refreshToken"]
    user.is_active = False
    user.save()

    response = api_client.post(REFRESH_URL, {"refreshToken": refresh}, format="json")

    assert_error(response, 401, "unauthenticated")


# /me and the JWT


def test_me_returns_the_caller(auth_client, user):
    response = auth_client.get(ME_URL)

    assert response.status_code == 200
    assert response.json() == {
        "id": str(user.id),
        "email": user.email,
        "name": "Test",
        "role": "engineer",
        "isActive": True,
        "createdAt": response.json()["createdAt"],
    }


def test_me_without_credentials_is_401(api_client):
    response = api_client.get(ME_URL)

    assert_error(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_issued_jwt_carries_user_id_and_role(user):
    access = token_pair_issue(user=user)["accessToken"]
    payload = json.loads(base64.urlsafe_b64decode(access.split(".")[1] + "=="))

    assert payload["user_id"] == str(user.id)
    assert payload["role"] == "engineer"
    assert payload["token_type"] == "access"


def test_a_hand_built_token_with_the_right_secret_is_accepted(signed_jwt, user):
    """The control for the refusals below: the builder itself makes valid tokens."""
    response = bearer(signed_jwt(user)).get(ME_URL)

    assert response.status_code == 200
    assert response.json()["id"] == str(user.id)


def test_expired_jwt_is_refused(signed_jwt, user):
    token = signed_jwt(user, lifetime=-timedelta(seconds=1))

    assert_error(bearer(token).get(ME_URL), 401, "unauthenticated")


def test_jwt_signed_with_another_secret_is_refused(signed_jwt, user):
    token = signed_jwt(user, secret="another-secret-entirely-0123456789-abcdefghijklmnop")

    assert_error(bearer(token).get(ME_URL), 401, "unauthenticated")


def test_jwt_signed_with_the_django_secret_key_is_refused(signed_jwt, user, settings):
    """Tokens are signed with JWT_SECRET, not SECRET_KEY: leaking one does not forge the other."""
    assert settings.SECRET_KEY != settings.JWT_SECRET
    token = signed_jwt(user, secret=settings.SECRET_KEY)

    assert_error(bearer(token).get(ME_URL), 401, "unauthenticated")


def test_tampered_jwt_is_refused(signed_jwt, user, admin_user):
    header, _payload, signature = signed_jwt(user).split(".")
    forged = signed_jwt(admin_user).split(".")[1]
    tampered = f"{header}.{forged}.{signature}"

    assert_error(bearer(tampered).get(ME_URL), 401, "unauthenticated")


def test_unsigned_jwt_is_refused(user):
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    header = part({"alg": "none", "typ": "JWT"})
    payload = part({"token_type": "access", "user_id": str(user.id), "exp": 9999999999, "jti": "x"})

    assert_error(bearer(f"{header}.{payload}.").get(ME_URL), 401, "unauthenticated")


def test_refresh_token_used_as_access_token_is_refused(user):
    refresh = token_pair_issue(user=user)["refreshToken"]

    assert_error(bearer(refresh).get(ME_URL), 401, "unauthenticated")


def test_jwt_of_a_deleted_user_is_refused(signed_jwt, user):
    token = signed_jwt(user)
    user.delete()

    assert_error(bearer(token).get(ME_URL), 401, "unauthenticated")


def test_malformed_authorization_headers_are_refused(api_client):
    for header in ("Bearer", "Bearer a b", "Token abc", "Bearer not-a-jwt"):
        api_client.credentials(HTTP_AUTHORIZATION=header)
        response = api_client.get(ME_URL)
        assert_error(response, 401, "unauthenticated")


def test_deactivated_user_is_locked_out_at_once(admin_api_client, user, api_key):
    _key, raw = api_key
    jwt_client = client_for(user)
    key_client = APIClient()
    key_client.credentials(HTTP_X_API_KEY=raw)
    assert jwt_client.get(ME_URL).status_code == 200
    assert key_client.get(ME_URL).status_code == 200

    patched = admin_api_client.patch(f"/api/v1/users/{user.id}", {"isActive": False}, format="json")

    assert patched.status_code == 200
    assert patched.json()["isActive"] is False
    assert_error(jwt_client.get(ME_URL), 401, "unauthenticated")
    assert_error(key_client.get(ME_URL), 401, "unauthenticated")


def test_reactivated_user_gets_back_in(admin_api_client, user):
    jwt_client = client_for(user)
    admin_api_client.patch(f"/api/v1/users/{user.id}", {"isActive": False}, format="json")
    assert jwt_client.get(ME_URL).status_code == 401

    admin_api_client.patch(f"/api/v1/users/{user.id}", {"isActive": True}, format="json")

    assert jwt_client.get(ME_URL).status_code == 200


# Registration


def test_registration_is_404_when_off(api_client, settings):
    settings.ALLOW_REGISTRATION = False

    response = api_client.post(
        REGISTER_URL,
        {"email": "new@example.com", "password": PASSWORD, "name": "New"},
        format="json",
    )

    assert_error(response, 404, "not_found")
    assert not User.objects.filter(email="new@example.com").exists()


def test_registration_makes_an_engineer_who_can_log_in(api_client, login, settings):
    settings.ALLOW_REGISTRATION = True

    response = api_client.post(
        REGISTER_URL,
        {"email": "New@Example.com", "password": PASSWORD, "name": "New", "role": "admin"},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "new@example.com"
    assert body["name"] == "New"
    assert body["role"] == "engineer"
    assert User.objects.get(email="new@example.com").role == Role.ENGINEER
    assert login("new@example.com").status_code == 200
    registered = Event.objects.get(action="user_register")
    assert registered.user_email == "new@example.com"
    assert PASSWORD not in json.dumps(registered.data)


def test_registration_validates_its_fields(api_client, settings, user):
    settings.ALLOW_REGISTRATION = True

    missing = api_client.post(REGISTER_URL, {"email": "x@example.com"}, format="json")
    weak = api_client.post(
        REGISTER_URL, {"email": "x@example.com", "password": "123", "name": "X"}, format="json"
    )
    taken = api_client.post(
        REGISTER_URL, {"email": user.email, "password": PASSWORD, "name": "X"}, format="json"
    )

    assert set(assert_error(missing, 400, "validation_error")["details"]) == {"password", "name"}
    assert "password" in assert_error(weak, 400, "validation_error")["details"]
    assert_error(taken, 409, "conflict")
    assert User.objects.filter(email="x@example.com").count() == 0


# Monitoring of logins


def test_logins_are_recorded_without_the_password(login, user):
    login(user.email)
    login(user.email, "wrong-password-123")
    login("nobody@example.com", "wrong-password-456")

    actions = list(Event.objects.filter(type="auth").values_list("action", "user_email"))
    assert ("login", user.email) in actions
    assert ("login_failed", user.email) in actions
    assert ("login_failed", "nobody@example.com") in actions
    stored = json.dumps(list(Event.objects.values("data", "user_email", "action")))
    for secret in (PASSWORD, "wrong-password-123", "wrong-password-456"):
        assert secret not in stored


@pytest.mark.django_db(transaction=True)
def test_the_production_server_does_not_take_a_forwarded_address_from_a_loopback_peer(live_pool):
    # uvicorn would trust X-Forwarded-For from 127.0.0.1 by itself; the server reads it only as
    # far as TRUSTED_PROXY_COUNT (0 here) says, so the audit names the real peer.
    request = urllib.request.Request(
        f"{live_pool('a')}/api/v1/auth/login",
        data=json.dumps({"email": "forwarded@example.com", "password": "wrong"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)

    assert refused.value.code == 401
    failed = Event.objects.get(action="login_failed", user_email="forwarded@example.com")
    assert failed.ip == "127.0.0.1"
