"""Valid by construction: every turn the grammar lets through parses, and its calls validate.

A walk down the turn's grammar (tests/support/grammar_walk.py) draws a string
the grammar accepts; both engines must accept it (their serialisations agree),
and the strict parser must read it into calls whose arguments are valid under
each tool's JSON Schema, or into text where text is allowed. The tools are
random (the strategies of test_gemma4_grammar.py, plus the schemas where the
grammar went wrong before: one-sided number ranges, free-form values under
caps, names and keys at their limits), and so are the options.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentkit.dialects.gemma4 import RESPONSE_OPEN, TURN_END, Gemma4Dialect, GrammarOptions
from agentkit.dialects.gemma4_grammar import MAX_DEPTH, build_constraint
from agentkit.errors import ToolDefinitionError
from agentkit.grammar import Grammar
from agentkit.messages import UserMessage
from agentkit.runtime import ModelRequest
from agentkit.tool import ToolSpec
from tests.support.grammar_walk import walks
from tests.support.grammars import accepts

from .test_gemma4_grammar import toolboxes

_TRICKY: list[dict[str, Any]] = [
    {"type": "number", "minimum": 0},  # one-sided: no exponent may run past a float
    {"type": "integer", "exclusiveMaximum": 5},
    {},  # Pydantic's Any: free-form, nested
    {"type": "object", "additionalProperties": True},  # a free-form dict: any keys
    {"type": "array", "items": {}},
    {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
]


@st.composite
def tool_sets(draw: st.DrawFn) -> list[ToolSpec]:
    specs, _ = draw(toolboxes())
    tricky = draw(st.lists(st.sampled_from(_TRICKY), max_size=3))
    if tricky:
        properties = {f"t{i}": schema for i, schema in enumerate(tricky)}
        parameters = {"type": "object", "properties": properties, "required": sorted(properties)}
        specs.append(ToolSpec(name="t" * 64, description="", parameters=parameters | {"additionalProperties": False}))
    return specs


_OPTIONS = st.builds(
    GrammarOptions,
    thinking=st.booleans(),
    max_string=st.none() | st.integers(1, 8),
    max_items=st.none() | st.integers(1, 4),
    max_text=st.none() | st.integers(1, 12),
    parallel_calls=st.booleans(),
)


def check_turn(text: str, grammar_options: GrammarOptions, request: ModelRequest) -> None:
    """`text` (a turn the grammar accepted) parses strictly, and its calls validate."""
    for stop in (TURN_END, RESPONSE_OPEN):  # the engine stops on these: the parser never sees them
        text = text.removesuffix(stop)
    dialect = Gemma4Dialect(grammar=grammar_options)
    message = dialect.parse(text, request)
    tools = {spec.name: spec for spec in request.allowed_tools}
    for call in message.tool_calls:
        assert call.name in tools
        jsonschema.validate(call.arguments, tools[call.name].parameters)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tool_sets(), st.sampled_from(["auto", "required", "named"]), _OPTIONS, st.data())
def test_every_turn_the_grammar_accepts_parses_and_validates(
    specs: list[ToolSpec], choice: str, options: GrammarOptions, data: st.DataObject
) -> None:
    tool_choice = specs[-1].name if choice == "named" else choice
    request = ModelRequest(messages=[UserMessage(text="?")], tools=specs, tool_choice=tool_choice)
    constraint = build_constraint(specs, tool_choice, options)
    assert constraint is not None
    assert isinstance(constraint.value, Grammar)
    text = data.draw(walks(constraint.value))
    assert accepts(constraint, text)
    check_turn(text, options, request)


def test_free_form_values_are_capped_in_items_and_depth() -> None:
    spec = ToolSpec(name="f", description="", parameters={"type": "object", "properties": {"x": {}}, "required": ["x"]})

    def ok(value: str) -> bool:
        return accepts(
            build_constraint([spec], "required", max_items=4), f"<|tool_call>call:f{{x:{value}}}<tool_call|>"
        )

    assert ok("[1,2,3,4]")
    assert not ok("[1,2,3,4,5,6,7,8,9]")
    assert ok("{a:1,b:2,c:3,d:4}")
    assert not ok("{a:1,b:2,c:3,d:4,e:5}")
    nested = "1"
    for depth in range(MAX_DEPTH + 1):
        nested = f"[{nested}]"
        assert ok(nested) == (depth < MAX_DEPTH), depth


@pytest.mark.parametrize("number", ["1e999", "1e308", "-1e999", "9" * 400 + ".5"])
def test_a_number_the_parser_would_refuse_is_refused(number: str) -> None:
    for schema in ({}, {"type": "number"}, {"type": "number", "minimum": 0}, {"type": "number", "maximum": 0}):
        spec = ToolSpec(name="f", description="", parameters={"type": "object", "properties": {"x": schema}})
        assert not accepts(build_constraint([spec], "required"), f"<|tool_call>call:f{{x:{number}}}<tool_call|>")


def test_an_empty_turn_is_refused() -> None:
    spec = ToolSpec(name="f", description="", parameters={"type": "object", "properties": {}})
    for options in ({}, {"thinking": True}):
        for text in ("", TURN_END, " ", "\n" + TURN_END):
            assert not accepts(build_constraint([spec], "auto", **options), text), (options, text)


@pytest.mark.parametrize("name", ["uber.ride", "get-weather", "9lives", "", "x" * 65])
def test_a_tool_name_the_parser_cannot_read_is_refused_when_the_spec_is_made(name: str) -> None:
    with pytest.raises(ToolDefinitionError, match="tool name"):
        ToolSpec(name=name, description="", parameters={"type": "object", "properties": {}})
