"""The benchmark's smoke: `scripts/bench --quick` runs end to end and prints every table.

It starts its own PostgreSQL cluster, Redis, fake upstream and servers on loopback, so it needs
PostgreSQL's server binaries and redis-server (CI installs both). LiteLLM is left out here: it
lives in its own virtualenv that only full benchmark runs install. Nothing here is timed.
"""

import glob
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TABLES = [
    "| measure | target | gemini-server | LiteLLM |",
    "### Time to the first token (ms)",
    "### By turn index within one session (added p50, ms)",
    "### CPU per trivial turn",
    "### SQL statements and Redis commands per turn (gemini-server)",
    "### REST throughput (closed loop)",
    "### Concurrent SSE streams",
    "### Idle WebSockets (gemini-server)",
    "### Monitoring fan-out across two server processes (ms)",
    "### `GET /api/v1/sessions` for a user with many sessions",
]

missing = [
    name
    for name, found in (
        ("redis-server", shutil.which("redis-server")),
        (
            "PostgreSQL's initdb",
            glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb"),
        ),
    )
    if not found
]
pytestmark = pytest.mark.skipif(
    bool(missing), reason=f"the benchmark starts its own servers and needs {', '.join(missing)}"
)


def test_quick_benchmark_runs_every_section_and_prints_every_table(tmp_path):
    completed = subprocess.run(
        [
            str(ROOT / "scripts" / "bench"),
            "--quick",
            "--no-litellm",
            "--results-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    for title in TABLES:
        assert title in completed.stdout, f"{title!r} missing from:\n{completed.stdout}"
    assert "Not measured" not in completed.stdout, completed.stdout

    [results_file] = tmp_path.glob("*-quick.json")
    results = json.loads(results_file.read_text())
    sections = results["sections"]
    for name, section in sections.items():
        assert "failed" not in section, (name, section, completed.stderr[-4000:])
    params = results["meta"]["params"]
    # Every scripted turn came back whole, and every socket, stream and event arrived.
    assert sections["ttft"]["server"]["n"] == params["ttft_rounds"]
    assert sections["ttft"]["server"]["errors"] == {}
    assert sections["ttft"]["litellm"] is None
    assert sections["cpu"]["server"]["errors"] == {}
    assert sections["sqlredis"]["sqlPerTurn"] > 0
    assert sections["rest"]["me"]["requests"] > 0 and sections["rest"]["me"]["errors"] == {}
    assert sections["sessions"]["listedPerResponse"] > 0
    assert sections["fanout"]["received"] == params["fanout_events"]
    assert sections["websockets"]["opened"] == params["ws_count"]
    assert sections["websockets"]["drops"] == 0
    for level in sections["streams"]["levels"]:
        assert level["server"]["ok"] == level["k"], level
        assert "litellm" not in level
    # The run cleaned up: its temporary directory is gone, and no process still uses it.
    [workdir] = re.findall(r"in (/\S+gemini-bench-\S+)", completed.stderr)
    assert not Path(workdir).exists()
    leftovers = subprocess.run(["pgrep", "-f", workdir], capture_output=True, text=True)
    assert leftovers.stdout.split() == []
