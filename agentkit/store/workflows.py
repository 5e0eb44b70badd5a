"""Workflow runs in the store: each one a parent of its agent steps' runs.

recorder = store.begin_workflow(name="forecast", file="flow.yaml", inputs={...})
recorder.step_started("research", "agent")
recorder.step_finished("research", "done", output=...)
recorder.finished("done", output=...)
store.workflow_run(recorder.run_id)     # a WorkflowRecord with its steps
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from agentkit.errors import StoreError
from agentkit.events import RunParent
from agentkit.store.connection import Statement, StoreFile, dumps, new_id, now
from agentkit.store.records import WorkflowRecord, WorkflowStatus, WorkflowStepRecord, WorkflowStepStatus

__all__ = ["WorkflowRecorder", "WorkflowStore"]

_WORKFLOW_COLUMNS = "id, name, file, status, inputs, output, error, created, updated"


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
        rows = self.db.execute(
            f"SELECT {_WORKFLOW_COLUMNS} FROM workflow_runs {where} ORDER BY id DESC LIMIT ?", [*params, limit]
        )
        return [_workflow_record(row) for row in rows.fetchall()]

    def workflow_run(self, run_id: str) -> WorkflowRecord:
        """One workflow run with its steps. Raises `StoreError` if there is none."""
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
    run_id, name, file, status, inputs, output, error, created, updated = row
    return WorkflowRecord(
        id=run_id,
        name=name,
        file=file,
        status=status,
        inputs=json.loads(inputs),
        output=json.loads(output) if output is not None else None,
        error=error,
        created=created,
        updated=updated,
        steps=tuple(
            WorkflowStepRecord(
                step=step,
                kind=kind,
                status=step_status,
                output=json.loads(step_output) if step_output is not None else None,
                error=step_error,
                started=started,
                finished=finished,
                run_id=agent_run,
            )
            for step, kind, step_status, step_output, step_error, started, finished, agent_run in steps
        ),
    )
