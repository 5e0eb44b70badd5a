"""`agentkit runs merge OUT IN...`: shards of real runs merged into one store, what it prints, how it fails."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from agentkit import Agent, AssistantMessage, ToolCall
from agentkit.cli import app
from agentkit.events import RunParent
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store
from tests.support.ledger import CALLS, add


@pytest.fixture(autouse=True)
def _clear() -> None:
    CALLS.clear()


def agentkit(tmp_path: Path, *args: str) -> Result:
    """`agentkit ARGS`, without the `cli` fixture's `--db`: merge takes its store as OUT."""
    runner = CliRunner(env={"COLUMNS": "200", "AGENTKIT_CACHE": str(tmp_path / "cache")})
    return runner.invoke(app, list(args), catch_exceptions=False)


def turns(n: int) -> list[Any]:
    return [AssistantMessage(tool_calls=[ToolCall(name="add", arguments={"a": n, "b": n}, id="c1")]), f"{2 * n}."]


def shard(path: Path, runs: int) -> list[str]:
    """A store with `runs` finished agent runs (each 9 rows: run, 2 steps, 4 messages, a call, its result)."""
    store = Store(path)
    ids = [Agent(tools=[add], runtime=ScriptedRuntime(turns(n)), store=store).run("Add.").run_id for n in range(runs)]
    store.close()
    return ids


def test_shards_merge_into_a_new_store_and_again_change_nothing(tmp_path: Path) -> None:
    one, two, out = tmp_path / "shard-1.db", tmp_path / "shard-2.db", tmp_path / "out.db"
    ids = shard(one, 2) + shard(two, 1)
    result = agentkit(tmp_path, "runs", "merge", str(out), str(one), str(two))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{one}: 2 runs added, 0 updated; 18 rows copied\n"
        f"{two}: 1 run added, 0 updated; 9 rows copied\n"
        f"total: 3 runs added, 0 updated; 27 rows copied into {out}\n"
    )
    listed = agentkit(tmp_path, "runs", "list", "--db", str(out))
    assert listed.exit_code == 0, listed.output
    assert sorted(re.findall(r"[0-9A-Z]{26}", listed.stdout)) == sorted(ids)

    again = agentkit(tmp_path, "runs", "merge", str(out), str(two))
    assert again.exit_code == 0, again.output
    assert again.stdout == (
        f"{two}: 0 runs added, 0 updated; 0 rows copied\ntotal: 0 runs added, 0 updated; 0 rows copied into {out}\n"
    )


def test_workflow_runs_and_batches_are_counted_when_there_are_some(tmp_path: Path) -> None:
    source, out = tmp_path / "shard.db", tmp_path / "out.db"
    store = Store(source)
    workflow = store.begin_workflow(name="research", file=None, inputs={})
    agent = Agent(tools=[add], runtime=ScriptedRuntime(turns(1)), store=store)
    asyncio.run(agent.arun("Add.", parent=RunParent(kind="workflow", id=workflow.run_id, part="research")))
    workflow.finished("done")
    store.db.execute(
        "INSERT INTO batches (id, target, input, output, items, options, status, created, updated) "
        "VALUES ('01JBATCH0000000000000000AA', 'agentkit.agent:Agent', NULL, NULL, 0, '{}', 'done', 1.0, 2.0)"
    )
    store.close()
    result = agentkit(tmp_path, "runs", "merge", str(out), str(source))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        f"{source}: 1 run added, 0 updated; 1 workflow run added, 0 updated; 1 batch added, 0 updated; 11 rows copied"
    )


def test_a_source_that_cannot_be_merged_is_one_error_line_and_nothing_is_merged(tmp_path: Path) -> None:
    good, newer, out = tmp_path / "good.db", tmp_path / "newer.db", tmp_path / "out.db"
    shard(good, 1)
    shard(newer, 1)
    with closing(sqlite3.connect(newer)) as conn, conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
            "VALUES ('agentkit', '0099_from_the_future', '2030-01-01 00:00:00+00:00')"
        )
    before = hashlib.sha256(good.read_bytes()).hexdigest()
    for source, message in [
        (newer, f"error: {newer} was written by a newer agentkit"),
        (tmp_path / "missing.db", f"error: {tmp_path / 'missing.db'}: no such file to merge"),
        (out, f"error: {out} is the store being merged into"),
    ]:
        result = agentkit(tmp_path, "runs", "merge", str(out), str(good), str(source))
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        assert result.stderr.startswith(message), result.stderr
        assert len(result.stderr.splitlines()) == 1
        assert not out.exists()  # the sources are checked before OUT is created
    assert hashlib.sha256(good.read_bytes()).hexdigest() == before


def test_merge_needs_a_source(tmp_path: Path) -> None:
    result = agentkit(tmp_path, "runs", "merge", str(tmp_path / "out.db"))
    assert result.exit_code == 2
    assert "Missing argument 'IN...'" in result.stderr
