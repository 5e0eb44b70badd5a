"""Workflow runs in the store: each one a parent of its agent steps' runs.

recorder = store.begin_workflow(name="forecast", file="flow.yaml", inputs={...})
recorder.step_started("research", "agent")
recorder.step_finished("research", "done", output=...)
recorder.finished("done", output=...)
store.workflow_run(recorder.run_id)     # a WorkflowRecord with its steps
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, get_args

import pydantic

from agentkit.errors import StoreError
from agentkit.events import RunParent
from agentkit.store.connection import Statement, StoreFile, dumps, new_id, now
from agentkit.store.records import (
    WORKFLOW_STATUSES,
    WorkflowRecord,
    WorkflowStatus,
    WorkflowStepRecord,
    WorkflowStepStatus,
    json_or_none,
    one_of,
    text,
    text_or_none,
    timestamp,
    timestamp_or_none,
    validated,
)

__all__ = ["WorkflowRecorder", "WorkflowStore"]

_WORKFLOW_COLUMNS = "id, name, file, status, inputs, output, error, created, updated"
_INPUTS = pydantic.TypeAdapter(Mapping[str, Any])
_STEP_STATUSES: tuple[WorkflowStepStatus, ...] = get_args(WorkflowStepStatus)


class WorkflowStore(StoreFile):
    """The workflow runs of a store's file (`Store` is this and `RunStore`)."""

    def begin_workflow(
        self, *, name: str, file: str | None, inputs: Mapping[str, Any], parent: RunParent | None = None
    ) -> WorkflowRecorder:
        """Record a new workflow run; its agent steps' runs are linked to it.

        `parent` links it to what it is part of (a batch's item, ...).
        """
        run_id, created = new_id(), now()
        link = (parent.kind, parent.id, parent.part) if parent is not None else (None, None, None)
        self._write(
            [
                (
                    "INSERT INTO workflow_runs (id, name, file, status, inputs, created, updated, "
                    "parent_kind, parent_id, parent_part) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                    (run_id, name, file, dumps(dict(inputs)), created, created, *link),
                )
            ],
            what=f"the start of workflow {name}",
        )
        return WorkflowRecorder(self, run_id)

    def workflow_runs(self, *, limit: int = 50, status: str | None = None) -> list[WorkflowRecord]:
        """The newest workflow runs first (with `status`, only those with it), without their steps."""
        where, params = ("WHERE status = ?", [status]) if status is not None else ("", [])
        with self._reading("the list of workflow runs"):
            rows = self.db.execute(
                f"SELECT {_WORKFLOW_COLUMNS} FROM workflow_runs {where} ORDER BY id DESC LIMIT ?", [*params, limit]
            ).fetchall()
        records = []
        for row in rows:
            with self._reading(f"workflow run {row[0]}"):
                records.append(_workflow_record(row))
        return records

    def workflow_run(self, run_id: str) -> WorkflowRecord:
        """One workflow run with its steps. Raises `StoreError` if there is none, or if a row cannot be read."""
        with self._reading(f"workflow run {run_id}"):
            row = self.db.execute(f"SELECT {_WORKFLOW_COLUMNS} FROM workflow_runs WHERE id = ?", [run_id]).fetchone()
            if row is None:
                raise StoreError(f"no workflow run {run_id!r} in {self.path}")
            steps = self.db.execute(
                "SELECT s.step, s.kind, s.status, s.output, s.error, s.started, s.finished, "
                "(SELECT r.id FROM runs r WHERE r.parent_id = s.workflow_run AND r.parent_part = s.step) "
                "FROM workflow_steps s WHERE s.workflow_run = ? ORDER BY s.started, s.step",
                [run_id],
            ).fetchall()
            return _workflow_record(row, steps)


class WorkflowRecorder:
    """Writes one workflow run's steps as they start and end."""

    def __init__(self, store: StoreFile, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def step_started(self, step: str, kind: str) -> None:
        """A step began (`kind`: agent, tool, when, foreach, parallel, ...)."""
        self._write(
            (
                "INSERT OR REPLACE INTO workflow_steps (workflow_run, step, kind, status, started) "
                "VALUES (?, ?, ?, 'running', ?)",
                (self.run_id, step, kind, now()),
            ),
            f"the start of step {step}",
        )

    def step_finished(
        self, step: str, status: WorkflowStepStatus, *, output: Any = None, error: str | None = None
    ) -> None:
        """A step's end: `done`, `skipped`, `failed` or `cancelled`."""
        self._write(
            (
                "UPDATE workflow_steps SET status = ?, output = ?, error = ?, finished = ? "
                "WHERE workflow_run = ? AND step = ?",
                (status, _json(output), error, now(), self.run_id, step),
            ),
            f"the end ({status}) of step {step}",
        )

    def finished(self, status: WorkflowStatus, *, output: Any = None, error: str | None = None) -> None:
        """The workflow run's end: `done`, `failed` or `cancelled`."""
        self.store._write(
            [
                (
                    "UPDATE workflow_runs SET status = ?, output = ?, error = ?, updated = ? WHERE id = ?",
                    (status, _json(output), error, now(), self.run_id),
                )
            ],
            what=f"the end ({status}) of workflow run {self.run_id}",
        )

    def _write(self, statement: Statement, what: str) -> None:
        """`statement` about a step, committed with the run's `updated` time."""
        touch = ("UPDATE workflow_runs SET updated = ? WHERE id = ?", (now(), self.run_id))
        self.store._write([statement, touch], what=f"{what} of workflow run {self.run_id}")


def _json(value: Any) -> str | None:
    return dumps(value) if value is not None else None


def _workflow_record(row: Sequence[Any], steps: Sequence[Sequence[Any]] = ()) -> WorkflowRecord:
    """A `workflow_runs` row and its steps' rows; `Unreadable` names a column that cannot be read."""
    run_id, name, file, status, inputs, output, error, created, updated = row
    return WorkflowRecord(
        id=text(run_id, "workflow_runs", "id"),
        name=text(name, "workflow_runs", "name"),
        file=text_or_none(file, "workflow_runs", "file"),
        status=one_of(status, "workflow_runs", "status", WORKFLOW_STATUSES),
        inputs=validated(inputs, "workflow_runs", "inputs", _INPUTS),
        output=json_or_none(output, "workflow_runs", "output"),
        error=text_or_none(error, "workflow_runs", "error"),
        created=timestamp(created, "workflow_runs", "created"),
        updated=timestamp(updated, "workflow_runs", "updated"),
        steps=tuple(_step_record(step) for step in steps),
    )


def _step_record(row: Sequence[Any]) -> WorkflowStepRecord:
    step, kind, status, output, error, started, finished, agent_run = row
    return WorkflowStepRecord(
        step=text(step, "workflow_steps", "step"),
        kind=text(kind, "workflow_steps", "kind"),
        status=one_of(status, "workflow_steps", "status", _STEP_STATUSES),
        output=json_or_none(output, "workflow_steps", "output"),
        error=text_or_none(error, "workflow_steps", "error"),
        started=timestamp(started, "workflow_steps", "started"),
        finished=timestamp_or_none(finished, "workflow_steps", "finished"),
        run_id=text_or_none(agent_run, "runs", "id"),
    )
