"""The run store: write-ahead recording, statuses, resume, migrations, bad files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pydantic
import pytest

from agentkit import (
    Agent,
    AssistantMessage,
    MaxStepsExceeded,
    ModelRequest,
    ModelResponse,
    RunFailed,
    Sampling,
    ToolCall,
    ToolResult,
    tool,
)
from agentkit.errors import StoreError
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import MIGRATIONS, Store, default_path
from tests.support.ledger import CALLS, add, charge


def two_adds(first: str = "c1", second: str = "c2") -> AssistantMessage:
    return AssistantMessage(
        tool_calls=[
            ToolCall(name="add", arguments={"a": 1, "b": 2}, id=first),
            ToolCall(name="add", arguments={"a": 3, "b": 4}, id=second),
        ]
    )


TURNS: list[Any] = [two_adds(), "3 and 7."]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "runs.db")


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


def rows(store: Store, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return list(store.db.execute(sql, list(params)).fetchall())


# --- recording ------------------------------------------------------------------------------


def test_a_run_is_stored_whole(store: Store) -> None:
    result = Agent(tools=[add], runtime=ScriptedRuntime(TURNS), store=store, instructions="Be brief.").run("Add.")
    record = store.run(result.run_id)
    assert (record.status, record.steps, record.output, record.agent) == ("done", 2, "3 and 7.", "agentkit.agent:Agent")
    assert len(result.run_id) == 26  # a ULID
    loaded = store.load(result.run_id)
    assert loaded.messages == result.messages
    assert [s.response.message for s in loaded.steps] == [s.message for s in result.steps]
    assert [s.results for s in loaded.steps] == [s.tool_results for s in result.steps]
    assert rows(store, "SELECT id, name, arguments FROM tool_calls ORDER BY position") == [
        ("c1", "add", '{"a":1,"b":2}'),
        ("c2", "add", '{"a":3,"b":4}'),
    ]
    assert rows(store, "SELECT call_id, content, is_error FROM tool_results ORDER BY call_id") == [
        ("c1", "3", 0),
        ("c2", "7", 0),
    ]
    step = dict(
        zip(
            ["runtime", "model", "dialect", "finish", "sampling"],
            rows(store, "SELECT runtime, model, dialect, finish_reason, sampling FROM steps WHERE idx = 0")[0],
            strict=True,
        )
    )
    assert (step["runtime"], step["model"], step["finish"]) == ("scripted", "scripted", "tool_calls")
    assert json.loads(step["sampling"])["max_tokens"] == 512


def test_the_decision_is_committed_before_any_tool_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    seen: list[Any] = []

    @tool
    def look() -> str:
        """Look at the database from another connection."""
        with sqlite3.connect(path) as other:
            seen.extend(other.execute("SELECT name FROM tool_calls").fetchall())
            seen.extend(other.execute("SELECT COUNT(*) FROM tool_results").fetchall())
        return "seen"

    turns = [AssistantMessage(tool_calls=[ToolCall(name="look", id="l1")]), "done"]
    Agent(tools=[look], runtime=ScriptedRuntime(turns), store=Store(path)).run("Look.")
    assert seen == [("look",), (0,)]


def test_each_result_is_committed_as_its_tool_finishes(store: Store) -> None:
    counts: list[int] = []

    @tool
    async def first() -> str:
        """Finishes at once."""
        return "first"

    @tool
    async def second() -> str:
        """Finishes after `first` was recorded."""
        import asyncio

        await asyncio.sleep(0.2)
        counts.append(rows(store, "SELECT COUNT(*) FROM tool_results")[0][0])
        return "second"

    turns = [AssistantMessage(tool_calls=[ToolCall(name="second", id="s"), ToolCall(name="first", id="f")]), "ok"]
    Agent(tools=[first, second], runtime=ScriptedRuntime(turns), store=store).run("Go.")
    assert counts == [1]


class Answer(pydantic.BaseModel):
    total: int


def test_statuses_on_every_exit(store: Store) -> None:
    done = Agent(runtime=ScriptedRuntime(['{"total": 3}']), store=store, output_type=Answer).run("x")
    assert store.run(done.run_id).status == "done"
    assert store.run(done.run_id).output == {"total": 3}

    with pytest.raises(MaxStepsExceeded) as budget:
        Agent(tools=[add], runtime=ScriptedRuntime([two_adds()]), store=store, max_steps=1).run("x")
    assert budget.value.partial is not None
    assert store.run(budget.value.partial.run_id).status == "budget_exhausted"

    class Broken(ScriptedRuntime):
        async def generate(self, request: ModelRequest) -> ModelResponse:
            raise OSError("the server went away")

    with pytest.raises(RunFailed) as failed:
        Agent(runtime=Broken([]), store=store).run("x")
    assert failed.value.partial is not None
    record = store.run(failed.value.partial.run_id)
    assert record.status == "failed"
    assert "the server went away" in (record.error or "")

    async def stop_early() -> str:
        agent = Agent(tools=[add], runtime=ScriptedRuntime(TURNS), store=store)
        async for event in agent.stream("x"):
            return type(event).__name__
        return ""

    import asyncio

    assert asyncio.run(stop_early()) == "ToolCallReady"  # the first call, complete in the stream
    assert [r.status for r in store.runs(limit=1)] == ["cancelled"]


def test_search_lists_and_a_missing_run(store: Store) -> None:
    result = Agent(tools=[add], runtime=ScriptedRuntime(TURNS), store=store).run("Please add the apricots.")
    assert [hit[:2] for hit in store.search("apricots")] == [(result.run_id, 0)]
    assert store.search("nothing_like_this") == []
    assert [r.id for r in store.runs()] == [result.run_id]
    assert store.runs(status="failed") == []
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.run("nope")
    with pytest.raises(StoreError, match="cannot search"):
        store.search('"unbalanced')


# --- resume ---------------------------------------------------------------------------------


def kill_after_decision(store: Store, turns: list[Any], tools: list[Any]) -> str:
    """A run stopped as if killed right after its first decision was committed
    (the subprocess tests in test_store_faults.py kill real processes)."""

    class Killed(BaseException):
        pass

    agent = Agent(tools=tools, runtime=ScriptedRuntime(turns), store=store)
    original = agent.executor.run_all

    async def die(*args: Any, **kwargs: Any) -> Any:
        raise Killed

    agent.executor.run_all = die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        agent.run("Add.")
    agent.executor.run_all = original  # type: ignore[method-assign]
    run_id = store.runs(limit=1)[0].id
    # A killed process writes nothing more: put the status back as it would have stayed.
    store.db.execute("UPDATE runs SET status = 'running', error = NULL WHERE id = ?", [run_id])
    return run_id


def test_resume_runs_only_the_unfinished_calls(store: Store) -> None:
    run_id = kill_after_decision(store, TURNS, [add])
    # As if `c1` finished before the kill: its result is stored.
    store.recorder(run_id).tool_result(ToolResult(call_id="c1", name="add", content=3))
    assert CALLS == []
    resumed = Agent(tools=[add], runtime=ScriptedRuntime(TURNS[1:]), store=store).resume(run_id)
    assert CALLS == ["add 3 4"]  # c1 was not run again
    uninterrupted = Agent(tools=[add], runtime=ScriptedRuntime(TURNS), store=store).run("Add.")
    assert resumed.messages == uninterrupted.messages
    assert resumed.output == "3 and 7."
    assert store.run(run_id).status == "done"
    assert store.load(run_id).messages == resumed.messages
    with pytest.raises(StoreError, match="is done"):
        Agent(tools=[add], runtime=ScriptedRuntime([]), store=store).resume(run_id)


def test_a_started_non_idempotent_call_needs_the_users_word(store: Store) -> None:
    turns: list[Any] = [AssistantMessage(tool_calls=[ToolCall(name="charge", arguments={"amount": 5}, id="p1")]), "ok"]
    run_id = kill_after_decision(store, turns, [charge])
    store.recorder(run_id).tool_started(ToolCall(name="charge", arguments={"amount": 5}, id="p1"))
    agent = Agent(tools=[charge], runtime=ScriptedRuntime(turns[1:]), store=store)
    with pytest.raises(StoreError, match=r"charge \(p1\).*rerun_started"):
        agent.resume(run_id)
    assert store.run(run_id).status == "running"  # refused: nothing changed
    assert CALLS == []
    assert agent.resume(run_id, rerun_started=True).output == "ok"
    assert CALLS == ["charge 5"]


def test_resume_needs_a_store() -> None:
    with pytest.raises(StoreError, match="no store"):
        Agent(runtime=ScriptedRuntime([])).resume("x")


# --- call ids and failing writes -----------------------------------------------------------


def add_call(a: int, b: int, id: str | None = None) -> dict[str, Any]:
    """A scripted turn calling `add`; without `id`, ScriptedRuntime numbers it by its place."""
    call: dict[str, Any] = {"name": "add", "arguments": {"a": a, "b": b}}
    return {"tool_calls": [call if id is None else {**call, "id": id}]}


def test_a_call_id_repeated_across_turns_gives_the_same_messages_with_or_without_a_store(store: Store) -> None:
    turns: list[Any] = [
        {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "c1"}] * 2},  # twice in one turn
        add_call(3, 4, id="c1"),  # and again in the next
        "Done.",
    ]
    stored = Agent(tools=[add], runtime=ScriptedRuntime(turns), store=store).run("Add.")
    unstored = Agent(tools=[add], runtime=ScriptedRuntime(turns)).run("Add.")
    assert stored.messages == unstored.messages
    assert [(c.id, c.runtime_id) for c in stored.tool_calls] == [("c1", None), ("c1@0", "c1"), ("c1@1", "c1")]
    results = [m for m in stored.messages if isinstance(m, ToolResult)]
    assert [(r.call_id, r.content) for r in results] == [("c1", 3), ("c1@0", 3), ("c1@1", 7)]
    assert store.load(stored.run_id).messages == stored.messages
    assert rows(store, "SELECT id FROM tool_calls ORDER BY position") == [("c1",), ("c1@0",), ("c1@1",)]


def test_a_resumed_run_whose_script_numbers_its_calls_afresh_completes(store: Store) -> None:
    """The case from docs/store.md: resume with a ScriptedRuntime given the remaining turns.

    ScriptedRuntime names calls by their place in its script (`call_0_0`...), so
    the resumed run's first call has the id of the run's first call.
    """

    class Killed(BaseException):
        """Stands in for kill -9."""

    @tool
    def fragile(a: int, b: int) -> int:
        """Add, unless it is the second time.

        Args:
            a: The first.
            b: The second.
        """
        CALLS.append(f"fragile {a} {b}")
        if len(CALLS) == 2:
            raise Killed
        return a + b

    turns: list[Any] = [
        {"tool_calls": [{"name": "fragile", "arguments": {"a": 1, "b": 2}}]},
        {"tool_calls": [{"name": "fragile", "arguments": {"a": 3, "b": 4}}]},
    ]
    with pytest.raises(Killed):
        Agent(tools=[fragile], runtime=ScriptedRuntime(turns), store=store).run("Add twice, then once more.")
    run_id = store.runs(limit=1)[0].id
    remaining: list[Any] = [{"tool_calls": [{"name": "fragile", "arguments": {"a": 5, "b": 6}}]}, "3, 7 and 11."]
    resumed = Agent(tools=[fragile], runtime=ScriptedRuntime(remaining), store=store).resume(run_id)
    assert resumed.output == "3, 7 and 11."
    assert CALLS == ["fragile 1 2", "fragile 3 4", "fragile 3 4", "fragile 5 6"]
    assert [(c.id, c.runtime_id) for c in resumed.tool_calls] == [
        ("call_0_0", None),
        ("call_1_0", None),
        ("call_0_0@2", "call_0_0"),  # the resumed script's first call, renamed
    ]
    assert store.run(run_id).status == "done"
    assert store.load(run_id).messages == resumed.messages


def test_a_store_write_that_fails_is_a_store_error_naming_the_run_and_the_step(store: Store) -> None:
    # A real SQLite failure, inside the real file: the result of step 0's tool cannot be written.
    store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON tool_results BEGIN SELECT RAISE(ABORT, 'no room'); END")
    with pytest.raises(StoreError) as failed:
        Agent(tools=[add], runtime=ScriptedRuntime([add_call(1, 2, id="c1"), "3."]), store=store).run("Add.")
    run_id = store.runs(limit=1)[0].id
    message = str(failed.value)
    for named in (f"run {run_id}", "step 0", "add (c1)", "no room"):
        assert named in message
    assert isinstance(failed.value.__cause__, sqlite3.Error)
    # What was committed before stays readable, on the error and in the file.
    partial = failed.value.partial
    assert partial is not None
    assert partial.run_id == run_id
    assert [m.role for m in partial.messages] == ["user", "assistant"]
    loaded = store.load(run_id)
    assert loaded.messages == partial.messages
    assert [s.pending for s in loaded.steps] == [(ToolCall(name="add", arguments={"a": 1, "b": 2}, id="c1"),)]
    record = store.run(run_id)
    assert record.status == "failed"
    assert "StoreError" in (record.error or "")


def test_a_refused_write_is_never_a_raw_sqlite_error(store: Store) -> None:
    recorder = store.begin_run(agent="tests:Agent", messages=[], max_steps=2)
    turn = ModelResponse(message=AssistantMessage(tool_calls=[ToolCall(name="add", id="c1")]))
    recorder.decision(index=0, position=0, response=turn, runtime=None, sampling=Sampling(), idempotent={})
    with pytest.raises(StoreError, match=rf"step 1's model turn of run {recorder.run_id}.*UNIQUE constraint") as dup:
        recorder.decision(index=1, position=2, response=turn, runtime=None, sampling=Sampling(), idempotent={})
    assert isinstance(dup.value.__cause__, sqlite3.IntegrityError)
    assert len(store.load(recorder.run_id).steps) == 1  # the refused write left nothing half-done


# --- the file -------------------------------------------------------------------------------


def test_migrations_are_recorded_and_safe_to_run_twice(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    first = Store(path)
    names = [m.name for m in MIGRATIONS._migrations]
    assert first.schema_steps() == names
    second = Store(path)
    assert second.schema_steps() == names
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        count = conn.execute("SELECT COUNT(*) FROM _sqlite_migrations").fetchone()[0]
    assert count == len(names)


def test_a_database_from_the_previous_step_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    import sqlite_utils

    old = sqlite_utils.Database(path)
    MIGRATIONS.apply(old, stop_before=MIGRATIONS._migrations[-1].name)
    old.execute(
        "INSERT INTO runs (id, agent, status, created, updated, max_steps, tools) "
        "VALUES ('r1', 'a:B', 'done', 0, 0, 3, '[]')"
    )
    old.execute(
        "INSERT INTO messages (id, run_id, position, role, text, body, created) "
        "VALUES ('m1', 'r1', 0, 'user', 'old words', '{\"role\":\"user\",\"text\":\"old words\"}', 0)"
    )
    old.conn.commit()
    old.close()
    store = Store(path)
    assert store.schema_steps() == [m.name for m in MIGRATIONS._migrations]
    assert store.run("r1").status == "done"
    assert store.run("r1").name == "B"  # runs stored before the name was kept are named by their class
    assert [hit[0] for hit in store.search("words")] == ["r1"]  # rows from before the upgrade are searchable


def test_a_workflow_link_from_before_parents_becomes_the_runs_parent(tmp_path: Path) -> None:
    import sqlite_utils

    from agentkit.events import RunParent

    path = tmp_path / "runs.db"
    old = sqlite_utils.Database(path)
    MIGRATIONS.apply(old, stop_before="0005_parents_budgets_approvals")
    old.execute("INSERT INTO workflow_runs VALUES ('w1', 'flow', NULL, 'done', '{}', NULL, NULL, 0, 0)")
    old.execute(
        "INSERT INTO runs (id, agent, status, created, updated, max_steps, tools, workflow_run, workflow_step) "
        "VALUES ('r1', 'a:B', 'done', 0, 0, 3, '[]', 'w1', 'forecasts[0].forecast')"
    )
    old.conn.commit()
    old.close()
    store = Store(path)
    record = store.run("r1")
    assert record.parent == RunParent(kind="workflow", id="w1", part="forecasts[0].forecast")
    assert (record.workflow_run, record.workflow_step) == ("w1", "forecasts[0].forecast")
    assert [r.id for r in store.runs(workflow_run="w1")] == ["r1"]
    assert record.budget is None


def test_a_database_from_a_newer_agentkit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('agentkit', '9999_future', 'x')"
        )
    with pytest.raises(StoreError, match=r"newer agentkit.*9999_future"):
        Store(path)


@pytest.mark.parametrize("content", [b"not a database at all\n" * 10, b"\x00\x01\x02" * 100])
def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]


def test_a_corrupt_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="cannot"):
        Store(path)
    assert path.read_bytes() == before


def test_the_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTKIT_DB", str(tmp_path / "here.db"))
    assert default_path() == tmp_path / "here.db"
    assert Store().path == tmp_path / "here.db"
    monkeypatch.delenv("AGENTKIT_DB")
    assert default_path().name == "runs.db"
    assert "agentkit" in str(default_path())


def test_an_agent_takes_a_path(tmp_path: Path) -> None:
    result = Agent(runtime=ScriptedRuntime(["hi"]), store=tmp_path / "a.db").run("x")
    assert Store(tmp_path / "a.db").run(result.run_id).output == "hi"


def test_a_developer_message_is_stored_and_read_back_as_one(store: Store) -> None:
    from agentkit import SystemMessage, UserMessage

    prompt = [SystemMessage(text="Be brief.", role="developer"), UserMessage(text="Add.")]
    result = Agent(tools=[add], runtime=ScriptedRuntime(TURNS), store=store).run(prompt)
    assert store.load(result.run_id).messages[0] == SystemMessage(text="Be brief.", role="developer")


def test_a_steps_grammar_digest_is_stored_loaded_and_exported(tmp_path: Path) -> None:
    from agentkit import AssistantMessage, ModelResponse
    from agentkit.runtimes import FunctionRuntime

    def constrained(request: Any, index: int) -> ModelResponse:
        return ModelResponse(message=AssistantMessage(text="ok"), grammar_digest=f"digest-{index}")

    store = Store(tmp_path / "runs.db")
    result = Agent(runtime=FunctionRuntime(constrained), store=store).run("x")
    stored = store.load(result.run_id)
    assert stored.steps[0].response.grammar_digest == "digest-0"
    (step,) = [r for r in stored.records() if r["type"] == "step"]
    assert step["grammar_hash"] == "digest-0"
    json.dumps(list(stored.records()))  # every record is JSON
