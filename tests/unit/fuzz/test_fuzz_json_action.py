"""Fuzz the `json` dialect's parser (`JsonDialect.parse`): whatever the model wrote, a message or a
`ModelOutputError`, never a `RecursionError` or a hang.

The dialect has no streaming parser (a streaming runtime hands it the whole turn), so there is no
split-text target here; `parse` is the one function that reads model text.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agentkit.dialects.json_action import GEMMA3_TURNS, GEMMA4_TURNS, JsonDialect
from agentkit.messages import AssistantMessage, ToolCall, UserMessage
from agentkit.runtime import ModelRequest
from agentkit.tool import tool
from tests.support.fuzzing import fuzz_settings, only_agentkit_errors


@tool
def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: The city.
    """
    return city


DIALECTS = [JsonDialect(turns=GEMMA4_TURNS), JsonDialect(turns=GEMMA3_TURNS)]
REQUESTS = [
    ModelRequest(messages=[UserMessage(text="hi")]),
    ModelRequest(messages=[UserMessage(text="hi")], tools=[get_weather.spec]),
    ModelRequest(messages=[UserMessage(text="hi")], tools=[get_weather.spec], tool_choice="required"),
    ModelRequest(messages=[UserMessage(text="hi")], output_schema={"type": "object"}),
    ModelRequest(messages=[UserMessage(text="hi")], tools=[get_weather.spec], plan=True),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
calls = st.builds(
    ToolCall,
    name=st.text(min_size=1, max_size=12),
    arguments=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    id=st.just("call_1"),
)
actions = st.builds(AssistantMessage, tool_calls=st.lists(calls, min_size=1, max_size=3).map(tuple)) | st.builds(
    AssistantMessage, text=st.text(max_size=40)
)
"""Turns the dialect renders into valid action objects."""

NOISE = st.sampled_from([*'{}[]":,\\ntfe0-.', "\\u", "<turn|>", "<end_of_turn>", '"tool_calls"'])


def parse(dialect: JsonDialect, text: str, request: ModelRequest) -> Any:
    return only_agentkit_errors(dialect.parse, text, request)


@fuzz_settings()
@given(st.sampled_from(DIALECTS), st.text(), st.sampled_from(REQUESTS))
def test_any_text(dialect: JsonDialect, text: str, request: ModelRequest) -> None:
    parse(dialect, text, request)


@fuzz_settings()
@given(st.sampled_from(DIALECTS), actions, st.sampled_from(REQUESTS), st.data())
def test_a_rendered_action_cut_or_edited(
    dialect: JsonDialect, action: AssistantMessage, request: ModelRequest, data: st.DataObject
) -> None:
    text = dialect.render_action(action)
    cut = data.draw(st.integers(0, len(text)), label="cut")
    at = data.draw(st.integers(0, len(text)), label="at")
    edit = data.draw(st.sampled_from(["truncate", "insert", "delete"]), label="edit")
    if edit == "truncate":
        text = text[:cut]
    elif edit == "insert":
        text = text[:at] + data.draw(NOISE, label="inserted") + text[at:]
    else:
        text = text[:at] + text[at + 1 :]
    parse(dialect, text, request)


@fuzz_settings()
@given(st.sampled_from(DIALECTS), actions, st.sampled_from(REQUESTS))
def test_a_rendered_action_reads_back(dialect: JsonDialect, action: AssistantMessage, request: ModelRequest) -> None:
    """An untouched rendered action parses back to the same calls (or the same answer text)."""
    parsed = parse(dialect, dialect.render_action(action), request)
    if parsed is None:  # refused: a final answer under `required`, say
        return
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [(c.name, c.arguments) for c in action.tool_calls]
    if not action.tool_calls and request.output_schema is None:
        assert parsed.text == action.text


@fuzz_settings()
@given(
    st.sampled_from(DIALECTS),
    st.sampled_from(["[", "{", '{"a":', '{"final_answer":[', '{"tool_calls":[{"name":"x","arguments":{"a":[']),
    st.integers(1, 20_000),
    st.booleans(),
    st.sampled_from(REQUESTS),
)
def test_deep_nesting(dialect: JsonDialect, opener: str, depth: int, closed: bool, request: ModelRequest) -> None:
    closer = {"[": "]", "{": "}", '{"a":': "}"}.get(opener, "]")
    text = opener * depth + ("1" + closer * depth if closed else "")
    parse(dialect, text, request)
