"""Unit tests for the `gemma4` dialect: prompts, declarations, the call syntax, parsing.

Golden prompts are written from the format's description (ARCHITECTURE.md),
not pasted from the code's output. vLLM's own Gemma 4 parser serves as an
oracle for the call syntax (differential tests); none of its code is used by
agentkit.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkit.dialect import Dialect
from agentkit.dialects.gemma4 import (
    Gemma4Dialect,
    GrammarOptions,
    StreamParser,
    format_value,
    parse_calls,
    parse_turn,
    render_call,
    render_declaration,
    render_result,
)
from agentkit.errors import ModelOutputError
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResult, UserMessage
from agentkit.runtime import ModelRequest, TextDelta, ThinkingDelta, ToolCallReady
from agentkit.tool import tool
from tests.support.fuzzing import typed
from tests.support.tools import get_weather, plant, ship

DETERMINISTIC = settings(derandomize=True, database=None, deadline=None, max_examples=150)


def g(text: str) -> str:
    """Golden strings are written with `"` standing for Gemma 4's `<|"|>` delimiter."""
    return text.replace('"', '<|"|>')


# --- tools (get_weather, ship and plant are tests.support.tools') --------------------------


@tool
def search(query: str) -> list[str]:
    """Search the web."""
    return []


WEATHER_DECLARATION = g(
    '<|tool>declaration:get_weather{description:"Get the current weather for a city.",'
    'parameters:{properties:{city:{description:"The city\'s name.",type:"STRING"},'
    'unit:{description:"The temperature unit.",enum:["celsius","fahrenheit"],type:"STRING"}},'
    'required:["city"],type:"OBJECT"}}<tool|>'
)
SEARCH_DECLARATION = g(
    '<|tool>declaration:search{description:"Search the web.",'
    'parameters:{properties:{query:{type:"STRING"}},required:["query"],type:"OBJECT"}}<tool|>'
)
NO_THOUGHT = "<|turn>model\n<|channel>thought\n<channel|>"


def request(*messages: Message, tools: tuple[Any, ...] = (), tool_choice: str = "auto") -> ModelRequest:
    return ModelRequest(messages=list(messages), tools=[t.spec for t in tools], tool_choice=tool_choice)


def weather_call(city: str, call_id: str = "c1") -> ToolCall:
    return ToolCall(name="get_weather", arguments={"city": city}, id=call_id)


# --- declarations -------------------------------------------------------------------------


def test_declaration_of_a_simple_tool() -> None:
    assert render_declaration(get_weather.spec) == WEATHER_DECLARATION


def test_declaration_with_enum_optional_nested_and_array_parameters() -> None:
    address = 'properties:{street:{type:"STRING"},zip:{nullable:true,type:"STRING"}},required:["street"],type:"OBJECT"'
    expected = g(
        '<|tool>declaration:ship{description:"Ship a parcel.",parameters:{properties:{'
        f'address:{{description:"Where to.",{address}}},'
        'color:{description:"Box colour.",enum:["red","blue"],type:"STRING"},'
        'counts:{description:"Items per kind.",nullable:true,properties:{},type:"OBJECT"},'
        'express:{description:"Next-day delivery.",type:"BOOLEAN"},'
        'note:{description:"A note for the driver.",nullable:true,type:"STRING"},'
        f'stops:{{description:"Extra stops.",items:{{description:"A postal address.",{address}}},type:"ARRAY"}},'
        'weight:{description:"Kilograms.",type:"NUMBER"}'
        '},required:["address","color","stops"],type:"OBJECT"}}<tool|>'
    )
    assert render_declaration(ship.spec) == expected


def test_declaration_of_a_recursive_model_stops_at_the_cycle() -> None:
    node = 'properties:{children:{items:{type:"OBJECT"},type:"ARRAY"},name:{type:"STRING"}},required:["name"]'
    expected = g(
        '<|tool>declaration:plant{description:"Plant a tree.",parameters:{properties:{'
        'mode:{enum:["fast"],type:"STRING"},'
        f'tree:{{{node},type:"OBJECT"}}'
        '},required:["tree"],type:"OBJECT"}}<tool|>'
    )
    assert render_declaration(plant.spec) == expected


# --- values, calls and results ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (-0, "0"),
        (3.0, "3.0"),
        (2.5e-7, "2.5e-07"),
        (1e16, "1e+16"),
        ("a,b:{c}\n", g('"a,b:{c}\n"')),
        ([1, "x", [None]], g('[1,"x",[null]]')),
        ({"b": 1, "a": {"d": True, "c": []}}, "{a:{c:[],d:true},b:1}"),
        ({"needs quoting": 1, "ok_key": 2}, g('{"needs quoting":1,ok_key:2}')),
    ],
)
def test_format_value(value: Any, expected: str) -> None:
    assert format_value(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 'has <|"|> inside', {1: 2}, object()])
def test_format_value_refuses_what_has_no_form(value: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        format_value(value)


def test_render_call_sorts_nested_keys() -> None:
    call = ToolCall(name="find", arguments={"limit": 2.5, "filter": {"tags": ["a", "b"], "max": 3}, "flag": True})
    assert render_call(call) == g(
        '<|tool_call>call:find{filter:{max:3,tags:["a","b"]},flag:true,limit:2.5}<tool_call|>'
    )


@pytest.mark.parametrize(
    ("content", "is_error", "body"),
    [
        ("18 degrees", False, '{value:"18 degrees"}'),
        ({"temp": 18, "unit": "C"}, False, '{temp:18,unit:"C"}'),
        ([1, 2], False, "{value:[1,2]}"),
        (None, False, "{value:null}"),
        ("city not found", True, '{error:"city not found"}'),
    ],
)
def test_render_result(content: Any, is_error: bool, body: str) -> None:
    result = ToolResult(call_id="c1", name="get_weather", content=content, is_error=is_error)
    assert render_result(result) == g(f"<|tool_response>response:get_weather{body}<tool_response|>")


# --- prompts ------------------------------------------------------------------------------


def test_prompt_without_system_or_tools_thinking_off() -> None:
    prompt = Gemma4Dialect().render(request(UserMessage(text="Hi")))
    assert prompt == "<bos><|turn>user\nHi<turn|>\n" + NO_THOUGHT


def test_prompt_with_system_only() -> None:
    prompt = Gemma4Dialect().render(request(SystemMessage(text="  Be terse.\n"), UserMessage(text="Hi")))
    assert prompt == "<bos><|turn>system\nBe terse.<turn|>\n<|turn>user\nHi<turn|>\n" + NO_THOUGHT


def test_prompt_thinking_on_writes_a_system_turn_even_without_system_text() -> None:
    prompt = Gemma4Dialect(thinking=True).render(request(UserMessage(text="Hi")))
    assert prompt == "<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n"


def test_prompt_with_system_tools_and_thinking() -> None:
    prompt = Gemma4Dialect(thinking=True).render(
        request(SystemMessage(text="Be terse."), UserMessage(text="Paris?"), tools=(get_weather, search))
    )
    assert prompt == (
        "<bos><|turn>system\n<|think|>\nBe terse."
        + WEATHER_DECLARATION
        + SEARCH_DECLARATION
        + "<turn|>\n<|turn>user\nParis?<turn|>\n<|turn>model\n"
    )


def test_prompt_declares_only_the_tools_tool_choice_allows() -> None:
    named = request(UserMessage(text="Paris?"), tools=(get_weather, search), tool_choice="search")
    assert Gemma4Dialect().render(named) == (
        f"<bos><|turn>system\n{SEARCH_DECLARATION}<turn|>\n<|turn>user\nParis?<turn|>\n{NO_THOUGHT}"
    )
    none = request(UserMessage(text="Paris?"), tools=(get_weather,), tool_choice="none")
    assert Gemma4Dialect().render(none) == f"<bos><|turn>user\nParis?<turn|>\n{NO_THOUGHT}"


def test_prompt_after_a_call_continues_the_model_turn() -> None:
    messages = [
        UserMessage(text="Paris?"),
        AssistantMessage(tool_calls=[weather_call("Paris")], thinking="I should look it up."),
        ToolResult(call_id="c1", name="get_weather", content="18 degrees"),
    ]
    for thinking in (False, True):
        prompt = Gemma4Dialect(thinking=thinking).render(request(*messages, tools=(get_weather,)))
        system = "<|think|>\n" if thinking else ""
        # With thinking on, the model goes on inside a new thought (Google's July 2026 template).
        resumed = "<|channel>thought\n" if thinking else ""
        assert (
            prompt
            == f"<bos><|turn>system\n{system}{WEATHER_DECLARATION}<turn|>\n"
            + g(
                "<|turn>user\nParis?<turn|>\n"
                "<|turn>model\n<|channel>thought\nI should look it up.\n<channel|>"
                '<|tool_call>call:get_weather{city:"Paris"}<tool_call|>'
                '<|tool_response>response:get_weather{value:"18 degrees"}<tool_response|>'
            )
            + resumed
        )


def test_prompt_with_parallel_calls_error_result_and_earlier_thoughts_stripped() -> None:
    messages = [
        UserMessage(text="Paris or Oslo?"),
        AssistantMessage(
            text="Checking both.",
            tool_calls=[weather_call("Paris"), weather_call("Oslo", "c2")],
            thinking="Two cities.",
        ),
        ToolResult(call_id="c1", name="get_weather", content={"temp": 18}),
        ToolResult(call_id="c2", name="get_weather", content="unknown city", is_error=True),
        AssistantMessage(text="Paris is 18 degrees.", thinking="Oslo failed."),
        UserMessage(text="And Rome?"),
        AssistantMessage(tool_calls=[weather_call("Rome", "c3")], thinking="One more."),
        ToolResult(call_id="c3", name="get_weather", content={"temp": 21.5}),
    ]
    prompt = Gemma4Dialect().render(request(*messages, tools=(get_weather,)))
    assert prompt == f"<bos><|turn>system\n{WEATHER_DECLARATION}<turn|>\n" + g(
        "<|turn>user\nParis or Oslo?<turn|>\n"
        "<|turn>model\nChecking both."
        '<|tool_call>call:get_weather{city:"Paris"}<tool_call|>'
        '<|tool_call>call:get_weather{city:"Oslo"}<tool_call|>'
        "<|tool_response>response:get_weather{temp:18}<tool_response|>"
        '<|tool_response>response:get_weather{error:"unknown city"}<tool_response|>'
        "Paris is 18 degrees.<turn|>\n"
        "<|turn>user\nAnd Rome?<turn|>\n"
        "<|turn>model\n<|channel>thought\nOne more.\n<channel|>"
        '<|tool_call>call:get_weather{city:"Rome"}<tool_call|>'
        "<|tool_response>response:get_weather{temp:21.5}<tool_response|>"
    )


def test_prompt_with_a_call_awaiting_its_result_and_a_turn_left_on_results() -> None:
    pending = Gemma4Dialect().render(
        request(UserMessage(text="Paris?"), AssistantMessage(tool_calls=[weather_call("Paris")]))
    )
    assert pending == g(
        '<bos><|turn>user\nParis?<turn|>\n<|turn>model\n<|tool_call>call:get_weather{city:"Paris"}<tool_call|><|tool_response>'
    )
    left = Gemma4Dialect().render(
        request(
            UserMessage(text="Paris?"),
            AssistantMessage(tool_calls=[weather_call("Paris")]),
            ToolResult(call_id="c1", name="get_weather", content="18"),
            UserMessage(text="Thanks"),
        )
    )
    assert left.endswith(g('{value:"18"}<tool_response|><turn|>\n<|turn>user\nThanks<turn|>\n') + NO_THOUGHT)


def test_dialect_contract() -> None:
    dialect: Dialect = Gemma4Dialect()
    assert dialect.name == "gemma4"
    assert dialect.stop() == ("<turn|>", "<|tool_response>")
    constraint = dialect.constraint(request(UserMessage(text="Hi"), tools=(get_weather,)))
    assert constraint is not None
    assert constraint.kind == "grammar"
    for engine in ("guidance", "xgrammar"):
        assert '"call:get_weather{' in constraint.structured_outputs(engine)["grammar"]


# --- parsing ------------------------------------------------------------------------------


def calls_of(message: AssistantMessage) -> list[tuple[str, dict[str, Any]]]:
    return [(c.name, c.arguments) for c in message.tool_calls]


def test_parse_thinking_text_and_calls() -> None:
    text = g(
        "<|channel>thought\nThe user wants {weather}.<channel|>Let me check.\n"
        '<|tool_call>call:get_weather{city:"São Paulo, <|BR|> {x:1}"}<tool_call|>'
        '<|tool_call>call:search{query:"a\nb"}<tool_call|><|tool_response>'
    )
    message = parse_turn(text)
    assert message.thinking == "The user wants {weather}."
    assert message.text == "Let me check."
    assert calls_of(message) == [
        ("get_weather", {"city": "São Paulo, <|BR|> {x:1}"}),
        ("search", {"query": "a\nb"}),
    ]


@pytest.mark.parametrize(
    ("body", "arguments"),
    [
        ("{}", {}),
        ("{a:1,b:1.0,c:1e3,d:-0,e:-2.5E-3}", {"a": 1, "b": 1.0, "c": 1000.0, "d": 0, "e": -0.0025}),
        ("{a:null,b:None,c:true,d:false}", {"a": None, "b": None, "c": True, "d": False}),
        ('{a:[],b:[[1],{c:""}],d:{e:{f:[null]}}}', {"a": [], "b": [[1], {"c": ""}], "d": {"e": {"f": [None]}}}),
        ('{ a : 1 , "odd key" : [ 2 , 3 ] }', {"a": 1, "odd key": [2, 3]}),
    ],
)
def test_parse_typed_arguments(body: str, arguments: dict[str, Any]) -> None:
    (call,) = parse_calls(g(f"<|tool_call>call:f{body}<tool_call|>"))
    assert call.arguments == arguments
    assert [type(v) for v in call.arguments.values()] == [type(v) for v in arguments.values()]


def test_parse_plain_text_and_thought_name_variants() -> None:
    assert parse_turn("  Hello.  <turn|>\n") == AssistantMessage(text="Hello.")
    assert parse_turn("<|channel>thought<channel|>Hi").thinking is None
    assert parse_turn("<|channel>thought\n<channel|>Hi") == AssistantMessage(text="Hi")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<|tool_call>call:f{a:1}", "not closed by <tool_call|>"),
        ("<|tool_call>call:f{a:1}<turn|>", "closed by <turn|> instead of <tool_call|>"),
        ('<|tool_call>call:f{a:<|"|>x}<tool_call|>', "ended inside a tool call"),
        ("<|tool_call>call:f{a:Paris}<tool_call|>", "strings are written between"),
        ("<|tool_call>call:{a:1}<tool_call|>", "expected a tool name"),
        ("<|tool_call>call:f(a:1)<tool_call|>", "expected '{' after the tool name 'f'"),
        ("<|tool_call>call:f{a:1,}<tool_call|>", "expected a key"),
        ("<|tool_call>call:f{a:1 b:2}<tool_call|>", "malformed tool call"),
        ("<|tool_call>call:f{a:1}junk", "not closed by <tool_call|>"),
        ("<|tool_call>call:f{a:1e999}<tool_call|>", "out of range"),
        ("<|channel>thought\nhmm", "thought was not closed"),
        ("Done.<tool_call|>", "<tool_call|> closes nothing"),
        ("Done.<turn|>More.", "text after the end of the turn"),
    ],
)
def test_strict_parsing_explains_malformed_text(text: str, message: str) -> None:
    with pytest.raises(ModelOutputError, match="the model said") as caught:
        parse_turn(text)
    assert message in str(caught.value)
    assert caught.value.raw_text == text


def test_a_key_written_twice_keeps_its_last_value_as_json_readers_do() -> None:
    # No grammar keeps a free-form object's keys distinct: the strict parser reads what it allows.
    message = parse_turn("<|tool_call>call:f{a:1,d:{k:1,k:2}}<tool_call|>")
    assert message.tool_calls[0].arguments == {"a": 1, "d": {"k": 2}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<|tool_call>call:f{a:1}", AssistantMessage(tool_calls=[ToolCall(name="f", arguments={"a": 1})])),
        ("<|tool_call>call:f{a:1}<tool_c", AssistantMessage(tool_calls=[ToolCall(name="f", arguments={"a": 1})])),
        ("<|tool_call>call:f{a:1}<turn|>x", AssistantMessage(tool_calls=[ToolCall(name="f", arguments={"a": 1})])),
        (
            "<|tool_call>call:f{city:San Jose}<tool_call|>",
            AssistantMessage(tool_calls=[ToolCall(name="f", arguments={"city": "San Jose"})]),
        ),
        ("<|channel>thought\nhmm", AssistantMessage(thinking="hmm")),
        (
            "<|channel>thought\nhmm<|tool_call>call:f{}<tool_call|>",
            AssistantMessage(thinking="hmm", tool_calls=[ToolCall(name="f")]),
        ),
        ("<channel|>Done.<tool_call|><turn|>More.", AssistantMessage(text="Done.")),
    ],
)
def test_tolerant_parsing_accepts_known_variants(text: str, expected: AssistantMessage) -> None:
    message = parse_turn(text, strict=False)
    assert (message.text, message.thinking, calls_of(message)) == (expected.text, expected.thinking, calls_of(expected))
    if "<turn|>" in text or "<tool_call|>" not in text:
        with pytest.raises(ModelOutputError):
            parse_turn(text)


@pytest.mark.parametrize(
    "text", ['<|tool_call>call:f{a:<|"|>x}', "<|tool_call>call:f{a:1", "<|tool_call>call:f{a:1}junk", "<|tool_call>"]
)
def test_tolerant_parsing_still_refuses_broken_calls(text: str) -> None:
    with pytest.raises(ModelOutputError):
        parse_turn(text, strict=False)


def test_dialect_parse_checks_the_decision_against_tool_choice() -> None:
    dialect = Gemma4Dialect()
    required = request(UserMessage(text="Paris?"), tools=(get_weather,), tool_choice="required")
    with pytest.raises(ModelOutputError, match="needs a tool call"):
        dialect.parse("It is sunny.", required)
    with pytest.raises(ModelOutputError, match="neither text nor a tool call"):
        dialect.parse("<turn|>", request(UserMessage(text="Hi")))
    parsed = dialect.parse(g('<|tool_call>call:get_weather{city:"Paris"}<tool_call|><|tool_response>'), required)
    assert calls_of(parsed) == [("get_weather", {"city": "Paris"})]
    assert Gemma4Dialect(strict=False).parse("<|tool_call>call:f{}", required).tool_calls[0].name == "f"


# --- properties ---------------------------------------------------------------------------

HARD = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\n",
    '"',
    "'",
    "\\",
    "<|",
    "|>",
    "<",
    ">",
    "<turn|>",
    "<|tool_call>",
    "é",
    "日本",
    " ",
    "null",
    "1",
]
KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
TEXTS = (
    st.lists(st.sampled_from(HARD) | st.text(max_size=4), max_size=6).map("".join).filter(lambda s: '<|"|>' not in s)
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXTS
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=10
)
ARGUMENTS = st.dictionaries(KEYS, VALUES, max_size=4)
CALLS = st.lists(st.tuples(KEYS, ARGUMENTS).map(lambda c: ToolCall(name=c[0], arguments=c[1])), min_size=1, max_size=3)


@DETERMINISTIC
@given(CALLS)
def test_calls_round_trip(calls: list[ToolCall]) -> None:
    parsed = parse_calls("".join(render_call(c) for c in calls))
    assert [(c.name, typed(c.arguments)) for c in parsed] == [(c.name, typed(c.arguments)) for c in calls]


@DETERMINISTIC
@given(
    st.text(max_size=20).filter(lambda s: "<" not in s),
    st.none() | TEXTS.filter(lambda s: "<channel|>" not in s),
    CALLS,
    st.booleans(),
    st.data(),
)
def test_streaming_in_any_chunks_reads_the_same_turn(
    text: str, thought: str | None, calls: list[ToolCall], in_thought: bool, data: st.DataObject
) -> None:
    if in_thought:  # the prompt ended with `<|channel>thought\n`: the text starts inside the thought
        head = f"{thought or ''}<channel|>"
    else:
        head = f"<|channel>thought\n{thought}<channel|>" if thought is not None else ""
    whole = head + text + "".join(render_call(c) for c in calls) + "<|tool_response>"
    expected = parse_turn(whole, in_thought=in_thought)
    assert expected.thinking == ((thought or "").strip() or None)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=8)))
    for chunks in ([whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)], list(whole)):
        parser = StreamParser(in_thought=in_thought)
        events = [e for chunk in chunks for e in parser.feed(chunk)] + parser.close()
        assert "".join(e.text for e in events if e.kind == "text").strip() == expected.text
        assert ("".join(e.text for e in events if e.kind == "thinking").strip() or None) == expected.thinking
        streamed = [e.call for e in events if e.call is not None]
        assert [(c.name, typed(c.arguments)) for c in streamed] == [(c.name, typed(c.arguments)) for c in calls]


@DETERMINISTIC
@given(
    st.lists(st.sampled_from([" ", "\n", "Hi", " there ", "ok\n\n"]), max_size=4).map("".join),
    st.none() | st.lists(st.sampled_from([" ", "\n", "hmm", " so "]), max_size=4).map("".join),
    st.lists(st.tuples(st.booleans(), st.sampled_from([" ", "\n", " more text "])), max_size=2),
    st.booleans(),
    st.data(),
)
def test_the_dialects_stream_parser_adds_up_to_its_parse(
    text: str, thought: str | None, after: list[tuple[bool, str]], thinking: bool, data: st.DataObject
) -> None:
    """In any chunks, the deltas are the turn `parse` reads: trimmed text and thinking, its calls in order."""
    dialect = Gemma4Dialect(thinking=thinking)
    asked = request(UserMessage(text="Paris?"), tools=(get_weather,))
    call = render_call(ToolCall(name="get_weather", arguments={"city": "Paris"}))
    whole = (f"<|channel>thought\n{thought}<channel|>" if thought is not None else "") + text
    whole += "".join((call if with_call else "") + words for with_call, words in after)
    try:
        expected = dialect.parse(whole, asked)
    except ModelOutputError:  # neither text nor a call: nothing to compare
        return
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=8)))
    for chunks in ([whole[a:b] for a, b in itertools.pairwise([0, *cuts, len(whole)])], list(whole)):
        parser = dialect.stream_parser(asked)
        deltas = [d for chunk in chunks for d in parser.feed(chunk)] + parser.close()
        assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == expected.text
        assert ("".join(d.text for d in deltas if isinstance(d, ThinkingDelta)) or None) == expected.thinking
        streamed = [d.call for d in deltas if isinstance(d, ToolCallReady)]
        assert [(c.name, c.arguments) for c in streamed] == [(c.name, c.arguments) for c in expected.tool_calls]
        assert all(d.text for d in deltas if isinstance(d, TextDelta | ThinkingDelta))


def test_the_stream_parser_holds_back_trailing_space_until_more_text_follows() -> None:
    parser = Gemma4Dialect().stream_parser(request(UserMessage(text="Hi")))
    assert parser.feed("  Hello ") == [TextDelta(text="Hello")]
    assert parser.feed(" \n") == []
    assert parser.feed("world\n") == [TextDelta(text="  \nworld")]
    assert parser.feed("<turn|>") == []
    assert parser.close() == []


def test_streaming_holds_back_only_what_may_begin_a_marker() -> None:
    parser = StreamParser()
    assert [e.text for e in parser.feed("Hello <|tool")] == ["Hello "]
    assert parser.feed("_call>call:f{a:") == []
    (event,) = parser.feed("1}<tool_call|>")
    assert event.call is not None
    assert (event.call.name, event.call.arguments) == ("f", {"a": 1})
    assert [e.text for e in parser.feed("Done <3 <|")] == ["Done <3 "]
    assert [e.text for e in parser.close()] == ["<|"]


# --- differential: vLLM's own parser as the oracle ----------------------------------------

Oracle = Callable[[str], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def vllm_parse() -> Oracle:
    """`vllm.tool_parsers.gemma4_utils.parse_tool_calls`, in strict mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vLLM and torch warn about their own internals on import
        gemma4_utils = pytest.importorskip("vllm.tool_parsers.gemma4_utils")
    return lambda text: gemma4_utils.parse_tool_calls(text, strict=True)


def vllm_view(value: Any) -> Any:
    """What vLLM's parser makes of `value`: bare values stay text, nested ones go through str()."""
    if isinstance(value, dict):
        return {k: vllm_view(v) for k, v in value.items()}
    if isinstance(value, list):
        return [vllm_view(v) for v in value]
    return value if isinstance(value, str) else format_value(value)


ORACLE_TEXTS = TEXTS.filter(lambda s: "}<tool_call|>" not in s and "}<turn|>" not in s)
ORACLE_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | ORACLE_TEXTS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=10,
)
ORACLE_CALLS = st.lists(
    st.tuples(KEYS, st.dictionaries(KEYS, ORACLE_VALUES, max_size=4)).map(
        lambda c: ToolCall(name=c[0], arguments=c[1])
    ),
    min_size=1,
    max_size=3,
)


@DETERMINISTIC
@given(calls=ORACLE_CALLS)
def test_vllm_reads_our_calls_as_we_do(vllm_parse: Oracle, calls: list[ToolCall]) -> None:
    text = "".join(render_call(c) for c in calls)
    ours = parse_calls(text)
    theirs = vllm_parse(text)
    assert [c["name"] for c in theirs] == [c.name for c in ours]
    for mine, their in zip(ours, theirs, strict=True):
        # parse_tool_calls passes str() over every non-string top-level value.
        expected = {k: v if isinstance(v, str) else str(v) for k, v in vllm_view(mine.arguments).items()}
        assert their["arguments"] == expected


def test_vllm_reads_the_hard_cases_as_we_do(vllm_parse: Oracle) -> None:
    text = g(
        '<|tool_call>call:f{a:"x,}{:<|y",b:[1,2.5,true,None,{c:null}],d:-3e+20,e:"",f:{}}<tool_call|>'
        "<|tool_call>call:g{}<tool_call|>"
    )
    ours = parse_calls(text)
    assert ours[0].arguments == {"a": "x,}{:<|y", "b": [1, 2.5, True, None, {"c": None}], "d": -3e20, "e": "", "f": {}}
    theirs = vllm_parse(text)
    assert theirs[0]["arguments"]["a"] == "x,}{:<|y"
    assert theirs[0]["arguments"]["b"] == str(["1", "2.5", "true", "None", {"c": "null"}])
    assert [c["name"] for c in theirs] == ["f", "g"]


def test_worked_examples_open_their_model_turns_like_the_generation_prompt() -> None:
    # A small model copies what it sees: after the generation prompt's empty
    # thought, the examples showed it a call.
    for thinking, opening in ((False, "<|turn>model\n<|channel>thought\n<channel|>"), (True, "<|turn>model\n")):
        prompt = Gemma4Dialect(thinking=thinking, examples=2).render(
            request(UserMessage(text="Weather in Oslo?"), tools=(get_weather,))
        )
        assert prompt.count(opening + "<|tool_call>call:get_weather{") == 2
        assert prompt.endswith("<|turn>user\nWeather in Oslo?<turn|>\n" + opening)


def test_the_grammar_options_are_one_value_given_whole_or_as_keywords() -> None:
    small = GrammarOptions(max_string=60, max_items=4, max_text=100, parallel_calls=False)
    assert Gemma4Dialect(max_string=60, max_items=4, max_text=100, parallel_calls=False).grammar == small
    thinking = Gemma4Dialect(grammar=small, thinking=True)  # keywords over the value's fields
    assert thinking.grammar == GrammarOptions(
        thinking=True, max_string=60, max_items=4, max_text=100, parallel_calls=False
    )
    assert thinking.thinking
    asked = request(UserMessage(text="Paris?"), tools=(get_weather,))
    spelled = Gemma4Dialect(thinking=True, max_string=60, max_items=4, max_text=100, parallel_calls=False)
    assert thinking.constraint(asked) == spelled.constraint(asked) != Gemma4Dialect().constraint(asked)
    with pytest.raises(TypeError):
        Gemma4Dialect(max_strings=3)


# --- crashes the fuzzers found (tests/unit/fuzz/test_fuzz_gemma4.py) ------------------------


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("opener", ["[", "{a:"])
def test_values_nested_thousands_deep_are_a_model_output_error_not_a_recursion_error(strict: bool, opener: str) -> None:
    text = "<|tool_call>call:f{a:" + opener * 10_000 + "1"
    with pytest.raises(ModelOutputError, match="nested more than 100 deep"):
        parse_turn(text, strict=strict)
    nested: Any = 1
    for _ in range(99):  # 100 levels with the arguments' own: still read
        nested = [nested]
    assert parse_calls(render_call(ToolCall(name="f", arguments={"a": nested})))[0].arguments == {"a": nested}


@pytest.mark.parametrize("strict", [True, False])
def test_an_integer_with_more_digits_than_python_converts_is_a_model_output_error(strict: bool) -> None:
    with pytest.raises(ModelOutputError, match="has 5000 digits"):
        parse_turn("<|tool_call>call:f{a:" + "9" * 5000 + "}<tool_call|>", strict=strict)
