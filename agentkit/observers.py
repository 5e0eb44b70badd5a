"""What sees a run's phases: the interface, and the store's implementation.

The loop tells its observers what happens, in order; it never asks whether a
store or a tracer is there. `Recording` writes the run to a `Store`
(write-ahead: a decision before any of its tools run); `agentkit.tracing`'s
`Tracing` turns the same calls into OpenTelemetry spans. A new observer (a
progress bar, a metrics sink) implements the methods it needs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import pydantic_core

from agentkit.errors import StoreError

if TYPE_CHECKING:
    from agentkit.loop import Run
    from agentkit.messages import Message, ToolCall, ToolResult
    from agentkit.runtime import ModelRequest, ModelResponse
    from agentkit.store import RunRecorder, RunStatus, Store
    from agentkit.tool import BoundTool

__all__ = ["Observers", "OnStoreError", "Recording", "RunEnd", "RunObserver"]

log = logging.getLogger("agentkit.store")

OnStoreError: TypeAlias = Literal["fail", "continue"]
"""What a run does when its store refuses a write (`Agent(on_store_error=...)`):
`fail` (the default) stops it with the `StoreError` before anything else runs;
`continue` logs a warning and goes on without recording."""


@dataclass(frozen=True, kw_only=True)
class RunEnd:
    """How a run ended, as its observers are told."""

    status: RunStatus
    output: Any = None
    """The parsed answer (`done` only)."""
    answer: ModelResponse | None = None
    """The turn that answered (`done` only)."""
    error: BaseException | None = None
    """What stopped the run (`failed`, `cancelled`, `budget_exhausted`)."""
    exhausted: str | None = None
    """Which budget ran out (`budget_exhausted` only)."""


_NO_SCOPE: contextlib.nullcontext[None] = contextlib.nullcontext()


class RunObserver:
    """Told each phase of a run as it happens; every method does nothing by default.

    A method that raises stops the run (the store's do when a write fails:
    nothing may run that is not recorded), except in `ended`.
    """

    def started(self, run: Run, *, resumed: bool) -> None:
        """The run began (or a stored run was picked up again)."""

    def scope(self) -> contextlib.AbstractContextManager[None]:
        """Around the run's own work (model calls, tools), never across a yield to its caller."""
        return _NO_SCOPE

    def asking(self, run: Run, index: int, request: ModelRequest) -> None:
        """The model is asked for turn `index`."""

    def answered(self, run: Run, index: int, response: ModelResponse, position: int | None) -> None:
        """The model's turn arrived; `position` is where it joins the conversation (None: unreadable, it joins none)."""

    def ask_failed(self, run: Run, index: int, error: BaseException) -> None:
        """The model call for turn `index` raised."""

    def tool_started(self, run: Run, call: ToolCall, tool: BoundTool) -> None:
        """A tool is about to run (its arguments valid, its call approved)."""

    def tool_finished(self, run: Run, result: ToolResult, started: float | None) -> None:
        """A call's result (`started`: when the tool began, unix seconds; None when it never ran)."""

    def message_added(self, run: Run, position: int, message: Message, step: int) -> None:
        """The loop added a message of its own (feedback to the model after `step`)."""

    def decided(
        self, run: Run, call: ToolCall, approved: bool | None, reason: str | None, by: str | None, *, stored: bool
    ) -> None:
        """A decision on a call of a `requires_approval` tool (`approved` None: it waits for one).

        `stored`: the decision was in the store already (given to `resume`), not made in this run.
        """

    def ended(self, run: Run, end: RunEnd) -> None:
        """The run ended (`end.status`: `done`, `failed`, `cancelled`, `budget_exhausted` or `awaiting_approval`)."""


class Recording(RunObserver):
    """Writes the run to a `Store` as it happens (see `agentkit.store`).

    A write the store refuses raises its `StoreError`, which stops the run:
    no tool runs unrecorded. With `on_error="continue"` the run goes on
    instead, unrecorded from that write on, and a warning says so.
    """

    def __init__(self, store: Store, *, on_error: OnStoreError = "fail") -> None:
        self.store = store
        self.on_error = on_error
        self.recorder: RunRecorder | None = None
        self.lost: StoreError | None = None
        """The write that failed, once recording stopped (`on_error="continue"` only)."""

    def _writer(self) -> RunRecorder:
        assert self.recorder is not None, "the run was not started"
        return self.recorder

    def _record(self, run: Run, write: Callable[[], None]) -> None:
        """`write`, unless recording stopped; a refusal stops the run, or recording (`continue`)."""
        if self.lost is not None:
            return
        try:
            write()
        except StoreError as exc:
            if self.on_error != "continue":
                raise
            self.lost = exc
            log.warning("run %s goes on unrecorded (on_store_error='continue'): %s", run.run_id, exc)

    def started(self, run: Run, *, resumed: bool) -> None:
        if resumed:
            self.recorder = self.store.recorder(run.run_id)
            return
        self._record(run, lambda: self._begin(run))

    def _begin(self, run: Run) -> None:
        config = run.config
        self.recorder = self.store.begin_run(
            agent=config.agent_path,
            name=config.name,
            messages=run.messages,
            max_steps=run.meter.budget.max_steps or 0,
            tools=run.specs,
            output_schema=run.schema,
            parent=config.parent,
            budget=run.meter.budget,
            run_id=run.run_id,
        )

    def answered(self, run: Run, index: int, response: ModelResponse, position: int | None) -> None:
        self._record(
            run,
            lambda: self._writer().decision(
                index=index,
                position=position,
                response=response,
                runtime=run.config.runtime.info,
                sampling=run.config.sampling,
                idempotent=run.idempotent,
            ),
        )

    def tool_started(self, run: Run, call: ToolCall, tool: BoundTool) -> None:
        # Only a call that must not run twice needs its start on record.
        if not tool.options.idempotent or tool.options.requires_approval:
            self._record(run, lambda: self._writer().tool_started(call))

    def tool_finished(self, run: Run, result: ToolResult, started: float | None) -> None:
        self._record(run, lambda: self._writer().tool_result(result, started=started))

    def message_added(self, run: Run, position: int, message: Message, step: int) -> None:
        self._record(run, lambda: self._writer().message(position, message, step=step))

    def decided(
        self, run: Run, call: ToolCall, approved: bool | None, reason: str | None, by: str | None, *, stored: bool
    ) -> None:
        if not stored:
            self._record(run, lambda: self._writer().decided(call.id, approved, reason=reason, by=by))

    def ended(self, run: Run, end: RunEnd) -> None:
        from agentkit.tracing.spans import describe_error

        error = end.error
        text = None if error is None or isinstance(error, GeneratorExit) else describe_error(error)
        self._record(
            run,
            lambda: self._writer().finished(
                end.status,
                output=pydantic_core.to_jsonable_python(end.output) if end.status == "done" else None,
                error=text,
                exhausted=end.exhausted,
            ),
        )


class Observers(RunObserver):
    """Several observers as one, told in order (the store first: what it refuses stops the run)."""

    def __init__(self, observers: Sequence[RunObserver]) -> None:
        self.observers = tuple(observers)
        self._scoped = tuple(o for o in self.observers if type(o).scope is not RunObserver.scope)
        """Those with a scope of their own (most have none: no context is entered for them)."""

    def started(self, run: Run, *, resumed: bool) -> None:
        for o in self.observers:
            o.started(run, resumed=resumed)

    def scope(self) -> contextlib.AbstractContextManager[None]:
        if not self._scoped:
            return _NO_SCOPE
        if len(self._scoped) == 1:
            return self._scoped[0].scope()
        return self._scopes()

    @contextlib.contextmanager
    def _scopes(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for o in self._scoped:
                stack.enter_context(o.scope())
            yield

    def asking(self, run: Run, index: int, request: ModelRequest) -> None:
        for o in self.observers:
            o.asking(run, index, request)

    def answered(self, run: Run, index: int, response: ModelResponse, position: int | None) -> None:
        for o in self.observers:
            o.answered(run, index, response, position)

    def ask_failed(self, run: Run, index: int, error: BaseException) -> None:
        for o in self.observers:
            o.ask_failed(run, index, error)

    def tool_started(self, run: Run, call: ToolCall, tool: BoundTool) -> None:
        for o in self.observers:
            o.tool_started(run, call, tool)

    def tool_finished(self, run: Run, result: ToolResult, started: float | None) -> None:
        for o in self.observers:
            o.tool_finished(run, result, started)

    def message_added(self, run: Run, position: int, message: Message, step: int) -> None:
        for o in self.observers:
            o.message_added(run, position, message, step)

    def decided(
        self, run: Run, call: ToolCall, approved: bool | None, reason: str | None, by: str | None, *, stored: bool
    ) -> None:
        for o in self.observers:
            o.decided(run, call, approved, reason, by, stored=stored)

    def ended(self, run: Run, end: RunEnd) -> None:
        """Every observer is told, even when one raises; the first error is raised after."""
        first: BaseException | None = None
        for o in self.observers:
            try:
                o.ended(run, end)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first
