"""`Tool.from_schema`: tools known only by a JSON Schema, checked when made and when called."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentkit import Agent, Tool
from agentkit.dialects.gemma4_grammar import build_constraint
from agentkit.errors import ToolArgumentsError, ToolDefinitionError
from agentkit.runtimes import ScriptedRuntime
from tests.support.grammars import accepts

WORD = {
    "type": "object",
    "properties": {"word": {"type": "string", "minLength": 1}, "limit": {"type": "integer", "minimum": 1}},
    "required": ["word"],
    "additionalProperties": False,
}


def test_a_schema_tool_runs_with_keywords_and_refuses_arguments_its_schema_refuses() -> None:
    seen: list[dict[str, Any]] = []

    def look_up(**arguments: Any) -> dict[str, Any]:
        seen.append(arguments)
        return {"found": arguments["word"].upper()}

    lookup = Tool.from_schema("lookup", "Find a word.", WORD, look_up, examples=[{"word": "hi"}])
    assert lookup.spec.parameters == WORD
    assert lookup.spec.examples == ({"word": "hi"},)
    turn = {
        "tool_calls": [
            {"name": "lookup", "arguments": {"word": "hi", "limit": 2}},
            {"name": "lookup", "arguments": {"word": "", "limit": 0, "extra": True}},
        ]
    }
    result = Agent(tools=[lookup], runtime=ScriptedRuntime([turn, "ok"])).run("?")
    first, second = result.steps[0].tool_results
    assert first.content == {"found": "HI"}
    assert seen == [{"word": "hi", "limit": 2}]  # the refused call never ran
    assert second.is_error
    for problem in ("limit: 0 is less than the minimum of 1", "word: '' should be non-empty", "'extra' was unexpected"):
        assert problem in second.content


def test_a_key_that_is_no_python_name_reaches_a_function_with_kwargs() -> None:
    schema = {"type": "object", "properties": {"user-id": {"type": "integer"}}}
    tool = Tool.from_schema("who", "", schema, lambda **kw: kw["user-id"] * 2)
    assert tool.validate({"user-id": 21})() == 42


def test_an_async_function_is_awaited_on_the_loop_and_options_apply() -> None:
    async def slow(**_: Any) -> str:
        await asyncio.sleep(5)
        return "late"

    tool = Tool.from_schema("slow", "", {"type": "object"}, slow, timeout=0.05, requires_approval=False)
    assert tool.is_async
    assert tool.options.timeout == 0.05
    result = Agent(tools=[tool], runtime=ScriptedRuntime([{"tool_calls": [{"name": "slow"}]}, "ok"])).run("?")
    assert "ToolTimeoutError" in result.steps[0].tool_results[0].content


def test_the_grammar_holds_a_schema_tool_to_its_schema() -> None:
    tool = Tool.from_schema("lookup", "Find a word.", WORD, lambda **_: None)
    constraint = build_constraint([tool.spec], "required")
    assert accepts(constraint, '<|tool_call>call:lookup{limit:3,word:<|"|>hi<|"|>}<tool_call|>')
    assert not accepts(constraint, "<|tool_call>call:lookup{limit:3}<tool_call|>")  # word is required
    assert not accepts(constraint, '<|tool_call>call:lookup{limit:0,word:<|"|>hi<|"|>}<tool_call|>')


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"type": "objekt"}, "parameters is not a valid JSON Schema (2020-12) at type:"),
        ({"properties": 3}, "parameters is not a valid JSON Schema (2020-12) at properties: 3 is not of type 'object'"),
        ({"type": "object", "required": "word"}, "at required: 'word' is not of type 'array'"),
        ({"type": "string"}, "parameters must describe an object (the call's arguments), not 'string'"),
        ({"$ref": "#/$defs/missing"}, "parameters cannot be used: PointerToNowhere"),
        (["word"], "parameters must be a JSON Schema object, got list"),
    ],
)
def test_a_schema_that_is_not_valid_2020_12_is_refused_when_the_tool_is_made(parameters: Any, message: str) -> None:
    with pytest.raises(ToolDefinitionError, match="tool 'lookup'") as refused:
        Tool.from_schema("lookup", "", parameters, print)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "look.up"}, "tool name 'look.up' must be"),
        ({"fn": 3}, "fn must be callable, got int"),
        ({"examples": [{"word": 3}]}, "example {'word': 3} does not fit: word: 3 is not of type 'string'"),
        ({"result": {"type": 5}}, "result is not a valid JSON Schema"),
        ({"timeout": -1}, "timeout must be a finite number of seconds > 0"),
        ({"retry": 2}, "unknown option(s) ['retry']"),
    ],
)
def test_every_other_part_is_checked_when_the_tool_is_made(kwargs: dict[str, Any], message: str) -> None:
    given: dict[str, Any] = {"name": "lookup", "description": "", "parameters": WORD, "fn": print, **kwargs}
    with pytest.raises(ToolDefinitionError) as refused:
        Tool.from_schema(**given)
    assert message in str(refused.value)


def test_validate_raises_tool_arguments_error_listing_what_is_wrong() -> None:
    tool = Tool.from_schema("lookup", "", WORD, print)
    with pytest.raises(ToolArgumentsError, match=r"\(arguments\): 'word' is a required property"):
        tool.validate({})
