"""`sqlite_query` on a real SQLite file, against statements that would change it or run forever."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from agentkit.tools import sqlite_query
from tests.unit.tools.support import ok, refused


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL, photo BLOB)")
        connection.execute("CREATE INDEX by_name ON products(name)")
        connection.executemany(
            "INSERT INTO products (name, price, photo) VALUES (?, ?, ?)",
            [(f"item {n}", n * 1.5, b"\x89PNG" if n == 1 else None) for n in range(1, 11)],
        )
    connection.close()
    return path


@pytest.fixture
def query(database: Path) -> Any:
    return sqlite_query(database, max_rows=5, timeout=0.3)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- what it is for ----------------------------------------------------------------------


def test_rows_come_back_as_json_values(query: Any) -> None:
    result = ok(query, sql="SELECT id, name, price, photo FROM products WHERE id <= ? ORDER BY id", parameters=[2])
    assert result == {
        "columns": ["id", "name", "price", "photo"],
        "rows": [[1, "item 1", 1.5, "<blob: 4 bytes>"], [2, "item 2", 3.0, None]],
        "truncated": False,
    }


def test_reading_pragmas_and_the_schema_are_allowed(query: Any) -> None:
    columns = ok(query, sql="PRAGMA table_info(products)")["rows"]
    assert [row[1] for row in columns] == ["id", "name", "price", "photo"]
    tables = ok(query, sql="SELECT name FROM sqlite_master WHERE type = 'table'")["rows"]
    assert tables == [["products"]]
    assert ok(query, sql="PRAGMA user_version")["rows"] == [[0]]


def test_a_trailing_comment_is_one_statement(query: Any) -> None:
    assert ok(query, sql="SELECT 1; -- done")["rows"] == [[1]]


def test_rows_past_the_cap_are_cut_and_said_so(query: Any) -> None:
    result = ok(query, sql="SELECT id FROM products ORDER BY id")
    assert (result["rows"], result["truncated"]) == ([[1], [2], [3], [4], [5]], True)


# --- hostile statements ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("INSERT INTO products (name) VALUES ('free')", "would INSERT (products)"),
        ("UPDATE products SET price = 0", "would UPDATE (products price)"),
        ("DELETE FROM products", "would DELETE (products)"),
        ("DROP TABLE products", "would change the schema"),
        ("CREATE TABLE evil (x)", "would change the schema"),
        ("CREATE TEMP TABLE scratch (x)", "would change the schema"),
        ("CREATE INDEX evil ON products(price)", "would change the schema"),
        ("CREATE VIEW cheap AS SELECT * FROM products", "would change the schema"),
        ("CREATE TRIGGER t AFTER INSERT ON products BEGIN SELECT 1; END", "would CREATE TRIGGER (t products)"),
        ("ALTER TABLE products ADD COLUMN evil", "would ALTER TABLE (main products)"),
        ("REINDEX", "would REINDEX (by_name)"),
        ("ANALYZE", "would change the schema"),
        ("BEGIN", "would TRANSACTION (BEGIN)"),
        ("SAVEPOINT s", "would SAVEPOINT (BEGIN s)"),
        ("PRAGMA user_version = 7", "would PRAGMA (user_version = 7)"),
        ("PRAGMA journal_mode = WAL", "would PRAGMA (journal_mode = WAL)"),
        ("PRAGMA writable_schema = ON", "would PRAGMA (writable_schema = ON)"),
        ("PRAGMA schema_version = 99", "would PRAGMA (schema_version = 99)"),
        ("PRAGMA wal_checkpoint", "would PRAGMA (wal_checkpoint)"),
        ("PRAGMA query_only = OFF", "would PRAGMA (query_only = OFF)"),
        ("SELECT load_extension('/tmp/evil.so')", "would FUNCTION (load_extension)"),
        ("DETACH main", "would DETACH (main)"),
    ],
)
def test_statements_that_write_are_refused_and_the_file_unchanged(
    query: Any, database: Path, sql: str, what: str
) -> None:
    before = _digest(database)
    text = refused(query, sql=sql)
    assert f"ToolRefused: refused: the query {what}" in text
    assert _digest(database) == before


@pytest.mark.parametrize("sql", ["ATTACH '{file}' AS other", "VACUUM INTO '{file}'"])
def test_attaching_or_vacuuming_into_a_new_file_is_refused(query: Any, tmp_path: Path, sql: str) -> None:
    target = tmp_path / "copy.db"
    text = refused(query, sql=sql.format(file=target))
    assert f"the query would ATTACH ({target})" in text
    assert not target.exists()


def test_vacuum_is_refused(query: Any) -> None:
    assert "refused" in refused(query, sql="VACUUM")


@pytest.mark.parametrize(
    "sql", ["SELECT 1; DROP TABLE products", "SELECT 1; SELECT 2", "PRAGMA user_version; PRAGMA user_version = 1"]
)
def test_more_than_one_statement_is_refused(query: Any, database: Path, sql: str) -> None:
    assert "the SQL has more than one statement" in refused(query, sql=sql)
    assert ok(query, sql="SELECT count(*) FROM products")["rows"] == [[10]]


def test_a_query_that_runs_forever_is_stopped_at_the_time_cap(query: Any) -> None:
    forever = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
    started = time.monotonic()
    text = refused(query, sql=forever)
    assert time.monotonic() - started < 1.2
    assert "TimeCapExceeded: the query ran past the 0.3 s time cap and was stopped" in text


def test_an_endless_query_that_returns_rows_is_cut_at_the_row_cap(query: Any) -> None:
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x FROM n"
    assert ok(query, sql=endless) == {"columns": ["x"], "rows": [[1], [2], [3], [4], [5]], "truncated": True}


def test_a_huge_value_cannot_be_made(query: Any) -> None:
    assert "string or blob too big" in refused(query, sql="SELECT zeroblob(2000000000)")


def test_a_missing_database_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    text = refused(sqlite_query(missing), sql="SELECT 1")
    assert "refused: the database missing.db does not exist (or is no file)" in text
    assert list(tmp_path.iterdir()) == []
