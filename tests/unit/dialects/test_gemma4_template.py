"""The `gemma4` dialect against Google's canonical chat template (July 2026).

Each test is one case where agentkit's prompts used to differ from the
template Google now ships for the big family (12B, 26B-A4B, 31B) and the
small one (E2B, E4B); the expected strings are the template's output for the
same conversation, as recorded in the project's notes on the template. The
deviations agentkit keeps on purpose are in docs/gemma4.md and tested at the
end. Strings are written with `"` standing for Gemma 4's `<|"|>` delimiter.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
import pytest

from agentkit.dialects.gemma4 import Gemma4Dialect, parse_turn, render_call, render_declaration
from agentkit.dialects.gemma4_grammar import build_constraint
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResult, UserMessage
from agentkit.runtime import ModelRequest
from agentkit.tool import ToolSpec, tool
from tests.support.grammars import accepts


def g(text: str) -> str:
    return text.replace('"', '<|"|>')


def request(*messages: Message, tools: tuple[ToolSpec, ...] = (), tool_choice: str = "auto") -> ModelRequest:
    return ModelRequest(messages=list(messages), tools=list(tools), tool_choice=tool_choice)


def spec(name: str, properties: dict[str, Any], description: str = "A tool.") -> ToolSpec:
    return ToolSpec(name=name, description=description, parameters={"type": "object", "properties": properties})


WEATHER = spec("get_weather", {"city": {"type": "string"}}, "Get the weather.")
OSLO = ToolCall(name="get_weather", arguments={"city": "Oslo"}, id="c1")
ASKED = UserMessage(text="Weather in Oslo?")
CALLED = AssistantMessage(tool_calls=[OSLO], thinking="Need the tool.")
ANSWERED = ToolResult(call_id="c1", name="get_weather", content="-3 C")


# --- thoughts ---------------------------------------------------------------------------------


def test_a_stored_thought_ends_with_a_newline_before_its_channel_closes() -> None:
    prompt = Gemma4Dialect().render(request(ASKED, CALLED, ANSWERED, tools=(WEATHER,)))
    assert g(
        '<|turn>model\n<|channel>thought\nNeed the tool.\n<channel|><|tool_call>call:get_weather{city:"Oslo"}'
    ) in (prompt)


def test_with_thinking_on_the_prompt_after_tool_results_opens_a_thought() -> None:
    on = Gemma4Dialect(thinking=True).render(request(ASKED, CALLED, ANSWERED, tools=(WEATHER,)))
    assert on.endswith(g('response:get_weather{value:"-3 C"}<tool_response|><|channel>thought\n'))
    off = Gemma4Dialect().render(request(ASKED, CALLED, ANSWERED, tools=(WEATHER,)))
    assert off.endswith("<tool_response|>")
    # A call still awaiting its result, or a fresh user turn, opens no thought.
    pending = Gemma4Dialect(thinking=True).render(request(ASKED, CALLED, tools=(WEATHER,)))
    assert pending.endswith("<tool_call|><|tool_response>")


def test_a_thought_on_a_final_answer_after_the_last_user_message_is_kept() -> None:
    answer = AssistantMessage(text="It is -3 C.", thinking="Cold.")
    prompt = Gemma4Dialect().render(request(ASKED, CALLED, ANSWERED, answer, tools=(WEATHER,)))
    assert g('{value:"-3 C"}<tool_response|><|channel>thought\nCold.\n<channel|>It is -3 C.<turn|>\n') in prompt


def test_preserve_thinking_keeps_earlier_call_turns_thoughts_only() -> None:
    answer = AssistantMessage(text="It is -3 C.", thinking="Cold.")
    later = [UserMessage(text="Thanks. And Rome?")]
    conversation = request(ASKED, CALLED, ANSWERED, answer, *later, tools=(WEATHER,))
    default = Gemma4Dialect().render(conversation)
    assert "Need the tool." not in default
    assert "Cold." not in default
    kept = Gemma4Dialect(preserve_thinking=True).render(conversation)
    assert "<|channel>thought\nNeed the tool.\n<channel|><|tool_call>" in kept
    assert "Cold." not in kept  # an answer's thought before the last user message: never kept


# --- generation prompts per family -----------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "thinking", "opening"),
    [
        ("big", False, "<|turn>model\n<|channel>thought\n<channel|>"),
        ("small", False, "<|turn>model\n"),
        ("big", True, "<|turn>model\n"),
        ("small", True, "<|turn>model\n"),
    ],
)
def test_the_generation_prompt_of_each_family(family: Any, thinking: bool, opening: str) -> None:
    prompt = Gemma4Dialect(family=family, thinking=thinking).render(request(UserMessage(text="Hi")))
    assert prompt.endswith("<|turn>user\nHi<turn|>\n" + opening)


def test_the_family_is_checked() -> None:
    with pytest.raises(ValueError, match="family must be 'big' or 'small'"):
        Gemma4Dialect(family="medium")  # type: ignore[arg-type]


# --- declarations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "declared"),
    [
        ({"page": {"type": "integer", "nullable": True}}, 'page:{nullable:true,type:"INTEGER"}'),
        ({"level": {"type": "integer", "enum": [1, 2, 3]}}, 'level:{type:"INTEGER"}'),
        ({"unit": {"type": "string", "enum": ["c", "f"]}}, 'unit:{enum:["c","f"],type:"STRING"}'),
        (
            {"meta": {"type": "object", "description": "Free-form."}},
            'meta:{description:"Free-form.",properties:{},type:"OBJECT"}',
        ),
        (
            {"tags": {"type": "array", "items": {"type": "string", "maxLength": 20}}},
            'tags:{items:{maxLength:20,type:"STRING"},type:"ARRAY"}',
        ),
        # agentkit's choice, kept: Optional[int] as nullable (the template writes an empty type).
        ({"page": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}, 'page:{nullable:true,type:"INTEGER"}'),
    ],
    ids=["nullable", "int-enum", "string-enum", "object-without-properties", "items-passed-through", "optional"],
)
def test_declared_parameters(properties: dict[str, Any], declared: str) -> None:
    assert render_declaration(spec("t", properties)) == g(
        f'<|tool>declaration:t{{description:"A tool.",parameters:{{properties:{{{declared}}},type:"OBJECT"}}}}<tool|>'
    )


def test_a_tool_with_an_empty_description_declares_it_empty() -> None:
    assert render_declaration(spec("ping", {}, description="")) == g(
        '<|tool>declaration:ping{description:"",parameters:{type:"OBJECT"}}<tool|>'
    )


class Forecast(pydantic.BaseModel):
    """Tomorrow's weather."""

    high: Annotated[int, pydantic.Field(description="Degrees C.")]


@tool
def forecast(city: str) -> Forecast:
    """Forecast a city's weather."""
    return Forecast(high=1)


@tool
def shout(text: str) -> str:
    """Shout."""
    return text.upper()


def test_a_tool_with_an_object_result_declares_its_response() -> None:
    assert render_declaration(forecast.spec) == g(
        '<|tool>declaration:forecast{description:"Forecast a city\'s weather.",'
        'parameters:{properties:{city:{type:"STRING"}},required:["city"],type:"OBJECT"},'
        'response:{description:"Tomorrow\'s weather.",properties:{high:{description:"Degrees C.",type:"INTEGER"}},'
        'required:["high"],type:"OBJECT"}}<tool|>'
    )
    assert "response:" not in render_declaration(shout.spec)  # a string result is the default: nothing to declare


# --- system turns -----------------------------------------------------------------------------


def test_two_leading_system_messages_are_two_system_turns() -> None:
    prompt = Gemma4Dialect().render(
        request(SystemMessage(text="Rule one."), SystemMessage(text="Rule two."), UserMessage(text="Hi"))
    )
    assert prompt.startswith("<bos><|turn>system\nRule one.<turn|>\n<|turn>system\nRule two.<turn|>\n<|turn>user\n")


def test_declarations_stay_in_the_first_system_turn() -> None:
    prompt = Gemma4Dialect(thinking=True).render(
        request(SystemMessage(text="Rule one."), SystemMessage(text="Rule two."), ASKED, tools=(WEATHER,))
    )
    assert prompt.startswith("<bos><|turn>system\n<|think|>\nRule one.<|tool>declaration:get_weather{")
    assert "<tool|><turn|>\n<|turn>system\nRule two.<turn|>\n" in prompt


# --- resuming inside a thought: the parser and the grammar -------------------------------------


def accepted(text: str, tool_choice: str, **options: Any) -> bool:
    return accepts(build_constraint([WEATHER], tool_choice, thinking=True, **options), text)


def test_a_turn_that_starts_inside_a_thought_is_read_and_written_back_the_same() -> None:
    dialect = Gemma4Dialect(thinking=True)
    asked = request(ASKED, CALLED, ANSWERED, tools=(WEATHER,))
    prompt = dialect.render(asked)
    continuation = "It is cold there.\n<channel|>It is -3 C in Oslo."
    message = dialect.parse(continuation, asked)
    assert message == AssistantMessage(text="It is -3 C in Oslo.", thinking="It is cold there.")
    # Written back, the turn is the prompt followed by exactly what the model wrote.
    again = dialect.render(request(ASKED, CALLED, ANSWERED, message, tools=(WEATHER,)))
    assert again.startswith(prompt + continuation + "<turn|>\n")
    # The tolerant parser reads it the same; read as a fresh turn, it holds no thought.
    assert parse_turn(continuation, strict=False, in_thought=True) == message
    assert parse_turn(continuation, strict=False).thinking is None


@pytest.mark.parametrize("tool_choice", ["auto", "required", "get_weather"])
def test_the_grammar_starts_inside_the_thought_when_the_prompt_does(tool_choice: str) -> None:
    call = render_call(OSLO)
    assert accepted(f"Look it up.\n<channel|>{call}", tool_choice, in_thought=True)
    assert accepted(f"<channel|>{call}", tool_choice, in_thought=True)
    assert not accepted(call, tool_choice, in_thought=True)  # the thought must be closed first
    assert not accepted(f"a<channel|><|channel>thought\nb<channel|>{call}", tool_choice, in_thought=True)
    answer = "Done.\n<channel|>It is -3 C."
    assert accepted(answer, tool_choice, in_thought=True) == (tool_choice == "auto")


def test_the_dialect_asks_for_the_in_thought_grammar_exactly_when_it_renders_the_open_thought() -> None:
    dialect = Gemma4Dialect(thinking=True)
    for messages, opened in [((ASKED,), False), ((ASKED, CALLED), False), ((ASKED, CALLED, ANSWERED), True)]:
        asked = request(*messages, tools=(WEATHER,))
        assert dialect.render(asked).endswith("<|channel>thought\n") == opened
        assert dialect.opens_in_thought(asked) == opened
    assert not Gemma4Dialect().opens_in_thought(request(ASKED, CALLED, ANSWERED, tools=(WEATHER,)))


def test_a_developer_message_is_a_system_turn() -> None:
    first = Gemma4Dialect().render(request(SystemMessage(text="Be brief.", role="developer"), UserMessage(text="Hi")))
    assert first == Gemma4Dialect().render(request(SystemMessage(text="Be brief."), UserMessage(text="Hi")))
    later = Gemma4Dialect().render(
        request(
            UserMessage(text="Hi"),
            AssistantMessage(text="Hello."),
            SystemMessage(text="Now in French.", role="developer"),
        )
    )
    assert "<turn|>\n<|turn>system\nNow in French.<turn|>\n" in later
    assert "developer" not in first + later
