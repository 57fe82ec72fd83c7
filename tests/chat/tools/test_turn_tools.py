"""Tools inside a turn, through the real SDK and the fake upstream: edits that recover, the todo
list streamed as an event, binary content sent to the model as gemini-cli sends it."""

import base64

import pytest
from asgiref.sync import sync_to_async

from chat.agent import events as ev
from chat.protocol import GEMINI_EVENTS
from sessions_app.models import Session
from tests.asgi_http import asgi_request
from tests.chat.conftest import history_of, scripted

pytestmark = pytest.mark.django_db(transaction=True)

CODE = (
    "class Greeter:\n"
    "    def greet(self, name):\n"
    "        if not name:\n"
    "            return 'Hello, stranger'\n"
    "        return f'Hello, {name}'\n"
)


async def chat(session, token, message):
    return await asgi_request(
        "POST",
        "/api/v1/chat/message",
        body={"sessionId": str(session.id), "message": message},
        token=token,
    )


def of_type(response, kind: str) -> list[dict]:
    return [frame["data"] for frame in response.frames if frame["type"] == kind]


def sent_responses(fake_gemini) -> list[dict]:
    """The functionResponse parts of the last request the model received, and what follows them."""
    return fake_gemini.requests[-1]["body"]["contents"][-1]["parts"]


@pytest.fixture
async def yolo(make_session):
    return await sync_to_async(make_session)(approvalMode="yolo")


def _workspace(session):
    from sessions_app.workspace import session_workspace

    return session_workspace(session)


async def test_an_indented_edit_recovers(yolo, token, fake_gemini):
    """The model drops the class's indentation; the flexible match re-indents its replacement."""
    (_workspace(yolo) / "greet.py").write_text(CODE)
    edit = {
        "name": "replace",
        "args": {
            "file_path": "greet.py",
            "instruction": "Greet anonymous users as friends.",
            "old_string": "if not name:\n    return 'Hello, stranger'",
            "new_string": "if not name:\n    return 'Hello, friend'",
        },
    }
    response = await chat(yolo, token, scripted({"calls": [edit]}, {"text": "Done."}))

    assert (_workspace(yolo) / "greet.py").read_text() == CODE.replace("stranger", "friend")
    result = of_type(response, "tool_result")[0]
    assert result["status"] == "success"
    expected = (
        "Successfully modified file: /workspace/greet.py (1 replacements). Here is the updated "
        "code:\n" + CODE.replace("stranger", "friend")
    )
    assert result["result"] == expected
    assert sent_responses(fake_gemini)[0]["functionResponse"]["response"] == {"output": expected}


async def test_a_fuzzy_edit_says_where_it_applied(yolo, token, fake_gemini):
    (_workspace(yolo) / "greet.py").write_text(CODE)
    edit = {
        "name": "replace",
        "args": {
            "file_path": "greet.py",
            "instruction": "Use a warmer greeting.",
            "old_string": "        return f'Helo, {name}'",
            "new_string": "        return f'Welcome, {name}'",
        },
    }
    response = await chat(yolo, token, scripted({"calls": [edit]}, {"text": "Done."}))

    assert (_workspace(yolo) / "greet.py").read_text() == CODE.replace(
        "Hello, {name}", "Welcome, {name}"
    )
    result = of_type(response, "tool_result")[0]["result"]
    assert result.endswith(" Applied fuzzy match at line 5.")


async def test_write_todos_is_stored_and_streamed(session, token, fake_gemini):
    todos = [
        {"description": "Read the code", "status": "completed"},
        {"description": "Fix the bug", "status": "in_progress"},
        {"description": "Run the tests", "status": "pending"},
    ]
    call = {"name": "write_todos", "args": {"todos": todos}}
    response = await chat(session, token, scripted({"calls": [call]}, {"text": "On it."}))

    types = [frame["type"] for frame in response.frames]
    assert types.index("todos") == types.index("tool_result") + 1
    assert of_type(response, "todos") == [{"todos": todos}]
    assert of_type(response, "tool_confirmation") == []
    assert of_type(response, "tool_result")[0]["result"] == (
        "Successfully updated the todo list. The current list is now:\n"
        "1. [completed] Read the code\n2. [in_progress] Fix the bug\n3. [pending] Run the tests"
    )
    stored = await sync_to_async(Session.objects.get)(pk=session.id)
    assert stored.todos == todos
    assert GEMINI_EVENTS[ev.TODOS] == "gemini:todos"


async def test_write_todos_refuses_two_tasks_in_progress(session, token, fake_gemini):
    todos = [
        {"description": "a", "status": "in_progress"},
        {"description": "b", "status": "in_progress"},
    ]
    call = {"name": "write_todos", "args": {"todos": todos}}
    response = await chat(session, token, scripted({"calls": [call]}, {"text": "ok"}))
    result = of_type(response, "tool_result")[0]
    assert result["status"] == "error"
    assert result["result"] == 'Invalid parameters: Only one task can be "in_progress" at a time.'
    assert of_type(response, "todos") == []
    cleared = await chat(
        session,
        token,
        scripted({"calls": [{"name": "write_todos", "args": {"todos": []}}]}, {"text": "ok"}),
    )
    assert of_type(cleared, "tool_result")[0]["result"] == "Successfully cleared the todo list."
    assert of_type(cleared, "todos") == [{"todos": []}]


async def test_an_image_goes_to_the_model_beside_the_function_response(session, token, fake_gemini):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
    (_workspace(session) / "shot.png").write_bytes(png)
    call = {"name": "read_file", "args": {"file_path": "shot.png"}}
    await chat(session, token, scripted({"calls": [call]}, {"text": "A screenshot."}))

    parts = sent_responses(fake_gemini)
    assert parts[0]["functionResponse"]["response"] == {
        "output": "Binary content provided (1 item(s))."
    }
    assert parts[1] == {
        "inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}
    }
    history = await history_of(session)
    assert history[2]["parts"][1]["inlineData"]["mimeType"] == "image/png"


async def test_audio_is_injected_after_a_synthetic_model_turn(session, token, fake_gemini):
    """geminiChat.ts: audio cannot ride in a function response, so it follows in a user turn."""
    wav = b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00"
    (_workspace(session) / "note.wav").write_bytes(wav)
    call = {"name": "read_file", "args": {"file_path": "note.wav"}}
    await chat(session, token, scripted({"calls": [call]}, {"text": "A note."}))

    contents = fake_gemini.requests[-1]["body"]["contents"]
    assert contents[-3]["parts"][-1]["functionResponse"]["response"] == {
        "output": "Binary content (audio/wav) read successfully. Content will be injected for "
        "analysis in the next sequence."
    }
    assert contents[-2] == {
        "role": "model",
        "parts": [
            {
                "text": "Binary content received. Proceeding with analysis.",
                "thought": True,
                "thoughtSignature": "skip_thought_signature_validator",
            }
        ],
    }
    assert contents[-1] == {
        "role": "user",
        "parts": [
            {"inlineData": {"mimeType": "audio/wav", "data": base64.b64encode(wav).decode()}}
        ],
    }


def test_tools_run_directly_over_rest_through_the_same_entry_point(auth_client, session):
    """POST /tools/execute: looked up (camelCase too), normalised, validated, run, timed."""
    todos = [{"description": "Ship it", "status": "pending"}]
    response = auth_client.post(
        "/api/v1/tools/execute",
        {"sessionId": str(session.id), "name": "writeTodos", "args": {"todos": todos}},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "write_todos" and body["status"] == "success"
    assert body["result"] == (
        "Successfully updated the todo list. The current list is now:\n1. [pending] Ship it"
    )
    assert isinstance(body["durationMs"], int)
    session.refresh_from_db()
    assert session.todos == todos
    refused = auth_client.post(
        "/api/v1/tools/execute",
        {
            "sessionId": str(session.id),
            "name": "web_fetch",
            "args": {"prompt": "see http://127.0.0.1/"},
        },
        format="json",
    ).json()
    assert refused["status"] == "error"
    assert refused["result"] == "All requested URLs were skipped: [Blocked Host] http://127.0.0.1/"
