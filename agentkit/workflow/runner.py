"""Running a checked workflow: each step as soon as the steps it reads have finished.

Steps of one list that do not read each other run at once; `foreach` runs its
items at most `concurrency` at a time; `parallel` runs its branches at once.
Each agent step is a run of its own, stored (with a store) as a child of the
workflow run; the whole run is traced as `invoke_workflow {name}`. The first
step that fails stops the workflow: steps still running are cancelled, and
everything that finished keeps its output in the store. An MCP server is
started when a step first needs it, shared by all the run's steps, and
stopped when the run ends, however it ends (`agentkit.workflow.servers`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic_core
from jinja2 import TemplateError
from ulid import ULID

from agentkit.agent import Agent
from agentkit.errors import RuntimeUnavailable, UnknownName, WorkflowFailed
from agentkit.events import RunParent
from agentkit.executor import Executor
from agentkit.loop import final_result
from agentkit.messages import ToolCall
from agentkit.runtime import Runtime, Sampling
from agentkit.store import Store, WorkflowRecorder, WorkflowStatus
from agentkit.tracing import workflow_span
from agentkit.workflow.check import Node, Plan
from agentkit.workflow.servers import Sessions, toolsets
from agentkit.workflow.source import DocPath, format_path
from agentkit.workflow.spec import AgentSpec, AgentStep, ForeachStep, LoopStep, ParallelStep, ToolStep, WhenStep
from agentkit.workflow.templates import condition, render

__all__ = ["StepEvent", "WorkflowResult", "execute"]


@dataclass(frozen=True, kw_only=True)
class StepEvent:
    """A step started, finished, was skipped or failed (for progress displays)."""

    step: str
    """Its place: `research`, `forecasts[2].forecast`."""
    kind: str
    status: Literal["started", "done", "skipped", "failed"]
    output: Any = None
    run_id: str | None = None
    """An agent step's run."""
    detail: str = ""
    """What a compound step did: `then`, `3 items`, `2 iterations`."""
    error: str | None = None
    elapsed: float = 0.0
    """Seconds since the step started."""


@dataclass(frozen=True, kw_only=True)
class WorkflowResult:
    """What a workflow run returned."""

    output: Any
    workflow_run: str
    """The run's id (its id in the store, when it was stored)."""
    steps: Mapping[str, Any] = field(default_factory=dict)
    """The output of each top-level step, by id."""


class _Broken(Exception):
    """A template that failed while it was rendered; the message says where in the file."""


class _StepFailed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


@dataclass
class _Scope:
    inputs: Mapping[str, Any]
    steps: dict[str, dict[str, Any]]
    names: dict[str, Any]
    prefix: str = ""

    def child(self, prefix: str | None = None, **names: Any) -> _Scope:
        return _Scope(self.inputs, dict(self.steps), {**self.names, **names}, self.prefix if prefix is None else prefix)

    def context(self) -> dict[str, Any]:
        return {**self.names, "inputs": self.inputs, "steps": self.steps}


async def execute(
    plan: Plan,
    inputs: Mapping[str, Any],
    *,
    runtime: Runtime | str | None = None,
    store: Store | None = None,
    on_event: Callable[[StepEvent], None] | None = None,
    parent: RunParent | None = None,
) -> WorkflowResult:
    """Run a checked workflow on resolved inputs (see `Workflow.arun`)."""
    return await _Run(plan, runtime, store, on_event).run(inputs, parent)


class _Run:
    def __init__(
        self,
        plan: Plan,
        runtime: Runtime | str | None,
        store: Store | None,
        on_event: Callable[[StepEvent], None] | None,
    ) -> None:
        self.plan = plan
        self.override = runtime
        self.store = store
        self.on_event = on_event
        self.runtimes: dict[str, Runtime] = {}
        self.recorder: WorkflowRecorder | None = None
        self.run_id = ""
        self.sessions = Sessions({})

    async def run(self, inputs: Mapping[str, Any], parent: RunParent | None = None) -> WorkflowResult:
        spec = self.plan.spec
        self._check_runtimes()
        used = {name for name, steps in self.plan.users().items() if steps}
        declared = {name: server for name, server in spec.mcp_servers.items() if name in used}
        self.sessions = Sessions(toolsets(self.plan.source, declared, os.environ))  # ${VAR}s read; nothing started
        if self.store is not None:
            self.recorder = self.store.begin_workflow(
                name=spec.name, file=self.plan.source.file, inputs=inputs, parent=parent
            )
            self.run_id = self.recorder.run_id
        else:
            self.run_id = str(ULID())
        scope = _Scope(dict(inputs), {}, {})
        try:
            with workflow_span(spec.name, run_id=self.run_id):
                try:
                    async with self.sessions:
                        last = await self._steps(self.plan.steps, scope)
                except BaseException as exc:
                    failed = _first_failure(exc)
                    if failed is None:
                        raise
                    raise WorkflowFailed(
                        f"workflow {spec.name!r} failed at step {failed.step}: {failed.message}",
                        step=failed.step,
                        workflow_run=self.run_id if self.recorder else None,
                    ) from (failed.__cause__ or failed)
                try:
                    output = last if spec.output is None else self._render(spec.output, scope, ("output",))
                except _Broken as exc:
                    raise WorkflowFailed(
                        f"workflow {spec.name!r} failed at its output: {exc}",
                        step="(output)",
                        workflow_run=self.run_id if self.recorder else None,
                    ) from exc.__cause__
        except BaseException as exc:
            if self.recorder is not None:
                status: WorkflowStatus = "failed" if isinstance(exc, Exception) else "cancelled"
                self.recorder.finished(status, error=str(exc) if isinstance(exc, Exception) else type(exc).__name__)
            raise
        output = pydantic_core.to_jsonable_python(output)
        if self.recorder is not None:
            self.recorder.finished("done", output=output)
        steps = {node.id: scope.steps[node.id]["output"] for node in self.plan.steps}
        return WorkflowResult(output=output, workflow_run=self.run_id, steps=steps)

    # --- lists and steps

    async def _steps(self, nodes: list[Node], scope: _Scope) -> Any:
        """Run a step list in dependency order; returns its last step's output."""
        tasks: dict[str, asyncio.Task[None]] = {}

        async def after(node: Node) -> None:
            for dep in node.deps:
                await tasks[dep.id]
            await self._step(node, scope)

        async with asyncio.TaskGroup() as group:
            for node in nodes:
                tasks[node.id] = group.create_task(after(node))
        return scope.steps[nodes[-1].id]["output"]

    async def _step(self, node: Node, scope: _Scope) -> None:
        path = scope.prefix + node.id
        started = time.monotonic()
        self._event(StepEvent(step=path, kind=node.kind, status="started"))
        if self.recorder is not None:
            self.recorder.step_started(path, node.kind)
        try:
            output, run_id, detail = await self._kind(node, scope, path)
        except BaseException as exc:
            failed = _first_failure(exc)
            if failed is None and isinstance(exc, Exception):
                failed = _StepFailed(path, str(exc) if isinstance(exc, _Broken) else f"{type(exc).__name__}: {exc}")
                failed.__cause__ = exc.__cause__ if isinstance(exc, _Broken) else exc
            if failed is None:  # cancelled: another step failed, or the run was interrupted
                if self.recorder is not None:
                    self.recorder.step_finished(path, "cancelled", error=type(exc).__name__)
                raise
            error = failed.message if failed.step == path else f"step {failed.step} failed: {failed.message}"
            if self.recorder is not None:
                self.recorder.step_finished(path, "failed", error=error)
            self._event(
                StepEvent(step=path, kind=node.kind, status="failed", error=error, elapsed=time.monotonic() - started)
            )
            raise failed from failed.__cause__
        output = pydantic_core.to_jsonable_python(output)
        scope.steps[node.id] = {"output": output, "status": "done", "run_id": run_id}
        if self.recorder is not None:
            self.recorder.step_finished(path, "done", output=output)
        self._event(
            StepEvent(
                step=path,
                kind=node.kind,
                status="done",
                output=output,
                run_id=run_id,
                detail=detail,
                elapsed=time.monotonic() - started,
            )
        )

    async def _kind(self, node: Node, scope: _Scope, path: str) -> tuple[Any, str | None, str]:
        step = node.spec
        if isinstance(step, AgentStep):
            return await self._agent(node, step, scope, path)
        if isinstance(step, ToolStep):
            return await self._tool(node, step, scope, path), None, ""
        if isinstance(step, WhenStep):
            return await self._when(node, step, scope)
        if isinstance(step, ForeachStep):
            return await self._foreach(node, step, scope)
        if isinstance(step, ParallelStep):
            return await self._parallel(node, scope)
        if isinstance(step, LoopStep):
            return await self._loop(node, step, scope)
        raise AssertionError(f"unknown step kind {node.kind}")  # pragma: no cover - the spec allows no other

    async def _agent(self, node: Node, step: AgentStep, scope: _Scope, path: str) -> tuple[Any, str | None, str]:
        prompt = _text(self._render(step.prompt, scope, (*node.path, "prompt")))
        runtime = self._runtime(node)
        given: dict[str, Any] = {"runtime": runtime} if runtime is not None else {}
        if self.store is not None:
            given["store"] = self.store
        if node.agent_class is not None:
            agent: Agent[Any] = node.agent_class(**given)
        else:
            assert isinstance(step.agent, AgentSpec)
            instructions = self._render(step.agent.instructions, scope, (*node.path, "agent", "instructions"))
            agent = Agent(
                instructions=_text(instructions),
                tools=[
                    *node.tools[: node.mcp_at],
                    *(self.sessions.toolset(use) for use in node.mcp),
                    *node.tools[node.mcp_at :],
                ],
                output_type=node.output_type,
                max_steps=step.agent.max_steps,
                planning=step.agent.planning,
                max_replans=step.agent.max_replans,
                name=step.agent.name or node.id,
                sampling=Sampling(**step.agent.sampling.model_dump()),
                **given,
            )
        parent = RunParent(kind="workflow", id=self.run_id, part=path) if self.recorder else None
        result = await final_result(agent.stream(prompt, parent=parent, deltas=False))
        return result.output, result.run_id, ""

    async def _tool(self, node: Node, step: ToolStep, scope: _Scope, path: str) -> Any:
        arguments = self._render(step.arguments, scope, (*node.path, "arguments"))
        tool = await self.sessions.tool(node.mcp[0]) if node.mcp else node.tools[0]
        result = await Executor({tool.name: tool}).run(ToolCall(name=tool.name, arguments=arguments, id=path))
        if result.is_error:
            content = result.content if isinstance(result.content, str) else json.dumps(result.content)
            raise _StepFailed(path, content)
        return result.content

    async def _when(self, node: Node, step: WhenStep, scope: _Scope) -> tuple[Any, None, str]:
        held = self._condition(step.when, scope, (*node.path, "when"))
        body, skipped = (
            (node.bodies["then"], node.bodies["else"]) if held else (node.bodies["else"], node.bodies["then"])
        )
        for other in skipped:
            self._skipped(other, scope)
        if not body:
            return None, None, "condition false, nothing to do"
        return await self._steps(body, scope.child()), None, "then" if held else "else"

    async def _foreach(self, node: Node, step: ForeachStep, scope: _Scope) -> tuple[Any, None, str]:
        items = self._render(step.foreach, scope, (*node.path, "foreach"))
        if not isinstance(items, list | tuple):
            raise _StepFailed(
                scope.prefix + node.id, f"foreach needs a list, got {type(items).__name__}: {items!r:.80}"
            )
        limit = asyncio.Semaphore(step.concurrency)
        body = node.bodies["steps"]

        async def one(index: int, item: Any) -> Any:
            async with limit:
                child = scope.child(f"{scope.prefix}{node.id}[{index}].", **{step.as_: item, "index": index})
                return await self._steps(body, child)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(i, item)) for i, item in enumerate(items)]
        return [t.result() for t in tasks], None, f"{len(items)} item{'s' if len(items) != 1 else ''}"

    async def _parallel(self, node: Node, scope: _Scope) -> tuple[Any, None, str]:
        child = scope.child()
        async with asyncio.TaskGroup() as group:
            for branch in node.bodies["parallel"]:
                group.create_task(self._step(branch, child))
        return {b.id: child.steps[b.id]["output"] for b in node.bodies["parallel"]}, None, ""

    async def _loop(self, node: Node, step: LoopStep, scope: _Scope) -> tuple[Any, None, str]:
        previous: Any = None
        for iteration in range(step.max_iterations):
            child = scope.child(f"{scope.prefix}{node.id}[{iteration}].", iteration=iteration, previous=previous)
            previous = await self._steps(node.bodies["steps"], child)
            if self._condition(step.until, child, (*node.path, "until")):
                count = iteration + 1
                return previous, None, f"{count} iteration{'s' if count != 1 else ''}, until held"
        return previous, None, f"{step.max_iterations} iterations, the most allowed; until never held"

    def _skipped(self, node: Node, scope: _Scope) -> None:
        path = scope.prefix + node.id
        if self.recorder is not None:
            self.recorder.step_started(path, node.kind)
            self.recorder.step_finished(path, "skipped")
        self._event(StepEvent(step=path, kind=node.kind, status="skipped"))

    # --- helpers

    def _choice(self, node: Node) -> tuple[Runtime | str | None, str]:
        """What an agent step runs on, and who chose it.

        The step's URI, the run's, the file's, an agent class's own, then
        AGENTKIT_RUNTIME; None leaves it to the agent (its default).
        """
        assert isinstance(node.spec, AgentStep)
        if node.spec.runtime:
            return node.spec.runtime, "its runtime"
        if self.override is not None:
            return self.override, "the runtime given to the run"
        if self.plan.spec.runtime:
            return self.plan.spec.runtime, "the file's runtime"
        if node.agent_class is not None and node.agent_class.runtime is not None:
            return None, "its agent class"
        return os.environ.get("AGENTKIT_RUNTIME") or None, "AGENTKIT_RUNTIME"

    def _check_runtimes(self) -> None:
        """Every runtime URI an agent step will use is well formed, before anything runs or is stored."""
        from agentkit.runtimes import check_uri

        for node in _agent_nodes(self.plan.steps):
            choice, source = self._choice(node)
            if isinstance(choice, str):
                try:
                    check_uri(choice)
                except (RuntimeUnavailable, UnknownName) as exc:
                    raise RuntimeUnavailable(f"step {node.id}: {source}: {exc}") from None

    def _runtime(self, node: Node) -> Runtime | None:
        choice, _ = self._choice(node)
        if not isinstance(choice, str):
            return choice
        if choice not in self.runtimes:  # steps naming the same URI share one runtime (one engine, one script)
            from agentkit.runtimes import resolve

            self.runtimes[choice] = resolve(choice)
        return self.runtimes[choice]

    def _render(self, value: Any, scope: _Scope, path: DocPath) -> Any:
        """`value` rendered; a template that fails is reported at its own place in the file."""
        if isinstance(value, list):
            return [self._render(item, scope, (*path, index)) for index, item in enumerate(value)]
        if isinstance(value, dict):
            return {key: self._render(item, scope, (*path, key)) for key, item in value.items()}
        try:
            return render(value, scope.context())
        except TemplateError as exc:
            raise self._broken(path, exc) from exc

    def _condition(self, text: str, scope: _Scope, path: DocPath) -> bool:
        try:
            return condition(text, scope.context())
        except TemplateError as exc:
            raise self._broken(path, exc) from exc

    def _broken(self, path: DocPath, exc: TemplateError) -> _Broken:
        line, column = self.plan.source.where(path)
        return _Broken(
            f"{self.plan.source.file}:{line}:{column}: {format_path(path)}: the template failed: {exc.message}"
        )

    def _event(self, event: StepEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


def _text(value: Any) -> str:
    """A rendered prompt or instructions as the model reads it: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _agent_nodes(nodes: list[Node]) -> Iterator[Node]:
    for node in nodes:
        if isinstance(node.spec, AgentStep):
            yield node
        for body in node.bodies.values():
            yield from _agent_nodes(body)


def _first_failure(exc: BaseException) -> _StepFailed | None:
    """The step failure in `exc`, however deep in task groups (None: there is none)."""
    if isinstance(exc, _StepFailed):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_failure(inner)
            if found is not None:
                return found
    return None
