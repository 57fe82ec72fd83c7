"""Edges of the contract's error shape: oversized bodies, unknown paths in debug, stale turns."""

import pytest
from django.utils import timezone

from sessions_app.models import Session
from sessions_app.services import session_create

pytestmark = pytest.mark.django_db


def test_a_json_body_over_the_limit_is_413(api_client, user, settings):
    settings.JSON_BODY_MAX_BYTES = 200

    response = api_client.post(
        "/api/v1/auth/login", {"email": user.email, "password": "x" * 500}, format="json"
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_unknown_api_paths_answer_json_even_in_debug(api_client, settings):
    settings.DEBUG = True

    response = api_client.get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "Not found", "details": {}}
    }


def test_a_wrongly_typed_nested_object_names_its_field(auth_client):
    response = auth_client.post("/api/v1/sessions", {"config": "yolo"}, format="json")

    assert response.status_code == 400
    assert "config" in response.json()["error"]["details"]


def test_changing_files_of_an_expired_session_is_gone(auth_client, user):
    session = session_create(user=user)
    Session.objects.filter(pk=session.pk).update(expires_at=timezone.now())

    upload = auth_client.put(
        f"/api/v1/sessions/{session.id}/files/content?path=a.txt", b"x", content_type="text/plain"
    )
    delete = auth_client.delete(f"/api/v1/sessions/{session.id}/files/content?path=a.txt")
    listing = auth_client.get(f"/api/v1/sessions/{session.id}/files")

    assert upload.status_code == delete.status_code == 410
    assert upload.json()["error"]["code"] == "gone"
    assert listing.status_code == 200  # reading stays possible


def test_cancel_frees_a_session_whose_turn_process_died(auth_client, user):
    import uuid
    from datetime import timedelta

    session = session_create(user=user)
    Session.objects.filter(pk=session.pk).update(
        turn_id=uuid.uuid4(), turn_heartbeat_at=timezone.now() - timedelta(minutes=10)
    )

    cancel = auth_client.post("/api/v1/chat/cancel", {"sessionId": str(session.id)}, format="json")
    clear = auth_client.delete("/api/v1/chat/clear", {"sessionId": str(session.id)}, format="json")

    assert cancel.status_code == 200
    assert Session.objects.get(pk=session.pk).turn_id is None
    assert clear.status_code == 200
