"""The audit stores what it is given: values a database refuses are escaped, never dropped."""

import datetime
import decimal
import json
import math
import uuid

import pytest
from asgiref.sync import sync_to_async

from accounts.services import token_pair_issue
from gemini_server.storable import MAX_DEPTH, storable
from monitoring.models import AuditAction, Event, EventType
from monitoring.services import event_record
from tests.asgi_http import asgi_request
from tests.chat.conftest import scripted

pytestmark = pytest.mark.django_db


def nested(depth: int, leaf="bottom"):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("x\x00", "x\\u0000"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("\udfff", "\\udfff"),
        ("plain text, é and 😀", "plain text, é and 😀"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (-math.inf, "-Infinity"),
        (1.5, 1.5),
        (b"\xff\x00ok", "\\xff\\u0000ok"),
        (bytearray(b"abc"), "abc"),
        (decimal.Decimal("2.5"), 2.5),
        (decimal.Decimal("NaN"), "NaN"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (datetime.datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05"),
        ({3, 1, 2}, [1, 2, 3]),
        (("a", None, True), ["a", None, True]),
        (
            {"k\x00": 1, 2: "two", None: 0, True: 1},
            {"k\\u0000": 1, "2": "two", "null": 0, "true": 1},
        ),
        ({1: "int", "1": "text"}, {"1": "int", "1'": "text"}),
    ],
)
def test_values_a_database_refuses_become_visible_text(given, stored):
    assert storable(given) == stored


def test_an_integer_too_long_to_print_is_kept_in_hexadecimal():
    huge = 10**5000

    assert storable({"n": huge}) == {"n": hex(huge)}


def test_structures_past_the_depth_limit_are_kept_as_json_text():
    value = nested(MAX_DEPTH + 10, leaf="x\x00")

    result = storable(value)

    inner = result
    for _ in range(MAX_DEPTH):
        inner = inner[0]
    assert json.loads(inner) == nested(10, leaf="x\\u0000")


def test_a_circular_structure_is_stored_without_looping():
    loop = {"name": "loop"}
    loop["self"] = loop

    assert storable(loop) == {"name": "loop", "self": "[circular reference]"}


def test_a_structure_ten_thousand_levels_deep_is_stored():
    assert storable(nested(10_000))  # written without recursion past MAX_DEPTH


def test_an_event_full_of_unstorable_values_is_recorded_whole(user):
    data = {
        "description": "x\x00",
        "surrogate": "\ud83d alone",
        "ratio": float("nan"),
        "limit": float("-inf"),
        "raw": b"\x00\x01",
        "deep": nested(100),
        "key\x00": "value\x00",
    }

    event = event_record(
        type=EventType.TOOL,
        action=AuditAction.TOOL_CALL,
        user=user,
        user_email="who\x00@example.com",
        data=data,
    )

    stored = Event.objects.get(pk=event.pk)
    assert stored.data["description"] == "x\\u0000"
    assert stored.data["surrogate"] == "\\ud83d alone"
    assert stored.data["ratio"] == "NaN" and stored.data["limit"] == "-Infinity"
    assert stored.data["raw"] == "\\u0000\x01"  # only NUL is refused
    assert stored.data["key\\u0000"] == "value\\u0000"
    assert stored.user_email == "who\\u0000@example.com"
    deep = stored.data["deep"]  # one level down already: inside `data`
    for _ in range(MAX_DEPTH - 1):
        deep = deep[0]
    assert json.loads(deep) == nested(100 - MAX_DEPTH + 1)


@pytest.mark.django_db(transaction=True)  # tools/execute: see tests/chat/test_chat_rest.py
def test_a_tool_call_with_a_nul_in_its_args_runs_and_is_recorded(auth_client, session, workspace):
    response = auth_client.post(
        "/api/v1/tools/execute",
        {
            "sessionId": str(session.id),
            "name": "write_file",
            "args": {"file_path": "nul.txt", "content": "x\u0000y"},
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "success"
    assert (workspace / "nul.txt").read_bytes() == b"x\x00y"
    event = Event.objects.get(type="tool", action="call", session_id=session.id)
    assert event.data["args"] == {"file_path": "nul.txt", "content": "x\\u0000y"}
    assert event.data["status"] == "success"


def test_an_action_outside_the_enumeration_is_refused(user):
    with pytest.raises(ValueError):
        event_record(type=EventType.CHAT, action="note", user=user)
    with pytest.raises(ValueError):
        event_record(type=EventType.CHAT, action=AuditAction.LOGIN, user=user)
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
async def test_a_model_tool_call_with_a_nul_in_its_args_is_recorded(
    make_session, user, fake_gemini
):
    token = (await sync_to_async(token_pair_issue)(user=user))["accessToken"]
    session = await sync_to_async(make_session)(approvalMode="yolo")
    call = {"name": "write_file", "args": {"file_path": "nul.txt", "content": "x\u0000"}}

    response = await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={"sessionId": str(session.id), "message": scripted({"calls": [call]})},
        token=token,
    )

    kinds = [frame["type"] for frame in response.frames]
    assert "error" not in kinds, response.frames
    assert response.frames[-1]["data"]["finishReason"] == "STOP"
    event = await Event.objects.aget(type="tool", action="call", session_id=session.id)
    assert event.data["args"]["content"] == "x\\u0000"
    assert event.data["status"] == "success"
