"""The planner-executor loop, and the values it produces.

A run goes through its phases in order, each a method of `Run`, the one
object that holds the run's state (messages, steps, usage, budget meter,
observers):

1. `start` a new run, or `resume` a stored one;
2. `ask` the model for its next turn (streamed: text arrives as it decodes),
   under the budget and with a view of the conversation that fits the context;
3. `act`: run the turn's tool calls (concurrently), after the approvals
   they need; a call that waits for a person's decision pauses the run;
4. `finish` with the typed answer, `pause` for approval, or `fail`.

`run_loop` drives the phases and yields an event for each thing that
happens, so callers can show progress live; `Agent.arun` keeps the last.
The store and the tracer are observers of the phases (`agentkit.observers`).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from agentkit.budget import MIN_REPLY_TOKENS, Budget, Meter
from agentkit.context import ContextPolicy, ContextView, count_tokens, estimate
from agentkit.errors import (
    AgentkitError,
    AwaitingApproval,
    BudgetExceeded,
    MaxStepsExceeded,
    ModelOutputError,
    OutputValidationError,
    RunFailed,
    StoreError,
    ToolArgumentsError,
)
from agentkit.executor import Approver, Executor, repeated_calls, shared_result
from agentkit.messages import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolResult,
    UserMessage,
    with_unique_call_ids,
)
from agentkit.observers import Observers, OnStoreError, Recording, RunEnd, RunObserver
from agentkit.planning import references
from agentkit.runtime import (
    ModelDelta,
    ModelRequest,
    ModelResponse,
    Runtime,
    Sampling,
    Usage,
    start_runtime,
    stream_turn,
)
from agentkit.secrets import declare_calls, marks_secrets
from agentkit.tool import BoundTool
from agentkit.tracing.spans import metrics_on, tracing_on

if TYPE_CHECKING:  # the store (sqlite-utils) is imported only by agents that record
    from agentkit.store import Approval, RunStatus, Store, StoredRun

from agentkit.events import (
    ModelTurn,
    RunEvent,
    RunFinished,
    RunParent,
    RunPaused,
    RunResult,
    Step,
    ToolsFinished,
    output_schema,
    parse_output,
)

__all__ = ["LoopConfig", "Run", "final_result", "run_loop"]

OutputT = TypeVar("OutputT")
OnStart = Callable[[ToolCall, BoundTool], None]
OnResult = Callable[[ToolResult], None]


@dataclass(frozen=True, kw_only=True)
class LoopConfig:
    """Everything a run needs; built by `Agent`."""

    name: str
    runtime: Runtime
    tools: Sequence[BoundTool]
    instructions: str
    output_type: Any
    budget: Budget
    """`max_steps` always set."""
    sampling: Sampling
    executor: Executor
    store: Store | None = None
    """Where the run is recorded as it happens (None: not recorded)."""
    on_store_error: OnStoreError = "fail"
    """A write the store refuses stops the run (`fail`), or the run goes on unrecorded (`continue`)."""
    agent_path: str = ""
    """The agent's import path (`module:Class`), stored with the run."""
    parent: RunParent | None = None
    context: ContextPolicy = "elide"
    approve: Approver | None = None
    """Decides on calls of `requires_approval` tools; None (or a None answer): the run pauses."""
    observers: Sequence[RunObserver] = ()
    """Told every phase, after the store and the tracer."""
    deltas: bool = True
    """Stream each turn (text as it decodes); False asks for whole turns (`generate`)."""
    planning: bool = False
    """Plan mode (`agentkit.planning`): each turn with calls is a plan, run as a graph."""
    max_replans: int = 2
    """In plan mode, plans after the first; then the model must answer."""
    plan_concurrency: int = 8
    """In plan mode, most calls of a plan running at once."""

    @property
    def max_steps(self) -> int:
        assert self.budget.max_steps is not None
        return self.budget.max_steps


class _Ended(Exception):
    """Internal: the run reached its end (finished or paused); the driver yields `event` and stops."""

    def __init__(self, event: RunEvent) -> None:
        self.event = event


class Run:
    """One run's state, and its phases as methods in the order a run goes through them."""

    def __init__(self, config: LoopConfig) -> None:
        self.config = config
        self.run_id = ""
        self.messages: list[Message] = []
        self.steps: list[Step] = []
        self.usage = Usage()
        self.spent = Usage()
        """By this invocation (a resumed run's earlier attempts were traced with them)."""
        self.meter = Meter(budget=config.budget)
        self.specs = tuple(t.spec for t in config.tools)
        # An unreadable turn's secret arguments cannot be found to be masked: its raw text is not kept.
        self._withhold_raw = any(marks_secrets(spec.parameters) for spec in self.specs)
        self.schema = output_schema(config.output_type)
        self.idempotent = {t.name: t.options.idempotent for t in config.tools}
        self.view = ContextView(
            runtime=config.runtime,
            policy=config.context,
            max_chars={t.name: n for t in config.tools if (n := t.options.max_result_chars) is not None},
        )
        self.approvals: dict[str, Approval] = {}
        self.status: RunStatus = "running"
        self._turn: ModelResponse | None = None
        self._taken: set[str] = set()
        self._began: dict[str, float] = {}
        self._context: Mapping[str, Any] = {}
        """What the context policy did to the last request (kept with its step)."""
        self.last_turn: str | None = None
        """The budget that made the last request the last turn, if one did."""
        self._timed_out = False
        self._finished: dict[str, ToolResult] = {}
        """The results of the calls running now, as they finish (or are refused)."""
        observers: list[RunObserver] = []
        self._recording = Recording(config.store, on_error=config.on_store_error) if config.store else None
        if self._recording is not None:
            observers.append(self._recording)
        if tracing_on() or metrics_on():  # else every span would be a no-op: none is made
            from agentkit.tracing.observer import Tracing

            observers.append(Tracing())
        self.observers = Observers([*observers, *config.observers])

    @property
    def turn(self) -> ModelResponse:
        """The model's last turn (after `ask`)."""
        assert self._turn is not None, "no turn was asked yet"
        return self._turn

    # --- 1. start or resume ------------------------------------------------------------------

    def start(self, prompt: str | Sequence[Message]) -> None:
        """A new run on `prompt`, recorded before anything else happens."""
        if self.config.instructions:
            self.messages.append(SystemMessage(text=self.config.instructions))
        if isinstance(prompt, str):
            self.messages.append(UserMessage(text=prompt))
        else:
            self.messages.extend(prompt)
        from ulid import ULID

        self.run_id = str(ULID())
        self.observers.started(self, resumed=False)

    def resume(self, stored: StoredRun, *, rerun_started: bool) -> None:
        """Pick a stored run up where it stopped (its budget's spending carries over).

        Raises:
            StoreError: the last decision's non-idempotent calls had started;
                they may have had effects (allowed with `rerun_started`).
        """
        self.run_id = stored.record.id
        last = stored.steps[-1] if stored.steps else None
        if last is not None and last.started and not rerun_started:
            # Refused before anything is written: the run stays as it was, resumable.
            names = ", ".join(f"{c.name} ({c.id})" for c in last.started)
            raise StoreError(
                f"run {self.run_id} stopped while non-idempotent tool calls were running: {names}; they may "
                "have had effects. Resume with rerun_started=True (--rerun-started) to run them again"
            )
        self.steps = [
            Step(index=s.index, response=s.response, tool_results=_marked(s.results, _repeats(s.response)))
            for s in stored.steps
        ]
        self.messages = list(stored.messages)
        self.usage = stored.usage
        self.approvals = dict(stored.approvals)
        self._taken = {c.id for m in self.messages if isinstance(m, AssistantMessage) for c in m.tool_calls}
        self.meter.steps = len(self.steps)
        self.meter.tokens = self.usage.total_tokens
        self.meter.tool_calls = sum(1 for s in self.steps for r in s.tool_results if r.duplicate_of is None)
        self.observers.started(self, resumed=True)

    async def go_on(self, stored: StoredRun) -> AsyncIterator[RunEvent]:
        """The first thing a resumed run does: finish its last decision's calls, or conclude its answer."""
        last = stored.steps[-1] if stored.steps else None
        if last is None:
            return
        calls = last.response.message.tool_calls
        if last.pending:
            async for event in self.act(last.index, last.pending, time.monotonic(), done=last.results):
                yield event
        elif not calls and last.response.finish_reason != "error":
            # Killed after the final answer was recorded, before the run was marked done.
            with contextlib.suppress(OutputValidationError):
                self.finish(parse_output(self.config.output_type, last.response.message.text), last.response)

    # --- 2. ask the model --------------------------------------------------------------------

    def request(self, index: int) -> ModelRequest:
        """The request for turn `index`: the last a budget affords must answer, and the view must fit."""
        if (spent := self.meter.spent()) is not None:
            raise self._exhausted(spent)
        sampling = self.config.sampling
        calls = bool(self.specs) and not self._answer_missed() and not self._plans_spent()
        base = ModelRequest(
            messages=(),
            tools=self.specs,
            tool_choice="auto" if calls else "none",
            output_schema=self.schema,
            sampling=sampling,
            plan=self.config.planning and calls,
        )
        request, report = self.view.request(self.messages, base)
        prompt = self._prompt_tokens(request)
        if (last := self.meter.last_turn(prompt + sampling.max_tokens)) is not None and self.specs:
            request = replace(request, tool_choice="none", plan=False)
            self.last_turn = last
        reply = self.meter.reply_tokens(prompt, sampling.max_tokens)
        if reply < min(MIN_REPLY_TOKENS, sampling.max_tokens):
            raise self._exhausted("tokens")
        if reply < sampling.max_tokens:
            request = replace(request, sampling=replace(sampling, max_tokens=reply))
        self._context = report
        return request

    def _answer_missed(self) -> bool:
        """The last turn answered and the run did not end on it: the answer missed the
        output type, so the model must answer now (a runtime that can then enforces
        the schema: `response_format` on a chat server)."""
        last = self.steps[-1].response if self.steps else None
        return last is not None and last.finish_reason != "error" and not last.message.tool_calls

    def _plans_spent(self) -> bool:
        """In plan mode, the run made its first plan and `max_replans` more: it must answer now."""
        if not self.config.planning:
            return False
        plans = sum(1 for s in self.steps if s.response.metadata.get("plan") and s.message.tool_calls)
        return plans > self.config.max_replans

    def _prompt_tokens(self, request: ModelRequest) -> int:
        """The prompt's size for the token budget: the last turn's, plus what came after it."""
        if self.meter.budget.max_tokens is None:
            return 0
        last = next((s for s in reversed(self.steps) if s.response.usage.prompt_tokens), None)
        if last is None:
            return count_tokens(self.config.runtime, request)
        added = self.messages[self.messages.index(last.message) + 1 :] if last.message in self.messages else []
        return last.response.usage.total_tokens + estimate(replace(request, messages=tuple(added), tools=()))

    async def ask(self, index: int, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        """Turn `index` from the model, streamed; `self.turn` is the whole turn after the last delta.

        A turn the run cannot use (the runtime raises `ModelOutputError`: an
        unconstrained model garbled it, or its calls do not fit) is kept
        (finish reason `error`, its raw text), the model is told what was
        wrong, and the run goes on.
        """
        self.observers.asking(self, index, request)
        runtime = self.config.runtime
        stream = stream_turn(runtime, request) if self.config.deltas else _whole(runtime, request)
        started = time.monotonic()
        try:
            while True:
                with self.observers.scope():
                    async with self._deadline():
                        item = await anext(stream)
                if isinstance(item, ModelResponse):
                    response = item
                    break
                yield item
        except ModelOutputError as exc:
            unreadable = self._withheld(exc)
            self.observers.ask_failed(self, index, unreadable)
            self._garbled(index, unreadable, request)
            return
        except BaseException as exc:
            self.observers.ask_failed(self, index, exc)
            if isinstance(exc, TimeoutError) and self._over_time():
                raise self._exhausted("seconds") from None
            import asyncio  # the loop is running: asyncio is imported; not at agentkit's import

            if isinstance(exc, AgentkitError | asyncio.CancelledError | GeneratorExit | KeyboardInterrupt):
                raise
            raise RunFailed(
                f"the runtime failed at step {index}: {type(exc).__name__}: {exc}", partial=self.snapshot()
            ) from exc
        finally:
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator
        self.meter.longest_turn = max(self.meter.longest_turn, time.monotonic() - started)
        unique = with_unique_call_ids(response.message, self._taken, index)
        if unique is not response.message:
            response = replace(response, message=unique)
        if self._context:
            response = replace(response, metadata={**response.metadata, "context": self._context})
        if request.plan and response.message.tool_calls:
            # Marks the step's calls as one plan: run (and resumed) as a graph, stored with their dependencies.
            response = replace(response, metadata={**response.metadata, "plan": True})
        elif repeats := repeated_calls(response.message.tool_calls):
            # Marks the calls that repeat an earlier one of the turn: they do not run, they share its result.
            response = replace(response, metadata={**response.metadata, "duplicates": repeats})
        self._count(response.usage)
        # Write-ahead: the decision is stored before any tool runs (its secret arguments declared first).
        declare_calls(response.message.tool_calls, self.specs)
        self.observers.answered(self, index, response, len(self.messages))
        self.messages.append(response.message)
        self._turn = response

    def _withheld(self, exc: ModelOutputError) -> ModelOutputError:
        """`exc` without the model's text when a tool takes secrets: the store, the trace and the
        model's feedback would quote it, and an unreadable turn's secret arguments cannot be found."""
        if not self._withhold_raw:
            return exc
        return ModelOutputError(exc.reason, WITHHELD, usage=exc.usage, problems=exc.problems)

    def _garbled(self, index: int, exc: ModelOutputError, request: ModelRequest) -> None:
        """Keep the unusable turn `index` as a step (its raw text, usage and problems) and tell the model."""
        garbled = ModelResponse(
            message=AssistantMessage(),
            usage=exc.usage or Usage(requests=1),
            finish_reason="error",
            raw_text=exc.raw_text,
            metadata={"problems": list(exc.problems)} if exc.problems else {},
        )
        self._count(garbled.usage)
        self.observers.answered(self, index, garbled, None)
        self.steps.append(Step(index=index, response=garbled))
        self.feedback(index, exc, calls_allowed=bool(request.allowed_tools))
        self._turn = garbled

    def _count(self, usage: Usage) -> None:
        self.usage, self.spent = self.usage + usage, self.spent + usage
        self.meter.steps += 1
        self.meter.tokens += usage.total_tokens

    def feedback(
        self, step: int, problem: ModelOutputError | OutputValidationError, *, calls_allowed: bool = True
    ) -> None:
        """Tell the model why its reply at `step` could not be used (`feedback_text`); the run then asks again.

        The one place a run sends a reply back: runtimes only report what was
        wrong (they do not re-ask), and each retry is a step under the budget.
        """
        message = UserMessage(text=feedback_text(problem, calls_allowed=calls_allowed))
        self.observers.message_added(self, len(self.messages), message, step)
        self.messages.append(message)

    # --- 3. run the tools --------------------------------------------------------------------

    async def act(
        self, index: int, calls: Sequence[ToolCall], started: float, *, done: Sequence[ToolResult] = ()
    ) -> AsyncIterator[RunEvent]:
        """Run turn `index`'s `calls` (those a person decided or need no decision), then record the step.

        Calls waiting for approval pause the run once the others have run.
        `done`: results the step already had (a resumed step).
        """
        plan = bool(self._response(index).metadata.get("plan"))
        repeats = _repeats(self._response(index))
        decisions, waiting = await self.decide([c for c in calls if c.id not in repeats], plan=plan)
        runnable = [c for c in calls if c not in waiting and c.id not in repeats]
        allowed = runnable
        if (most := self.meter.budget.max_tool_calls) is not None:
            allowed = runnable[: max(0, most - self.meter.tool_calls)]
        refused = tuple(
            self._refused(c, f"not run: the run's budget of {most} tool calls is spent")
            for c in runnable[len(allowed) :]
        )
        message = next((s.message for s in self.steps if s.index == index), None) or self.turn.message
        if plan:
            late: list[ToolCall] = []
            fresh = await self._run_plan(index, message.tool_calls, allowed, decisions, (*done, *refused), late)
            waiting += late
        else:
            fresh = await self._run_tools(index, allowed, decisions)
        fresh += refused
        fresh += self._share(calls, repeats, (*done, *fresh))
        by_id = {r.call_id: r for r in (*done, *fresh)}
        results = tuple(by_id[c.id] for c in message.tool_calls if c.id in by_id)
        ids = {c.id for c in message.tool_calls}
        self.messages = [m for m in self.messages if not (isinstance(m, ToolResult) and m.call_id in ids)]
        self.messages.extend(results)
        step = Step(
            index=index, response=self._response(index), tool_results=results, seconds=time.monotonic() - started
        )
        if self.steps and self.steps[-1].index == index:
            self.steps[-1] = step
        else:
            self.steps.append(step)
        yield ToolsFinished(step=index, results=results)
        if self._timed_out:
            raise self._exhausted("seconds")
        if waiting:
            self.pause(waiting)

    def _share(
        self, calls: Sequence[ToolCall], repeats: Mapping[str, str], results: Sequence[ToolResult]
    ) -> tuple[ToolResult, ...]:
        """Results for the `calls` that repeat an earlier call of their turn (`repeats`), once it has
        its result: that result, shared, or a refusal for a tool that is not idempotent (`shared_result`)."""
        by_id = {r.call_id: r for r in results}
        shared = []
        for call in calls:
            first = by_id.get(repeats.get(call.id, ""))
            if first is None or call.id in by_id:  # not a repeat, or its first call waits for approval
                continue
            result = shared_result(call, first, idempotent=self.idempotent.get(call.name, True))
            self.observers.tool_finished(self, result, None)
            shared.append(result)
        return tuple(shared)

    def _response(self, index: int) -> ModelResponse:
        earlier = next((s.response for s in self.steps if s.index == index), None)
        return earlier if earlier is not None else self.turn

    async def decide(
        self, calls: Sequence[ToolCall], *, plan: bool = False
    ) -> tuple[dict[str, bool | str], list[ToolCall]]:
        """Decisions on the calls that need approval, and the calls that must wait for one.

        A decision comes from the store (given on resume), else the `approve`
        callback; None from it, or no callback, makes the call wait when the
        run is stored, and refuses it otherwise (nothing could resume it).
        `plan`: the calls are a plan's: one with references is decided when they
        are filled in, so that the decision is on the values it will run with.
        """
        decisions: dict[str, bool | str] = {}
        waiting: list[ToolCall] = []
        tools = self.config.executor.tools
        for call in calls:
            tool = tools.get(call.name)
            if tool is None or not tool.options.requires_approval:
                continue
            if plan and references(call.arguments):
                continue  # decided once its references are filled in (`_run_plan`), on the values
            try:
                tool.validate(call.arguments)
            except ToolArgumentsError:
                continue  # no decision needed: the executor reports the arguments
            stored = self.approvals.get(call.id)
            if stored is not None and stored.approved is not None:
                denied = stored.reason or f"the call to {call.name!r} was denied"
                decisions[call.id] = True if stored.approved else denied
                self.observers.decided(self, call, stored.approved, stored.reason, stored.decided_by, stored=True)
                continue
            asked = time.monotonic()
            answer = await self._ask_approver(call)
            self.meter.started += time.monotonic() - asked  # a person's time to decide is not the run's
            if answer is None and self._recording is not None and self._recording.lost is None:
                waiting.append(call)
                continue
            if answer is None and self._recording is not None:
                answer = (
                    f"tool {call.name!r} requires approval, and the run cannot pause for it: it goes on "
                    "unrecorded (on_store_error='continue'), so nothing could resume it"
                )
            elif answer is None:
                answer = (
                    f"tool {call.name!r} requires approval and this agent has neither an approver nor a store to "
                    "pause the run in; pass approve=... or store=... to the agent"
                )
            decisions[call.id] = answer
            by = getattr(self.config.approve, "decided_by", None) or "callback"
            reason = None if answer is True else str(answer)
            self.observers.decided(self, call, answer is True, reason, by, stored=False)
        return decisions, waiting

    async def _ask_approver(self, call: ToolCall) -> bool | str | None:
        approve = self.config.approve
        if approve is None:
            return None
        try:
            answer = approve(call)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            return f"the approver of {call.name!r} raised {type(exc).__name__}: {exc}"
        if answer is None or answer is True:
            return answer
        return answer if isinstance(answer, str) and answer else f"the call to {call.name!r} was not approved"

    async def _run_tools(
        self, index: int, calls: Sequence[ToolCall], decisions: Mapping[str, bool | str]
    ) -> tuple[ToolResult, ...]:
        """The turn's calls, run concurrently (`Executor.run_all`)."""

        async def run_all(on_start: OnStart, on_result: OnResult) -> Sequence[ToolResult]:
            return await self.config.executor.run_all(
                calls, decisions=decisions, on_start=on_start, on_result=on_result
            )

        return await self._running(index, calls, run_all)

    async def _run_plan(
        self,
        index: int,
        plan: Sequence[ToolCall],
        calls: Sequence[ToolCall],
        decisions: Mapping[str, bool | str],
        done: Sequence[ToolResult],
        waiting: list[ToolCall],
    ) -> tuple[ToolResult, ...]:
        """A plan's `calls`, each as soon as the calls it references have results (`run_plan`).

        A call whose reference cannot be filled in (a failed call, a missing
        field, a value of the wrong type) gets an error result, and so do the
        calls that use its result; the others go on. A call with references
        that needs approval is decided on its filled-in values; one that must
        wait for a decision joins `waiting` (as filled in). A call that waits,
        or uses the result of one that does, does not run now: the plan
        finishes when the run resumes. Traced as one `execute_plan` span around
        its calls' spans, each linked to the spans of the calls it used.
        """
        from agentkit.planning import run_plan
        from agentkit.tracing.spans import plan_span, span_context

        executor = self.config.executor
        parameters = {name: tool.spec.parameters for name, tool in executor.tools.items()}
        spans: dict[str, Any] = {}
        decided = dict(decisions)

        async def run_graph(on_start: OnStart, on_result: OnResult) -> Sequence[ToolResult]:
            def started(call: ToolCall, tool: BoundTool) -> None:
                spans[call.id] = span_context()  # the call's own span is the current one
                on_start(call, tool)

            async def run(call: ToolCall, depends_on: tuple[str, ...]) -> ToolResult | None:
                decision = decided.get(call.id)
                if decision is None:
                    more, waits = await self.decide([call])  # filled in: decided as a call of the step loop
                    if waits:
                        waiting.extend(waits)
                        return None
                    decision = more.get(call.id)
                links = [spans[d] for d in depends_on if spans.get(d) is not None]
                result = await executor.run(call, decision=decision, on_start=started, links=links)
                on_result(result)
                return result

            def refuse(call: ToolCall, why: str) -> ToolResult:
                self._finished[call.id] = result = self._refused(call, why)
                return result

            with plan_span(index, plan, self.run_id):
                return await run_plan(
                    calls,
                    plan,
                    run=run,
                    refuse=refuse,
                    done={r.call_id: r for r in done},
                    parameters=parameters,
                    concurrency=self.config.plan_concurrency,
                )

        return await self._running(index, calls, run_graph)

    async def _running(
        self,
        index: int,
        calls: Sequence[ToolCall],
        runner: Callable[[OnStart, OnResult], Awaitable[Sequence[ToolResult]]],
    ) -> tuple[ToolResult, ...]:
        """`runner`'s results for `calls`, under the run's time budget, each start and result recorded."""
        self._timed_out = False
        if not calls:
            return ()
        self._finished = finished = {}

        def on_start(call: ToolCall, tool: BoundTool) -> None:
            self._began[call.id] = time.time()
            self.observers.tool_started(self, call, tool)

        def on_result(result: ToolResult) -> None:
            finished[result.call_id] = result
            self.meter.tool_calls += 1
            self.observers.tool_finished(self, result, self._began.pop(result.call_id, None))

        try:
            with self.observers.scope():  # each tool's span nests under the run's
                async with self._deadline():
                    return tuple(await runner(on_start, on_result))
        except TimeoutError:
            if not self._over_time():
                raise
            # The time budget ran out: the calls still running are cancelled, and recorded so.
            self._timed_out = True
            limit = self.meter.budget.max_seconds
            return tuple(
                finished.get(c.id) or self._refused(c, f"cancelled: the run's time budget ({limit:g} s) ran out")
                for c in calls
            )
        except StoreError:
            raise
        except Exception as exc:  # the executor turns tool failures into results; this is a bug
            raise RunFailed(
                f"running the tools of step {index} failed: {type(exc).__name__}: {exc}", partial=self.snapshot()
            ) from exc

    def _refused(self, call: ToolCall, text: str) -> ToolResult:
        """An error result for a call that did not run, recorded like any other."""
        result = ToolResult(call_id=call.id, name=call.name, content=text, is_error=True)
        self.observers.tool_finished(self, result, None)
        return result

    def _deadline(self) -> contextlib.AbstractAsyncContextManager[Any]:
        left = self.meter.seconds_left()
        if left is None:
            return contextlib.nullcontext()
        import asyncio

        return asyncio.timeout(max(left, 0))

    def _over_time(self) -> bool:
        left = self.meter.seconds_left()
        return left is not None and left <= 0

    # --- 4. finish, pause or fail --------------------------------------------------------------

    def answer(self, index: int, response: ModelResponse, started: float) -> None:
        """A turn without calls: the final answer, or feedback when it does not fit the output type."""
        self.steps.append(Step(index=index, response=response, seconds=time.monotonic() - started))
        try:
            output = parse_output(self.config.output_type, response.message.text)
        except OutputValidationError as exc:
            # An unconstrained runtime can miss the schema: tell the model and go on
            # (the next turn must answer; see `_answer_missed`).
            self.feedback(index, exc)
            return
        self.finish(output, response)

    def overspent(self, index: int, started: float) -> None:
        """The last turn a budget allowed called tools anyway (an unconstrained model): they do not run."""
        self.steps.append(Step(index=index, response=self.turn, seconds=time.monotonic() - started))
        raise self._exhausted(self.last_turn or "steps")

    def finish(self, output: Any, answer: ModelResponse) -> None:
        result = RunResult(
            output=output, run_id=self.run_id, messages=tuple(self.messages), steps=tuple(self.steps), usage=self.usage
        )
        self.status = "done"
        self.observers.ended(self, RunEnd(status="done", output=output, answer=answer))
        raise _Ended(RunFinished(result=result))

    def pause(self, waiting: Sequence[ToolCall]) -> None:
        for call in waiting:
            if call.id not in self.approvals:  # a call that waited before keeps its first wait's time
                self.observers.decided(self, call, None, None, None, stored=False)
        self.status = "awaiting_approval"
        self.observers.ended(self, RunEnd(status="awaiting_approval"))
        raise _Ended(RunPaused(run_id=self.run_id, calls=tuple(waiting), partial=self.snapshot()))

    def fail(self, exc: BaseException) -> None:
        """The run stops on `exc`: recorded (cancelled, budget_exhausted or failed) with what it had done."""
        if self.status in ("done", "awaiting_approval"):
            return  # GeneratorExit also comes when the caller stops after the end
        import asyncio

        cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | GeneratorExit)
        self.status = "cancelled" if cancelled else "budget_exhausted" if isinstance(exc, BudgetExceeded) else "failed"
        if isinstance(exc, AgentkitError) and exc.partial is None:
            # Raised below the run (a runtime, the context policy, the store), the
            # error could not be given the trajectory when it was made.
            exc.partial = self.snapshot()
        try:
            exhausted = exc.budget if isinstance(exc, BudgetExceeded) else None
            self.observers.ended(self, RunEnd(status=self.status, error=exc, exhausted=exhausted))
        except StoreError as unrecorded:
            # The store fails too while the run fails: the run's own error is the one to see.
            exc.add_note(f"and the run's end could not be stored: {unrecorded}")

    def snapshot(self) -> RunResult[Any]:
        return RunResult(
            output=None, run_id=self.run_id, messages=tuple(self.messages), steps=tuple(self.steps), usage=self.usage
        )

    def _exhausted(self, which: str) -> BudgetExceeded:
        limit = self.meter.limit(which)
        if which == "steps":
            return MaxStepsExceeded(int(limit), self.snapshot())
        return BudgetExceeded(which, limit, self.snapshot())


async def run_loop(
    config: LoopConfig,
    prompt: str | Sequence[Message],
    *,
    resume: StoredRun | None = None,
    rerun_started: bool = False,
) -> AsyncGenerator[RunEvent, None]:
    """Run the agent on `prompt`, yielding events; the last is `RunFinished` or `RunPaused`.

    With a `store`, the run is recorded write-ahead (see `agentkit.store`).
    `resume` continues a stored run instead of starting one: the unfinished
    calls of its last decision run first (a non-idempotent call that had
    started only with `rerun_started`), then the loop goes on.

    Raises:
        BudgetExceeded: a budget ran out before a final answer (`MaxStepsExceeded`
            for steps); the trajectory is on `.partial`.
        StoreError: resuming would re-run a non-idempotent call that may have had effects.
    """
    run = Run(config)
    if resume is None:
        run.start(prompt)
    else:
        run.resume(resume, rerun_started=rerun_started)
    try:
        # An engine starts (or a server is found) here, so the first `chat` span times the turn alone.
        await start_runtime(config.runtime)
        if resume is not None:
            async for event in run.go_on(resume):
                yield event
        index = run.steps[-1].index + 1 if run.steps else 0
        while True:
            started = time.monotonic()
            request = run.request(index)
            async for delta in run.ask(index, request):
                yield delta
            response = run.turn
            yield ModelTurn(step=index, response=response)
            calls = response.message.tool_calls
            if calls and run.last_turn:
                run.overspent(index, started)
            elif calls:
                async for event in run.act(index, calls, started):
                    yield event
            elif response.finish_reason != "error":
                run.answer(index, response, started)
            index += 1
    except _Ended as end:
        yield end.event
    except BaseException as exc:
        run.fail(exc)
        raise


WITHHELD = "[withheld: a tool of this run takes secret arguments, which an unreadable turn cannot be searched for]"
"""The raw text kept of an unreadable turn when a tool has `SecretStr` parameters."""


def _repeats(response: ModelResponse) -> dict[str, str]:
    """The calls of a turn that repeat an earlier one of it, as `ask` marked them (`repeated_calls`)."""
    marked = response.metadata.get("duplicates")
    return {str(k): str(v) for k, v in marked.items()} if isinstance(marked, Mapping) else {}


def _marked(results: Sequence[ToolResult], repeats: Mapping[str, str]) -> tuple[ToolResult, ...]:
    """`results` with each repeated call's marked `duplicate_of` (the store keeps the mark in its step)."""
    return tuple(
        replace(r, duplicate_of=repeats[r.call_id]) if r.call_id in repeats and r.duplicate_of is None else r
        for r in results
    )


async def _whole(runtime: Runtime, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
    yield await runtime.generate(request)


async def final_result(events: AsyncGenerator[RunEvent, None]) -> RunResult[Any]:
    """Drain `events` to the run's end, closing them (the run is recorded) before returning.

    Raises:
        AwaitingApproval: the run paused for a decision on a call.
    """
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, RunFinished):
                return event.result
            if isinstance(event, RunPaused):
                raise AwaitingApproval(event.run_id, event.calls, event.partial)
    raise AssertionError("the loop ended without a result")  # pragma: no cover - run_loop raises instead


def feedback_text(problem: ModelOutputError | OutputValidationError, *, calls_allowed: bool = True) -> str:
    """What the model is told when its reply could not be used, worded from what was wrong.

    Calls a runtime found wrong (`ModelOutputError.problems`) are listed, and
    the model is asked to call again (`calls_allowed`) or to answer; the reply
    itself is not repeated, as a model would copy it. A reply that could not be
    read is quoted with why; an answer that misses the output type gets the
    validation errors.
    """
    if isinstance(problem, OutputValidationError):
        return f"{problem}. Answer again with JSON that fits the schema."
    if problem.problems:
        again = (
            "Call the tools again with arguments that fit their schemas."
            if calls_allowed
            else "Answer without calling a tool."
        )
        return f"Your last reply could not be used: {'; '.join(problem.problems)}. {again}"
    return f"Your last reply could not be read ({problem}). Reply with one valid action."


def describe_result(result: ToolResult) -> str:
    """A one-line rendering of a tool result, for logs and the demo."""
    content = result.content if isinstance(result.content, str) else json.dumps(result.content, ensure_ascii=False)
    return ("error: " if result.is_error else "") + content
