"""The foundation: health probes, the one error shape, CORS, the OpenAPI schema, production safety."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from channels.layers import channel_layers
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from monitoring.models import Event
from tests.failing_urls import SECRET_IN_THE_TRACE

pytestmark = pytest.mark.django_db

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ALLOWED_ORIGIN = "http://localhost:3001"
STRONG_SECRET_KEY = (
    "prod-secret-key-5c7f0a9e1d3b4c6a8e2f7d9b1a3c5e7f9d1b3a5c7e9f1d3b5a7c9e1f3d5b7a9"
)
STRONG_JWT_SECRET = (
    "prod-jwt-secret-8e1f3d5b7a9c1e3f5d7b9a1c3e5f7d9b1a3c5e7f9d1b3a5c7e9f1d3b5a7c9e1"
)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


def manage(*args, env: dict) -> subprocess.CompletedProcess:
    """Runs manage.py in a fresh process, with exactly the environment a deployment would give it."""
    environment = {
        k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "JWT_SECRET", "DJANGO_DEBUG"}
    }
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


# Health


def test_health_answers_ok_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_needs_no_credentials_even_with_a_bad_one(client):
    response = client.get("/health", HTTP_AUTHORIZATION="Bearer garbage")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/health", "/health/ready"])
def test_health_refuses_other_methods_in_the_error_shape(path):
    # As a real client meets it: with CSRF checks on, a POST still gets the 405 in the shape.
    response = Client(enforce_csrf_checks=True).post(path)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details"}
    assert "POST" in body["error"]["message"]


# The probe reaches the database through channels' database_sync_to_async, which closes
# connections around each call: only a transactional test database survives that on PostgreSQL.
@pytest.mark.django_db(transaction=True)
def test_ready_names_the_checks_that_passed(client):
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "channelLayer": "ok"},
    }


@pytest.fixture
def broken_channel_layer(settings):
    """A Redis channel layer on a port where nothing listens."""
    channel_layers.backends.clear()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    yield
    channel_layers.backends.clear()


@pytest.mark.django_db(transaction=True)
def test_ready_is_503_naming_a_broken_channel_layer(client, broken_channel_layer):
    response = client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "upstream_unavailable"
    assert "channelLayer" in body["error"]["message"]
    assert "database" not in body["error"]["message"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["channelLayer"].startswith("failed")
    assert "127.0.0.1:1" not in response.content.decode()


# One error shape


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing", "/nowhere", "/api/v2/sessions"])
def test_unknown_url_is_a_json_404(client, path):
    error = assert_error(client.get(path), 404, "not_found")

    assert error["details"] == {}


def test_wrong_method_on_an_api_endpoint_keeps_the_shape(client):
    response = client.get("/api/v1/auth/login")

    assert response.status_code == 405
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details"}
    assert "GET" in body["error"]["message"]


@pytest.fixture
def failing_urls(settings):
    settings.ROOT_URLCONF = "tests.failing_urls"


@pytest.mark.parametrize("path", ["/test-failures/api", "/test-failures/plain"])
def test_unexpected_exception_is_500_internal_without_a_trace(failing_urls, path):
    client = Client(raise_request_exception=False)

    response = client.get(path)

    error = assert_error(response, 500, "internal")
    assert error["message"] == "Internal server error"
    assert error["details"] == {}
    text = response.content.decode()
    for leak in (SECRET_IN_THE_TRACE, "Traceback", "RuntimeError", "failing_urls"):
        assert leak not in text


@pytest.mark.parametrize("path", ["/test-failures/api", "/test-failures/plain"])
def test_unexpected_exception_is_recorded_as_an_error_event(failing_urls, path):
    Client(raise_request_exception=False).get(path)

    event = Event.objects.get(type="error")
    assert event.action == "internal_error"
    assert event.data["path"] == path
    assert event.data["method"] == "GET"
    assert event.data["exception"] == "RuntimeError"
    assert SECRET_IN_THE_TRACE not in json.dumps(event.data)


# CORS


def test_preflight_from_the_allowed_origin_is_answered(client):
    response = client.options(
        "/api/v1/auth/login",
        HTTP_ORIGIN=ALLOWED_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, authorization, x-api-key",
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    for header in ("content-type", "authorization", "x-api-key", "last-event-id"):
        assert header in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_preflight_from_another_origin_gets_no_cors_headers(client):
    response = client.options(
        "/api/v1/auth/login",
        HTTP_ORIGIN="https://evil.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
    )

    assert "Access-Control-Allow-Origin" not in response.headers


def test_simple_request_from_the_allowed_origin_carries_the_header(client):
    allowed = client.get("/health", HTTP_ORIGIN=ALLOWED_ORIGIN)
    other = client.get("/health", HTTP_ORIGIN="https://evil.example")

    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Access-Control-Allow-Origin" not in other.headers


CORS_PROBE = textwrap.dedent(
    """
    import json, django
    django.setup()
    from django.test import Client
    answers = {}
    for origin in ["https://a.example", "https://b.example", "https://c.example"]:
        response = Client().options(
            "/api/v1/auth/login",
            HTTP_ORIGIN=origin,
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        )
        answers[origin] = response.headers.get("Access-Control-Allow-Origin")
    print(json.dumps(answers))
    """
)


@pytest.mark.parametrize(
    "value", ["https://a.example,https://b.example", "https://a.example, https://b.example"]
)
def test_cors_origin_takes_a_comma_separated_list(value):
    result = subprocess.run(
        [sys.executable, "-c", CORS_PROBE],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "CORS_ORIGIN": value,
            "DJANGO_SETTINGS_MODULE": "gemini_server.settings",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "https://a.example": "https://a.example",
        "https://b.example": "https://b.example",
        "https://c.example": None,
    }


# OpenAPI


def _api_v1_paths() -> set[str]:
    """Every route under /api/v1/ in the URLconf, written as OpenAPI writes paths."""
    found = set()

    def walk(patterns, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                found.add(route)

    walk(get_resolver().url_patterns, "/")
    return {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        for route in found
        if route.startswith("/api/v1/")
    }


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_schema_lists_every_api_path(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "gemini-server API"
    expected = _api_v1_paths()
    assert "/api/v1/auth/api-keys/{key_id}/rotate" in expected
    assert expected - set(schema["paths"]) == set()


@pytest.mark.parametrize(
    ("path", "status", "request_fields", "response_fields"),
    [
        (
            "/api/v1/auth/login",
            "200",
            {"email", "password"},
            {"accessToken", "refreshToken", "user"},
        ),
        ("/api/v1/auth/refresh", "200", {"refreshToken"}, {"accessToken", "expiresIn"}),
        (
            "/api/v1/auth/api-key",
            "201",
            {"email", "password", "name", "expiresInDays"},
            {"apiKey", "prefix"},
        ),
        ("/api/v1/auth/register", "201", {"email", "password", "name"}, {"id", "email", "role"}),
        ("/api/v1/auth/api-keys/{key_id}/rotate", "201", {"graceHours"}, {"apiKey", "prefix"}),
        ("/api/v1/users", "201", {"email", "password", "name", "role"}, {"id", "email", "role"}),
    ],
)
def test_schema_describes_auth_bodies(schema, path, status, request_fields, response_fields):
    def resolve(node):
        while "$ref" in node:
            node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
        return node

    operation = schema["paths"][path]["post"]
    request = resolve(operation["requestBody"]["content"]["application/json"]["schema"])
    response = resolve(operation["responses"][status]["content"]["application/json"]["schema"])

    assert request_fields <= set(request["properties"])
    assert response_fields <= set(response["properties"])


def test_schema_declares_both_security_schemes(schema):
    schemes = schema["components"]["securitySchemes"]

    jwt = next(s for s in schemes.values() if s["type"] == "http")
    api_key = next(s for s in schemes.values() if s["type"] == "apiKey")
    assert jwt["scheme"] == "bearer"
    assert jwt["bearerFormat"] == "JWT"
    assert api_key["in"] == "header"
    assert api_key["name"] == "X-API-Key"
    me_security = schema["paths"]["/api/v1/auth/me"]["get"]["security"]
    assert {name for requirement in me_security for name in requirement} == set(schemes)


def test_docs_page_renders(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger" in response.content.lower()
    assert b"/api/schema/" in response.content


def test_spectacular_validates_without_warnings():
    result = manage("spectacular", "--validate", "--fail-on-warn", "--file", os.devnull, env={})

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr


# Production safety


def test_deploy_check_is_clean_with_production_settings():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DJANGO_DEBUG": "false",
            "TLS": "true",
            "SECRET_KEY": STRONG_SECRET_KEY,
            "JWT_SECRET": STRONG_JWT_SECRET,
        },
    )

    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "WARNINGS" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("missing", "env"),
    [
        ("SECRET_KEY", {"JWT_SECRET": STRONG_JWT_SECRET}),
        (
            "SECRET_KEY",
            {
                "SECRET_KEY": "dev-only-secret-key-change-me-0123456789-abcdefghijklmnopqrstuvwxyz",
                "JWT_SECRET": STRONG_JWT_SECRET,
            },
        ),
        ("SECRET_KEY", {"SECRET_KEY": "", "JWT_SECRET": STRONG_JWT_SECRET}),
        ("JWT_SECRET", {"SECRET_KEY": STRONG_SECRET_KEY}),
        (
            "JWT_SECRET",
            {
                "SECRET_KEY": STRONG_SECRET_KEY,
                "JWT_SECRET": "dev-only-jwt-secret-change-me-0123456789-abcdefghijklmnopqrstuvwxyz",
            },
        ),
    ],
    ids=["no-secret-key", "dev-secret-key", "empty-secret-key", "no-jwt-secret", "dev-jwt-secret"],
)
def test_production_refuses_to_start_with_a_default_secret(missing, env):
    result = manage("check", env={"DJANGO_DEBUG": "false", **env})

    assert result.returncode != 0
    assert missing in result.stderr
    assert "ImproperlyConfigured" in result.stderr


@pytest.mark.parametrize(
    ("tls", "https_on"),
    [
        # Plain HTTP (`docker run -p 3000:3000`): no redirect, no HSTS, cookies a browser sends back.
        (None, False),
        ("false", False),
        # Behind a TLS proxy: redirect, HSTS, Secure cookies, X-Forwarded-Proto trusted.
        ("true", True),
    ],
)
def test_production_https_settings_follow_tls(tls, https_on):
    probe = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.DEBUG, s.ALLOWED_HOSTS, s.SECURE_SSL_REDIRECT, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS > 0, "
        "s.SECURE_PROXY_SSL_HEADER is not None]))"
    )
    environment = {
        **os.environ,
        "DJANGO_DEBUG": "false",
        "SECRET_KEY": STRONG_SECRET_KEY,
        "JWT_SECRET": STRONG_JWT_SECRET,
        "DJANGO_SETTINGS_MODULE": "gemini_server.settings",
    }
    for name in ("ALLOWED_HOSTS", "TLS", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"):
        environment.pop(name, None)
    if tls is not None:
        environment["TLS"] = tls

    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [False, ["localhost", "127.0.0.1"]] + [https_on] * 5


HOST_PROBE = textwrap.dedent(
    """
    import json, django
    django.setup()
    from django.test import Client
    hosts = ["api.example.com", "localhost", "evil.example"]
    print(json.dumps({host: Client(HTTP_HOST=host).get("/health").status_code for host in hosts}))
    """
)


@pytest.mark.parametrize("value", ["localhost,api.example.com", "localhost, api.example.com"])
def test_allowed_hosts_takes_a_comma_separated_list(value):
    result = subprocess.run(
        [sys.executable, "-c", HOST_PROBE],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "gemini_server.settings",
            "DJANGO_DEBUG": "false",
            "SECRET_KEY": STRONG_SECRET_KEY,
            "JWT_SECRET": STRONG_JWT_SECRET,
            "ALLOWED_HOSTS": value,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers == {"api.example.com": 200, "localhost": 200, "evil.example": 400}


def test_a_request_for_an_unknown_host_is_a_json_400(client, settings):
    settings.ALLOWED_HOSTS = ["api.example.com"]

    response = client.get("/api/v1/auth/me")

    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize(("value", "seconds"), [("30m", 1800), ("12h", 43200), ("7d", 604800)])
def test_jwt_expires_in_sets_the_token_lifetime(value, seconds):
    probe = (
        "import django, json; django.setup(); "
        "from accounts.models import User; from accounts.services import token_pair_issue; "
        "from rest_framework_simplejwt.tokens import AccessToken; "
        "pair = token_pair_issue(user=User(email='a@example.com')); "
        "token = AccessToken(pair['accessToken']); "
        "print(json.dumps([pair['expiresIn'], token['exp'] - token['iat']]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "gemini_server.settings",
            "JWT_EXPIRES_IN": value,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [seconds, seconds]


def test_an_unreadable_jwt_expires_in_refuses_to_start():
    result = manage("check", env={"JWT_EXPIRES_IN": "a week"})

    assert result.returncode != 0
    assert "a week" in result.stderr


def test_swagger_ui_assets_are_served_by_this_server(client):
    page = client.get("/api/docs/").content.decode()

    assert "cdn.jsdelivr.net" not in page
    bundle = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert bundle in page
    # The server serves it through ASGIStaticFilesHandler, which looks files up with the finders.
    from django.contrib.staticfiles import finders

    assert finders.find(bundle.removeprefix("/static/")) is not None
