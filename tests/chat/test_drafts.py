"""Answers kept as they stream, and turns left half-done by a server that died."""

import asyncio
import uuid
from contextlib import contextmanager, suppress
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.db.backends.signals import connection_created
from django.utils import timezone

from chat.models import Message, MessageRole, TurnDecision
from chat.turns.slot import turn_claim_own, turn_claims_free_dead, turn_end_store
from chat.turns.store import StepWrite, message_store
from gemini_server.workers import worker_id
from sessions_app.models import Session
from tests.asgi_http import asgi_request
from tests.chat.conftest import history_of, scripted

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/api/v1/chat/message"
DEAD_WORKER = "a-host-4242-deadbeef"


async def chat(session, token, message):
    return await asgi_request(
        "POST", CHAT, body={"sessionId": str(session.id), "message": message}, token=token
    )


async def shown_history(session, token) -> list[dict]:
    """The history as GET /chat/history shows it."""
    response = await asgi_request(
        "GET", f"/api/v1/chat/history?sessionId={session.id}", token=token
    )
    assert response.status == 200
    return response.json()["history"]


def model_rows(session) -> list[Message]:
    return list(Message.objects.filter(session_id=session.id, role=MessageRole.MODEL))


async def test_a_long_answer_is_stored_while_it_streams(session, token, fake_gemini):
    words = [f"word{n} " for n in range(8)]
    turn = asyncio.create_task(chat(session, token, scripted({"text": words, "delay": 0.4})))
    drafts = []
    while not turn.done():
        rows = await sync_to_async(model_rows)(session)
        if rows and rows[0].finish_reason == "STREAMING":
            drafts.append(rows[0].text)
        await asyncio.sleep(0.1)
    response = await turn

    # The partial answer was in the database before the end, and grew.
    assert drafts, "no draft was stored while the answer streamed"
    assert all("".join(words).startswith(text) for text in drafts)
    assert 0 < len(drafts[0]) < len("".join(words))
    # One row, finalized in place: the draft became the answer.
    rows = await sync_to_async(model_rows)(session)
    assert len(rows) == 1
    assert rows[0].text == "".join(words) and rows[0].finish_reason == "STOP"
    done = response.frames[-1]["data"]
    assert done["messageId"] == str(rows[0].id)
    history = await history_of(session)
    assert history[-1]["finishReason"] == "STOP"


@contextmanager
def statements_on_every_thread():
    """SQL run on any thread's connection (a turn's database work runs on asgiref's threads)."""
    seen: list[str] = []

    def record(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    def attach(sender, connection, **kwargs):
        if record not in connection.execute_wrappers:
            connection.execute_wrappers.append(record)

    connection_created.connect(attach)
    try:
        yield seen
    finally:
        connection_created.disconnect(attach)
        for wrapper in connections.all(initialized_only=True):
            with suppress(ValueError):
                wrapper.execute_wrappers.remove(record)


async def test_a_short_answer_is_written_once(session, token, fake_gemini, monkeypatch):
    # The answer comes before the question is due on its own (a loaded machine may take 50 ms).
    monkeypatch.setattr("chat.turns.loop.USER_STORE_DELAY", 30)
    with statements_on_every_thread() as statements:
        response = await chat(session, token, scripted({"text": ["quick ", "answer"]}))

    assert response.frames[-1]["data"]["finishReason"] == "STOP"
    writes = [sql for sql in statements if '"chat_message"' in sql]
    # The question and the answer, in one INSERT: the answer ended the turn before the question
    # was due to be stored on its own.
    assert len([sql for sql in writes if sql.startswith("INSERT")]) == 1
    assert not [sql for sql in writes if sql.startswith("UPDATE")]
    stored = await sync_to_async(list)(
        Message.objects.filter(session=session).order_by("seq").values_list("role", "text")
    )
    assert stored == [(MessageRole.USER, stored[0][1]), (MessageRole.MODEL, "quick answer")]


def _half_done_turn(session, *, heartbeat_age: timedelta, with_call: bool = True) -> Message:
    """What a server that died mid-answer leaves: a claim, the question, a draft answer."""
    message_store(session=session, user=session.user, role=MessageRole.USER, parts=[{"text": "q"}])
    parts = [{"text": "half an ans"}]
    if with_call:
        parts.append(
            {"functionCall": {"id": "read_file-1", "name": "read_file", "args": {"file_path": "a"}}}
        )
    draft = Message.objects.create(
        session_id=session.id,
        role=MessageRole.MODEL,
        parts=parts,
        text="half an ans",
        finish_reason="STREAMING",
    )
    Session.objects.filter(pk=session.id).update(
        turn_id=uuid.uuid4(),
        turn_worker=DEAD_WORKER,
        turn_heartbeat_at=timezone.now() - heartbeat_age,
    )
    return draft


async def test_history_reads_interrupted_when_the_turns_server_died(session, token):
    await sync_to_async(_half_done_turn)(session, heartbeat_age=timedelta(minutes=10))

    history = await shown_history(session, token)

    assert history[-1]["role"] == "model"
    assert history[-1]["text"] == "half an ans"
    assert history[-1]["finishReason"] == "INTERRUPTED"


async def test_a_draft_of_a_running_turn_reads_as_unfinished(session, token):
    await sync_to_async(_half_done_turn)(session, heartbeat_age=timedelta(0))
    await sync_to_async(Session.objects.filter(pk=session.id).update)(turn_worker=worker_id())

    history = await shown_history(session, token)

    assert history[-1]["finishReason"] is None


async def test_the_next_message_takes_over_and_closes_the_half_done_turn(
    session, token, fake_gemini
):
    draft = await sync_to_async(_half_done_turn)(session, heartbeat_age=timedelta(minutes=10))

    response = await chat(session, token, scripted({"text": "fresh answer"}))

    assert response.status == 200
    assert response.frames[-1]["data"]["finishReason"] == "STOP"
    await sync_to_async(draft.refresh_from_db)()
    assert draft.finish_reason == "INTERRUPTED"
    # The dangling call got its answer in the stored history, and the model saw it answered.
    history = await history_of(session)
    assert [item["role"] for item in history] == ["user", "model", "tool", "user", "model"]
    response_part = history[2]["parts"][0]["functionResponse"]
    assert (
        response_part["id"] == "read_file-1" and "interrupted" in response_part["response"]["error"]
    )
    contents = fake_gemini.requests[-1]["body"]["contents"]
    assert contents[2]["parts"][0]["functionResponse"]["id"] == "read_file-1"
    from monitoring.models import Event

    recorded = await sync_to_async(
        lambda: Event.objects.filter(
            action="model_response", session_id=session.id, data__finishReason="INTERRUPTED"
        ).count()
    )()
    assert recorded == 1


async def test_cancel_frees_a_dead_turn_and_closes_it(session, token):
    draft = await sync_to_async(_half_done_turn)(
        session, heartbeat_age=timedelta(minutes=10), with_call=False
    )

    cancel = await asgi_request(
        "POST", "/api/v1/chat/cancel", body={"sessionId": str(session.id)}, token=token
    )

    assert cancel.status == 200
    await sync_to_async(draft.refresh_from_db)()
    assert draft.finish_reason == "INTERRUPTED"
    assert (await sync_to_async(Session.objects.get)(pk=session.id)).turn_id is None


def test_a_turn_ending_after_a_takeover_stores_its_answer_and_leaves_the_new_claim(session, user):
    _, mine = turn_claim_own(session_id=session.id, user=user)
    # It stopped beating for long enough that the next message took the session over.
    other = uuid.uuid4()
    Session.objects.filter(pk=session.id).update(turn_id=other, turn_heartbeat_at=timezone.now())
    TurnDecision.objects.create(turn_id=mine, session_id=session.id, kind="cancel")
    TurnDecision.objects.create(turn_id=other, session_id=session.id, kind="cancel")

    stored = turn_end_store(
        session=session,
        user=user,
        turn_id=mine,
        steps=[
            StepWrite(role=MessageRole.USER, parts=[{"text": "late question"}]),
            StepWrite(
                role=MessageRole.MODEL, parts=[{"text": "late answer"}], finish_reason="STOP"
            ),
        ],
    )

    assert [message.text for message in stored] == ["late question", "late answer"]
    after = Session.objects.get(pk=session.id)
    assert after.turn_id == other and after.turn_heartbeat_at is not None
    assert after.message_count == session.message_count + 2
    assert list(TurnDecision.objects.values_list("turn_id", flat=True)) == [other]

    stored = turn_end_store(
        session=after,
        user=user,
        turn_id=other,
        steps=[StepWrite(role=MessageRole.MODEL, parts=[{"text": "its answer"}])],
    )

    freed = Session.objects.get(pk=session.id)
    assert freed.turn_id is None and freed.turn_heartbeat_at is None and freed.turn_worker == ""
    assert freed.message_count == session.message_count + 3
    assert not TurnDecision.objects.exists()


def test_a_turn_reads_its_stored_decisions_in_order_and_only_the_new_ones(session, user):
    from chat.turns.slot import turn_decisions_since

    mine, other = uuid.uuid4(), uuid.uuid4()
    first = TurnDecision.objects.create(
        turn_id=mine,
        session_id=session.id,
        kind="confirm",
        call_id="write_file-1",
        outcome="proceed_once",
        user_id=user.id,
        user_email=user.email,
    )
    TurnDecision.objects.create(turn_id=other, session_id=session.id, kind="cancel")
    second = TurnDecision.objects.create(turn_id=mine, session_id=session.id, kind="cancel")

    read = turn_decisions_since(turn_id=mine, after=0)

    assert [decision.pk for decision in read] == [first.pk, second.pk]
    assert read[0].as_message() == {
        "type": "turn.confirm",
        "callId": "write_file-1",
        "outcome": "proceed_once",
        "userId": str(user.id),
        "userEmail": user.email,
    }
    assert read[0].created_at == first.created_at and not read[0]._state.adding
    assert [decision.pk for decision in turn_decisions_since(turn_id=mine, after=first.pk)] == [
        second.pk
    ]
    assert turn_decisions_since(turn_id=mine, after=second.pk) == []


def test_a_starting_server_frees_the_claims_of_stopped_ones(make_session, settings):
    settings.REDIS_URL = ""  # one process: every claim another worker made is dead now
    left = make_session()
    _half_done_turn(left, heartbeat_age=timedelta(seconds=5))
    mine = make_session()
    Session.objects.filter(pk=mine.id).update(
        turn_id=uuid.uuid4(), turn_worker=worker_id(), turn_heartbeat_at=timezone.now()
    )
    unnamed = make_session()
    Session.objects.filter(pk=unnamed.id).update(
        turn_id=uuid.uuid4(), turn_heartbeat_at=timezone.now()
    )

    assert turn_claims_free_dead() == 1

    assert Session.objects.get(pk=left.id).turn_id is None
    assert model_rows(left)[0].finish_reason == "INTERRUPTED"
    assert Session.objects.get(pk=mine.id).turn_id is not None
    assert Session.objects.get(pk=unnamed.id).turn_id is not None


async def test_a_fresh_claim_of_a_dead_worker_is_taken_over_at_once(
    session, token, fake_gemini, settings
):
    if not settings.REDIS_URL:
        pytest.skip("a worker's death is known through Redis (set REDIS_URL)")
    from django.core.cache import cache

    # The worker died a moment ago: its claim still beats, but its key in Redis is gone.
    await sync_to_async(_half_done_turn)(session, heartbeat_age=timedelta(seconds=1))
    await sync_to_async(
        lambda: cache._cache.get_client(write=True).set("workers:registry-born", "1")
    )()

    response = await chat(session, token, scripted({"text": "at once"}))

    assert response.status == 200
    assert response.frames[-1]["data"]["finishReason"] == "STOP"
