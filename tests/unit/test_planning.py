"""Plan mode: references between a turn's calls, the plan's graph, and plans across approvals, kills and budgets.

The model is a `ScriptedRuntime` (the loop's logic is under test, not a model);
the tools are real and write down what they did; stores are real SQLite files;
the run killed mid-plan is a real process killed with SIGKILL; spans come from
OpenTelemetry's in-memory exporter, in a process of their own (a tracer
provider can be set once per process, and tests/unit/tracing sets its own).
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydantic
import pytest

from agentkit import Agent, AwaitingApproval, Budget, ToolCall, ToolResult, tool
from agentkit.planning import (
    PlanError,
    Reference,
    dependencies,
    reference,
    reference_of,
    references,
    substitute,
)
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store

REPO = Path(__file__).resolve().parents[2]
GUARD_SECONDS = 10.0
"""How long a tool waits for a sibling that should run beside it (it never waits
that long unless the executor runs them one after another: the test then fails)."""


def ref(text: str) -> dict[str, str]:
    """An argument that is a reference, as the store keeps it and the JSON dialect writes it."""
    return {"$ref": text}


def calls(*specs: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    """A scripted plan turn: (id, tool, arguments) per call."""
    return {"tool_calls": [{"id": i, "name": name, "arguments": arguments} for i, name, arguments in specs]}


def results(messages: Any) -> dict[str, ToolResult]:
    """The tool results among `messages`, by call id."""
    return {m.call_id: m for m in messages if isinstance(m, ToolResult)}


# --- the references of agentkit.planning ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1", Reference(1)),
        ("$2.city", Reference(2, ("city",))),
        ("$12.items.0.name", Reference(12, ("items", 0, "name"))),
        ("$3.a_b.10", Reference(3, ("a_b", 10))),
        ("$0", None),  # calls count from 1
        ("$01", None),
        ("$1.01", None),  # an index has no leading zero
        ("$1.", None),
        ("$1.a-b", None),  # a field that is not an identifier cannot be referenced
        ("1.city", None),
        (" $1", None),
        ("see $1", None),
    ],
)
def test_reference_of_reads_a_reference_or_nothing(text: str, expected: Reference | None) -> None:
    assert reference_of(text) == expected
    if expected is not None:
        assert expected.text == text
        assert expected.value() == {"$ref": text}


def test_reference_is_only_a_one_key_ref_object_with_a_reference_text() -> None:
    assert reference({"$ref": "$2.city"}) == Reference(2, ("city",))
    assert reference({"$ref": "$2", "note": "x"}) is None
    assert reference({"$ref": 2}) is None
    assert reference({"$ref": "city"}) is None
    assert reference("$2") is None  # a bare string is a value, not a reference
    assert reference(["$ref", "$2"]) is None


def test_references_are_found_however_deep_in_order() -> None:
    arguments = {
        "a": ref("$1"),
        "b": {"inner": [ref("$2.x"), 3, {"deeper": ref("$3.items.0")}]},
        "c": "$4",
        "d": ("t", ref("$5")),
    }
    assert references(arguments) == [Reference(1), Reference(2, ("x",)), Reference(3, ("items", 0)), Reference(5)]
    assert references({"plain": {"a": 1}}) == []


def test_dependencies_are_the_earlier_calls_used_and_only_those() -> None:
    plan = [
        ToolCall(id="a", name="t", arguments={}),
        ToolCall(id="b", name="t", arguments={"x": ref("$1.city")}),
        ToolCall(id="c", name="t", arguments={"x": ref("$2"), "y": [ref("$1")], "z": ref("$2.k")}),
        ToolCall(id="d", name="t", arguments={"self": ref("$4"), "later": ref("$5"), "none": ref("$9")}),
        ToolCall(id="e", name="t", arguments={"x": ref("$3")}),
    ]
    assert dependencies(plan) == {"a": (), "b": ("a",), "c": ("a", "b"), "d": (), "e": ("c",)}


# --- substitute ------------------------------------------------------------------------------


class Unit(enum.Enum):
    C = "C"
    F = "F"


class Place(pydantic.BaseModel):
    city: str
    unit: Unit


@tool
def forecast(city: str, days: int, unit: Unit, place: Place, tags: list[str]) -> str:
    """A forecast (its schema is what the substitution tests check values against).

    Args:
        city: The city.
        days: How many days.
        unit: The unit.
        place: Where, and in which unit.
        tags: Labels.
    """
    return city


PARAMETERS = forecast.spec.parameters
FIRST = ToolCall(id="c1", name="lookup", arguments={})
SECOND = ToolCall(id="c2", name="lookup", arguments={})
LOOKED_UP = {
    "c1": ToolResult(
        call_id="c1",
        name="lookup",
        content={
            "city": "Oslo",
            "days": 3,
            "unit": "C",
            "items": [{"name": "x"}, {"name": "y"}],
            "n": "3",
            "labels": ["a", 2, "c"],
        },
    ),
    "c2": ToolResult(call_id="c2", name="lookup", content="not found", is_error=True),
}


SHORT = repr(LOOKED_UP["c1"].content)[:77] + "..."


def fill(arguments: dict[str, Any], *, parameters: Any = PARAMETERS) -> dict[str, Any]:
    """The arguments of a plan's third call (of four) after `substitute`, the first two calls having run."""
    call = ToolCall(id="c3", name="forecast", arguments=arguments)
    plan = [FIRST, SECOND, call, ToolCall(id="c4", name="lookup", arguments={})]
    return substitute(call, 3, plan, LOOKED_UP, parameters).arguments


def test_substitute_puts_fields_and_list_items_in_place_anywhere() -> None:
    arguments = {
        "city": ref("$1.city"),
        "days": ref("$1.days"),
        "tags": [ref("$1.items.1.name"), "fixed"],
        "place": {"city": ref("$1.city"), "unit": ref("$1.unit")},
    }
    assert fill(arguments) == {
        "city": "Oslo",
        "days": 3,
        "tags": ["y", "fixed"],
        "place": {"city": "Oslo", "unit": "C"},
    }
    assert fill({"city": "Bergen"}) == {"city": "Bergen"}  # nothing to substitute


def test_substitute_gives_a_whole_result_for_a_bare_reference() -> None:
    (value,) = fill({"anything": ref("$1")}, parameters=None).values()
    assert value == LOOKED_UP["c1"].content


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (
            ref("$1.country"),
            "$1.country: the result of $1 (lookup) has no 'country' "
            "(it is an object with ['city', 'days', 'items', 'labels', 'n', 'unit'])",
        ),
        (ref("$1.items.5"), "$1.items.5: the result of $1.items (lookup) has no 5 (it is a list)"),
        (ref("$1.items.name"), "$1.items.name: the result of $1.items (lookup) has no 'name' (it is a list)"),
        (ref("$1.city.0"), "$1.city.0: the result of $1.city (lookup) has no 0 (it is a string)"),
        (ref("$2"), "not run: it uses $2, and call $2 (lookup) failed"),
        (ref("$2.city"), "not run: it uses $2.city, and call $2 (lookup) failed"),
        (ref("$3"), "$3 points to itself: a call can use only the results of earlier calls"),
        (ref("$4.city"), "$4.city points to a later call: a call can use only the results of earlier calls"),
        (ref("$9"), "$9 points to no call: a call can use only the results of earlier calls"),
    ],
)
def test_substitute_refuses_a_reference_it_cannot_fill_in_and_says_why(argument: Any, message: str) -> None:
    with pytest.raises(PlanError) as refused:
        fill({"note": argument}, parameters=None)
    assert str(refused.value) == message


def test_substitute_refuses_a_reference_nested_in_a_value_it_cannot_fill_in() -> None:
    with pytest.raises(PlanError, match="points to itself"):
        fill({"tags": ["a", ref("$3")]})


def test_a_result_with_no_entry_yet_is_refused() -> None:
    call = ToolCall(id="c3", name="forecast", arguments={"city": ref("$1.city")})
    with pytest.raises(PlanError, match=r"^\$1.city: call \$1 \(lookup\) has no result$"):
        substitute(call, 3, [FIRST, SECOND, call], {})


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"city": ref("$1.days")},
            "argument 'city' = $1.days is 3, which its schema refuses: 3 is not of type 'string'",
        ),
        (
            {"days": ref("$1.n")},
            "argument 'days' = $1.n is '3', which its schema refuses: '3' is not of type 'integer'",
        ),
        (
            {"city": ref("$1")},
            # A long value is shortened, in what jsonschema says too.
            f"argument 'city' = $1 is {SHORT}, which its schema refuses: {SHORT} is not of type 'string'",
        ),
        (
            {"tags": ref("$1.labels")},
            "argument 'tags' = $1.labels is ['a', 2, 'c'], which its schema refuses: 2 is not of type 'string'",
        ),
        # The parameters' $defs are there for the parameter's own schema.
        (
            {"unit": ref("$1.city")},
            "argument 'unit' = $1.city is 'Oslo', which its schema refuses: 'Oslo' is not one of ['C', 'F']",
        ),
        (
            {"place": ref("$1.items.0")},
            "argument 'place' = $1.items.0 is {'name': 'x'}, which its schema refuses: 'city' is a required property",
        ),
    ],
)
def test_substitute_checks_a_value_against_its_parameters_schema(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError) as refused:
        fill(arguments)
    assert str(refused.value) == message


def test_values_the_schema_takes_pass_including_through_defs() -> None:
    looked_up = replace(LOOKED_UP["c1"], content={"place": {"city": "Oslo", "unit": "F"}, "u": "C"})
    call = ToolCall(id="c3", name="forecast", arguments={"place": ref("$1.place"), "unit": ref("$1.u")})
    filled = substitute(call, 3, [FIRST, SECOND, call], {**LOOKED_UP, "c1": looked_up}, PARAMETERS)
    assert filled.arguments == {"place": {"city": "Oslo", "unit": "F"}, "unit": "C"}


# --- the plan's graph --------------------------------------------------------------------------


class Trace:
    """What the tools did, in order, and the most of them that ran at once."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.running = 0
        self.most = 0

    def start(self, tag: str) -> None:
        self.events.append(("start", tag))
        self.running += 1
        self.most = max(self.most, self.running)

    def end(self, tag: str) -> None:
        self.events.append(("end", tag))
        self.running -= 1

    def at(self, what: str, tag: str) -> int:
        return self.events.index((what, tag))

    def started(self) -> list[str]:
        return [tag for what, tag in self.events if what == "start"]


def graph_tools(
    trace: Trace,
    *,
    meet: Collection[str] = (),
    together: int = 0,
    release: Mapping[str, asyncio.Event] | None = None,
) -> list[Any]:
    """`step` records when it starts and ends. The calls tagged in `meet` wait inside the tool until
    `together` of them (default: all) are there at once, so they succeed only if they run side by side.
    A call with `wait_for` holds until `release[wait_for]` is set, which happens when that call ends."""
    barrier: list[asyncio.Barrier] = []
    events = release or {}

    @tool
    async def step(tag: str, after: str = "", wait_for: str = "") -> dict[str, str]:
        """One step of a task.

        Args:
            tag: Which step this is.
            after: What it got from an earlier step.
            wait_for: Hold until that step ended.
        """
        trace.start(tag)
        try:
            if tag in meet:
                if not barrier:  # made in the run's event loop
                    barrier.append(asyncio.Barrier(together or len(meet)))
                await asyncio.wait_for(barrier[0].wait(), GUARD_SECONDS)
            if wait_for:
                await asyncio.wait_for(events[wait_for].wait(), GUARD_SECONDS)
            await asyncio.sleep(0.005)  # room for a sibling to start, were the executor to allow it
        finally:
            trace.end(tag)
            if tag in events:
                events[tag].set()
        return {"tag": tag, "got": after}

    @tool
    async def boom(tag: str) -> str:
        """Fail.

        Args:
            tag: Which step this is.
        """
        trace.start(tag)
        trace.end(tag)
        raise RuntimeError(f"{tag} broke")

    @tool
    def count(n: int) -> int:
        """Count to n.

        Args:
            n: How far.
        """
        trace.start(f"count {n}")
        trace.end(f"count {n}")
        return n

    return [step, boom, count]


def plan_agent(turns: list[Any], tools: list[Any], **kwargs: Any) -> tuple[Agent[str], ScriptedRuntime]:
    runtime = ScriptedRuntime(turns)
    return Agent(runtime=runtime, tools=tools, planning=True, **kwargs), runtime


def test_independent_calls_run_together_and_a_dependant_after_its_dependency() -> None:
    trace = Trace()
    plan = calls(
        ("a", "step", {"tag": "a"}),
        ("b", "step", {"tag": "b"}),
        ("c", "step", {"tag": "c"}),
        ("d", "step", {"tag": "d", "after": ref("$1.tag")}),
    )
    # a, b and c each wait until the three are inside the tool at once.
    agent, _ = plan_agent([plan, "done"], graph_tools(trace, meet="abc"))
    got = results(agent.run("go").messages)
    assert not any(r.is_error for r in got.values()), got
    assert trace.most >= 3
    assert trace.at("end", "a") < trace.at("start", "d")
    assert got["d"].content == {"tag": "d", "got": "a"}


def test_a_call_runs_as_soon_as_its_dependencies_are_done_not_in_waves() -> None:
    # `slow` (no dependency) holds until `then` has ended; `then` needs `fast`. Run in waves
    # (all calls without dependencies first), `then` would start only after `slow` ended: a deadlock.
    trace = Trace()
    release = {"then": asyncio.Event()}
    plan = calls(
        ("slow", "step", {"tag": "slow", "wait_for": "then"}),
        ("fast", "step", {"tag": "fast"}),
        ("then", "step", {"tag": "then", "after": ref("$2.tag")}),
    )
    agent, _ = plan_agent([plan, "done"], graph_tools(trace, release=release))
    got = results(agent.run("go").messages)
    assert not any(r.is_error for r in got.values()), got
    assert trace.at("end", "fast") < trace.at("start", "then") < trace.at("end", "then") < trace.at("end", "slow")


def test_each_call_starts_only_after_every_call_it_uses_has_ended() -> None:
    trace = Trace()
    plan = calls(
        ("a", "step", {"tag": "a"}),
        ("b", "step", {"tag": "b"}),
        ("c", "step", {"tag": "c", "after": ref("$1.tag")}),
        ("d", "step", {"tag": "d", "after": ref("$2.tag")}),
        ("e", "step", {"tag": "e", "after": ref("$3.got"), "wait_for": ref("$4.tag")}),  # uses c and d
    )
    agent, _ = plan_agent([plan, "done"], graph_tools(trace, release={"d": asyncio.Event()}))
    got = results(agent.run("go").messages)
    assert got["e"].content == {"tag": "e", "got": "a"}
    for call, used in (("c", ["a"]), ("d", ["b"]), ("e", ["c", "d", "a", "b"])):
        for dependency in used:
            assert trace.at("end", dependency) < trace.at("start", call), (call, dependency, trace.events)


@pytest.mark.parametrize("limit", [1, 2])
def test_plan_concurrency_caps_the_calls_running_at_once(limit: int) -> None:
    trace = Trace()
    plan = calls(*((tag, "step", {"tag": tag}) for tag in "abcd"))
    # With a limit of 2, calls meet in pairs (they fail unless two run at once); 1 runs them one by one.
    meet = "abcd" if limit > 1 else ""
    agent, _ = plan_agent([plan, "done"], graph_tools(trace, meet=meet, together=limit), plan_concurrency=limit)
    got = results(agent.run("go").messages)
    assert not any(r.is_error for r in got.values()), got
    assert trace.most == limit
    assert sorted(trace.started()) == ["a", "b", "c", "d"]


def test_a_failed_call_fails_its_dependants_and_theirs_while_another_branch_succeeds() -> None:
    trace = Trace()
    plan = calls(
        ("x", "boom", {"tag": "x"}),
        ("b", "step", {"tag": "b", "after": ref("$1")}),
        ("c", "step", {"tag": "c", "after": ref("$2.tag")}),
        ("d", "step", {"tag": "d"}),
        ("e", "step", {"tag": "e", "after": ref("$4.tag")}),
    )
    agent, runtime = plan_agent([plan, "x broke"], graph_tools(trace))
    result = agent.run("go")
    assert result.output == "x broke"
    got = results(result.messages)
    assert got["x"].is_error
    assert "x broke" in str(got["x"].content)
    assert (got["b"].is_error, got["b"].content) == (True, "not run: it uses $1, and call $1 (boom) failed")
    assert (got["c"].is_error, got["c"].content) == (True, "not run: it uses $2.tag, and call $2 (step) failed")
    assert (got["d"].is_error, got["d"].content) == (False, {"tag": "d", "got": ""})
    assert (got["e"].is_error, got["e"].content) == (False, {"tag": "e", "got": "d"})
    assert sorted(trace.started()) == ["d", "e", "x"]  # b and c never ran
    # The model reads every result, in the plan's order.
    joined = runtime.requests[1].messages
    assert [m.call_id for m in joined if isinstance(m, ToolResult)] == ["x", "b", "c", "d", "e"]


def test_a_value_of_the_wrong_type_is_an_error_result_for_its_call_and_dependants_never_an_exception() -> None:
    trace = Trace()
    plan = calls(
        ("a", "step", {"tag": "a"}),
        ("b", "step", {"tag": "b", "after": ref("$1")}),  # an object where a string goes
        ("c", "step", {"tag": "c", "after": ref("$2.tag")}),
        ("n", "count", {"n": ref("$1.tag")}),  # a string where an integer goes
        ("m", "count", {"n": ref("$4")}),
    )
    agent, _ = plan_agent([plan, "could not"], graph_tools(trace))
    result = agent.run("go")
    assert result.output == "could not"
    got = results(result.messages)
    assert got["a"].content == {"tag": "a", "got": ""}
    assert got["b"].is_error
    assert got["b"].content == (
        "argument 'after' = $1 is {'tag': 'a', 'got': ''}, which its schema refuses: "
        "{'tag': 'a', 'got': ''} is not of type 'string'"
    )
    assert (got["c"].is_error, got["c"].content) == (True, "not run: it uses $2.tag, and call $2 (step) failed")
    assert (got["n"].is_error, got["n"].content) == (
        True,
        "argument 'n' = $1.tag is 'a', which its schema refuses: 'a' is not of type 'integer'",
    )
    assert (got["m"].is_error, got["m"].content) == (True, "not run: it uses $4, and call $4 (count) failed")
    assert trace.started() == ["a"]


def test_a_reference_to_itself_or_a_later_call_is_an_error_result() -> None:
    trace = Trace()
    plan = calls(
        ("a", "step", {"tag": "a", "after": ref("$2.tag")}),
        ("b", "step", {"tag": "b", "after": ref("$2.tag")}),
        ("c", "step", {"tag": "c", "after": ref("$7")}),
        ("d", "step", {"tag": "d"}),
    )
    agent, _ = plan_agent([plan, "ok"], graph_tools(trace))
    got = results(agent.run("go").messages)
    assert got["a"].content == "$2.tag points to a later call: a call can use only the results of earlier calls"
    assert got["b"].content == "$2.tag points to itself: a call can use only the results of earlier calls"
    assert got["c"].content == "$7 points to no call: a call can use only the results of earlier calls"
    assert [got[i].is_error for i in "abcd"] == [True, True, True, False]
    assert trace.started() == ["d"]


# --- the turns around a plan ------------------------------------------------------------------------


@tool
async def capital(country: str) -> dict[str, str]:
    """The capital of a country.

    Args:
        country: The country.
    """
    return {"city": {"France": "Paris", "Norway": "Oslo"}[country]}


@tool
def temperature(city: str) -> float:
    """The temperature in a city.

    Args:
        city: The city.
    """
    TEMPERATURES_ASKED.append(city)
    return {"Paris": 18.0, "Oslo": -3.0}[city]


@tool
def warmer(a: float, b: float) -> str:
    """Which of two temperatures is warmer.

    Args:
        a: The first.
        b: The second.
    """
    return "a" if a > b else "b"


TEMPERATURES_ASKED: list[str] = []
WEATHER = [capital, temperature, warmer]
WARMER_PLAN = calls(
    ("c1", "capital", {"country": "France"}),
    ("c2", "capital", {"country": "Norway"}),
    ("t1", "temperature", {"city": ref("$1.city")}),
    ("t2", "temperature", {"city": ref("$2.city")}),
    ("w", "warmer", {"a": ref("$3"), "b": ref("$4")}),
)


@pytest.fixture(autouse=True)
def _clear() -> None:
    TEMPERATURES_ASKED.clear()


def test_the_join_turn_sees_every_result_and_the_plan_is_stored_as_written(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    agent, runtime = plan_agent([WARMER_PLAN, "Paris is warmer."], WEATHER, store=store)
    result = agent.run("Which capital is warmer, France's or Norway's?")
    assert result.output == "Paris is warmer."
    plan_turn, join = runtime.requests
    assert (plan_turn.plan, plan_turn.tool_choice) == (True, "auto")
    assert (join.plan, join.tool_choice) == (True, "auto")  # the join may plan again
    seen = [(m.call_id, m.content, m.is_error) for m in join.messages if isinstance(m, ToolResult)]
    assert seen == [
        ("c1", {"city": "Paris"}, False),
        ("c2", {"city": "Oslo"}, False),
        ("t1", 18.0, False),
        ("t2", -3.0, False),
        ("w", "a", False),
    ]
    # The store keeps the calls as the model wrote them (references), the step marked as a plan.
    stored = store.load(result.run_id)
    first = stored.steps[0]
    assert first.response.metadata.get("plan") is True
    assert [c.arguments for c in first.response.message.tool_calls][2:] == [
        {"city": ref("$1.city")},
        {"city": ref("$2.city")},
        {"a": ref("$3"), "b": ref("$4")},
    ]
    assert [r.content for r in first.results] == [r[1] for r in seen]
    assert stored.record.status == "done"


def test_a_plan_after_a_failure_uses_its_own_numbering() -> None:
    failing = calls(
        ("x1", "capital", {"country": "Atlantis"}),
        ("x2", "temperature", {"city": ref("$1.city")}),
    )
    again = calls(
        ("y1", "capital", {"country": "France"}),
        ("y2", "temperature", {"city": ref("$1.city")}),  # $1 is this plan's first call
    )
    agent, runtime = plan_agent([failing, again, "18 °C in Paris."], WEATHER)
    result = agent.run("How warm is it in the capital?")
    assert result.output == "18 °C in Paris."
    got = results(result.messages)
    assert got["x1"].is_error
    assert "KeyError" in str(got["x1"].content)
    assert got["x2"].content == "not run: it uses $1.city, and call $1 (capital) failed"
    assert (got["y1"].content, got["y2"].content) == ({"city": "Paris"}, 18.0)
    assert TEMPERATURES_ASKED == ["Paris"]
    assert [r.plan for r in runtime.requests] == [True, True, True]
    second_join = results(runtime.requests[2].messages)
    assert set(second_join) == {"x1", "x2", "y1", "y2"}


@pytest.mark.parametrize("max_replans", [0, 1, 2])
def test_after_the_first_plan_and_max_replans_more_the_model_must_answer(max_replans: int) -> None:
    plans = [calls((f"p{n}", "capital", {"country": "France"})) for n in range(1 + max_replans)]
    agent, runtime = plan_agent([*plans, "Paris."], WEATHER, max_replans=max_replans)
    assert agent.run("Capital of France?").output == "Paris."
    choices = [(r.tool_choice, r.plan) for r in runtime.requests]
    assert choices == [("auto", True)] * (1 + max_replans) + [("none", False)]


def test_planning_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_replans must be at least 0"):
        Agent(runtime=ScriptedRuntime([]), planning=True, max_replans=-1)
    with pytest.raises(ValueError, match="plan_concurrency must be at least 1"):
        Agent(runtime=ScriptedRuntime([]), planning=True, plan_concurrency=0)


def test_without_planning_a_reference_is_not_substituted_and_fails_validation() -> None:
    runtime = ScriptedRuntime([WARMER_PLAN, "Could not."])
    result = Agent(runtime=runtime, tools=WEATHER).run("Which is warmer?")
    assert (runtime.requests[0].plan, runtime.requests[1].plan) == (False, False)
    got = results(result.messages)
    assert (got["c1"].content, got["c2"].content) == ({"city": "Paris"}, {"city": "Oslo"})
    for call_id in ("t1", "t2", "w"):
        assert got[call_id].is_error
        assert str(got[call_id].content).startswith("ToolArgumentsError"), got[call_id]
    assert TEMPERATURES_ASKED == []


# --- approvals inside a plan ----------------------------------------------------------------------------


class Mailroom:
    """Tools for a plan with a call that needs approval; each writes down its runs."""

    def __init__(self) -> None:
        self.ran: list[str] = []

        @tool
        def lookup(name: str) -> dict[str, str]:
            """Someone's address.

            Args:
                name: Whose.
            """
            self.ran.append(f"lookup {name}")
            return {"email": f"{name}@example.org"}

        @tool(requires_approval=True, idempotent=False)
        def send(to: str) -> str:
            """Send a message.

            Args:
                to: The address.
            """
            self.ran.append(f"send {to}")
            return f"sent to {to}"

        @tool
        def note(text: str) -> str:
            """Write a note.

            Args:
                text: What to write.
            """
            self.ran.append(f"note {text}")
            return f"noted: {text}"

        self.tools = [lookup, send, note]


MAIL_PLAN = calls(
    ("l", "lookup", {"name": "bob"}),
    ("s", "send", {"to": ref("$1.email")}),
    ("n1", "note", {"text": ref("$2")}),
    ("n2", "note", {"text": "independent"}),
    ("n3", "note", {"text": ref("$3")}),
)


def paused_mail_run(store: Store, mail: Mailroom) -> str:
    agent, _ = plan_agent([MAIL_PLAN], mail.tools, store=store)
    with pytest.raises(AwaitingApproval) as paused:
        agent.run("Send bob the note.")
    assert [c.id for c in paused.value.calls] == ["s"]
    return paused.value.run_id


def test_a_plan_pauses_at_a_call_that_needs_approval_after_the_calls_that_do_not_depend_on_it(tmp_path: Path) -> None:
    store, mail = Store(tmp_path / "runs.db"), Mailroom()
    run_id = paused_mail_run(store, mail)
    assert mail.ran == ["lookup bob", "note independent"]  # neither send nor what uses it
    stored = store.load(run_id)
    assert stored.record.status == "awaiting_approval"
    assert [r.call_id for r in stored.steps[-1].results] == ["l", "n2"]
    assert [c.id for c in stored.steps[-1].pending] == ["s", "n1", "n3"]
    assert [c.id for c in stored.awaiting] == ["s"]


def test_approving_runs_the_waiting_call_then_its_dependants_without_rerunning_the_rest(tmp_path: Path) -> None:
    store, mail = Store(tmp_path / "runs.db"), Mailroom()
    run_id = paused_mail_run(store, mail)
    runtime = ScriptedRuntime(["Sent."])
    resumed = Agent(runtime=runtime, tools=mail.tools, store=store, planning=True)
    result = resumed.resume(run_id, approvals={"s": True}, decided_by="alice")
    assert result.output == "Sent."
    assert mail.ran == [
        "lookup bob",
        "note independent",
        "send bob@example.org",  # the reference filled in from the stored result
        "note sent to bob@example.org",
        "note noted: sent to bob@example.org",
    ]
    got = results(runtime.requests[0].messages)
    assert list(got) == ["l", "s", "n1", "n2", "n3"]  # the plan's order, whatever order they ran in
    assert not any(r.is_error for r in got.values())
    assert store.run(run_id).status == "done"


def test_denying_the_waiting_call_fails_its_dependants(tmp_path: Path) -> None:
    store, mail = Store(tmp_path / "runs.db"), Mailroom()
    run_id = paused_mail_run(store, mail)
    runtime = ScriptedRuntime(["Not sent."])
    resumed = Agent(runtime=runtime, tools=mail.tools, store=store, planning=True)
    assert resumed.resume(run_id, approvals={"s": "bob is on leave"}).output == "Not sent."
    assert mail.ran == ["lookup bob", "note independent"]
    got = results(runtime.requests[0].messages)
    assert (got["s"].is_error, got["s"].content) == (True, "bob is on leave")
    assert (got["n1"].is_error, got["n1"].content) == (True, "not run: it uses $2, and call $2 (send) failed")
    assert (got["n3"].is_error, got["n3"].content) == (True, "not run: it uses $3, and call $3 (note) failed")
    assert store.load(run_id).steps[0].pending == ()


def test_a_call_with_references_is_put_to_approval_with_its_values_filled_in(tmp_path: Path) -> None:
    store, mail = Store(tmp_path / "runs.db"), Mailroom()
    agent, _ = plan_agent([MAIL_PLAN], mail.tools, store=store)
    with pytest.raises(AwaitingApproval) as paused:
        agent.run("Send bob the note.")
    assert paused.value.calls[0].arguments == {"to": "bob@example.org"}  # what a person decides on
    asked: list[dict[str, object]] = []

    def approve(call: ToolCall) -> bool:
        asked.append(call.arguments)
        return True

    mail2 = Mailroom()
    agent, _ = plan_agent([MAIL_PLAN, "Sent."], mail2.tools, approve=approve)
    assert agent.run("Send bob the note.").output == "Sent."
    assert asked == [{"to": "bob@example.org"}]


def test_a_call_whose_dependency_failed_is_not_put_to_approval() -> None:
    mail = Mailroom()
    plan = calls(("l", "lookup", {"name": "bob"}), ("s", "send", {"to": ref("$1.phone")}))
    agent, _ = plan_agent([plan, "No address."], mail.tools, approve=lambda call: pytest.fail("asked"))
    got = results(agent.run("Send bob the note.").messages)
    assert got["s"].is_error
    assert "has no 'phone'" in got["s"].content


def test_a_referenced_call_is_checked_before_approval_when_references_are_not_substituted() -> None:
    # Without plan mode a reference is an ordinary (invalid) value: the call cannot run, so nobody is asked.
    mail = Mailroom()
    runtime = ScriptedRuntime([MAIL_PLAN, "ok"])
    agent = Agent(runtime=runtime, tools=mail.tools, approve=lambda call: pytest.fail(f"asked about {call.id}"))
    got = results(agent.run("Send bob the note.").messages)
    assert str(got["s"].content).startswith("ToolArgumentsError")
    assert mail.ran == ["lookup bob", "note independent"]


# --- budgets ------------------------------------------------------------------------------------------------


def test_a_tool_call_budget_refuses_the_later_calls_and_fails_their_dependants() -> None:
    trace = Trace()
    plan = calls(
        ("a", "step", {"tag": "a"}),
        ("b", "step", {"tag": "b", "after": ref("$1.tag")}),
        ("c", "step", {"tag": "c"}),
        ("d", "step", {"tag": "d", "after": ref("$3.tag")}),
        ("e", "step", {"tag": "e", "after": ref("$2.tag")}),
    )
    agent, runtime = plan_agent([plan, "Partly done."], graph_tools(trace), budget=Budget(max_tool_calls=2))
    result = agent.run("go")
    assert result.output == "Partly done."
    got = results(result.messages)
    assert (got["a"].content, got["b"].content) == ({"tag": "a", "got": ""}, {"tag": "b", "got": "a"})
    for call_id in "cde":
        assert (got[call_id].is_error, got[call_id].content) == (
            True,
            "not run: the run's budget of 2 tool calls is spent",
        )
    assert sorted(trace.started()) == ["a", "b"]
    # The budget is spent: the join must answer, and is not told it may plan.
    assert (runtime.requests[1].tool_choice, runtime.requests[1].plan) == ("none", False)


# --- a plan killed mid-way resumes -----------------------------------------------------------------------


WORKER = '''
"""A plan run that the test kills while `hold` runs (test_planning.py)."""

import asyncio
import sys

from agentkit import Agent, tool
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store

db, log = sys.argv[1:3]


def ran(line: str) -> None:
    with open(log, "a") as file:
        file.write(line + "\\n")


@tool
def fetch(key: str) -> dict:
    """Fetch a record.

    Args:
        key: Which.
    """
    ran(f"fetch {key}")
    return {"key": key, "value": key.upper()}


@tool
async def hold(key: str) -> dict:
    """Fetch a record slowly (here: never).

    Args:
        key: Which.
    """
    ran(f"hold {key}")
    await asyncio.Event().wait()  # nothing sets it: the test kills the process


@tool
def shout(text: str) -> dict:
    """Shout.

    Args:
        text: What.
    """
    ran(f"shout {text}")
    return {"value": text + "!"}


@tool
def join(a: str, b: str) -> str:
    """Join two texts.

    Args:
        a: The first.
        b: The second.
    """
    ran(f"join {a} {b}")
    return a + b


PLAN = {
    "tool_calls": [
        {"id": "f1", "name": "fetch", "arguments": {"key": "a"}},
        {"id": "h2", "name": "hold", "arguments": {"key": "b"}},
        {"id": "s3", "name": "shout", "arguments": {"text": {"$ref": "$1.value"}}},
        {"id": "j4", "name": "join", "arguments": {"a": {"$ref": "$3.value"}, "b": {"$ref": "$2.value"}}},
    ]
}
Agent(runtime=ScriptedRuntime([PLAN]), tools=[fetch, hold, shout, join], store=Store(db), planning=True).run("go")
'''


def killed_tools(log: Path) -> list[Any]:
    """The worker's tools, as the resuming process has them (`hold` returns here)."""

    def ran(line: str) -> None:
        with log.open("a") as file:
            file.write(line + "\n")

    @tool
    def fetch(key: str) -> dict[str, str]:
        """Fetch a record.

        Args:
            key: Which.
        """
        ran(f"fetch {key}")
        return {"key": key, "value": key.upper()}

    @tool
    async def hold(key: str) -> dict[str, str]:
        """Fetch a record slowly.

        Args:
            key: Which.
        """
        ran(f"hold {key}")
        return {"key": key, "value": key.upper()}

    @tool
    def shout(text: str) -> dict[str, str]:
        """Shout.

        Args:
            text: What.
        """
        ran(f"shout {text}")
        return {"value": text + "!"}

    @tool
    def join(a: str, b: str) -> str:
        """Join two texts.

        Args:
            a: The first.
            b: The second.
        """
        ran(f"join {a} {b}")
        return a + b

    return [fetch, hold, shout, join]


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        with closing(sqlite3.connect(db)) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the worker is still creating the schema
        return []


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    script = tmp_path / "plan_worker.py"
    script.write_text(textwrap.dedent(WORKER), encoding="utf-8")

    def start(*args: object) -> subprocess.Popen[bytes]:
        err = (tmp_path / "worker.err").open("wb")
        proc = subprocess.Popen([sys.executable, script, *map(str, args)], stderr=err, cwd=REPO)
        err.close()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_plan_killed_mid_way_resumes_without_rerunning_its_finished_calls(
    tmp_path: Path, worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    db, log = tmp_path / "runs.db", tmp_path / "ran.log"
    proc = worker(db, log)
    deadline = time.monotonic() + 60
    # f1 and s3 (which uses f1) finished and were committed while h2 holds.
    while not (
        {"f1", "s3"} <= {row[0] for row in query(db, "SELECT call_id FROM tool_results")} and "hold b" in lines(log)
    ):
        assert proc.poll() is None, (tmp_path / "worker.err").read_text()
        assert time.monotonic() < deadline, f"the worker did not get to hold: {lines(log)}"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL

    ((run_id, status),) = query(db, "SELECT id, status FROM runs")
    assert status == "running"
    assert sorted(lines(log)) == ["fetch a", "hold b", "shout A"]
    store = Store(db)
    assert [c.id for c in store.load(run_id).steps[-1].pending] == ["h2", "j4"]

    runtime = ScriptedRuntime(["A!B"])
    agent = Agent(runtime=runtime, tools=killed_tools(log), store=store, planning=True)
    result = agent.resume(run_id)
    assert result.output == "A!B"
    # The finished calls did not run again; the one cut short did, then what used it.
    assert lines(log)[3:] == ["hold b", "join A! B"]
    got = results(runtime.requests[0].messages)
    assert [(i, r.content) for i, r in got.items()] == [
        ("f1", {"key": "a", "value": "A"}),
        ("h2", {"key": "b", "value": "B"}),
        ("s3", {"value": "A!"}),
        ("j4", "A!B"),
    ]
    assert store.run(run_id).status == "done"


# --- tracing -------------------------------------------------------------------------------------------------


TRACED = """
import json

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

from agentkit import Agent, tool
from agentkit.runtimes import ScriptedRuntime


@tool
def fetch(key: str) -> dict:
    '''Fetch a record.

    Args:
        key: Which.
    '''
    return {"value": key.upper()}


@tool
def shout(text: str) -> str:
    '''Shout.

    Args:
        text: What.
    '''
    return text + "!"


def call(i, name, **arguments):
    return {"id": i, "name": name, "arguments": arguments}


turns = [
    {"tool_calls": [
        call("a1", "fetch", key="a"),
        call("a2", "fetch", key="b"),
        call("a3", "shout", text={"$ref": "$1.value"}),
    ]},
    {"tool_calls": [call("b1", "fetch", key="c"), call("b2", "shout", text={"$ref": "$1.value"})]},
    "A! C!",
]
Agent(runtime=ScriptedRuntime(turns), tools=[fetch, shout], planning=True, name="Planner").run("go")
print(json.dumps([
    {
        "name": s.name,
        "id": s.context.span_id,
        "parent": s.parent.span_id if s.parent else None,
        "attributes": dict(s.attributes),
        "links": [{"id": link.context.span_id, "attributes": dict(link.attributes)} for link in s.links],
    }
    for s in exporter.get_finished_spans()
]))
"""


def test_each_plan_is_a_span_around_its_calls_and_a_call_links_to_the_calls_it_used() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(TRACED)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=clean,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    spans = json.loads(done.stdout)
    by_call = {s["attributes"]["gen_ai.tool.call.id"]: s for s in spans if s["name"].startswith("execute_tool ")}
    plans = [s for s in spans if s["name"].startswith("execute_plan ")]
    (agent,) = [s for s in spans if s["name"] == "invoke_agent Planner"]

    assert sorted(by_call) == ["a1", "a2", "a3", "b1", "b2"]
    first, second = sorted(plans, key=lambda s: s["attributes"]["agentkit.step"])
    assert (first["name"], second["name"]) == ("execute_plan 3 calls", "execute_plan 2 calls")
    assert first["attributes"] == {
        "gen_ai.operation.name": "execute_plan",
        "gen_ai.conversation.id": agent["attributes"]["gen_ai.conversation.id"],
        "agentkit.step": 0,
        "agentkit.plan.calls": 3,
        "agentkit.plan.dependencies": 1,
    }
    assert (first["parent"], second["parent"]) == (agent["id"], agent["id"])
    for call_id, plan in (("a1", first), ("a2", first), ("a3", first), ("b1", second), ("b2", second)):
        assert by_call[call_id]["parent"] == plan["id"], call_id
    # A call that used another's result links to that call's span; the others link to nothing.
    assert by_call["a3"]["links"] == [{"id": by_call["a1"]["id"], "attributes": {"agentkit.plan.dependency": True}}]
    assert by_call["b2"]["links"] == [{"id": by_call["b1"]["id"], "attributes": {"agentkit.plan.dependency": True}}]
    assert [by_call[i]["links"] for i in ("a1", "a2", "b1")] == [[], [], []]


@pytest.mark.parametrize(
    "schema", [{"type": "strin"}, {"$ref": "#/$defs/nowhere"}], ids=["invalid type", "unresolvable $ref"]
)
def test_a_parameter_schema_jsonschema_cannot_apply_leaves_the_check_to_the_tool(schema: dict[str, Any]) -> None:
    call = ToolCall(name="t", arguments={"a": ref("$1")}, id="c2")
    first = ToolCall(name="s", arguments={}, id="c1")
    done = {"c1": ToolResult(call_id="c1", name="s", content="x")}
    filled = substitute(call, 2, [first, call], done, {"type": "object", "properties": {"a": schema}})
    assert filled.arguments == {"a": "x"}
