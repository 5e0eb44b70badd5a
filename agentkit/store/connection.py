"""The store's file: one SQLite database, opened per thread, migrated, written in short transactions.

Every part of the store (runs, workflow runs, their recorders) reads through
`StoreFile.db` and writes through `StoreFile._write`, so WAL journaling, the
busy timeout and the all-or-nothing commit are set up in one place.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import platformdirs
import sqlite_utils
from ulid import ULID

from agentkit.errors import StoreError
from agentkit.store.migrations import MIGRATIONS

__all__ = ["Statement", "StoreFile", "default_path", "new_id"]

Statement: TypeAlias = tuple[str, Sequence[Any]]
"""One SQL statement and its parameters, for `StoreFile._write`."""

_SQLITE_HEADER = b"SQLite format 3\x00"


def default_path() -> Path:
    """`$AGENTKIT_DB`, else `runs.db` in the user data directory."""
    env = os.environ.get("AGENTKIT_DB")
    return Path(env) if env else Path(platformdirs.user_data_dir("agentkit")) / "runs.db"


def new_id() -> str:
    """A ULID: unique, and sorted by creation time."""
    return str(ULID())


def now() -> float:
    """Unix seconds, as every timestamp in the store is kept."""
    return time.time()


def dumps(value: Any) -> str:
    """A value as the store keeps JSON: compact, UTF-8, anything else as its `str`."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class StoreFile:
    """One SQLite file: checked and migrated when opened, a connection per thread,
    each write one transaction. Open it as a `Store`, whose docstring lists the
    arguments and what is raised."""

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

    def _write(self, statements: Sequence[Statement], *, what: str = "a write") -> None:
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"
