"""Budgets: steps, tokens, seconds and tool calls, with the last affordable turn asked to answer."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydantic
import pytest

from agentkit import Agent, Budget, BudgetExceeded, MaxStepsExceeded, ModelRequest, ModelResponse, ToolResult, tool
from agentkit.runtimes import ScriptedRuntime
from agentkit.runtimes.function import FunctionRuntime
from agentkit.store import Store
from tests.support.tools import add


@tool
def nap(seconds: float) -> str:
    """Sleep.

    Args:
        seconds: How long.
    """
    time.sleep(seconds)
    return "rested"


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def Counting(turns: list[Any]) -> FunctionRuntime:  # reads as a class
    """A script whose every turn costs 100 prompt and 20 completion tokens."""
    script = ScriptedRuntime(turns)

    async def turn(request: ModelRequest, index: int) -> ModelResponse:
        response = await script.generate(request)
        return replace(response, usage=replace(response.usage, prompt_tokens=100, completion_tokens=20))

    return FunctionRuntime(turn)


def test_budget_values_are_checked() -> None:
    with pytest.raises(ValueError, match="max_tokens must be > 0"):
        Budget(max_tokens=0)
    with pytest.raises(ValueError, match="max_steps must be a whole number"):
        Budget(max_steps=2.5)  # type: ignore[arg-type]
    assert Budget(max_tokens=5).over(Budget(max_tokens=9, max_steps=3)) == Budget(max_tokens=5, max_steps=3)


def test_the_last_step_is_asked_for_an_answer_and_a_typed_one_parses() -> None:
    class Sum(pydantic.BaseModel):
        total: int

    runtime = ScriptedRuntime([call("add", a=1, b=2), json.dumps({"total": 3})])
    result = Agent[Sum](tools=[add], output_type=Sum, runtime=runtime, max_steps=2).run("1+2")
    assert result.output == Sum(total=3)
    assert [r.tool_choice for r in runtime.requests] == ["auto", "none"]


def test_a_token_budget_asks_an_answer_before_it_runs_out(tmp_path: Path) -> None:
    # Each turn costs 120 tokens (and its prompt grows): after two, a third and a fourth
    # would not both fit in 500, so the third must answer.
    runtime = Counting([call("add", a=1, b=1), call("add", a=2, b=2), "4"])
    store = Store(tmp_path / "runs.db")
    agent = Agent(tools=[add], runtime=runtime, store=store, sampling=replace(Agent.sampling, max_tokens=20))
    result = agent.run("x", budget=Budget(max_tokens=500))
    assert result.output == "4"
    assert [r.tool_choice for r in runtime.requests] == ["auto", "auto", "none"]
    assert result.usage.total_tokens == 360
    assert store.run(result.run_id).budget == Budget(max_tokens=500, max_steps=10)


def test_a_model_that_calls_on_the_last_turn_exhausts_the_budget(tmp_path: Path) -> None:
    runtime = Counting([call("add", a=1, b=1)] * 4)
    store = Store(tmp_path / "runs.db")
    agent = Agent(tools=[add], runtime=runtime, store=store, sampling=replace(Agent.sampling, max_tokens=20))
    with pytest.raises(BudgetExceeded, match="tokens budget") as spent:
        agent.run("x", budget=Budget(max_tokens=300))
    assert not isinstance(spent.value, MaxStepsExceeded)
    assert (spent.value.budget, spent.value.limit) == ("tokens", 300)
    partial = spent.value.partial
    assert partial is not None
    assert len(partial.steps) == 2
    record = store.run(partial.run_id)
    assert (record.status, record.exhausted) == ("budget_exhausted", "tokens")


def test_a_spent_token_budget_stops_before_asking() -> None:
    runtime = Counting([call("add", a=1, b=1)] * 3)
    with pytest.raises(BudgetExceeded) as spent:
        Agent(tools=[add], runtime=runtime).run("x", budget=Budget(max_tokens=100))
    assert spent.value.budget == "tokens"
    assert len(runtime.requests) == 0  # the prompt alone leaves too little for a reply


def test_a_tool_call_budget_refuses_the_extra_calls_and_asks_an_answer() -> None:
    three = {"tool_calls": [{"name": "add", "arguments": {"a": i, "b": 0}} for i in range(3)]}
    runtime = ScriptedRuntime([three, "done"])
    result = Agent(tools=[add], runtime=runtime, budget=Budget(max_tool_calls=2)).run("x")
    results = [m for m in result.messages if isinstance(m, ToolResult)]
    assert [r.content for r in results[:2]] == [0, 1]
    assert results[2].is_error
    assert "budget of 2 tool calls" in results[2].content
    assert runtime.requests[1].tool_choice == "none"


def test_a_time_budget_cancels_a_running_tool_and_records_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    runtime = ScriptedRuntime([call("nap", seconds=3), "never"])
    started = time.monotonic()
    with pytest.raises(BudgetExceeded) as spent:
        Agent(tools=[nap], runtime=runtime, store=store).run("x", budget=Budget(max_seconds=0.5))
    assert time.monotonic() - started < 2.5
    assert spent.value.budget == "seconds"
    partial = spent.value.partial
    assert partial is not None
    stored = store.load(partial.run_id)
    assert (stored.record.status, stored.record.exhausted) == ("budget_exhausted", "seconds")
    (result,) = stored.steps[0].results  # recorded, not lost
    assert result.is_error
    assert "cancelled: the run's time budget (0.5 s) ran out" in result.content


def test_a_time_budget_cancels_a_slow_model_call() -> None:
    async def slow(request: ModelRequest, index: int) -> str:
        await asyncio.sleep(5)
        return "late"

    with pytest.raises(BudgetExceeded) as spent:
        Agent(runtime=FunctionRuntime(slow)).run("x", budget=Budget(max_seconds=0.3))
    assert spent.value.budget == "seconds"


def test_the_agents_budget_and_the_runs_combine() -> None:
    runtime = ScriptedRuntime([call("add", a=1, b=1), "2"])
    agent = Agent(tools=[add], runtime=runtime, budget=Budget(max_steps=5, max_tool_calls=1))
    agent.run("x", budget=Budget(max_steps=2))
    assert [r.tool_choice for r in runtime.requests] == ["auto", "none"]


def test_a_resumed_run_keeps_the_budget_it_began_with(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    turns = [call("add", a=1, b=1), call("add", a=2, b=2)]

    async def stop_after_first_results() -> str:
        agent = Agent(tools=[add], runtime=ScriptedRuntime(turns), store=store)
        async for event in agent.stream("x", budget=Budget(max_steps=2)):
            if type(event).__name__ == "ToolsFinished":
                return agent.store.runs(limit=1)[0].id if agent.store else ""
        return ""

    run_id = asyncio.run(stop_after_first_results())
    runtime = ScriptedRuntime(["4"])
    result = Agent(tools=[add], runtime=runtime, store=store).resume(run_id)  # the agent's own max_steps is 10
    assert result.output == "4"
    assert [r.tool_choice for r in runtime.requests] == ["none"]  # step 2 of 2: the last, as the run began
