"""Markdown tables of a run's results, gemini-server and LiteLLM side by side."""

from __future__ import annotations

NONE = "—"


def num(value, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return NONE
    text = f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"
    return f"{text}{unit}"


def pair(first, second, unit: str = "", digits: int = 1) -> str:
    return f"{num(first, '', digits)} / {num(second, '', digits)}{unit}"


def errors(counts: dict | None) -> str:
    if not counts:
        return "0"
    total = sum(counts.values())
    detail = ", ".join(
        f"{count} {name}" for name, count in sorted(counts.items(), key=lambda i: -i[1])
    )
    return f"{total} ({detail})"


def _counts(counts: dict) -> str:
    """`name count` pairs, in the order given, without the zeros."""
    return ", ".join(f"{name} {count:g}" for name, count in counts.items() if count)


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def get(data: dict | None, *path, default=None):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def failed(section: dict | None) -> str | None:
    if section is None:
        return "not run"
    return section.get("failed")


def summary(results: dict) -> str:
    s = results["sections"]
    rows = []

    ttft = s.get("ttft")
    if ttft and not failed(ttft):
        rows.append(
            [
                "time added to the first token, p50 / p99",
                "≤ 5 / ≤ 15 ms, ≤ ⅓ of LiteLLM",
                pair(get(ttft, "serverAdded", "p50"), get(ttft, "serverAdded", "p99"), " ms"),
                pair(get(ttft, "litellmAdded", "p50"), get(ttft, "litellmAdded", "p99"), " ms"),
            ]
        )
    turns = s.get("turns")
    if turns and not failed(turns):
        first, last = turns["first"], turns["last"]

        def band(side):
            if not side:
                return NONE
            return (
                f"{num(side.get('firstAdded'))} → {num(side.get('lastAdded'))} ms "
                f"({num(side.get('growth'), '%')})"
            )

        rows.append(
            [
                f"same, turns {first[0]}-{first[1]} vs {last[0]}-{last[1]} of one session (p50)",
                "within 10%",
                band(turns.get("server")),
                band(turns.get("litellm")),
            ]
        )
    cpu = s.get("cpu")
    if cpu and not failed(cpu):
        rows.append(
            [
                "server CPU per trivial turn",
                "≤ 8 ms",
                num(get(cpu, "server", "cpuMsPerTurn"), " ms"),
                num(get(cpu, "litellm", "cpuMsPerTurn"), " ms"),
            ]
        )
    sql = s.get("sqlredis")
    if sql and not failed(sql):
        rows.append(
            [
                "SQL statements per turn (before the first token)",
                "≤ 6 before the first token",
                f"{num(sql.get('sqlPerTurn'))} ({num(sql.get('sqlBeforeFirstToken'))})",
                NONE,
            ]
        )
        rows.append(
            [
                "Redis commands / new DB connections per turn",
                NONE,
                pair(sql.get("redisPerTurn"), sql.get("connectionsPerTurn"), digits=2),
                NONE,
            ]
        )
    rest = s.get("rest")
    if rest and not failed(rest):
        me, models = rest.get("me"), rest.get("models")
        rows.append(
            [
                "`GET /api/v1/auth/me` with an API key (LiteLLM: `/v1/models`)",
                "≥ 1,000 req/s, ≥ 3× LiteLLM",
                f"{num(get(me, 'reqPerSecond'))} req/s, {num(get(me, 'cpuMsPerRequest'), ' ms', 2)} CPU",
                f"{num(get(models, 'reqPerSecond'))} req/s, "
                f"{num(get(models, 'cpuMsPerRequest'), ' ms', 2)} CPU"
                if models
                else NONE,
            ]
        )
        rows.append(
            [
                "framework floor (`/health` vs `/health/liveliness`)",
                NONE,
                f"{num(get(rest, 'health', 'reqPerSecond'))} req/s",
                f"{num(get(rest, 'liveliness', 'reqPerSecond'))} req/s"
                if rest.get("liveliness")
                else NONE,
            ]
        )
    streams = s.get("streams")
    if streams and not failed(streams):
        for level in streams["levels"]:
            server, lite = level.get("server"), level.get("litellm")

            def cell(side):
                if not side:
                    return NONE
                if "skipped" in side:
                    return f"not run: {side['skipped']}"
                return (
                    f"{errors(side.get('errors'))} errors, first token p50 "
                    f"{num(get(side, 'firstToken', 'p50'), ' ms', 0)} / p99 "
                    f"{num(get(side, 'firstToken', 'p99'), ' ms', 0)}, gap p99 "
                    f"{num(get(side, 'gap', 'p99'), ' ms', 0)}"
                )

            rows.append(
                [
                    f"{level['k']} concurrent streams ({streams['chunks']} chunks, "
                    f"{streams['delayMs']} ms apart)",
                    "1,000: 0 errors, first token p99 ≤ 1 s, gap p99 ≤ 250 ms",
                    cell(server),
                    cell(lite),
                ]
            )
        measured = [lv["server"] for lv in streams["levels"] if "skipped" not in lv["server"]]
        last = measured[-1] if measured else {}
        rows.append(
            [
                "DB connections: peak under the largest load / left after it",
                "bounded (a pool) / none left behind",
                pair(last.get("dbConnectionsPeak"), last.get("dbConnectionsAfter"), digits=0),
                NONE,
            ]
        )
    ws = s.get("websockets")
    if ws and not failed(ws):
        rows.append(
            [
                f"{num(ws.get('target'))} idle WebSockets held {num(ws.get('heldSeconds'), ' s', 0)}",
                "0 drops, ≥ 300 opened/s, ≤ 40 KiB each",
                f"{num(ws.get('opened'))} opened, {num(ws.get('drops'))} drops, "
                f"{num(ws.get('openPerSecond'))} opened/s, {num(ws.get('rssKiBPerSocket'))} KiB each",
                NONE,
            ]
        )
    fan = s.get("fanout")
    if fan and not failed(fan):
        rows.append(
            [
                "monitoring fan-out to another process, p50 / p99",
                "p99 ≤ 20 ms",
                pair(get(fan, "fromCreatedAt", "p50"), get(fan, "fromCreatedAt", "p99"), " ms"),
                NONE,
            ]
        )
    lst = s.get("sessions")
    if lst and not failed(lst):
        rows.append(
            [
                f"`GET /api/v1/sessions` for a user with {num(lst.get('sessions'))} sessions",
                "paginated",
                f"{num(lst.get('reqPerSecond'))} req/s, {num(lst.get('listedPerResponse'))} "
                "sessions per answer",
                NONE,
            ]
        )
    return table(["measure", "target", "gemini-server", "LiteLLM"], rows)


def section_tables(results: dict) -> list[str]:
    s = results["sections"]
    out = []

    def heading(title: str, key: str) -> bool:
        out.append(f"### {title}")
        reason = failed(s.get(key))
        if reason:
            out.append(f"Not measured: {reason}")
            return False
        return True

    if heading("Time to the first token (ms)", "ttft"):
        t = s["ttft"]
        rows = [
            ["direct to the fake (baseline)"]
            + [num(get(t, "direct", k), digits=2) for k in ("p50", "p90", "p99")]
            + [num(get(t, "direct", "n"))],
            ["through gemini-server"]
            + [num(get(t, "server", k), digits=2) for k in ("p50", "p90", "p99")]
            + [f"{num(get(t, 'server', 'n'))}, errors {errors(get(t, 'server', 'errors'))}"],
            ["through LiteLLM"]
            + [num(get(t, "litellm", k), digits=2) for k in ("p50", "p90", "p99")]
            + [
                f"{num(get(t, 'litellm', 'n'))}, errors {errors(get(t, 'litellm', 'errors'))}"
                if t.get("litellm")
                else NONE
            ],
            ["**added by gemini-server**"]
            + [num(get(t, "serverAdded", k), digits=2) for k in ("p50", "p90", "p99")]
            + [""],
            ["**added by LiteLLM**"]
            + [num(get(t, "litellmAdded", k), digits=2) for k in ("p50", "p90", "p99")]
            + [""],
        ]
        out.append(table(["", "p50", "p90", "p99", "samples"], rows))
        out.append(
            f"Trivial turns (2 chunks), turns 1-{t['turnsPerSession']} of fresh sessions; "
            "direct, gemini-server and LiteLLM requests alternate."
        )

    if heading("By turn index within one session (added p50, ms)", "turns"):
        t = s["turns"]
        rows = []
        for who, label in (("server", "gemini-server"), ("litellm", "LiteLLM")):
            side = t.get(who)
            rows.append(
                [
                    label,
                    num(get(side, "firstAdded"), digits=2),
                    num(get(side, "lastAdded"), digits=2),
                    num(get(side, "growth"), "%"),
                    errors(get(side, "errors")) if side else NONE,
                ]
            )
        first, last = t["first"], t["last"]
        out.append(
            table(
                [
                    "",
                    f"turns {first[0]}-{first[1]}",
                    f"turns {last[0]}-{last[1]}",
                    "growth of the added time",
                    "errors",
                ],
                rows,
            )
        )
        out.append(
            f"{t['sessions']} session(s) of {t['turns']} turns each; LiteLLM gets the whole "
            "conversation in every request, as an OpenAI client sends it."
        )
        rows = []
        for who, label in (("server", "gemini-server"), ("litellm", "LiteLLM")):
            beyond = get(t.get(who), "beyondOwnRequest")
            rows.append(
                [
                    label,
                    f"{num(get(beyond, 'upstreamFirst'), digits=2)} → "
                    f"{num(get(beyond, 'upstreamLast'), digits=2)}",
                    num(get(beyond, "firstAdded"), digits=2),
                    num(get(beyond, "lastAdded"), digits=2),
                    num(get(beyond, "growth"), "%"),
                ]
            )
        out.append(
            table(
                [
                    "against its own request, sent directly",
                    "that request's first token, early → late",
                    f"added, turns {first[0]}-{first[1]}",
                    f"added, turns {last[0]}-{last[1]}",
                    "growth",
                ],
                rows,
            )
        )
        out.append(
            "Each side's request to the fake (system prompt, tools, history) replayed straight "
            "to it after the turn: the upstream's own time for that request, which grows with "
            "the history on both sides. The added time against it is the proxy's own."
        )

    if heading("CPU per trivial turn", "cpu"):
        c = s["cpu"]
        rows = [
            [
                label,
                num(get(c, who, "cpuMsPerTurn"), " ms", 2),
                num(get(c, who, "wallMsPerTurn"), " ms", 2),
                num(get(c, who, "turns")),
                errors(get(c, who, "errors")) if c.get(who) else NONE,
            ]
            for who, label in (("server", "gemini-server"), ("litellm", "LiteLLM"))
        ]
        out.append(table(["", "CPU per turn", "wall per turn", "turns", "errors"], rows))
        out.append("User + system time of the server's processes (/proc), around N turns in a row.")

    if heading("SQL statements and Redis commands per turn (gemini-server)", "sqlredis"):
        q = s["sqlredis"]
        rows = [
            ["SQL statements per turn", num(q.get("sqlPerTurn"), digits=2)],
            ["SQL statements before the first token", num(q.get("sqlBeforeFirstToken"), digits=2)],
            ["by kind", _counts(q.get("sqlByKind", {}))],
            ["new PostgreSQL connections per turn", num(q.get("connectionsPerTurn"), digits=2)],
            ["Redis commands per turn", num(q.get("redisPerTurn"), digits=2)],
            ["by command", _counts(q.get("redisByCommand", {}))],
            ["turns measured", f"{q.get('turns')} (errors {errors(q.get('errors'))})"],
        ]
        trivial = q.get("trivial") or {}
        rows += [
            ["SQL statements per trivial turn", num(trivial.get("sqlPerTurn"), digits=2)],
            ["by kind", _counts(trivial.get("sqlByKind", {}))],
            ["Redis commands per trivial turn", num(trivial.get("redisPerTurn"), digits=2)],
            ["by command", _counts(trivial.get("redisByCommand", {}))],
            [
                "trivial turns measured",
                f"{trivial.get('turns')} (errors {errors(trivial.get('errors'))})",
            ],
        ]
        out.append(table(["", "gemini-server"], rows))
        out.append(
            "The turns above hold their second chunk 0.4 s (a window to count what runs before "
            "it); trivial turns send both chunks at once."
        )
        top = q.get("sqlTop") or []
        if top:
            out.append(
                table(
                    ["per turn", "statement (pg_stat_statements, normalized)"],
                    [[f"{item['perTurn']:g}", f"`{item['query']}`"] for item in top],
                )
            )

    if heading("REST throughput (closed loop)", "rest"):
        r = s["rest"]
        rows = []
        for key, label in (
            ("me", "gemini-server `GET /api/v1/auth/me` (X-API-Key)"),
            ("models", "LiteLLM `GET /v1/models` (master key)"),
            ("health", "gemini-server `GET /health`"),
            ("liveliness", "LiteLLM `GET /health/liveliness`"),
        ):
            row = r.get(key)
            if row is None:
                rows.append([label, NONE, NONE, NONE, NONE, NONE, NONE])
                continue
            rows.append(
                [
                    label,
                    num(row["reqPerSecond"]),
                    num(row["cpuMsPerRequest"], " ms", 3),
                    num(get(row, "latency", "p50"), " ms", 2),
                    num(get(row, "latency", "p99"), " ms", 2),
                    f"{num(row['serverCpuBusy'], '%', 0)} / {num(row['loadGeneratorCpuBusy'], '%', 0)}",
                    errors(row.get("errors")),
                ]
            )
        out.append(
            table(
                [
                    "endpoint",
                    "req/s",
                    "CPU per request",
                    "p50",
                    "p99",
                    "server / load generator CPU",
                    "errors",
                ],
                rows,
            )
        )

    if heading("Concurrent SSE streams", "streams"):
        st = s["streams"]
        rows = []
        for level in st["levels"]:
            for who, label in (("server", "gemini-server"), ("litellm", "LiteLLM")):
                side = level.get(who)
                if side is None or "skipped" in side:
                    reason = side["skipped"] if side else NONE
                    rows.append([level["k"], label, NONE, f"not run: {reason}"] + [NONE] * 6)
                    continue
                rows.append(
                    [
                        level["k"],
                        label,
                        f"{side['ok']}/{side['streams']}",
                        errors(side.get("errors")),
                        num(get(side, "firstToken", "p50"), digits=0),
                        num(get(side, "firstToken", "p99"), digits=0),
                        num(get(side, "gap", "p99"), digits=0),
                        num(side.get("wallSeconds"), " s", 1),
                        "{server}% / {loadGenerator}% / {fake}%".format(**side["cpuBusy"])
                        if side.get("cpuBusy")
                        else NONE,
                        pair(
                            side.get("dbConnectionsPeak"), side.get("dbConnectionsAfter"), digits=0
                        )
                        if who == "server"
                        else NONE,
                    ]
                )
        out.append(
            table(
                [
                    "K",
                    "server",
                    "ok",
                    "errors",
                    "first token p50 (ms)",
                    "p99 (ms)",
                    "inter-chunk gap p99 (ms)",
                    "wall",
                    "CPU: server / load generator / fake",
                    "DB connections peak / after",
                ],
                rows,
            )
        )
        out.append(
            f"Each stream: {st['chunks']} chunks, {st['delayMs']} ms apart, from the fake. "
            f"Server connections to PostgreSQL after all levels: {st.get('dbConnectionsAfterAll')}."
        )

    if heading("Idle WebSockets (gemini-server)", "websockets"):
        w = s["websockets"]
        rows = [
            ["sockets asked / opened", f"{w['target']:,} / {w['opened']:,}"],
            ["open failures", errors(w.get("openFailures"))],
            ["opened per second", num(w.get("openPerSecond"))],
            ["server CPU per opened socket", num(w.get("openCpuMsPerSocket"), " ms", 2)],
            ["held", num(w.get("heldSeconds"), " s")],
            ["drops (closed or unanswered ping after the hold)", num(w.get("drops"))],
            [
                "memory per socket (RSS delta)",
                f"{num(w.get('rssKiBPerSocket'))} KiB "
                f"({num(w.get('rssMiBBefore'))} → {num(w.get('rssMiBOpen'))} MiB)",
            ],
        ]
        out.append(table(["", "gemini-server"], rows))

    if heading("Monitoring fan-out across two server processes (ms)", "fanout"):
        f = s["fanout"]
        rows = [
            ["event's createdAt → admin socket on process B"]
            + [num(get(f, "fromCreatedAt", k), digits=2) for k in ("p50", "p90", "p99")],
            ["request sent to process A → admin socket on process B"]
            + [num(get(f, "fromRequest", k), digits=2) for k in ("p50", "p90", "p99")],
        ]
        out.append(table(["", "p50", "p90", "p99"], rows))
        out.append(f"{f['received']} of {f['events']} session events arrived.")

    if heading("`GET /api/v1/sessions` for a user with many sessions", "sessions"):
        l_ = s["sessions"]
        rows = [
            ["sessions owned", num(l_.get("sessions"))],
            ["sessions per answer", num(l_.get("listedPerResponse"))],
            ["bytes per answer", num(l_.get("bytesPerResponse"))],
            ["req/s (4 clients)", num(l_.get("reqPerSecond"))],
            ["CPU per request", num(l_.get("cpuMsPerRequest"), " ms", 2)],
            [
                "latency p50 / p99",
                pair(get(l_, "latency", "p50"), get(l_, "latency", "p99"), " ms"),
            ],
            ["errors", errors(l_.get("errors"))],
            [
                "sessions created per second (setup, 8 clients)",
                num(l_.get("sessionCreatesPerSecond")),
            ],
        ]
        out.append(table(["", "gemini-server"], rows))
    return out


def render(results: dict) -> str:
    meta = results["meta"]
    cores = ", ".join(f"{name} on {cpus}" for name, cpus in meta.get("cores", {}).items())
    busy = ", ".join(f"{core} {value}%" for core, value in meta.get("coreBusy", {}).items())
    parts = [
        meta["date"],
        meta["machine"],
        f"gemini-server {meta['commit']} (`{meta['serverCommand']}`)",
        f"LiteLLM {meta.get('litellmVersion') or 'not run'}",
        f"PostgreSQL {meta.get('postgresVersion', '')}",
        f"cores: {cores} (the fake, PostgreSQL and Redis share the load generator's)",
        f"{meta['seconds']:.0f} s",
        f"load average {meta['loadAverage']['start']:.1f} at the start, "
        f"{meta['loadAverage']['end']:.1f} at the end; cores busy over the run {busy} "
        "(this run and any other work on the machine)",
    ]
    if meta.get("nice"):
        parts.append(f"niceness {meta['nice']}")
    lines = [
        f"## Benchmark: gemini-server beside LiteLLM ({meta['mode']} run)",
        "",
        " · ".join(parts),
        "",
        summary(results),
        "",
    ]
    for block in section_tables(results):
        lines += [block, ""]
    if results.get("notes"):
        lines.append("Notes:")
        lines += [f"- {note}" for note in results["notes"]]
    return "\n".join(lines).rstrip() + "\n"
