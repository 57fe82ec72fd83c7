"""Prometheus metrics of the server: their definitions and the small calls that record them.

With PROMETHEUS_MULTIPROC_DIR set (scripts/serve and the Docker image set it), every process writes
its samples there and `/metrics` adds them up over all processes (prometheus-client's multiprocess
mode). The directory must be emptied before the first process starts, never while one runs.
"""

import atexit
import os
import time

_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if _MULTIPROC_DIR:
    # prometheus-client reads the variable when it is imported and writes there from then on.
    os.makedirs(_MULTIPROC_DIR, exist_ok=True)

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

UNMATCHED_ROUTE = "<unmatched>"

http_requests = Counter(
    "gemini_http_requests_total",
    "HTTP requests answered, by URL route (the pattern, not the path), method and status.",
    ["route", "method", "status"],
)
http_duration = Histogram(
    "gemini_http_request_duration_seconds",
    "Time until the response starts (a stream's headers), by URL route and method.",
    ["route", "method"],
)
turns_running = Gauge(
    "gemini_turns_running",
    "Agent turns running now.",
    multiprocess_mode="livesum",
)
turns_finished = Counter(
    "gemini_turns_finished_total",
    "Agent turns finished, by finish reason (the model's, or CANCELLED / ERROR).",
    ["finish_reason"],
)
sse_streams_open = Gauge(
    "gemini_sse_streams_open",
    "Server-Sent Events streams open now (chat and monitoring).",
    multiprocess_mode="livesum",
)
websockets_open = Gauge(
    "gemini_websockets_open",
    "WebSocket connections open now.",
    multiprocess_mode="livesum",
)
tool_calls = Counter(
    "gemini_tool_calls_total",
    "Tool calls finished, by tool, status (success, error, cancelled) and source (agent, user).",
    ["tool", "status", "source"],
)
tool_duration = Histogram(
    "gemini_tool_call_duration_seconds",
    "Tool call durations, confirmation wait included, by tool.",
    ["tool"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
upstream_calls = Counter(
    "gemini_upstream_calls_total",
    "Streaming calls to the model service, by outcome (ok, error, cancelled).",
    ["outcome"],
)
upstream_errors = Counter(
    "gemini_upstream_errors_total",
    "Failed calls to the model service, by kind (the HTTP status, connection, not_configured, ...).",
    ["kind"],
)
upstream_duration = Histogram(
    "gemini_upstream_call_duration_seconds",
    "Streaming calls to the model service, from the request to the stream's end.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
)
upstream_first_chunk = Histogram(
    "gemini_upstream_first_chunk_seconds",
    "Time from the request to the model service's first streamed chunk.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
)
tokens = Counter(
    "gemini_tokens_total",
    "Model tokens used, by direction (prompt, completion; thoughts count as completion).",
    ["direction"],
)


def http_observed(*, route: str | None, method: str, status: int, seconds: float) -> None:
    route = route or UNMATCHED_ROUTE
    http_requests.labels(route=route, method=method, status=str(status)).inc()
    http_duration.labels(route=route, method=method).observe(seconds)


def turn_started() -> None:
    turns_running.inc()


def turn_finished(*, finish_reason: str, usage: dict) -> None:
    """The end of a turn: its finish reason and the tokens it used (the turn's usage totals)."""
    turns_running.dec()
    turns_finished.labels(finish_reason=finish_reason or "UNKNOWN").inc()
    if usage.get("promptTokens"):
        tokens.labels(direction="prompt").inc(usage["promptTokens"])
    if usage.get("completionTokens"):
        tokens.labels(direction="completion").inc(usage["completionTokens"])


def sse_stream_opened() -> None:
    sse_streams_open.inc()


def sse_stream_closed() -> None:
    sse_streams_open.dec()


def websocket_opened() -> None:
    websockets_open.inc()


def websocket_closed() -> None:
    websockets_open.dec()


def tool_call_observed(*, tool: str, status: str, source: str, duration_ms: int) -> None:
    tool_calls.labels(tool=tool, status=status, source=source).inc()
    tool_duration.labels(tool=tool).observe(max(duration_ms, 0) / 1000)


class UpstreamCall:
    """Times one streaming call to the model service; its owner says how it ended."""

    def __init__(self):
        self.started = time.monotonic()
        self.first_chunk_seen = False

    def chunk(self) -> None:
        if not self.first_chunk_seen:
            self.first_chunk_seen = True
            upstream_first_chunk.observe(time.monotonic() - self.started)

    def finished(self, *, outcome: str, error_kind: str | None = None) -> None:
        upstream_calls.labels(outcome=outcome).inc()
        if error_kind is not None:
            upstream_errors.labels(kind=error_kind).inc()
        upstream_duration.observe(time.monotonic() - self.started)


def exposition() -> tuple[bytes, str]:
    """The text exposition (format 0.0.4, which every Prometheus reads) of every metric, summed
    over all processes in multiprocess mode."""
    if _MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
    return generate_latest(REGISTRY), CONTENT_TYPE_PLAIN_0_0_4


def _process_gone() -> None:
    # Live gauges of a process that ended must stop counting (files of dead pids are dropped).
    multiprocess.mark_process_dead(os.getpid())


if _MULTIPROC_DIR:
    atexit.register(_process_gone)
