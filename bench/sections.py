"""The measurements, one coroutine per section; each returns a plain dict that the report renders.

gemini-server and LiteLLM are measured alternately inside each section (request by request where
the measure is a latency, block by block where it is a rate), so drift on the machine falls on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
import websockets

from bench.clients import (
    TRIVIAL,
    Api,
    StreamResult,
    direct_turn,
    fake_script,
    litellm_turn,
    new_http,
    server_turn,
)
from bench.stack import DB_NAME, DB_ROLE, Process, Stack, cpu_seconds, rss_bytes


@dataclass(frozen=True)
class Params:
    """How much of everything a run does; `quick` is the smoke CI runs."""

    ttft_rounds: int = 200
    ttft_turns_per_session: int = 10
    index_turns: int = 50
    index_band: int = 10
    index_sessions: int = 2
    cpu_turns: int = 60
    sql_turns: int = 20
    stream_levels: tuple[int, ...] = (50, 100, 200, 500, 1000)
    stream_chunks: int = 50
    stream_delay_ms: int = 100
    stream_timeout: float = 45.0
    stream_users: int = 10
    ws_count: int = 2000
    ws_hold: float = 60.0
    ws_open_timeout: float = 90.0
    # Enough in flight for 300 opens a second at 80 ms each, few enough that a slow server is
    # measured at its pace rather than pushed past daphne's handshake timeout all at once.
    ws_open_concurrency: int = 25
    rest_seconds: float = 8.0
    rest_concurrency: int = 32
    fanout_events: int = 200
    list_sessions: int = 2000
    list_seconds: float = 8.0

    @classmethod
    def quick(cls) -> Params:
        return cls(
            ttft_rounds=12,
            ttft_turns_per_session=6,
            index_turns=8,
            index_band=3,
            index_sessions=1,
            cpu_turns=8,
            sql_turns=3,
            stream_levels=(5, 10),
            stream_chunks=5,
            stream_delay_ms=50,
            stream_timeout=20.0,
            stream_users=2,
            ws_count=40,
            ws_hold=3.0,
            ws_open_timeout=20.0,
            ws_open_concurrency=20,
            rest_seconds=1.5,
            rest_concurrency=8,
            fanout_events=10,
            list_sessions=40,
            list_seconds=1.5,
        )


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def spread(values: list[float]) -> dict:
    """p50/p90/p99 in milliseconds of values in seconds."""
    return {
        "n": len(values),
        "p50": ms(percentile(values, 50)),
        "p90": ms(percentile(values, 90)),
        "p99": ms(percentile(values, 99)),
    }


def added(through: dict, direct: dict) -> dict:
    """Per percentile: the time through a server minus the time straight to the fake."""
    return {
        key: None
        if through.get(key) is None or direct.get(key) is None
        else round(through[key] - direct[key], 2)
        for key in ("p50", "p90", "p99")
    }


def errors_of(results: list[StreamResult]) -> dict:
    return dict(
        Counter(result.error or f"HTTP {result.status}" for result in results if not result.ok)
    )


@dataclass
class Bench:
    """What every section shares: the stack, the clients, the identities made at setup."""

    stack: Stack
    params: Params
    server: Process
    server_url: str
    litellm: Process | None
    litellm_url: str | None
    http: aiohttp.ClientSession = field(init=False)
    api: Api = field(init=False)
    admin_token: str = ""
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    main_email: str = "bench-main@example.com"
    main_token: str = ""
    main_key: str = ""
    stream_tokens: list[str] = field(default_factory=list)
    stream_pool: list[tuple[str, str]] = field(default_factory=list)
    pg = None
    redis = None
    notes: list[str] = field(default_factory=list)

    async def open(self) -> None:
        import psycopg
        import redis.asyncio as aioredis

        self.http = new_http()
        self.api = Api(self.http, self.server_url)
        self.pg = await psycopg.AsyncConnection.connect(
            self.stack.postgres.admin_url(DB_NAME), autocommit=True
        )
        self.redis = aioredis.Redis(host="127.0.0.1", port=self.stack.redis_port)
        self.admin_token = await self.api.login(self.stack.admin_email, self.stack.admin_password)
        await self.api.user_create(self.admin_token, self.main_email, self.password)
        self.main_token = await self.api.login(self.main_email, self.password)
        self.main_key = await self.api.api_key_create(self.main_email, self.password)
        await self.warm_up()

    async def warm_up(self) -> None:
        """A few unmeasured turns, so first-call costs (imports, connections) stay out."""
        session_id = await self.api.session_create(self.main_token)
        for _ in range(3):
            await direct_turn(self.http, self.stack.fake_url, TRIVIAL)
            await server_turn(self.http, self.server_url, self.main_token, session_id, TRIVIAL)
            if self.has_litellm:
                await LiteConversation().turn(self, TRIVIAL)

    async def close(self) -> None:
        await self.http.close()
        if self.pg is not None:
            await self.pg.close()
        if self.redis is not None:
            await self.redis.aclose()

    @property
    def has_litellm(self) -> bool:
        return self.litellm_url is not None

    async def ensure_server(self) -> None:
        """A server that died in a section is started again, so later sections still measure."""
        if self.server.alive():
            return
        self.notes.append(
            f"the server process exited and was restarted:\n{self.server.log_tail(10)}"
        )
        self.server, self.server_url = await asyncio.to_thread(self.stack.start_server)
        self.api = Api(self.http, self.server_url)

    async def fake_last_body(self) -> bytes | None:
        """The body of the last request the fake served, serialized again (for a replay)."""
        async with self.http.get(f"{self.stack.fake_url}/_fake/requests?last=1") as response:
            rows = await response.json()
        body = rows[-1].get("body") if rows else None
        return (
            json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() if body else None
        )

    async def fake_reset(self) -> None:
        # The fake keeps every request body it served; a long run would otherwise fill memory.
        with contextlib.suppress(aiohttp.ClientError):
            async with self.http.delete(f"{self.stack.fake_url}/_fake/requests"):
                pass

    async def pg_connections(self) -> dict:
        cursor = await self.pg.execute(
            "SELECT state, count(*) FROM pg_stat_activity WHERE usename = %s GROUP BY state",
            (DB_ROLE,),
        )
        return {state or "none": count for state, count in await cursor.fetchall()}

    async def pg_statements(self) -> dict[int, tuple[str, int]]:
        cursor = await self.pg.execute(
            "SELECT queryid, query, calls FROM pg_stat_statements "
            "WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            (DB_ROLE,),
        )
        return {queryid: (query, calls) for queryid, query, calls in await cursor.fetchall()}

    async def pg_sessions(self) -> int:
        cursor = await self.pg.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (DB_NAME,)
        )
        row = await cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def redis_commands(self) -> Counter:
        info = await self.redis.info("commandstats")
        counts = Counter()
        for key, value in info.items():
            name = key.removeprefix("cmdstat_")
            if name != "info":
                counts[name] = int(value["calls"])
        return counts


# Helpers shared by sections.


def litellm_messages(history: list[dict], text: str) -> list[dict]:
    return [*history, {"role": "user", "content": text}]


class LiteConversation:
    """LiteLLM keeps no session: its client sends the whole conversation each time, as OpenAI's do."""

    def __init__(self):
        self.history: list[dict] = []

    async def turn(self, bench: Bench, text: str) -> StreamResult:
        result = await litellm_turn(
            bench.http,
            bench.litellm_url,
            bench.stack.litellm_key,
            litellm_messages(self.history, text),
        )
        self.history += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": result.text or "tok0 tok1 "},
        ]
        return result


def ttfts(results: list[StreamResult]) -> list[float]:
    return [result.first_token for result in results if result.ok]


# Sections.


async def section_ttft(bench: Bench) -> dict:
    """Time to the first token: direct to the fake, through the server, through LiteLLM."""
    p = bench.params
    direct, server, lite = [], [], []
    session_id, conversation = None, None
    for index in range(p.ttft_rounds):
        if index % p.ttft_turns_per_session == 0:
            session_id = await bench.api.session_create(bench.main_token)
            conversation = LiteConversation()
        # Rotate who goes first, so no side always follows the same one.
        order = ["direct", "server", "litellm"]
        order = order[index % 3 :] + order[: index % 3]
        for who in order:
            if who == "direct":
                direct.append(await direct_turn(bench.http, bench.stack.fake_url, TRIVIAL))
            elif who == "server":
                server.append(
                    await server_turn(
                        bench.http, bench.server_url, bench.main_token, session_id, TRIVIAL
                    )
                )
            elif bench.has_litellm:
                lite.append(await conversation.turn(bench, TRIVIAL))
    direct_spread = spread(ttfts(direct))
    server_spread = spread(ttfts(server))
    lite_spread = spread(ttfts(lite)) if lite else None
    return {
        "turnsPerSession": p.ttft_turns_per_session,
        "direct": direct_spread,
        "server": {**server_spread, "errors": errors_of(server)},
        "litellm": {**lite_spread, "errors": errors_of(lite)} if lite_spread else None,
        "serverAdded": added(server_spread, direct_spread),
        "litellmAdded": added(lite_spread, direct_spread) if lite_spread else None,
    }


async def section_turns(bench: Bench) -> dict:
    """The same, by turn index within one long session.

    Beside the plain baseline, each side's own request to the fake is replayed directly after its
    turn: the upstream's time for that same request (a longer history is more work for the fake
    too), which tells the server's own growth from the upstream's."""
    p = bench.params
    per_index = {
        "direct": {},
        "server": {},
        "litellm": {},
        "server-request": {},
        "litellm-request": {},
    }

    async def replay(who: str, turn: int) -> None:
        body = await bench.fake_last_body()
        if body is not None:
            result = await direct_turn(bench.http, bench.stack.fake_url, "", body=body)
            per_index[f"{who}-request"].setdefault(turn, []).append(result)

    for _ in range(p.index_sessions):
        session_id = await bench.api.session_create(bench.main_token)
        conversation = LiteConversation()
        for turn in range(1, p.index_turns + 1):
            d = await direct_turn(bench.http, bench.stack.fake_url, TRIVIAL)
            per_index["direct"].setdefault(turn, []).append(d)
            s = await server_turn(
                bench.http, bench.server_url, bench.main_token, session_id, TRIVIAL
            )
            per_index["server"].setdefault(turn, []).append(s)
            await replay("server", turn)
            if bench.has_litellm:
                per_index["litellm"].setdefault(turn, []).append(
                    await conversation.turn(bench, TRIVIAL)
                )
                await replay("litellm", turn)
        await bench.fake_reset()
    first = range(1, p.index_band + 1)
    last = range(p.index_turns - p.index_band + 1, p.index_turns + 1)

    def band(who: str, turns) -> list[float]:
        return ttfts([r for turn in turns for r in per_index[who].get(turn, [])])

    def side(who: str) -> dict | None:
        if not per_index[who]:
            return None
        early = percentile(band(who, first), 50)
        late = percentile(band(who, last), 50)
        direct_early = percentile(band("direct", first), 50)
        direct_late = percentile(band("direct", last), 50)
        if None in (early, late, direct_early, direct_late):
            return {"firstAdded": None, "lastAdded": None, "growth": None}
        first_added, last_added = ms(early - direct_early), ms(late - direct_late)
        same_early = percentile(band(f"{who}-request", first), 50)
        same_late = percentile(band(f"{who}-request", last), 50)
        beyond = None
        if None not in (same_early, same_late):
            first_beyond, last_beyond = ms(early - same_early), ms(late - same_late)
            beyond = {
                "upstreamFirst": ms(same_early),
                "upstreamLast": ms(same_late),
                "firstAdded": first_beyond,
                "lastAdded": last_beyond,
                "growth": round((last_beyond - first_beyond) / first_beyond * 100, 1)
                if first_beyond
                else None,
            }
        return {
            "firstAdded": first_added,
            "lastAdded": last_added,
            # The target is about the time added, so that is what must stay flat.
            "growth": round((last_added - first_added) / first_added * 100, 1)
            if first_added
            else None,
            # The same, against the upstream's time for each side's own request.
            "beyondOwnRequest": beyond,
            "errors": errors_of([r for rs in per_index[who].values() for r in rs]),
        }

    return {
        "turns": p.index_turns,
        "sessions": p.index_sessions,
        "first": [first.start, first.stop - 1],
        "last": [last.start, last.stop - 1],
        "server": side("server"),
        "litellm": side("litellm"),
        "serverByTurn": {
            turn: ms(percentile(ttfts(rs), 50)) for turn, rs in per_index["server"].items()
        },
    }


async def section_cpu(bench: Bench) -> dict:
    """Server CPU per trivial turn, from /proc of the server's processes around N turns."""
    p = bench.params
    block = max(1, p.cpu_turns // 2)
    totals = {"server": [0.0, 0, 0.0, []], "litellm": [0.0, 0, 0.0, []]}
    for _ in range(2):
        # Ten turns a session, as elsewhere; the sessions are made before the clock starts (a
        # session's creation is no part of a turn).
        sessions = [await bench.api.session_create(bench.main_token) for _ in range(0, block, 10)]
        await asyncio.sleep(0.5)
        before, started = cpu_seconds(bench.server.pid), time.perf_counter()
        results = []
        for index in range(block):
            results.append(
                await server_turn(
                    bench.http, bench.server_url, bench.main_token, sessions[index // 10], TRIVIAL
                )
            )
        wall = time.perf_counter() - started
        await asyncio.sleep(0.5)  # what a turn does after its `done` frame counts too
        used = cpu_seconds(bench.server.pid) - before
        totals["server"][0] += used
        totals["server"][1] += block
        totals["server"][2] += wall
        totals["server"][3] += results
        if bench.has_litellm:
            conversation = LiteConversation()
            before, started = cpu_seconds(bench.litellm.pid), time.perf_counter()
            results = []
            for index in range(block):
                if index and index % 10 == 0:
                    conversation = LiteConversation()
                results.append(await conversation.turn(bench, TRIVIAL))
            wall = time.perf_counter() - started
            await asyncio.sleep(0.5)
            totals["litellm"][0] += cpu_seconds(bench.litellm.pid) - before
            totals["litellm"][1] += block
            totals["litellm"][2] += wall
            totals["litellm"][3] += results

    def side(who: str) -> dict | None:
        used, count, wall, results = totals[who]
        if not count:
            return None
        return {
            "turns": count,
            "cpuMsPerTurn": round(used / count * 1000, 2),
            "wallMsPerTurn": round(wall / count * 1000, 2),
            "errors": errors_of(results),
        }

    return {"server": side("server"), "litellm": side("litellm")}


def _kind(query: str) -> str:
    word = query.strip().split(None, 1)[0].upper() if query.strip() else "?"
    return word if word in {"SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT"} else "other"


def _statement_delta(before: dict, after: dict) -> Counter:
    delta = Counter()
    for queryid, (query, calls) in after.items():
        change = calls - before.get(queryid, ("", 0))[1]
        if change:
            delta[(queryid, query)] += change
    return delta


async def section_sqlredis(bench: Bench) -> dict:
    """SQL statements (pg_stat_statements) and Redis commands (INFO commandstats) per turn."""
    p = bench.params
    # The second chunk comes 0.4 s after the first: a window to count what ran before it.
    message = json.dumps([{"text": ["Hi", " there"], "delay": 0.4}])
    message = f"[[fake:{message}]]"
    session_id = await bench.api.session_create(bench.main_token)
    await asyncio.sleep(1.0)
    # Background traffic of an idle server (channel layer polling and the like), to subtract.
    idle_redis_0, idle_sql_0 = await bench.redis_commands(), await bench.pg_statements()
    idle_started = time.perf_counter()
    await asyncio.sleep(2.0)
    idle_redis = (await bench.redis_commands()) - idle_redis_0
    idle_sql = sum(_statement_delta(idle_sql_0, await bench.pg_statements()).values())
    idle_seconds = time.perf_counter() - idle_started

    redis_before, sql_before = await bench.redis_commands(), await bench.pg_statements()
    sessions_before = await bench.pg_sessions()
    started = time.perf_counter()
    before_first = []
    results = []
    # All turns in the one session made above, so nothing but turns runs in the window.
    for _ in range(p.sql_turns):
        turn_start = await bench.pg_statements()
        snapshot = {}

        async def at_first(turn_start=turn_start, snapshot=snapshot):
            snapshot["delta"] = sum(
                _statement_delta(turn_start, await bench.pg_statements()).values()
            )

        results.append(
            await server_turn(
                bench.http,
                bench.server_url,
                bench.main_token,
                session_id,
                message,
                on_first=at_first,
            )
        )
        if "delta" in snapshot:
            before_first.append(snapshot["delta"])
    await asyncio.sleep(1.0)
    elapsed = time.perf_counter() - started
    sql_delta = _statement_delta(sql_before, await bench.pg_statements())
    redis_delta = (await bench.redis_commands()) - redis_before
    sessions_opened = await bench.pg_sessions() - sessions_before
    turns = p.sql_turns
    scale = elapsed / idle_seconds if idle_seconds else 0
    idle_redis_share = {name: count * scale for name, count in idle_redis.items()}
    redis_per_turn = {
        name: round(max(0.0, count - idle_redis_share.get(name, 0)) / turns, 2)
        for name, count in redis_delta.items()
    }
    kinds = Counter()
    for (_, query), count in sql_delta.items():
        kinds[_kind(query)] += count
    top = [
        {"query": " ".join(query.split())[:160], "perTurn": round(count / turns, 2)}
        for (_, query), count in sql_delta.most_common(15)
    ]
    total_sql = sum(sql_delta.values())

    # The same for trivial turns (both chunks at once), whose end is one transaction.
    session_id = await bench.api.session_create(bench.main_token)
    await asyncio.sleep(0.5)
    redis_before, sql_before = await bench.redis_commands(), await bench.pg_statements()
    started = time.perf_counter()
    trivial_results = [
        await server_turn(bench.http, bench.server_url, bench.main_token, session_id, TRIVIAL)
        for _ in range(turns)
    ]
    await asyncio.sleep(1.0)
    scale = (time.perf_counter() - started) / idle_seconds if idle_seconds else 0
    trivial_sql = _statement_delta(sql_before, await bench.pg_statements())
    trivial_redis = {
        name: round(max(0.0, count - idle_redis.get(name, 0) * scale) / turns, 2)
        for name, count in ((await bench.redis_commands()) - redis_before).items()
    }
    trivial_kinds = Counter()
    for (_, query), count in trivial_sql.items():
        trivial_kinds[_kind(query)] += count
    return {
        "trivial": {
            "turns": turns,
            "errors": errors_of(trivial_results),
            "sqlPerTurn": round(sum(trivial_sql.values()) / turns, 2),
            "sqlByKind": {
                kind: round(count / turns, 2) for kind, count in trivial_kinds.most_common()
            },
            "redisPerTurn": round(sum(trivial_redis.values()), 2),
            "redisByCommand": dict(sorted(trivial_redis.items(), key=lambda item: -item[1])),
        },
        "turns": turns,
        "errors": errors_of(results),
        "sqlPerTurn": round(total_sql / turns, 2),
        "sqlBeforeFirstToken": round(sum(before_first) / len(before_first), 2)
        if before_first
        else None,
        "sqlByKind": {kind: round(count / turns, 2) for kind, count in kinds.most_common()},
        "sqlTop": top,
        "connectionsPerTurn": round(sessions_opened / turns, 2),
        "redisPerTurn": round(sum(redis_per_turn.values()), 2),
        "redisByCommand": dict(sorted(redis_per_turn.items(), key=lambda item: -item[1])),
        "idle": {
            "seconds": round(idle_seconds, 2),
            "redisCommands": sum(idle_redis.values()),
            "sqlStatements": idle_sql,
        },
    }


async def _closed_loop(
    http: aiohttp.ClientSession, url: str, headers: dict, seconds: float, concurrency: int
) -> dict:
    latencies, errors = [], Counter()
    deadline = time.perf_counter() + seconds

    async def worker():
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with http.get(url, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors[f"HTTP {response.status}"] += 1
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"latencies": latencies, "errors": dict(errors)}


async def _rest_rate(bench: Bench, process: Process, url: str, headers: dict) -> dict:
    p = bench.params
    await _closed_loop(bench.http, url, headers, min(1.0, p.rest_seconds / 2), 4)  # warm-up
    cpu_before = cpu_seconds(process.pid)
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    outcome = await _closed_loop(bench.http, url, headers, p.rest_seconds, p.rest_concurrency)
    elapsed = time.perf_counter() - started
    used = cpu_seconds(process.pid) - cpu_before
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    own = (own_after.ru_utime + own_after.ru_stime) - (own_before.ru_utime + own_before.ru_stime)
    count = len(outcome["latencies"])
    return {
        "requests": count,
        "reqPerSecond": round(count / elapsed, 1),
        "cpuMsPerRequest": round(used / count * 1000, 3) if count else None,
        "serverCpuBusy": round(used / elapsed * 100, 1),
        "loadGeneratorCpuBusy": round(own / elapsed * 100, 1),
        "latency": spread(outcome["latencies"]),
        "errors": outcome["errors"],
    }


async def section_rest(bench: Bench) -> dict:
    """Closed-loop REST throughput and CPU per request, with an API key and on the health probe."""
    result = {}
    result["me"] = await _rest_rate(
        bench, bench.server, f"{bench.server_url}/api/v1/auth/me", {"X-API-Key": bench.main_key}
    )
    if bench.has_litellm:
        result["models"] = await _rest_rate(
            bench,
            bench.litellm,
            f"{bench.litellm_url}/v1/models",
            {"Authorization": f"Bearer {bench.stack.litellm_key}"},
        )
    result["health"] = await _rest_rate(bench, bench.server, f"{bench.server_url}/health", {})
    if bench.has_litellm:
        result["liveliness"] = await _rest_rate(
            bench, bench.litellm, f"{bench.litellm_url}/health/liveliness", {}
        )
    return result


async def section_sessions(bench: Bench) -> dict:
    """`GET /api/v1/sessions` for a user with many sessions."""
    p = bench.params
    email = f"bench-list-{secrets.token_hex(3)}@example.com"
    await bench.api.user_create(bench.admin_token, email, bench.password)
    token = await bench.api.login(email, bench.password)
    started = time.perf_counter()
    await bench.api.sessions_create(token, p.list_sessions)
    create_rate = p.list_sessions / (time.perf_counter() - started)
    url = f"{bench.server_url}/api/v1/sessions"
    headers = {"Authorization": f"Bearer {token}"}
    async with bench.http.get(url, headers=headers) as response:
        body = await response.read()
        listed = len(json.loads(body).get("sessions", [])) if response.status == 200 else None
    cpu_before = cpu_seconds(bench.server.pid)
    measured_started = time.perf_counter()
    outcome = await _closed_loop(bench.http, url, headers, p.list_seconds, 4)
    elapsed = time.perf_counter() - measured_started
    count = len(outcome["latencies"])
    used = cpu_seconds(bench.server.pid) - cpu_before
    return {
        "sessions": p.list_sessions,
        "listedPerResponse": listed,
        "bytesPerResponse": len(body),
        "reqPerSecond": round(count / elapsed, 1),
        "cpuMsPerRequest": round(used / count * 1000, 2) if count else None,
        "latency": spread(outcome["latencies"]),
        "errors": outcome["errors"],
        "sessionCreatesPerSecond": round(create_rate, 1),
    }


def _ws_url(base: str, token: str) -> str:
    return base.replace("http://", "ws://", 1) + f"/ws/?token={token}"


async def section_fanout(bench: Bench) -> dict:
    """An admin socket on process B subscribed to monitoring; events caused on process A."""
    p = bench.params
    other, other_url = await asyncio.to_thread(bench.stack.start_server, "server-b")
    arrivals: dict[str, tuple[float, float]] = {}
    arrived = asyncio.Event()
    try:
        async with websockets.connect(
            _ws_url(other_url, bench.admin_token), ping_interval=None, max_size=2**22
        ) as socket:
            first = json.loads(await asyncio.wait_for(socket.recv(), 10))
            if first.get("event") != "authenticated":
                raise RuntimeError(f"admin socket on B: {first}")
            await socket.send(
                json.dumps({"event": "monitoring:subscribe", "data": {"types": ["session"]}})
            )
            while True:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
                if frame.get("event") == "monitoring:subscribed":
                    break

            async def read():
                async for raw in socket:
                    now_wall, now = time.time(), time.perf_counter()
                    frame = json.loads(raw)
                    if frame.get("event") != "monitoring:event":
                        continue
                    event = frame.get("data") or {}
                    session_id = event.get("sessionId") or (event.get("data") or {}).get(
                        "sessionId"
                    )
                    created = event.get("createdAt")
                    if session_id and created:
                        stamp = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
                        arrivals[str(session_id)] = (now_wall - stamp, now)
                        arrived.set()

            reader = asyncio.create_task(read())
            sent: dict[str, float] = {}
            try:
                for _ in range(p.fanout_events):
                    started = time.perf_counter()
                    session_id = await bench.api.session_create(bench.main_token)
                    sent[session_id] = started
                    deadline = time.perf_counter() + 5
                    while session_id not in arrivals and time.perf_counter() < deadline:
                        arrived.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(arrived.wait(), deadline - time.perf_counter())
                    await asyncio.sleep(0.02)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                    await reader
    finally:
        other.stop()
        bench.stack.processes.remove(other)
    from_created = [arrivals[sid][0] for sid in sent if sid in arrivals]
    from_request = [arrivals[sid][1] - sent[sid] for sid in sent if sid in arrivals]
    return {
        "events": len(sent),
        "received": len(from_created),
        "fromCreatedAt": spread(from_created),
        "fromRequest": spread(from_request),
    }


async def section_websockets(bench: Bench) -> dict:
    """Idle authenticated sockets: how fast they open, what each costs, whether they stay."""
    p = bench.params
    url = _ws_url(bench.server_url, bench.main_token)
    await asyncio.sleep(1.0)
    rss_before = rss_bytes(bench.server.pid)
    cpu_before = cpu_seconds(bench.server.pid)
    sockets, failures = [], Counter()
    gate = asyncio.Semaphore(p.ws_open_concurrency)
    started = time.perf_counter()
    open_deadline = started + p.ws_open_timeout
    last_open = [started]

    async def open_one():
        async with gate:
            if time.perf_counter() > open_deadline:
                failures["not attempted (open phase timed out)"] += 1
                return
            try:
                socket = await websockets.connect(
                    url, ping_interval=None, open_timeout=30, close_timeout=5, max_size=2**20
                )
            except websockets.InvalidStatus as exc:
                failures[f"HTTP {exc.response.status_code}"] += 1
                return
            except websockets.InvalidMessage:
                failures["closed during the handshake"] += 1
                return
            except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
                failures[type(exc).__name__] += 1
                return
            try:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 30))
            except (websockets.ConnectionClosed, TimeoutError) as exc:
                failures[f"no authenticated frame ({type(exc).__name__})"] += 1
                await socket.close()
                return
            if frame.get("event") != "authenticated":
                failures[f"first frame {frame.get('event')}"] += 1
            sockets.append(socket)
            last_open[0] = time.perf_counter()

    await asyncio.gather(*(open_one() for _ in range(p.ws_count)))
    open_seconds = last_open[0] - started
    open_cpu = cpu_seconds(bench.server.pid) - cpu_before
    await asyncio.sleep(1.0)
    rss_open = rss_bytes(bench.server.pid)
    held_from = time.perf_counter()
    await asyncio.sleep(p.ws_hold)
    held = time.perf_counter() - held_from
    # A socket the server closed, or that stopped answering, is a drop.
    drops = sum(1 for socket in sockets if socket.close_code is not None)
    alive = [socket for socket in sockets if socket.close_code is None]
    pongs = 0

    async def ping(socket):
        nonlocal pongs
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            waiter = await socket.ping()
            await asyncio.wait_for(waiter, 10)
            pongs += 1

    gate_ping = asyncio.Semaphore(200)

    async def ping_gated(socket):
        async with gate_ping:
            await ping(socket)

    await asyncio.gather(*(ping_gated(socket) for socket in alive))
    unanswered = len(alive) - pongs

    async def close(socket):
        async with gate:
            with contextlib.suppress(websockets.ConnectionClosed, OSError, TimeoutError):
                await socket.close()

    await asyncio.gather(*(close(socket) for socket in sockets))
    opened = len(sockets)
    return {
        "target": p.ws_count,
        "opened": opened,
        "openFailures": dict(failures),
        "openPerSecond": round(opened / open_seconds, 1) if open_seconds > 0 else None,
        "openCpuMsPerSocket": round(open_cpu / opened * 1000, 2) if opened else None,
        "heldSeconds": round(held, 1),
        "drops": drops + unanswered,
        "rssKiBPerSocket": round((rss_open - rss_before) / opened / 1024, 1) if opened else None,
        "rssMiBBefore": round(rss_before / 2**20, 1),
        "rssMiBOpen": round(rss_open / 2**20, 1),
    }


async def _stream_users(bench: Bench) -> None:
    p = bench.params
    while len(bench.stream_tokens) < p.stream_users:
        email = f"bench-stream-{len(bench.stream_tokens)}-{secrets.token_hex(2)}@example.com"
        await bench.api.user_create(bench.admin_token, email, bench.password)
        bench.stream_tokens.append(await bench.api.login(email, bench.password))


async def _stream_sessions(bench: Bench, count: int) -> list[tuple[str, str]]:
    """`count` sessions with no turn left over from an earlier level, spread over the users."""
    missing = count - len(bench.stream_pool)
    if missing > 0:
        users = bench.stream_tokens
        per_user = -(-missing // len(users))
        batches = await asyncio.gather(
            *(bench.api.sessions_create(token, per_user, concurrency=2) for token in users)
        )
        for token, ids in zip(users, batches, strict=True):
            bench.stream_pool += [(token, session_id) for session_id in ids]
    return bench.stream_pool[:count]


async def _sample_connections(bench: Bench, stop: asyncio.Event, peak: list[int]) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):
            peak[0] = max(peak[0], sum((await bench.pg_connections()).values()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _stream_run(bench: Bench, process: Process, streams) -> dict:
    """Runs the streams at once; the CPU of the server, the load generator and the fake beside."""
    fake = next(proc for proc in bench.stack.processes if proc.name == "fake-gemini")
    cpu = (cpu_seconds(process.pid), _own_cpu(), cpu_seconds(fake.pid))
    started = time.perf_counter()
    results = list(await asyncio.gather(*streams))
    wall = time.perf_counter() - started
    used = (cpu_seconds(process.pid), _own_cpu(), cpu_seconds(fake.pid))
    busy = [round((after - before) / wall * 100) for before, after in zip(cpu, used, strict=True)]
    return {
        **_stream_summary(results, wall),
        "cpuBusy": {"server": busy[0], "loadGenerator": busy[1], "fake": busy[2]},
        "results": results,
    }


def _stream_summary(results: list[StreamResult], wall: float) -> dict:
    gaps = [gap for result in results for gap in result.gaps()]
    firsts = [result.first_token for result in results if result.first_token is not None]
    chunks = [len(result.chunks) for result in results if result.ok]
    return {
        "streams": len(results),
        "ok": sum(1 for result in results if result.ok),
        "errors": errors_of(results),
        "firstToken": spread(firsts),
        "gap": spread(gaps),
        "chunksPerStream": round(sum(chunks) / len(chunks), 1) if chunks else None,
        "wallSeconds": round(wall, 2),
    }


async def _server_level(bench: Bench, level: int, message: str) -> dict:
    p = bench.params
    await bench.ensure_server()
    pairs = await _stream_sessions(bench, level)
    await bench.fake_reset()
    stop, peak = asyncio.Event(), [0]
    sampler = asyncio.create_task(_sample_connections(bench, stop, peak))
    async with new_http(p.stream_timeout + 30) as http:
        run = await _stream_run(
            bench,
            bench.server,
            [
                server_turn(
                    http, bench.server_url, token, session_id, message, timeout=p.stream_timeout
                )
                for token, session_id in pairs
            ],
        )
    results = run.pop("results")
    stop.set()
    await sampler
    # Sessions whose turn failed may still hold their turn slot: later levels take fresh ones.
    failed = {
        session_id for (_, session_id), result in zip(pairs, results, strict=True) if not result.ok
    }
    bench.stream_pool = [pair for pair in bench.stream_pool if pair[1] not in failed]
    await asyncio.sleep(2.0)
    return {
        **run,
        "dbConnectionsPeak": peak[0],
        "dbConnectionsAfter": sum((await bench.pg_connections()).values()),
    }


async def _litellm_level(bench: Bench, level: int, message: str) -> dict:
    p = bench.params
    await bench.fake_reset()
    async with new_http(p.stream_timeout + 30) as http:
        run = await _stream_run(
            bench,
            bench.litellm,
            [
                litellm_turn(
                    http,
                    bench.litellm_url,
                    bench.stack.litellm_key,
                    [{"role": "user", "content": message}],
                    timeout=p.stream_timeout,
                )
                for _ in range(level)
            ],
        )
    run.pop("results")
    await asyncio.sleep(1.0)
    return run


async def section_streams(bench: Bench) -> dict:
    """K concurrent SSE streams of `CHUNKS n ms` answers, on each server in turn, K rising.

    A server none of whose streams succeeded at one K is not asked for more: the table says so.
    """
    p = bench.params
    message = fake_script(p.stream_chunks, p.stream_delay_ms)
    await _stream_users(bench)
    sides = {"server": _server_level}
    if bench.has_litellm:
        sides["litellm"] = _litellm_level
    gave_up: dict[str, int] = {}
    levels = []
    for level in p.stream_levels:
        entry = {"k": level}
        for side, measure in sides.items():
            if side in gave_up:
                entry[side] = {"skipped": f"every stream failed at K = {gave_up[side]}"}
                continue
            entry[side] = await measure(bench, level, message)
            if entry[side]["ok"] == 0:
                gave_up[side] = level
        levels.append(entry)
    await asyncio.sleep(3.0)
    return {
        "chunks": p.stream_chunks,
        "delayMs": p.stream_delay_ms,
        "levels": levels,
        "dbConnectionsAfterAll": await bench.pg_connections(),
        "serverAlive": bench.server.alive(),
    }


SECTIONS = {
    "ttft": section_ttft,
    "turns": section_turns,
    "cpu": section_cpu,
    "sqlredis": section_sqlredis,
    "rest": section_rest,
    "sessions": section_sessions,
    "fanout": section_fanout,
    "websockets": section_websockets,
    "streams": section_streams,
}
LITELLM_SECTIONS = {"ttft", "turns", "cpu", "rest", "streams"}
