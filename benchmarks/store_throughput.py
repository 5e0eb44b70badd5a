"""The store's write path, side by side with a raw sqlite3 loop writing the same rows.

A typical step is one model decision with one tool call, then its result.
agentkit's `RunRecorder` commits it as the loop does: the decision (step,
assistant message, tool call, run touch) in one transaction before the tool
runs, the result (tool result, tool message) in a second one after. The raw
loop executes the same statements with the same values, prepared in advance,
through plain `sqlite3` on a database with the same schema and settings
(WAL, synchronous=NORMAL, foreign keys). What is left is agentkit's own cost:
ids, serialising messages, building the rows.

    python benchmarks/store_throughput.py        # or: make bench
    python benchmarks/store_throughput.py --only-durability

Goal: agentkit records at least 50% as many steps per second as the raw
loop. Also reported: bytes per stored step of a typical run (the database
file after a checkpoint, over its steps); the cost of `durability="full"`
(synchronous=FULL: each commit synced to the disk, surviving a power cut) as
steps per second next to the default `normal`, the same writes in the same
run, alternating; and the cost of the check each write makes that the file
was not deleted (a `stat` of its path). Results go to stdout and to
benchmarks/results/store_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentkit import AssistantMessage, ModelResponse, Sampling, ToolCall, ToolResult, Usage, UserMessage
from agentkit.runtime import RuntimeInfo
from agentkit.store import Durability, Store

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "store_throughput.json"
GOAL_RATIO = 0.5
RUNTIME = RuntimeInfo(
    name="vllm", model="gemma-3-270m (embedded)", dialect="gemma4", constrained=True, uri="vllm:default"
)


def step(i: int) -> tuple[ModelResponse, ToolResult]:
    call = ToolCall(name="get_weather", arguments={"city": f"City {i}", "unit": "celsius"}, id=f"call_{i:06d}")
    response = ModelResponse(
        message=AssistantMessage(tool_calls=(call,)),
        usage=Usage(prompt_tokens=1000 + i, completion_tokens=40, cached_tokens=768, requests=1),
        finish_reason="tool_calls",
        raw_text=f'<|tool_call>call:get_weather{{city:<|"|>City {i}<|"|>,unit:<|"|>celsius<|"|>}}<tool_call|>',
        timings={"total": 1.2, "first_token": 0.4, "decode": 0.8},
        grammar_digest="0123456789abcdef",
    )
    return response, ToolResult(call_id=call.id, name="get_weather", content=f"18 degrees celsius in City {i}")


def with_agentkit(
    path: Path, steps: int, durability: Durability = "normal"
) -> tuple[float, list[list[tuple[str, Sequence[Any]]]]]:
    """Seconds to record `steps` steps, and the statements that were executed (for the raw loop)."""
    store = Store(path, durability=durability)
    executed: list[list[tuple[str, Sequence[Any]]]] = []
    original = store._write

    def spy(statements: Sequence[tuple[str, Sequence[Any]]], *, what: str = "a write") -> None:
        executed.append(list(statements))
        original(statements, what=what)

    recorder = store.begin_run(agent="bench:Agent", messages=[UserMessage(text="Weather?")], max_steps=steps + 1)
    work = [step(i) for i in range(steps)]
    store._write = spy  # type: ignore[method-assign]
    started = time.perf_counter()
    for index, (response, result) in enumerate(work):
        position = 1 + 2 * index
        recorder.decision(
            index=index, position=position, response=response, runtime=RUNTIME, sampling=Sampling(), idempotent={}
        )
        recorder.tool_result(result)
    seconds = time.perf_counter() - started
    store.close()
    return seconds, executed


def with_raw_sqlite(path: Path, transactions: list[list[tuple[str, Sequence[Any]]]]) -> float:
    """Seconds to execute the same transactions with plain sqlite3."""
    Store(path).close()  # the same schema and settings, no rows
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    # The run row the statements refer to.
    first = transactions[0][0]
    run_id = first[1][1]
    conn.execute(
        "INSERT INTO runs (id, agent, status, created, updated, max_steps, tools) "
        "VALUES (?, 'a:B', 'running', 0, 0, 0, '[]')",
        [run_id],
    )
    started = time.perf_counter()
    for statements in transactions:
        conn.execute("BEGIN IMMEDIATE")
        for sql, params in statements:
            conn.execute(sql, params)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def bytes_per_step(folder: Path) -> dict[str, float]:
    """A typical run (a question, three tool steps, an answer), repeated, on disk."""
    path = folder / "typical.db"
    store = Store(path)
    runs = 50
    for _ in range(runs):
        recorder = store.begin_run(
            agent="bench:Agent", messages=[UserMessage(text="What is the weather in Oslo?")], max_steps=10
        )
        for index in range(3):
            response, result = step(index)
            recorder.decision(
                index=index,
                position=1 + 2 * index,
                response=response,
                runtime=RUNTIME,
                sampling=Sampling(),
                idempotent={},
            )
            recorder.tool_result(result)
        final = ModelResponse(
            message=AssistantMessage(text="It is 18 degrees in Oslo."), raw_text="It is 18 degrees in Oslo."
        )
        recorder.decision(index=3, position=7, response=final, runtime=RUNTIME, sampling=Sampling(), idempotent={})
        recorder.finished("done", output="It is 18 degrees in Oslo.")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    size = path.stat().st_size
    return {"runs": runs, "steps": runs * 4, "bytes": size, "bytes_per_step": size / (runs * 4)}


def durability_cost(folder: Path, steps: int, repetitions: int) -> dict[str, Any]:
    """Steps per second with `durability="normal"` and `"full"`, the same steps, alternating."""
    rates: dict[str, list[float]] = {"normal": [], "full": []}
    for repetition in range(repetitions):
        for durability in ("normal", "full"):
            seconds, _ = with_agentkit(folder / f"{durability}-{repetition}.db", steps, durability)
            rates[durability].append(steps / seconds)
    normal, full = statistics.median(rates["normal"]), statistics.median(rates["full"])
    return {
        "steps": steps,
        "steps_per_s_normal": normal,
        "steps_per_s_full": full,
        "full_over_normal": full / normal,
        "samples_normal": rates["normal"],
        "samples_full": rates["full"],
    }


def file_check_cost(folder: Path, calls: int = 100_000) -> float:
    """Microseconds of the check every write makes that the file is still the one opened."""
    store = Store(folder / "check.db")
    started = time.perf_counter()
    for _ in range(calls):
        store._check_still_there("record a step")
    seconds = time.perf_counter() - started
    store.close()
    return seconds / calls * 1e6


def print_durability(durability: dict[str, Any], check_us: float, normal_rate: float) -> None:
    print(
        f"durability: normal {durability['steps_per_s_normal']:.0f} steps/s, full "
        f"{durability['steps_per_s_full']:.0f} steps/s; full/normal {durability['full_over_normal']:.2f} "
        f"({durability['steps']} steps each, alternating)"
    )
    # A step is two writes, each checking the file once.
    share = 2 * check_us * 1e-6 * normal_rate
    print(f"deleted-file check: {check_us:.2f} us a write, {share:.1%} of a step at {normal_rate:.0f} steps/s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per repetition (default 2000)")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument(
        "--durability-steps", type=int, default=300, help="steps per repetition, normal vs full (default 300)"
    )
    parser.add_argument("--only-durability", action="store_true", help="measure only normal vs full durability")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    if args.only_durability:
        with tempfile.TemporaryDirectory() as tmp:
            durability = durability_cost(Path(tmp), args.durability_steps, args.repetitions)
            check_us = file_check_cost(Path(tmp))
        print_durability(durability, check_us, durability["steps_per_s_normal"])
        return 0

    ours, raw = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for repetition in range(args.repetitions):
            seconds, transactions = with_agentkit(folder / f"agentkit-{repetition}.db", args.steps)
            raw_seconds = with_raw_sqlite(folder / f"raw-{repetition}.db", transactions)
            ours.append(args.steps / seconds)
            raw.append(args.steps / raw_seconds)
        size = bytes_per_step(folder)
        durability = durability_cost(folder, args.durability_steps, args.repetitions)
        check_us = file_check_cost(folder)
    report = {
        "steps_per_s_agentkit": statistics.median(ours),
        "steps_per_s_raw_sqlite3": statistics.median(raw),
        "ratio": statistics.median(ours) / statistics.median(raw),
        "samples_agentkit": ours,
        "samples_raw": raw,
        "typical_run": size,
        "durability": durability,
        "file_check_us_per_write": check_us,
        "goal_ratio": GOAL_RATIO,
        "setup": {
            "steps": args.steps,
            "repetitions": args.repetitions,
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "machine": platform.machine(),
        },
    }
    report["goal_met"] = report["ratio"] >= GOAL_RATIO
    print(
        f"steps recorded per second: agentkit {report['steps_per_s_agentkit']:.0f}, raw sqlite3 "
        f"{report['steps_per_s_raw_sqlite3']:.0f}; ratio {report['ratio']:.2f} (goal >= {GOAL_RATIO}: "
        f"{'met' if report['goal_met'] else 'MISSED'})"
    )
    print(
        f"bytes per stored step, typical run: {size['bytes_per_step']:.0f} "
        f"({size['bytes']} bytes, {size['steps']} steps)"
    )
    print_durability(durability, check_us, report["steps_per_s_agentkit"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
