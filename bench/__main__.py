"""Runs the benchmark: `scripts/bench [--quick] [--only section,...]` (see --help)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench.report import render
from bench.sections import LITELLM_SECTIONS, SECTIONS, Bench, Params
from bench.stack import CPUS, LITELLM_BIN, ROOT, Stack, StackError, affinity

RESULTS = ROOT / "bench" / "results"
# Upper bounds on each section's time, so a server that hangs cannot hang the run.
SECTION_LIMITS = {
    "ttft": 240,
    "turns": 240,
    "cpu": 180,
    "sqlredis": 120,
    "rest": 120,
    "sessions": 300,
    "fanout": 120,
    "websockets": 360,
    "streams": 720,
}
QUICK_LIMIT = 60


def parse_args(argv: list[str]) -> argparse.Namespace:
    cpus = CPUS
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="gemini-server beside LiteLLM, on the same fake Gemini upstream, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: small counts, ~1 min")
    parser.add_argument(
        "--only", default="", help=f"comma-separated sections of: {', '.join(SECTIONS)}"
    )
    parser.add_argument("--no-litellm", action="store_true", help="measure gemini-server alone")
    parser.add_argument(
        "--server-cmd",
        default=os.environ.get("BENCH_SERVER_CMD", "scripts/run-server"),
        help="how to start the server (it reads HOST and PORT); default scripts/run-server",
    )
    parser.add_argument(
        "--server-cpus",
        default=str(cpus[0]) if len(cpus) > 1 else None,
        help="cores for the servers (taskset -c); default the first",
    )
    parser.add_argument(
        "--other-cpus",
        default=",".join(map(str, cpus[1:])) if len(cpus) > 1 else None,
        help="cores for the load generator, the fake, PostgreSQL and Redis; default the others",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness for every process the run starts (negative needs root): on a machine "
        "shared with other work, -10 keeps the measured processes from being starved",
    )
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    args.sections = chosen or list(SECTIONS)
    return args


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model or platform.machine()}), {memory:.0f} GiB, {platform.system()} {platform.release()}"


def commit() -> str:
    completed = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    sha = completed.stdout.strip() or "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{sha}{'+changes' if dirty else ''}"


def litellm_version() -> str | None:
    python = LITELLM_BIN.parent / "python"
    completed = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return completed.stdout.strip() or None


def postgres_version(stack: Stack) -> str:
    completed = subprocess.run(
        [str(stack.postgres.bin / "postgres"), "--version"], capture_output=True, text=True
    )
    found = re.search(r"\d+(\.\d+)+", completed.stdout)
    return found.group(0) if found else ""


STARTED = time.perf_counter()


def core_times() -> dict[str, tuple[int, int]]:
    """Per core, (busy, total) jiffies since boot, from /proc/stat."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(value) for value in values]
            idle = numbers[3] + numbers[4]  # idle + iowait
            times[name] = (sum(numbers) - idle, sum(numbers))
    return times


def core_busy(before: dict, after: dict) -> dict[str, int]:
    busy = {}
    for name, (used, total) in after.items():
        used_before, total_before = before.get(name, (0, 0))
        if total > total_before:
            busy[name] = round((used - used_before) / (total - total_before) * 100)
    return busy


def say(text: str) -> None:
    print(f"[bench {time.perf_counter() - STARTED:6.1f} s] {text}", file=sys.stderr, flush=True)


async def run_sections(stack: Stack, args, params: Params, server, litellm) -> dict:
    bench = Bench(
        stack=stack,
        params=params,
        server=server[0],
        server_url=server[1],
        litellm=litellm[0] if litellm else None,
        litellm_url=litellm[1] if litellm else None,
    )
    await bench.open()
    # Where the processes really run, as the kernel has them (not as asked).
    cores = {"server": affinity(bench.server.pid), "loadGenerator": affinity(os.getpid())}
    if bench.litellm is not None:
        cores["litellm"] = affinity(bench.litellm.pid)
    results = {}
    try:
        for name in args.sections:
            await bench.ensure_server()
            say(f"{name} ...")
            started = time.perf_counter()
            limit = QUICK_LIMIT if args.quick else SECTION_LIMITS[name]
            try:
                async with asyncio.timeout(limit):
                    results[name] = await SECTIONS[name](bench)
            except TimeoutError:
                results[name] = {"failed": f"did not finish within {limit} s"}
            except Exception as exc:  # a section that breaks must not stop the others
                traceback.print_exc()
                results[name] = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
            results[name]["seconds"] = round(time.perf_counter() - started, 1)
            say(f"{name} done in {results[name]['seconds']} s")
            await bench.fake_reset()
    finally:
        await bench.close()
    return {"sections": results, "notes": bench.notes, "cores": cores}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    params = Params.quick() if args.quick else Params()
    if args.other_cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in args.other_cpus.split(",")})
    if args.nice:
        # Inherited by everything started below: servers, fake, PostgreSQL, Redis, LiteLLM.
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    # A stop from outside (CI's timeout, kill) still ends every process the run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    want_litellm = not args.no_litellm and bool(LITELLM_SECTIONS & set(args.sections))
    notes = []
    if want_litellm and not LITELLM_BIN.exists():
        if not args.quick:
            say(f"LiteLLM is not installed at {LITELLM_BIN} (scripts/bench installs it)")
            return 2
        want_litellm = False
        notes.append("LiteLLM is not installed (bench/.venv-litellm): its columns are empty.")

    workdir = Path(tempfile.mkdtemp(prefix="gemini-bench-"))
    stack = Stack(
        workdir=workdir,
        server_cpus=args.server_cpus,
        other_cpus=args.other_cpus,
        server_command=args.server_cmd,
    )
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    measured_commit = commit()
    cores_start = core_times()
    outcome = None
    try:
        say(f"starting PostgreSQL, Redis and the fake upstream in {workdir}")
        with ThreadPoolExecutor(max_workers=2) as pool:
            fake_started = pool.submit(stack.start_fake)
            stack.start_databases()
            stack.prepare_database()
            fake_started.result()
            stack.env = stack.server_env()
            # LiteLLM needs only the fake: it starts while the database is migrated.
            litellm_started = pool.submit(stack.start_litellm) if want_litellm else None
            say("migrating the database" + (", starting LiteLLM proxy" if want_litellm else ""))
            stack.manage("migrate", "--noinput")
            stack.manage(
                "createsuperuser",
                "--noinput",
                extra_env={
                    "DJANGO_SUPERUSER_EMAIL": stack.admin_email,
                    "DJANGO_SUPERUSER_PASSWORD": stack.admin_password,
                    "DJANGO_SUPERUSER_NAME": "Bench Admin",
                },
            )
            say(f"starting gemini-server: {args.server_cmd}")
            server = stack.start_server()
            litellm = litellm_started.result() if litellm_started else None
        outcome = asyncio.run(run_sections(stack, args, params, server, litellm))
    except StackError as exc:
        say(f"could not start the stack: {exc}")
        return 1
    finally:
        stack.stop()
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    results = {
        "meta": {
            "mode": "quick" if args.quick else "full",
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "commit": measured_commit,
            "serverCommand": args.server_cmd,
            "serverCpus": args.server_cpus or "any",
            "otherCpus": args.other_cpus or "any",
            "nice": args.nice,
            "cores": outcome["cores"],
            "litellmVersion": litellm_version() if want_litellm else None,
            "postgresVersion": postgres_version(stack),
            "python": platform.python_version(),
            "loadAverage": {"start": load_start, "end": os.getloadavg()[0]},
            # Busy share of each core over the run, whoever used it: others' work shows here.
            "coreBusy": core_busy(cores_start, core_times()),
            "params": params.__dict__ | {"streamLevels": list(params.stream_levels)},
            "seconds": time.perf_counter() - started,
        },
        "sections": outcome["sections"],
        "notes": notes + outcome["notes"],
    }
    markdown = render(results)
    print(markdown)
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-{results['meta']['mode']}"
    (out / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / f"{name}.md").write_text(markdown)
    say(f"results in {out / name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
