"""The JSON endpoints around the agent: history, clear, checkpoints, confirm, cancel, and tools."""

import shutil
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat.models import Checkpoint, Message, MessageRole
from chat.turns.store import message_store
from monitoring.models import Event
from sessions_app.models import Session
from tests.asgi_http import asgi_request
from tests.chat.conftest import history_of, scripted

pytestmark = pytest.mark.django_db

RUNNING_TURN = "11111111-1111-4111-8111-111111111111"


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return body["error"]


def say(session, text, role=MessageRole.USER, usage=None):
    return message_store(
        session=session, user=session.user, role=role, parts=[{"text": text}], usage=usage
    )


def turn_running(session):
    Session.objects.filter(pk=session.pk).update(
        turn_id=RUNNING_TURN, turn_heartbeat_at=timezone.now()
    )


# History


def test_history_of_an_empty_session(auth_client, session):
    response = auth_client.get("/api/v1/chat/history", {"sessionId": str(session.id)})

    assert response.status_code == 200
    assert response.json() == {"history": [], "nextCursor": None}


def test_history_lists_messages_in_order_with_their_fields(auth_client, session):
    question = say(session, "What is in main.py?")
    usage = {"promptTokens": 7, "completionTokens": 3, "totalTokens": 10}
    answer = say(session, "A print.", role=MessageRole.MODEL, usage=usage)

    response = auth_client.get("/api/v1/chat/history", {"sessionId": str(session.id)})

    assert response.status_code == 200
    history = response.json()["history"]
    assert all(
        set(item) == {"id", "role", "parts", "text", "createdAt", "usage", "finishReason"}
        for item in history
    )
    assert [(item["id"], item["role"], item["text"]) for item in history] == [
        (str(question.id), "user", "What is in main.py?"),
        (str(answer.id), "model", "A print."),
    ]
    assert history[0]["parts"] == [{"text": "What is in main.py?"}]
    assert history[0]["usage"] is None and history[1]["usage"] == usage
    assert history[0]["createdAt"].endswith("Z")


@pytest.mark.parametrize("query", [{}, {"sessionId": "not-a-uuid"}])
def test_history_needs_a_session_id(auth_client, query):
    response = auth_client.get("/api/v1/chat/history", query)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error" and list(error["details"]) == ["sessionId"]


# Clear


@pytest.mark.django_db(transaction=True)
async def test_clear_empties_history_but_monitoring_keeps_the_record(session, token, fake_gemini):
    chat = await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={"sessionId": str(session.id), "message": scripted({"text": "hi there"})},
        token=token,
    )
    assert chat.status == 200
    assert len(await history_of(session)) == 2

    response = await asgi_request(
        "DELETE", "/api/v1/chat/clear", body={"sessionId": str(session.id)}, token=token
    )

    assert response.status == 200
    assert response.json() == {"ok": True}
    assert await history_of(session) == []
    history = await asgi_request("GET", f"/api/v1/chat/history?sessionId={session.id}", token=token)
    assert history.json() == {"history": [], "nextCursor": None}
    events = Event.objects.filter(session_id=session.id, type="chat")
    kept = await sync_to_async(lambda: list(events.values_list("action", "data")))()
    user_messages = [data for action, data in kept if action == "user_message"]
    assert len(user_messages) == 1 and "hi there" in user_messages[0]["text"]
    assert [data["deleted"] for action, data in kept if action == "history_clear"] == [2]


def test_clear_takes_the_session_id_from_the_query_too(auth_client, session):
    say(session, "hello")

    response = auth_client.delete(f"/api/v1/chat/clear?sessionId={session.id}")

    assert response.status_code == 200
    assert not Message.objects.filter(session_id=session.pk).exists()


def test_clear_while_a_turn_runs_is_a_conflict(auth_client, session):
    say(session, "hello")
    turn_running(session)

    response = auth_client.delete(
        "/api/v1/chat/clear", {"sessionId": str(session.id)}, format="json"
    )

    assert response.status_code == 409
    assert error_of(response)["code"] == "conflict"
    assert Message.objects.filter(session_id=session.pk).count() == 1


# Checkpoints


def test_save_load_and_list_checkpoints(auth_client, session):
    say(session, "first question")
    say(
        session,
        "first answer",
        role=MessageRole.MODEL,
        usage={"promptTokens": 5, "completionTokens": 2, "totalTokens": 7},
    )
    saved_history = auth_client.get("/api/v1/chat/history", {"sessionId": str(session.id)}).json()[
        "history"
    ]

    saved = auth_client.post(
        "/api/v1/chat/save", {"sessionId": str(session.id), "tag": "before-refactor"}, format="json"
    )

    assert saved.status_code == 200
    body = saved.json()
    assert set(body) == {"tag", "messageCount", "createdAt"}
    assert body["tag"] == "before-refactor" and body["messageCount"] == 2

    say(session, "a detour that should be forgotten")
    listing = auth_client.get("/api/v1/chat/checkpoints", {"sessionId": str(session.id)})
    assert listing.status_code == 200
    assert [(c["tag"], c["messageCount"]) for c in listing.json()["checkpoints"]] == [
        ("before-refactor", 2)
    ]

    loaded = auth_client.post(
        "/api/v1/chat/load", {"sessionId": str(session.id), "tag": "before-refactor"}, format="json"
    )

    assert loaded.status_code == 200
    restored = loaded.json()["history"]
    keep = ("role", "parts", "text", "usage")
    assert [{k: item[k] for k in keep} for item in restored] == [
        {k: item[k] for k in keep} for item in saved_history
    ]
    after = auth_client.get("/api/v1/chat/history", {"sessionId": str(session.id)}).json()
    assert after["history"] == restored
    assert Event.objects.filter(
        type="chat", action="checkpoint_load", session_id=session.id
    ).exists()


def test_saving_a_tag_again_replaces_the_snapshot(auth_client, session):
    say(session, "one")
    auth_client.post("/api/v1/chat/save", {"sessionId": str(session.id), "tag": "t"}, format="json")
    say(session, "two")

    again = auth_client.post(
        "/api/v1/chat/save", {"sessionId": str(session.id), "tag": "t"}, format="json"
    )

    assert again.status_code == 200 and again.json()["messageCount"] == 2
    assert Checkpoint.objects.filter(session=session).count() == 1


def test_checkpoints_of_a_session_without_any(auth_client, session):
    response = auth_client.get("/api/v1/chat/checkpoints", {"sessionId": str(session.id)})

    assert response.status_code == 200
    assert response.json() == {"checkpoints": []}


@pytest.mark.parametrize("endpoint", ["save", "load"])
@pytest.mark.parametrize("tag", ["", "../escape", "a/b", "-leading-dash", "x" * 101, None])
def test_bad_tags_are_refused(auth_client, session, endpoint, tag):
    body = {"sessionId": str(session.id)} | ({} if tag is None else {"tag": tag})

    response = auth_client.post(f"/api/v1/chat/{endpoint}", body, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error" and list(error["details"]) == ["tag"]
    assert not Checkpoint.objects.exists()


def test_loading_an_unknown_tag_is_not_found(auth_client, session):
    say(session, "still here")

    response = auth_client.post(
        "/api/v1/chat/load", {"sessionId": str(session.id), "tag": "never-saved"}, format="json"
    )

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found" and error["details"] == {"tag": "never-saved"}
    assert Message.objects.filter(session_id=session.pk).count() == 1


def test_loading_while_a_turn_runs_is_a_conflict(auth_client, session):
    auth_client.post("/api/v1/chat/save", {"sessionId": str(session.id), "tag": "t"}, format="json")
    say(session, "hello")
    turn_running(session)

    response = auth_client.post(
        "/api/v1/chat/load", {"sessionId": str(session.id), "tag": "t"}, format="json"
    )

    assert response.status_code == 409
    assert Message.objects.filter(session_id=session.pk).count() == 1


# Confirm and cancel


def confirm(client, session, call_id="read_file-1-abc", outcome="proceed_once"):
    return client.post(
        "/api/v1/chat/confirm",
        {"sessionId": str(session.id), "callId": call_id, "outcome": outcome},
        format="json",
    )


def test_confirm_without_a_running_turn_is_a_conflict(auth_client, session):
    response = confirm(auth_client, session)

    assert response.status_code == 409
    assert error_of(response)["code"] == "conflict"


def test_confirm_of_an_unknown_call_is_not_found(auth_client, session):
    turn_running(session)

    response = confirm(auth_client, session, call_id="write_file-1-nope")

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found" and error["details"] == {"callId": "write_file-1-nope"}


def test_confirm_of_a_call_already_answered_is_not_found(auth_client, session):
    call = {"id": "write_file-1-done", "name": "write_file", "args": {}}
    message_store(
        session=session, user=session.user, role=MessageRole.MODEL, parts=[{"functionCall": call}]
    )
    message_store(
        session=session,
        user=session.user,
        role=MessageRole.TOOL,
        parts=[{"functionResponse": {"id": call["id"], "name": "write_file", "response": {}}}],
    )
    turn_running(session)

    response = confirm(auth_client, session, call_id=call["id"])

    assert response.status_code == 404


@pytest.mark.parametrize("outcome", ["yes", "", "PROCEED_ONCE"])
def test_confirm_with_a_bad_outcome_is_a_validation_error(auth_client, session, outcome):
    turn_running(session)

    response = confirm(auth_client, session, outcome=outcome)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error" and list(error["details"]) == ["outcome"]


def test_cancel_without_a_running_turn_is_a_conflict(auth_client, session):
    response = auth_client.post(
        "/api/v1/chat/cancel", {"sessionId": str(session.id)}, format="json"
    )

    assert response.status_code == 409
    assert error_of(response)["code"] == "conflict"


def test_cancel_needs_a_session_id(auth_client):
    response = auth_client.post("/api/v1/chat/cancel", {}, format="json")

    assert response.status_code == 400
    assert list(error_of(response)["details"]) == ["sessionId"]


# Tools

TOOL_TABLE = {
    "read_file": ({"file_path"}, {"start_line", "end_line"}, "read"),
    "read_many_files": ({"include"}, {"exclude"}, "read"),
    "list_directory": ({"dir_path"}, {"ignore"}, "read"),
    "glob": ({"pattern"}, {"dir_path", "case_sensitive"}, "read"),
    "grep_search": (
        {"pattern"},
        {"dir_path", "include_pattern", "case_sensitive", "fixed_strings", "context", "no_ignore"},
        "read",
    ),
    "write_file": ({"file_path", "content"}, set(), "edit"),
    "replace": (
        {"file_path", "old_string", "new_string"},
        {"instruction", "allow_multiple"},
        "edit",
    ),
    "save_memory": ({"fact"}, set(), "edit"),
    "run_shell_command": ({"command"}, {"description", "dir_path", "is_background"}, "execute"),
    "write_todos": ({"todos"}, set(), "other"),
    "google_web_search": ({"query"}, set(), "read"),
    "web_fetch": ({"prompt"}, set(), "fetch"),
}


def test_tool_list_has_every_tool_of_the_contract(auth_client):
    response = auth_client.get("/api/v1/tools")

    assert response.status_code == 200
    tools = {tool["name"]: tool for tool in response.json()["tools"]}
    assert set(tools) == set(TOOL_TABLE)
    for name, (required, optional, kind) in TOOL_TABLE.items():
        tool = tools[name]
        assert {"name", "aliases", "description", "parameters", "kind"} <= set(tool), name
        assert tool["kind"] == kind, name
        assert isinstance(tool["description"], str) and tool["description"], name
        assert isinstance(tool["aliases"], list), name
        assert tool["parameters"]["type"].lower() == "object", name
        assert set(tool["parameters"]["required"]) == required, name
        assert required | optional <= set(tool["parameters"]["properties"]), name
    assert "search_file_content" in tools["grep_search"]["aliases"]
    assert "readFile" in tools["read_file"]["aliases"]


def test_a_viewer_may_read_the_tool_list(viewer):
    from tests.conftest import client_for

    response = client_for(viewer).get("/api/v1/tools")

    assert response.status_code == 200
    assert len(response.json()["tools"]) == len(TOOL_TABLE)


def test_tool_list_uses_camel_case_when_a_tool_is_unavailable(auth_client, settings):
    settings.SHELL_SANDBOX = "chroot"

    response = auth_client.get("/api/v1/tools")

    shell = next(t for t in response.json()["tools"] if t["name"] == "run_shell_command")
    assert shell["available"] is False
    assert [key for key in shell if "_" in key] == []
    assert (
        "sandbox" in shell["unavailableReason"].lower()
        or "SHELL_SANDBOX" in shell["unavailableReason"]
    )


# tools/execute runs the async tool service from a sync view; the ORM calls inside it go through
# database_sync_to_async, which closes the request thread's connection when it deems it stale,
# and so would also close a test's surrounding transaction on PostgreSQL. These tests commit.
commits = pytest.mark.django_db(transaction=True)


def execute(client, session, name, args):
    return client.post(
        "/api/v1/tools/execute",
        {"sessionId": str(session.id), "name": name, "args": args},
        format="json",
    )


def assert_result(response, name, status="success") -> str:
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"callId", "name", "status", "result", "durationMs"}
    assert body["name"] == name and body["status"] == status
    assert body["callId"] and isinstance(body["durationMs"], int) and body["durationMs"] >= 0
    return body["result"]


@commits
def test_execute_past_half_the_thread_pool_is_refused_not_queued(auth_client, session, workspace):
    from chat import views

    (workspace / "notes.txt").write_text("x")
    held = 0
    while views._direct_runs.acquire(blocking=False):  # every permit taken by runs under way
        held += 1
    try:
        refused = execute(auth_client, session, "read_file", {"file_path": "notes.txt"})
    finally:
        for _ in range(held):
            views._direct_runs.release()

    assert held >= 1
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "1"
    assert (
        assert_result(
            execute(auth_client, session, "read_file", {"file_path": "notes.txt"}), "read_file"
        )
        == "x"
    )


@commits
@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("read_file", {"file_path": "notes.txt"}),
        ("read_file", {"file_path": "/workspace/notes.txt"}),
        ("readFile", {"path": "notes.txt"}),
    ],
)
def test_execute_read_file(auth_client, session, workspace, name, args):
    (workspace / "notes.txt").write_text("alpha\nbeta\n")

    result = assert_result(execute(auth_client, session, name, args), "read_file")

    assert result == "alpha\nbeta\n"


@commits
def test_execute_write_file(auth_client, session, workspace):
    response = execute(
        auth_client, session, "write_file", {"file_path": "src/new.py", "content": "x = 1\n"}
    )

    assert_result(response, "write_file")
    assert (workspace / "src" / "new.py").read_text() == "x = 1\n"


@commits
def test_execute_list_directory(auth_client, session, workspace):
    (workspace / "src").mkdir()
    (workspace / "README.md").write_text("hi")

    result = assert_result(
        execute(auth_client, session, "list_directory", {"dir_path": "."}), "list_directory"
    )

    assert "src" in result and "README.md" in result


@commits
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_execute_run_shell_command(auth_client, session, workspace):
    response = execute(auth_client, session, "run_shell_command", {"command": "echo hi"})

    result = assert_result(response, "run_shell_command")
    assert "hi" in result


@commits
def test_execute_unknown_tool_is_not_found(auth_client, session):
    response = execute(auth_client, session, "format_disk", {})

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found" and error["details"] == {"name": "format_disk"}
    assert not Event.objects.filter(type="tool").exists()


@commits
def test_execute_with_bad_args_is_a_tool_error(auth_client, session):
    response = execute(auth_client, session, "read_file", {})

    result = assert_result(response, "read_file", status="error")
    assert result == "params must have required property 'file_path'"
    event = Event.objects.get(type="tool", action="call", session_id=session.id)
    assert event.data["status"] == "error"


@commits
def test_execute_outside_the_workspace_is_a_tool_error(auth_client, session):
    response = execute(auth_client, session, "read_file", {"file_path": "/etc/passwd"})

    result = assert_result(response, "read_file", status="error")
    assert "root:" not in result


@pytest.mark.parametrize("args", [["notes.txt"], "notes.txt", 7])
def test_execute_with_args_that_are_not_an_object_is_refused(auth_client, session, args):
    response = execute(auth_client, session, "read_file", args)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error" and list(error["details"]) == ["args"]


@commits
def test_execute_in_an_expired_session_is_gone(auth_client, session, workspace):
    Session.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = execute(
        auth_client, session, "write_file", {"file_path": "late.txt", "content": "x"}
    )

    assert response.status_code == 410
    assert error_of(response)["code"] == "gone"
    assert not (workspace / "late.txt").exists()


@commits
def test_a_tool_call_is_recorded_as_the_users(auth_client, session, workspace, user):
    (workspace / "notes.txt").write_text("alpha\n")

    body = execute(auth_client, session, "readFile", {"path": "notes.txt"}).json()

    event = Event.objects.get(type="tool", action="call", session_id=session.id)
    assert event.action == "call"
    assert event.user == user
    assert event.data["source"] == "user"
    assert event.data["callId"] == body["callId"]
    assert event.data["name"] == "read_file"
    assert event.data["args"] == {"path": "notes.txt"}
    assert event.data["status"] == "success"
    assert event.data["resultExcerpt"] == "alpha\n"


@commits
def test_a_client_gone_before_the_first_frame_leaves_the_session_free(user, session):
    """The response is closed without being read (the client hung up as it was sent): the
    turn, which starts when read, never started, and its claim must not lock the session."""
    from rest_framework.test import APIRequestFactory, force_authenticate

    from chat.views import ChatMessageView

    request = APIRequestFactory().post(
        "/api/v1/chat/message",
        {"sessionId": str(session.id), "message": "hello"},
        format="json",
        HTTP_ACCEPT="text/event-stream",
    )
    force_authenticate(request, user=user)
    response = ChatMessageView.as_view()(request)
    assert response.status_code == 200
    assert Session.objects.get(pk=session.id).turn_id is not None

    response.close()

    assert Session.objects.get(pk=session.id).turn_id is None
    assert not Message.objects.filter(session=session).exists()
