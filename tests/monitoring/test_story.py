"""Issue 5 end to end: one engineer's day, and the audit trail that an admin reads afterwards."""

import pytest
from asgiref.sync import sync_to_async

from accounts.services import token_pair_issue
from tests.asgi_http import asgi_request
from tests.monitoring.conftest import as_tuples, event_rows, secrets_found

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_trail_holds_exactly_what_happened_in_order_and_no_secret(story_runner):
    story = await story_runner()

    rows = await sync_to_async(event_rows)()

    assert as_tuples(rows) == story.expected
    engineer_id = str(story.engineer.id)
    for row in rows:
        who = story.admin if row["user_email"] == story.admin.email else story.engineer
        assert row["user_id"] == str(who.id), row
        # Expiry is the cleanup job's doing, not a request's: it has no client address.
        expected_ip = None if row["action"] == "expire" else "127.0.0.1"
        assert row["ip"] == expected_ip, row
    assert secrets_found(rows, story.secrets) == []

    by_action = {}
    for row in rows:
        by_action.setdefault((row["type"], row["action"]), []).append(row["data"])
    # The pasted key and token were cut out of the prompt, the rest of it kept.
    first_prompt = by_action[("chat", "user_message")][0]["text"]
    assert first_prompt.startswith("Deploy with [redacted] and [redacted]")
    call = by_action[("tool", "call")][0]
    assert call["name"] == "write_file"
    assert call["args"] == {"file_path": "out.txt", "content": "hi\n"}
    assert call["status"] == "success" and call["source"] == "agent"
    assert isinstance(call["durationMs"], int) and call["durationMs"] >= 0
    assert call["confirmation"] == {
        "outcome": "proceed_once",
        "userId": engineer_id,
        "userEmail": story.engineer.email,
    }
    first_answer, second_answer = by_action[("chat", "model_response")]
    assert first_answer["toolCalls"] == ["write_file"]
    assert second_answer["text"] == "Wrote it." and second_answer["finishReason"] == "STOP"
    for answer in (first_answer, second_answer):
        usage = answer["usage"]
        assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"] > 0
    assert by_action[("error", "upstream_failure")][0]["code"] == "upstream_unavailable"
    assert by_action[("auth", "login_failed")][0]["email"] == story.engineer.email
    assert by_action[("auth", "user_update")][0]["changes"] == {"name": "Renamed"}
    assert by_action[("auth", "user_update")][0]["targetUserId"] == engineer_id


async def test_the_api_shows_the_same_trail_newest_first(story_runner):
    story = await story_runner()
    admin_token = (await sync_to_async(token_pair_issue)(user=story.admin))["accessToken"]

    response = await asgi_request("GET", "/api/v1/monitoring/events?limit=1000", token=admin_token)

    assert response.status == 200
    events = response.json()["events"]
    assert response.json()["nextCursor"] is None
    assert [(e["type"], e["action"], e["userEmail"], e["sessionId"]) for e in events] == list(
        reversed(story.expected)
    )
    assert secrets_found(events, story.secrets) == []
