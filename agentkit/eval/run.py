"""Putting BFCL's entries to a runtime, with and without the grammar, and counting.

    results = await evaluate(resolve("vllm:default"), load(CATEGORIES, limit=20))
    results.summary("constrained", "simple_python").accuracy

Each entry is one model turn (`Entry.request`). Each arm is the same runtime:
`constrained` decodes under the dialect's grammar, `free` without it, its
text read by the dialect's tolerant parser (`Gemma4Dialect(strict=False)`).
In the parallel categories the dialect allows several calls in one turn even
where the runtime's preset allows one (the embedded model's does: a small
model otherwise repeats its call), since those entries ask for several.

Any exception a runtime raises for an entry is recorded with it (`Outcome.error`)
and the evaluation goes on; only cancelling it (Ctrl-C) stops it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from agentkit.dialects.gemma4 import Gemma4Dialect
from agentkit.errors import AgentkitError, ModelOutputError, OutputTruncated, ToolDefinitionError
from agentkit.eval.bfcl import BFCL_VERSION, Entry, EvalDataError, Tools
from agentkit.eval.scoring import score
from agentkit.runtime import Runtime, Usage, start_runtime

__all__ = ["ARMS", "ArmUnavailable", "EvalResults", "Outcome", "Summary", "arm_runtime", "evaluate"]

ARMS = ("constrained", "free")


class ArmUnavailable(AgentkitError):
    """The runtime cannot decode the way an arm asks (e.g. a server that takes no grammar, for `constrained`)."""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """One entry on one arm: what the model did and how it scores."""

    id: str
    category: str
    arm: str
    calls: list[dict[str, dict[str, Any]]]
    """The turn's calls in BFCL's form (`[{function: {parameter: value}}]`), under BFCL's names."""
    text: str = ""
    raw: str = ""
    """The model's text as decoded (kept when the turn could not be read)."""
    attempted: int = 0
    """Calls made, or 1 for a turn the dialect could not read (a call gone wrong)."""
    valid_calls: int = 0
    """Calls to an offered tool whose arguments are valid under its schema (jsonschema 2020-12)."""
    correct: bool = False
    reason: str | None = None
    """Why it is wrong, by BFCL's rules (`wrong_count`, `wrong_value`, ...), or `error`."""
    error: str | None = None
    """What the runtime raised, as `Type: message`."""
    error_type: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens the engine's prefix cache served (the arm that runs second finds the first's prompts there)."""
    completion_tokens: int = 0
    seconds: float = 0.0
    grammar_digest: str | None = None
    """The digest of the grammar the turn was decoded under (None: decoded free, or no turn)."""


@dataclass(frozen=True, kw_only=True)
class Summary:
    """One arm on one category."""

    arm: str
    category: str
    entries: int
    correct: int
    calls: int
    """Calls attempted (see `Outcome.attempted`)."""
    valid_calls: int
    completion_tokens: int
    prompt_tokens: int
    seconds: float
    """Wall time for the category, all entries in flight together up to the concurrency."""
    errors: Mapping[str, int] = field(default_factory=dict)
    """Runtime exceptions by type."""
    reasons: Mapping[str, int] = field(default_factory=dict)
    """Wrong answers by BFCL rule."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.entries if self.entries else 0.0

    @property
    def valid_call_rate(self) -> float | None:
        """Valid calls over calls attempted (None: no call was attempted)."""
        return self.valid_calls / self.calls if self.calls else None

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    @property
    def seconds_per_100(self) -> float:
        return 100 * self.seconds / self.entries if self.entries else 0.0


@dataclass(frozen=True, kw_only=True)
class EvalResults:
    """A whole evaluation: the setting, each arm × category's summary, and every outcome."""

    runtime: Mapping[str, Any]
    arms: tuple[str, ...]
    categories: tuple[str, ...]
    summaries: tuple[Summary, ...]
    outcomes: tuple[Outcome, ...]
    concurrency: int
    max_tokens: int
    limit: int | None
    started: float
    seconds: float
    bfcl_version: str = BFCL_VERSION

    def summary(self, arm: str, category: str) -> Summary:
        return next(s for s in self.summaries if s.arm == arm and s.category == category)

    def as_json(self) -> dict[str, Any]:
        """Everything, as JSON-ready data (the summaries with their rates)."""
        summaries = [
            {
                **dataclasses.asdict(s),
                "accuracy": s.accuracy,
                "valid_call_rate": s.valid_call_rate,
                "tokens_per_second": s.tokens_per_second,
                "seconds_per_100": s.seconds_per_100,
            }
            for s in self.summaries
        ]
        plain = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("summaries", "outcomes")
        }
        return {**plain, "summaries": summaries, "outcomes": [dataclasses.asdict(o) for o in self.outcomes]}


def arm_runtime(runtime: Runtime, arm: str, *, parallel: bool = False) -> Runtime:
    """`runtime` as `arm` decodes: under its grammar (`constrained`) or without (`free`,
    read by the tolerant parser); `parallel`: the dialect allows several calls in a turn.

    Raises:
        ArmUnavailable: the runtime cannot decode that way (it has no `variant`
            and is not already so), or `arm` is no arm.
    """
    if arm not in ARMS:
        raise ArmUnavailable(f"unknown arm {arm!r}; the arms are {', '.join(ARMS)}")
    constrained = arm == "constrained"
    variant = getattr(runtime, "variant", None)
    if variant is None:
        if runtime.info.constrained != constrained:
            have = "constrained" if runtime.info.constrained else "free"
            raise ArmUnavailable(
                f"{runtime.info.uri or runtime.info.name} only decodes {have}; run it with --arms {have}"
            )
        return runtime
    dialect = getattr(runtime, "dialect", None)
    if dialect is None and hasattr(runtime, "dialect"):  # a server that has not learnt its model yet
        raise ArmUnavailable(f"start {runtime.info.uri or runtime.info.name} first (`await runtime.astart()`)")
    if isinstance(dialect, Gemma4Dialect):
        dialect = copy.copy(dialect)
        if parallel:
            dialect.grammar = dataclasses.replace(dialect.grammar, parallel_calls=True)
        if not constrained:
            dialect.strict = False
        twin: Runtime = variant(dialect=dialect, constrained=constrained)
    else:
        twin = variant(constrained=constrained)
    if twin.info.constrained != constrained:  # e.g. a llama.cpp server in chat mode: no grammar to send
        raise ArmUnavailable(f"{runtime.info.uri or runtime.info.name} cannot decode {arm}; run it with --arms free")
    return twin


async def evaluate(
    runtime: Runtime,
    entries: Sequence[Entry],
    *,
    arms: Sequence[str] = ARMS,
    concurrency: int = 8,
    max_tokens: int = 256,
    limit: int | None = None,
    progress: Callable[[Outcome], None] | None = None,
) -> EvalResults:
    """Put every entry to every arm of `runtime`, category by category.

    The runtime is started here if it was not (a server's dialect is known
    once it is), never closed. `progress` is called with each outcome as it is scored.

    Raises:
        ArmUnavailable: the runtime cannot decode as an arm asks (before any entry runs).
    """
    await start_runtime(runtime)
    categories = tuple(dict.fromkeys(e.category for e in entries))
    variants = {
        (arm, parallel): arm_runtime(runtime, arm, parallel=parallel)
        for arm in arms
        for parallel in {"parallel" in c for c in categories}
    }
    started, clock = time.time(), time.perf_counter()
    gate = asyncio.Semaphore(concurrency)
    summaries: list[Summary] = []
    outcomes: list[Outcome] = []
    for arm in arms:
        for category in categories:
            chosen = [e for e in entries if e.category == category]
            decoder = variants[(arm, "parallel" in category)]

            async def one(entry: Entry, decoder: Runtime = decoder, arm: str = arm) -> Outcome:
                async with gate:
                    try:
                        outcome = await _outcome(decoder, entry, arm, max_tokens)
                    except Exception as exc:  # a bug in scoring one entry is that entry's, too
                        outcome = Outcome(
                            id=entry.id, category=entry.category, arm=arm, calls=[], reason="error",
                            error=f"{type(exc).__name__}: {exc}", error_type="internal",
                        )  # fmt: skip
                if progress is not None:
                    progress(outcome)
                return outcome

            began = time.perf_counter()
            done = await asyncio.gather(*(one(e) for e in chosen))
            summaries.append(_summary(arm, category, done, time.perf_counter() - began))
            outcomes += done
    return EvalResults(
        runtime=dataclasses.asdict(runtime.info),
        arms=tuple(arms),
        categories=categories,
        summaries=tuple(summaries),
        outcomes=tuple(outcomes),
        concurrency=concurrency,
        max_tokens=max_tokens,
        limit=limit,
        started=started,
        seconds=time.perf_counter() - clock,
    )


async def _outcome(runtime: Runtime, entry: Entry, arm: str, max_tokens: int) -> Outcome:
    began = time.perf_counter()
    base = functools.partial(Outcome, id=entry.id, category=entry.category, arm=arm)
    try:
        tools = entry.tools()
        request = entry.request(tools, max_tokens=max_tokens)
    except (ToolDefinitionError, EvalDataError) as exc:  # the entry's own data: nothing to ask the model
        return base(calls=[], reason="error", error=f"{type(exc).__name__}: {exc}", error_type="data")
    try:
        response = await runtime.generate(request)
    except ModelOutputError as exc:  # read as a turn without calls; the attempt counts as one invalid call
        verdict = score(entry, [])
        usage = exc.usage or Usage()
        return base(
            calls=[],
            raw=exc.raw_text,
            attempted=1 if exc.raw_text.strip() else 0,
            correct=verdict.correct,
            reason=verdict.reason,
            error=f"ModelOutputError: {exc.reason}",
            error_type="unreadable",
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            seconds=time.perf_counter() - began,
        )
    except Exception as exc:  # whatever the runtime raised is the entry's outcome, not the end of the run
        kind = "truncated" if isinstance(exc, OutputTruncated) else type(exc).__name__
        usage = getattr(exc, "usage", None) or Usage()  # a cut-off turn still cost its tokens
        return base(
            calls=[],
            raw=getattr(exc, "raw_text", "") or "",
            reason="error",
            error=f"{type(exc).__name__}: {exc}",
            error_type=kind,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            seconds=time.perf_counter() - began,
        )
    message = response.message
    decoded = tools.decoded(message.tool_calls)
    verdict = score(entry, decoded)
    return base(
        calls=decoded,
        text=message.text,
        raw=response.raw_text,
        attempted=len(message.tool_calls),
        valid_calls=sum(_valid(tools, call.name, call.arguments) for call in message.tool_calls),
        correct=verdict.correct,
        reason=verdict.reason,
        prompt_tokens=response.usage.prompt_tokens,
        cached_tokens=response.usage.cached_tokens,
        completion_tokens=response.usage.completion_tokens,
        seconds=time.perf_counter() - began,
        grammar_digest=response.grammar_digest,
    )


def _valid(tools: Tools, name: str, arguments: Mapping[str, Any]) -> bool:
    schema = tools.schemas.get(name)
    return schema is not None and jsonschema.Draft202012Validator(schema).is_valid(arguments)


def _summary(arm: str, category: str, outcomes: Sequence[Outcome], seconds: float) -> Summary:
    return Summary(
        arm=arm,
        category=category,
        entries=len(outcomes),
        correct=sum(o.correct for o in outcomes),
        calls=sum(o.attempted for o in outcomes),
        valid_calls=sum(o.valid_calls for o in outcomes),
        completion_tokens=sum(o.completion_tokens for o in outcomes),
        prompt_tokens=sum(o.prompt_tokens for o in outcomes),
        seconds=seconds,
        errors=dict(Counter(o.error_type for o in outcomes if o.error_type)),
        reasons=dict(Counter(o.reason for o in outcomes if o.reason and o.reason != "error")),
    )
