"""The agent loop's own overhead per step, side by side with smolagents.

Both frameworks run the same script against an instant in-process model: N-1
turns that call a trivial tool, then a final answer, for N = 5, 20 and 50 model
steps per run. The model does no work, so what is left is the loop: building
requests, dispatching and running the tool call, recording the trajectory.

    python benchmarks/loop_overhead.py          # or: make bench

Per-step cost is the wall time of a run divided by N; each figure is the median
over several repetitions of a batch of runs. Speed goals are stated as ratios
measured here in one process, never as absolute times: the machine changes,
the ratio should not. smolagents is measured when it is importable (the `bench`
extra installs it); without it the script still reports agentkit's figures.

Results go to stdout and to benchmarks/results/loop_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from agentkit import Agent, AssistantMessage, ToolCall, tool
from agentkit.runtimes import ScriptedRuntime

STEPS = (5, 20, 50)
"""Model steps per run."""
STEPS_PER_REPETITION = 1000
"""Each repetition times enough runs for about this many steps, whatever N is."""
REPETITIONS = 15
PROMPT = "Call noop until told otherwise."
ANSWER = "done"
GOAL_RATIO = 0.2
"""The issue's goal: at most a fifth of the fastest peer's per-step overhead."""
PEER_REFERENCE_US = 480
"""smolagents 1.26's per-step overhead as measured elsewhere (context only; never compared)."""
RESULTS = Path(__file__).parent / "results" / "loop_overhead.json"


# --- agentkit ------------------------------------------------------------------------


@tool
def noop(n: int) -> int:
    """Return `n` unchanged.

    Args:
        n: Any whole number.
    """
    return n


@tool(name="noop", inline=True)
def noop_inline(n: int) -> int:
    """Return `n` unchanged.

    Args:
        n: Any whole number.
    """
    return n


@tool(name="noop")
async def noop_async(n: int) -> int:
    """Return `n` unchanged.

    Args:
        n: Any whole number.
    """
    return n


class NoopAgent(Agent[str]):
    instructions = "Call noop as asked, then answer."
    tools = (noop,)
    max_steps = max(STEPS) + 1


class InlineNoopAgent(NoopAgent):
    """The sync tool marked `inline=True`: run on the event loop, no thread hop."""

    tools = (noop_inline,)


class AsyncNoopAgent(NoopAgent):
    """An async tool: runs on the event loop (a sync one runs in a worker thread)."""

    tools = (noop_async,)


def agentkit_turns(steps: int) -> list[AssistantMessage]:
    calls = [
        AssistantMessage(tool_calls=(ToolCall(name="noop", arguments={"n": i}, id=f"call_{i}"),))
        for i in range(steps - 1)
    ]
    return [*calls, AssistantMessage(text=ANSWER)]


def check_agentkit(agent: Agent[str], runtime: ScriptedRuntime, steps: int) -> None:
    """Fail loudly if a run does not do what the benchmark claims it does."""
    runtime.reset()
    result = agent.run(PROMPT)
    results = [r for s in result.steps for r in s.tool_results]
    ok = (
        result.output == ANSWER
        and len(result.steps) == steps
        and [r.content for r in results] == list(range(steps - 1))
    )
    if not ok or any(r.is_error for r in results):
        raise SystemExit(f"agentkit: a {steps}-step run went wrong: {result}")


async def time_arun(agent: Agent[str], runtime: ScriptedRuntime, runs: int) -> float:
    """Seconds spent in `await agent.arun()` over `runs` runs, on the running loop."""
    runtime.reset()
    await agent.arun(PROMPT)  # warm up this loop (its default executor starts a thread)
    total = 0
    for _ in range(runs):
        runtime.reset()
        start = time.perf_counter_ns()
        await agent.arun(PROMPT)
        total += time.perf_counter_ns() - start
    return total / 1e9


def time_sync(run: Callable[[], Any], reset: Callable[[], None], runs: int) -> float:
    """Seconds spent in `run()` over `runs` runs, `reset()` between them untimed."""
    reset()
    run()
    total = 0
    for _ in range(runs):
        reset()
        start = time.perf_counter_ns()
        run()
        total += time.perf_counter_ns() - start
    return total / 1e9


# --- smolagents ----------------------------------------------------------------------


def smolagents_suite(steps: Sequence[int]) -> dict[int, Callable[[int], float]] | None:
    """A timer per N for smolagents' ToolCallingAgent, or None when it is not installed."""
    try:
        import smolagents
        from smolagents.models import ChatMessage, ChatMessageToolCall, ChatMessageToolCallFunction, MessageRole
        from smolagents.monitoring import LogLevel, TokenUsage
    except ImportError:
        return None

    def noop(n: int) -> int:
        """Return `n` unchanged.

        Args:
            n: Any whole number.
        """
        return n

    # Called, not used as `@smolagents.tool`: smolagents reads the source and
    # warns about any decorator not spelled `@tool`.
    noop_tool = smolagents.tool(noop)

    def call(name: str, arguments: dict[str, Any], call_id: str) -> ChatMessage:
        function = ChatMessageToolCallFunction(name=name, arguments=arguments)
        return ChatMessage(
            role=MessageRole.ASSISTANT,
            content="",
            tool_calls=[ChatMessageToolCall(function=function, id=call_id, type="function")],
            token_usage=TokenUsage(input_tokens=0, output_tokens=0),
        )

    class ScriptedModel(smolagents.Model):
        """smolagents' counterpart of ScriptedRuntime: plays back prebuilt turns.

        smolagents 1.26 ships no test model; `Model.generate` is its extension point.
        A ToolCallingAgent ends a run by calling its `final_answer` tool, so
        the last turn is that call rather than plain text.
        """

        def __init__(self, turns: list[ChatMessage]) -> None:
            super().__init__(model_id="scripted")
            self.turns = turns
            self.next = 0

        def reset(self) -> None:
            self.next = 0

        def generate(
            self,
            messages: list[ChatMessage],
            stop_sequences: list[str] | None = None,
            response_format: dict[str, str] | None = None,
            tools_to_call_from: list[Any] | None = None,
            **kwargs: Any,
        ) -> ChatMessage:
            message = self.turns[self.next]
            self.next += 1
            # The same check ScriptedRuntime makes: the turn's tools are on offer.
            offered = {t.name for t in tools_to_call_from or ()}
            for tool_call in message.tool_calls or ():
                if tool_call.function.name not in offered:
                    raise ValueError(f"turn {self.next - 1} calls {tool_call.function.name!r}, not offered")
            return message

    timers: dict[int, Callable[[int], float]] = {}
    for n in steps:
        turns = [call("noop", {"n": i}, f"call_{i}") for i in range(n - 1)]
        model = ScriptedModel([*turns, call("final_answer", {"answer": ANSWER}, "call_final")])
        # OFF: no console output, the fairest setting for a peer (INFO prints rich panels).
        agent = smolagents.ToolCallingAgent(
            tools=[noop_tool], model=model, max_steps=n + 1, verbosity_level=LogLevel.OFF
        )

        def run(agent: smolagents.ToolCallingAgent = agent) -> Any:
            return agent.run(PROMPT)

        model.reset()
        output = run()
        errors = [s.error for s in agent.memory.steps if getattr(s, "error", None)]
        observed = [s.observations for s in agent.memory.steps if isinstance(s, smolagents.ActionStep)]
        if output != ANSWER or errors or observed[:-1] != [str(i) for i in range(n - 1)]:
            raise SystemExit(f"smolagents: a {n}-step run went wrong: {output!r}, errors {errors}")
        timers[n] = lambda runs, run=run, model=model: time_sync(run, model.reset, runs)
    return timers


# --- measuring and reporting ---------------------------------------------------------


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of per-repetition ratios.

    Each repetition measures the setups back to back, so a ratio taken within
    one repetition cancels whatever else the machine was doing at the time.
    """
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def iqr(values: Sequence[float]) -> float:
    """Interquartile range over the median: how noisy the repetitions were."""
    q1, q2, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return (q3 - q1) / q2


Timings = dict[str, dict[int, list[float]]]
"""µs per step, by setup, then by steps per run, one value per repetition."""


def measure(repetitions: int, steps_per_repetition: int) -> Timings:
    agents: dict[tuple[type[NoopAgent], int], tuple[NoopAgent, ScriptedRuntime]] = {}
    for cls in (NoopAgent, InlineNoopAgent, AsyncNoopAgent):
        for n in STEPS:
            runtime = ScriptedRuntime(agentkit_turns(n))
            agent = cls(runtime=runtime)
            check_agentkit(agent, runtime, n)
            agents[cls, n] = (agent, runtime)

    def arun(cls: type[NoopAgent], n: int, runs: int) -> float:
        # One event loop per batch, like a long-lived service; only the awaits are timed.
        return asyncio.run(time_arun(*agents[cls, n], runs))

    def run(n: int, runs: int) -> float:
        agent, runtime = agents[NoopAgent, n]
        return time_sync(lambda: agent.run(PROMPT), runtime.reset, runs)

    timers: dict[str, Callable[[int, int], float]] = {
        "agentkit_arun": lambda n, runs: arun(NoopAgent, n, runs),
        "agentkit_run": run,
        "agentkit_arun_inline_tool": lambda n, runs: arun(InlineNoopAgent, n, runs),
        "agentkit_arun_async_tool": lambda n, runs: arun(AsyncNoopAgent, n, runs),
    }
    peer = smolagents_suite(STEPS)
    if peer is not None:
        timers["smolagents"] = lambda n, runs: peer[n](runs)

    timings: Timings = {name: {n: [] for n in STEPS} for name in timers}
    for repetition in range(repetitions):
        if sys.stderr.isatty():
            print(f"repetition {repetition + 1}/{repetitions}", file=sys.stderr, end="\r", flush=True)
        for n in STEPS:
            runs = max(1, steps_per_repetition // n)
            for name, timer in timers.items():
                gc.collect()
                timings[name][n].append(timer(n, runs) / (runs * n) * 1e6)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return timings


def report(timings: Timings, repetitions: int, steps_per_repetition: int) -> dict[str, Any]:
    peer = timings.get("smolagents")
    rows = []
    for n in STEPS:
        row: dict[str, Any] = {"steps": n}
        for name, series in timings.items():
            row[name] = {"us_per_step": round(statistics.median(series[n]), 1), "iqr": round(iqr(series[n]), 3)}
        if peer is not None:
            for name in ("agentkit_arun", "agentkit_run", "agentkit_arun_inline_tool", "agentkit_arun_async_tool"):
                row[name]["ratio"] = round(median_ratio(timings[name][n], peer[n]), 3)
        rows.append(row)
    return {
        "benchmark": "loop_overhead",
        "measures": "wall time of a run / its model steps; a scripted in-process model and one no-op tool",
        "goal": f"agentkit_arun ratio <= {GOAL_RATIO} at every N, growth from 20 to 50 steps near 1.0",
        "repetitions": repetitions,
        "steps_per_repetition": steps_per_repetition,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "versions": {
            "agentkit": metadata.version("agentkit"),
            "smolagents": None if peer is None else metadata.version("smolagents"),
        },
        "rows": rows,
        "growth_20_to_50": {name: round(median_ratio(s[50], s[20]), 3) for name, s in timings.items()},
        "raw_us_per_step": {
            name: {str(n): [round(v, 2) for v in values] for n, values in series.items()}
            for name, series in timings.items()
        },
    }


def print_table(result: dict[str, Any]) -> None:
    has_peer = "smolagents" in result["growth_20_to_50"]
    growth = result["growth_20_to_50"]
    # (heading, setup, what a cell shows)
    columns = [
        ("agentkit arun µs/step", "agentkit_arun", "us_per_step"),
        ("agentkit run() µs/step", "agentkit_run", "us_per_step"),
    ]
    if has_peer:
        columns += [
            ("smolagents µs/step", "smolagents", "us_per_step"),
            ("ratio arun", "agentkit_arun", "ratio"),
            ("ratio run()", "agentkit_run", "ratio"),
        ]
    columns.append(("arun, inline sync tool", "agentkit_arun_inline_tool", "us_per_step"))
    columns.append(("arun, async tool", "agentkit_arun_async_tool", "us_per_step"))
    if has_peer:
        columns.append(("ratio inline", "agentkit_arun_inline_tool", "ratio"))
        columns.append(("ratio async", "agentkit_arun_async_tool", "ratio"))

    def cell(row: dict[str, Any], setup: str, what: str) -> str:
        if what == "ratio":
            return f"{row[setup]['ratio']:.3f}"
        return f"{row[setup]['us_per_step']:.1f} (±{row[setup]['iqr'] / 2:.0%})"

    lines = [["steps/run", *(heading for heading, _, _ in columns)]]
    for row in result["rows"]:
        lines.append([str(row["steps"]), *(cell(row, setup, what) for _, setup, what in columns)])
    lines.append(["growth 20→50", *(f"×{growth[setup]:.2f}" if what != "ratio" else "" for _, setup, what in columns)])
    header = lines[0]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for i, line in enumerate(lines):
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print(
        f"Medians of {result['repetitions']} repetitions (± half the interquartile range); "
        "ratios and growth are medians of per-repetition ratios."
    )
    if has_peer:
        worst = max(row["agentkit_arun"]["ratio"] for row in result["rows"])
        verdict = "meets" if worst <= GOAL_RATIO else "misses"
        print(f"Goal: agentkit/smolagents <= {GOAL_RATIO}. The worst arun ratio is {worst:.3f}: it {verdict} the goal.")
    else:
        print(
            "smolagents is not installed: skipped it, so there are no ratios "
            f"(`pip install -e '.[bench]'` adds it; it measured ~{PEER_REFERENCE_US} µs/step elsewhere)."
        )
    print(
        "A sync tool runs in a worker thread (so it cannot block other agents on the loop); the inline and "
        "async columns skip that hop: the difference is the thread round trip."
    )


def profile(steps: int, runs: int) -> None:
    """Print where agentkit's `arun` spends its time on a `steps`-step run."""
    import cProfile
    import pstats

    runtime = ScriptedRuntime(agentkit_turns(steps))
    agent = NoopAgent(runtime=runtime)
    profiler = cProfile.Profile()

    async def go() -> None:
        await time_arun(agent, runtime, 5)  # warm up outside the profile
        profiler.enable()
        await time_arun(agent, runtime, runs)
        profiler.disable()

    asyncio.run(go())
    print(f"agentkit arun, {runs} runs of {steps} steps; µs per step = tottime / {runs * steps} * 1e6")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The agent loop's own overhead per step, side by side with smolagents."
    )
    parser.add_argument("--repetitions", type=int, default=REPETITIONS, help=f"default {REPETITIONS}")
    parser.add_argument("--steps-per-repetition", type=int, default=STEPS_PER_REPETITION, help="steps timed per batch")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--profile", type=int, metavar="STEPS", help="instead, profile agentkit's arun at STEPS steps")
    args = parser.parse_args(argv)

    if args.profile:
        profile(args.profile, runs=max(1, args.steps_per_repetition * 5 // args.profile))
        return 0
    timings = measure(args.repetitions, args.steps_per_repetition)
    result = report(timings, args.repetitions, args.steps_per_repetition)
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
