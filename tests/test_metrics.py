"""`GET /metrics`: who may read it, its format, and the metrics moving as the server works."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from accounts.services import token_pair_issue
from gemini_server.asgi import application
from tests.asgi_http import asgi_request
from tests.chat.conftest import scripted

PROJECT_ROOT = Path(__file__).resolve().parent.parent
METRICS_TOKEN = "a-scraper-token-of-forty-characters-0123"


def samples(response_body: bytes) -> dict[tuple, float]:
    """Every sample of the exposition, keyed by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(response_body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(token: str) -> dict:
    response = await asgi_request("GET", "/metrics", token=token)
    assert response.status == 200, response.body
    return samples(response.body)


@pytest.mark.django_db
def test_admins_read_the_text_exposition(admin_api_client):
    response = admin_api_client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {
        "gemini_http_requests",
        "gemini_http_request_duration_seconds",
        "gemini_turns_running",
        "gemini_turns_finished",
        "gemini_sse_streams_open",
        "gemini_websockets_open",
        "gemini_tool_calls",
        "gemini_tool_call_duration_seconds",
        "gemini_upstream_calls",
        "gemini_upstream_errors",
        "gemini_upstream_call_duration_seconds",
        "gemini_tokens",
    } <= names


@pytest.mark.django_db
def test_metrics_are_refused_without_credentials_and_to_non_admins(api_client, auth_client):
    anonymous = api_client.get("/metrics")
    engineer = auth_client.get("/metrics")

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    assert set(anonymous.json()["error"]) == {"code", "message", "details"}
    assert engineer.status_code == 403
    assert engineer.json()["error"]["code"] == "forbidden"


@pytest.mark.django_db
def test_the_metrics_token_is_a_bearer_credential_for_scrapers(settings):
    settings.METRICS_TOKEN = METRICS_TOKEN
    client = APIClient()

    allowed = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}x")

    assert allowed.status_code == 200
    assert b"gemini_http_requests_total" in allowed.content
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthenticated"


@pytest.mark.django_db
def test_without_a_configured_token_a_bearer_is_only_a_jwt(settings):
    settings.METRICS_TOKEN = ""

    response = APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer ")

    assert response.status_code == 401


@pytest.mark.django_db
def test_http_requests_are_counted_by_route_pattern_not_path(
    admin_api_client, auth_client, session
):
    route = "api/v1/sessions/<uuid:session_id>"
    before = samples(admin_api_client.get("/metrics").content)

    auth_client.get(f"/api/v1/sessions/{session.id}")
    auth_client.get("/api/v1/sessions/00000000-0000-0000-0000-000000000000")
    auth_client.get("/nowhere/at/all")
    after = samples(admin_api_client.get("/metrics").content)

    counted = "gemini_http_requests_total"
    assert (
        value(after, counted, route=route, method="GET", status="200")
        - value(before, counted, route=route, method="GET", status="200")
        == 1
    )
    assert (
        value(after, counted, route=route, method="GET", status="404")
        - value(before, counted, route=route, method="GET", status="404")
        == 1
    )
    assert value(after, counted, route="<unmatched>", method="GET", status="404") > value(
        before, counted, route="<unmatched>", method="GET", status="404"
    )
    assert not any(str(session.id) in dict(labels).get("route", "") for _, labels in after)
    timed = "gemini_http_request_duration_seconds_count"
    assert (
        value(after, timed, route=route, method="GET")
        - value(before, timed, route=route, method="GET")
        == 2
    )


@pytest.mark.django_db(transaction=True)
async def test_a_chat_turn_moves_turn_tool_upstream_token_and_stream_metrics(
    admin_user, user, session, workspace, fake_gemini
):
    admin = await sync_to_async(token_pair_issue)(user=admin_user)
    token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]
    (workspace / "notes.txt").write_text("hello\n")
    before = await scrape(admin["accessToken"])

    response = await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={
            "sessionId": str(session.id),
            "message": scripted(
                {"calls": [{"name": "read_file", "args": {"file_path": "notes.txt"}}]},
                {"text": "It says hello."},
            ),
        },
        token=token,
    )
    assert response.status == 200
    after = await scrape(admin["accessToken"])

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("gemini_turns_finished_total", finish_reason="STOP") == 1
    assert value(after, "gemini_turns_running") == value(before, "gemini_turns_running")
    assert moved("gemini_tool_calls_total", tool="read_file", status="success", source="agent") == 1
    assert moved("gemini_tool_call_duration_seconds_count", tool="read_file") == 1
    assert moved("gemini_upstream_calls_total", outcome="ok") == 2
    assert moved("gemini_upstream_call_duration_seconds_count") == 2
    assert moved("gemini_upstream_first_chunk_seconds_count") == 2
    assert moved("gemini_tokens_total", direction="prompt") > 0
    assert moved("gemini_tokens_total", direction="completion") > 0
    assert (
        moved(
            "gemini_http_requests_total", route="api/v1/chat/message", method="POST", status="200"
        )
        == 1
    )
    # The stream was open while the turn ran and is closed now.
    assert value(after, "gemini_sse_streams_open") == value(before, "gemini_sse_streams_open")


@pytest.mark.django_db(transaction=True)
async def test_upstream_errors_are_counted_by_kind(admin_user, user, session, fake_gemini):
    admin = (await sync_to_async(token_pair_issue)(user=admin_user))["accessToken"]
    token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]
    before = await scrape(admin)

    await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={
            "sessionId": str(session.id),
            "message": scripted({"error": {"code": 400, "message": "Invalid JSON payload."}}),
        },
        token=token,
    )
    after = await scrape(admin)

    assert (
        value(after, "gemini_upstream_errors_total", kind="400")
        - value(before, "gemini_upstream_errors_total", kind="400")
        == 1
    )
    assert (
        value(after, "gemini_upstream_calls_total", outcome="error")
        - value(before, "gemini_upstream_calls_total", outcome="error")
        == 1
    )
    assert (
        value(after, "gemini_turns_finished_total", finish_reason="ERROR")
        - value(before, "gemini_turns_finished_total", finish_reason="ERROR")
        == 1
    )


@pytest.mark.django_db(transaction=True)
async def test_open_websockets_are_counted_while_open(admin_user, user):
    admin = (await sync_to_async(token_pair_issue)(user=admin_user))["accessToken"]
    token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]
    before = value(await scrape(admin), "gemini_websockets_open")

    communicator = WebsocketCommunicator(application, f"/ws/?token={token}")
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    await communicator.receive_json_from(timeout=5)  # authenticated
    during = value(await scrape(admin), "gemini_websockets_open")
    await communicator.disconnect()
    after = value(await scrape(admin), "gemini_websockets_open")

    assert (during - before, after - before) == (1, 0)


@pytest.mark.django_db(transaction=True)
def test_user_run_tools_are_counted_with_their_source(admin_api_client, auth_client, session):
    before = samples(admin_api_client.get("/metrics").content)

    response = auth_client.post(
        "/api/v1/tools/execute",
        {"sessionId": str(session.id), "name": "list_directory", "args": {"dir_path": "."}},
        format="json",
    )
    after = samples(admin_api_client.get("/metrics").content)

    assert response.status_code == 200, response.content
    labels = {"tool": "list_directory", "status": "success", "source": "user"}
    assert (
        value(after, "gemini_tool_calls_total", **labels)
        - value(before, "gemini_tool_calls_total", **labels)
        == 1
    )


MULTIPROCESS_WORKER = textwrap.dedent(
    """
    import sys
    from gemini_server import metrics
    metrics.http_observed(route="health", method="GET", status=200, seconds=0.01)
    metrics.turn_started()
    if sys.argv[1] == "ends":
        metrics.turn_finished(finish_reason="STOP", usage={"promptTokens": 5})
    else:
        print("running", flush=True)
        sys.stdin.read()  # a server process still running its turn, until told to stop
    """
)


def test_several_processes_are_summed_in_multiprocess_mode(tmp_path):
    """Two server processes write to PROMETHEUS_MULTIPROC_DIR; a third exposes their sums."""
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")}
    worker = [sys.executable, "-c", MULTIPROCESS_WORKER]
    exposer = [
        sys.executable,
        "-c",
        "import sys; from gemini_server import metrics; sys.stdout.buffer.write(metrics.exposition()[0])",
    ]
    running = subprocess.Popen(
        [*worker, "runs"],
        cwd=PROJECT_ROOT,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert running.stdout.readline().strip() == "running"
        subprocess.run([*worker, "ends"], cwd=PROJECT_ROOT, env=environment, check=True, timeout=60)
        while_running = samples(
            subprocess.run(
                exposer, cwd=PROJECT_ROOT, env=environment, capture_output=True, check=True
            ).stdout
        )
    finally:
        running.communicate(input="", timeout=60)
    after_all_ended = samples(
        subprocess.run(
            exposer, cwd=PROJECT_ROOT, env=environment, capture_output=True, check=True
        ).stdout
    )

    requests = {"route": "health", "method": "GET", "status": "200"}
    assert value(while_running, "gemini_http_requests_total", **requests) == 2
    assert value(while_running, "gemini_tokens_total", direction="prompt") == 5
    # Live gauges: the process that ended stopped counting; the running one's turn counts.
    assert value(while_running, "gemini_turns_running") == 1
    assert value(after_all_ended, "gemini_turns_running") == 0
    assert value(after_all_ended, "gemini_http_requests_total", **requests) == 2
