"""Unit tests for agentkit's Gemma 4 chat template (`runtimes/templates/gemma4.jinja`).

vLLM renders chat-mode prompts for the embedded model with this template. It
must show the model exactly what the `gemma4` dialect renders in-process, so
each test builds a conversation from agentkit messages, converts it as
`OpenAICompatible` sends it (`chat_messages`, `tool_definition`) and as vLLM
hands it to a template (JSON on the wire, call arguments parsed back into
objects), renders the template in the sandbox transformers and vLLM use, and
compares the text with `Gemma4Dialect().render` of the same conversation.

In chat form a tool result is a string (an object result JSON-encoded, an
error prefixed "error: "), so the dialect's side of each comparison holds that
string as the result's content.
"""

from __future__ import annotations

import enum
import json
from dataclasses import replace
from datetime import date
from functools import cache
from typing import Annotated, Any, Literal

import jinja2.ext
import jinja2.sandbox
import pydantic
import pytest

from agentkit.dialects.gemma4 import Gemma4Dialect
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResult, UserMessage
from agentkit.runtime import ModelRequest
from agentkit.runtimes.openai import chat_messages, tool_definition
from agentkit.runtimes.vllm.serve import CHAT_TEMPLATE
from agentkit.schema import example_value
from agentkit.tool import ToolSpec, tool
from tests.support.tools import get_weather, plant, ship

NO_THOUGHT = "<|turn>model\n<|channel>thought\n<channel|>"


@cache
def template() -> jinja2.Template:
    # The environment transformers compiles chat templates in (vLLM uses the same).
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    return environment.from_string(CHAT_TEMPLATE.read_text(encoding="utf-8"))


def as_vllm_passes_it(request: ModelRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The messages and tools a template receives for `request`: sent as
    `OpenAICompatible` sends them, arguments parsed as vLLM parses them, and an
    assistant's thinking as vLLM passes a message's `reasoning`."""
    messages = chat_messages(request.messages, None)
    tools = [tool_definition(spec) for spec in request.allowed_tools] or None
    wire = json.loads(json.dumps({"messages": messages, "tools": tools}))
    for original, message in zip(request.messages, wire["messages"], strict=True):
        for call in message.get("tool_calls") or ():
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
        if isinstance(original, AssistantMessage) and original.thinking:
            message["reasoning"] = message["reasoning_content"] = original.thinking
    return wire["messages"], wire["tools"]


def render_template(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    *,
    thinking: bool = False,
    add_generation_prompt: bool = True,
    preserve_thinking: bool = False,
) -> str:
    return template().render(
        messages=messages,
        tools=tools,
        add_generation_prompt=add_generation_prompt,
        bos_token="<bos>",
        enable_thinking=thinking,
        preserve_thinking=preserve_thinking,
    )


def dialect_render(request: ModelRequest, *, thinking: bool = False, preserve_thinking: bool = False) -> str:
    """The dialect's prompt for `request`, each tool result holding the string chat mode sends."""
    sent = iter(m["content"] for m in chat_messages(request.messages, None) if m["role"] == "tool")
    messages = [
        ToolResult(call_id=m.call_id, name=m.name, content=next(sent)) if isinstance(m, ToolResult) else m
        for m in request.messages
    ]
    dialect = Gemma4Dialect(thinking=thinking, preserve_thinking=preserve_thinking)
    return dialect.render(replace(request, messages=messages))


def assert_same_prompt(request: ModelRequest, *, thinking: bool = False, preserve_thinking: bool = False) -> str:
    messages, tools = as_vllm_passes_it(request)
    prompt = render_template(messages, tools, thinking=thinking, preserve_thinking=preserve_thinking)
    assert prompt == dialect_render(request, thinking=thinking, preserve_thinking=preserve_thinking)
    return prompt


def conversation(*messages: Message, tools: tuple[Any, ...] = (), tool_choice: str = "auto") -> ModelRequest:
    return ModelRequest(messages=list(messages), tools=[t.spec for t in tools], tool_choice=tool_choice)


PARIS_CALL = AssistantMessage(tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris"}, id="c1")])
"""The model asks for the weather in Paris; `PARIS_RESULT` is the answer."""
PARIS_RESULT = ToolResult(call_id="c1", name="get_weather", content="18 degrees")


# --- tools (get_weather, ship and plant are tests.support.tools') --------------------------


@tool
def search(query: str, limit: int = 5) -> list[str]:
    """Search the web."""
    return []


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Window(pydantic.BaseModel):
    """When the job may run."""

    start: date
    end: date | None = pydantic.Field(default=None, description="Open-ended when missing.")
    days: tuple[int, int] = (1, 5)


@tool
def schedule(
    job: Annotated[str, pydantic.Field(min_length=1, pattern=r"^[a-z]+$")],
    priority: Priority = Priority.LOW,
    window: Window | None = None,
    tags: set[str] | None = None,
    limit: int | str | None = None,
    matrix: list[list[float]] | None = None,
    labels: dict[str, list[int]] | None = None,
) -> str:
    """Schedule a job.

    Args:
        job: The job's name.
        priority: How urgent.
        window: When.
        tags: Labels for the job.
        limit: A count or "none".
        matrix: Weights.
        labels: Groups.
    """
    return "scheduled"


class Aliased(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(populate_by_name=True)

    spaced: str = pydantic.Field(alias="spaced key")
    dotted: int = pydantic.Field(alias="a.b-c")
    Upper: bool = True


@tool
def configure(settings: Aliased, anything: Any = None) -> str:
    """Configure the thing.

    Args:
        settings: Keys that need quoting, and keys in mixed case.
        anything: Whatever it takes.
    """
    return "ok"


@tool
def no_arguments() -> str:
    return "done"


# --- system turns and declarations ------------------------------------------------------------


def test_prompt_without_system_or_tools() -> None:
    prompt = assert_same_prompt(conversation(UserMessage(text="  Hi there \n")))
    assert prompt == f"<bos><|turn>user\nHi there<turn|>\n{NO_THOUGHT}"


def test_prompt_with_a_system_message_only() -> None:
    assert_same_prompt(conversation(SystemMessage(text="\nBe brief.  "), UserMessage(text="Hi")))


def test_a_first_system_message_frames_the_system_turn_and_each_other_is_its_own_turn() -> None:
    prompt = assert_same_prompt(
        conversation(
            SystemMessage(text="Be brief."),
            SystemMessage(text="   "),
            SystemMessage(text="Answer in French."),
            UserMessage(text="Hi"),
            AssistantMessage(text="Salut."),
            SystemMessage(text="Now answer in German."),
            UserMessage(text="Hi again"),
        )
    )
    # Google's July 2026 template: two leading system messages are two system turns.
    assert prompt.startswith(
        "<bos><|turn>system\nBe brief.<turn|>\n<|turn>system\n<turn|>\n<|turn>system\nAnswer in French.<turn|>\n"
    )


def test_a_developer_message_is_written_as_a_system_one() -> None:
    request = conversation(
        SystemMessage(text="Be brief.", role="developer"),
        UserMessage(text="Hi"),
        AssistantMessage(text="Hello."),
        SystemMessage(text="Now in French.", role="developer"),
        UserMessage(text="Again"),
    )
    prompt = assert_same_prompt(request)
    assert prompt.startswith("<bos><|turn>system\nBe brief.<turn|>\n")
    assert "<|turn>system\nNow in French.<turn|>\n" in prompt
    # As a client that keeps the role sends it, the template writes the same.
    messages, tools = as_vllm_passes_it(request)
    for message in (messages[0], messages[3]):
        assert message["role"] == "system"
        message["role"] = "developer"
    assert render_template(messages, tools) == prompt


def test_an_empty_system_message_still_writes_a_system_turn() -> None:
    assert_same_prompt(conversation(SystemMessage(text=""), UserMessage(text="Hi")))


def test_declarations_with_nested_objects_arrays_enums_nullable_and_optional_parameters() -> None:
    prompt = assert_same_prompt(
        conversation(
            SystemMessage(text="You ship parcels."),
            UserMessage(text="Ship it"),
            tools=(get_weather, ship, plant, search),
        )
    )
    assert prompt.count("<|tool>declaration:") == 4


def test_declarations_with_refs_int_enums_tuples_sets_unions_and_quoted_keys() -> None:
    assert_same_prompt(conversation(UserMessage(text="Go"), tools=(schedule, configure, no_arguments)))


def test_only_the_tools_tool_choice_allows_are_declared() -> None:
    prompt = assert_same_prompt(
        conversation(UserMessage(text="Weather?"), tools=(get_weather, search), tool_choice="get_weather")
    )
    assert "declaration:search" not in prompt


def test_no_tools_under_tool_choice_none() -> None:
    prompt = assert_same_prompt(conversation(UserMessage(text="Hi"), tools=(get_weather,), tool_choice="none"))
    assert "<|turn>system" not in prompt


# --- calls and results ----------------------------------------------------------------------


def test_a_call_with_every_kind_of_value_awaits_its_result() -> None:
    arguments = {
        "text": 'quotes " and \\ and\nnewlines, {braces}: [brackets]',
        "count": 3,
        "negative": -42,
        "ratio": 0.25,
        "tiny": 2.5e-07,
        "huge": 1e16,
        "whole": 3.0,
        "yes": True,
        "no": False,
        "nothing": None,
        "items": [1, "two", [3.5, None], {"z": 1, "a": False}],
        "nested": {"b": {"d": "deep", "c": []}, "a": {}, "B": 1, "needs quoting": "x", "dotted.key-1": 2},
        "unicode": "café ☕",
        "": "empty key",
    }
    prompt = assert_same_prompt(
        conversation(
            UserMessage(text="Go"),
            AssistantMessage(text="Calling.", tool_calls=[ToolCall(name="anything", arguments=arguments, id="c1")]),
        )
    )
    assert prompt.endswith("<tool_call|><|tool_response>")


def test_parallel_calls_and_their_results_stay_in_the_model_turn() -> None:
    prompt = assert_same_prompt(
        conversation(
            SystemMessage(text="Be brief."),
            UserMessage(text="Weather in Paris and Oslo?"),
            AssistantMessage(
                tool_calls=[
                    ToolCall(name="get_weather", arguments={"city": "Paris"}, id="c1"),
                    ToolCall(name="get_weather", arguments={"city": "Oslo", "unit": "celsius"}, id="c2"),
                ]
            ),
            PARIS_RESULT,
            ToolResult(call_id="c2", name="get_weather", content="3 degrees"),
            tools=(get_weather,),
        )
    )
    assert prompt.endswith("<tool_response|>")  # the model goes on in the same turn


CONVERSATIONS_WITH_CALLS = [
    pytest.param(
        conversation(
            UserMessage(text="Weather in Paris?"),
            PARIS_CALL,
            PARIS_RESULT,
            AssistantMessage(text="  It is 18 degrees in Paris.\n"),
            UserMessage(text="And Oslo?"),
            tools=(get_weather,),
        ),
        id="a-result-then-an-answer-then-a-new-user-turn",
    ),
    pytest.param(
        conversation(
            UserMessage(text="Search twice"),
            AssistantMessage(
                tool_calls=[
                    ToolCall(name="search", arguments={"query": "gemma"}, id="c1"),
                    ToolCall(name="search", arguments={"query": "", "limit": 0}, id="c2"),
                ]
            ),
            ToolResult(call_id="c1", name="search", content={"hits": ["a", "b"], "total": 2, "more": None}),
            ToolResult(call_id="c2", name="search", content="query must not be empty", is_error=True),
            AssistantMessage(text="Found two."),
            tools=(search,),
        ),
        id="object-and-error-results-arrive-as-strings",
    ),
    pytest.param(
        conversation(
            UserMessage(text="Weather?"),
            PARIS_CALL,
            PARIS_RESULT,
            UserMessage(text="Never mind."),
            tools=(get_weather,),
        ),
        id="a-user-closes-a-turn-left-on-results",
    ),
    pytest.param(
        conversation(
            UserMessage(text="Weather?"),
            PARIS_CALL,
            UserMessage(text="Stop."),
            tools=(get_weather,),
        ),
        id="a-call-without-a-result-before-the-next-user-turn",
    ),
]


@pytest.mark.parametrize("request_", CONVERSATIONS_WITH_CALLS)
def test_a_conversation_with_calls_renders_as_the_dialect_does(request_: ModelRequest) -> None:
    assert_same_prompt(request_)


# --- thinking ---------------------------------------------------------------------------------


def test_thinking_on_writes_a_system_turn_and_opens_the_model_turn_bare() -> None:
    prompt = assert_same_prompt(conversation(UserMessage(text="Hi")), thinking=True)
    assert prompt == "<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n"


def test_only_thoughts_after_the_last_user_message_are_kept() -> None:
    for thinking in (False, True):
        prompt = assert_same_prompt(
            conversation(
                SystemMessage(text="Be brief."),
                UserMessage(text="Weather?"),
                AssistantMessage(
                    thinking="Old thought.",
                    tool_calls=[ToolCall(name="get_weather", arguments={"city": "Rome"}, id="c0")],
                ),
                ToolResult(call_id="c0", name="get_weather", content="25 degrees"),
                AssistantMessage(text="25 degrees.", thinking="An answer's thought."),
                UserMessage(text="And Paris?"),
                AssistantMessage(
                    thinking="The user wants Paris.",
                    tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris"}, id="c1")],
                ),
                PARIS_RESULT,
                tools=(get_weather,),
            ),
            thinking=thinking,
        )
        assert "<|channel>thought\nThe user wants Paris.\n<channel|>" in prompt
        assert "Old thought." not in prompt
        assert "An answer's thought." not in prompt  # before the last user message
        assert prompt.endswith("<tool_response|><|channel>thought\n" if thinking else "<tool_response|>")


def test_preserve_thinking_keeps_earlier_call_turns_thoughts_as_the_dialect_does() -> None:
    for thinking in (False, True):
        prompt = assert_same_prompt(
            conversation(
                UserMessage(text="Weather?"),
                AssistantMessage(
                    thinking="Old thought.",
                    tool_calls=[ToolCall(name="get_weather", arguments={"city": "Rome"}, id="c0")],
                ),
                ToolResult(call_id="c0", name="get_weather", content="25 degrees"),
                AssistantMessage(text="25 degrees.", thinking="An answer's thought."),
                UserMessage(text="And Paris?"),
                tools=(get_weather,),
            ),
            thinking=thinking,
            preserve_thinking=True,
        )
        assert "<|channel>thought\nOld thought.\n<channel|><|tool_call>" in prompt
        assert "An answer's thought." not in prompt


class Forecast(pydantic.BaseModel):
    """Tomorrow's weather."""

    high: int
    sky: Literal["clear", "cloudy"] | None = None


@tool
def forecast(city: str) -> Forecast:
    """Forecast a city's weather."""
    return Forecast(high=1)


def test_an_object_result_is_declared_as_a_response_as_the_dialect_does() -> None:
    prompt = assert_same_prompt(conversation(UserMessage(text="Oslo tomorrow?"), tools=(forecast,)))
    assert ',response:{description:<|"|>Tomorrow\'s weather.<|"|>,properties:{high:{type:<|"|>INTEGER' in prompt


# --- what vLLM or other clients may send -----------------------------------------------------


def test_content_as_text_parts_and_none() -> None:
    request = conversation(
        SystemMessage(text="Be brief.\nVery."),
        UserMessage(text="Part one.\nPart two."),
        AssistantMessage(tool_calls=[ToolCall(name="search", arguments={"query": "x"}, id="c1")]),
        ToolResult(call_id="c1", name="search", content="line one\nline two"),
        tools=(search,),
    )
    messages, tools = as_vllm_passes_it(request)
    for message in messages:
        if message.get("content") is not None:
            lines = message["content"].split("\n")
            message["content"] = [{"type": "text", "text": line} for line in lines]
    assert "content" not in messages[2]  # calls alone: agentkit leaves content out
    assert render_template(messages, tools) == dialect_render(request)
    messages[2]["content"] = None  # as other clients send it
    assert render_template(messages, tools) == dialect_render(request)


def test_a_result_without_a_name_takes_its_call_name() -> None:
    request = conversation(
        UserMessage(text="Weather?"),
        AssistantMessage(
            tool_calls=[
                ToolCall(name="search", arguments={"query": "x"}, id="c1"),
                ToolCall(name="get_weather", arguments={"city": "Paris"}, id="c2"),
            ]
        ),
        ToolResult(call_id="c2", name="get_weather", content="18 degrees"),
        ToolResult(call_id="c1", name="search", content="nothing"),
        tools=(get_weather, search),
    )
    messages, tools = as_vllm_passes_it(request)
    for message in messages:
        message.pop("name", None)
    assert render_template(messages, tools) == dialect_render(request)


def test_arguments_left_as_a_string_are_written_as_they_are() -> None:
    request = conversation(
        UserMessage(text="Weather?"),
        PARIS_CALL,
    )
    messages, _ = as_vllm_passes_it(request)
    messages[1]["tool_calls"][0]["function"]["arguments"] = '{"city": "Paris"}'
    prompt = render_template(messages)
    assert prompt.endswith('<|turn>model\n<|tool_call>call:get_weather{"city": "Paris"}<tool_call|><|tool_response>')


def test_without_a_generation_prompt_the_text_ends_after_the_last_message() -> None:
    request = conversation(UserMessage(text="Hi"), AssistantMessage(text="Hello."), UserMessage(text="Bye"))
    messages, tools = as_vllm_passes_it(request)
    prompt = render_template(messages, tools, add_generation_prompt=False)
    assert prompt + NO_THOUGHT == dialect_render(request)
    assert prompt.endswith("<|turn>user\nBye<turn|>\n")


# --- over several tool schemas ----------------------------------------------------------------

SCHEMA_TOOLS = [
    ToolSpec(
        name="raw_schema",
        description="",
        parameters={
            "type": "object",
            "properties": {
                "typed_list": {"type": ["string", "null"], "description": "  Either.  "},
                "one_of": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                "union_with_null": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
                "all_of": {"allOf": [{"$ref": "#/$defs/Leaf"}], "description": "Wrapped."},
                "external": {"$ref": "https://example.com/schema.json", "type": "string"},
                "missing": {"$ref": "#/$defs/Nowhere"},
                "constant": {"const": 7},
                "int_enum": {"enum": [1, 2, 3], "type": "integer"},
                "empty_object": {"type": "object", "properties": {}, "required": []},
                "any": {},
                "loop": {"$ref": "#/$defs/Loop", "description": "Referrer's words."},
            },
            "required": ["typed_list", "constant"],
            "$defs": {
                "Leaf": {"type": "object", "description": "A leaf.", "properties": {"x": {"type": "number"}}},
                "Loop": {
                    "type": "object",
                    "description": "Definition's words.",
                    "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Loop"}, {"type": "null"}]}},
                },
            },
        },
    ),
    *(t.spec for t in (get_weather, search, ship, plant, schedule, configure, no_arguments)),
]


@pytest.mark.parametrize("spec", SCHEMA_TOOLS, ids=lambda spec: spec.name)
def test_each_tool_is_declared_and_called_as_the_dialect_writes_it(spec: ToolSpec) -> None:
    arguments = spec.examples[0] if spec.examples else example_value(spec.parameters)
    request = ModelRequest(
        messages=[
            UserMessage(text="Use the tool."),
            AssistantMessage(tool_calls=[ToolCall(name=spec.name, arguments=arguments, id="c1")]),
            ToolResult(call_id="c1", name=spec.name, content={"ok": True, "echo": arguments}),
        ],
        tools=[spec],
    )
    prompt = assert_same_prompt(request)
    assert f"<|tool>declaration:{spec.name}{{" in prompt
    assert f"<|tool_call>call:{spec.name}{{" in prompt


def test_transformers_renders_it_as_the_sandbox_does() -> None:
    # vLLM renders chat templates through transformers, which adds its own globals and extensions.
    chat_template_utils = pytest.importorskip("transformers.utils.chat_template_utils")
    request = conversation(
        SystemMessage(text="Be brief."),
        UserMessage(text="Ship it"),
        AssistantMessage(tool_calls=[ToolCall(name="search", arguments={"query": "gemma", "limit": 2}, id="c1")]),
        ToolResult(call_id="c1", name="search", content=["a", "b"]),
        AssistantMessage(text="Found two."),
        UserMessage(text="Now ship it."),
        tools=(search, ship, plant),
    )
    messages, tools = as_vllm_passes_it(request)
    rendered, _ = chat_template_utils.render_jinja_template(
        conversations=[messages],
        tools=tools,
        chat_template=CHAT_TEMPLATE.read_text(encoding="utf-8"),
        add_generation_prompt=True,
        bos_token="<bos>",
        enable_thinking=False,
    )
    assert rendered == [dialect_render(request)]
