"""Unit tests for plan turns in the `json` dialect (`agentkit.planning`).

In a plan turn an argument may be a reference to an earlier call's result,
`{"$ref":"$2.city"}`. The constraint lets the call at position k reference
calls 1 … k-1 only, and only as a whole top-level argument. It is checked as
vLLM enforces it, under both grammar engines (llguidance and xgrammar, which
must agree), and against the JSON Schema itself (jsonschema).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentkit.dialect import Constraint
from agentkit.dialects.json_action import JsonDialect
from agentkit.messages import AssistantMessage, ToolCall, ToolResult
from agentkit.planning import FIELD, MAX_PATH, MAX_PLAN_CALLS, Reference, plan_instructions
from agentkit.runtime import ModelRequest
from agentkit.tool import ToolSpec
from tests.unit.dialects.test_json_action import (
    ADD,
    DETERMINISTIC,
    ORDER,
    QUESTION,
    WEATHER,
    Acceptor,
    answer,
    call,
    calls,
    schema_accepts,
)

TOOLS = (WEATHER, ADD, ORDER)


def plan_request(*, tools: tuple[ToolSpec, ...] = TOOLS, tool_choice: str = "auto", plan: bool = True) -> ModelRequest:
    return ModelRequest(messages=[QUESTION], tools=tools, tool_choice=tool_choice, plan=plan)


def ref(text: str) -> dict[str, str]:
    return {"$ref": text}


@pytest.fixture(scope="module")
def compile_constraint() -> Callable[[Constraint], Acceptor]:
    """Compile a constraint as vLLM's backends do; return a string acceptor (both engines must agree)."""
    import llguidance
    import xgrammar as xgr

    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo([]), cache_enabled=False)
    bytes_tokenizer = llguidance.LLTokenizer("byte")
    return lambda constraint: Acceptor(constraint, compiler, bytes_tokenizer)


@pytest.fixture(scope="module")
def plan_grammar(compile_constraint: Callable[[Constraint], Acceptor]) -> Acceptor:
    return compile_constraint(JsonDialect().constraint(plan_request()))


def plan_accepts(grammar: Acceptor, text: str) -> bool:
    """Both engines' verdict on `text`, which the schema itself (jsonschema) must share."""
    verdict = grammar(text)
    assert schema_accepts(JsonDialect().constraint(plan_request()), text) == verdict, text
    return verdict


# --- render -----------------------------------------------------------------------------


def test_render_a_plan_request_gives_the_plan_guidance_in_json_form() -> None:
    prompt = JsonDialect().render(plan_request())

    assert plan_instructions(lambda ref: '{"$ref":"' + ref + '"}') in prompt
    assert '`{"$ref":"$1"}` is the result of the first call' in prompt
    assert '{"$ref":"$N"} or {"$ref":"$N.field"}' in prompt
    assert f"at most {MAX_PLAN_CALLS} calls" in prompt


@pytest.mark.parametrize(
    "conversation",
    [plan_request(plan=False), plan_request(tool_choice="none")],
    ids=["not-a-plan", "no-calls-allowed"],
)
def test_render_without_a_plan_gives_no_guidance(conversation: ModelRequest) -> None:
    prompt = JsonDialect().render(conversation)

    assert "Plan:" not in prompt
    assert '{"$ref":"$' not in prompt


def test_render_a_plan_turn_in_the_history_as_it_was_written() -> None:
    plan = AssistantMessage(
        tool_calls=(
            ToolCall(name="get_weather", arguments={"city": "Paris"}, id="c1"),
            ToolCall(name="add", arguments={"a": Reference(1, ("temp", 0)).value(), "b": 2}, id="c2"),
        )
    )
    conversation = dataclasses.replace(
        plan_request(),
        messages=[
            QUESTION,
            plan,
            ToolResult(call_id="c1", name="get_weather", content={"temp": [18]}),
            ToolResult(call_id="c2", name="add", content=20),
        ],
    )

    prompt = JsonDialect().render(conversation)

    text = calls(call("get_weather", city="Paris"), call("add", a=ref("$1.temp.0"), b=2))
    assert JsonDialect().render_action(plan) == text
    assert f"<|turn>model\n{text}\n" in prompt


def test_a_plan_request_that_allows_no_calls_is_an_ordinary_answer_turn() -> None:
    dialect = JsonDialect()

    assert dialect.constraint(plan_request(tool_choice="none")) == dialect.constraint(
        plan_request(tool_choice="none", plan=False)
    )


# --- the constraint -----------------------------------------------------------------------

ITEM = {"sku": "A1", "quantity": 2}
BACKWARD_PLANS = [
    [call("get_weather", city="Paris"), call("get_weather", city=ref("$1"))],
    [call("get_weather", city="Paris"), call("add", a=ref("$1.temp"), b=ref("$1.items.0"))],
    [call("add", a=1, b=2), call("add", a=3, b=4), call("get_weather", city=ref("$2.a.b.c.d"), unit=ref("$1"))],
    [call("get_weather", city="Oslo"), call("place_order", items=ref("$1.cart"), note=ref("$1._x9.10"))],
    [call("place_order", items=[ITEM], note=None), call("place_order", items=[ITEM, ITEM], note=ref("$1"))],
    [call("add", a=n, b=n) for n in range(1, MAX_PLAN_CALLS)] + [call("add", a=ref("$11"), b=ref("$10.0"))],
    [call("add", a=1, b=1)] + [call("add", a=ref("$1"), b=ref(f"${n - 1}")) for n in range(2, MAX_PLAN_CALLS + 1)],
]


@pytest.mark.parametrize("plan", BACKWARD_PLANS)
def test_a_plan_whose_references_point_backwards_is_accepted_and_parses_back(
    plan_grammar: Acceptor, plan: list[dict[str, Any]]
) -> None:
    text = calls(*plan)
    assert plan_accepts(plan_grammar, text)

    message = JsonDialect().parse(text, plan_request())

    assert [{"name": c.name, "arguments": c.arguments} for c in message.tool_calls] == plan
    assert JsonDialect().render_action(message) == text


FIRST = call("get_weather", city="Paris")
REFUSED_PLANS = {
    "forward": [FIRST, call("add", a=ref("$3"), b=1), call("add", a=1, b=2)],
    "self": [FIRST, call("add", a=ref("$2"), b=1)],
    "zero": [FIRST, call("add", a=ref("$0"), b=1)],
    "beyond-the-limit": [FIRST, call("add", a=ref(f"${MAX_PLAN_CALLS + 1}"), b=1)],
    "in-the-first-call": [call("get_weather", city=ref("$1"))],
    "later-one-in-the-first-call": [call("get_weather", city=ref("$2")), FIRST],
    "nested-in-an-object": [FIRST, call("place_order", items=[{"sku": ref("$1.sku"), "quantity": 1}])],
    "nested-as-an-item": [FIRST, call("place_order", items=[ref("$1")])],
    "too-deep": [FIRST, call("add", a=ref("$1" + ".x" * (MAX_PATH + 1)), b=1)],
    "extra-key": [FIRST, call("add", a={"$ref": "$1", "default": 0}, b=1)],
    "not-a-string": [FIRST, call("add", a={"$ref": 1}, b=1)],
    "leading-zero": [FIRST, call("add", a=ref("$01"), b=1)],
    "leading-zero-index": [FIRST, call("add", a=ref("$1.01"), b=1)],
    "field-from-a-digit": [FIRST, call("add", a=ref("$1.2x"), b=1)],
    "empty-step": [FIRST, call("add", a=ref("$1..x"), b=1)],
    "text-before": [FIRST, call("add", a=ref("x$1"), b=1)],
    "text-after": [FIRST, call("add", a=ref("$1 "), b=1)],
    "no-number": [FIRST, call("add", a=ref("$"), b=1)],
}


@pytest.mark.parametrize("plan", REFUSED_PLANS.values(), ids=REFUSED_PLANS.keys())
def test_a_wrong_reference_is_refused(plan_grammar: Acceptor, plan: list[dict[str, Any]]) -> None:
    assert not plan_accepts(plan_grammar, calls(*plan))


def test_a_plan_holds_at_most_max_plan_calls(plan_grammar: Acceptor) -> None:
    plan = [call("add", a=n, b=n) for n in range(1, MAX_PLAN_CALLS + 2)]

    assert plan_accepts(plan_grammar, calls(*plan[:MAX_PLAN_CALLS]))
    assert not plan_accepts(plan_grammar, calls(*plan))
    assert not plan_accepts(plan_grammar, calls())


def test_a_plan_request_still_allows_an_answer(plan_grammar: Acceptor) -> None:
    assert plan_accepts(plan_grammar, answer("It is 18 degrees."))
    assert not plan_accepts(plan_grammar, answer(ref("$1")))


@pytest.mark.parametrize(
    "plan",
    [
        [FIRST, call("get_weather", city=ref("$1"))],
        [call("add", a=1, b=2), call("add", a=ref("$1"), b=2)],
        [FIRST, call("get_weather", city="Oslo", unit=ref("$1.unit"))],
    ],
    ids=["string", "integer", "enum"],
)
def test_a_request_that_is_no_plan_refuses_references(
    compile_constraint: Callable[[Constraint], Acceptor], plan_grammar: Acceptor, plan: list[dict[str, Any]]
) -> None:
    constraint = JsonDialect().constraint(plan_request(plan=False))
    text = calls(*plan)

    assert plan_accepts(plan_grammar, text)
    assert not compile_constraint(constraint)(text)
    assert not schema_accepts(constraint, text)


def test_a_plan_under_a_named_tool_holds_only_that_tool(compile_constraint: Callable[[Constraint], Acceptor]) -> None:
    constraint = JsonDialect().constraint(plan_request(tool_choice="add"))
    accepts = compile_constraint(constraint)

    assert accepts(calls(call("add", a=1, b=2), call("add", a=ref("$1"), b=ref("$1.0"))))
    assert not accepts(calls(call("add", a=1, b=2), call("get_weather", city=ref("$1"))))
    assert not accepts(answer("done"))


def test_the_positions_share_the_hoisted_defs(plan_grammar: Acceptor) -> None:
    schema = JsonDialect().constraint(plan_request()).value
    text = json.dumps(schema)
    last = [call("add", a=n, b=n) for n in range(1, MAX_PLAN_CALLS)]

    assert set(schema["$defs"]) == {"tool__place_order__Item"}
    assert text.count(json.dumps(schema["$defs"]["tool__place_order__Item"])) == 1
    assert text.count('"#/$defs/tool__place_order__Item"') == MAX_PLAN_CALLS  # one use per position
    assert plan_accepts(plan_grammar, calls(*last, call("place_order", items=[ITEM], note=ref("$11.note"))))
    assert not plan_accepts(plan_grammar, calls(*last, call("place_order", items=[{"sku": 1, "quantity": 1}])))


def test_max_string_caps_strings_in_every_position_but_not_references(
    compile_constraint: Callable[[Constraint], Acceptor],
) -> None:
    accepts = compile_constraint(JsonDialect(max_string=8).constraint(plan_request()))
    before = [call("add", a=n, b=n) for n in range(1, MAX_PLAN_CALLS)]

    for position in (1, 2, MAX_PLAN_CALLS):
        head = before[: position - 1]
        assert accepts(calls(*head, call("get_weather", city="x" * 8)))
        assert not accepts(calls(*head, call("get_weather", city="x" * 9)))
    assert accepts(calls(FIRST, call("get_weather", city=ref("$1.a_long_field.another_one"))))


# --- properties: any backward plan is accepted, one wrong reference refuses it ----------

# Any text but U+007F: llguidance 1.7.6 refuses it unescaped in a JSON string
# (JSON allows it, xgrammar accepts it), with or without a plan.
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x7f"), max_size=20)
LITERALS: dict[str, dict[str, tuple[st.SearchStrategy[Any], bool]]] = {
    "get_weather": {
        "city": (TEXT, True),
        "unit": (st.sampled_from(["celsius", "fahrenheit"]), False),
    },
    "add": {"a": (st.integers(-(10**9), 10**9), True), "b": (st.integers(-(10**9), 10**9), True)},
    "place_order": {
        "items": (
            # The keys in the schema's order, the order the engines hold a model to.
            st.lists(
                st.builds(lambda sku, count: {"sku": sku, "quantity": count}, TEXT, st.integers(0, 99)), max_size=2
            ),
            True,
        ),
        "note": (st.none() | TEXT, False),
    },
}
"""Each tool's arguments: a strategy for a literal value, and whether the argument is required."""


def references_before(position: int) -> st.SearchStrategy[dict[str, str]]:
    """A reference the plan's call `position` may make: to a call before it, a few steps deep."""
    steps = st.lists(st.from_regex(FIELD, fullmatch=True) | st.integers(0, 99), max_size=MAX_PATH)
    return st.builds(lambda n, path: Reference(n, tuple(path)).value(), st.integers(1, position - 1), steps)


@st.composite
def backward_plans(draw: st.DrawFn, min_size: int = 1) -> list[ToolCall]:
    """Plans whose every reference points to an earlier call."""
    plan = []
    for position in range(1, draw(st.integers(min_size, MAX_PLAN_CALLS)) + 1):
        name = draw(st.sampled_from(sorted(LITERALS)))
        arguments = {}
        for key, (literal, required) in LITERALS[name].items():
            if required or draw(st.booleans()):
                arguments[key] = draw(literal | references_before(position) if position > 1 else literal)
        plan.append(ToolCall(name=name, arguments=arguments, id=f"call_{position}"))
    return plan


def written(plan: list[ToolCall]) -> str:
    return JsonDialect().render_action(AssistantMessage(tool_calls=tuple(plan)))


@DETERMINISTIC
@given(backward_plans())
def test_any_backward_plan_is_accepted_and_parses_back(plan_grammar: Acceptor, plan: list[ToolCall]) -> None:
    text = written(plan)

    assert plan_accepts(plan_grammar, text)
    message = JsonDialect().parse(text, plan_request())
    assert [(c.name, c.arguments) for c in message.tool_calls] == [(c.name, c.arguments) for c in plan]


@DETERMINISTIC
@given(backward_plans(min_size=2), st.data())
def test_a_reference_to_itself_or_a_later_call_refuses_the_plan(
    plan_grammar: Acceptor, plan: list[ToolCall], data: st.DataObject
) -> None:
    position = data.draw(st.integers(1, len(plan)), label="position")
    target = plan[position - 1]
    key = data.draw(st.sampled_from(sorted(target.arguments)), label="argument")
    number = data.draw(st.integers(position, MAX_PLAN_CALLS + 1) | st.just(0), label="points to")
    wrong = dataclasses.replace(target, arguments={**target.arguments, key: Reference(number).value()})

    assert not plan_accepts(plan_grammar, written([*plan[: position - 1], wrong, *plan[position:]]))
