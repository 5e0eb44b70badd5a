"""The batches of a store's file: one row per `agentkit batch`, its items' runs linked to it.

An item's agent run (or workflow run) has the batch as its parent
(`parent_kind` 'batch', `parent_part` the item's id); what a batch has done
is read back from those links, so a batch killed at any moment resumes from
what was committed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agentkit.errors import StoreError
from agentkit.store.connection import StoreFile, dumps, new_id, now

__all__ = ["BatchItemRecord", "BatchRecord", "BatchStatus", "BatchStore"]

BatchStatus = Literal["running", "done", "stopped"]
"""`running` until the batch ends (and for ever, if its process was killed);
`stopped`: interrupted, or `--max-failures` reached, with items left to run."""

_BATCH_COLUMNS = "id, target, input, output, items, options, status, created, updated"


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
        """One batch. Raises `StoreError` if there is none."""
        row = self.db.execute(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = ?", [batch_id]).fetchone()
        if row is None:
            raise StoreError(f"no batch {batch_id!r} in {self.path}")
        return _batch(row)

    def batches(self, *, output: str | Path | None = None, limit: int = 50) -> list[BatchRecord]:
        """The newest batches first; with `output`, those that wrote that file."""
        where, params = ("WHERE output = ?", [str(Path(output).resolve())]) if output is not None else ("", [])
        rows = self.db.execute(
            f"SELECT {_BATCH_COLUMNS} FROM batches {where} ORDER BY id DESC LIMIT ?", [*params, limit]
        ).fetchall()
        return [_batch(row) for row in rows]

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
        where, params = "parent_kind = 'batch' AND parent_id = ?", [batch_id]
        if items is not None and len(items) <= 500:  # one item's lookup uses the index, not the whole batch
            where += f" AND parent_part IN ({', '.join('?' * len(items))})"
            params += list(items)
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
        wanted = set(items) if items is not None else None
        kinds: tuple[tuple[Literal["agent", "workflow"], list[Any]], ...] = (("agent", runs), ("workflow", flows))
        for kind, rows in kinds:
            for item, run_id, status, output, error, created, updated, tokens in rows:
                if wanted is not None and item not in wanted:
                    continue
                previous = found.get(item)
                if previous is not None and previous.run_id > run_id:
                    continue  # ids are ULIDs: the larger is the newer run
                found[item] = BatchItemRecord(
                    item=item,
                    kind=kind,
                    run_id=run_id,
                    status=status,
                    output=json.loads(output) if output is not None else None,
                    error=error,
                    tokens=int(tokens),
                    seconds=max(0.0, updated - created),
                )
        return found


def _batch(row: Sequence[Any]) -> BatchRecord:
    batch_id, target, input, output, items, options, status, created, updated = row
    return BatchRecord(
        id=batch_id,
        target=target,
        input=input,
        output=output,
        items=items,
        options=json.loads(options),
        status=status,
        created=created,
        updated=updated,
    )
