"""Agent runs in the store: starting one, recording it as it happens, reading it back.

    recorder = store.begin_run(agent=..., messages=..., max_steps=...)
    recorder.decision(index=0, position=2, response=..., runtime=..., sampling=..., idempotent=...)
    recorder.tool_result(result)
    recorder.finished("done", output=...)
    store.load(recorder.run_id)             # a StoredRun: its messages and steps

Each recorder method is one committed transaction (`StoreFile._write`): a
decision before any of its tools runs, each result as its tool finishes. A
write SQLite refuses is a `StoreError` naming the run, the step and what was
recorded.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, get_args

import pydantic
import sqlite_utils

from agentkit.budget import Budget
from agentkit.errors import StoreError
from agentkit.events import RunParent
from agentkit.messages import AssistantMessage, Message, ToolCall, ToolResult
from agentkit.planning import dependencies
from agentkit.runtime import FinishReason, ModelResponse, RuntimeInfo, Sampling, Usage
from agentkit.store.connection import Statement, StoreFile, dumps, new_id, now
from agentkit.store.records import (
    STATUSES,
    Approval,
    RunRecord,
    RunStatus,
    StoredRun,
    StoredStep,
    Unreadable,
    json_or_none,
    json_value,
    one_of,
    text,
    text_or_none,
    timestamp,
    timestamp_or_none,
    validated,
    whole,
    whole_or_none,
)
from agentkit.tool import ToolSpec

__all__ = ["RunRecorder", "RunStore"]

_MESSAGE: pydantic.TypeAdapter[Message] = pydantic.TypeAdapter(Annotated[Message, pydantic.Field(discriminator="role")])
_SAMPLING = pydantic.TypeAdapter(Sampling)
_TOOLS = pydantic.TypeAdapter(tuple[ToolSpec, ...])
_BUDGET = pydantic.TypeAdapter(Budget)
_OBJECT = pydantic.TypeAdapter(Mapping[str, Any])
_TIMINGS = pydantic.TypeAdapter(Mapping[str, float])
_CALL_IDS = pydantic.TypeAdapter(tuple[str, ...])
_FINISH_REASONS: tuple[FinishReason, ...] = get_args(FinishReason)

_RUN_COLUMNS = (
    "id, agent, name, status, created, updated, max_steps, tools, output_schema, output, error, "
    "(SELECT COUNT(*) FROM steps WHERE run_id = runs.id), parent_kind, parent_id, parent_part, budget, exhausted"
)


class RunStore(StoreFile):
    """The runs of a store's file (`Store` is this and `WorkflowStore`)."""

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
        run_id, created = run_id or new_id(), now()
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
        statements: list[Statement] = [
            (
                "INSERT INTO runs (id, agent, name, status, created, updated, max_steps, tools, output_schema, "
                "parent_kind, parent_id, parent_part, budget) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    agent,
                    name or _class_name(agent),
                    created,
                    created,
                    max_steps,
                    dumps(offered),
                    dumps(output_schema) if output_schema else None,
                    parent.kind if parent else None,
                    parent.id if parent else None,
                    parent.part if parent else None,
                    dumps(dataclasses.asdict(budget)) if budget else None,
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

    def runs(
        self, *, limit: int = 50, status: str | None = None, parent: str | None = None, workflow_run: str | None = None
    ) -> list[RunRecord]:
        """The newest runs first; with `parent` (or `workflow_run`), the runs that are part of that run."""
        parent = parent or workflow_run
        clauses = [(c, v) for c, v in (("status = ?", status), ("parent_id = ?", parent)) if v is not None]
        where = ("WHERE " + " AND ".join(c for c, _ in clauses)) if clauses else ""
        params = [v for _, v in clauses]
        with self._reading("the list of runs"):
            rows = self.db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [self._run_record(row) for row in rows]

    def run(self, run_id: str) -> RunRecord:
        """One run. Raises `StoreError` if there is none, or if its row cannot be read."""
        with self._reading(f"run {run_id}"):
            row = self.db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", [run_id]).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        return self._run_record(row)

    def _run_record(self, row: Sequence[Any]) -> RunRecord:
        with self._reading(f"run {row[0]}"):
            return _record(row)

    def load(self, run_id: str) -> StoredRun:
        """A run's conversation and steps, as stored.

        Raises:
            StoreError: there is no such run, or one of its rows cannot be
                read (the error names the table and the column).
        """
        record = self.run(run_id)
        with self._reading(f"run {run_id}"):
            conversation = _conversation(self.db, run_id)
            calls = _Calls.read(self.db, run_id)
            steps = _steps(self.db, run_id, conversation, calls)
        return StoredRun(
            record=record,
            messages=tuple(message for _, _, message in conversation),
            positions=tuple(position for position, _, _ in conversation),
            steps=steps,
            usage=sum((s.response.usage for s in steps), Usage()),
            approvals=self.approvals(run_id),
        )

    def approvals(self, run_id: str) -> dict[str, Approval]:
        """The run's decisions on calls of `requires_approval` tools (and the calls still waiting), by call id."""
        with self._reading(f"the approvals of run {run_id}"):
            rows = self.db.execute(
                "SELECT call_id, approved, reason, decided_by, created FROM approvals WHERE run_id = ?", [run_id]
            ).fetchall()
            approvals = [_approval(row) for row in rows]
        return {a.call_id: a for a in approvals}

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
            waiting = [c for c, a in known.items() if a.status == "waiting"]
            raise StoreError(
                f"run {run_id} has no call {call_id!r} that waits for approval"
                + (f"; waiting: {', '.join(waiting)}" if waiting else "")
            )
        if (status := known[call_id].status) != "waiting":
            raise StoreError(f"call {call_id!r} of run {run_id} was already {status}; a decision is not changed")
        self.recorder(run_id).decided(call_id, approved, reason=reason, by=by)

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
        except sqlite3.Error as exc:
            raise StoreError(self._refusal(exc, f"could not search {self.path} for {text!r}")) from exc
        return [(run_id, position, snippet) for run_id, position, snippet in rows]


class RunRecorder:
    """Writes one run as it happens; the loop calls it (see `Agent(store=...)`)."""

    def __init__(self, store: StoreFile, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self._calls: dict[str, tuple[int, int]] = {}
        """Call id -> (its result's position, its step's index), for calls decided here."""

    def _write(self, statements: Sequence[Statement], what: str) -> None:
        self.store._write(statements, what=f"{what} of run {self.run_id}")

    def decision(
        self,
        *,
        index: int,
        position: int | None,
        response: ModelResponse,
        runtime: RuntimeInfo | None,
        sampling: Sampling,
        idempotent: Mapping[str, bool],
    ) -> None:
        """The model's turn at `position`, and its calls, committed before any tool runs.

        `position` None: the turn could not be read and joins no conversation
        (the step keeps its raw text). `idempotent` says, per tool name,
        whether a call may safely run twice. A plan's calls (metadata `plan`)
        are stored with the ids of the calls whose results they use
        (`agentkit.planning.dependencies`).
        """
        step_id = new_id()
        usage = response.usage
        statements: list[Statement] = [
            (
                "INSERT INTO steps (id, run_id, idx, runtime, model, provider, server, dialect, grammar_hash, "
                "sampling, seed, raw_text, finish_reason, prompt_tokens, completion_tokens, cached_tokens, timings, "
                "metadata, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    step_id,
                    self.run_id,
                    index,
                    (runtime.uri or runtime.name) if runtime else None,
                    runtime.model if runtime else None,
                    (runtime.provider or runtime.name) if runtime else None,
                    runtime.server if runtime else None,
                    runtime.dialect if runtime else None,
                    response.grammar_digest,
                    _SAMPLING.dump_json(sampling).decode(),
                    sampling.seed,
                    response.raw_text,
                    response.finish_reason,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    usage.cached_tokens,
                    dumps(dict(response.timings)),
                    dumps(dict(response.metadata)),
                    now(),
                ),
            ),
        ]
        what = f"step {index}'s model turn"
        if position is None:
            statements.append(self._touch())
            self._write(statements, what)
            return
        statements.append(_message_row(self.run_id, position, response.message, step_id))
        calls = response.message.tool_calls
        needs = dependencies(calls) if response.metadata.get("plan") else {}
        for offset, call in enumerate(calls, start=1):
            self._calls[call.id] = (position + offset, index)
            statements.append(
                (
                    "INSERT INTO tool_calls (run_id, id, step_id, position, name, arguments, idempotent, depends_on) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.run_id,
                        call.id,
                        step_id,
                        position + offset,
                        call.name,
                        dumps(call.arguments),
                        idempotent.get(call.name, True),
                        dumps(list(needs[call.id])) if call.id in needs else None,
                    ),
                )
            )
        statements.append(self._touch())
        self._write(statements, what)

    def _call(self, call_id: str) -> tuple[int, int]:
        """Where a call's result goes and which step made the call."""
        known = self._calls.get(call_id)
        if known is not None:
            return known
        try:
            row = self.store.db.execute(
                "SELECT c.position, s.idx FROM tool_calls c JOIN steps s ON s.id = c.step_id "
                "WHERE c.run_id = ? AND c.id = ?",
                [self.run_id, call_id],
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"could not read call {call_id!r} of run {self.run_id}: {exc}") from exc
        if row is None:
            raise StoreError(f"run {self.run_id} has no call {call_id!r} to record a result for")
        self._calls[call_id] = (row[0], row[1])
        return row[0], row[1]

    def tool_started(self, call: ToolCall) -> None:
        """A non-idempotent tool is about to run: if the run dies now, it may have had effects."""
        self._write(
            [
                ("UPDATE tool_calls SET started = ? WHERE run_id = ? AND id = ?", (now(), self.run_id, call.id)),
                self._newer(),
            ],
            f"the start of call {call.name} ({call.id}) in step {self._call(call.id)[1]}",
        )

    def tool_result(self, result: ToolResult, *, started: float | None = None) -> None:
        """A tool finished: its result, committed at once (`started`: when the tool began, unix seconds)."""
        position, step = self._call(result.call_id)
        self._write(
            [
                (
                    "INSERT INTO tool_results (run_id, call_id, name, content, is_error, created, started) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self.run_id, result.call_id, result.name, dumps(result.content), result.is_error, now(), started),
                ),
                _message_row(self.run_id, position, result, None),
                self._newer(),
            ],
            f"the result of call {result.name} ({result.call_id}) in step {step}",
        )

    def message(self, position: int, message: Message, *, step: int | None = None) -> None:
        """A message the loop adds itself (feedback to the model after `step`)."""
        what = "a message" if step is None else f"step {step}'s feedback"
        self._write([_message_row(self.run_id, position, message, None), self._touch()], what)

    def decided(self, call_id: str, approved: bool | None, *, reason: str | None = None, by: str | None = None) -> None:
        """A decision on a call of a `requires_approval` tool (None: the call waits for one)."""
        self._write(
            [
                (
                    "INSERT INTO approvals (run_id, call_id, approved, reason, decided_by, created) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, call_id) DO UPDATE SET "
                    "approved = excluded.approved, reason = excluded.reason, decided_by = excluded.decided_by, "
                    "created = excluded.created",
                    (self.run_id, call_id, approved, reason, by, now()),
                ),
                self._newer(),
            ],
            "a wait for approval" if approved is None else f"the decision on call {call_id}",
        )

    def finished(
        self, status: RunStatus, *, output: Any = None, error: str | None = None, exhausted: str | None = None
    ) -> None:
        """The run's end: `done`, `failed`, `cancelled`, `budget_exhausted` (`exhausted`
        says which) or `awaiting_approval`."""
        self._write(
            [
                (
                    "UPDATE runs SET status = ?, output = ?, error = ?, exhausted = ?, updated = ? WHERE id = ?",
                    (status, dumps(output) if output is not None else None, error, exhausted, now(), self.run_id),
                )
            ],
            f"the end ({status})",
        )

    def _touch(self) -> Statement:
        return ("UPDATE runs SET updated = ?, status = 'running' WHERE id = ?", (now(), self.run_id))

    def _newer(self) -> Statement:
        # Every write moves `updated`: merging stores (`agentkit.store.merge`) keeps the newer state of a run.
        return ("UPDATE runs SET updated = ? WHERE id = ?", (now(), self.run_id))


def _message_text(message: Message) -> str:
    """What full-text search reads of a message: its text, a call's name and arguments, a result's content."""
    if isinstance(message, ToolResult):
        return message.content if isinstance(message.content, str) else dumps(message.content)
    if isinstance(message, AssistantMessage):
        calls = " ".join(f"{c.name} {dumps(c.arguments)}" for c in message.tool_calls)
        return " ".join(part for part in (message.text, calls) if part)
    return message.text


def _message_row(run_id: str, position: int, message: Message, step_id: str | None) -> Statement:
    return (
        "INSERT INTO messages (id, run_id, position, step_id, role, text, body, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id(),
            run_id,
            position,
            step_id,
            message.role,
            _message_text(message),
            _MESSAGE.dump_json(message).decode(),
            now(),
        ),
    )


def _response(row: Mapping[str, Any], message: AssistantMessage) -> ModelResponse:
    """A stored step's model turn, as the runtime returned it."""

    def tokens(column: str) -> int:
        return whole_or_none(row[column], "steps", column) or 0

    finish = row["finish_reason"]
    timings, metadata = row["timings"], row["metadata"]
    return ModelResponse(
        message=message,
        usage=Usage(
            prompt_tokens=tokens("prompt_tokens"),
            completion_tokens=tokens("completion_tokens"),
            cached_tokens=tokens("cached_tokens"),
            requests=1,
        ),
        finish_reason=one_of(finish, "steps", "finish_reason", _FINISH_REASONS) if finish else "stop",
        raw_text=text_or_none(row["raw_text"], "steps", "raw_text") or "",
        timings=validated(timings, "steps", "timings", _TIMINGS) if timings else {},
        grammar_digest=text_or_none(row["grammar_hash"], "steps", "grammar_hash"),
        metadata=validated(metadata, "steps", "metadata", _OBJECT) if metadata else {},
    )


def _record(row: Sequence[Any]) -> RunRecord:
    """A `runs` row (`_RUN_COLUMNS`) as a `RunRecord`; `Unreadable` names a column that cannot be read."""
    run_id, agent, name, status, created, updated, max_steps, tools, output_schema, output, error, steps, *rest = row
    parent_kind, parent_id, parent_part, budget, exhausted = rest
    agent = text(agent, "runs", "agent")
    return RunRecord(
        id=text(run_id, "runs", "id"),
        agent=agent,
        name=text_or_none(name, "runs", "name") or _class_name(agent),
        status=one_of(status, "runs", "status", STATUSES),
        created=timestamp(created, "runs", "created"),
        updated=timestamp(updated, "runs", "updated"),
        max_steps=whole(max_steps, "runs", "max_steps"),
        steps=steps,
        tools=validated(tools, "runs", "tools", _TOOLS),
        output_schema=validated(output_schema, "runs", "output_schema", _OBJECT) if output_schema else None,
        output=json_or_none(output, "runs", "output"),
        error=text_or_none(error, "runs", "error"),
        parent=_parent(parent_kind, parent_id, parent_part),
        budget=validated(budget, "runs", "budget", _BUDGET) if budget else None,
        exhausted=text_or_none(exhausted, "runs", "exhausted"),
    )


def _parent(kind: Any, parent_id: Any, part: Any) -> RunParent | None:
    """A run's link to what it is part of (None: a run of its own)."""
    if not kind:
        return None
    return RunParent(
        kind=text(kind, "runs", "parent_kind"),
        id=text(parent_id, "runs", "parent_id"),
        part=text_or_none(part, "runs", "parent_part"),
    )


def _approval(row: Sequence[Any]) -> Approval:
    call_id, approved, reason, decided_by, created = row
    approved = whole_or_none(approved, "approvals", "approved")
    return Approval(
        call_id=text(call_id, "approvals", "call_id"),
        approved=None if approved is None else bool(approved),
        reason=text_or_none(reason, "approvals", "reason"),
        decided_by=text_or_none(decided_by, "approvals", "decided_by"),
        created=timestamp(created, "approvals", "created"),
    )


Conversation = list[tuple[int, str | None, Message]]
"""A run's messages in order: (position, the id of the step that wrote it or None, the message)."""


def _conversation(db: sqlite_utils.Database, run_id: str) -> Conversation:
    rows = db.execute(
        "SELECT position, step_id, body FROM messages WHERE run_id = ? ORDER BY position", [run_id]
    ).fetchall()
    return [
        (
            whole(position, "messages", "position"),
            text_or_none(step_id, "messages", "step_id"),
            validated(body, "messages", "body", _MESSAGE),
        )
        for position, step_id, body in rows
    ]


@dataclass
class _Calls:
    """What a run's `tool_calls` and `tool_results` rows say about its calls, by call id."""

    results: dict[str, ToolResult] = field(default_factory=dict)
    times: dict[str, tuple[float, float]] = field(default_factory=dict)
    """When each finished call's tool started and ended."""
    started: set[str] = field(default_factory=set)
    """Calls of non-idempotent tools that started."""
    needs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """A plan's calls: the ids of the calls whose results each one uses."""

    @classmethod
    def read(cls, db: sqlite_utils.Database, run_id: str) -> _Calls:
        calls = cls()
        for call_id, name, content, is_error, began, ended in db.execute(
            "SELECT call_id, name, content, is_error, started, created FROM tool_results WHERE run_id = ?", [run_id]
        ).fetchall():
            call_id = text(call_id, "tool_results", "call_id")
            calls.results[call_id] = ToolResult(
                call_id=call_id,
                name=text(name, "tool_results", "name"),
                content=json_value(content, "tool_results", "content"),
                is_error=bool(whole(is_error, "tool_results", "is_error")),
            )
            ended = timestamp(ended, "tool_results", "created")
            began = timestamp_or_none(began, "tool_results", "started")
            calls.times[call_id] = (began if began is not None else ended, ended)
        for call_id, started, needs in db.execute(
            "SELECT id, started, depends_on FROM tool_calls WHERE run_id = ?", [run_id]
        ).fetchall():
            call_id = text(call_id, "tool_calls", "id")
            if started is not None:
                calls.started.add(call_id)
            if needs is not None:
                calls.needs[call_id] = validated(needs, "tool_calls", "depends_on", _CALL_IDS)
        return calls


def _steps(db: sqlite_utils.Database, run_id: str, conversation: Conversation, calls: _Calls) -> tuple[StoredStep, ...]:
    """A run's stored steps, each with its model turn (found in `conversation`) and its calls' outcomes."""
    # A model's turn is the assistant message its step wrote.
    turns = {step_id: (position, message) for position, step_id, message in conversation if step_id is not None}
    rows = db.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY idx", [run_id])
    names = [d[0] for d in rows.description]
    return tuple(_step(dict(zip(names, values, strict=True)), turns, calls) for values in rows.fetchall())


def _step(row: Mapping[str, Any], turns: Mapping[str, tuple[int, Message]], calls: _Calls) -> StoredStep:
    position, message = turns.get(row["id"], (None, AssistantMessage()))
    if not isinstance(message, AssistantMessage):
        raise Unreadable("messages", "step_id", f"the message at position {position} is a {message.role} message")
    response = _response(row, message)
    done = _marked(tuple(calls.results[c.id] for c in message.tool_calls if c.id in calls.results), response)
    pending = tuple(c for c in message.tool_calls if c.id not in calls.results)
    return StoredStep(
        index=whole(row["idx"], "steps", "idx"),
        position=position,
        response=response,
        sampling=validated(row["sampling"], "steps", "sampling", _SAMPLING) if row["sampling"] else Sampling(),
        results=done,
        pending=pending,
        started=tuple(c for c in pending if c.id in calls.started),
        runtime=text_or_none(row["runtime"], "steps", "runtime"),
        model=text_or_none(row["model"], "steps", "model"),
        provider=text_or_none(row["provider"], "steps", "provider"),
        server=text_or_none(row["server"], "steps", "server"),
        dialect=text_or_none(row["dialect"], "steps", "dialect"),
        seed=whole_or_none(row["seed"], "steps", "seed"),
        created=timestamp(row["created"], "steps", "created"),
        tool_times={r.call_id: calls.times[r.call_id] for r in done},
        depends_on={c.id: calls.needs[c.id] for c in message.tool_calls if c.id in calls.needs},
    )


def _marked(results: tuple[ToolResult, ...], response: ModelResponse) -> tuple[ToolResult, ...]:
    """`results` with each repeat of an earlier call of the turn marked `duplicate_of` it,
    as the step's metadata (`duplicates`, written by the loop) records."""
    repeats = response.metadata.get("duplicates")
    if not isinstance(repeats, Mapping) or not repeats:
        return results
    return tuple(
        replace(r, duplicate_of=str(repeats[r.call_id])) if r.call_id in repeats and r.duplicate_of is None else r
        for r in results
    )


def _class_name(agent: str) -> str:
    """`Class` of `module:Outer.Class`."""
    return agent.rpartition(":")[2].rpartition(".")[2] or agent
