"""Unit tests for the `json` dialect: prompts, the decoding constraint, parsing.

The constraint is checked the way vLLM enforces it: compiled by xgrammar (vLLM's
structured-output backend) exactly as vLLM 0.32's xgrammar backend compiles a
`json` request with `disable_any_whitespace`, then fed whole strings.
"""

from __future__ import annotations

import datetime
import enum
import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkit.dialect import Constraint, get_dialect
from agentkit.dialects.json_action import GEMMA3_TURNS, GEMMA4_TURNS, JsonDialect, TurnFormat
from agentkit.errors import ModelOutputError
from agentkit.events import output_schema, parse_output
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResult, UserMessage
from agentkit.runtime import ModelRequest
from agentkit.schema import bound, closed
from agentkit.tool import ToolSpec, tool

DETERMINISTIC = settings(derandomize=True, database=None, deadline=None, max_examples=40)


# --- tools and types used throughout ------------------------------------------------


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Get the current weather for a city.

    Args:
        city: The city's name, e.g. "Paris".
        unit: The temperature unit.
    """
    return f"18 degrees in {city}"


@tool(examples=[{"a": 2, "b": 3}, {"a": -1, "b": 10}])
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Item(pydantic.BaseModel):
    sku: str
    quantity: int


@tool
def place_order(items: list[Item], note: str | None = None) -> str:
    """Place an order for some items."""
    return "ok"


@tool
def read_file(path: Path) -> str:
    """Read a text file."""
    return ""


class City(pydantic.BaseModel):
    name: str
    country: str


class Forecast(pydantic.BaseModel):
    city: City
    temperatures: list[float]
    summary: str


WEATHER = get_weather.spec
ADD = add.spec
ORDER = place_order.spec
QUESTION = UserMessage(text="What is the weather in Paris?")


def request(
    *messages: Message,
    tools: tuple[ToolSpec, ...] = (WEATHER, ADD),
    tool_choice: str = "auto",
    output: dict[str, Any] | None = None,
) -> ModelRequest:
    return ModelRequest(
        messages=list(messages) or [QUESTION], tools=tools, tool_choice=tool_choice, output_schema=output
    )


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def calls(*items: dict[str, Any]) -> str:
    return compact({"tool_calls": list(items)})


def answer(value: Any) -> str:
    return compact({"final_answer": value})


# --- the engine's view of a constraint ------------------------------------------------

Grammar = Callable[[str], bool]


class Acceptor:
    """A constraint compiled as vLLM's backends compile it: llguidance (the
    default, with agentkit's settings: compact, objects closed) and xgrammar."""

    def __init__(self, constraint: Constraint, compiler: Any, bytes_tokenizer: Any) -> None:
        import llguidance

        assert constraint.kind == "json"
        self.compiled = compiler.compile_json_schema(
            json.dumps(constraint.value), any_whitespace=False, separators=(",", ":")
        )
        self.lark = llguidance.LLMatcher.grammar_from_json_schema(
            closed(constraint.value), defaults={"whitespace_flexible": False}
        )
        self.bytes_tokenizer = bytes_tokenizer

    def by(self, engine: str, text: str) -> bool:
        import llguidance
        import xgrammar as xgr

        if engine == "guidance":
            matcher = llguidance.LLMatcher(self.bytes_tokenizer, self.lark, log_level=0)
            return bool(matcher.consume_tokens(self.bytes_tokenizer.tokenize_str(text)) and matcher.is_accepting())
        xmatcher = xgr.GrammarMatcher(self.compiled, terminate_without_stop_token=True)
        return bool(xmatcher.accept_string(text)) and bool(xmatcher.is_terminated())

    def __call__(self, text: str) -> bool:
        """Whether both engines accept `text` (they must agree)."""
        verdicts = {engine: self.by(engine, text) for engine in ("guidance", "xgrammar")}
        assert len(set(verdicts.values())) == 1, f"the engines disagree on {text!r}: {verdicts}"
        return verdicts["guidance"]


@pytest.fixture(scope="module")
def compile_constraint() -> Callable[[Constraint], Acceptor]:
    """Compile a constraint as vLLM's backends do; return a string acceptor."""
    import llguidance
    import xgrammar as xgr  # installed with vLLM: the backends vLLM compiles these with

    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo([]), cache_enabled=False)
    bytes_tokenizer = llguidance.LLTokenizer("byte")
    return lambda constraint: Acceptor(constraint, compiler, bytes_tokenizer)


def schema_accepts(constraint: Constraint, text: str) -> bool:
    validator = jsonschema.Draft202012Validator(constraint.value)
    return not list(validator.iter_errors(json.loads(text)))


def shown_actions(prompt: str, turns: TurnFormat) -> list[str]:
    """Every action the prompt shows the model writing (worked examples and history).

    A model turn holds one action, or with results in the turn, one JSON line
    each for its calls, their results and what follows.
    """
    actions = []
    for body in re.findall(re.escape(turns.model) + r"(.*?)" + re.escape(turns.end), prompt, flags=re.DOTALL):
        actions.extend(
            line for line in body.split("\n") if line and not line.startswith(('{"tool_result"', '{"tool_error"'))
        )
    return actions


def turn_sequence(prompt: str, turns: TurnFormat) -> list[str]:
    """The prompt's turn markers in order, e.g. ["system", "end", "user", "end", "model"]."""
    markers = {turns.user: "user", turns.model: "model", turns.end: "end"}
    if turns.system is not None:
        markers[turns.system] = "system"
    pattern = "|".join(re.escape(m) for m in markers)
    return [markers[m] for m in re.findall(pattern, prompt)]


def well_formed(sequence: list[str]) -> bool:
    """Every turn opened is closed before the next opens; the prompt ends opening the model's turn."""
    *closed, last = sequence
    openers, ends = closed[0::2], closed[1::2]
    return last == "model" and len(openers) == len(ends) and "end" not in openers and set(ends) <= {"end"}


# --- render: turn markers ---------------------------------------------------------------


def test_dialect_is_registered_under_json() -> None:
    dialect = get_dialect("json", turns="gemma3", examples=2)

    assert isinstance(dialect, JsonDialect)
    assert dialect.turns is GEMMA3_TURNS
    assert dialect.examples == 2
    assert JsonDialect().turns is GEMMA4_TURNS


@pytest.mark.parametrize("turns", [GEMMA3_TURNS, GEMMA4_TURNS], ids=lambda t: t.name)
@pytest.mark.parametrize("examples", [0, 2])
def test_render_starts_with_bos_and_ends_with_the_model_turn(turns: TurnFormat, examples: int) -> None:
    prompt = JsonDialect(turns=turns, examples=examples).render(request(SystemMessage(text="Be brief."), QUESTION))

    assert prompt.startswith("<bos>")
    assert prompt.count("<bos>") == 1
    assert prompt.endswith(turns.generation or turns.model)
    assert prompt.count("Be brief.") == 1
    assert prompt.count(QUESTION.text) == 1


def test_stop_is_the_end_of_turn_marker() -> None:
    assert JsonDialect(turns=GEMMA3_TURNS).stop() == ("<end_of_turn>",)
    assert JsonDialect(turns=GEMMA4_TURNS).stop() == ("<turn|>",)


def test_gemma3_folds_system_text_into_the_first_user_turn() -> None:
    conversation = request(
        SystemMessage(text="  Be brief.  "),
        SystemMessage(text="Use metric units."),
        QUESTION,
        AssistantMessage(text="18 degrees."),
        UserMessage(text="And tomorrow?"),
    )

    prompt = JsonDialect(turns=GEMMA3_TURNS).render(conversation)

    assert "system" not in prompt
    assert prompt.startswith("<bos><start_of_turn>user\nBe brief.\n\nUse metric units.\n\nTools you can call:\n")
    assert f'{{"final_answer":"..."}}.\n\n{QUESTION.text}<end_of_turn>\n' in prompt
    assert "<start_of_turn>user\nAnd tomorrow?<end_of_turn>\n" in prompt
    assert prompt.count("<start_of_turn>user\n") == 2


def test_gemma4_writes_a_system_turn() -> None:
    prompt = JsonDialect(turns=GEMMA4_TURNS).render(request(SystemMessage(text="Be brief."), QUESTION))

    assert prompt.startswith("<bos><|turn>system\nBe brief.\n\nTools you can call:\n")
    system_turn, rest = prompt.removeprefix("<bos>").split("<turn|>\n", 1)
    assert '{"final_answer":"..."}' in system_turn
    assert rest == f"<|turn>user\n{QUESTION.text}<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"


def test_a_mid_conversation_system_message_becomes_a_user_turn() -> None:
    prompt = JsonDialect(turns=GEMMA4_TURNS).render(
        request(QUESTION, AssistantMessage(text="18."), SystemMessage(text="Now be verbose."))
    )

    assert prompt.endswith("<|turn>user\nNow be verbose.<turn|>\n<|turn>model\n<|channel>thought\n<channel|>")
    assert prompt.count("<|turn>system\n") == 1


# --- render: golden prompts -------------------------------------------------------------


def test_golden_gemma3_plain_question() -> None:
    conversation = ModelRequest(messages=[SystemMessage(text="Answer briefly."), UserMessage(text="What is 2+2?")])

    prompt = JsonDialect(turns="gemma3").render(conversation)

    assert prompt == (
        "<bos>"
        "<start_of_turn>user\n"
        "Answer briefly.\n"
        "\n"
        'To give the final answer, answer {"final_answer":"..."}.\n'
        "\n"
        "What is 2+2?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


WEATHER_SPEC = ToolSpec(
    name="get_weather",
    description="Get the weather.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
WEATHER_PROTOCOL = (
    "Tools you can call:\n"
    '{"name":"get_weather","description":"Get the weather.","parameters":'
    '{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}\n'
    'To call tools, answer {"tool_calls":[{"name":...,"arguments":{...}}]}.\n'
    'To give the final answer, answer {"final_answer":"..."}.'
)
WEATHER_CONVERSATION = ModelRequest(
    messages=[
        UserMessage(text="Weather in Paris?"),
        AssistantMessage(tool_calls=(ToolCall(name="get_weather", arguments={"city": "Paris"}, id="c1"),)),
        ToolResult(call_id="c1", name="get_weather", content={"temp_c": 18}),
        AssistantMessage(text="It is 18°C in Paris."),
        UserMessage(text="And in Oslo?"),
    ],
    tools=[WEATHER_SPEC],
)


def test_golden_gemma4_results_in_the_model_turn() -> None:
    prompt = JsonDialect(turns="gemma4").render(WEATHER_CONVERSATION)

    assert prompt == (
        "<bos>"
        f"<|turn>system\n{WEATHER_PROTOCOL}<turn|>\n"
        "<|turn>user\nWeather in Paris?<turn|>\n"
        "<|turn>model\n"
        '{"tool_calls":[{"name":"get_weather","arguments":{"city":"Paris"}}]}\n'
        '{"tool_result":{"name":"get_weather","content":{"temp_c":18}}}\n'
        '{"final_answer":"It is 18°C in Paris."}<turn|>\n'
        "<|turn>user\nAnd in Oslo?<turn|>\n"
        "<|turn>model\n<|channel>thought\n<channel|>"
    )


def test_golden_gemma4_results_as_a_user_turn() -> None:
    prompt = JsonDialect(turns="gemma4", results_in_turn=False).render(WEATHER_CONVERSATION)

    assert prompt == (
        "<bos>"
        f"<|turn>system\n{WEATHER_PROTOCOL}<turn|>\n"
        "<|turn>user\nWeather in Paris?<turn|>\n"
        '<|turn>model\n{"tool_calls":[{"name":"get_weather","arguments":{"city":"Paris"}}]}<turn|>\n'
        '<|turn>user\n{"tool_result":{"name":"get_weather","content":{"temp_c":18}}}<turn|>\n'
        '<|turn>model\n{"final_answer":"It is 18°C in Paris."}<turn|>\n'
        "<|turn>user\nAnd in Oslo?<turn|>\n"
        "<|turn>model\n<|channel>thought\n<channel|>"
    )


ADDER = ToolSpec(
    name="add",
    description="Add two numbers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
    result={"type": "integer"},
    examples=({"a": 2, "b": 3},),
)
ADDER_TOOL_LINE = (
    '{"name":"add","description":"Add two numbers.","parameters":'
    '{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"]}}'
)


def test_golden_gemma3_worked_example() -> None:
    adder = replace(ADDER, description="Add two numbers.\n\nBoth must be integers.")
    conversation = ModelRequest(messages=[UserMessage(text="What is 7+5?")], tools=[adder])

    prompt = JsonDialect(turns="gemma3", examples=1).render(conversation)

    assert prompt == (
        "<bos>"
        "<start_of_turn>user\n"
        "Tools you can call:\n"
        '{"name":"add","description":"Add two numbers.\\n\\nBoth must be integers.","parameters":'
        '{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"]}}\n'
        'To call tools, answer {"tool_calls":[{"name":...,"arguments":{...}}]}.\n'
        'To give the final answer, answer {"final_answer":"..."}.\n'
        "\n"
        "Add two numbers: a 2, b 3?<end_of_turn>\n"
        "<start_of_turn>model\n"
        '{"tool_calls":[{"name":"add","arguments":{"a":2,"b":3}}]}\n'
        '{"tool_result":{"name":"add","content":3}}\n'
        '{"final_answer":"add says: 3"}<end_of_turn>\n'
        "<start_of_turn>user\nWhat is 7+5?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_golden_gemma4_worked_example_without_an_answer_closes_its_turn() -> None:
    conversation = ModelRequest(messages=[UserMessage(text="What is 7+5?")], tools=[ADDER], tool_choice="required")

    prompt = JsonDialect(turns="gemma4", examples=1).render(conversation)

    assert prompt == (
        "<bos>"
        "<|turn>system\n"
        "Tools you can call:\n"
        f"{ADDER_TOOL_LINE}\n"
        'To call tools, answer {"tool_calls":[{"name":...,"arguments":{...}}]}.<turn|>\n'
        "<|turn>user\nAdd two numbers: a 2, b 3?<turn|>\n"
        "<|turn>model\n"
        '{"tool_calls":[{"name":"add","arguments":{"a":2,"b":3}}]}\n'
        '{"tool_result":{"name":"add","content":3}}\n'
        "<turn|>\n"
        "<|turn>user\nWhat is 7+5?<turn|>\n"
        "<|turn>model\n<|channel>thought\n<channel|>"
    )


def test_golden_gemma4_worked_example_with_a_typed_answer() -> None:
    conversation = ModelRequest(
        messages=[UserMessage(text="What is 7+5?")], tools=[ADDER], output_schema={"type": "integer"}
    )

    prompt = JsonDialect(turns="gemma4", examples=1).render(conversation)

    assert prompt == (
        "<bos>"
        "<|turn>system\n"
        "Tools you can call:\n"
        f"{ADDER_TOOL_LINE}\n"
        'To call tools, answer {"tool_calls":[{"name":...,"arguments":{...}}]}.\n'
        'To give the final answer, answer {"final_answer":...} where the answer fits this JSON Schema: '
        '{"type":"integer"}<turn|>\n'
        "<|turn>user\nAdd two numbers: a 2, b 3?<turn|>\n"
        "<|turn>model\n"
        '{"tool_calls":[{"name":"add","arguments":{"a":2,"b":3}}]}\n'
        '{"tool_result":{"name":"add","content":3}}\n'
        '{"final_answer":3}<turn|>\n'
        "<|turn>user\nWhat is 7+5?<turn|>\n"
        "<|turn>model\n<|channel>thought\n<channel|>"
    )


# --- render: history ----------------------------------------------------------------


TWO_RESULTS = request(
    QUESTION,
    AssistantMessage(
        tool_calls=(
            ToolCall(name="get_weather", arguments={"city": "Paris"}, id="1"),
            ToolCall(name="add", arguments={"a": 1, "b": "x"}, id="2"),
        )
    ),
    ToolResult(call_id="1", name="get_weather", content="18 degrees, sunny"),
    ToolResult(call_id="2", name="add", content="b: Input should be a valid integer", is_error=True),
)
TWO_CALLS = (
    '{"tool_calls":[{"name":"get_weather","arguments":{"city":"Paris"}},{"name":"add","arguments":{"a":1,"b":"x"}}]}'
)
TWO_LINES = (
    '{"tool_result":{"name":"get_weather","content":"18 degrees, sunny"}}\n'
    '{"tool_error":{"name":"add","content":"b: Input should be a valid integer"}}'
)


def test_tool_results_as_a_user_turn_with_one_json_line_each() -> None:
    prompt = JsonDialect(turns=GEMMA4_TURNS, results_in_turn=False).render(TWO_RESULTS)

    assert prompt.endswith(
        f"<|turn>model\n{TWO_CALLS}<turn|>\n<|turn>user\n{TWO_LINES}<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
    )


def test_tool_results_in_the_model_turn_leave_it_open() -> None:
    prompt = JsonDialect(turns=GEMMA4_TURNS).render(TWO_RESULTS)

    # The model goes on writing in the same turn, right after its results.
    assert prompt.endswith(f"<|turn>user\n{QUESTION.text}<turn|>\n<|turn>model\n{TWO_CALLS}\n{TWO_LINES}\n")


CALL_RESULT_CALL_RESULT = request(
    QUESTION,
    AssistantMessage(tool_calls=(ToolCall(name="add", arguments={"a": 1, "b": 2}, id="1"),)),
    ToolResult(call_id="1", name="add", content=3),
    AssistantMessage(tool_calls=(ToolCall(name="add", arguments={"a": 3, "b": 4}, id="2"),)),
    ToolResult(call_id="2", name="add", content=7),
)


def test_results_separated_by_a_call_are_separate_user_turns() -> None:
    prompt = JsonDialect(turns=GEMMA4_TURNS, results_in_turn=False).render(CALL_RESULT_CALL_RESULT)

    assert prompt.endswith(
        '<|turn>model\n{"tool_calls":[{"name":"add","arguments":{"a":1,"b":2}}]}<turn|>\n'
        '<|turn>user\n{"tool_result":{"name":"add","content":3}}<turn|>\n'
        '<|turn>model\n{"tool_calls":[{"name":"add","arguments":{"a":3,"b":4}}]}<turn|>\n'
        '<|turn>user\n{"tool_result":{"name":"add","content":7}}<turn|>\n'
        "<|turn>model\n<|channel>thought\n<channel|>"
    )


def test_calls_and_results_in_the_model_turn_are_one_turn() -> None:
    prompt = JsonDialect(turns=GEMMA4_TURNS).render(CALL_RESULT_CALL_RESULT)

    assert prompt.endswith(
        f"<|turn>user\n{QUESTION.text}<turn|>\n"
        "<|turn>model\n"
        '{"tool_calls":[{"name":"add","arguments":{"a":1,"b":2}}]}\n'
        '{"tool_result":{"name":"add","content":3}}\n'
        '{"tool_calls":[{"name":"add","arguments":{"a":3,"b":4}}]}\n'
        '{"tool_result":{"name":"add","content":7}}\n'
    )
    assert prompt.count("<|turn>model\n") == 1


def test_a_user_message_closes_an_open_model_turn() -> None:
    conversation = request(*CALL_RESULT_CALL_RESULT.messages, UserMessage(text="Go on."))

    prompt = JsonDialect(turns=GEMMA4_TURNS).render(conversation)

    assert prompt.endswith(
        '{"tool_result":{"name":"add","content":7}}\n<turn|>\n'
        "<|turn>user\nGo on.<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
    )


@pytest.mark.parametrize(
    ("message", "typed", "expected"),
    [
        (AssistantMessage(text="It is 18 degrees."), False, '{"final_answer":"It is 18 degrees."}'),
        (AssistantMessage(text='Say "hi"\nthen go'), False, '{"final_answer":"Say \\"hi\\"\\nthen go"}'),
        (AssistantMessage(text="Zürich: 18 °C"), False, '{"final_answer":"Zürich: 18 °C"}'),
        (AssistantMessage(text='{"city": "Paris"}'), False, '{"final_answer":"{\\"city\\": \\"Paris\\"}"}'),
        (AssistantMessage(text="[1, 2]"), False, '{"final_answer":"[1, 2]"}'),
        (AssistantMessage(text="42"), False, '{"final_answer":"42"}'),
        (AssistantMessage(text='{"city": "Paris", "temp": 18}'), True, '{"final_answer":{"city":"Paris","temp":18}}'),
        (AssistantMessage(text="[1, 2]"), True, '{"final_answer":[1,2]}'),
        (AssistantMessage(text="42"), True, '{"final_answer":42}'),
        (AssistantMessage(text="true"), True, '{"final_answer":true}'),
        (AssistantMessage(text='"yes"'), True, '{"final_answer":"yes"}'),
        (AssistantMessage(text="not JSON"), True, '{"final_answer":"not JSON"}'),
        (
            AssistantMessage(text="ignored", tool_calls=(ToolCall(name="add", arguments={}),)),
            True,
            '{"tool_calls":[{"name":"add","arguments":{}}]}',
        ),
    ],
    ids=[
        "text",
        "escapes",
        "unicode",
        "object-text",
        "list-text",
        "number-text",
        "typed-object",
        "typed-list",
        "typed-number",
        "typed-boolean",
        "typed-string",
        "typed-fallback",
        "calls-win",
    ],
)
def test_render_action(message: AssistantMessage, typed: bool, expected: str) -> None:
    assert JsonDialect().render_action(message, typed=typed) == expected


def test_render_action_is_untyped_by_default() -> None:
    assert JsonDialect().render_action(AssistantMessage(text="42")) == '{"final_answer":"42"}'


@pytest.mark.parametrize(
    ("output", "expected"),
    [(None, '{"final_answer":"42"}'), ({"type": "integer"}, '{"final_answer":42}')],
    ids=["text", "typed"],
)
def test_render_writes_history_answers_typed_only_under_an_output_schema(
    output: dict[str, Any] | None, expected: str
) -> None:
    conversation = request(QUESTION, AssistantMessage(text="42"), UserMessage(text="Again?"), output=output)

    prompt = JsonDialect(turns=GEMMA4_TURNS).render(conversation)

    assert f"<|turn>model\n{expected}<turn|>\n<|turn>user\nAgain?<turn|>\n" in prompt


# --- render: the protocol and worked examples ---------------------------------------


def test_protocol_lists_each_tool_with_its_schema() -> None:
    prompt = JsonDialect().render(request())

    for spec in (WEATHER, ADD):
        line = compact({"name": spec.name, "description": spec.description, "parameters": spec.parameters})
        assert f"\n{line}\n" in prompt
    assert 'To call tools, answer {"tool_calls":[{"name":...,"arguments":{...}}]}.' in prompt


def test_tool_choice_none_renders_no_tools_and_no_examples() -> None:
    prompt = JsonDialect(examples=2).render(request(tool_choice="none"))

    assert "Tools you can call" not in prompt
    assert "tool_calls" not in prompt
    assert "get_weather" not in prompt
    assert "add" not in prompt
    assert 'To give the final answer, answer {"final_answer":"..."}.' in prompt


@pytest.mark.parametrize("results_in_turn", [True, False])
def test_tool_choice_required_offers_no_final_answer(results_in_turn: bool) -> None:
    prompt = JsonDialect(examples=2, results_in_turn=results_in_turn).render(request(tool_choice="required"))

    assert "final_answer" not in prompt
    assert prompt.count('{"tool_calls":') == 3  # the protocol line and one call per example


def test_output_schema_is_shown_in_the_protocol() -> None:
    schema = output_schema(Forecast)
    assert schema is not None

    prompt = JsonDialect().render(request(output=schema))

    assert f"where the answer fits this JSON Schema: {compact(schema)}" in prompt
    assert '{"final_answer":"..."}' not in prompt


def test_two_examples_show_each_tool_before_the_real_question() -> None:
    dialect = JsonDialect(turns=GEMMA4_TURNS, examples=2)

    prompt = dialect.render(request())

    real = prompt.index(f"<|turn>user\n{QUESTION.text}")
    weather_call = prompt.index(calls(call("get_weather", city="city")))
    add_call = prompt.index(calls(call("add", a=2, b=3)))  # the tool's own first example
    assert weather_call < add_call < real
    assert prompt.index("<|turn>user\nGet the current weather for a city: city city?<turn|>") < weather_call
    assert prompt.index("<|turn>user\nAdd two integers: a 2, b 3?<turn|>") < add_call
    assert '{"tool_result":{"name":"get_weather","content":"text"}}' in prompt
    assert '{"final_answer":"get_weather says: text"}' in prompt
    assert '{"final_answer":"add says: 3"}' in prompt
    assert prompt.count("<|turn>system\n") == 1


def test_examples_cycle_through_a_tools_own_examples() -> None:
    prompt = JsonDialect(turns=GEMMA4_TURNS, examples=3).render(request(tools=(ADD,)))

    assert prompt.count(calls(call("add", a=2, b=3))) == 2
    assert prompt.count(calls(call("add", a=-1, b=10))) == 1


def test_examples_for_a_named_tool_show_only_that_tool() -> None:
    prompt = JsonDialect(turns=GEMMA4_TURNS, examples=2).render(request(tool_choice="add"))

    examples = prompt.split("<turn|>\n", 1)[1]
    assert '"name":"get_weather"' not in examples
    assert examples.count('{"tool_calls":[{"name":"add"') == 2
    assert "final_answer" not in examples


def test_gemma3_folds_the_system_text_into_the_first_example() -> None:
    prompt = JsonDialect(turns=GEMMA3_TURNS, examples=1).render(request(SystemMessage(text="Be brief."), QUESTION))

    assert prompt.startswith("<bos><start_of_turn>user\nBe brief.\n\nTools you can call:")
    assert f"<start_of_turn>user\n{QUESTION.text}<end_of_turn>\n<start_of_turn>model\n" in prompt
    assert prompt.count("Be brief.") == 1


@pytest.mark.parametrize("results_in_turn", [True, False], ids=["results-in-turn", "results-as-user"])
@pytest.mark.parametrize("tool_choice", ["auto", "required", "add"])
@pytest.mark.parametrize("turns", [GEMMA3_TURNS, GEMMA4_TURNS], ids=lambda t: t.name)
def test_worked_examples_are_whole_turns(tool_choice: str, results_in_turn: bool, turns: TurnFormat) -> None:
    dialect = JsonDialect(turns=turns, examples=2, results_in_turn=results_in_turn)

    sequence = turn_sequence(dialect.render(request(tool_choice=tool_choice)), turns)

    assert well_formed(sequence), sequence
    assert sequence.count("model") >= 3


def test_worked_example_calls_fit_the_tools() -> None:
    prompt = JsonDialect(turns=GEMMA4_TURNS, examples=3).render(request(tools=(WEATHER, ADD, ORDER)))

    shown = {}
    for turn in shown_actions(prompt, GEMMA4_TURNS):
        action = json.loads(turn)
        for c in action.get("tool_calls", []):
            shown[c["name"]] = c["arguments"]
    assert set(shown) == {"get_weather", "add", "place_order"}
    for bound_tool in (get_weather.bind(), add.bind(), place_order.bind()):
        bound_tool.validate(shown[bound_tool.name])  # raises ToolArgumentsError if not


@pytest.mark.parametrize("results_in_turn", [True, False], ids=["results-in-turn", "results-as-user"])
@pytest.mark.parametrize("tool_choice", ["auto", "required", "add"])
@pytest.mark.parametrize("turns", [GEMMA3_TURNS, GEMMA4_TURNS], ids=lambda t: t.name)
def test_every_action_shown_in_the_prompt_is_one_the_grammar_accepts(
    compile_constraint: Callable[[Constraint], Acceptor], tool_choice: str, results_in_turn: bool, turns: TurnFormat
) -> None:
    dialect = JsonDialect(turns=turns, examples=4, results_in_turn=results_in_turn)
    conversation = request(
        QUESTION,
        AssistantMessage(tool_calls=(ToolCall(name="add", arguments={"a": 1, "b": 2}),)),
        ToolResult(call_id="x", name="add", content=3),
        UserMessage(text="Thanks."),
        tools=(WEATHER, ADD, ORDER),
        tool_choice=tool_choice,
    )
    accepts = compile_constraint(dialect.constraint(conversation))

    shown = shown_actions(dialect.render(conversation), turns)

    assert len(shown) >= 5
    for action in shown:
        assert accepts(action), action


def test_examples_with_an_object_output_schema_show_valid_answers(
    compile_constraint: Callable[[Constraint], Acceptor],
) -> None:
    schema = output_schema(Forecast)
    assert schema is not None
    dialect = JsonDialect(turns=GEMMA4_TURNS, examples=2)
    conversation = request(output=schema)
    accepts = compile_constraint(dialect.constraint(conversation))

    answers = [a for a in shown_actions(dialect.render(conversation), GEMMA4_TURNS) if "final_answer" in a]

    assert len(answers) == 2
    for text in answers:
        assert accepts(text)
        Forecast.model_validate(json.loads(text)["final_answer"])


@pytest.mark.parametrize(
    ("output_type", "expected"),
    [
        (int, '{"final_answer":3}'),
        (Literal["yes", "no"], '{"final_answer":"yes"}'),
        (list[bool], '{"final_answer":[true]}'),
    ],
    ids=["int", "literal", "list"],
)
def test_examples_with_a_non_object_output_schema_show_valid_answers(
    compile_constraint: Callable[[Constraint], Acceptor], output_type: Any, expected: str
) -> None:
    schema = output_schema(output_type)
    assert schema is not None
    dialect = JsonDialect(turns=GEMMA4_TURNS, examples=1)
    conversation = request(output=schema)
    accepts = compile_constraint(dialect.constraint(conversation))

    answers = [a for a in shown_actions(dialect.render(conversation), GEMMA4_TURNS) if "final_answer" in a]

    assert answers == [expected]
    assert accepts(expected)
    assert parse_output(output_type, dialect.parse(expected, conversation).text) == json.loads(expected)["final_answer"]


# --- constraint: the schema -------------------------------------------------------------


CHOICES = ["auto", "required", "none", "get_weather"]


@pytest.mark.parametrize("tool_choice", CHOICES)
@pytest.mark.parametrize("with_output", [False, True], ids=["text", "typed"])
def test_constraint_is_a_valid_json_schema(tool_choice: str, with_output: bool) -> None:
    conversation = request(
        tools=(WEATHER, ADD, ORDER), tool_choice=tool_choice, output=output_schema(Forecast) if with_output else None
    )

    constraint = JsonDialect().constraint(conversation)

    assert constraint.kind == "json"
    jsonschema.Draft202012Validator.check_schema(constraint.value)
    defs = constraint.value.get("$defs", {})
    for ref in re.findall(r'"\$ref": "([^"]+)"', json.dumps(constraint.value)):
        assert ref.startswith("#/$defs/")
        assert ref.removeprefix("#/$defs/") in defs


def test_constraint_is_deterministic_and_does_not_touch_the_specs() -> None:
    before = json.dumps(ORDER.parameters)
    conversation = request(tools=(WEATHER, ORDER), output=output_schema(Forecast))

    first = JsonDialect().constraint(conversation)
    second = JsonDialect().constraint(conversation)

    assert first == second
    assert first.digest == second.digest
    assert json.dumps(ORDER.parameters) == before
    assert "$defs" in ORDER.parameters


def test_constraint_hoists_each_tools_defs_under_its_name() -> None:
    other = ToolSpec(
        name="tag",
        description="Tag an item.",
        parameters={
            "type": "object",
            "properties": {"item": {"$ref": "#/$defs/Item"}},
            "required": ["item"],
            "$defs": {"Item": {"type": "string", "enum": ["a", "b"]}},
        },
    )

    value = JsonDialect().constraint(request(tools=(ORDER, other), output=output_schema(Forecast))).value

    assert set(value["$defs"]) == {"tool__place_order__Item", "tool__tag__Item", "output__City"}
    assert value["$defs"]["tool__tag__Item"] == {"type": "string", "enum": ["a", "b"]}
    tag = value["anyOf"][0]["properties"]["tool_calls"]["items"]["anyOf"][1]
    assert tag["properties"]["arguments"]["properties"]["item"] == {"$ref": "#/$defs/tool__tag__Item"}


def test_constraint_bounds_strings_arrays_and_calls() -> None:
    dialect = JsonDialect(max_string=33, max_items=5, max_calls=2)

    value = dialect.constraint(request(tools=(WEATHER, ORDER))).value

    tool_calls, final = (branch["properties"] for branch in value["anyOf"])
    assert tool_calls["tool_calls"]["maxItems"] == 2
    assert tool_calls["tool_calls"]["minItems"] == 1
    assert final["final_answer"] == {"type": "string", "maxLength": 33}
    weather, order = tool_calls["tool_calls"]["items"]["anyOf"]
    assert weather["properties"]["name"] == {"const": "get_weather"}
    assert weather["properties"]["arguments"]["properties"]["city"]["maxLength"] == 33
    assert order["properties"]["arguments"]["properties"]["items"]["maxItems"] == 5
    assert value["$defs"]["tool__place_order__Item"]["properties"]["sku"]["maxLength"] == 33


@pytest.mark.parametrize("max_items", [16, 2])
def test_constraint_adds_no_length_caps_by_default(max_items: int) -> None:
    value = JsonDialect(max_items=max_items, max_calls=3).constraint(request(tools=(WEATHER, ORDER))).value

    text = json.dumps(value)
    assert "maxLength" not in text
    assert text.count('"maxItems"') == 1
    tool_calls, final = (branch["properties"] for branch in value["anyOf"])
    assert tool_calls["tool_calls"]["maxItems"] == 3
    assert final["final_answer"] == {"type": "string"}


def test_constraint_with_max_string_is_the_bounded_default() -> None:
    conversation = request(tools=(WEATHER, ORDER), output=output_schema(Forecast))

    capped = JsonDialect(max_string=40, max_items=6).constraint(conversation)

    assert capped.value == bound(JsonDialect().constraint(conversation).value, max_string=40, max_items=6)


# --- constraint: what the engine accepts ------------------------------------------------


GOOD_AUTO = [
    calls(call("get_weather", city="Paris")),
    calls(call("get_weather", city="Paris", unit="fahrenheit")),
    calls(call("add", a=2, b=-3)),
    calls(call("add", a=2, b=3), call("get_weather", city="Oslo"), call("add", a=0, b=0), call("add", a=1, b=1)),
    answer("It is 18 degrees in Paris."),
    answer("Zürich: 18 °C"),
    answer("x" * 1000),  # no cap on strings by default
    calls(call("get_weather", city="x" * 1000)),
]

BAD_AUTO = [
    calls(call("get_time", city="Paris")),  # unknown tool
    calls(call("add", a="2", b=3)),  # wrong type
    calls(call("add", a=2.5, b=3)),  # not an integer
    calls(call("get_weather", city="Paris", unit="kelvin")),  # not in the enum
    calls(call("add", a=2)),  # missing required argument
    calls(call("add", a=2, b=3, c=4)),  # unknown argument
    calls({"name": "add"}),  # no arguments
    compact({"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "x"}]}),  # unknown call key
    compact({"tool_calls": [], "final_answer": "x"}),  # two keys
    compact({"answer": "x"}),  # unknown key
    compact({"tool_calls": []}),  # no calls
    calls(*[call("add", a=1, b=1)] * 5),  # more than max_calls
    answer({"text": "hi"}),  # an object without an output schema
    answer(42),  # a number without an output schema
]


@pytest.fixture(scope="module")
def auto_grammar(compile_constraint: Callable[[Constraint], Acceptor]) -> Grammar:
    return compile_constraint(JsonDialect().constraint(request()))


@pytest.mark.parametrize("text", GOOD_AUTO)
def test_engine_accepts_valid_actions(auto_grammar: Grammar, text: str) -> None:
    assert auto_grammar(text)
    assert schema_accepts(JsonDialect().constraint(request()), text)


@pytest.mark.parametrize("text", BAD_AUTO)
def test_engine_rejects_invalid_actions(auto_grammar: Grammar, text: str) -> None:
    assert not auto_grammar(text)
    assert not schema_accepts(JsonDialect().constraint(request()), text)


@pytest.mark.parametrize(
    "text",
    [
        '{"tool_calls": [{"name":"add","arguments":{"a":1,"b":2}}]}',
        '{"tool_calls":[{"name":"add", "arguments":{"a":1,"b":2}}]}',
        '{"tool_calls":[{"name":"add","arguments":{"a":1,"b":2}} ]}',
        ' {"final_answer":"hi"}',
        '{"final_answer":"hi"}\n',
        '{\n"final_answer":"hi"}',
    ],
)
def test_engine_rejects_whitespace_between_tokens(auto_grammar: Grammar, text: str) -> None:
    assert not auto_grammar(text)
    assert auto_grammar(compact(json.loads(text)))


def test_engine_accepts_strings_up_to_max_string(compile_constraint: Callable[[Constraint], Acceptor]) -> None:
    accepts = compile_constraint(JsonDialect(max_string=10).constraint(request()))

    assert accepts(answer("x" * 10))
    assert not accepts(answer("x" * 11))
    assert accepts(calls(call("get_weather", city="y" * 10)))
    assert not accepts(calls(call("get_weather", city="y" * 11)))


def test_engine_bounds_arrays_and_checks_nested_defs(compile_constraint: Callable[[Constraint], Acceptor]) -> None:
    accepts = compile_constraint(JsonDialect(max_string=50, max_items=2).constraint(request(tools=(ORDER,))))
    item = {"sku": "A1", "quantity": 2}

    assert accepts(calls(call("place_order", items=[item, item])))
    assert accepts(calls(call("place_order", items=[], note=None)))
    assert accepts(calls(call("place_order", items=[item], note="asap")))
    assert not accepts(calls(call("place_order", items=[item, item, item])))
    assert not accepts(calls(call("place_order", items=[{"sku": "A1"}])))
    assert not accepts(calls(call("place_order", items=[{"sku": "A1", "quantity": "2"}])))


def test_engine_leaves_arrays_unbounded_without_max_string(
    compile_constraint: Callable[[Constraint], Acceptor],
) -> None:
    accepts = compile_constraint(JsonDialect(max_items=2).constraint(request(tools=(ORDER,))))
    item = {"sku": "A1", "quantity": 2}

    assert accepts(calls(call("place_order", items=[item] * 50)))
    assert not accepts(calls(call("place_order", items=[{"sku": "A1"}])))


def test_required_rejects_a_final_answer(compile_constraint: Callable[[Constraint], Acceptor]) -> None:
    accepts = compile_constraint(JsonDialect().constraint(request(tool_choice="required")))

    assert accepts(calls(call("get_weather", city="Paris")))
    assert accepts(calls(call("add", a=1, b=2)))
    assert not accepts(answer("It is 18 degrees."))


def test_a_named_tool_is_the_only_choice(compile_constraint: Callable[[Constraint], Acceptor]) -> None:
    constraint = JsonDialect().constraint(request(tool_choice="add"))
    accepts = compile_constraint(constraint)

    assert "anyOf" not in constraint.value
    assert accepts(calls(call("add", a=1, b=2)))
    assert accepts(calls(call("add", a=1, b=2), call("add", a=3, b=4)))
    assert not accepts(calls(call("get_weather", city="Paris")))
    assert not accepts(calls(call("add", a=1, b=2), call("get_weather", city="Paris")))
    assert not accepts(answer("3"))


def test_none_accepts_only_a_final_answer(compile_constraint: Callable[[Constraint], Acceptor]) -> None:
    constraint = JsonDialect().constraint(request(tool_choice="none"))
    accepts = compile_constraint(constraint)

    assert constraint.value == {
        "type": "object",
        "properties": {"final_answer": {"type": "string"}},
        "required": ["final_answer"],
        "additionalProperties": False,
    }
    assert accepts(answer("It is 18 degrees."))
    assert not accepts(calls(call("add", a=1, b=2)))


def test_no_tools_means_only_a_final_answer(compile_constraint: Callable[[Constraint], Acceptor]) -> None:
    accepts = compile_constraint(JsonDialect().constraint(request(tools=())))

    assert accepts(answer("Hello."))
    assert not accepts(calls(call("add", a=1, b=2)))


def test_output_schema_shapes_the_final_answer(compile_constraint: Callable[[Constraint], Acceptor]) -> None:
    schema = output_schema(Forecast)
    assert schema is not None
    constraint = JsonDialect().constraint(request(output=schema))
    accepts = compile_constraint(constraint)
    forecast = {"city": {"name": "Paris", "country": "FR"}, "temperatures": [18.5, 20], "summary": "Mild."}

    assert "output__City" in constraint.value["$defs"]
    assert accepts(answer(forecast))
    assert schema_accepts(constraint, answer(forecast))
    assert accepts(calls(call("add", a=1, b=2)))
    assert not accepts(answer("It is mild."))
    for broken in (
        {**forecast, "city": {"name": "Paris"}},
        {**forecast, "city": {"name": "Paris", "country": 33}},
        {**forecast, "temperatures": ["warm"]},
        {k: v for k, v in forecast.items() if k != "summary"},
    ):
        assert not accepts(answer(broken)), broken
        assert not schema_accepts(constraint, answer(broken)), broken


@DETERMINISTIC
@given(
    city=st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
    unit=st.none() | st.sampled_from(["celsius", "fahrenheit"]),
    a=st.integers(-(10**12), 10**12),
    b=st.integers(-(10**12), 10**12),
)
def test_engine_accepts_any_valid_call(auto_grammar: Grammar, city: str, unit: str | None, a: int, b: int) -> None:
    weather = call("get_weather", city=city) if unit is None else call("get_weather", city=city, unit=unit)

    assert auto_grammar(calls(weather, call("add", a=a, b=b)))


ESCAPED = ['He said "hi".', "line one\nline two", "C:\\Temp", "tab\there"]
ESCAPED_IDS = ["quote", "newline", "backslash", "tab"]


@pytest.mark.parametrize("text", ESCAPED, ids=ESCAPED_IDS)
def test_engine_accepts_escaped_characters_in_arguments(auto_grammar: Grammar, text: str) -> None:
    assert auto_grammar(calls(call("get_weather", city=text)))


@pytest.mark.parametrize("text", ESCAPED, ids=ESCAPED_IDS)
def test_engine_accepts_escaped_characters_in_a_typed_answer(
    compile_constraint: Callable[[Constraint], Acceptor], text: str
) -> None:
    accepts = compile_constraint(JsonDialect().constraint(request(output={"type": "string"})))

    assert accepts(answer(text))


@pytest.mark.parametrize("text", ESCAPED, ids=ESCAPED_IDS)
def test_engine_accepts_escaped_characters_in_a_text_answer(auto_grammar: Grammar, text: str) -> None:
    assert auto_grammar(answer(text))


_XGRAMMAR_ESCAPES = pytest.mark.xfail(
    reason="xgrammar 0.2.8 limitation: capped strings have no escapes (documented on JsonDialect.max_string)",
    raises=AssertionError,
    strict=True,
)


@pytest.mark.parametrize("text", ESCAPED, ids=ESCAPED_IDS)
@pytest.mark.parametrize("where", ["answer", "argument"])
@pytest.mark.parametrize("engine", ["guidance", pytest.param("xgrammar", marks=_XGRAMMAR_ESCAPES)])
def test_engine_accepts_escaped_characters_with_max_string(
    compile_constraint: Callable[[Constraint], Acceptor], engine: str, where: str, text: str
) -> None:
    accepts = compile_constraint(JsonDialect(max_string=100).constraint(request()))

    assert accepts.by(engine, answer(text) if where == "answer" else calls(call("get_weather", city=text)))


@pytest.mark.xfail(
    reason="documented limitation: bound() leaves strings with a `format` uncapped (see its docstring), "
    "and xgrammar 0.2.8 does not enforce pydantic's format `path` (pathlib.Path; likewise `binary`, "
    "`password`), so even with max_string set a Path argument can be padded forever",
    raises=AssertionError,
    strict=True,
)
def test_engine_bounds_a_path_argument(compile_constraint: Callable[[Constraint], Acceptor]) -> None:
    accepts = compile_constraint(JsonDialect(max_string=50).constraint(request(tools=(read_file.spec,))))

    assert accepts(calls(call("read_file", path="/etc/hosts")))
    assert not accepts(calls(call("read_file", path="/a" * 500)))


def test_defs_of_a_tool_named_output_do_not_collide_with_the_output_schema(
    compile_constraint: Callable[[Constraint], Acceptor],
) -> None:
    output_tool = ToolSpec(
        name="output",
        description="Write output.",
        parameters={
            "type": "object",
            "properties": {"item": {"$ref": "#/$defs/Item"}},
            "required": ["item"],
            "$defs": {"Item": {"type": "integer"}},
        },
    )
    result = {"$ref": "#/$defs/Item", "$defs": {"Item": {"type": "string", "enum": ["done"]}}}
    constraint = JsonDialect().constraint(request(tools=(output_tool,), output=result))
    accepts = compile_constraint(constraint)

    assert set(constraint.value["$defs"]) == {"tool__output__Item", "output__Item"}
    assert accepts(answer("done"))
    assert accepts(calls(call("output", item=7)))
    assert not accepts(answer(7))
    assert not accepts(calls(call("output", item="done")))


# --- parse --------------------------------------------------------------------------


def test_parse_a_call_with_arguments() -> None:
    message = JsonDialect().parse(calls(call("get_weather", city="Paris", unit="celsius")), request())

    assert message.text == ""
    assert [(c.name, c.arguments) for c in message.tool_calls] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"})
    ]
    assert message.tool_calls[0].id.startswith("call_")


def test_parse_several_calls_with_distinct_ids() -> None:
    text = calls(call("add", a=1, b=2), call("add", a=3, b=4), call("get_weather", city="Oslo"))

    message = JsonDialect().parse(text, request())

    assert [(c.name, c.arguments) for c in message.tool_calls] == [
        ("add", {"a": 1, "b": 2}),
        ("add", {"a": 3, "b": 4}),
        ("get_weather", {"city": "Oslo"}),
    ]
    assert len({c.id for c in message.tool_calls}) == 3


def test_parse_a_call_without_arguments_gets_empty_arguments() -> None:
    message = JsonDialect().parse('{"tool_calls":[{"name":"add"}]}', request())

    assert message.tool_calls[0].arguments == {}


def test_parse_a_final_answer_string() -> None:
    message = JsonDialect().parse(answer("It is 18 °C in Zürich."), request())

    assert message == AssistantMessage(text="It is 18 °C in Zürich.")


@pytest.mark.parametrize(
    ("value", "expected"),
    [({"text": "hi"}, '{"text":"hi"}'), ([1, 2.5], "[1,2.5]"), (42, "42"), (None, "null"), ("42", "42")],
    ids=["object", "list", "number", "null", "string"],
)
def test_parse_an_untyped_answer_is_text_or_compact_json(value: Any, expected: str) -> None:
    # Only an unconstrained model can write a non-string answer without an output schema.
    assert JsonDialect().parse(answer(value), request()) == AssistantMessage(text=expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("yes", '"yes"'), ('say "hi"', '"say \\"hi\\""'), ("42", '"42"'), (42, "42"), (True, "true"), (None, "null")],
    ids=["string", "quoted-string", "numeric-string", "number", "boolean", "null"],
)
def test_parse_a_typed_answer_is_always_compact_json(value: Any, expected: str) -> None:
    message = JsonDialect().parse(answer(value), request(output={}))

    assert message == AssistantMessage(text=expected)
    assert json.loads(message.text) == value


def test_parse_a_final_answer_object_as_compact_json() -> None:
    schema = output_schema(Forecast)
    text = '{"final_answer": {"city": {"name": "Paris", "country": "FR"}, "temperatures": [18.5], "summary": "Mild."}}'

    message = JsonDialect().parse(text, request(output=schema))

    assert message.text == '{"city":{"name":"Paris","country":"FR"},"temperatures":[18.5],"summary":"Mild."}'
    assert parse_output(Forecast, message.text) == Forecast(
        city=City(name="Paris", country="FR"), temperatures=[18.5], summary="Mild."
    )


@pytest.mark.parametrize(
    ("turns", "suffix"),
    [(GEMMA3_TURNS, "<end_of_turn>"), (GEMMA3_TURNS, " <end_of_turn>\n"), (GEMMA4_TURNS, "<turn|>")],
    ids=["gemma3", "gemma3-spaced", "gemma4"],
)
def test_parse_strips_the_end_of_turn_marker(turns: TurnFormat, suffix: str) -> None:
    dialect = JsonDialect(turns=turns)

    assert dialect.parse(f"  {answer('hi')}{suffix}", request()) == AssistantMessage(text="hi")
    assert dialect.parse(f"{calls(call('add', a=1, b=2))}{suffix}", request()).tool_calls[0].name == "add"
    assert dialect.parse(f"Just text.{suffix}", request()) == AssistantMessage(text="Just text.")


@pytest.mark.parametrize("tool_choice", ["auto", "none"])
def test_parse_plain_text_when_text_is_allowed(tool_choice: str) -> None:
    message = JsonDialect().parse("  It is sunny in Paris.\n", request(tool_choice=tool_choice))

    assert message == AssistantMessage(text="It is sunny in Paris.")


@pytest.mark.parametrize("text", ["It is sunny.", "3 apples.", '"just a string"', '[{"name":"add"}]', "null"])
@pytest.mark.parametrize(
    ("tool_choice", "output"),
    [("required", None), ("add", None), ("auto", {"type": "object"}), ("none", {"type": "object"})],
)
def test_parse_plain_text_is_an_error_when_an_action_is_required(
    tool_choice: str, output: dict[str, Any] | None, text: str
) -> None:
    with pytest.raises(ModelOutputError, match="expected a JSON action object") as info:
        JsonDialect().parse(text, request(tool_choice=tool_choice, output=output))

    assert info.value.raw_text == text


def test_parse_empty_text_is_an_error() -> None:
    with pytest.raises(ModelOutputError, match="expected a JSON action object"):
        JsonDialect(turns=GEMMA3_TURNS).parse("  <end_of_turn>", request())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"tool_calls":[{"name":"add","arguments":{}}],"final_answer":"x"}', 'expected one key, "tool_calls"'),
        ("{}", 'expected one key, "tool_calls"'),
        ('{"final_answer":"x","note":"y"}', 'expected one key, "tool_calls"'),
        ('{"answer":"x"}', '"tool_calls" must be a non-empty list'),
        ('{"tool_calls":[]}', '"tool_calls" must be a non-empty list'),
        ('{"tool_calls":{"name":"add"}}', '"tool_calls" must be a non-empty list'),
        ('{"tool_calls":[{"arguments":{"a":1}}]}', 'each tool call needs a "name"'),
        ('{"tool_calls":[{"name":7,"arguments":{}}]}', 'each tool call needs a "name"'),
        ('{"tool_calls":["add"]}', 'each tool call needs a "name"'),
        ('{"tool_calls":[{"name":"add","arguments":[1,2]}]}', "the \"arguments\" of 'add' must be an object"),
        ('{"tool_calls":[{"name":"add","arguments":"a=1"}]}', "the \"arguments\" of 'add' must be an object"),
    ],
)
def test_parse_malformed_actions(text: str, message: str) -> None:
    with pytest.raises(ModelOutputError, match=re.escape(message)) as info:
        JsonDialect().parse(text, request())

    assert info.value.raw_text == text
    assert repr(text[:300]) in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["[" * 5000, '{"final_answer":' + "[" * 5000 + "1" + "]" * 5000 + "}", '{"a":' * 5000 + "1" + "}" * 5000],
)
def test_parse_json_nested_thousands_deep_is_a_model_output_error(text: str) -> None:
    # Found by tests/unit/fuzz/test_fuzz_json_action.py: Python's JSON reader raised RecursionError.
    with pytest.raises(ModelOutputError, match="nested too deeply") as info:
        JsonDialect().parse(text, request())

    assert info.value.raw_text == text


@pytest.mark.parametrize(
    "text",
    [
        "3 apples.",
        '"Paris" is the capital of France.',
        "true, it is sunny.",
        "42",
        '"just a string"',
        '[{"name":"add"}]',
    ],
)
@pytest.mark.parametrize("tool_choice", ["auto", "none"])
def test_parse_text_that_is_no_json_object_is_a_plain_answer(text: str, tool_choice: str) -> None:
    assert JsonDialect().parse(text, request(tool_choice=tool_choice)) == AssistantMessage(text=text)


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


@pytest.mark.parametrize(
    ("output_type", "value", "expected"),
    [
        (Literal["yes", "no"], "yes", "yes"),
        (Mood, "sad", Mood.SAD),
        (datetime.date, "2024-05-01", datetime.date(2024, 5, 1)),
        (Annotated[str, pydantic.StringConstraints(max_length=5)], "short", "short"),
        (int, 42, 42),
    ],
    ids=["literal", "enum", "date", "constrained-str", "int"],
)
def test_parse_a_typed_answer_round_trips_through_parse_output(output_type: Any, value: Any, expected: Any) -> None:
    conversation = request(output=output_schema(output_type))
    assert conversation.output_schema is not None

    message = JsonDialect().parse(answer(value), conversation)

    assert parse_output(output_type, message.text) == expected


# --- round trip -----------------------------------------------------------------------


NOOP = ToolSpec(name="noop", description="Do nothing.", parameters={"type": "object", "properties": {}})
ROUND_TRIP_TOOLS = (WEATHER, ADD, ORDER, NOOP)
FORECAST_SCHEMA = output_schema(Forecast)
ROUND_TRIP = [
    (calls(call("get_weather", city="Paris")), None),
    (calls(call("add", a=1, b=2), call("get_weather", city="Zürich", unit="celsius")), None),
    (calls(call("place_order", items=[{"sku": "A1", "quantity": 2}], note=None)), None),
    (calls(call("noop")), None),
    (calls(call("add", a=1, b=2)), FORECAST_SCHEMA),
    (answer("It is 18 degrees in Paris."), None),
    (answer('Quote: "hi"\nnew line, tab\t, é, 😀'), None),
    (answer("42"), None),
    (answer("[2,3,5]"), None),
    (answer('{"a":1}'), None),
    (
        answer({"city": {"name": "Paris", "country": "FR"}, "temperatures": [18.5, 20.0], "summary": "Mild."}),
        FORECAST_SCHEMA,
    ),
    (answer([1, 2, 3]), {"type": "array", "items": {"type": "integer"}}),
    (answer(42), {"type": "integer"}),
    (answer(True), {"type": "boolean"}),
    (answer("yes"), output_schema(Literal["yes", "no"])),
    (answer("42"), {"type": "string"}),
]


@pytest.mark.parametrize(("text", "output"), ROUND_TRIP)
def test_render_action_inverts_parse(text: str, output: dict[str, Any] | None) -> None:
    dialect = JsonDialect()
    conversation = request(tools=ROUND_TRIP_TOOLS, output=output)
    assert schema_accepts(dialect.constraint(conversation), text)  # valid under the request's constraint

    message = dialect.parse(text, conversation)

    assert dialect.render_action(message, typed=output is not None) == text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@DETERMINISTIC
@given(
    st.lists(
        st.tuples(
            st.text("abcxyz_019", min_size=1, max_size=12),
            st.dictionaries(st.text(max_size=8), json_values, max_size=4),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_round_trip_of_any_calls(items: list[tuple[str, dict[str, Any]]]) -> None:
    dialect = JsonDialect()
    text = calls(*({"name": name, "arguments": arguments} for name, arguments in items))

    message = dialect.parse(text, request())

    assert [(c.name, c.arguments) for c in message.tool_calls] == items
    assert dialect.render_action(message) == text


@DETERMINISTIC
@given(st.text())
def test_round_trip_of_any_text_answer(text: str) -> None:
    dialect = JsonDialect()
    action = answer(text)

    message = dialect.parse(action, request())

    assert message.text == text
    assert dialect.render_action(message) == action


@DETERMINISTIC
@given(json_values)
def test_round_trip_of_any_typed_answer(value: Any) -> None:
    dialect = JsonDialect()
    action = answer(value)

    message = dialect.parse(action, request(output={}))

    assert json.loads(message.text) == value
    assert dialect.render_action(message, typed=True) == action
