"""Plans in Gemma 4's syntax: references to earlier calls' results, valid by construction.

The plan grammar must accept exactly the plans the renderer writes (calls
whose top-level arguments are values or references to earlier calls) and
refuse a reference to the call itself, to a later call, or inside a value;
every turn it lets through parses into calls whose references point backwards.
Both grammar engines must agree on each verdict (`accepts`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentkit.dialects.gemma4 import RESPONSE_OPEN, TURN_END, Gemma4Dialect, GrammarOptions, render_call
from agentkit.dialects.gemma4_grammar import build_constraint
from agentkit.grammar import Grammar
from agentkit.messages import ToolCall, UserMessage
from agentkit.planning import MAX_PLAN_CALLS, Reference, reference, references
from agentkit.runtime import ModelRequest
from agentkit.tool import ToolSpec
from tests.support.grammar_walk import walks
from tests.support.grammars import accepts

from .test_gemma4_grammar import toolboxes

CAPITAL = ToolSpec(
    name="capital",
    description="The capital of a country.",
    parameters={"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]},
)
WEATHER = ToolSpec(
    name="weather",
    description="The weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
)
TOOLS = [CAPITAL, WEATHER]


def plan_text(*calls: str) -> str:
    return "".join(f"<|tool_call>call:{call}<tool_call|>" for call in calls) + TURN_END


def plan_grammar(tools: list[ToolSpec] = TOOLS, **options: Any) -> Any:
    constraint = build_constraint(tools, "auto", plan=True, **options)
    assert constraint is not None
    return constraint


def test_references_to_earlier_calls_are_accepted_and_read_back() -> None:
    text = plan_text(
        'capital{country:<|"|>France<|"|>}',
        'capital{country:<|"|>Norway<|"|>}',
        "weather{city:$1.city,days:3}",
        "weather{city:$2.name.0.x_1}",
        "weather{city:$3,days:$4.days}",
    )
    assert accepts(plan_grammar(), text)
    message = Gemma4Dialect().parse(text.removesuffix(TURN_END), _request(plan=True))
    assert [c.arguments for c in message.tool_calls][2:] == [
        {"city": {"$ref": "$1.city"}, "days": 3},
        {"city": {"$ref": "$2.name.0.x_1"}},
        {"city": {"$ref": "$3"}, "days": {"$ref": "$4.days"}},
    ]
    assert "".join(render_call(c) for c in message.tool_calls) + TURN_END == text


@pytest.mark.parametrize(
    ("calls", "why"),
    [
        (["capital{country:$1}"], "the first call has nothing to refer to"),
        (['capital{country:<|"|>a<|"|>}', "weather{city:$2}"], "a call referring to itself"),
        (['capital{country:<|"|>a<|"|>}', "weather{city:$3}", "weather{city:$1}"], "a later call"),
        (['capital{country:<|"|>a<|"|>}', "weather{city:$0}"], "there is no call 0"),
        (['capital{country:<|"|>a<|"|>}', "weather{city:$01}"], "numbers are written plainly"),
        (['capital{country:<|"|>a<|"|>}', "weather{city:$1.}"], "an empty step"),
        (['capital{country:<|"|>a<|"|>}', "weather{city:$1.a.b.c.d.e}"], "more than MAX_PATH steps"),
        (['capital{country:<|"|>a<|"|>}', "weather{city:$1.a-b}"], "a field that is no identifier"),
        (['capital{country:<|"|>a<|"|>}', 'weather{city:<|"|>x<|"|>,days:$1 }'], "a space"),
    ],
)
def test_a_reference_that_does_not_point_back_plainly_is_refused(calls: list[str], why: str) -> None:
    assert not accepts(plan_grammar(), plan_text(*calls)), why


def test_a_reference_only_stands_for_a_whole_top_level_argument() -> None:
    nested = ToolSpec(
        name="f",
        description="",
        parameters={
            "type": "object",
            "properties": {"xs": {"type": "array", "items": {"type": "string"}}, "o": {"type": "object"}},
        },
    )
    tools = [CAPITAL, nested]
    first = 'capital{country:<|"|>a<|"|>}'
    assert accepts(plan_grammar(tools), plan_text(first, "f{xs:$1}"))
    assert not accepts(plan_grammar(tools), plan_text(first, "f{xs:[$1]}"))
    assert not accepts(plan_grammar(tools), plan_text(first, "f{o:{a:$1}}"))


def test_a_plan_holds_at_most_max_plan_calls() -> None:
    call = 'capital{country:<|"|>a<|"|>}'
    assert accepts(plan_grammar(), plan_text(*[call] * MAX_PLAN_CALLS))
    assert not accepts(plan_grammar(), plan_text(*[call] * (MAX_PLAN_CALLS + 1)))
    last = f"weather{{city:${MAX_PLAN_CALLS - 1}}}"
    assert accepts(plan_grammar(), plan_text(*[call] * (MAX_PLAN_CALLS - 1), last))


def test_outside_a_plan_no_reference_is_accepted() -> None:
    text = plan_text('capital{country:<|"|>a<|"|>}', "weather{city:$1}")
    assert not accepts(build_constraint(TOOLS, "auto"), text)
    assert accepts(
        build_constraint(TOOLS, "auto"), plan_text('capital{country:<|"|>a<|"|>}', 'weather{city:<|"|>b<|"|>}')
    )


def test_a_plan_turn_may_still_answer_and_each_option_applies() -> None:
    assert accepts(plan_grammar(), "Paris." + TURN_END)
    capped = plan_grammar(thinking=True, max_string=4)
    assert accepts(capped, "<|channel>hm<channel|>" + plan_text('capital{country:<|"|>abcd<|"|>}', "weather{city:$1}"))
    assert not accepts(capped, plan_text('capital{country:<|"|>abcde<|"|>}'))
    typed = build_constraint(TOOLS, "auto", plan=True, output_schema={"type": "integer"})
    assert typed is not None
    assert accepts(typed, "42" + TURN_END)
    assert accepts(typed, plan_text('capital{country:<|"|>a<|"|>}', "weather{city:$1}"))


def test_the_plan_prompt_says_how_to_refer_and_only_for_plans() -> None:
    dialect = Gemma4Dialect()
    planned = dialect.render(_request(plan=True))
    assert "`$2.city`" in planned
    assert "earlier call" in planned
    assert "$2.city" not in dialect.render(_request(plan=False))
    assert "$2.city" not in dialect.render(dataclasses.replace(_request(plan=True), tool_choice="none"))


def _request(*, plan: bool) -> ModelRequest:
    return ModelRequest(messages=[UserMessage(text="Weather in France's capital?")], tools=TOOLS, plan=plan)


@st.composite
def plans(draw: st.DrawFn) -> tuple[list[ToolSpec], list[ToolCall]]:
    """Tools, and a plan the renderer writes: valid calls, some top-level arguments
    replaced by references to earlier calls (with a path or without)."""
    specs, calls = draw(toolboxes())
    size = draw(st.integers(1, MAX_PLAN_CALLS))
    plan = []
    for position in range(1, size + 1):
        call = calls[draw(st.integers(0, len(calls) - 1))]
        arguments = dict(call.arguments)
        for key in sorted(arguments):
            if position > 1 and draw(st.booleans()):
                number = draw(st.integers(1, position - 1))
                path = draw(st.lists(st.sampled_from(["a", "city", "x_1", 0, 12]), max_size=4))
                arguments[key] = Reference(number, tuple(path)).value()
        plan.append(ToolCall(name=call.name, arguments=arguments))
    return specs, plan


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(plans(), st.data())
def test_the_grammar_accepts_every_plan_the_renderer_writes_and_no_forward_reference(
    drawn: tuple[list[ToolSpec], list[ToolCall]], data: st.DataObject
) -> None:
    specs, plan = drawn
    constraint = plan_grammar(specs)
    text = "".join(render_call(c) for c in plan) + TURN_END
    assert accepts(constraint, text)
    message = Gemma4Dialect().parse(text.removesuffix(TURN_END), _request(plan=True))
    assert [(c.name, c.arguments) for c in message.tool_calls] == [(c.name, c.arguments) for c in plan]
    # The same plan with one reference turned to itself or a later call is refused.
    with_refs = [(i, key) for i, c in enumerate(plan) for key, v in c.arguments.items() if reference(v)]
    if with_refs:
        index, key = data.draw(st.sampled_from(with_refs))
        number = data.draw(st.integers(index + 1, MAX_PLAN_CALLS + 1))
        wrong = dataclasses.replace(plan[index], arguments={**plan[index].arguments, key: Reference(number).value()})
        bad = [*plan[:index], wrong, *plan[index + 1 :]]
        assert not accepts(constraint, "".join(render_call(c) for c in bad) + TURN_END)


_OPTIONS = st.builds(
    GrammarOptions,
    thinking=st.booleans(),
    max_string=st.none() | st.integers(1, 8),
    max_items=st.none() | st.integers(1, 4),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(toolboxes(), _OPTIONS, st.data())
def test_every_plan_the_grammar_accepts_parses_and_refers_only_backwards(
    drawn: tuple[list[ToolSpec], list[ToolCall]], options: GrammarOptions, data: st.DataObject
) -> None:
    specs, _ = drawn
    constraint = build_constraint(specs, "required", options, plan=True)
    assert constraint is not None
    assert isinstance(constraint.value, Grammar)
    text = data.draw(walks(constraint.value))
    assert accepts(constraint, text)
    for stop in (TURN_END, RESPONSE_OPEN):
        text = text.removesuffix(stop)
    request = ModelRequest(messages=[UserMessage(text="?")], tools=specs, tool_choice="required", plan=True)
    message = Gemma4Dialect(grammar=options).parse(text, request)
    tools = {spec.name: spec for spec in specs}
    assert 1 <= len(message.tool_calls) <= MAX_PLAN_CALLS
    for position, call in enumerate(message.tool_calls, start=1):
        parameters = tools[call.name].parameters
        literal = {k: v for k, v in call.arguments.items() if reference(v) is None}
        for value in call.arguments.values():
            ref = reference(value)
            if ref is not None:
                assert ref.number < position, (position, call)
            else:
                assert not references(value), "a reference inside a value"
        # The literal arguments fit the schema; a referenced one counts as present.
        schema = {**parameters, "required": [k for k in parameters.get("required", ()) if k in literal]}
        jsonschema.validate(literal, schema)
        assert set(parameters.get("required", ())) <= set(call.arguments)
