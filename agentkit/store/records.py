"""What the store gives back: stored runs, steps, decisions and workflow runs, and their statuses.

These are plain frozen values, read from the database; writing goes through
the recorders (`agentkit.store.runs`, `agentkit.store.workflows`). Each value
is read from its column by a checking reader (`text`, `timestamp`, `json_value`,
`validated`...): a value that is not what its column holds (a row changed by
hand, or damaged) raises `Unreadable`, which the store reports as a
`StoreError` naming the run, the file, the table and the column.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

import pydantic
import pydantic_core

from agentkit.budget import Budget
from agentkit.events import RunParent
from agentkit.messages import Message, ToolCall, ToolResult
from agentkit.runtime import ModelResponse, Sampling, Usage
from agentkit.tool import ToolSpec

__all__ = [
    "STATUSES",
    "WORKFLOW_STATUSES",
    "Approval",
    "ApprovalStatus",
    "RunRecord",
    "RunStatus",
    "StoredRun",
    "StoredStep",
    "Unreadable",
    "WorkflowRecord",
    "WorkflowStatus",
    "WorkflowStepRecord",
    "WorkflowStepStatus",
]

RunStatus = Literal["running", "done", "failed", "cancelled", "budget_exhausted", "awaiting_approval"]
"""A run's status: `running` until it ends (and for ever, if its process was
killed); `budget_exhausted` says which budget in `RunRecord.exhausted`;
`awaiting_approval` waits for decisions on calls (`Store.decide`)."""

WorkflowStatus = Literal["running", "done", "failed", "cancelled"]
"""A workflow run's status, as a run's (a workflow has no budget of its own)."""

WorkflowStepStatus = Literal["running", "done", "skipped", "failed", "cancelled"]
"""A workflow step's status: a `when` step whose branch was not taken is `skipped`."""

ApprovalStatus = Literal["waiting", "approved", "denied"]
"""Where a call of a `requires_approval` tool stands (`Approval.status`)."""

STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
"""Every `RunStatus`, in the order above (what `agentkit runs list --status` accepts)."""

WORKFLOW_STATUSES: tuple[WorkflowStatus, ...] = get_args(WorkflowStatus)
"""Every `WorkflowStatus`."""


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """A stored run, as listed."""

    id: str
    agent: str
    """The agent's import path, `module:Class`."""
    status: RunStatus
    created: float
    updated: float
    max_steps: int
    steps: int
    tools: tuple[ToolSpec, ...] = ()
    output_schema: Mapping[str, Any] | None = None
    output: Any = None
    error: str | None = None
    name: str = ""
    """The agent's name (its class name unless it was given another)."""
    parent: RunParent | None = None
    """What the run is part of (a workflow step, ...); None: a run of its own."""
    budget: Budget | None = None
    """The budget the run was started with (None: stored before budgets were)."""
    exhausted: str | None = None
    """Which budget ran out, when the status is `budget_exhausted`."""

    @property
    def workflow_run(self) -> str | None:
        """The workflow run this run is a step of (None: not part of one)."""
        return self.parent.id if self.parent is not None and self.parent.kind == "workflow" else None

    @property
    def workflow_step(self) -> str | None:
        """Which step of `workflow_run` this run is."""
        return self.parent.part if self.parent is not None and self.parent.kind == "workflow" else None


@dataclass(frozen=True, kw_only=True)
class Approval:
    """A stored decision on a call of a `requires_approval` tool."""

    call_id: str
    approved: bool | None
    """None: the run waits for a decision on this call."""
    reason: str | None = None
    """Why (a denial's reason is what the model reads)."""
    decided_by: str | None = None
    created: float = 0.0

    @property
    def status(self) -> ApprovalStatus:
        """`waiting`, `approved` or `denied`."""
        return "waiting" if self.approved is None else "approved" if self.approved else "denied"


@dataclass(frozen=True, kw_only=True)
class StoredStep:
    """A stored model turn, with what its finished tools returned."""

    index: int
    position: int | None
    """Where the model's turn sits in the conversation (None: a turn that could not be read)."""
    response: ModelResponse
    sampling: Sampling
    """The decoding settings the turn was asked for with."""
    results: tuple[ToolResult, ...]
    pending: tuple[ToolCall, ...]
    """Calls of this step with no stored result (the run stopped while they ran)."""
    started: tuple[ToolCall, ...]
    """Of `pending`, the non-idempotent calls that had started."""
    runtime: str | None = None
    """The runtime's URI (or name), the model and the dialect that made the turn."""
    model: str | None = None
    provider: str | None = None
    """Who served the model (`RuntimeInfo.provider`), and the server's API root if any."""
    server: str | None = None
    dialect: str | None = None
    seed: int | None = None
    created: float = 0.0
    """When the turn was committed (unix seconds): right after the model answered."""
    tool_times: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """Per finished call id, when the tool started and ended (unix seconds). A
    call that never started (unknown tool, invalid arguments, refused) starts
    and ends when its result was stored."""
    depends_on: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Of a plan (`plan`), each call's id to the ids of the earlier calls of the
    turn whose results its arguments use (`$2.city`), every call listed, in the
    order of the turn; empty for a step outside plan mode."""

    @property
    def plan(self) -> bool:
        """The turn is a plan (`Agent(planning=True)`): its calls ran as a graph whose edges are `depends_on`."""
        return bool(self.response.metadata.get("plan"))


@dataclass(frozen=True, kw_only=True)
class StoredRun:
    """Everything needed to show or resume a run."""

    record: RunRecord
    messages: tuple[Message, ...]
    """The conversation, without the results of pending calls."""
    positions: tuple[int, ...]
    """Each message's stored position (a pending call's result leaves a gap)."""
    steps: tuple[StoredStep, ...]
    usage: Usage = field(default_factory=Usage)
    approvals: Mapping[str, Approval] = field(default_factory=dict)
    """Decisions on calls of `requires_approval` tools, by call id."""

    @property
    def awaiting(self) -> tuple[ToolCall, ...]:
        """The last step's calls that wait for a decision (a run `awaiting_approval`)."""
        if not self.steps:
            return ()
        return tuple(
            c
            for c in self.steps[-1].pending
            if (decision := self.approvals.get(c.id)) is not None and decision.approved is None
        )

    def records(self) -> Iterator[dict[str, Any]]:
        """The run as JSON-ready records (what `agentkit runs export` writes, a line each):
        the run, then each message with its position, then each step."""
        jsonable = pydantic_core.to_jsonable_python
        yield {"type": "run", **jsonable(self.record)}
        for position, message in zip(self.positions, self.messages, strict=True):
            yield {"type": "message", "position": position, "message": jsonable(message)}
        for step in self.steps:
            response = step.response
            yield {
                "type": "step",
                "index": step.index,
                "position": step.position,
                "runtime": step.runtime,
                "model": step.model,
                "dialect": step.dialect,
                "grammar_hash": response.grammar_digest,  # the column's name
                "seed": step.seed,
                "created": step.created,
                "finish_reason": response.finish_reason,
                "raw_text": response.raw_text,
                "sampling": jsonable(step.sampling),
                "usage": jsonable(response.usage),
                "timings": dict(response.timings),
                "metadata": dict(response.metadata),
                "pending": [c.id for c in step.pending],
                "started": [c.id for c in step.started],
                "depends_on": {call_id: list(ids) for call_id, ids in step.depends_on.items()},
            }


@dataclass(frozen=True, kw_only=True)
class WorkflowStepRecord:
    """A step of a stored workflow run."""

    step: str
    """Its place in the workflow: `research`, `forecasts[2].forecast`."""
    kind: str
    status: WorkflowStepStatus
    started: float
    """When it started (unix seconds); `finished`, when it ended (None: still running)."""
    finished: float | None = None
    output: Any = None
    error: str | None = None
    run_id: str | None = None
    """The agent run of an agent step."""


@dataclass(frozen=True, kw_only=True)
class WorkflowRecord:
    """A stored workflow run."""

    id: str
    name: str
    file: str | None
    status: WorkflowStatus
    inputs: Mapping[str, Any]
    output: Any = None
    error: str | None = None
    created: float
    updated: float
    steps: tuple[WorkflowStepRecord, ...] = ()
    """Its steps in the order they started (only from `Store.workflow_run`)."""


# --- reading a column's value -----------------------------------------------------------------

T = TypeVar("T")


class Unreadable(Exception):
    """A stored value its reader cannot use: which column of which table, and why.

    Raised while a row is read back; the store turns it into a `StoreError`
    that also names the run and the file.
    """

    def __init__(self, table: str, column: str, problem: str) -> None:
        super().__init__(f"column {column} of table {table} cannot be read: {problem}")
        self.table, self.column, self.problem = table, column, problem


def _found(value: Any) -> str:
    """What a cell holds, for an error: its SQLite type and the start of its value."""
    kind = {str: "text", bytes: "a blob", int: "an integer", float: "a real number", type(None): "NULL"}
    shown = repr(value)
    return f"{kind.get(type(value), type(value).__name__)} {shown[:40]}{'...' if len(shown) > 40 else ''}"


def text(value: Any, table: str, column: str) -> str:
    """A TEXT column's value."""
    if not isinstance(value, str):
        raise Unreadable(table, column, f"text expected, found {_found(value)}")
    return value


def text_or_none(value: Any, table: str, column: str) -> str | None:
    """A TEXT column's value, or NULL."""
    return None if value is None else text(value, table, column)


def whole(value: Any, table: str, column: str) -> int:
    """An INTEGER column's value."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise Unreadable(table, column, f"an integer expected, found {_found(value)}")
    return value


def whole_or_none(value: Any, table: str, column: str) -> int | None:
    """An INTEGER column's value, or NULL."""
    return None if value is None else whole(value, table, column)


def number(value: Any, table: str, column: str, what: str = "a number") -> float:
    """A finite number (an INTEGER or a REAL)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise Unreadable(table, column, f"{what} expected, found {_found(value)}")
    return float(value)


_LAST_TIME = 32503680000.0
"""The year 3000, in unix seconds: a later time is no time the store wrote (and no date prints it)."""


def timestamp(value: Any, table: str, column: str) -> float:
    """A time, in unix seconds: a number from 1970 to the year 3000."""
    what = "a time (unix seconds from 1970 to the year 3000)"
    time = number(value, table, column, what)
    if not 0 <= time <= _LAST_TIME:
        raise Unreadable(table, column, f"{what} expected, found {_found(value)}")
    return time


def timestamp_or_none(value: Any, table: str, column: str) -> float | None:
    """A time, or NULL."""
    return None if value is None else timestamp(value, table, column)


def one_of(value: Any, table: str, column: str, allowed: tuple[T, ...]) -> T:
    """A column holding one of a few words (a status)."""
    for choice in allowed:
        if value == choice:
            return choice
    raise Unreadable(table, column, f"one of {', '.join(map(str, allowed))} expected, found {_found(value)}")


def json_value(value: Any, table: str, column: str) -> Any:
    """A column holding any JSON value, as text.

    Read by pydantic's parser, as messages are: nested at most about 200
    levels deep, which is also as deep as a run's export can write.
    """
    if not isinstance(value, str | bytes):
        raise Unreadable(table, column, f"JSON text expected, found {_found(value)}")
    try:
        return pydantic_core.from_json(value)
    except ValueError as exc:  # not JSON, not UTF-8, nested too deep, too large a number
        raise Unreadable(table, column, f"not valid JSON ({_short(exc)})") from exc


def json_or_none(value: Any, table: str, column: str) -> Any:
    """A column holding JSON text, or NULL (None)."""
    return None if value is None else json_value(value, table, column)


def validated(value: Any, table: str, column: str, adapter: pydantic.TypeAdapter[T]) -> T:
    """A column holding JSON text of a given shape (`adapter`: a message, a tool's spec, a budget...)."""
    if not isinstance(value, str | bytes):
        raise Unreadable(table, column, f"JSON text expected, found {_found(value)}")
    try:
        return adapter.validate_json(value)
    except (ValueError, TypeError, RecursionError) as exc:  # pydantic.ValidationError is a ValueError
        raise Unreadable(table, column, f"{type(exc).__name__}: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    """An error's text on one line, cut to a readable length."""
    words = " ".join(str(exc).split())
    return words if len(words) <= 300 else words[:300] + "..."
