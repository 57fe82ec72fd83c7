"""The OpenAPI schema held against the server itself: schemathesis generates requests for every
operation, sends them through the real ASGI application, and every answer must be documented,
be no server error, and match the documented schema, headers and content type.
"""

import json
import uuid
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.services import api_key_create
from gemini_server.schema import ERROR_CODES

pytestmark = pytest.mark.django_db(transaction=True)

# Per operation and generation mode; about a minute for the whole schema on two cores.
EXAMPLES = 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    response_headers_conformance,
    content_type_conformance,
]
# An SSE stream never ends by itself: the client keeps what arrived in this time and hangs up.
# (Other answers get 30 s: a loaded machine is slow, not wrong.)
STREAM_SECONDS = 0.5


def openapi_schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    generated = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(generated))


def describe(found: BaseException) -> str:
    reasons = getattr(found, "exceptions", None) or (found,)
    return "; ".join(f"{type(reason).__name__}: {str(reason)[:400]}" for reason in reasons)


def exchange_all(
    operation, mode, *, timeout: float, headers: dict, answers: Counter, failures: list, **fixed
) -> None:
    """Sends EXAMPLES generated requests for one operation and checks every answer; `fixed`
    (path_parameters=, query=) pins what must name real objects."""

    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def exchange(case):
        import time as _t

        _s = _t.monotonic()
        response = case.call(headers=headers, timeout=timeout)
        _d = _t.monotonic() - _s
        if _d > 1:
            print(
                "SLOW", round(_d, 2), operation.label, mode.value, response.status_code, flush=True
            )
        answers[(operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as found:
            failures.append(
                (
                    operation.label,
                    mode.value,
                    response.status_code,
                    response.text[:200],
                    describe(found),
                )
            )

    exchange()


def real_objects(admin) -> dict:
    """A fresh session of the admin's, another user, and a spare key of the admin's, by their
    path parameter names (each round may delete or change them)."""
    from sessions_app.services import session_create
    from tests.conftest import make_user

    other = make_user(f"target-{uuid.uuid4().hex[:8]}@example.com")
    spare, _ = api_key_create(user=admin, name="spare")
    return {
        "session_id": str(session_create(user=admin).id),
        "user_id": str(other.id),
        "key_id": str(spare.id),
    }


def test_every_error_answer_of_every_operation_is_documented_with_the_error_shape():
    schema = openapi_schema()

    operations = [
        (method, path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]

    assert len(operations) >= 37
    for method, path, operation in operations:
        statuses = {int(status) for status in operation["responses"]}
        assert {429, 500} <= statuses, (method, path)
        if operation.get("security") and {} not in operation["security"]:
            assert 401 in statuses, (method, path)
        if "{" in path:
            assert 404 in statuses, (method, path)
        if "requestBody" in operation:
            assert {400, 413} <= statuses, (method, path)
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                body = response["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    assert schema["components"]["schemas"]["ErrorCodeEnum"]["enum"] == ERROR_CODES


# Raised inside schemathesis's own strategies, not by anything here.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_schemathesis_finds_no_server_error_undocumented_status_or_schema_violation(
    admin_user, settings
):
    from gemini_server.asgi import application

    # The budget of the generated traffic, not the rate limit, is under test here.
    settings.RATE_LIMIT_MAX_REQUESTS = 1_000_000
    settings.LOGIN_RATE_LIMIT_MAX = 1_000_000
    settings.SSE_KEEPALIVE_SECONDS = 0.1
    settings.ALLOW_REGISTRATION = True
    _, raw_key = api_key_create(user=admin_user, name="schemathesis")
    headers = {"X-API-Key": raw_key}
    document = openapi_schema()
    schema = schemathesis.openapi.from_dict(document)
    schema.app = application
    answers, failures = Counter(), []

    for result in schema.get_all_operations():
        operation = result.ok()
        definition = document["paths"][operation.path][operation.method.lower()]
        streams = "text/event-stream" in json.dumps(definition["responses"])
        sending = {
            "timeout": STREAM_SECONDS if streams else 30,
            "headers": headers,
            "answers": answers,
            "failures": failures,
        }
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            exchange_all(operation, mode, **sending)
        # Random ids only ever find nothing; a third round acts on objects that exist.
        parameters = definition.get("parameters", [])
        real = real_objects(admin_user)
        fixed = {}
        if path_names := [p["name"] for p in parameters if p["in"] == "path"]:
            fixed["path_parameters"] = {name: real[name] for name in path_names}
        elif any(p["name"] == "sessionId" for p in parameters):
            fixed["query"] = {"sessionId": real["session_id"]}
        if fixed:
            exchange_all(operation, GenerationMode.POSITIVE, **sending, **fixed)

    operations = {label for label, _ in answers}
    assert len(operations) >= 37
    assert sum(answers.values()) >= len(operations) * EXAMPLES
    kinds = Counter((label, mode, status) for label, mode, status, _, _ in failures)
    assert not failures, "\n".join(
        [f"{len(failures)} failures:", *(f"{n} x {kind}" for kind, n in kinds.most_common())]
        + [" | ".join(map(str, failure)) for failure in failures[:15]]
    )
