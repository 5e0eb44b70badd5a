"""`agentkit batch` measured next to what a user would otherwise write, and next to the server's own capacity.

Three measurements, each side by side in one run:

1. overhead: the batch runner (`Batch` with an `AgentJob`, the output file
   appended row by row, the batch recorded in the store), exactly what the
   command runs, against a hand-written `asyncio.gather` under a semaphore over
   the same agent and store, at concurrency 1, 8 and 32. The model is a
   function with a latency per turn (`tests.support.batch_agents`: a tool call,
   then an answer; the tool is a plain sync function, the default kind);
   each concurrency gets 16 x N items, so every arm lasts about the same.
   The arms alternate, three times; the figure is the median wall time, as
   agentkit's overhead in percent (goal: 5% at most).
2. served: the embedded model behind one `agentkit serve` (`ServedModel`), a
   64-item batch of the weather agent (raw mode), against the same
   `/v1/completions` requests the batch made, replayed without the agent loop
   at the same concurrency: the server's capacity for the same token volume.
   Figure: the batch's tokens per second over the replay's (goal: 90% at least).
3. ray: the same 400 items through the command, locally (concurrency 16) and
   on a Ray cluster the command starts on this machine (2 workers x 8):
   wall time of each, and Ray's time to its first result.

    python benchmarks/batch.py                  # all three; or: make bench
    python benchmarks/batch.py --only overhead  # overhead, served, ray

Results go to stdout and to benchmarks/results/batch.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "batch.json"
sys.path.insert(0, str(ROOT))  # for the agents the tests share, under tests/

from agentkit import Agent  # noqa: E402
from agentkit.batch import AgentJob, Batch, Item  # noqa: E402
from agentkit.batch.files import OutputFile  # noqa: E402
from agentkit.errors import AgentkitError  # noqa: E402
from agentkit.store import Store  # noqa: E402
from tests.support.batch_agents import Tally  # noqa: E402

GOAL_OVERHEAD = 0.05
GOAL_SERVED = 0.90


# --- 1. overhead ------------------------------------------------------------------------------


async def with_batch(agent: Agent[Any], items: list[Item], concurrency: int, folder: Path) -> float:
    """What `agentkit batch` runs: the batch recorded, each row appended as it finishes."""
    assert agent.store is not None
    started = time.perf_counter()
    record = agent.store.begin_batch(target="bench", items=len(items), output=folder / "out.jsonl")
    out = OutputFile(folder / "out.jsonl")
    runner = Batch(AgentJob([agent]), items, batch_id=record.id, concurrency=concurrency)
    plan = runner.plan()
    out.open(plan[0])
    outcome = await runner.run(out.add, plan=plan)
    out.close([i.id for i in items])
    agent.store.batch_status(record.id, "done")
    assert outcome.failed == 0, outcome.results
    assert len(outcome.results) == len(items)
    return time.perf_counter() - started


async def with_gather(agent: Agent[Any], items: list[Item], concurrency: int, folder: Path) -> float:
    """What a user would write: a semaphore, `asyncio.gather`, the answers written at the end."""
    started = time.perf_counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> str:
        async with gate:
            result = await agent.arun(prompt)
            return str(result.output)

    answers = await asyncio.gather(*(one(i.value) for i in items))
    with (folder / "gather.jsonl").open("w", encoding="utf-8") as file:
        file.writelines(json.dumps({"id": i.id, "output": a}) + "\n" for i, a in zip(items, answers, strict=True))
    return time.perf_counter() - started


def overhead(latency: float, repetitions: int) -> dict[str, Any]:
    os.environ["AGENTKIT_TEST_LATENCY"] = str(latency)
    os.environ.pop("AGENTKIT_TEST_TALLY", None)
    figures: dict[str, Any] = {}
    for concurrency in (1, 8, 32):
        items = [Item(id=f"q{i}", value=f"item {i}", index=i) for i in range(16 * concurrency)]
        times: dict[str, list[float]] = {"batch": [], "gather": []}
        for repetition in range(repetitions):
            for arm in ("batch", "gather") if repetition % 2 == 0 else ("gather", "batch"):
                with tempfile.TemporaryDirectory() as tmp:
                    folder = Path(tmp)
                    agent = Tally(store=Store(folder / "runs.db"))
                    run = with_batch if arm == "batch" else with_gather
                    times[arm].append(asyncio.run(run(agent, items, concurrency, folder)))
        batch, gather = statistics.median(times["batch"]), statistics.median(times["gather"])
        ideal = len(items) / concurrency * 2 * latency
        figures[str(concurrency)] = {
            "items": len(items),
            "batch_s": round(batch, 3),
            "gather_s": round(gather, 3),
            "ideal_s": round(ideal, 3),
            "overhead": round(batch / gather - 1, 4),
            "samples": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
        }
        print(
            f"overhead, concurrency {concurrency:>2}: {len(items)} items, batch {batch:.2f} s, gather {gather:.2f} s "
            f"(ideal {ideal:.2f} s): {100 * (batch / gather - 1):+.1f}%",
            flush=True,
        )
    worst = max(f["overhead"] for f in figures.values())
    return {"latency_s_per_turn": latency, "by_concurrency": figures, "worst": worst, "goal": worst <= GOAL_OVERHEAD}


# --- 2. served --------------------------------------------------------------------------------


def served(items: int, concurrency: int, repetitions: int) -> dict[str, Any]:
    import httpx

    from agentkit.runtimes import VLLMServer
    from agentkit.runtimes.vllm.serve import ServedModel
    from tests.support.weather import CITIES, WeatherAgent

    class Recording(VLLMServer):
        """The weather agent's server runtime, keeping every /v1/completions request it sends."""

        payloads: list[dict[str, Any]] = []

        def completion_payload(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            payload = super().completion_payload(*args, **kwargs)
            self.payloads.append(payload)
            return payload

    prompts = [Item(id=str(i), value=f"What is the weather in {CITIES[i % len(CITIES)]}?", index=i)
               for i in range(items)]  # fmt: skip

    async def batch_arm(runtime: VLLMServer, folder: Path) -> tuple[float, int, int]:
        agent = WeatherAgent(runtime=runtime, store=Store(folder / "runs.db"))
        assert agent.store is not None
        record = agent.store.begin_batch(target="bench", items=items)
        started = time.perf_counter()
        await Batch(AgentJob([agent]), prompts, batch_id=record.id, concurrency=concurrency).run()
        seconds = time.perf_counter() - started
        usage = agent.store.db.execute(
            "SELECT SUM(prompt_tokens), SUM(completion_tokens) FROM steps").fetchone()  # fmt: skip
        return seconds, int(usage[0] or 0), int(usage[1] or 0)

    async def replay_arm(url: str, payloads: list[dict[str, Any]]) -> tuple[float, int, int]:
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=600) as client:

            async def one(payload: dict[str, Any]) -> tuple[int, int]:
                async with gate:
                    response = await client.post(f"{url}/completions", json=payload)
                    response.raise_for_status()
                    usage = response.json()["usage"]
                    return int(usage["prompt_tokens"]), int(usage["completion_tokens"])

            started = time.perf_counter()
            counts = await asyncio.gather(*(one(p) for p in payloads))
            return time.perf_counter() - started, sum(c[0] for c in counts), sum(c[1] for c in counts)

    port = _free_port()
    samples: dict[str, list[dict[str, float]]] = {"batch": [], "raw": []}
    log = ROOT / "build" / "bench-batch-server.log"
    with ServedModel("default", port=port, log=log) as server, tempfile.TemporaryDirectory() as tmp:
        runtime = Recording(server.url)
        warm = asyncio.run(batch_arm(runtime, Path(tmp) / "warm"))  # grammars compiled, prefixes cached
        payloads = list(Recording.payloads)
        print(f"served: warm-up batch {warm[0]:.1f} s, {len(payloads)} requests recorded", flush=True)
        for repetition in range(repetitions):
            for arm in ("raw", "batch") if repetition % 2 == 0 else ("batch", "raw"):
                folder = Path(tmp) / f"{arm}{repetition}"
                folder.mkdir()
                if arm == "batch":
                    seconds, prompt, completion = asyncio.run(batch_arm(Recording(server.url), folder))
                else:
                    seconds, prompt, completion = asyncio.run(replay_arm(server.url, payloads))
                samples[arm].append({"seconds": seconds, "prompt": prompt, "completion": completion})
                print(
                    f"served, {arm:>5}: {completion} generated + {prompt} prompt tokens in {seconds:.1f} s "
                    f"= {completion / seconds:.1f} generated tok/s",
                    flush=True,
                )

    def rate(arm: str, key: str) -> float:
        return statistics.median(s[key] / s["seconds"] for s in samples[arm])

    ratio = rate("batch", "completion") / rate("raw", "completion")
    total_ratio = statistics.median((s["prompt"] + s["completion"]) / s["seconds"] for s in samples["batch"]) / (
        statistics.median((s["prompt"] + s["completion"]) / s["seconds"] for s in samples["raw"])
    )
    print(f"served: batch / replay, generated tokens/s: {100 * ratio:.1f}% (all tokens: {100 * total_ratio:.1f}%)")
    return {
        "items": items,
        "concurrency": concurrency,
        "generated_tok_s": {"batch": rate("batch", "completion"), "raw": rate("raw", "completion")},
        "ratio": ratio,
        "ratio_all_tokens": total_ratio,
        "samples": samples,
        "goal": ratio >= GOAL_SERVED,
    }


# --- 3. ray -----------------------------------------------------------------------------------


def ray_vs_local(items: int, latency: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "in.jsonl"
        source.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"item {i}"}) + "\n" for i in range(items)))
        env = {**os.environ, "AGENTKIT_TEST_LATENCY": str(latency), "AGENTKIT_CACHE": str(folder / "cache")}
        env.pop("AGENTKIT_TEST_TALLY", None)
        common = [sys.executable, "-m", "agentkit.cli", "batch", "tests.support.batch_agents:Tally", "--input",
                  str(source)]  # fmt: skip
        arms = {
            "local": ["--concurrency", "16"],
            "ray": ["--concurrency", "8", "--ray", "--ray-workers", "2", "--shards", str(folder / "shards")],
        }
        figures: dict[str, Any] = {}
        for name, extra in arms.items():
            out = folder / f"{name}.jsonl"
            command = [*common, "--output", str(out), "--db", str(folder / f"{name}.db"), *extra]
            started = time.perf_counter()
            process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            first: float | None = None
            while process.poll() is None:
                if first is None and out.exists() and out.stat().st_size > 0:
                    first = time.perf_counter() - started
                time.sleep(0.02)
            seconds = time.perf_counter() - started
            stderr = process.stderr.read().decode() if process.stderr else ""
            if process.returncode != 0:
                raise AgentkitError(f"{name} arm failed ({process.returncode}): {stderr[-2000:]}")
            figures[name] = {"seconds": round(seconds, 2), "first_result_s": round(first or seconds, 2)}
            print(f"ray vs local, {name:>5}: {items} items in {seconds:.1f} s (first row after {first:.1f} s)")
        ideal = items / 16 * 2 * latency
        overhead = figures["ray"]["seconds"] - figures["local"]["seconds"]
        ratio = figures["ray"]["seconds"] / figures["local"]["seconds"]
        print(f"ray vs local: ray takes {overhead:+.1f} s ({ratio:.2f}x)")
        return {"items": items, "latency_s_per_turn": latency, "ideal_s": ideal, **figures, "ray_extra_s": overhead,
                "ray_over_local": ratio}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="overhead,served,ray", help="comma-separated: overhead, served, ray")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per model turn in overhead and ray")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--served-items", type=int, default=64)
    parser.add_argument("--served-concurrency", type=int, default=16)
    parser.add_argument("--ray-items", type=int, default=400)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    report: dict[str, Any] = {"setup": {"python": platform.python_version(), "machine": platform.machine(),
                                        "cpus": os.cpu_count()}}  # fmt: skip
    if "overhead" in wanted:
        report["overhead"] = overhead(args.latency, args.repetitions)
    if "served" in wanted:
        report["served"] = served(args.served_items, args.served_concurrency, max(2, args.repetitions - 1))
    if "ray" in wanted:
        report["ray"] = ray_vs_local(args.ray_items, args.latency)
    goals = {k: v["goal"] for k, v in report.items() if isinstance(v, dict) and "goal" in v}
    print("goals:", ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in goals.items()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
