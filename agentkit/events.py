"""What a run produces: its result, its steps, and the events `Agent.stream` yields.

Plain frozen values; `agentkit.loop` makes them. A final answer's text
becomes the agent's output type here too (`parse_output`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar

import pydantic

from agentkit.errors import OutputValidationError
from agentkit.messages import AssistantMessage, Message, ToolCall, ToolResult
from agentkit.runtime import ModelResponse, TextDelta, ThinkingDelta, ToolCallReady, Usage
from agentkit.schema import strip_titles

__all__ = [
    "ModelTurn",
    "RunEvent",
    "RunFinished",
    "RunParent",
    "RunPaused",
    "RunResult",
    "Step",
    "ToolsFinished",
    "output_schema",
    "parse_output",
]

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
class RunParent:
    """What a run is part of: one link, whatever the kind (`workflow`, ...)."""

    kind: str
    id: str
    """The parent run's id (a workflow run's, say)."""
    part: str | None = None
    """The run's place in its parent: a workflow step's path (`forecasts[2].forecast`)."""


@dataclass(frozen=True, kw_only=True)
class ModelTurn:
    """The model answered (before any of its tools ran)."""

    step: int
    response: ModelResponse


@dataclass(frozen=True, kw_only=True)
class ToolsFinished:
    """A turn's tool calls finished (those that ran: calls waiting for approval have none yet)."""

    step: int
    results: tuple[ToolResult, ...]


@dataclass(frozen=True, kw_only=True)
class RunFinished(Generic[OutputT]):
    """The run ended with a final answer."""

    result: RunResult[OutputT]


@dataclass(frozen=True, kw_only=True)
class RunPaused:
    """The run stopped to wait for decisions on `calls` (it is stored as `awaiting_approval`)."""

    run_id: str
    calls: tuple[ToolCall, ...]
    partial: RunResult[Any]


RunEvent: TypeAlias = (
    ModelTurn | ToolsFinished | RunFinished[Any] | RunPaused | TextDelta | ThinkingDelta | ToolCallReady
)
"""What `Agent.stream` yields: the model's text and thinking as they decode, each
call once complete, each turn, each turn's results, and the end."""


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
