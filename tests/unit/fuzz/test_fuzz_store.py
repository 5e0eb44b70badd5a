"""Fuzz the store's reading of rows: changed by hand, damaged, or written by older migrations.

A real database is recorded once through the store's own API (runs with
calls, results, a started call, an approval, a plan's dependencies; a
workflow run and its steps; a batch and its item's run). Each example copies
it, then with raw `sqlite3` overwrites chosen cells with arbitrary values
(NULL, numbers, text, blobs, text that is not UTF-8, invalid JSON, JSON of the
wrong shape, deep nesting, huge numbers), deletes rows, or rebuilds it as an
older schema (only the first migrations) holding the same rows. Then every
reader runs: `Store(path)`, `runs`, `run`, `load` (and `StoredRun.records`,
the JSONL export), `approvals`, `search`, the workflow and batch readers, and
for some examples `agentkit runs list/show/export`.

The rule: each returns, or raises `StoreError` (an `AgentkitError`); never a
`KeyError`, `json.JSONDecodeError`, `pydantic.ValidationError`,
`sqlite3.Error`..., and nothing hangs (`tests.support.fuzzing`).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from agentkit import AssistantMessage, ModelResponse, Sampling, SystemMessage, ToolCall, ToolResult, UserMessage
from agentkit.budget import Budget
from agentkit.cli import app
from agentkit.errors import StoreError
from agentkit.events import RunParent
from agentkit.runtime import RuntimeInfo, Usage
from agentkit.store import MIGRATIONS, Store
from agentkit.store.records import Unreadable
from agentkit.tool import ToolSpec
from tests.support.fuzzing import EXAMPLES, fuzz_settings, only_agentkit_errors, time_box

RUNTIME = RuntimeInfo(name="vllm", model="gemma", dialect="gemma4", constrained=True, uri="vllm:default")
TABLES = (
    "runs",
    "steps",
    "messages",
    "tool_calls",
    "tool_results",
    "approvals",
    "workflow_runs",
    "workflow_steps",
    "batches",
    "_sqlite_migrations",
)
"""The tables whose rows are fuzzed (FTS5's own tables are SQLite's, not the store's, to read)."""


# --- the database every example starts from ----------------------------------------------------


def record_runs(store: Store) -> dict[str, str]:
    """Record the rows every reader has to read; returns their ids by name."""
    spec = ToolSpec(name="add", description="Add.", parameters={"type": "object"}, examples=({"a": 1},))
    paused = store.begin_run(
        agent="tests.agents:Adder",
        messages=[SystemMessage(text="Be brief."), UserMessage(text="Add some words.")],
        max_steps=5,
        tools=[spec],
        output_schema={"type": "object"},
        budget=Budget(max_steps=5, max_tokens=1000),
    )
    calls = (
        ToolCall(name="add", arguments={"a": 1, "b": 2}, id="c1"),
        ToolCall(name="add", arguments={"a": "$1", "b": 4}, id="c2"),
    )
    turn = ModelResponse(
        message=AssistantMessage(text="Adding.", tool_calls=calls),
        usage=Usage(prompt_tokens=10, completion_tokens=5, cached_tokens=2, requests=1),
        finish_reason="tool_calls",
        raw_text="<raw>",
        timings={"total": 1.5},
        grammar_digest="abc",
        metadata={"plan": True, "context": {"cut": []}},
    )
    sampling = Sampling(temperature=0.5, seed=7, stop=("x",))
    paused.decision(index=0, position=2, response=turn, runtime=RUNTIME, sampling=sampling, idempotent={"add": False})
    paused.tool_started(calls[0])
    paused.tool_result(ToolResult(call_id="c1", name="add", content={"sum": 3}), started=1.0)
    paused.tool_started(calls[1])
    paused.decided("c2", None)
    paused.finished("awaiting_approval")

    workflow = store.begin_workflow(name="flow", file="flow.yaml", inputs={"city": "Oslo"})
    workflow.step_started("research", "agent")
    done = store.begin_run(
        agent="tests.agents:Writer",
        messages=[UserMessage(text="Write.")],
        max_steps=2,
        parent=RunParent(kind="workflow", id=workflow.run_id, part="research"),
    )
    answer = ModelResponse(message=AssistantMessage(text='{"text": "words"}'), raw_text='{"text": "words"}')
    done.decision(index=0, position=1, response=answer, runtime=None, sampling=Sampling(), idempotent={})
    done.finished("done", output={"text": "words"})
    workflow.step_finished("research", "done", output={"text": "words"})
    workflow.step_started("check", "tool")
    workflow.finished("failed", error="check failed")

    batch = store.begin_batch(target="tests.agents:Writer", items=2, options={"concurrency": 2})
    item = store.begin_run(
        agent="tests.agents:Writer",
        messages=[],
        max_steps=1,
        parent=RunParent(kind="batch", id=batch.id, part="item-1"),
    )
    item.finished("failed", error="RuntimeError: no")
    store.batch_status(batch.id, "stopped")
    store.db.execute("UPDATE tool_calls SET depends_on = '[\"c1\"]' WHERE id = 'c2'")
    return {
        "paused": paused.run_id,
        "done": done.run_id,
        "item": item.run_id,
        "workflow": workflow.run_id,
        "batch": batch.id,
    }


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The recorded database, checkpointed into its one file (each example copies it)."""
    path = tmp_path_factory.mktemp("template") / "runs.db"
    store = Store(path)
    ids = record_runs(store)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return path, ids


def template_rows(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every fuzzed table's rows, as column -> value."""
    with closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        return {table: [dict(row) for row in conn.execute(f"SELECT * FROM {table}")] for table in TABLES}


@contextmanager
def fresh_folder() -> Iterator[Path]:
    """A new folder for one example's database: nothing of another example's (a WAL log) is beside it."""
    folder = Path(tempfile.mkdtemp(prefix="agentkit-fuzz-store-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- values ------------------------------------------------------------------------------------


class NotUtf8:
    """Marks text that is not UTF-8: written as `CAST(blob AS TEXT)`, which sqlite3 cannot decode."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"NotUtf8({self.data!r})"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def nested(depth: int, opening: str, closing: str) -> str:
    return opening * depth + closing * depth


SPECIAL = st.sampled_from(
    [
        "",
        "{",
        "null",
        "[]",
        "{}",
        '"text"',
        "1" * 5000,  # past Python's digits limit for int()
        "1e999",
        "-1e999",
        "NaN",
        nested(100, "[", "]"),
        nested(300, "[", "]"),
        nested(5000, "[", "]"),
        nested(100_000, "[", "]"),
        '{"a":' * 3000 + "1" + "}" * 3000,
        '{"role": "user"}',
        '{"role": "assistant", "tool_calls": [{"name": 5}]}',
        '{"role": "tool", "call_id": "c1", "name": "add", "content": {}}',
        '[{"name": "add"}]',
        '[{"name": "a b", "description": "", "parameters": {}}]',
        '{"max_steps": -1}',
        '{"max_steps": "many"}',
        '{"temperature": "hot"}',
        "running",
        "done",
        "awaiting_approval",
        "waiting",
        "c1",
        "c2",
        "item-1",
        2**63 - 1,
        -(2**63),
        float("inf"),
        float("-inf"),
        1e300,
        -1,
        True,
    ]
)

VALUES = (
    st.none()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30)
    | st.builds(NotUtf8, st.sampled_from([b"\xff", b"\xc3(", b"ok\xfe"]))
    | JSON.map(json.dumps)
    | SPECIAL
)


def perturbed(data: st.DataObject, value: Any) -> Any:
    """`value` (JSON text) with one part replaced or removed: JSON of nearly the right shape."""
    try:
        document = json.loads(value)
    except (TypeError, ValueError, RecursionError):
        return data.draw(VALUES, label="value")
    node, path = document, []
    while isinstance(node, dict | list) and node and data.draw(st.booleans(), label="deeper"):
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))), label="key")
        path.append(key)
        node = node[key]
    replacement = data.draw(JSON | st.just(...), label="replacement")
    if not path:
        return json.dumps(replacement if replacement is not ... else None)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if replacement is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return json.dumps(document)


def write_cell(conn: sqlite3.Connection, table: str, column: str, rowid: int, value: Any) -> None:
    """Overwrite one cell, as someone editing the file by hand would (a constraint may refuse it)."""
    mark, stored = ("CAST(? AS TEXT)", value.data) if isinstance(value, NotUtf8) else ("?", value)
    with suppress(sqlite3.IntegrityError):  # NOT NULL, UNIQUE: SQLite refuses the edit itself
        conn.execute(f'UPDATE {table} SET "{column}" = {mark} WHERE rowid = ?', [stored, rowid])


def cell(conn: sqlite3.Connection, table: str, column: str, rowid: int) -> Any:
    """A cell's value (None when an earlier edit left text sqlite3 cannot decode)."""
    try:
        return conn.execute(f'SELECT "{column}" FROM {table} WHERE rowid = ?', [rowid]).fetchone()[0]
    except sqlite3.OperationalError:
        return None


def damage(data: st.DataObject, path: Path) -> None:
    """One to three edits: a cell overwritten (or its JSON perturbed), or a row deleted."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for _ in range(data.draw(st.integers(1, 3), label="edits")):
            table = data.draw(st.sampled_from(TABLES), label="table")
            rowids = [r for (r,) in conn.execute(f"SELECT rowid FROM {table}")]
            if not rowids:
                continue
            rowid = data.draw(st.sampled_from(rowids), label="row")
            columns = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]
            how = data.draw(st.sampled_from(["value", "perturb", "delete"]), label="how")
            if how == "delete":
                conn.execute(f"DELETE FROM {table} WHERE rowid = ?", [rowid])
                continue
            column = data.draw(st.sampled_from(columns), label="column")
            if how == "perturb":
                value = perturbed(data, cell(conn, table, column, rowid))
            else:
                value = data.draw(VALUES, label="value")
            write_cell(conn, table, column, rowid, value)


# --- the readers -------------------------------------------------------------------------------


def export(stored: Any) -> list[str]:
    """What `agentkit runs export` writes."""
    return [json.dumps(item, ensure_ascii=False) for item in stored.records()]


def read_everything(path: Path, ids: dict[str, str]) -> None:
    """Every reader on the file; each may raise only `StoreError` (any `AgentkitError`), within 5 s."""
    store = only_agentkit_errors(Store, path)
    if store is None:
        return
    try:
        listed = only_agentkit_errors(store.runs, limit=1000) or []
        run_ids = {ids["paused"], ids["done"], ids["item"], "nope", *(r.id for r in listed)}
        for run_id in sorted(run_ids):
            read_run(store, run_id)
        only_agentkit_errors(store.runs, status="done", parent=ids["workflow"])
        only_agentkit_errors(store.search, "words")
        only_agentkit_errors(store.workflow_runs)
        only_agentkit_errors(store.workflow_run, ids["workflow"])
        only_agentkit_errors(store.batches)
        only_agentkit_errors(store.batch, ids["batch"])
        only_agentkit_errors(store.batch_items, ids["batch"])
        only_agentkit_errors(store.batch_items, ids["batch"], ["item-1"])
    finally:
        store.close()


def read_run(store: Store, run_id: str) -> None:
    only_agentkit_errors(store.run, run_id)
    only_agentkit_errors(store.approvals, run_id)
    stored = only_agentkit_errors(store.load, run_id)
    if stored is not None:
        assert isinstance(stored.awaiting, tuple)
        only_agentkit_errors(export, stored)


# --- the targets -------------------------------------------------------------------------------


@fuzz_settings()
@given(data=st.data())
def test_rows_changed_by_hand_are_read_or_refused_with_a_store_error(
    template: tuple[Path, dict[str, str]], data: st.DataObject
) -> None:
    source, ids = template
    with fresh_folder() as folder:
        path = folder / "runs.db"
        shutil.copyfile(source, path)
        damage(data, path)
        read_everything(path, ids)


@fuzz_settings(max(10, EXAMPLES // 5))
@given(data=st.data(), applied=st.integers(1, len(MIGRATIONS._migrations)))
def test_rows_written_by_older_migrations_are_read_or_refused_with_a_store_error(
    template: tuple[Path, dict[str, str]], data: st.DataObject, applied: int
) -> None:
    """A database stopped after `applied` migrations, holding the template's rows in that
    schema's columns (some replaced), is upgraded by `Store` and read."""
    source, ids = template
    with fresh_folder() as folder:
        path = folder / "runs.db"
        older_database(path, applied, template_rows(source), data)
        read_everything(path, ids)


def older_database(path: Path, applied: int, rows: dict[str, list[dict[str, Any]]], data: st.DataObject) -> None:
    """The first `applied` migrations, and `rows` in the columns that schema has (some values replaced)."""
    old = sqlite_utils.Database(path)
    names = [m.name for m in MIGRATIONS._migrations]
    MIGRATIONS.apply(old, stop_before=names[applied] if applied < len(names) else None)
    with closing(old.conn):
        for table, table_rows in rows.items():
            if table == "_sqlite_migrations" or not old[table].exists():
                continue
            columns = {c.name for c in old[table].columns}
            for row in table_rows:
                kept = {k: v for k, v in row.items() if k in columns}
                if data.draw(st.booleans(), label=f"change a {table} row"):
                    column = data.draw(st.sampled_from(sorted(kept)), label="column")
                    kept[column] = data.draw(VALUES, label="value")
                insert(old.conn, table, kept)
        old.conn.commit()


def insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
    names = ", ".join(f'"{name}"' for name in row)
    marks = ", ".join("CAST(? AS TEXT)" if isinstance(v, NotUtf8) else "?" for v in row.values())
    values = [v.data if isinstance(v, NotUtf8) else v for v in row.values()]
    with suppress(sqlite3.IntegrityError):  # a changed key or a NULL in a NOT NULL column: SQLite refuses the row
        conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", values)


UNEXPECTED = "this looks like a bug"


@fuzz_settings(max(5, EXAMPLES // 20))
@given(data=st.data())
def test_agentkit_runs_list_show_and_export_read_changed_rows_or_say_why_in_one_line(
    template: tuple[Path, dict[str, str]], data: st.DataObject
) -> None:
    source, ids = template
    run_id = data.draw(st.sampled_from([ids["paused"], ids["done"], ids["item"]]), label="run")
    with fresh_folder() as folder:
        path = folder / "runs.db"
        shutil.copyfile(source, path)
        damage(data, path)
        runner = CliRunner(env={"COLUMNS": "200", "AGENTKIT_CACHE": str(folder / "cache")})
        for args in (["runs", "list"], ["runs", "show", run_id], ["runs", "export", run_id], ["workflow", "list"]):
            with time_box(10):
                result = runner.invoke(app, [*args, "--db", str(path)], catch_exceptions=False)
            assert result.exit_code in (0, 1), (args, result.output)
            assert UNEXPECTED not in result.stderr, (args, result.stderr)
            if result.exit_code == 1:
                assert result.stderr.startswith("error: "), (args, result.stderr)


# --- crashes the fuzzers found, kept as regular tests ---------------------------------------------
# Each was a bare Python error (one a silently wrong value) before the readers checked
# their columns: found by the first target run against the readers as they were, the
# last two by the CLI's target.

CRASHES = [
    # (table, column, value, the reader, what it used to raise)
    ("runs", "tools", "{", "runs", "json.JSONDecodeError"),
    ("runs", "tools", "1.5", "runs", "TypeError: 'float' object is not iterable"),
    ("runs", "budget", "5", "runs", "TypeError: Budget() argument after ** must be a mapping"),
    ("runs", "created", "yesterday", "runs", "TypeError in `agentkit runs list` (printing.ago)"),
    ("steps", "sampling", '{"temperature": "hot"}', "load", "pydantic.ValidationError"),
    ("steps", "prompt_tokens", "many", "load", "TypeError: unsupported operand type(s) for +: 'int' and 'str'"),
    ("messages", "body", '{"role": "nobody"}', "load", "pydantic.ValidationError"),
    ("tool_results", "content", b"\x80", "load", "UnicodeDecodeError"),
    ("tool_calls", "depends_on", "5", "load", "TypeError: 'int' object is not iterable"),
    ("approvals", "approved", "yes", "load", "no error: read as approved, bool('yes')"),
    ("workflow_runs", "inputs", "{", "workflow_run", "json.JSONDecodeError"),
    ("batches", "options", "[", "batches", "json.JSONDecodeError"),
    ("runs", "updated", 1e300, "runs", "OverflowError in `agentkit runs list`: timestamp out of range"),
    ("runs", "output", nested(900, "[", "]"), "load", "ValueError in `agentkit runs export`: serialization depth"),
]


@pytest.mark.parametrize(("table", "column", "value", "reader", "was"), CRASHES)
def test_a_cell_that_crashed_a_reader_is_a_store_error_naming_the_run_file_table_and_column(
    template: tuple[Path, dict[str, str]], table: str, column: str, value: Any, reader: str, was: str
) -> None:
    source, ids = template
    with fresh_folder() as folder:
        path = folder / "runs.db"
        shutil.copyfile(source, path)
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute(f'UPDATE {table} SET "{column}" = ?', [value])
        store = Store(path)
        read: dict[str, Callable[[], Any]] = {
            "runs": store.runs,
            "load": lambda: store.load(ids["paused"]),
            "workflow_run": lambda: store.workflow_run(ids["workflow"]),
            "batches": store.batches,
        }
        with pytest.raises(StoreError) as refused:
            read[reader]()
        store.close()
    message = str(refused.value)
    assert f"in {path}: column {column} of table {table} cannot be read: " in message, was
    assert message.split(" in ")[0].split()[-1] in {*ids.values()}  # the run (batch, workflow run) by its id
    assert isinstance(refused.value.__cause__, Unreadable)


def test_text_sqlite_cannot_decode_is_a_store_error_naming_the_file_and_the_column(
    template: tuple[Path, dict[str, str]],
) -> None:
    source, ids = template
    with fresh_folder() as folder:
        path = folder / "runs.db"
        shutil.copyfile(source, path)
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute("UPDATE runs SET agent = CAST(? AS TEXT)", [b"\xff"])
        store = Store(path)
        with pytest.raises(StoreError, match=rf"could not read the list of runs from {path}: .*column 'agent'"):
            store.runs()  # was sqlite3.OperationalError
        with pytest.raises(StoreError, match=rf"could not read run {ids['done']} from {path}"):
            store.load(ids["done"])
        store.close()


def test_agentkit_runs_list_says_which_run_cannot_be_read_in_one_line(template: tuple[Path, dict[str, str]]) -> None:
    source, ids = template
    with fresh_folder() as folder:
        path = folder / "runs.db"
        shutil.copyfile(source, path)
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute("UPDATE runs SET updated = 1e300 WHERE id = ?", [ids["done"]])
        runner = CliRunner(env={"COLUMNS": "200", "AGENTKIT_CACHE": str(folder / "cache")})
        listed = runner.invoke(app, ["runs", "list", "--db", str(path)], catch_exceptions=False)
    assert listed.exit_code == 1
    assert listed.stderr == (
        f"error: run {ids['done']} in {path}: column updated of table runs cannot be read: a time (unix seconds "
        "from 1970 to the year 3000) expected, found a real number 1e+300; the row was changed by hand or is "
        "damaged: fix or delete it\n"
    )
