"""The admin console's cookie middleware run for the console and step aside for the API."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_api_is_served_without_a_cookie_session_user_or_messages(auth_client, admin_user):
    response = auth_client.get("/api/v1/auth/me")

    assert response.status_code == 200
    request = response.wsgi_request
    assert not hasattr(request, "session")
    assert not hasattr(request, "_messages")
    # The user is the token's, set by DRF's authenticators, not the session's.
    assert response.json()["email"] == request.user.email != admin_user.email


def test_the_console_keeps_its_session_user_messages_and_csrf(admin_user):
    console = Client(enforce_csrf_checks=True)
    console.force_login(admin_user)

    page = console.get("/admin/")
    assert page.status_code == 200
    assert page.wsgi_request.user == admin_user
    assert hasattr(page.wsgi_request, "_messages")
    # A form posted without its CSRF token is still refused.
    assert console.post("/admin/logout/").status_code == 403
