"""Replaying stored runs: another model on the same history, decision by decision.

    report = await replay(store, run_id, VLLMEngine("gemma-4-e4b"))
    report.first_divergence        # the first step where the new model decides otherwise
    report.valid_call_rate         # its calls that name an offered tool with valid arguments

Each stored step is put to the new runtime exactly as the original model saw
it: the stored conversation up to that turn, the run's offered tools and
typed-answer schema, and the step's sampling settings. The new decision is
compared with the stored one (same tools with the same arguments, in order;
or the same final text), not fed back: every step sees the stored history.

`ReplayRuntime` goes the other way: it answers from a stored run, turn by
turn, so a stored run can drive an agent in a test or a demo. By URI:

    Agent(runtime="replay:01JD...")                 # the run in $AGENTKIT_DB (or the default store)
    Agent(runtime="replay:01JD...?db=runs.db")      # the run in that file
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jsonschema

from agentkit.errors import AgentkitError, ModelOutputError, RuntimeUnavailable, ScriptError, StoreError
from agentkit.messages import AssistantMessage, ToolCall
from agentkit.planning import reference, references
from agentkit.runtime import Lifecycle, ModelRequest, ModelResponse, Runtime, RuntimeInfo
from agentkit.store import Store, default_path

__all__ = ["ReplayReport", "ReplayRuntime", "StepReplay", "from_uri", "replay"]


@dataclass(frozen=True, kw_only=True)
class StepReplay:
    """One stored step, put to the new runtime."""

    index: int
    stored: AssistantMessage
    replayed: AssistantMessage | None
    """None: the new runtime failed on this step (see `error`)."""
    matches: bool
    """Same calls (names and arguments, in order), or the same final text."""
    calls: int
    """Calls in the replayed decision (1 for a reply the runtime refused as malformed)."""
    valid_calls: int
    """Of those, calls to an offered tool with arguments valid under its schema."""
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class ReplayReport:
    """How a runtime decides on a stored run's history."""

    run_id: str
    runtime: str
    steps: tuple[StepReplay, ...]

    @property
    def first_divergence(self) -> int | None:
        """The index of the first step whose decision differs (None: none does)."""
        return next((s.index for s in self.steps if not s.matches), None)

    @property
    def valid_call_rate(self) -> float | None:
        """Valid calls over all replayed calls (None: it made no call)."""
        calls = sum(s.calls for s in self.steps)
        return sum(s.valid_calls for s in self.steps) / calls if calls else None


def _decision(message: AssistantMessage) -> tuple[tuple[str, object], ...] | str:
    if message.tool_calls:
        return tuple((c.name, c.arguments) for c in message.tool_calls)
    return message.text.strip()


async def replay(store: Store, run_id: str, runtime: Runtime) -> ReplayReport:
    """Put every readable step of a stored run to `runtime` and compare its decisions.

    Raises:
        StoreError: no such run.
    """
    stored = store.load(run_id)
    tools = stored.record.tools
    validators = {t.name: jsonschema.Draft202012Validator(t.parameters) for t in tools}
    parameters = {t.name: t.parameters for t in tools}
    planned = bool(tools) and any(s.plan for s in stored.steps)  # a run in plan mode: its turns may plan
    steps: list[StepReplay] = []
    for step in stored.steps:
        if step.position is None:  # a turn the original model garbled: no decision to compare
            continue
        request = ModelRequest(
            messages=stored.messages[: step.position],
            tools=tools,
            tool_choice="auto" if tools else "none",
            output_schema=stored.record.output_schema,
            sampling=step.sampling,
            plan=planned,
        )
        original = step.response.message
        try:
            response = await runtime.generate(request)
        except AgentkitError as exc:
            # A reply the runtime could not read or whose calls do not fit (`ModelOutputError`, on
            # runtimes that check calls rather than constrain them) is a call gone wrong: one invalid call.
            steps.append(
                StepReplay(
                    index=step.index,
                    stored=original,
                    replayed=None,
                    matches=False,
                    calls=1 if isinstance(exc, ModelOutputError) else 0,
                    valid_calls=0,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            continue
        message = response.message
        calls = message.tool_calls
        if planned:
            valid = sum(_valid_in_plan(c, n, parameters) for n, c in enumerate(calls, start=1))
        else:
            valid = sum(c.name in validators and validators[c.name].is_valid(c.arguments) for c in calls)
        steps.append(
            StepReplay(
                index=step.index,
                stored=original,
                replayed=message,
                matches=_decision(message) == _decision(original),
                calls=len(message.tool_calls),
                valid_calls=valid,
            )
        )
    return ReplayReport(run_id=run_id, runtime=runtime.info.uri or runtime.info.name, steps=tuple(steps))


def _valid_in_plan(call: ToolCall, position: int, parameters: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether the plan's call `position` is valid: a real tool, each reference a whole top-level
    argument pointing to an earlier call, the other arguments valid under the tool's schema."""
    schema = parameters.get(call.name)
    if schema is None:
        return False
    referred = {key for key, value in call.arguments.items() if reference(value) is not None}
    literal = {key: value for key, value in call.arguments.items() if key not in referred}
    if references(literal) or any(r.number >= position for r in references(call.arguments)):
        return False
    required = [key for key in schema.get("required", ()) if key not in referred]
    return jsonschema.Draft202012Validator({**schema, "required": required}).is_valid(literal)


class ReplayRuntime(Lifecycle):
    """Answers each request with the next readable turn of a stored run.

    The run is read once, when the runtime is made; it holds nothing after.

    Args:
        store: Where the run is.
        run_id: The run to play back.
        uri: The URI that names it, for `info` (`from_uri` gives it).

    Raises:
        StoreError: no such run in `store`.
        ScriptError: (from `generate`) every stored turn was played.
    """

    def __init__(self, store: Store, run_id: str, *, uri: str | None = None) -> None:
        stored = store.load(run_id)
        self.run_id = run_id
        self.responses: tuple[ModelResponse, ...] = tuple(s.response for s in stored.steps if s.position is not None)
        """The run's readable turns, in the order they are played."""
        self._next = 0
        self._lock = threading.Lock()
        self._info = RuntimeInfo(
            name="replay", model=f"run {run_id}", dialect="none", constrained=False, uri=uri or f"replay:{run_id}"
        )

    @property
    def info(self) -> RuntimeInfo:
        return self._info

    @property
    def remaining(self) -> int:
        """Turns not played yet."""
        return len(self.responses) - self._next

    async def generate(self, request: ModelRequest) -> ModelResponse:
        with self._lock:
            if self._next >= len(self.responses):
                raise ScriptError(
                    f"run {self.run_id} has {len(self.responses)} stored turns and all were played; "
                    "the agent asked the model more often than the stored run did"
                )
            response = self.responses[self._next]
            self._next += 1
        return response


def from_uri(scheme: str, value: str, uri: str) -> ReplayRuntime:
    """`replay:RUN_ID`, or `replay:RUN_ID?db=PATH`: the stored run's turns, from the store at
    `PATH`, else `$AGENTKIT_DB`, else the default store (`agentkit.store.default_path`).

    Raises:
        RuntimeUnavailable: an unknown option, no database at that path, or no such run in it.
    """
    run_id, _, query = value.partition("?")
    options = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
    if unknown := sorted(set(options) - {"db"}):
        raise RuntimeUnavailable(f"unknown option {', '.join(unknown)} in {uri!r}; the one option is db=PATH")
    if not run_id:
        raise RuntimeUnavailable(f"{uri!r} names no run: write replay:RUN_ID (`agentkit runs list` shows the ids)")
    path = Path(options["db"]) if options.get("db") else default_path()
    if not path.is_file():  # a mistyped path must not leave an empty database behind
        raise RuntimeUnavailable(
            f"{uri!r}: no run database at {path}; give its path with replay:RUN_ID?db=PATH or AGENTKIT_DB"
        )
    store = Store(path)
    try:
        return ReplayRuntime(store, run_id, uri=uri)
    except StoreError as exc:
        raise RuntimeUnavailable(f"{uri!r}: {exc} (`agentkit runs list` shows the runs there)") from exc
    finally:
        store.close()
