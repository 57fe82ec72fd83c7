"""What a turn costs the database: statements before the first token and per turn, and a history
that is read from the database only when this process has not seen it."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.db.backends import utils as db_utils

from chat.turns.store import message_store
from tests.asgi_http import asgi_request
from tests.chat.conftest import scripted

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/api/v1/chat/message"


class StatementLog:
    """Every SQL statement any thread sends through Django, as it is sent."""

    def __init__(self):
        self.statements: list[str] = []
        self.lock = threading.Lock()

    def add(self, sql: str) -> None:
        sql = " ".join(str(sql).split())
        if sql.startswith("SET LOCAL "):
            # A setting of the statement's own transaction, sent with it in one round trip.
            sql = sql.split("; ", 1)[1]
        with self.lock:
            self.statements.append(sql[:200])

    def __len__(self):
        return len(self.statements)


@pytest.fixture
def statements(monkeypatch):
    log = StatementLog()
    execute, executemany = db_utils.CursorWrapper.execute, db_utils.CursorWrapper.executemany

    def counting_execute(self, sql, params=None):
        log.add(sql)
        return execute(self, sql, params)

    def counting_executemany(self, sql, param_list):
        log.add(sql)
        return executemany(self, sql, param_list)

    monkeypatch.setattr(db_utils.CursorWrapper, "execute", counting_execute)
    monkeypatch.setattr(db_utils.CursorWrapper, "executemany", counting_executemany)
    return log


def _is_sql(statement: str) -> bool:
    # Transaction markers (SQLite's BEGIN is sent as a statement, psycopg's is not), savepoints
    # and PRAGMAs are bookkeeping around the work, not statements of it.
    return not statement.upper().startswith(
        ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT", "PRAGMA")
    )


async def _turn(session, token, statements, text="hello"):
    """A trivial turn; the statements sent before its first content frame reached the client."""
    before_first: list[int] = []

    def first_content(response):
        if not before_first and b'"type":"content"' in b"".join(response.chunks):
            before_first.append(len(statements))
        return False

    start = len(statements)
    response = await asgi_request(
        "POST",
        CHAT,
        body={"sessionId": str(session.id), "message": scripted({"text": text})},
        token=token,
        hang_up_when=first_content,
    )
    assert response.status == 200
    sent = statements.statements[start:]
    head = [s for s in statements.statements[start : before_first[0]] if _is_sql(s)]
    return head, [s for s in sent if _is_sql(s)]


async def test_a_trivial_turn_needs_few_statements(
    session, token, fake_gemini, statements, monkeypatch
):
    # The answer comes before the user's message is due on its own (on a loaded machine 50 ms
    # may pass first; then the message is stored alone, in three more statements).
    monkeypatch.setattr("chat.turns.loop.USER_STORE_DELAY", 30)
    # A new session has no history to read (its message count says so): no query for it.
    first_head, _ = await _turn(session, token, statements)
    assert not any("chat_" in s for s in first_head), first_head

    head, whole = await _turn(session, token, statements)  # the process knows its history now

    # Before the first token only the claim, which reads the session back.
    assert len(head) == 1 and head[0].startswith("UPDATE") and "RETURNING" in head[0], head
    # Then one transaction: the question and the answer in one INSERT, one update of the
    # session that also frees it, their audit rows in one INSERT, and the turn's decisions gone.
    assert len(whole) <= 5, whole
    assert sum(s.startswith("INSERT") for s in whole) == 2, whole
    updates = [s for s in whole if s.startswith("UPDATE")]
    assert len(updates) == 2 and all("sessions_app_session" in s for s in updates), whole
    assert not any("sessions_app_session" in s and s.startswith("SELECT") for s in whole), whole
    assert not any("chat_message" in s and s.startswith("SELECT") for s in whole), whole


async def test_a_history_written_elsewhere_is_read_back(session, user, token, fake_gemini):
    await asgi_request(
        "POST",
        CHAT,
        body={"sessionId": str(session.id), "message": scripted({"text": "one"})},
        token=token,
    )
    # Another process answered a turn meanwhile: rows this process has not seen.
    await sync_to_async(message_store)(
        session=session, user=user, role="user", parts=[{"text": "from elsewhere"}]
    )
    await sync_to_async(message_store)(
        session=session, user=user, role="model", parts=[{"text": "noted"}]
    )

    await asgi_request(
        "POST",
        CHAT,
        body={"sessionId": str(session.id), "message": scripted({"text": "two"})},
        token=token,
    )

    sent = fake_gemini.requests[-1]["body"]["contents"]
    texts = [part.get("text", "") for content in sent for part in content["parts"]]
    assert "from elsewhere" in texts and "noted" in texts
    assert texts[-1].startswith("Do the scripted thing")


async def test_a_cleared_history_is_not_sent_again(session, token, fake_gemini):
    await asgi_request(
        "POST",
        CHAT,
        body={"sessionId": str(session.id), "message": scripted({"text": "first answer"})},
        token=token,
    )
    cleared = await asgi_request(
        "DELETE", "/api/v1/chat/clear", body={"sessionId": str(session.id)}, token=token
    )
    assert cleared.status == 200

    await asgi_request(
        "POST",
        CHAT,
        body={"sessionId": str(session.id), "message": scripted({"text": "second"})},
        token=token,
    )

    sent = fake_gemini.requests[-1]["body"]["contents"]
    assert len(sent) == 1 and sent[0]["role"] == "user"


def _connections_to_this_database() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


async def test_a_burst_of_turns_stays_within_the_pool(user, make_session, token, fake_gemini):
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's (SQLite has no server connections)")
    sessions = [await sync_to_async(make_session)() for _ in range(24)]
    # Other processes (the live servers of other tests) may hold connections of their own.
    before = await sync_to_async(_connections_to_this_database)()
    peak = 0

    async def watch():
        nonlocal peak
        while True:
            peak = max(peak, await sync_to_async(_connections_to_this_database)())
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    answers = await asyncio.gather(
        *(
            asgi_request(
                "POST",
                CHAT,
                body={
                    "sessionId": str(session.id),
                    "message": scripted({"text": ["a", "b", "c"], "delay": 0.05}),
                },
                token=token,
            )
            for session in sessions
        )
    )
    watcher.cancel()
    after = await sync_to_async(_connections_to_this_database)()

    assert all(answer.status == 200 for answer in answers)
    assert all(answer.frames[-1]["type"] == "done" for answer in answers)
    pool_max = settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"]
    # At most the pool's connections more than before (the test's own were there already).
    assert peak - before <= pool_max, (peak, before)
    assert after - before <= pool_max, (after, before)


def test_the_claim_reads_the_session_back_as_the_orm_does(make_session, user):
    from django.utils import timezone

    from chat.turns.slot import turn_claim_own
    from sessions_app.models import Session

    session = make_session(temperature=0.3, systemInstruction="Be brief. ✓")
    Session.objects.filter(pk=session.pk).update(
        always_allowed_tools=["read_file", "run_shell_command(git)"],
        todos=[{"description": "Summarise the changelog", "status": "completed"}],
        last_activity_at=timezone.now(),
    )

    claimed, turn_id = turn_claim_own(session_id=session.pk, user=user)

    read = Session.objects.get(pk=session.pk)
    for field in Session._meta.concrete_fields:
        assert getattr(claimed, field.attname) == getattr(read, field.attname), field.name
    assert claimed.turn_id == turn_id and claimed.config["temperature"] == 0.3
    assert not claimed._state.adding and claimed._state.db == read._state.db
    assert claimed.user is user
    # Claimed already: no second claim (the usual reads then say why).
    assert turn_claim_own(session_id=session.pk, user=user) is None


def test_the_claim_is_not_flushed_to_disk_and_leaves_its_connection_as_it_was(make_session, user):
    """On PostgreSQL the claim commits without waiting for the write-ahead log's flush
    (`synchronous_commit` off for its own transaction only); the pooled connection it used
    commits the turn's steps durably afterwards."""
    from django.db import connection

    from chat.turns.slot import _claim_statement, turn_claim_own

    session = make_session()
    statement = _claim_statement(connection.alias)
    postgresql = connection.vendor == "postgresql"
    lease = "SET LOCAL synchronous_commit TO off; " if postgresql else ""
    assert statement.startswith(f"{lease}UPDATE "), statement

    assert turn_claim_own(session_id=session.pk, user=user) is not None

    if postgresql:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"
