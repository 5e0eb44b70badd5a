"""Merging stores: shards of real runs copied whole into one store, idempotently, later states winning,
sources left as they were, and sources that cannot be merged refused."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from agentkit import Agent, AssistantMessage, AwaitingApproval, ToolCall, ToolResult, tool
from agentkit.errors import StoreError
from agentkit.events import RunParent
from agentkit.runtime import ModelResponse, Sampling
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import MIGRATIONS, Store
from agentkit.store.merge import MergeCounts, merge
from tests.support.ledger import CALLS, add

SENT: list[str] = []


@tool(requires_approval=True, idempotent=False)
def send(to: str) -> str:
    """Send a message.

    Args:
        to: Who gets it.
    """
    SENT.append(to)
    return f"sent to {to}"


@pytest.fixture(autouse=True)
def _clear() -> None:
    CALLS.clear()
    SENT.clear()


def adds(a: int, b: int, answer: str) -> list[Any]:
    return [AssistantMessage(tool_calls=[ToolCall(name="add", arguments={"a": a, "b": b}, id="c1")]), answer]


SEND = AssistantMessage(tool_calls=[ToolCall(name="send", arguments={"to": "bob"}, id="s1")])


def paused_run(store: Store) -> str:
    """A run that waits for approval of its `send` call."""
    with pytest.raises(AwaitingApproval) as paused:
        Agent(tools=[send], runtime=ScriptedRuntime([SEND]), store=store).run("Send it to bob.")
    return paused.value.run_id


def resume(store: Store, run_id: str) -> None:
    Agent(tools=[send], runtime=ScriptedRuntime(["Sent to bob."]), store=store).resume(
        run_id, approvals={"s1": True}, decided_by="alice"
    )


def added(store: Store, a: int, b: int, answer: str) -> str:
    """A finished run that adds `a` and `b` with the tool, then answers; its id."""
    return Agent(tools=[add], runtime=ScriptedRuntime(adds(a, b, answer)), store=store).run("Add.").run_id


def shard_of_runs(path: Path) -> list[str]:
    """Two finished agent runs and one paused for approval; their run ids."""
    store = Store(path)
    ids = [
        added(store, 1, 2, "Three, said the aardvark."),
        added(store, 3, 4, "Seven, said the bison."),
        paused_run(store),
    ]
    store.close()
    return ids


def shard_of_a_workflow_and_a_batch(path: Path) -> list[str]:
    """A workflow run whose step is an agent run, and a batch whose item is one; the agent runs' ids."""
    store = Store(path)
    workflow = store.begin_workflow(name="research", file="flow.yaml", inputs={"topic": "tides"})
    workflow.step_started("research", "agent")
    agent = Agent(tools=[add], runtime=ScriptedRuntime(adds(5, 6, "Eleven, said the cormorant.")), store=store)
    step = asyncio.run(agent.arun("Add.", parent=RunParent(kind="workflow", id=workflow.run_id, part="research")))
    workflow.step_finished("research", "done", output=step.output)
    workflow.finished("done", output={"research": step.output})
    batch = "01JBATCH0000000000000000AA"
    store.db.execute(
        "INSERT INTO batches (id, target, input, output, items, options, status, created, updated) "
        "VALUES (?, 'agentkit.agent:Agent', '/in.jsonl', '/out.jsonl', 1, '{}', 'done', 1.0, 2.0)",
        [batch],
    )
    answers = Agent(runtime=ScriptedRuntime(["Twelve, said the dolphin."]), store=store)
    item = asyncio.run(answers.arun("Twelve?", parent=RunParent(kind="batch", id=batch, part="item-1")))
    store.close()
    return [step.run_id, item.run_id]


def tables(path: Path) -> list[str]:
    """The store's own tables: not sqlite-utils' record of migrations, not the full-text index."""
    with closing(sqlite3.connect(path)) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return [n for n in names if not n.startswith(("messages_fts", "_sqlite_migrations", "sqlite_"))]


def contents(path: Path) -> dict[str, Counter[tuple[Any, ...]]]:
    """Every row of every table of the store at `path` (read-only)."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        return {name: Counter(conn.execute(f"SELECT * FROM {name}").fetchall()) for name in tables(path)}


def fts_is_intact(path: Path) -> None:
    """FTS5's check that the index of `messages` matches its rows (raises if not)."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def shards(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    one, two = tmp_path / "shard-1.db", tmp_path / "shard-2.db"
    return one, two, shard_of_runs(one) + shard_of_a_workflow_and_a_batch(two)


# --- merging ---------------------------------------------------------------------------------


def test_every_row_of_every_shard_is_merged(tmp_path: Path, shards: tuple[Path, Path, list[str]]) -> None:
    one, two, run_ids = shards
    out = Store(tmp_path / "out.db")
    report = merge(out, [one, two])

    assert {"runs", "steps", "messages", "tool_calls", "tool_results", "approvals"} <= set(tables(one))
    assert {"workflow_runs", "workflow_steps", "batches"} <= set(tables(one))
    merged, first, second = contents(out.path), contents(one), contents(two)
    assert merged == {name: first[name] + second[name] for name in merged}
    assert all(merged[name] for name in merged)  # the shards have rows in every table
    stores = Store(one), Store(two)
    for run_id, source in zip(run_ids, [stores[0]] * 3 + [stores[1]] * 2, strict=True):
        assert out.load(run_id) == source.load(run_id)
    workflow_id = next(iter(merged["workflow_runs"]))[0]
    assert out.workflow_run(workflow_id) == stores[1].workflow_run(workflow_id)
    fts_is_intact(out.path)

    assert [s.path for s in report.sources] == [one, two]
    assert report.into == out.path
    assert report.sources[0].counts == MergeCounts(runs_added=3, rows=sum(first[t].total() for t in first))
    assert report.sources[1].counts == MergeCounts(
        runs_added=2, workflow_runs_added=1, batches_added=1, rows=sum(second[t].total() for t in second)
    )
    assert report.total.runs_added == 5
    assert report.total.rows == sum(merged[t].total() for t in merged)


def test_search_finds_merged_messages(tmp_path: Path, shards: tuple[Path, Path, list[str]]) -> None:
    one, two, run_ids = shards
    out = Store(tmp_path / "out.db")
    Agent(runtime=ScriptedRuntime(["The eel was here first."]), store=out).run("Who?")
    merge(out, [one, two])
    assert [hit[0] for hit in out.search("aardvark")] == [run_ids[0]]
    assert [hit[0] for hit in out.search("dolphin")] == [run_ids[4]]
    assert len(out.search("eel OR bison OR cormorant")) == 3


def test_merging_again_changes_nothing(tmp_path: Path, shards: tuple[Path, Path, list[str]]) -> None:
    one, two, _ = shards
    out = Store(tmp_path / "out.db")
    merge(out, [one, two])
    before = contents(out.path)
    report = merge(out, [two, one, one])
    assert report.total == MergeCounts()
    assert contents(out.path) == before
    fts_is_intact(out.path)
    assert len(out.search("aardvark")) == 1


def test_a_target_given_as_a_path_is_created(tmp_path: Path, shards: tuple[Path, Path, list[str]]) -> None:
    one, _, run_ids = shards
    report = merge(tmp_path / "new" / "out.db", [str(one)])
    assert report.into == tmp_path / "new" / "out.db"
    assert {r.id for r in Store(report.into).runs()} == set(run_ids[:3])


# --- later states ----------------------------------------------------------------------------


def test_a_shard_merged_again_brings_the_later_state_of_its_runs(tmp_path: Path) -> None:
    shard = Store(tmp_path / "shard.db")
    run_id = paused_run(shard)
    out = Store(tmp_path / "out.db")
    merge(out, [shard.path])
    assert out.run(run_id).status == "awaiting_approval"
    assert out.approvals(run_id)["s1"].approved is None

    resume(shard, run_id)
    report = merge(out, [shard.path])
    assert report.total.runs_added == 0
    assert report.total.runs_updated == 1
    assert out.run(run_id).status == "done"
    assert out.load(run_id) == shard.load(run_id)
    assert (out.approvals(run_id)["s1"].approved, out.approvals(run_id)["s1"].decided_by) == (True, "alice")
    assert contents(out.path) == contents(shard.path)
    assert SENT == ["bob"]
    fts_is_intact(out.path)


def test_a_running_run_merged_again_when_done(tmp_path: Path) -> None:
    shard = Store(tmp_path / "shard.db")
    recorder = shard.begin_run(agent="agentkit.agent:Agent", messages=[], max_steps=3)
    call = ToolCall(name="add", arguments={"a": 1, "b": 1}, id="c1")
    recorder.decision(
        index=0,
        position=0,
        response=ModelResponse(message=AssistantMessage(tool_calls=[call])),
        runtime=None,
        sampling=Sampling(),
        idempotent={"add": False},
    )
    recorder.tool_started(call)
    out = Store(tmp_path / "out.db")
    merge(out, [shard.path])
    assert out.run(recorder.run_id).status == "running"
    assert [c.id for c in out.load(recorder.run_id).steps[0].started] == ["c1"]

    recorder.tool_result(ToolResult(call_id="c1", name="add", content=2))
    recorder.finished("done", output="Two, said the gecko.")
    report = merge(out, [shard.path])
    assert (report.total.runs_added, report.total.runs_updated) == (0, 1)
    assert out.run(recorder.run_id).status == "done"
    assert out.load(recorder.run_id) == shard.load(recorder.run_id)


def test_an_older_copy_does_not_undo_a_newer_run(tmp_path: Path) -> None:
    shard = Store(tmp_path / "shard.db")
    run_id = paused_run(shard)
    old = tmp_path / "old.db"
    with closing(sqlite3.connect(old)) as copy:
        shard.db.conn.backup(copy)
    resume(shard, run_id)
    out = Store(tmp_path / "out.db")
    merge(out, [shard.path])
    report = merge(out, [old])
    assert report.total.runs_updated == 0
    assert report.total.rows == 0  # not the approval's old "waiting", not a call's old start
    assert out.run(run_id) == shard.run(run_id)
    assert out.load(run_id) == shard.load(run_id)
    assert out.approvals(run_id) == shard.approvals(run_id)


def test_a_decision_made_after_a_merge_survives_the_shard_merged_again(tmp_path: Path) -> None:
    shard = Store(tmp_path / "shard.db")
    run_id = paused_run(shard)
    out = Store(tmp_path / "out.db")
    merge(out, [shard.path])
    (waiting,) = [c for c, a in out.approvals(run_id).items() if a.status == "waiting"]
    out.decide(run_id, waiting, True, by="ada")  # decided in the merged store, not in the shard
    merge(out, [shard.path])
    assert out.approvals(run_id)[waiting].status == "approved"
    assert out.approvals(run_id)[waiting].decided_by == "ada"


def test_a_run_continued_in_two_copies_is_refused_whole(tmp_path: Path) -> None:
    shard = Store(tmp_path / "shard.db")
    run_id = paused_run(shard)
    fork = tmp_path / "fork.db"
    with closing(sqlite3.connect(fork)) as copy:
        shard.db.conn.backup(copy)
    resume(shard, run_id)
    forked = Store(fork)
    resume(forked, run_id)  # the same run goes on in both: new messages with other ids at the same places
    extra = Agent(runtime=ScriptedRuntime(["Only in the fork."]), store=forked).run("Hi.").run_id
    forked.close()
    out = Store(tmp_path / "out.db")
    merge(out, [shard.path])
    before = contents(out.path)
    with pytest.raises(StoreError, match=r"could not merge .*fork\.db.*UNIQUE.*continued in both.*nothing of it"):
        merge(out, [fork])
    assert contents(out.path) == before
    with pytest.raises(StoreError, match="no run"):
        out.run(extra)


# --- sources ---------------------------------------------------------------------------------


def test_sources_are_left_as_they_were(tmp_path: Path, shards: tuple[Path, Path, list[str]]) -> None:
    one, two, _ = shards
    wal = {path: path.with_name(path.name + "-wal") for path in (one, two)}
    assert not any(w.exists() for w in wal.values())  # every change is in the main file
    before = {path: (digest(path), path.stat().st_mtime_ns) for path in (one, two)}
    merge(Store(tmp_path / "out.db"), [one, two])
    assert {path: (digest(path), path.stat().st_mtime_ns) for path in (one, two)} == before
    # A read-only reader may leave SQLite's WAL files, but writes nothing into them.
    assert all(w.stat().st_size == 0 for w in wal.values() if w.exists())


def test_a_source_in_use_is_merged_as_committed(tmp_path: Path) -> None:
    shard = Store(tmp_path / "shard.db")
    run_id = added(shard, 1, 2, "Three.")
    # The shard stays open: its last commits are in its -wal file, which the merge reads but leaves.
    wal = shard.path.with_name("shard.db-wal")
    before = (digest(shard.path), digest(wal))
    out = Store(tmp_path / "out.db")
    merge(out, [shard.path])
    assert (digest(shard.path), digest(wal)) == before
    assert out.load(run_id) == shard.load(run_id)


def migrated(path: Path, *, stop_before: str | None = None) -> Path:
    """A database with this agentkit's schema steps (those before `stop_before`)."""
    db = sqlite_utils.Database(path)
    MIGRATIONS.apply(db, stop_before=stop_before)
    db.close()
    return path


def test_a_source_from_a_newer_agentkit_is_refused(tmp_path: Path, shards: tuple[Path, Path, list[str]]) -> None:
    one, two, _ = shards
    with closing(sqlite3.connect(two)) as conn, conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
            "VALUES ('agentkit', '0099_from_the_future', '2030-01-01 00:00:00+00:00')"
        )
    out = Store(tmp_path / "out.db")
    with pytest.raises(StoreError, match=r"shard-2\.db was written by a newer agentkit .*0099_from_the_future"):
        merge(out, [one, two])
    assert out.runs() == []  # every source is checked before the first is merged


def test_a_source_from_an_older_agentkit_is_refused_until_upgraded(tmp_path: Path) -> None:
    last = MIGRATIONS._migrations[-1].name
    old = migrated(tmp_path / "old.db", stop_before=last)
    out = Store(tmp_path / "out.db")
    with pytest.raises(
        StoreError, match=rf"old\.db was written by an older agentkit .*'{last}'.*agentkit runs list --db"
    ):
        merge(out, [old])
    Store(old).close()  # opening it with this agentkit upgrades it
    assert merge(out, [old]).total == MergeCounts()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda path: path, r"missing\.db: no such file"),
        (lambda path: (path.write_text("runs,steps\n", encoding="utf-8"), path)[1], r"missing\.db is not an SQLite"),
        (lambda path: (path.write_bytes(b""), path)[1], r"missing\.db is not an SQLite"),
        (lambda path: (path.mkdir(), path)[1], r"missing\.db is a directory"),
        (lambda path: (sqlite_utils.Database(path)["t"].insert({"a": 1}), path)[1], "not an agentkit store"),
    ],
    ids=["missing", "text", "empty", "directory", "other-sqlite"],
)
def test_a_source_that_is_not_a_store_is_refused(tmp_path: Path, make: Any, match: str) -> None:
    source = make(tmp_path / "missing.db")
    out = Store(tmp_path / "out.db")
    with pytest.raises(StoreError, match=match):
        merge(out, [source])


def test_the_target_is_refused_as_a_source(tmp_path: Path, shards: tuple[Path, Path, list[str]]) -> None:
    one, _, _ = shards
    out = Store(tmp_path / "out.db")
    link = tmp_path / "link.db"
    link.symlink_to(out.path)
    (tmp_path / "sub").mkdir()
    for source in (out.path, tmp_path / "sub" / ".." / "out.db", link):
        with pytest.raises(StoreError, match="is the store being merged into"):
            merge(out, [one, source])
    assert out.runs() == []
    copy = tmp_path / "copy.db"
    with closing(sqlite3.connect(copy)) as conn:
        out.db.conn.backup(conn)
    assert merge(out, [copy]).total == MergeCounts()  # a copy is another file
