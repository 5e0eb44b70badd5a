"""The share of prompt tokens served from vLLM's prefix cache over a 10-step run.

The loop keeps prompts append-only from step to step unless its context
policy elides something; this measures what that is worth on the real
engine with the embedded model. The model's turns are scripted (each step
calls `read_log` once, the tenth answers) so that every run makes the same
ten requests, but each request is decoded by the engine, which reports how
many of its prompt tokens came from the cache.

    python benchmarks/prefix_cache.py            # or: make bench

Cases: plain (every result whole), cut (results cut by `max_result_chars`),
squeezed (a small `context_length`, so the policy elides the oldest results
as the run grows), and squeezed with `context="fail"`, which is what the
loop did before it had a context policy (the run fails when the prompt
overflows). The plain case's prompts are what the loop sent before the
policy existed: nothing is cut or elided, and they stay append-only
(tests/unit/test_context.py checks it). Results go to benchmarks/results/prefix_cache.json.
"""

from __future__ import annotations

import asyncio
import json
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any

from agentkit import Agent, ModelOutputError, ModelRequest, ModelResponse, RuntimeInfo, Sampling, Usage, tool
from agentkit.runtimes import ScriptedRuntime
from agentkit.runtimes.vllm import VLLMEngine

STEPS = 10
RESULTS = Path(__file__).parent / "results" / "prefix_cache.json"


def page(n: int) -> str:
    return f"log {n}: " + " ".join(str(1000 * n + i) for i in range(60))


@tool
def read_log(n: int) -> str:
    """Read one page of the server log.

    Args:
        n: The page number.
    """
    return page(n)


class Measured:
    """Sends each request to the engine (to measure its cache), answers from the script."""

    def __init__(self, engine: VLLMEngine, context_length: int | None) -> None:
        turns: list[Any] = [{"tool_calls": [{"name": "read_log", "arguments": {"n": n}}]} for n in range(1, STEPS)]
        self.script = ScriptedRuntime([*turns, "healthy"])
        self.engine = engine
        self.free = engine.variant(constrained=False)
        self.context_length = context_length
        self.seen: list[tuple[int, int]] = []

    @property
    def info(self) -> RuntimeInfo:
        info = self.engine.info
        return replace(info, context_length=self.context_length or info.context_length)

    def count_tokens(self, request: ModelRequest) -> int:
        return self.engine.count_tokens(request)

    async def generate(self, request: ModelRequest) -> ModelResponse:
        # Free decoding, a few tokens: only the prompt's cache is measured.
        try:
            usage = (await self.free.generate(request)).usage
        except ModelOutputError as exc:
            usage = exc.usage or Usage()
        self.seen.append((usage.prompt_tokens, usage.cached_tokens))
        return await self.script.generate(request)


def run_case(
    engine: VLLMEngine, name: str, *, cut: int | None, context_length: int | None, context: str = "elide"
) -> dict[str, Any]:
    runtime = Measured(engine, context_length)
    try:
        reader = tool(max_result_chars=cut)(read_log.func) if cut else read_log
    except TypeError:  # an agentkit from before max_result_chars (measuring the old loop)
        return {"case": name, "skipped": "this agentkit has no max_result_chars"}
    # The case's name opens the prompt: no case reads another's prompts from the cache.
    agent = Agent(
        tools=[reader],
        runtime=runtime,
        instructions=f"Case: {name}. You check server logs.",
        max_steps=STEPS + 1,
        sampling=Sampling(max_tokens=8),
        context=context,  # type: ignore[arg-type]
    )
    try:
        asyncio.run(agent.arun("Read the log page by page, then say if the server is healthy."))
    except Exception as exc:  # the old loop had no context policy
        return {"case": name, "failed": f"{type(exc).__name__}: {exc}"[:200], "per_request": runtime.seen}
    prompt = sum(p for p, _ in runtime.seen)
    cached = sum(c for _, c in runtime.seen)
    return {
        "case": name,
        "requests": len(runtime.seen),
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "cached_share": round(cached / prompt, 3) if prompt else 0.0,
        "per_request": runtime.seen,
    }


def main() -> None:
    engine = VLLMEngine("default")
    engine.start()
    try:
        cases = [
            run_case(engine, "plain", cut=None, context_length=None),
            run_case(engine, "cut (max_result_chars=120)", cut=120, context_length=None),
            run_case(engine, "squeezed (context_length=1200)", cut=None, context_length=1200),
            # What the loop did before it had a context policy: the run fails once the prompt overflows.
            run_case(engine, "squeezed, context='fail'", cut=None, context_length=1200, context="fail"),
        ]
    finally:
        engine.close()
    print(f"{'case':34} {'requests':>8} {'prompt':>8} {'cached':>8} {'share':>6}")
    for c in cases:
        if "cached_share" not in c:
            print(f"{c['case']:34} {c.get('skipped') or c.get('failed')}")
            continue
        figures = f"{c['requests']:>8} {c['prompt_tokens']:>8} {c['cached_tokens']:>8} {c['cached_share']:>6.1%}"
        print(f"{c['case']:34} {figures}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.machine(), "cases": cases}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
