"""`agentkit runs show` on plans: each call numbered as the model numbered it, its edges and its outcome."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agentkit import Agent, AwaitingApproval, tool
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store
from tests.support.tools import capital, temperature, warmer
from tests.unit.cli.conftest import Cli


@tool(requires_approval=True)
def book(city: str) -> str:
    """Book a trip to a city."""
    return f"booked {city}"


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def ref(text: str) -> dict[str, str]:
    return {"$ref": text}


def shown(cli: Cli, run_id: str) -> list[str]:
    result = cli("runs", "show", run_id)
    assert result.exit_code == 0, result.output
    return [line.rstrip() for line in result.stdout.splitlines()]


def plan_lines(out: list[str]) -> list[str]:
    """The lines of the first plan, from its header to its last call, without the position and role."""
    start = next(i for i, line in enumerate(out) if re.fullmatch(r"\d+ assistant +plan of \d+ calls?", line))
    calls = [line for line in out[start + 1 :] if re.match(r" +\$\d+ ", line)]
    end = out.index(calls[-1], start)
    return [line.strip() for line in out[start : end + 1]]


def test_a_plan_shows_its_calls_their_edges_and_outcomes_with_a_failed_dependency(cli: Cli, db: Path) -> None:
    plan = {
        "tool_calls": [
            call("capital", country="France"),
            call("capital", country="Atlantis"),  # fails: KeyError
            call("temperature", city=ref("$1.city")),
            call("temperature", city=ref("$2.city")),  # its dependency failed: not run
            call("warmer", a=ref("$3"), b=ref("$4")),  # so is this one's
        ]
    }
    agent = Agent(
        tools=[capital, temperature, warmer],
        runtime=ScriptedRuntime([plan, "Paris is 18 °C."]),
        store=Store(db),
        planning=True,
    )
    out = shown(cli, agent.run("How warm are the capitals of France and Atlantis?").run_id)
    rows = [re.split(r" {2,}", line) for line in plan_lines(out)]
    assert rows[0] == ["1 assistant plan of 5 calls"]
    assert rows[1:4] == [
        ["$1", 'capital(country="France")', "#call_0_0", "ok"],
        [
            "$2",
            'capital(country="Atlantis")',
            "#call_0_1",
            "error: ToolExecutionError: tool 'capital' raised KeyError: 'Atlantis'",
        ],
        ["$3", "temperature(city=$1.city)", "#call_0_2", "after $1", "ok"],
    ]
    assert rows[4][:4] == ["$4", "temperature(city=$2.city)", "#call_0_3", "after $2"]
    assert rows[4][4].startswith("error: not run: it uses $2.city, and call $2 (capital) failed")
    assert rows[5][:4] == ["$5", "warmer(a=$3, b=$4)", "#call_0_4", "after $3, $4"]
    assert rows[5][4].startswith("error: not run: it uses $4, and call $4 (temperature) failed")
    # The conversation goes on as before: each result, then the next step and the answer.
    conversation = [re.sub(" {2,}", "  ", line) for line in out[out.index("") + 1 :]]
    assert conversation[-5:] == [
        "4 tool  temperature #call_0_2 → 18.0",
        "5 tool  temperature #call_0_3 → error: not run: it uses $2.city, and call $2 (capital) failed",
        "6 tool  warmer #call_0_4 → error: not run: it uses $4, and call $4 (temperature) failed",
        "  step  1 · runtime scripted · model scripted · dialect none · stop · tokens 0 in, 0 out",
        "7 assistant Paris is 18 °C.",
    ]


def test_calls_of_a_paused_plan_show_as_not_run_yet(cli: Cli, db: Path) -> None:
    plan = {"tool_calls": [call("capital", country="Norway"), call("book", city=ref("$1.city"))]}
    agent = Agent(tools=[capital, book], runtime=ScriptedRuntime([plan]), store=Store(db), planning=True)
    with pytest.raises(AwaitingApproval) as paused:
        agent.run("Book a trip to the capital of Norway.")
    rows = [re.split(r" {2,}", line) for line in plan_lines(shown(cli, paused.value.run_id))]
    assert rows == [
        ["1 assistant plan of 2 calls"],
        ["$1", 'capital(country="Norway")', "#call_0_0", "ok"],
        ["$2", "book(city=$1.city)", "#call_0_1", "after $1", "not run yet (awaiting approval)"],
    ]


def test_a_step_outside_plan_mode_shows_its_calls_on_one_line(cli: Cli, db: Path) -> None:
    turn = {"tool_calls": [call("capital", country="France"), call("capital", country="Norway")]}
    agent = Agent(tools=[capital], runtime=ScriptedRuntime([turn, "Paris and Oslo."]), store=Store(db))
    out = shown(cli, agent.run("Capitals?").run_id)
    assert not any("plan of" in line for line in out)
    assert '1 assistant → capital(country="France") #call_0_0 → capital(country="Norway") #call_0_1' in out
