"""Batches in Python: `Agent.batch`, what a resumed batch does with each stored run, and the batch's files.

The model is `tests.support.batch_agents`' function (the batch's own logic is
under test, not a model); the store is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agentkit.batch import AgentJob, Batch, Item, ItemResult
from agentkit.batch.files import OutputFile, item_id, read_items
from agentkit.errors import BatchInputError
from agentkit.store import Store
from tests.support.batch_agents import Tally, counts, tally_runtime


@pytest.fixture
def tally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the agent's tool appends each counted item to."""
    path = tmp_path / "tally.txt"
    monkeypatch.setenv("AGENTKIT_TEST_TALLY", str(path))
    monkeypatch.setenv("AGENTKIT_TEST_LATENCY", "0.01")
    return path


def test_results_come_back_in_input_order_and_a_failure_is_a_result(tmp_path: Path, tally: Path) -> None:
    store = Store(tmp_path / "runs.db")
    prompts = [f"item {i}" for i in range(12)]
    prompts[5] = "boom 5"
    results = Tally(store=store).batch(prompts, concurrency=4)
    assert [r.id for r in results] == [str(i) for i in range(12)]
    assert [r.output for r in results if r.ok] == [f"done: {p}" for p in prompts if not p.startswith("boom")]
    failed = results[5]
    assert failed.status == "failed"
    assert "the model fell over on 'boom 5'" in (failed.error or "")
    assert failed.run_id is not None
    assert store.run(failed.run_id).status == "failed"
    assert all(r.tokens == 50 for r in results if r.ok)  # two turns of 20 + 5
    # Each item is a run of its own, a child of the batch.
    batch = store.batches(limit=1)[0]
    assert batch.status == "done"
    assert batch.items == 12
    assert batch.input is None
    linked = store.batch_items(batch.id)
    assert {i: r.run_id for i, r in linked.items()} == {r.id: r.run_id for r in results}
    assert counts(tally) == {p: 1 for p in prompts if not p.startswith("boom")}


def test_without_a_store_the_batch_runs_and_records_nothing(tally: Path) -> None:
    results = Tally().batch(["a", "b", "c"], concurrency=2)
    assert [r.output for r in results] == ["done: a", "done: b", "done: c"]
    assert all(r.run_id is not None for r in results)  # the runs' own ids, not stored
    with pytest.raises(ValueError, match="no store to resume batch"):
        Tally().batch(["a"], batch_id="01ABC")


def test_max_failures_stops_starting_items(tmp_path: Path, tally: Path) -> None:
    store = Store(tmp_path / "runs.db")
    prompts = ["boom 0", "boom 1", "boom 2"] + [f"item {i}" for i in range(3, 40)]
    results = Tally(store=store).batch(prompts, concurrency=1, max_failures=2)
    assert [r.status for r in results] == ["failed", "failed"]
    assert store.batches(limit=1)[0].status == "stopped"
    assert not tally.exists()  # nothing after the second failure started


def test_a_cancelled_batch_resumes_its_interrupted_runs_and_skips_finished_ones(
    tmp_path: Path, tally: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTKIT_TEST_LATENCY", "0.05")
    asyncio.run(cancel_then_resume(tmp_path, tally))


async def cancel_then_resume(tmp_path: Path, tally: Path) -> None:
    store = Store(tmp_path / "runs.db")
    agent = Tally(store=store)
    items = [Item(id=f"q{i}", value=f"item {i}", index=i) for i in range(24)]
    batch_id = store.begin_batch(target="tests.support.batch_agents:Tally", items=len(items)).id
    first = Batch(AgentJob([agent]), items, batch_id=batch_id, concurrency=6)
    seen: list[ItemResult] = []
    eight = asyncio.Event()

    def finished(result: ItemResult) -> None:
        seen.append(result)
        if len(seen) == 8:
            eight.set()

    task = asyncio.create_task(first.run(finished))
    await eight.wait()
    task.cancel()  # as Ctrl-C does: the runs in flight are recorded as cancelled
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = store.batch_items(batch_id)
    interrupted = {i for i, r in stored.items() if r.status == "cancelled"}
    assert interrupted, "the cancel came while items were running"
    finished = {i for i, r in stored.items() if r.status == "done"}
    assert len(finished) >= 8

    again = Batch(AgentJob([agent]), items, batch_id=batch_id, concurrency=6)
    earlier, todo = again.plan()
    assert {r.id for r in earlier} == finished
    assert all(r.earlier for r in earlier)
    assert {i.id for i, previous in todo if previous is not None} == interrupted
    outcome = await again.run()
    assert [r.id for r in outcome.results] == [i.id for i in items]
    assert outcome.left == 0
    assert {r.id for r in outcome.results if r.resumed} == interrupted
    assert all(r.ok for r in outcome.results)
    # Every run of an interrupted item went on under its own id: one run per item, each tool once.
    runs = store.db.execute("SELECT parent_part, COUNT(*) FROM runs GROUP BY parent_part").fetchall()
    assert sorted(runs) == sorted((i.id, 1) for i in items)
    assert counts(tally) == {f"item {i}": 1 for i in range(24)}


def test_resuming_keeps_failed_items_unless_asked_to_retry(tmp_path: Path, tally: Path) -> None:
    store = Store(tmp_path / "runs.db")
    agent = Tally(store=store)
    items = [Item(id="ok", value="item ok"), Item(id="bad", value="boom", index=1)]
    batch_id = store.begin_batch(target="t", items=2).id
    asyncio.run(Batch(AgentJob([agent]), items, batch_id=batch_id).run())
    kept, todo = Batch(AgentJob([agent]), items, batch_id=batch_id).plan()
    assert [(r.id, r.status) for r in kept] == [("ok", "done"), ("bad", "failed")]
    assert not todo
    kept, todo = Batch(AgentJob([agent]), items, batch_id=batch_id, retry_failed=True).plan()
    assert [r.id for r in kept] == ["ok"]
    assert [(i.id, p) for i, p in todo] == [("bad", None)]


def test_items_with_one_id_are_refused(tmp_path: Path) -> None:
    items = [Item(id="a", value="x"), Item(id="a", value="y", index=1)]
    with pytest.raises(BatchInputError, match="items 1 and 2 have the same id 'a'"):
        Batch(AgentJob([Tally()]), items, batch_id="b")


# --- files ------------------------------------------------------------------------------------


def write_lines(path: Path, *rows: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) and r.startswith("!") else json.dumps(r)).lstrip("!") + "\n"
                            for r in rows), encoding="utf-8")  # fmt: skip
    return path


def test_ids_are_the_id_column_or_a_digest_of_the_row(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", {"id": 7, "prompt": "a"}, {"prompt": "b", "lang": "en"}, "just text")
    items = read_items(path, kind="agent")
    assert [i.value for i in items] == ["a", "b", "just text"]
    assert items[0].id == "7"
    assert items[1].id == item_id({"prompt": "b", "lang": "en"}) == item_id({"lang": "en", "prompt": "b"})
    assert len(items[1].id) == 16
    assert items[2].id == item_id("just text")
    again = read_items(path, kind="agent")
    assert [i.id for i in again] == [i.id for i in items]  # stable across reads


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["!{not json"], r"in.jsonl:1: not JSON"),
        ([{"text": "no prompt"}], r"in.jsonl:1: no 'prompt' text in this row \(name the column with --prompt-key\)"),
        ([[1, 2]], "an item is a JSON object or a string, not list"),
        ([{"id": [1], "prompt": "x"}], "the 'id' column must be a string or an integer"),
        ([{"prompt": "same"}, {"prompt": "same"}], r"items 1 and 2 have the same id .* \(identical rows\?\)"),
        (
            [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}],
            r"items 1 and 2 have the same id 'a'; ids must be unique \(give each item its own id\)$",
        ),
        ([], "has no items"),
    ],
)
def test_bad_input_names_the_file_and_line(tmp_path: Path, rows: list[object], message: str) -> None:
    path = write_lines(tmp_path / "in.jsonl", *rows)
    with pytest.raises(BatchInputError, match=message):
        read_items(path, kind="agent")


def test_a_workflow_item_is_its_row_without_the_id(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", {"id": "x", "topic": "tides", "n": 2})
    assert read_items(path, kind="workflow") == [Item(id="x", value={"topic": "tides", "n": 2}, index=0)]
    with pytest.raises(BatchInputError, match="a workflow's item is a JSON object"):
        read_items(write_lines(tmp_path / "bad.jsonl", "text"), kind="workflow")


def test_parquet_in_and_out(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "a", "prompt": "one"}, {"id": "b", "prompt": "two"}]), source)
    items = read_items(source, kind="agent")
    assert [(i.id, i.value) for i in items] == [("a", "one"), ("b", "two")]
    out = OutputFile(tmp_path / "out.parquet")
    out.open([])
    out.add(ItemResult(id="b", index=1, status="failed", error="RuntimeError: no"))
    out.add(ItemResult(id="a", index=0, status="done", output={"n": 1}, run_id="r", tokens=3, seconds=0.5))
    out.close(["a", "b"])
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [r["id"] for r in rows] == ["a", "b"]
    assert json.loads(rows[0]["output"]) == {"n": 1}
    assert rows[1]["output"] is None
    assert rows[1]["error"] == "RuntimeError: no"
    assert rows[0]["tokens"] == 3


def test_json_lines_out_are_appended_as_they_finish_then_put_in_order(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "torn", "sta', encoding="utf-8")  # what a killed batch can leave
    out = OutputFile(path)
    out.open([ItemResult(id="a", index=0, status="done", output="A", earlier=True)])
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a"]
    out.add(ItemResult(id="c", index=2, status="done", output="C"))
    out.add(ItemResult(id="b", index=1, status="done", output="B"))
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "c", "b"]  # on disk at once
    out.close(["a", "b", "c"])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["a", "b", "c"]
    assert set(lines[0]) == {"id", "status", "output", "run_id", "tokens", "seconds", "error"}
    assert not list(tmp_path.glob("*.partial"))


def test_items_go_to_the_least_busy_runtime_even_one_at_a_time(tmp_path: Path, tally: Path) -> None:
    store = Store(tmp_path / "runs.db")
    first, second = tally_runtime(), tally_runtime()
    agents = [Tally(store=store, runtime=first), Tally(store=store, runtime=second)]
    items = [Item(id=str(i), value=f"item {i}", index=i) for i in range(6)]
    batch_id = store.begin_batch(target="t", items=6).id
    outcome = asyncio.run(Batch(AgentJob(agents), items, batch_id=batch_id, concurrency=1).run())
    assert all(r.ok for r in outcome.results)
    assert (len(first.requests), len(second.requests)) == (6, 6)  # three items of two turns each
    with pytest.raises(ValueError, match="share one store"):
        AgentJob([Tally(store=store), Tally(store=Store(tmp_path / "other.db"))])
