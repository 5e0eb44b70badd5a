"""Plans in the store: each call of a plan keeps the calls it depends on; older files migrate."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import sqlite_utils

from agentkit import Agent
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import MIGRATIONS, Store
from tests.support.tools import capital, temperature, warmer

PLAN: dict[str, Any] = {
    "tool_calls": [
        {"name": "capital", "arguments": {"country": "France"}},
        {"name": "capital", "arguments": {"country": "Norway"}},
        {"name": "temperature", "arguments": {"city": {"$ref": "$1.city"}}},
        {"name": "temperature", "arguments": {"city": {"$ref": "$2.city"}}},
        {"name": "warmer", "arguments": {"a": {"$ref": "$3"}, "b": {"$ref": "$4"}}},
    ]
}


def plan_run(store: Store) -> str:
    runtime = ScriptedRuntime([PLAN, "Paris."])
    agent = Agent(tools=[capital, temperature, warmer], runtime=runtime, store=store, planning=True)
    return agent.run("Which capital is warmer, France's or Norway's?").run_id


def stored_dependencies(path: Path, run_id: str) -> dict[str, Any]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT id, depends_on FROM tool_calls WHERE run_id = ? ORDER BY position", [run_id])
        return {call_id: json.loads(ids) if ids is not None else None for call_id, ids in rows}


def test_a_plans_dependencies_are_stored_and_loaded(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = plan_run(Store(path))
    assert stored_dependencies(path, run_id) == {
        "call_0_0": [],
        "call_0_1": [],
        "call_0_2": ["call_0_0"],
        "call_0_3": ["call_0_1"],
        "call_0_4": ["call_0_2", "call_0_3"],
    }
    plan, answer = Store(path).load(run_id).steps  # a new connection reads what was committed
    assert (plan.plan, answer.plan) == (True, False)
    assert plan.depends_on == {
        "call_0_0": (),
        "call_0_1": (),
        "call_0_2": ("call_0_0",),
        "call_0_3": ("call_0_1",),
        "call_0_4": ("call_0_2", "call_0_3"),
    }
    assert list(plan.depends_on) == [c.id for c in plan.response.message.tool_calls]  # in the turn's order
    assert answer.depends_on == {}
    assert [r.content for r in plan.results] == [{"city": "Paris"}, {"city": "Oslo"}, 18.0, -3.0, "a"]


def test_an_exported_plan_step_has_its_dependencies(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    plan, answer = [r for r in store.load(plan_run(store)).records() if r["type"] == "step"]
    assert plan["depends_on"]["call_0_4"] == ["call_0_2", "call_0_3"]
    assert answer["depends_on"] == {}


def test_calls_outside_plan_mode_store_no_dependencies(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = Store(path)
    agent = Agent(tools=[capital, temperature, warmer], runtime=ScriptedRuntime([PLAN, "Paris."]), store=store)
    run_id = agent.run("Which capital is warmer?").run_id  # the same calls, not a plan: references stay as they are
    assert set(stored_dependencies(path, run_id).values()) == {None}
    step = store.load(run_id).steps[0]
    assert not step.plan
    assert step.depends_on == {}


def test_a_database_from_before_plans_migrates_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    old = sqlite_utils.Database(path)
    MIGRATIONS.apply(old, stop_before="0006_plan_dependencies")
    statements = [
        "INSERT INTO runs (id, agent, name, status, created, updated, max_steps, tools) "
        "VALUES ('r1', 'a:B', 'B', 'done', 0, 0, 3, '[]')",
        "INSERT INTO steps (id, run_id, idx, finish_reason, metadata, created) "
        "VALUES ('s0', 'r1', 0, 'tool_calls', '{}', 0)",
        "INSERT INTO messages (id, run_id, position, step_id, role, text, body, created) VALUES "
        "('m0', 'r1', 0, NULL, 'user', 'Capital?', '{\"role\":\"user\",\"text\":\"Capital?\"}', 0), "
        "('m1', 'r1', 1, 's0', 'assistant', 'capital', '{\"role\":\"assistant\",\"text\":\"\",\"tool_calls\":"
        '[{"name":"capital","arguments":{"country":"France"},"id":"c1"}]}\', 0), '
        "('m2', 'r1', 2, NULL, 'tool', 'Paris', "
        '\'{"role":"tool","call_id":"c1","name":"capital","content":"Paris"}\', 0)',
        "INSERT INTO tool_calls (run_id, id, step_id, position, name, arguments, idempotent) "
        "VALUES ('r1', 'c1', 's0', 2, 'capital', '{\"country\":\"France\"}', 1)",
        "INSERT INTO tool_results (run_id, call_id, name, content, is_error, created) "
        "VALUES ('r1', 'c1', 'capital', '\"Paris\"', 0, 0)",
    ]
    for sql in statements:
        old.execute(sql)
    old.conn.commit()
    old.close()

    store = Store(path)
    assert "0006_plan_dependencies" in store.schema_steps()
    (step,) = store.load("r1").steps
    assert [r.content for r in step.results] == ["Paris"]
    assert (step.plan, step.depends_on) == (False, {})
    assert stored_dependencies(path, "r1") == {"c1": None}
    run_id = plan_run(store)  # the migrated file records plans
    assert store.load(run_id).steps[0].depends_on["call_0_4"] == ("call_0_2", "call_0_3")
