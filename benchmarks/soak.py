"""Soak: several processes of concurrent agents on one store, with tracing exported, for minutes.

Each of `--processes` worker processes keeps `--agents` agents running at once
for `--minutes`, every run recorded in one shared SQLite file and traced over
OTLP/HTTP to a receiver this script runs. The model is a function with a
realistic latency (a turn takes 50-400 ms, as on a loaded server); each run
makes three model turns: two parallel calls (the default sync tool and an async
one), then one call, then the answer.

Afterwards every run a worker finished is read back from the store and
checked against what the worker held in memory: the same number of messages
and of tool results, status `done`. Reported: runs completed, rows lost (runs
missing or short), errors by kind (store lock errors on their own), spans sent
and received, each process's RSS after its first run and at its end, and the
database's size per run.

    python benchmarks/soak.py                 # 4 processes x 16 agents, 10 minutes (make bench)
    python benchmarks/soak.py --minutes 1     # CI's version (tests/unit/test_soak.py)

Results go to stdout and, with `--json FILE`, to a file (the default run writes
benchmarks/results/soak.json). The exit status is 1 when a row was lost or
any run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "soak.json"
TURN_SECONDS = (0.05, 0.4)
"""A model turn's latency, drawn uniformly: a loaded server's range."""
SPANS_PER_RUN = 7
"""`invoke_agent`, three `chat` and three `execute_tool` spans."""


# --- the worker: one process of concurrent agents ---------------------------------------


def _rss_kib() -> int:
    """This process's resident set, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _agent_class() -> Any:
    from agentkit import Agent, tool
    from agentkit.messages import AssistantMessage, ToolCall, UserMessage
    from agentkit.runtime import ModelRequest, ModelResponse, RuntimeInfo, Usage

    @tool
    def lookup(city: str) -> dict[str, Any]:
        """The weather in a city (a plain sync tool: the default kind, run in a thread)."""
        time.sleep(0.005)
        return {"city": city, "celsius": len(city) * 3 % 35}

    @tool
    async def history(city: str, days: int) -> list[int]:
        """Past temperatures (an async tool)."""
        await asyncio.sleep(0.01)
        return [len(city) + day for day in range(days)]

    class LatencyModel:
        """A model that takes a loaded server's time per turn and keeps nothing
        (`FunctionRuntime` keeps every request, which would grow each process)."""

        info = RuntimeInfo(name="soak", model="soak")

        async def generate(self, request: ModelRequest) -> ModelResponse:
            await asyncio.sleep(random.uniform(*TURN_SECONDS))
            prompt = next(m.text for m in request.messages if isinstance(m, UserMessage))
            answered = sum(m.role == "tool" for m in request.messages)
            if answered == 0:
                calls: tuple[ToolCall, ...] = (
                    ToolCall(name="lookup", arguments={"city": prompt}),
                    ToolCall(name="history", arguments={"city": prompt, "days": 3}),
                )
                message = AssistantMessage(text="", tool_calls=calls)
            elif answered == 2:
                message = AssistantMessage(tool_calls=(ToolCall(name="lookup", arguments={"city": prompt + "-bis"}),))
            else:
                message = AssistantMessage(text=f"{prompt}: mild")
            return ModelResponse(message=message, usage=Usage(prompt_tokens=300, completion_tokens=25, requests=1))

    class Forecaster(Agent[str]):
        instructions = "Look the city up, then answer."
        tools = [lookup, history]
        max_steps = 5

    return Forecaster, LatencyModel()


async def _agents(db: str, seconds: float, agents: int) -> dict[str, Any]:
    from agentkit.errors import StoreError
    from agentkit.store import Store

    forecaster, runtime = _agent_class()
    agent = forecaster(runtime=runtime, store=Store(db))
    deadline = time.monotonic() + seconds
    runs: dict[str, tuple[int, int]] = {}
    errors: Counter[str] = Counter()
    rss: dict[str, int] = {}

    async def keep_running(slot: int) -> None:
        count = 0
        while time.monotonic() < deadline:
            count += 1
            try:
                result = await agent.arun(f"city-{os.getpid()}-{slot}-{count}")
            except StoreError as exc:
                errors["store: locked" if "locked" in str(exc) else "store: other"] += 1
                print(f"soak worker {os.getpid()}: {exc}", file=sys.stderr)
                continue
            except Exception as exc:
                errors[type(exc).__name__] += 1
                print(f"soak worker {os.getpid()}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            results = sum(m.role == "tool" for m in result.messages)
            runs[result.run_id] = (len(result.messages), results)
            rss.setdefault("first", _rss_kib())

    await asyncio.gather(*(keep_running(slot) for slot in range(agents)))
    return {"pid": os.getpid(), "runs": runs, "errors": dict(errors), "rss_kib": [rss.get("first", 0), _rss_kib()]}


def worker(db: str, seconds: float, agents: int, out: str) -> None:
    """One process: `agents` agents for `seconds`, then its runs and figures to `out`."""
    import agentkit.tracing

    agentkit.tracing.configure("otlp")
    report = asyncio.run(_agents(db, seconds, agents))
    delivery = agentkit.tracing.shutdown()
    report["spans"] = {"sent": delivery.sent, "failed": delivery.failed}
    Path(out).write_text(json.dumps(report))


# --- the driver: the receiver, the workers, the check ------------------------------------


class _Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP endpoint that accepts every export and counts requests and bytes."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = self.bytes = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with self.server.lock:
            self.server.requests += 1
            self.server.bytes += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _start_workers(
    args: argparse.Namespace, db: Path, port: int, work: Path
) -> list[tuple[subprocess.Popen[str], Path]]:
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    workers = []
    for number in range(args.processes):
        out = work / f"worker-{number}.json"
        command = [sys.executable, __file__, "--worker", str(db), str(args.minutes * 60), str(args.agents), str(out)]
        workers.append((subprocess.Popen(command, env=env, text=True), out))
    return workers


def _check(db: Path, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Every run a worker finished, read back from the store: lost or short runs, and the file's size."""
    from agentkit.store import Store

    store = Store(db)
    lost: list[str] = []
    for report in reports:
        for run_id, (messages, results) in report["runs"].items():
            try:
                stored = store.load(run_id)
            except Exception as exc:
                lost.append(f"{run_id}: {exc}")
                continue
            kept = (len(stored.messages), sum(len(s.results) for s in stored.steps))
            if stored.record.status != "done" or kept != (messages, results):
                lost.append(f"{run_id}: {stored.record.status}, {kept} of {(messages, results)}")
    store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        stored_runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    return {"lost": lost, "stored_runs": stored_runs, "db_bytes": db.stat().st_size}


def drive(args: argparse.Namespace) -> dict[str, Any]:
    receiver = _Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="agentkit-soak-") as tmp:
        work = Path(tmp)
        db = work / "runs.db"
        started = time.monotonic()
        workers = _start_workers(args, db, receiver.server_address[1], work)
        codes = [process.wait() for process, _ in workers]
        seconds = time.monotonic() - started
        reports = [json.loads(out.read_text()) for _, out in workers if out.exists()]
        checked = _check(db, reports)
    receiver.shutdown()
    completed = sum(len(r["runs"]) for r in reports)
    errors: Counter[str] = Counter()
    for report in reports:
        errors.update(report["errors"])
    return {
        "processes": args.processes,
        "agents_per_process": args.agents,
        "minutes": args.minutes,
        "seconds": round(seconds, 1),
        "exit_codes": codes,
        "runs_completed": completed,
        "runs_per_second": round(completed / seconds, 2),
        "runs_in_store": checked["stored_runs"],
        "rows_lost": len(checked["lost"]),
        "lost": checked["lost"][:10],
        "errors": dict(errors),
        "lock_errors": errors["store: locked"],
        "spans_sent": sum(r["spans"]["sent"] for r in reports),
        "spans_expected": completed * SPANS_PER_RUN,
        "spans_failed": sum(r["spans"]["failed"] for r in reports),
        "otlp_requests_received": receiver.requests,
        "otlp_bytes_received": receiver.bytes,
        "rss_mib_first_run_to_end": [[round(k / 1024, 1) for k in r["rss_kib"]] for r in reports],
        "db_bytes_per_run": round(checked["db_bytes"] / max(1, checked["stored_runs"])),
    }


def _print(figures: dict[str, Any]) -> None:
    print(
        f"soak: {figures['processes']} processes x {figures['agents_per_process']} agents, "
        f"{figures['seconds']:.0f} s: {figures['runs_completed']} runs completed "
        f"({figures['runs_per_second']}/s), {figures['runs_in_store']} in the store"
    )
    print(f"  rows lost: {figures['rows_lost']} {figures['lost'] or ''}")
    print(f"  errors: {figures['errors'] or 'none'} (lock errors: {figures['lock_errors']})")
    print(
        f"  spans: {figures['spans_sent']} sent (of {figures['spans_expected']} for the runs completed), "
        f"{figures['spans_failed']} failed; receiver got "
        f"{figures['otlp_requests_received']} requests, {figures['otlp_bytes_received']:,} bytes"
    )
    for number, (first, last) in enumerate(figures["rss_mib_first_run_to_end"]):
        print(f"  process {number}: RSS {first} MiB after its first run, {last} MiB at its end")
    print(f"  database: {figures['db_bytes_per_run']:,} bytes per run")


def main() -> int:
    if sys.argv[1:2] == ["--worker"]:
        db, seconds, agents, out = sys.argv[2:6]
        worker(db, float(seconds), int(agents), out)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None, help=f"where the figures go (default run: {RESULTS})")
    args = parser.parse_args()
    figures = drive(args)
    _print(figures)
    out = args.json or (RESULTS if args.minutes >= 10 else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")
    failed = figures["rows_lost"] or figures["errors"] or any(figures["exit_codes"]) or figures["spans_failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
