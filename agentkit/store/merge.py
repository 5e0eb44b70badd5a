"""Merging stores: the rows of other store files (shards of parallel workers) copied into one store.

    report = merge(Store("all.db"), ["shard-1.db", "shard-2.db"])
    report.total.runs_added                 # runs that were not in all.db before
    merge(Store("all.db"), ["shard-1.db"])  # again: nothing changes

Every table of the schema is merged (not sqlite-utils' record of migrations,
not the full-text index's own tables: the triggers of `messages` keep the
index of the target up to date). Ids are ULIDs, so rows of different shards
never collide; a row already in the target is replaced by the source's when
they differ: in a table with an `updated` column (runs, workflow runs,
batches) only by a newer one, in the others always, so a shard merged again
after its runs went on brings their later state. Rows are never deleted.

Each source is opened read-only and merged in one transaction: all of it or
nothing of it. A source must have exactly the target's schema steps; all are
checked before the first is merged.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field, fields
from pathlib import Path

from sqlite_utils.migrations import Migrations

from agentkit.errors import StoreError
from agentkit.store.connection import _SQLITE_HEADER, StoreFile
from agentkit.store.migrations import MIGRATIONS

__all__ = ["MergeCounts", "MergeReport", "MergedSource", "merge"]

_SOURCE = "source"
"""The schema name a source is attached under."""

_PARENTS = {
    "steps": ("runs", "run_id"),
    "messages": ("runs", "run_id"),
    "tool_calls": ("runs", "run_id"),
    "tool_results": ("runs", "run_id"),
    "approvals": ("runs", "run_id"),
    "workflow_steps": ("workflow_runs", "workflow_run"),
}
"""Each child table's parent (a table with an `updated` time) and the column that names it."""

_COUNTED = ("runs", "workflow_runs", "batches")
"""The tables whose added and updated rows `MergeCounts` counts (its fields `<table>_added`, `<table>_updated`)."""


@dataclass(frozen=True, kw_only=True)
class MergeCounts:
    """What merging changed in the target; counts of several sources add up with `+`."""

    runs_added: int = 0
    runs_updated: int = 0
    """Runs that were in the target, replaced by a newer state."""
    workflow_runs_added: int = 0
    workflow_runs_updated: int = 0
    batches_added: int = 0
    batches_updated: int = 0
    rows: int = 0
    """Rows inserted or replaced, over every table (runs, steps, messages, tool calls, ...)."""

    def __add__(self, other: MergeCounts) -> MergeCounts:
        return MergeCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True, kw_only=True)
class MergedSource:
    """One source file and what merging it changed."""

    path: Path
    """The source, as it was given."""
    counts: MergeCounts


@dataclass(frozen=True, kw_only=True)
class MergeReport:
    """What `merge` did, source by source, in the order they were given."""

    into: Path
    """The target store's file."""
    sources: tuple[MergedSource, ...] = field(default=())

    @property
    def total(self) -> MergeCounts:
        """The counts of every source, added up."""
        return sum((source.counts for source in self.sources), MergeCounts())


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    """The primary key's columns."""


def merge(into: StoreFile | str | Path, sources: Sequence[str | Path]) -> MergeReport:
    """Copy the runs, workflow runs and batches of `sources` into the store `into`.

    Args:
        into: The target store, or its path (created if missing once the
            sources are checked, and closed at the end).
        sources: Store files, merged one after another. Each is opened
            read-only; SQLite may leave its `-wal` and `-shm` index files
            beside it, the database itself is left as it is.

    Returns:
        What each source added and updated.

    Raises:
        StoreError: a source is missing, not an SQLite database, not an
            agentkit store, the target itself, or has other schema steps
            than the target (nothing is merged then); or SQLite refused a
            write: that source is not merged, those before it are.
    """
    paths = [Path(source) for source in sources]
    target = into.path if isinstance(into, StoreFile) else Path(into)
    for path in paths:
        _check(path, target)
    store = into if isinstance(into, StoreFile) else StoreFile(target)
    try:
        with closing(_connect(store)) as conn:
            merged = tuple(MergedSource(path=path, counts=_merge_one(conn, path, store.path)) for path in paths)
    finally:
        if store is not into:
            store.close()
    return MergeReport(into=store.path, sources=merged)


def _uri(path: Path, mode: str) -> str:
    return f"{path.resolve().as_uri()}?mode={mode}"


def _connect(store: StoreFile) -> sqlite3.Connection:
    """A connection of our own to the target: ATTACH takes a read-only URI only where URIs are on."""
    conn = sqlite3.connect(_uri(store.path, "rw"), uri=True, timeout=store.busy_timeout, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _check(path: Path, target: Path) -> None:
    """Refuse a source that cannot be merged into `target`, before anything is merged."""
    if path.resolve() == target.resolve() or (path.exists() and target.exists() and os.path.samefile(path, target)):
        raise StoreError(f"{path} is the store being merged into; give it only as OUT")
    if not path.exists():
        raise StoreError(f"{path}: no such file to merge")
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not an agentkit store")
    with path.open("rb") as file:
        if file.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
            raise StoreError(f"{path} is not an SQLite database, so not an agentkit store")
    try:
        with closing(sqlite3.connect(_uri(path, "ro"), uri=True, isolation_level=None)) as conn:
            _check_steps(conn, "main", path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} cannot be read as an SQLite database: {exc}") from exc


def _check_steps(conn: sqlite3.Connection, schema: str, path: Path) -> None:
    """The schema steps of `schema` must be this agentkit's, all of them."""
    table = Migrations.migrations_table
    recorded = conn.execute(f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?", [table])
    applied = []
    if recorded.fetchone() is not None:
        rows = conn.execute(f"SELECT name FROM {schema}.{table} WHERE migration_set = ?", [MIGRATIONS.name])
        applied = [name for (name,) in rows]
    if not applied:
        raise StoreError(f"{path} is an SQLite database but not an agentkit store (it records no schema steps)")
    known = [m.name for m in MIGRATIONS._migrations]
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise StoreError(
            f"{path} was written by a newer agentkit (schema steps {unknown} are unknown here); "
            "upgrade agentkit to merge it"
        )
    missing = [name for name in known if name not in applied]
    if missing:
        raise StoreError(
            f"{path} was written by an older agentkit (it lacks the schema steps {missing}); open it once with "
            f"this agentkit to upgrade it (e.g. `agentkit runs list --db {path}`), then merge it"
        )


def _merge_one(conn: sqlite3.Connection, path: Path, target: Path) -> MergeCounts:
    """Upsert every table of the attached source in one transaction."""
    try:
        conn.execute(f"ATTACH DATABASE ? AS {_SOURCE}", [_uri(path, "ro")])
    except sqlite3.Error as exc:
        raise StoreError(f"{path} cannot be opened to merge it: {exc}") from exc
    try:
        _check_steps(conn, _SOURCE, path)  # again: it may have been upgraded since it was checked
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Rows are copied table by table: a child may come before its parent.
            conn.execute("PRAGMA defer_foreign_keys = ON")
            changed = {table.name: _upsert(conn, table) for table in _tables(conn)}
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a COMMIT refused (a deferred foreign key) leaves it open
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        hint = (
            " (a row with another id holds the same place in both: was one run continued in both files?)"
            if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)
            else ""
        )
        raise StoreError(
            f"could not merge {path} into {target}: {type(exc).__name__}: {exc}{hint}; nothing of it was merged"
        ) from exc
    finally:
        conn.execute(f"DETACH DATABASE {_SOURCE}")
    counts = {
        f"{table}_{what}": changed.get(table, (0, 0))[i]
        for table in _COUNTED
        for i, what in enumerate(("added", "updated"))
    }
    return MergeCounts(**counts, rows=sum(added + updated for added, updated in changed.values()))


def _tables(conn: sqlite3.Connection) -> list[_Table]:
    """The target's tables, in the order they were created, but for sqlite-utils' and the full-text index's."""
    rows = conn.execute("SELECT name, sql FROM main.sqlite_master WHERE type = 'table' ORDER BY rowid").fetchall()
    virtual = [name for name, sql in rows if (sql or "").upper().startswith("CREATE VIRTUAL TABLE")]
    tables = []
    for name, _ in rows:
        if (
            name.startswith("sqlite_")
            or name == Migrations.migrations_table
            or any(name == v or name.startswith(f"{v}_") for v in virtual)  # FTS5 and its shadow tables
        ):
            continue
        info = conn.execute(f"PRAGMA main.table_info({_quote(name)})").fetchall()
        key = tuple(column for _, column, *_, pk in sorted(info, key=lambda row: row[5]) if pk)
        if not key:
            raise StoreError(f"table {name} has no primary key, so its rows cannot be merged")
        tables.append(_Table(name=name, columns=tuple(row[1] for row in info), key=key))
    return tables


def _upsert(conn: sqlite3.Connection, table: _Table) -> tuple[int, int]:
    """Copy the source's rows of `table` into the target's: (rows added, rows replaced)."""
    name = _quote(table.name)
    columns = ", ".join(map(_quote, table.columns))
    others = [c for c in table.columns if c not in table.key]
    if "updated" in others:
        newer = f"excluded.updated > {name}.updated"
    else:
        newer = " OR ".join(f"{name}.{_quote(c)} IS NOT excluded.{_quote(c)}" for c in others) or "false"
        parent = _PARENTS.get(table.name)
        if parent is not None and others:
            # A run's rows (a call's start, a decision, a workflow step's end) come with the run's
            # state: an older copy of the run brings none of them back.
            runs, link = map(_quote, parent)
            newer = (
                f"({newer}) AND NOT EXISTS (SELECT 1 FROM main.{runs} AS t JOIN {_SOURCE}.{runs} AS s "
                f"ON s.id = t.id WHERE t.id = excluded.{link} AND t.updated > s.updated)"
            )
    assignments = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in others)
    update = f"DO UPDATE SET {assignments} WHERE {newer}" if others else "DO NOTHING"
    # Not INSERT OR REPLACE: that deletes the old row first, which its children's
    # foreign keys and the full-text triggers would see. `WHERE true`: SQLite's
    # parser needs it between a SELECT and ON CONFLICT.
    sql = (
        f"INSERT INTO main.{name} ({columns}) SELECT {columns} FROM {_SOURCE}.{name} WHERE true "
        f"ON CONFLICT ({', '.join(map(_quote, table.key))}) {update}"
    )
    count = f"SELECT COUNT(*) FROM main.{name}"
    before = conn.execute(count).fetchone()[0]
    changed = conn.execute(sql).rowcount
    added = conn.execute(count).fetchone()[0] - before
    return added, changed - added


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
