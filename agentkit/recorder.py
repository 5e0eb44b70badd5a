"""Writing a run as it happens: the recorders the loop and the workflow runner call.

    recorder = store.begin_run(agent=..., messages=..., max_steps=...)
    recorder.decision(index=0, position=2, response=..., runtime=..., sampling=..., idempotent=...)
    recorder.tool_result(result)
    recorder.finished("done", output=...)

Each method is one committed transaction (`Store._write`): a decision before
any of its tools runs, each result as its tool finishes. A write SQLite
refuses is a `StoreError` naming the run, the step and what was recorded.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import pydantic
from ulid import ULID

from agentkit.errors import StoreError
from agentkit.messages import AssistantMessage, Message, ToolCall, ToolResult
from agentkit.runtime import ModelResponse, RuntimeInfo, Sampling

if TYPE_CHECKING:
    from agentkit.store import Store

__all__ = ["RunRecorder", "WorkflowRecorder", "new_id"]

_MESSAGE: pydantic.TypeAdapter[Message] = pydantic.TypeAdapter(Annotated[Message, pydantic.Field(discriminator="role")])


_SAMPLING = pydantic.TypeAdapter(Sampling)


def new_id() -> str:
    """A ULID: unique, and sorted by creation time."""
    return str(ULID())


def _now() -> float:
    return time.time()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _message_text(message: Message) -> str:
    if isinstance(message, ToolResult):
        return message.content if isinstance(message.content, str) else _dumps(message.content)
    if isinstance(message, AssistantMessage):
        calls = " ".join(f"{c.name} {_dumps(c.arguments)}" for c in message.tool_calls)
        return " ".join(part for part in (message.text, calls) if part)
    return message.text


def _message_row(run_id: str, position: int, message: Message, step_id: str | None) -> tuple[str, Sequence[Any]]:
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
            _now(),
        ),
    )


class RunRecorder:
    """Writes one run as it happens; the loop calls it (see `Agent(store=...)`)."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self._calls: dict[str, tuple[int, int]] = {}
        """Call id -> (its result's position, its step's index), for calls decided here."""

    def _write(self, statements: Sequence[tuple[str, Sequence[Any]]], what: str) -> None:
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
        whether a call may safely run twice.
        """
        step_id, now = new_id(), _now()
        usage = response.usage
        statements: list[tuple[str, Sequence[Any]]] = [
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
                    response.metadata.get("grammar_hash"),
                    _SAMPLING.dump_json(sampling).decode(),
                    sampling.seed,
                    response.raw_text,
                    response.finish_reason,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    usage.cached_tokens,
                    _dumps(dict(response.timings)),
                    _dumps(dict(response.metadata)),
                    now,
                ),
            ),
        ]
        what = f"step {index}'s model turn"
        if position is None:
            statements.append(self._touch())
            self._write(statements, what)
            return
        statements.append(_message_row(self.run_id, position, response.message, step_id))
        for offset, call in enumerate(response.message.tool_calls, start=1):
            self._calls[call.id] = (position + offset, index)
            statements.append(
                (
                    "INSERT INTO tool_calls (run_id, id, step_id, position, name, arguments, idempotent) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.run_id,
                        call.id,
                        step_id,
                        position + offset,
                        call.name,
                        _dumps(call.arguments),
                        idempotent.get(call.name, True),
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
            [("UPDATE tool_calls SET started = ? WHERE run_id = ? AND id = ?", (_now(), self.run_id, call.id))],
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
                    (
                        self.run_id,
                        result.call_id,
                        result.name,
                        _dumps(result.content),
                        result.is_error,
                        _now(),
                        started,
                    ),
                ),
                _message_row(self.run_id, position, result, None),
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
                    (self.run_id, call_id, approved, reason, by, _now()),
                )
            ],
            "a wait for approval" if approved is None else f"the decision on call {call_id}",
        )

    def finished(
        self, status: str, *, output: Any = None, error: str | None = None, exhausted: str | None = None
    ) -> None:
        """The run's end: `done`, `failed`, `cancelled`, `budget_exhausted` (`exhausted`
        says which) or `awaiting_approval`."""
        self._write(
            [
                (
                    "UPDATE runs SET status = ?, output = ?, error = ?, exhausted = ?, updated = ? WHERE id = ?",
                    (status, _dumps(output) if output is not None else None, error, exhausted, _now(), self.run_id),
                )
            ],
            f"the end ({status})",
        )

    def _touch(self) -> tuple[str, Sequence[Any]]:
        return ("UPDATE runs SET updated = ?, status = 'running' WHERE id = ?", (_now(), self.run_id))


class WorkflowRecorder:
    """Writes one workflow run's steps as they start and end."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def step_started(self, step: str, kind: str) -> None:
        self.store._write(
            [
                (
                    "INSERT OR REPLACE INTO workflow_steps (workflow_run, step, kind, status, started) "
                    "VALUES (?, ?, ?, 'running', ?)",
                    (self.run_id, step, kind, _now()),
                ),
                self._touch(),
            ],
            what=f"the start of step {step} of workflow run {self.run_id}",
        )

    def step_finished(self, step: str, status: str, *, output: Any = None, error: str | None = None) -> None:
        """A step's end: `done`, `skipped`, `failed` or `cancelled`."""
        self.store._write(
            [
                (
                    "UPDATE workflow_steps SET status = ?, output = ?, error = ?, finished = ? "
                    "WHERE workflow_run = ? AND step = ?",
                    (status, _dumps(output) if output is not None else None, error, _now(), self.run_id, step),
                ),
                self._touch(),
            ],
            what=f"the end ({status}) of step {step} of workflow run {self.run_id}",
        )

    def finished(self, status: str, *, output: Any = None, error: str | None = None) -> None:
        """The workflow run's end: `done`, `failed` or `cancelled`."""
        self.store._write(
            [
                (
                    "UPDATE workflow_runs SET status = ?, output = ?, error = ?, updated = ? WHERE id = ?",
                    (status, _dumps(output) if output is not None else None, error, _now(), self.run_id),
                )
            ],
            what=f"the end ({status}) of workflow run {self.run_id}",
        )

    def _touch(self) -> tuple[str, Sequence[Any]]:
        return ("UPDATE workflow_runs SET updated = ? WHERE id = ?", (_now(), self.run_id))
