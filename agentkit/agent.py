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

import inspect
import os
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from agentkit.errors import StoreError, ToolDefinitionError
from agentkit.executor import Approver, Executor
from agentkit.loop import LoopConfig, RunEvent, RunFinished, RunResult, run_loop
from agentkit.messages import Message
from agentkit.runtime import Runtime, Sampling
from agentkit.sync import run_sync
from agentkit.tool import BoundTool, FunctionTool, as_tool

if TYPE_CHECKING:  # sqlite-utils is imported only by agents that record their runs
    from agentkit.store import Store

__all__ = ["DEFAULT_RUNTIME", "Agent"]

OutputT = TypeVar("OutputT")

DEFAULT_RUNTIME = "vllm:default"
"""The runtime used when neither the agent nor `AGENTKIT_RUNTIME` names one."""


class Agent(Generic[OutputT]):
    """Base class of agents. Subclass it and set the class attributes.

    Every attribute can also be given to the constructor, which wins over the
    class. `@tool` methods of the subclass become tools bound to the instance.

    Args:
        runtime: A `Runtime` or a runtime URI (e.g. `vllm:default`,
            `scripted:turns.json`); default: the class's, then
            `AGENTKIT_RUNTIME`, then `vllm:default`.
        instructions: The system prompt.
        tools: Tools to offer, in addition to the `@tool` methods.
        output_type: `str` or a type for the final answer (a Pydantic model, say).
        max_steps: Most model turns in one run.
        sampling: Decoding settings for every model turn.
        approve: Decides on calls of tools marked `requires_approval`.
        name: The agent's name in messages and `repr` (default: the class name).
        store: Record every run here as it happens (a `Store` or a database
            path), so runs can be listed and resumed; default: not recorded.
    """

    instructions: str = ""
    tools: Sequence[Any] = ()
    output_type: Any = str
    max_steps: int = 10
    runtime: Runtime | str | None = None
    sampling: Sampling = Sampling()
    store: Store | None = None

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
        self.bound_tools = self._collect_tools(list(self.tools))
        self._resolved: Runtime | None = None
        self.executor = Executor({t.name: t for t in self.bound_tools}, approve=approve)

    def _collect_tools(self, declared: list[Any]) -> list[BoundTool]:
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

    def _config(self) -> LoopConfig:
        return LoopConfig(
            name=self.name,
            runtime=self.resolved_runtime,
            tools=self.bound_tools,
            instructions=self.instructions,
            output_type=self.output_type,
            max_steps=self.max_steps,
            sampling=self.sampling,
            executor=self.executor,
            store=self.store,
            agent_path=f"{type(self).__module__}:{type(self).__qualname__}",
        )

    def stream(self, prompt: str | Sequence[Message]) -> AsyncGenerator[RunEvent, None]:
        """Run on `prompt`, yielding each model turn and tool result as it happens.

        The last event is `RunFinished` with the `RunResult`.

        Raises:
            MaxStepsExceeded: no final answer within `max_steps`.
        """
        return run_loop(self._config(), prompt)

    async def arun(self, prompt: str | Sequence[Message]) -> RunResult[OutputT]:
        """Run on `prompt` until a final answer.

        Raises:
            MaxStepsExceeded: no final answer within `max_steps`; the partial
                trajectory is on the exception.
        """
        async with aclosing(self.stream(prompt)) as events:  # the run is closed (and recorded) before it returns
            async for event in events:
                if isinstance(event, RunFinished):
                    return cast(RunResult[OutputT], event.result)
        raise AssertionError("the loop ended without a result")  # pragma: no cover - run_loop raises instead

    def run(self, prompt: str | Sequence[Message]) -> RunResult[OutputT]:
        """`arun` for code that is not async (it runs its own event loop).

        Raises:
            RuntimeError: called from inside a running event loop; use `await arun()`.
        """
        return run_sync(
            lambda: self.arun(prompt), f"{self.name}.run() was called inside an event loop; use `await agent.arun(...)`"
        )

    def stream_resume(self, run_id: str, *, rerun_started: bool = False) -> AsyncGenerator[RunEvent, None]:
        """Continue a stored run from its last commit, yielding events as `stream` does.

        Finished tools are not run again; the unfinished calls of the last
        decision run first. A non-idempotent call that had started when the
        run stopped runs again only with `rerun_started=True`.

        Raises:
            StoreError: no store, no such run, the run is already done, or it
                would re-run a started non-idempotent call without `rerun_started`.
        """
        if self.store is None:
            raise StoreError(f"{self.name} has no store to resume from; pass store=... to the agent")
        stored = self.store.load(run_id)
        if stored.record.status == "done":
            raise StoreError(f"run {run_id} is done (its output: {stored.record.output!r}); nothing to resume")
        return run_loop(self._config(), (), resume=stored, rerun_started=rerun_started)

    async def aresume(self, run_id: str, *, rerun_started: bool = False) -> RunResult[OutputT]:
        """`stream_resume` to the end: the finished run's `RunResult`."""
        async with aclosing(self.stream_resume(run_id, rerun_started=rerun_started)) as events:
            async for event in events:
                if isinstance(event, RunFinished):
                    return cast(RunResult[OutputT], event.result)
        raise AssertionError("the loop ended without a result")  # pragma: no cover - run_loop raises instead

    def resume(self, run_id: str, *, rerun_started: bool = False) -> RunResult[OutputT]:
        """`aresume` for code that is not async."""
        return run_sync(
            lambda: self.aresume(run_id, rerun_started=rerun_started),
            f"{self.name}.resume() was called inside an event loop; use `await agent.aresume(...)`",
        )

    def __repr__(self) -> str:
        tools = ", ".join(t.name for t in self.bound_tools)
        return f"<{self.name} tools=[{tools}] max_steps={self.max_steps}>"
