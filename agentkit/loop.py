"""The planner-executor loop, and the values it produces.

Each step asks the runtime for the model's next turn. A turn with tool calls
is executed (concurrently) and its results appended to the conversation; a
turn without calls is the final answer, parsed into the agent's output type.
The loop yields an event for each thing that happens, so callers can show
progress live; `Agent.arun` collects them into a `RunResult`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pydantic
import pydantic_core
from ulid import ULID

from agentkit.errors import (
    AgentkitError,
    MaxStepsExceeded,
    ModelOutputError,
    OutputValidationError,
    RunFailed,
    StoreError,
)
from agentkit.executor import Executor
from agentkit.messages import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolResult,
    UserMessage,
    with_unique_call_ids,
)
from agentkit.runtime import ModelRequest, ModelResponse, Runtime, Sampling, Usage
from agentkit.schema import strip_titles
from agentkit.tool import BoundTool
from agentkit.tracing.spans import AgentSpan, chat_span, describe_error

if TYPE_CHECKING:  # the store (sqlite-utils) is imported only by agents that record
    from agentkit.store import RunRecorder, Store, StoredRun

__all__ = ["ModelTurn", "RunEvent", "RunFinished", "RunResult", "Step", "ToolResults", "run_loop"]

OutputT = TypeVar("OutputT")


@dataclass(frozen=True, kw_only=True)
class Step:
    """One model turn and what its tool calls returned."""

    index: int
    response: ModelResponse
    tool_results: tuple[ToolResult, ...] = ()
    seconds: float = 0.0
    """Wall time of the step: the model's turn plus its tools."""

    @property
    def message(self) -> AssistantMessage:
        return self.response.message


@dataclass(frozen=True, kw_only=True)
class RunResult(Generic[OutputT]):
    """What a run produced: the typed output and the whole trajectory."""

    output: OutputT
    run_id: str
    messages: tuple[Message, ...]
    steps: tuple[Step, ...]
    usage: Usage = field(default_factory=Usage)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """Every tool call the model made in this run, in order."""
        return tuple(call for step in self.steps for call in step.message.tool_calls)


@dataclass(frozen=True, kw_only=True)
class ModelTurn:
    """The model answered (before any of its tools ran)."""

    step: int
    response: ModelResponse


@dataclass(frozen=True, kw_only=True)
class ToolResults:
    """A turn's tool calls finished."""

    step: int
    results: tuple[ToolResult, ...]


@dataclass(frozen=True, kw_only=True)
class RunFinished(Generic[OutputT]):
    """The run ended with a final answer."""

    result: RunResult[OutputT]


RunEvent = ModelTurn | ToolResults | RunFinished[Any]


@dataclass(frozen=True, kw_only=True)
class LoopConfig:
    """Everything a run needs; built by `Agent`."""

    name: str
    runtime: Runtime
    tools: Sequence[BoundTool]
    instructions: str
    output_type: Any
    max_steps: int
    sampling: Sampling
    executor: Executor
    store: Store | None = None
    """Where the run is recorded as it happens (None: not recorded)."""
    agent_path: str = ""
    """The agent's import path (`module:Class`), stored with the run."""
    workflow_run: str | None = None
    """The stored workflow run this run is a step of, and which step (`agentkit.workflow`)."""
    workflow_step: str | None = None


def output_schema(output_type: Any) -> dict[str, Any] | None:
    """The JSON Schema the final answer must satisfy; None for plain text."""
    if output_type is str:
        return None
    schema: dict[str, Any] = strip_titles(pydantic.TypeAdapter(output_type).json_schema())
    return schema


def parse_output(output_type: Any, text: str) -> Any:
    """The final answer's text as `output_type`.

    Raises:
        OutputValidationError: the text does not fit.
    """
    if output_type is str:
        return text
    try:
        return pydantic.TypeAdapter(output_type).validate_json(text)
    except pydantic.ValidationError as exc:
        name = getattr(output_type, "__name__", repr(output_type))
        raise OutputValidationError(f"the final answer is not a valid {name}: {exc}", text) from exc


async def run_loop(
    config: LoopConfig,
    prompt: str | Sequence[Message],
    *,
    resume: StoredRun | None = None,
    rerun_started: bool = False,
) -> AsyncGenerator[RunEvent, None]:
    """Run the agent on `prompt`, yielding events; the last is `RunFinished`.

    With a `store`, the run is recorded write-ahead (see `agentkit.store`).
    `resume` continues a stored run instead of starting one: the unfinished
    calls of its last decision run first (a non-idempotent call that had
    started only with `rerun_started`), then the loop goes on.

    Raises:
        MaxStepsExceeded: no final answer within `max_steps` (carries the trajectory).
        StoreError: resuming would re-run a non-idempotent call that may have had effects.
    """
    messages: list[Message] = []
    steps: list[Step] = []
    usage = Usage()
    recorder: RunRecorder | None = None
    specs = tuple(t.spec for t in config.tools)
    schema = output_schema(config.output_type)
    if resume is not None:
        run_id = resume.record.id
        if config.store is not None:
            recorder = config.store.recorder(run_id)
        steps = [Step(index=s.index, response=s.response, tool_results=s.results) for s in resume.steps]
        messages = list(resume.messages)
        usage = resume.usage
    else:
        if config.instructions:
            messages.append(SystemMessage(text=config.instructions))
        if isinstance(prompt, str):
            messages.append(UserMessage(text=prompt))
        else:
            messages.extend(prompt)
        if config.store is not None:
            recorder = config.store.begin_run(
                agent=config.agent_path,
                name=config.name,
                messages=messages,
                max_steps=config.max_steps,
                tools=specs,
                output_schema=schema,
                workflow_run=config.workflow_run,
                workflow_step=config.workflow_step,
            )
            run_id = recorder.run_id
        else:
            run_id = str(ULID())
    idempotent = {t.name: t.options.idempotent for t in config.tools}
    began: dict[str, float] = {}
    # Call ids are made unique within the run here, before anything records or
    # pairs them: runtimes only promise ids unique within one turn, if that.
    taken = {c.id for m in messages if isinstance(m, AssistantMessage) for c in m.tool_calls}

    def snapshot() -> RunResult[Any]:
        return RunResult(output=None, run_id=run_id, messages=tuple(messages), steps=tuple(steps), usage=usage)

    def started(call: ToolCall, tool: BoundTool) -> None:
        began[call.id] = time.time()
        if recorder is not None and not tool.options.idempotent:
            recorder.tool_started(call)

    def finished(result: ToolResult) -> None:
        if recorder is not None:
            recorder.tool_result(result, started=began.pop(result.call_id, None))

    async def run_tools(index: int, calls: Sequence[ToolCall]) -> tuple[ToolResult, ...]:
        try:
            with traced.current():  # each tool's span nests under the run's
                return tuple(await config.executor.run_all(calls, on_start=started, on_result=finished))
        except StoreError:
            raise
        except Exception as exc:  # the executor turns tool failures into results; this is a bug
            broken = RunFailed(f"running the tools of step {index} failed: {type(exc).__name__}: {exc}")
            broken.partial = snapshot()
            raise broken from exc

    def feedback(step: int, text: str) -> None:
        if recorder is not None:
            recorder.message(len(messages), UserMessage(text=text), step=step)
        messages.append(UserMessage(text=text))

    last = resume.steps[-1] if resume is not None and resume.steps else None
    if last is not None and last.started and not rerun_started:
        # Refused before anything is written: the run stays as it was, resumable.
        names = ", ".join(f"{c.name} ({c.id})" for c in last.started)
        raise StoreError(
            f"run {run_id} stopped while non-idempotent tool calls were running: {names}; they may "
            "have had effects. Resume with rerun_started=True (--rerun-started) to run them again"
        )
    status, error = "failed", None
    failure: BaseException | None = None
    traced = AgentSpan.start(
        config.name, run_id, config.runtime, typed=schema is not None, messages=messages, resumed=resume is not None
    )
    spent = Usage()  # by this invocation (a resumed run's earlier attempts were traced with them)
    try:
        first = len(steps)
        if last is not None:
            if last.pending:
                fresh = await run_tools(last.index, last.pending)
                done = {r.call_id: r for r in (*last.results, *fresh)}
                ordered = tuple(done[c.id] for c in last.response.message.tool_calls)
                calls = {c.id for c in last.response.message.tool_calls}
                messages = [m for m in messages if not (isinstance(m, ToolResult) and m.call_id in calls)]
                messages.extend(ordered)
                steps[-1] = Step(index=last.index, response=last.response, tool_results=ordered)
                yield ToolResults(step=last.index, results=ordered)
            elif not last.response.message.tool_calls and last.response.finish_reason != "error":
                # Killed after the final answer was recorded, before the run was marked done.
                try:
                    output = parse_output(config.output_type, last.response.message.text)
                except OutputValidationError:
                    pass
                else:
                    result = RunResult(
                        output=output, run_id=run_id, messages=tuple(messages), steps=tuple(steps), usage=usage
                    )
                    status = "done"
                    if recorder is not None:
                        recorder.finished("done", output=pydantic_core.to_jsonable_python(output))
                    traced.end(spent, answer=last.response)  # before the caller has the result
                    yield RunFinished(result=result)
                    return

        for index in range(first, config.max_steps):
            started_at = time.monotonic()
            request = ModelRequest(
                messages=tuple(messages),
                tools=specs,
                tool_choice="auto" if specs else "none",
                output_schema=schema,
                sampling=config.sampling,
            )
            try:
                with chat_span(traced, request, index) as chat:
                    response = await config.runtime.generate(request)
                    unique = with_unique_call_ids(response.message, taken, index)
                    if unique is not response.message:
                        response = replace(response, message=unique)
                    chat.record(response)
            except ModelOutputError as exc:
                # An unconstrained model wrote something that is no decision: keep
                # what it said in the trajectory, tell it, and let it try again.
                garbled = ModelResponse(
                    message=AssistantMessage(),
                    usage=exc.usage or Usage(requests=1),
                    finish_reason="error",
                    raw_text=exc.raw_text,
                )
                if recorder is not None:
                    recorder.decision(
                        index=index,
                        position=None,
                        response=garbled,
                        runtime=config.runtime.info,
                        sampling=config.sampling,
                        idempotent=idempotent,
                    )
                steps.append(Step(index=index, response=garbled, seconds=time.monotonic() - started_at))
                feedback(index, f"Your last reply could not be read ({exc}). Reply with one valid action.")
                usage, spent = usage + garbled.usage, spent + garbled.usage
                yield ModelTurn(step=index, response=garbled)
                continue
            except AgentkitError as exc:
                exc.partial = snapshot()
                raise
            except Exception as exc:
                broken = RunFailed(f"the runtime failed at step {index}: {type(exc).__name__}: {exc}")
                broken.partial = snapshot()
                raise broken from exc
            usage, spent = usage + response.usage, spent + response.usage
            message = response.message
            if recorder is not None:  # write-ahead: the decision is stored before any tool runs
                recorder.decision(
                    index=index,
                    position=len(messages),
                    response=response,
                    runtime=config.runtime.info,
                    sampling=config.sampling,
                    idempotent=idempotent,
                )
            messages.append(message)
            yield ModelTurn(step=index, response=response)

            if message.tool_calls:
                results = await run_tools(index, message.tool_calls)
                messages.extend(results)
                steps.append(
                    Step(index=index, response=response, tool_results=results, seconds=time.monotonic() - started_at)
                )
                yield ToolResults(step=index, results=results)
                continue

            steps.append(Step(index=index, response=response, seconds=time.monotonic() - started_at))
            try:
                output = parse_output(config.output_type, message.text)
            except OutputValidationError as exc:
                # An unconstrained runtime can miss the schema: tell the model and go on.
                feedback(index, f"{exc}. Answer again with JSON that fits the schema.")
                continue
            result = RunResult(output=output, run_id=run_id, messages=tuple(messages), steps=tuple(steps), usage=usage)
            status = "done"
            if recorder is not None:
                recorder.finished("done", output=pydantic_core.to_jsonable_python(output))
            traced.end(spent, answer=response)  # before the caller has the result
            yield RunFinished(result=result)
            return

        status = "budget_exhausted"
        raise MaxStepsExceeded(config.max_steps, snapshot())
    except (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit) as exc:
        if status != "done":  # GeneratorExit also comes when the caller stops after RunFinished
            status, failure = "cancelled", exc
            error = None if isinstance(exc, GeneratorExit) else describe_error(exc)
        raise
    except BaseException as exc:
        error, failure = describe_error(exc), exc
        if isinstance(exc, AgentkitError) and exc.partial is None:  # e.g. a store write that failed
            exc.partial = snapshot()
        raise
    finally:
        try:
            if recorder is not None and status != "done":
                recorder.finished(status, error=error)
        except StoreError as unrecorded:
            if failure is None:
                raise
            # The store fails too while the run fails: the run's own error is the one to see.
            failure.add_note(f"and the run's end could not be stored: {unrecorded}")
        finally:
            traced.end(spent, error=failure)  # a no-op when the run's span already ended


def describe_result(result: ToolResult) -> str:
    """A one-line rendering of a tool result, for logs and the demo."""
    content = result.content if isinstance(result.content, str) else json.dumps(result.content, ensure_ascii=False)
    return ("error: " if result.is_error else "") + content
