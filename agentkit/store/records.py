"""What the store gives back: stored runs, steps, decisions and workflow runs, and their statuses.

These are plain frozen values, read from the database; writing goes through
the recorders (`agentkit.store.runs`, `agentkit.store.workflows`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

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
        import pydantic_core

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
