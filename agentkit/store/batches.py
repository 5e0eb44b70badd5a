"""The batches of a store's file: one row per `agentkit batch`, its items' runs linked to it.

An item's agent run (or workflow run) has the batch as its parent
(`parent_kind` 'batch', `parent_part` the item's id); what a batch has done
is read back from those links, so a batch killed at any moment resumes from
what was committed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import pydantic

from agentkit.errors import StoreError
from agentkit.store.connection import StoreFile, dumps, new_id, now
from agentkit.store.records import json_or_none, number, one_of, text, text_or_none, timestamp, validated, whole

__all__ = ["BatchItemRecord", "BatchRecord", "BatchStatus", "BatchStore"]

BatchStatus = Literal["running", "done", "stopped"]
"""`running` until the batch ends (and for ever, if its process was killed);
`stopped`: interrupted, or `--max-failures` reached, with items left to run."""

_BATCH_COLUMNS = "id, target, input, output, items, options, status, created, updated"
_OPTIONS = pydantic.TypeAdapter(Mapping[str, Any])
_BATCH_STATUSES: tuple[BatchStatus, ...] = get_args(BatchStatus)


@dataclass(frozen=True, kw_only=True)
class BatchRecord:
    """A stored batch."""

    id: str
    target: str
    """`module:Class`, or the workflow file."""
    input: str | None
    output: str | None
    items: int
    options: Mapping[str, Any]
    status: BatchStatus
    created: float
    updated: float


@dataclass(frozen=True, kw_only=True)
class BatchItemRecord:
    """The newest run of one item of a batch, as stored."""

    item: str
    kind: Literal["agent", "workflow"]
    run_id: str
    status: str
    """The run's status (`RunStatus`, or `WorkflowStatus` for a workflow)."""
    output: Any
    error: str | None
    tokens: int
    """Prompt plus completion tokens over the run's steps (a workflow: its agent steps')."""
    seconds: float
    """From the run's start to its last write."""


class BatchStore(StoreFile):
    """The batches of a store's file (`Store` includes it)."""

    def begin_batch(
        self,
        *,
        target: str,
        items: int,
        input: str | Path | None = None,
        output: str | Path | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> BatchRecord:
        """Record a new batch (its items' runs name it as their parent)."""
        batch_id, created = new_id(), now()
        files = [str(Path(p).resolve()) if p is not None else None for p in (input, output)]
        self._write(
            [
                (
                    f"INSERT INTO batches ({_BATCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                    (batch_id, target, *files, items, dumps(dict(options or {})), created, created),
                )
            ],
            what=f"the start of a batch of {target}",
        )
        return self.batch(batch_id)

    def batch(self, batch_id: str) -> BatchRecord:
        """One batch. Raises `StoreError` if there is none, or if its row cannot be read."""
        with self._reading(f"batch {batch_id}"):
            row = self.db.execute(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = ?", [batch_id]).fetchone()
            if row is None:
                raise StoreError(f"no batch {batch_id!r} in {self.path}")
            return _batch(row)

    def batches(self, *, output: str | Path | None = None, limit: int = 50) -> list[BatchRecord]:
        """The newest batches first; with `output`, those that wrote that file."""
        where, params = ("WHERE output = ?", [str(Path(output).resolve())]) if output is not None else ("", [])
        with self._reading("the list of batches"):
            rows = self.db.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches {where} ORDER BY id DESC LIMIT ?", [*params, limit]
            ).fetchall()
        batches = []
        for row in rows:
            with self._reading(f"batch {row[0]}"):
                batches.append(_batch(row))
        return batches

    def batch_status(self, batch_id: str, status: BatchStatus, *, items: int | None = None) -> None:
        """Set a batch's status (and its item count, when the input grew on resume)."""
        self._write(
            [
                (
                    "UPDATE batches SET status = ?, items = COALESCE(?, items), updated = ? WHERE id = ?",
                    (status, items, now(), batch_id),
                )
            ],
            what=f"the status ({status}) of batch {batch_id}",
        )

    def batch_items(self, batch_id: str, items: Sequence[str] | None = None) -> dict[str, BatchItemRecord]:
        """The newest run of each item of the batch that has one, by item id (`items`: only those)."""
        found: dict[str, BatchItemRecord] = {}
        wanted = set(items) if items is not None else None
        for kind, row in self._item_runs(batch_id, items):
            with self._reading(f"the {kind} run {row[1]} of batch {batch_id}"):
                record = _item(kind, row)
            if wanted is not None and record.item not in wanted:
                continue
            previous = found.get(record.item)
            if previous is not None and previous.run_id > record.run_id:
                continue  # ids are ULIDs: the larger is the newer run
            found[record.item] = record
        return found

    def _item_runs(
        self, batch_id: str, items: Sequence[str] | None
    ) -> list[tuple[Literal["agent", "workflow"], Sequence[Any]]]:
        """The rows of the batch's agent runs and workflow runs (`items`: a few items' only)."""
        where, params = "parent_kind = 'batch' AND parent_id = ?", [batch_id]
        if items is not None and len(items) <= 500:  # one item's lookup uses the index, not the whole batch
            where += f" AND parent_part IN ({', '.join('?' * len(items))})"
            params += list(items)
        with self._reading(f"the runs of batch {batch_id}"):
            runs = self.db.execute(
                "SELECT parent_part, id, status, output, error, created, updated, "
                "(SELECT COALESCE(SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)), 0) "
                f" FROM steps WHERE run_id = runs.id) FROM runs WHERE {where} ORDER BY id",
                params,
            ).fetchall()
            flows = self.db.execute(
                "SELECT parent_part, id, status, output, error, created, updated, "
                "(SELECT COALESCE(SUM(COALESCE(s.prompt_tokens, 0) + COALESCE(s.completion_tokens, 0)), 0) "
                " FROM runs r JOIN steps s ON s.run_id = r.id WHERE r.parent_id = workflow_runs.id) "
                f"FROM workflow_runs WHERE {where} ORDER BY id",
                params,
            ).fetchall()
        return [("agent", row) for row in runs] + [("workflow", row) for row in flows]


def _item(kind: Literal["agent", "workflow"], row: Sequence[Any]) -> BatchItemRecord:
    """A batch item's run (`kind`), from its row in `runs` or `workflow_runs`."""
    item, run_id, status, output, error, created, updated, tokens = row
    table = "runs" if kind == "agent" else "workflow_runs"
    return BatchItemRecord(
        item=text(item, table, "parent_part"),
        kind=kind,
        run_id=text(run_id, table, "id"),
        status=text(status, table, "status"),
        output=json_or_none(output, table, "output"),
        error=text_or_none(error, table, "error"),
        tokens=int(number(tokens, "steps", "prompt_tokens and completion_tokens", "token counts")),
        seconds=max(0.0, timestamp(updated, table, "updated") - timestamp(created, table, "created")),
    )


def _batch(row: Sequence[Any]) -> BatchRecord:
    """A `batches` row; `Unreadable` names a column that cannot be read."""
    batch_id, target, input, output, items, options, status, created, updated = row
    return BatchRecord(
        id=text(batch_id, "batches", "id"),
        target=text(target, "batches", "target"),
        input=text_or_none(input, "batches", "input"),
        output=text_or_none(output, "batches", "output"),
        items=whole(items, "batches", "items"),
        options=validated(options, "batches", "options", _OPTIONS),
        status=one_of(status, "batches", "status", _BATCH_STATUSES),
        created=timestamp(created, "batches", "created"),
        updated=timestamp(updated, "batches", "updated"),
    )
