"""The store's file: one SQLite database, opened per thread, migrated, written in short transactions.

Every part of the store (runs, workflow runs, their recorders) reads through
`StoreFile.db` and writes through `StoreFile._write`, so WAL journaling, the
busy timeout, the durability setting, the all-or-nothing commit and the
wording of SQLite's refusals (a full disk, a lock held too long, a read-only
or deleted file) are in one place.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

import platformdirs
import sqlite_utils
from ulid import ULID

from agentkit.errors import StoreError
from agentkit.secrets import redact_params
from agentkit.store.migrations import MIGRATIONS
from agentkit.store.records import Unreadable

__all__ = ["DURABILITIES", "Durability", "Statement", "StoreFile", "default_path", "new_id"]

Statement: TypeAlias = tuple[str, Sequence[Any]]
"""One SQL statement and its parameters, for `StoreFile._write`."""

Durability: TypeAlias = Literal["normal", "full"]
"""How hard each commit is pushed to the disk (`Store(durability=...)`):
`normal` (SQLite's synchronous=NORMAL) survives a killed process, `full`
(synchronous=FULL) also a power cut or an operating system crash."""

DURABILITIES: tuple[Durability, ...] = get_args(Durability)
"""Every `Durability`, as `Store` and `$AGENTKIT_DB_DURABILITY` accept them."""

_SQLITE_HEADER = b"SQLite format 3\x00"


def _writable(path: Path) -> bool:
    """Whether this process may write `path` (if it exists) and create files beside it (WAL's)."""
    return (not path.exists() or os.access(path, os.W_OK)) and os.access(path.parent, os.W_OK)


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

    def __init__(
        self, path: str | Path | None = None, *, busy_timeout: float = 60.0, durability: Durability | None = None
    ) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.busy_timeout = busy_timeout
        self.durability = _durability(durability, self.path)
        self.read_only: str | None = None
        """Why the file can only be read (None: it can be written), found when it was opened."""
        self._local = threading.local()
        self._inode: tuple[int, int] | None = None
        """The file's (device, inode) once open: a write checks it is still the file at `path`."""
        self._absolute = self.path.absolute()
        """`path` as it was when the store was opened (a later `chdir` does not move the file)."""
        self._check_file()
        self._make_folder()
        self._open()

    def _make_folder(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of {self.path}: {exc}; use another path") from exc

    def _open(self) -> None:
        """Migrate the file; a file that cannot be written is opened to be read only."""
        try:
            self._migrate()
        except StoreError as exc:
            # SQLite says "read-only" for other reasons too (a moved file, a lock it cannot take):
            # only a file or folder that cannot be written is opened to be read.
            if _code(exc.__cause__) != sqlite3.SQLITE_READONLY or _writable(self._absolute):
                raise
            self.close()
            self.read_only = str(exc.__cause__)
            self._check_schema_read_only()
        self._inode = _inode(self._absolute)

    def _check_schema_read_only(self) -> None:
        """A read-only file is read as it is: refused if its schema is not this agentkit's."""
        try:
            applied = [m.name for m in MIGRATIONS.applied(self.db)]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} cannot be read as agentkit's store: {exc}") from exc
        known = [m.name for m in MIGRATIONS._migrations]
        unknown = [name for name in applied if name not in known]
        if unknown:
            raise StoreError(
                f"{self.path} was written by a newer agentkit (schema steps {unknown} are unknown "
                "here); upgrade agentkit to read it"
            )
        missing = [name for name in known if name not in applied]
        if missing:
            raise StoreError(
                f"{self.path} is read-only ({self.read_only}) and needs schema steps {missing} this agentkit "
                "adds; open it once with write access (the file and its folder) to upgrade it"
            )

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
            self._check_still_there("open it")
            conn = self._connect_read_only() if self.read_only is not None else self._connect()
            db = self._local.db = sqlite_utils.Database(conn)
        return db

    def _connect(self) -> sqlite3.Connection:
        """A connection to write with: WAL, `durability`'s synchronous setting, foreign keys."""
        try:
            # `timeout` is SQLite's busy timeout: a writer waits this long for another's lock.
            conn = sqlite3.connect(self._absolute, timeout=self.busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(self._refusal(exc, f"{self.path} cannot be opened")) from exc
        try:
            self._wal(conn)
            # WAL with synchronous=NORMAL survives a killed process (not a power cut) at a
            # fraction of FULL's cost: each commit is in the log before the call returns.
            # FULL also syncs the log at each commit: a power cut loses nothing committed.
            conn.execute(f"PRAGMA synchronous = {self.durability.upper()}")
            conn.execute("PRAGMA foreign_keys = ON")
        except (sqlite3.DatabaseError, StoreError) as exc:
            conn.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{self.path} cannot be opened as an SQLite database: {exc}") from exc
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """A connection that only reads (`mode=ro`). When not even SQLite's WAL
        index can be made beside the file (a read-only folder), the file is read
        as immutable: what a writer left in its WAL log is not seen."""
        uri = self._absolute.resolve().as_uri()
        failure: sqlite3.Error = sqlite3.OperationalError("no way to open it was tried")
        for options in ("mode=ro", "mode=ro&immutable=1"):
            conn: sqlite3.Connection | None = None
            try:
                conn = sqlite3.connect(f"{uri}?{options}", uri=True, timeout=self.busy_timeout, isolation_level=None)
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                failure = exc
        raise StoreError(self._refusal(failure, f"{self.path} cannot be read")) from failure

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
                        else self._refusal(exc, f"{self.path} cannot be opened as an SQLite database")
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
            raise StoreError(self._refusal(exc, f"{self.path} cannot be used as agentkit's store")) from exc

    def schema_steps(self) -> list[str]:
        """The names of the migrations applied to this database, in order."""
        return [m.name for m in MIGRATIONS.applied(self.db)]

    def _write(self, statements: Sequence[Statement], *, what: str = "a write") -> None:
        """Run `statements` in one committed transaction, all or nothing.

        Raises:
            StoreError: SQLite refused (disk full, a constraint, a lock held
                past the busy timeout...), the file is read-only, or it was
                deleted or replaced since it was opened: `what` says what was
                being recorded. Nothing of this transaction is kept; earlier
                commits are.
        """
        if self.read_only is not None:
            raise StoreError(
                f"could not record {what}: {self.path} is read-only ({self.read_only}); make the file and "
                "its folder writable, or use another database"
            )
        self._check_still_there(f"record {what}")
        try:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    conn.execute(sql, redact_params(params))  # no declared secret reaches the file
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite rolls back by itself after some errors
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(self._refusal(exc, f"could not record {what} in {self.path}")) from exc

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Around reading `what` (`run 01J...`): SQLite's refusal, or a stored value
        that cannot be used (`Unreadable`), is a `StoreError` naming `what` and the file;
        so is a file deleted since it was opened (what it held is gone for everyone else)."""
        self._check_still_there(f"read {what}")
        try:
            yield
        except Unreadable as exc:
            raise StoreError(
                f"{what} in {self.path}: {exc}; the row was changed by hand or is damaged: fix or delete it"
            ) from exc
        except sqlite3.Error as exc:
            raise StoreError(self._refusal(exc, f"could not read {what} from {self.path}")) from exc

    def _refusal(self, exc: sqlite3.Error, doing: str) -> str:
        """What went wrong, in words: `doing` (what could not be done), why, and what to do."""
        detail = f"{type(exc).__name__}: {exc}"
        code = _code(exc)
        if code == sqlite3.SQLITE_FULL:
            return f"{doing}: the disk is full, or the database reached its size limit ({detail}); free some space"
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return (
                f"{doing}: the file stayed locked by another process for {self.busy_timeout:g} s, the busy "
                f"timeout ({detail}); wait for it to finish or give a longer busy_timeout"
            )
        if code == sqlite3.SQLITE_READONLY:
            return f"{doing}: the file or its folder is read-only ({detail}); make both writable"
        if code == sqlite3.SQLITE_CANTOPEN:
            return f"{doing}: SQLite cannot open or create the file ({detail}); check that its folder is writable"
        return f"{doing}: {detail}"

    def _check_still_there(self, doing: str) -> None:
        """Refuse to go on with a file that was deleted or replaced since it was opened.

        On Linux an open connection keeps writing to a deleted file's inode:
        every later commit would be lost with it, silently.
        """
        if self._inode is None:
            return
        now_there = _inode(self._absolute)
        if now_there == self._inode:
            return
        happened = "deleted (or moved)" if now_there is None else "replaced by another file"
        raise StoreError(
            f"cannot {doing}: {self.path} was {happened} after it was opened; what is written now would be "
            "lost with it. Open the store again to go on"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def _durability(value: str | None, path: Path) -> Durability:
    """`value`, else `$AGENTKIT_DB_DURABILITY`, else `normal`; checked."""
    given = value if value is not None else os.environ.get("AGENTKIT_DB_DURABILITY") or "normal"
    for durability in DURABILITIES:
        if given == durability:
            return durability
    source = "durability" if value is not None else "$AGENTKIT_DB_DURABILITY"
    raise StoreError(f"{source} of the store {path} must be one of {', '.join(DURABILITIES)}, not {given!r}")


def _code(exc: BaseException | None) -> int | None:
    """SQLite's primary result code of an error (SQLITE_FULL, SQLITE_BUSY...), None for other errors."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(exc, sqlite3.Error) and isinstance(code, int) else None


def _inode(path: Path) -> tuple[int, int] | None:
    """The file's (device, inode); None when there is no file at `path`."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
