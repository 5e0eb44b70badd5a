"""Trajectories in SQLite: every run written as it happens, listable and resumable.

    store = Store("runs.db")               # or Store(): $AGENTKIT_DB, else the user data dir
    agent = MyAgent(runtime=..., store=store)
    result = agent.run("...")               # result.run_id is the stored run
    agent.resume(run_id)                    # continue a run that was killed

Writing is write-ahead: a model's decision is committed before any of its
tools runs, and each tool's result right after that tool finishes, so a run
killed at any moment can go on from its last commit without running a
finished tool again. A tool marked `idempotent=False` also records that it
started; if the run died while it ran, `resume` asks before running it again.

One file, many writers: WAL journaling, a busy timeout and short
transactions let several processes record runs at once. The schema is built
by named migrations (`agentkit.migrations`), recorded in the database; a
database written by a newer agentkit is refused rather than misread.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import sqlite_utils

from agentkit.budget import Budget
from agentkit.errors import StoreError
from agentkit.events import RunParent
from agentkit.messages import AssistantMessage, Message, ToolCall, ToolResult
from agentkit.migrations import MIGRATIONS, schema_markdown
from agentkit.recorder import _MESSAGE, _SAMPLING, RunRecorder, WorkflowRecorder, _dumps, _message_row, _now, new_id
from agentkit.runtime import ModelResponse, Sampling, Usage
from agentkit.tool import ToolSpec

__all__ = [
    "MIGRATIONS",
    "STATUSES",
    "WORKFLOW_STATUSES",
    "Approval",
    "RunRecord",
    "RunRecorder",
    "Store",
    "WorkflowRecord",
    "WorkflowRecorder",
    "WorkflowStepRecord",
    "default_path",
    "new_id",
    "schema_markdown",
]

STATUSES = ("running", "done", "failed", "cancelled", "budget_exhausted", "awaiting_approval")
"""A run's status: `running` until it ends (and for ever, if its process was killed)."""

WORKFLOW_STATUSES = ("running", "done", "failed", "cancelled")
"""A workflow run's status, as a run's (a workflow has no budget of its own)."""

_SQLITE_HEADER = b"SQLite format 3\x00"


def default_path() -> Path:
    """`$AGENTKIT_DB`, else `runs.db` in the user data directory."""
    env = os.environ.get("AGENTKIT_DB")
    return Path(env) if env else Path(platformdirs.user_data_dir("agentkit")) / "runs.db"


# --- values read back ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """A stored run, as listed."""

    id: str
    agent: str
    """The agent's import path, `module:Class`."""
    status: str
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


@dataclass(frozen=True, kw_only=True)
class WorkflowStepRecord:
    """A step of a stored workflow run."""

    step: str
    """Its place in the workflow: `research`, `forecasts[2].forecast`."""
    kind: str
    status: str
    """running | done | skipped | failed | cancelled"""
    output: Any = None
    error: str | None = None
    started: float
    finished: float | None = None
    run_id: str | None = None
    """The agent run of an agent step."""


@dataclass(frozen=True, kw_only=True)
class WorkflowRecord:
    """A stored workflow run."""

    id: str
    name: str
    file: str | None
    status: str
    inputs: Mapping[str, Any]
    output: Any = None
    error: str | None = None
    created: float
    updated: float
    steps: tuple[WorkflowStepRecord, ...] = ()
    """Its steps in the order they started (only from `Store.workflow_run`)."""


# --- the store ------------------------------------------------------------------------------


class Store:
    """One SQLite file of runs.

    Args:
        path: The database file (created if missing); default `default_path()`.
        busy_timeout: Seconds a writer waits for another's lock before failing.

    Raises:
        StoreError: the file is not an SQLite database, or was written by a
            newer agentkit; the file is left untouched.
    """

    def __init__(self, path: str | Path | None = None, *, busy_timeout: float = 60.0) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._check_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    def _check_file(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not an SQLite database")
        with self.path.open("rb") as file:
            header = file.read(len(_SQLITE_HEADER))
        if header != _SQLITE_HEADER:
            raise StoreError(f"{self.path} is not an SQLite database (left as it is); use another path")

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection (sqlite3 connections stay in their thread)."""
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is None:
            # `timeout` is SQLite's busy timeout: a writer waits this long for another's lock.
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            try:
                self._wal(conn)
                # WAL with synchronous=NORMAL survives a killed process (not a power cut) at a
                # fraction of FULL's cost: each commit is in the log before the call returns.
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
            except (sqlite3.DatabaseError, StoreError) as exc:
                conn.close()
                if isinstance(exc, StoreError):
                    raise
                raise StoreError(f"{self.path} cannot be opened as an SQLite database: {exc}") from exc
            db = self._local.db = sqlite_utils.Database(conn)
        return db

    def _wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL. Two processes creating the file at once: the loser's
        pragma fails at once with "locked" (SQLite does not wait on the busy
        timeout here), so it waits and tries again."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(
                        f"{self.path} stayed locked by another process for {self.busy_timeout:g} s"
                        if "locked" in str(exc)
                        else f"{self.path} cannot be opened as an SQLite database: {exc}"
                    ) from exc
                time.sleep(0.02)

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None

    def _migrate(self) -> None:
        db = self.db
        known = {m.name for m in MIGRATIONS._migrations}
        try:
            # One process migrates at a time: the others wait here, then find nothing pending.
            db.execute("BEGIN IMMEDIATE")
            try:
                unknown = [m.name for m in MIGRATIONS.applied(db) if m.name not in known]
                if unknown:
                    raise StoreError(
                        f"{self.path} was written by a newer agentkit (schema steps {unknown} are unknown "
                        "here); upgrade agentkit to read it"
                    )
                MIGRATIONS.apply(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} cannot be used as agentkit's store: {exc}") from exc

    def schema_steps(self) -> list[str]:
        """The names of the migrations applied to this database, in order."""
        return [m.name for m in MIGRATIONS.applied(self.db)]

    # --- writing ----------------------------------------------------------------------

    def _write(self, statements: Sequence[tuple[str, Sequence[Any]]], *, what: str = "a write") -> None:
        """Run `statements` in one committed transaction, all or nothing.

        Raises:
            StoreError: SQLite refused (disk full, a constraint, a lock held
                past the busy timeout...): `what` says what was being recorded.
                Nothing of this transaction is kept; earlier commits are.
        """
        try:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite rolls back by itself after some errors
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"could not record {what} in {self.path}: {type(exc).__name__}: {exc}") from exc

    def begin_run(
        self,
        *,
        agent: str,
        messages: Sequence[Message],
        max_steps: int,
        tools: Sequence[ToolSpec] = (),
        output_schema: Mapping[str, Any] | None = None,
        name: str | None = None,
        parent: RunParent | None = None,
        budget: Budget | None = None,
        run_id: str | None = None,
    ) -> RunRecorder:
        """Record a new run, what it offers the model and its opening messages; returns its recorder.

        `name` is the agent's name (default: the class name in `agent`);
        `parent` links the run to what it is part of (a workflow step, ...).
        """
        run_id, now = run_id or new_id(), _now()
        offered = [
            {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
                "result": t.result,
                "examples": list(t.examples),
            }
            for t in tools
        ]
        statements: list[tuple[str, Sequence[Any]]] = [
            (
                "INSERT INTO runs (id, agent, name, status, created, updated, max_steps, tools, output_schema, "
                "parent_kind, parent_id, parent_part, budget) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    agent,
                    name or _class_name(agent),
                    now,
                    now,
                    max_steps,
                    _dumps(offered),
                    _dumps(output_schema) if output_schema else None,
                    parent.kind if parent else None,
                    parent.id if parent else None,
                    parent.part if parent else None,
                    _dumps(dataclasses.asdict(budget)) if budget else None,
                ),
            )
        ]
        statements += [_message_row(run_id, i, m, None) for i, m in enumerate(messages)]
        self._write(statements, what=f"the start of a run of {agent or name}")
        return RunRecorder(self, run_id)

    def recorder(self, run_id: str) -> RunRecorder:
        """The recorder of an existing run (to resume it)."""
        self.run(run_id)  # raises if there is none
        return RunRecorder(self, run_id)

    # --- reading ----------------------------------------------------------------------

    def runs(
        self, *, limit: int = 50, status: str | None = None, parent: str | None = None, workflow_run: str | None = None
    ) -> list[RunRecord]:
        """The newest runs first; with `parent` (or `workflow_run`), the runs that are part of that run."""
        parent = parent or workflow_run
        clauses = [(c, v) for c, v in (("status = ?", status), ("parent_id = ?", parent)) if v is not None]
        where = ("WHERE " + " AND ".join(c for c, _ in clauses)) if clauses else ""
        params = [v for _, v in clauses]
        rows = self.db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY id DESC LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [_record(row) for row in rows]

    def run(self, run_id: str) -> RunRecord:
        """One run. Raises `StoreError` if there is none."""
        row = self.db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?",
            [run_id],
        ).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        return _record(row)

    def load(self, run_id: str) -> StoredRun:
        """A run's conversation and steps, as stored."""
        record = self.run(run_id)
        db = self.db
        rows = [
            (position, step_id, _MESSAGE.validate_json(body))
            for position, step_id, body in db.execute(
                "SELECT position, step_id, body FROM messages WHERE run_id = ? ORDER BY position", [run_id]
            )
        ]
        # A model's turn is the assistant message its step wrote.
        assistant = {step_id: (position, message) for position, step_id, message in rows if step_id is not None}
        results = {
            call_id: ToolResult(call_id=call_id, name=name, content=json.loads(content), is_error=bool(is_error))
            for call_id, name, content, is_error in db.execute(
                "SELECT call_id, name, content, is_error FROM tool_results WHERE run_id = ?", [run_id]
            )
        }
        started = {
            call_id
            for (call_id,) in db.execute("SELECT id FROM tool_calls WHERE run_id = ? AND started IS NOT NULL", [run_id])
        }
        times = {
            call_id: (began if began is not None else ended, ended)
            for call_id, began, ended in db.execute(
                "SELECT call_id, started, created FROM tool_results WHERE run_id = ?", [run_id]
            )
        }
        steps, usage = [], Usage()
        step_rows = db.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY idx", [run_id])
        names = [d[0] for d in step_rows.description]
        for values in step_rows.fetchall():
            row = dict(zip(names, values, strict=True))
            position, message = assistant.get(row["id"], (None, AssistantMessage()))
            assert isinstance(message, AssistantMessage)
            step_usage = Usage(
                prompt_tokens=row["prompt_tokens"] or 0,
                completion_tokens=row["completion_tokens"] or 0,
                cached_tokens=row["cached_tokens"] or 0,
                requests=1,
            )
            usage = usage + step_usage
            response = ModelResponse(
                message=message,
                usage=step_usage,
                finish_reason=row["finish_reason"] or "stop",
                raw_text=row["raw_text"] or "",
                timings=json.loads(row["timings"] or "{}"),
                metadata=json.loads(row["metadata"] or "{}"),
            )
            done = tuple(results[c.id] for c in message.tool_calls if c.id in results)
            pending = tuple(c for c in message.tool_calls if c.id not in results)
            steps.append(
                StoredStep(
                    index=row["idx"],
                    position=position,
                    response=response,
                    sampling=_SAMPLING.validate_json(row["sampling"]) if row["sampling"] else Sampling(),
                    results=done,
                    pending=pending,
                    started=tuple(c for c in pending if c.id in started),
                    runtime=row["runtime"],
                    model=row["model"],
                    provider=row["provider"],
                    server=row["server"],
                    dialect=row["dialect"],
                    seed=row["seed"],
                    created=row["created"],
                    tool_times={r.call_id: times[r.call_id] for r in done},
                )
            )
        return StoredRun(
            record=record,
            messages=tuple(message for _, _, message in rows),
            positions=tuple(position for position, _, _ in rows),
            steps=tuple(steps),
            usage=usage,
            approvals=self.approvals(run_id),
        )

    def approvals(self, run_id: str) -> dict[str, Approval]:
        """The run's decisions on calls of `requires_approval` tools (and the calls still waiting), by call id."""
        return {
            call_id: Approval(
                call_id=call_id,
                approved=None if approved is None else bool(approved),
                reason=reason,
                decided_by=decided_by,
                created=created,
            )
            for call_id, approved, reason, decided_by, created in self.db.execute(
                "SELECT call_id, approved, reason, decided_by, created FROM approvals WHERE run_id = ?", [run_id]
            )
        }

    def decide(
        self, run_id: str, call_id: str, approved: bool, *, reason: str | None = None, by: str | None = None
    ) -> None:
        """Record a decision on a waiting call of a paused run (committed before anything acts on it).

        Raises:
            StoreError: the run has no such call of a `requires_approval` tool,
                or the call was already decided.
        """
        known = self.approvals(run_id)
        if call_id not in known:
            waiting = [c for c, a in known.items() if a.approved is None]
            raise StoreError(
                f"run {run_id} has no call {call_id!r} that waits for approval"
                + (f"; waiting: {', '.join(waiting)}" if waiting else "")
            )
        if known[call_id].approved is not None:
            decision = "approved" if known[call_id].approved else "denied"
            raise StoreError(f"call {call_id!r} of run {run_id} was already {decision}; a decision is not changed")
        self.recorder(run_id).decided(call_id, approved, reason=reason, by=by)

    def begin_workflow(self, *, name: str, file: str | None, inputs: Mapping[str, Any]) -> WorkflowRecorder:
        """Record a new workflow run; its agent steps' runs are linked to it."""
        run_id, now = new_id(), _now()
        self._write(
            [
                (
                    "INSERT INTO workflow_runs (id, name, file, status, inputs, created, updated) "
                    "VALUES (?, ?, ?, 'running', ?, ?, ?)",
                    (run_id, name, file, _dumps(dict(inputs)), now, now),
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

    def search(self, text: str, *, limit: int = 20) -> list[tuple[str, int, str]]:
        """Messages matching `text` (SQLite FTS5 syntax): (run id, position, snippet)."""
        try:
            rows = self.db.execute(
                "SELECT messages.run_id, messages.position, snippet(messages_fts, 0, '[', ']', '…', 12) "
                "FROM messages_fts JOIN messages ON messages.rowid = messages_fts.rowid "
                "WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?",
                [text, limit],
            ).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot search for {text!r}: {exc} (SQLite full-text query syntax)") from exc
        return [(run_id, position, snippet) for run_id, position, snippet in rows]

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"


_RUN_COLUMNS = (
    "id, agent, name, status, created, updated, max_steps, tools, output_schema, output, error, "
    "(SELECT COUNT(*) FROM steps WHERE run_id = runs.id), parent_kind, parent_id, parent_part, budget, exhausted"
)


def _record(row: Sequence[Any]) -> RunRecord:
    run_id, agent, name, status, created, updated, max_steps, tools, output_schema, output, error, steps, *rest = row
    parent_kind, parent_id, parent_part, budget, exhausted = rest
    return RunRecord(
        id=run_id,
        agent=agent,
        name=name or _class_name(agent),
        status=status,
        created=created,
        updated=updated,
        max_steps=max_steps,
        steps=steps,
        tools=tuple(ToolSpec(**{**spec, "examples": tuple(spec.get("examples", ()))}) for spec in json.loads(tools)),
        output_schema=json.loads(output_schema) if output_schema else None,
        output=json.loads(output) if output is not None else None,
        error=error,
        parent=RunParent(kind=parent_kind, id=parent_id, part=parent_part) if parent_kind else None,
        budget=Budget(**json.loads(budget)) if budget else None,
        exhausted=exhausted,
    )


_WORKFLOW_COLUMNS = "id, name, file, status, inputs, output, error, created, updated"


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


def _class_name(agent: str) -> str:
    """`Class` of `module:Outer.Class`."""
    return agent.rpartition(":")[2].rpartition(".")[2] or agent
