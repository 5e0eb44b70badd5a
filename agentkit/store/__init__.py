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
by named migrations (`agentkit.store.migrations`), recorded in the database; a
database written by a newer agentkit is refused rather than misread.

The package, by concept: `connection` (the file: WAL, busy timeout,
migrating, one transaction per write), `migrations` (the schema), `records`
(the values read back and their statuses), `runs` (agent runs and their
recorder), `workflows` (workflow runs and theirs), `batches` (`agentkit batch`
and the runs of its items).
"""

from __future__ import annotations

from agentkit.errors import StoreError
from agentkit.store.batches import BatchItemRecord, BatchRecord, BatchStatus, BatchStore
from agentkit.store.connection import DURABILITIES, Durability, default_path, new_id
from agentkit.store.migrations import MIGRATIONS
from agentkit.store.records import (
    STATUSES,
    WORKFLOW_STATUSES,
    Approval,
    ApprovalStatus,
    RunRecord,
    RunStatus,
    StoredRun,
    StoredStep,
    WorkflowRecord,
    WorkflowStatus,
    WorkflowStepRecord,
    WorkflowStepStatus,
)
from agentkit.store.runs import RunRecorder, RunStore
from agentkit.store.workflows import WorkflowRecorder, WorkflowStore

__all__ = [
    "DURABILITIES",
    "MIGRATIONS",
    "STATUSES",
    "WORKFLOW_STATUSES",
    "Approval",
    "ApprovalStatus",
    "BatchItemRecord",
    "BatchRecord",
    "BatchStatus",
    "Durability",
    "RunRecord",
    "RunRecorder",
    "RunStatus",
    "Store",
    "StoreError",
    "StoredRun",
    "StoredStep",
    "WorkflowRecord",
    "WorkflowRecorder",
    "WorkflowStatus",
    "WorkflowStepRecord",
    "WorkflowStepStatus",
    "default_path",
    "new_id",
]


class Store(RunStore, WorkflowStore, BatchStore):
    """One SQLite file of runs: agent runs (`RunStore`), workflow runs (`WorkflowStore`) and batches (`BatchStore`).

    One class per concept over one base (`StoreFile`, the file they share):
    each part's queries sit beside the SQL of its tables, and a `Store` is
    still one object with every method.

    Args:
        path: The database file (created if missing); default `default_path()`.
        busy_timeout: Seconds a writer waits for another's lock before failing.
        durability: How much a commit survives. `"normal"` (SQLite's WAL with
            synchronous=NORMAL): a killed process loses nothing committed, a
            power cut or an operating system crash may lose the last commits
            (never corrupting the file). `"full"` (synchronous=FULL): the log
            is synced to the disk at every commit, so a power cut loses
            nothing committed either, at a cost per write measured by
            `benchmarks/store_throughput.py`. Default: `$AGENTKIT_DB_DURABILITY`,
            else `"normal"`.

    A file that cannot be written (a read-only file or folder) is opened to be
    read: listing and loading runs work, and the first write raises a
    `StoreError` naming the file. A write also refuses to go on once the file
    was deleted or replaced after it was opened: on Linux the open connection
    would keep writing into the deleted file, losing every later commit.

    Raises:
        StoreError: the file is not an SQLite database, was written by a
            newer agentkit, is read-only and needs upgrading, or `durability`
            is not one of `DURABILITIES`; the file is left untouched. Every
            method raises `StoreError` when SQLite refuses (a full disk, a lock
            held past `busy_timeout`, a row it cannot read), naming the file.
    """
