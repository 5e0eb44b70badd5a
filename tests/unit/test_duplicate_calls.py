"""Identical calls in one turn: the first runs, the repeats share its result.

A model decoding freely may write the same call many times in one turn
(same tool, same arguments). The loop runs it once: an idempotent tool's
result is given to every repeat; a tool that is not idempotent is not run
again, each repeat refused with a reason. The turn's metadata (`duplicates`)
and each repeat's `ToolResult.duplicate_of` say so, in the run and in the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentkit import Agent, AwaitingApproval, RunResult, ToolResult, tool
from agentkit.budget import Budget
from agentkit.errors import RunFailed
from agentkit.executor import repeated_calls
from agentkit.messages import ToolCall
from agentkit.observers import RunObserver
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store

LOOKED_UP: list[str] = []
CHARGED: list[int] = []


@tool
def lookup(city: str) -> str:
    """The weather in a city.

    Args:
        city: The city.
    """
    LOOKED_UP.append(city)
    return f"sunny in {city}"


@tool(idempotent=False)
def charge(cents: int) -> str:
    """Charge the card.

    Args:
        cents: How much.
    """
    CHARGED.append(cents)
    return f"charged {cents}"


@tool(requires_approval=True)
def approved_lookup(city: str) -> str:
    """The weather in a city, once someone agrees.

    Args:
        city: The city.
    """
    LOOKED_UP.append(city)
    return f"sunny in {city}"


@pytest.fixture(autouse=True)
def _clear() -> None:
    LOOKED_UP.clear()
    CHARGED.clear()


def turn(*calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "tool_calls": [
            {"name": name, "arguments": arguments, "id": f"c{i}"} for i, (name, arguments) in enumerate(calls)
        ]
    }


def agent(store: Store, turns: list[Any], **kwargs: Any) -> Agent[str]:
    tools = [lookup, charge, approved_lookup]
    return Agent(tools=tools, runtime=ScriptedRuntime(turns), store=store, **kwargs)


def results_of(result: RunResult[Any]) -> list[tuple[str, Any, bool, str | None]]:
    return [(r.call_id, r.content, r.is_error, r.duplicate_of) for r in result.steps[0].tool_results]


def test_200_copies_of_an_idempotent_call_run_the_tool_once_and_share_its_result(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    copies = [("lookup", {"city": "Paris"})] * 200
    result = agent(store, [turn(*copies, ("lookup", {"city": "Oslo"})), "Sunny."]).run("Weather?")
    assert LOOKED_UP == ["Paris", "Oslo"]
    repeats = {f"c{i}": "c0" for i in range(1, 200)}
    assert result.steps[0].response.metadata["duplicates"] == repeats
    assert results_of(result) == [
        ("c0", "sunny in Paris", False, None),
        *[(f"c{i}", "sunny in Paris", False, "c0") for i in range(1, 200)],
        ("c200", "sunny in Oslo", False, None),
    ]
    # Every call has its result in the conversation, as a chat server requires.
    answered = [m.call_id for m in result.messages if isinstance(m, ToolResult)]
    assert answered == [f"c{i}" for i in range(201)]

    stored = store.load(result.run_id)
    assert stored.steps[0].response.metadata["duplicates"] == repeats
    assert [(r.call_id, r.content, r.duplicate_of) for r in stored.steps[0].results][:3] == [
        ("c0", "sunny in Paris", None),
        ("c1", "sunny in Paris", "c0"),
        ("c2", "sunny in Paris", "c0"),
    ]
    kept = [m for m in stored.messages if isinstance(m, ToolResult)]
    assert [m.duplicate_of for m in kept] == [None, *["c0"] * 199, None]
    assert stored.steps[0].tool_times.get("c1") is not None  # recorded like any result, without a start


def test_repeats_of_a_tool_that_is_not_idempotent_are_refused_not_run(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    result = agent(store, [turn(*[("charge", {"cents": 500})] * 3), "Charged once."]).run("Pay.")
    assert CHARGED == [500]
    (first, *repeats) = result.steps[0].tool_results
    assert (first.content, first.duplicate_of) == ("charged 500", None)
    for repeat in repeats:
        assert repeat.is_error
        assert repeat.duplicate_of == "c0"
        assert "repeats call c0 of the same turn" in repeat.content
        assert "'charge' is not idempotent" in repeat.content


def test_only_the_same_tool_with_the_same_arguments_is_a_repeat() -> None:
    calls = [
        ToolCall(name="f", arguments={"a": 1, "b": [1, 2]}, id="x"),
        ToolCall(name="f", arguments={"b": [1, 2], "a": 1}, id="y"),  # the same, in another order
        ToolCall(name="f", arguments={"a": 1.0, "b": [1, 2]}, id="z"),  # 1.0 is not 1
        ToolCall(name="g", arguments={"a": 1, "b": [1, 2]}, id="w"),
        ToolCall(name="f", arguments={"a": True, "b": [1, 2]}, id="v"),
        ToolCall(name="f", arguments={"a": object()}, id="u"),  # not JSON: never a repeat
    ]
    assert repeated_calls(calls) == {"y": "x"}


def test_repeats_do_not_spend_the_tool_call_budget(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    turns = [turn(*[("lookup", {"city": "Paris"})] * 5), turn(("lookup", {"city": "Oslo"})), "Both sunny."]
    result = agent(store, turns, budget=Budget(max_tool_calls=2)).run("Weather?")
    assert result.output == "Both sunny."
    assert LOOKED_UP == ["Paris", "Oslo"]
    assert all(not r.is_error for step in result.steps for r in step.tool_results)


def test_a_run_paused_on_a_repeated_call_resumes_and_runs_it_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    with pytest.raises(AwaitingApproval) as paused:
        agent(store, [turn(*[("approved_lookup", {"city": "Rome"})] * 4)]).run("Weather?")
    # One decision is asked for: the repeats wait with their first call.
    assert [c.id for c in paused.value.calls] == ["c0"]
    assert LOOKED_UP == []

    result = agent(store, ["Sunny in Rome."]).resume(paused.value.run_id, approvals={"c0": True})
    assert result.output == "Sunny in Rome."
    assert LOOKED_UP == ["Rome"]
    assert results_of(result) == [
        ("c0", "sunny in Rome", False, None),
        *[(f"c{i}", "sunny in Rome", False, "c0") for i in range(1, 4)],
    ]
    stored = store.load(result.run_id)
    assert stored.steps[0].response.metadata["duplicates"] == {"c1": "c0", "c2": "c0", "c3": "c0"}
    kept = [m for m in stored.messages if isinstance(m, ToolResult)]
    assert [(m.content, m.duplicate_of) for m in kept] == [("sunny in Rome", None), *[("sunny in Rome", "c0")] * 3]


class _DieAfterTheFirstResult(RunObserver):
    """Stops the run once the first call's result is stored, before its repeats get theirs."""

    def tool_finished(self, run: Any, result: ToolResult, started: float | None) -> None:
        if result.call_id == "c0":
            raise RuntimeError("the process died here")


def test_a_run_stopped_before_the_repeats_were_answered_gives_them_the_stored_result(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    copies = turn(*[("lookup", {"city": "Lima"})] * 3)
    with pytest.raises(RunFailed) as failed:
        agent(store, [copies], observers=[_DieAfterTheFirstResult()]).run("Weather?")
    run_id = failed.value.partial.run_id if failed.value.partial else ""
    assert [r.call_id for r in store.load(run_id).steps[0].results] == ["c0"]
    assert [c.id for c in store.load(run_id).steps[0].pending] == ["c1", "c2"]

    result = agent(store, ["Sunny in Lima."]).resume(run_id)
    assert LOOKED_UP == ["Lima"]  # not run again: the repeats took the stored result
    assert results_of(result) == [
        ("c0", "sunny in Lima", False, None),
        ("c1", "sunny in Lima", False, "c0"),
        ("c2", "sunny in Lima", False, "c0"),
    ]
