"""The `replay:RUN_ID` runtime: a run stored in a real SQLite file, played back turn by turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentkit import Agent, AssistantMessage, ModelRequest, RuntimeUnavailable, ToolCall, UserMessage
from agentkit.errors import ScriptError, UnknownName
from agentkit.replay import ReplayRuntime
from agentkit.runtimes import ScriptedRuntime, check_uri, resolve
from agentkit.store import Store
from tests.support.tools import add

SCRIPT = [AssistantMessage(tool_calls=[ToolCall(name="add", arguments={"a": 2, "b": 3}, id="c1")]), "2 + 3 = 5."]


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, str]:
    """A database file holding one run a scripted agent made: a call to `add`, then the answer."""
    db = tmp_path / "runs.db"
    store = Store(db)
    try:
        result = Agent(tools=[add], runtime=ScriptedRuntime(SCRIPT), store=store).run("What is 2 + 3?")
    finally:
        store.close()
    assert result.output == "2 + 3 = 5."
    return db, result.run_id


def test_a_replay_uri_plays_the_stored_turns_in_order(recorded: tuple[Path, str]) -> None:
    db, run_id = recorded
    uri = f"replay:{run_id}?db={db}"
    check_uri(uri)
    runtime = resolve(uri)
    assert isinstance(runtime, ReplayRuntime)
    assert runtime.info.uri == uri
    assert runtime.remaining == 2
    again = Agent(tools=[add], runtime=runtime).run("What is 2 + 3?")
    assert again.output == "2 + 3 = 5."
    assert [(c.name, c.arguments) for c in again.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert runtime.remaining == 0


def test_the_store_comes_from_agentkit_db(recorded: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    db, run_id = recorded
    monkeypatch.setenv("AGENTKIT_DB", str(db))
    assert Agent(tools=[add], runtime=f"replay:{run_id}").run("What is 2 + 3?").output == "2 + 3 = 5."


def test_a_run_played_out_says_so(recorded: tuple[Path, str]) -> None:
    db, run_id = recorded
    runtime = resolve(f"replay:{run_id}?db={db}")
    request = ModelRequest(messages=[UserMessage(text="x")], tools=[add.spec])
    asyncio.run(runtime.generate(request))
    asyncio.run(runtime.generate(request))
    with pytest.raises(ScriptError, match=f"run {run_id} has 2 stored turns and all were played"):
        asyncio.run(runtime.generate(request))


def test_an_unknown_run_is_refused_with_where_it_looked(recorded: tuple[Path, str]) -> None:
    db, _ = recorded
    with pytest.raises(RuntimeUnavailable, match=r"no run '01NOPE' in .*runs\.db \(`agentkit runs list`"):
        resolve(f"replay:01NOPE?db={db}")


def test_a_missing_database_is_refused_and_not_created(tmp_path: Path) -> None:
    db = tmp_path / "typo.db"
    with pytest.raises(RuntimeUnavailable, match=r"no run database at .*typo\.db"):
        resolve(f"replay:01ABC?db={db}")
    assert not db.exists()


@pytest.mark.parametrize(
    ("uri", "message"),
    [("replay:01ABC?store=x.db", "unknown option store"), ("replay:?db=x.db", "names no run")],
)
def test_malformed_replay_uris(uri: str, message: str) -> None:
    with pytest.raises(RuntimeUnavailable, match=message):
        resolve(uri)


def test_replay_is_a_known_scheme_checked_without_reading_anything(tmp_path: Path) -> None:
    check_uri(f"replay:01ABC?db={tmp_path / 'absent.db'}")  # the form only: no file is opened
    assert not (tmp_path / "absent.db").exists()
    with pytest.raises(UnknownName):
        check_uri("replays:01ABC")


def test_a_plan_run_is_replayed_as_plans_and_its_backward_references_count_as_valid(tmp_path: Path) -> None:
    from agentkit.replay import replay

    plan = {
        "tool_calls": [
            {"name": "add", "arguments": {"a": 2, "b": 3}},
            {"name": "add", "arguments": {"a": {"$ref": "$1"}, "b": 4}},
        ]
    }
    store = Store(tmp_path / "runs.db")
    run = Agent(tools=[add], runtime=ScriptedRuntime([plan, "9."]), store=store, planning=True).run("2 + 3 + 4?")
    forward = {"tool_calls": [{"name": "add", "arguments": {"a": {"$ref": "$2"}, "b": 4}}, plan["tool_calls"][0]]}
    for turns, valid in (([plan, "9."], 2), ([forward, "9."], 1)):
        other = ScriptedRuntime(turns)
        report = asyncio.run(replay(store, run.run_id, other))
        assert [r.plan for r in other.requests] == [True, True]  # the other model is asked to plan too
        assert (report.steps[0].calls, report.steps[0].valid_calls) == (2, valid)
    assert report.steps[1].matches
