"""The planner-executor loop, and the values it produces.

Each step asks the runtime for the model's next turn. A turn with tool calls
is executed (concurrently) and its results appended to the conversation; a
turn without calls is the final answer, parsed into the agent's output type.
The loop yields an event for each thing that happens, so callers can show
progress live; `Agent.arun` collects them into a `RunResult`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pydantic

from agentkit.errors import AgentkitError, MaxStepsExceeded, ModelOutputError, OutputValidationError, RunFailed
from agentkit.executor import Executor
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResult, UserMessage
from agentkit.runtime import ModelRequest, ModelResponse, Runtime, Sampling, Usage
from agentkit.schema import strip_titles
from agentkit.tool import BoundTool

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


async def run_loop(config: LoopConfig, prompt: str | Sequence[Message]) -> AsyncIterator[RunEvent]:
    """Run the agent on `prompt`, yielding events; the last is `RunFinished`.

    Raises:
        MaxStepsExceeded: no final answer within `max_steps` (carries the trajectory).
    """
    run_id = uuid.uuid4().hex
    messages: list[Message] = []
    if config.instructions:
        messages.append(SystemMessage(text=config.instructions))
    if isinstance(prompt, str):
        messages.append(UserMessage(text=prompt))
    else:
        messages.extend(prompt)
    specs = tuple(t.spec for t in config.tools)
    schema = output_schema(config.output_type)
    steps: list[Step] = []
    usage = Usage()

    def snapshot() -> RunResult[Any]:
        return RunResult(output=None, run_id=run_id, messages=tuple(messages), steps=tuple(steps), usage=usage)

    for index in range(config.max_steps):
        started = time.monotonic()
        request = ModelRequest(
            messages=tuple(messages),
            tools=specs,
            tool_choice="auto" if specs else "none",
            output_schema=schema,
            sampling=config.sampling,
        )
        try:
            response = await config.runtime.generate(request)
        except ModelOutputError as exc:
            # An unconstrained model wrote something that is no decision: keep
            # what it said in the trajectory, tell it, and let it try again.
            garbled = ModelResponse(
                message=AssistantMessage(),
                usage=exc.usage or Usage(requests=1),
                finish_reason="error",
                raw_text=exc.raw_text,
            )
            steps.append(Step(index=index, response=garbled, seconds=time.monotonic() - started))
            feedback = f"Your last reply could not be read ({exc}). Reply with one valid action."
            messages.append(UserMessage(text=feedback))
            usage = usage + garbled.usage
            yield ModelTurn(step=index, response=garbled)
            continue
        except AgentkitError as exc:
            exc.partial = snapshot()
            raise
        except Exception as exc:
            failure = RunFailed(f"the runtime failed at step {index}: {type(exc).__name__}: {exc}")
            failure.partial = snapshot()
            raise failure from exc
        usage = usage + response.usage
        message = response.message
        messages.append(message)
        yield ModelTurn(step=index, response=response)

        if message.tool_calls:
            try:
                results = tuple(await config.executor.run_all(message.tool_calls))
            except Exception as exc:  # the executor turns tool failures into results; this is a bug
                failure = RunFailed(f"running the tools of step {index} failed: {type(exc).__name__}: {exc}")
                failure.partial = snapshot()
                raise failure from exc
            messages.extend(results)
            steps.append(Step(index=index, response=response, tool_results=results, seconds=time.monotonic() - started))
            yield ToolResults(step=index, results=results)
            continue

        steps.append(Step(index=index, response=response, seconds=time.monotonic() - started))
        try:
            output = parse_output(config.output_type, message.text)
        except OutputValidationError as exc:
            # An unconstrained runtime can miss the schema: tell the model and go on.
            messages.append(UserMessage(text=f"{exc}. Answer again with JSON that fits the schema."))
            continue
        result = RunResult(output=output, run_id=run_id, messages=tuple(messages), steps=tuple(steps), usage=usage)
        yield RunFinished(result=result)
        return

    raise MaxStepsExceeded(config.max_steps, snapshot())


def describe_result(result: ToolResult) -> str:
    """A one-line rendering of a tool result, for logs and the demo."""
    content = result.content if isinstance(result.content, str) else json.dumps(result.content, ensure_ascii=False)
    return ("error: " if result.is_error else "") + content
