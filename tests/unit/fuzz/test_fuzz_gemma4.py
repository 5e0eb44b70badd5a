"""Fuzzing the Gemma 4 parsers: `parse_turn` (strict and tolerant), `StreamParser`
and `TurnDeltas` (streaming), and `Gemma4Dialect.parse`.

Fed arbitrary text built around the dialect's markers, valid turns the dialect
renders itself, those turns split into arbitrary chunks, and those turns
mutated (cut, characters deleted or inserted, nesting thousands deep), each
parser either returns or raises `ModelOutputError`, within a time box. And a
real property: read in any chunks, a turn reads as `parse_turn` reads it
whole, or fails as it does.

`make test` runs a fixed slice (`tests/support/fuzzing.py`); `make fuzz` sets
`AGENTKIT_FUZZ_EXAMPLES=100000`.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agentkit.dialects.gemma4 import (
    CALL_CLOSE,
    CALL_OPEN,
    CHANNEL_CLOSE,
    CHANNEL_OPEN,
    QUOTE,
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    TURN_END,
    TURN_OPEN,
    Gemma4Dialect,
    StreamParser,
    TurnDeltas,
    parse_turn,
    render_call,
)
from agentkit.messages import AssistantMessage, ToolCall, UserMessage
from agentkit.runtime import ModelRequest, TextDelta, ThinkingDelta, ToolCallReady
from agentkit.tool import ToolSpec
from tests.support.fuzzing import EXAMPLES, fuzz_settings, only_agentkit_errors, typed

# --- what the inputs are made of -----------------------------------------------------------

MARKERS = [
    CALL_OPEN,
    CALL_CLOSE,
    QUOTE,
    TURN_END,
    TURN_OPEN,
    CHANNEL_OPEN,
    CHANNEL_CLOSE,
    RESPONSE_OPEN,
    RESPONSE_CLOSE,
    "<|tool>",
    "<tool|>",
    "<|think|>",
    "thought\n",
    "call:",
    "call:f",
    ":f",
    "f",
]
"""The dialect's markers, and the words that follow them in a call."""
PIECES = [
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    ":",
    "=",
    '"',
    "'",
    "\\",
    "<",
    "|",
    ">",
    "<|",
    "|>",
    '<|"|',
    '<|"',
    " ",
    "\n",
    "a",
    "key",
    "1",
    "-0.5e3",
    "1e999",
    "9" * 30,
    "true",
    "null",
    "None",
    "$1.a",
    "é",
    "日本",
]
"""Pieces of call syntax and of what breaks it."""
HUGE = ["9" * 4400, "1" * 400 + ".5"]
"""Numbers past what Python converts to an int (4300 digits), and past a float's range."""
TEXT = st.lists(st.sampled_from(MARKERS) | st.sampled_from(PIECES + HUGE) | st.text(max_size=6), max_size=24).map(
    "".join
)
"""Arbitrary text, dense in markers and call syntax."""

KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True)
STRINGS = (
    st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=5).map("".join).filter(lambda s: QUOTE not in s)
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | STRINGS
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS | STRINGS, inner, max_size=3),
    max_leaves=12,
)
CALLS = st.lists(
    st.builds(lambda name, arguments: ToolCall(name=name, arguments=arguments), KEYS, st.dictionaries(KEYS, VALUES)),
    max_size=3,
)
PROSE = st.text(max_size=12).filter(lambda s: "<" not in s)


@st.composite
def valid_turns(draw: st.DrawFn) -> tuple[str, bool]:
    """A turn the dialect writes (a thought, text, calls, an end), and whether it opens inside the thought."""
    in_thought = draw(st.booleans())
    thought = draw(st.none() | PROSE)
    head = ""
    if in_thought:
        head = f"{thought or ''}{CHANNEL_CLOSE}"
    elif thought is not None:
        head = f"{CHANNEL_OPEN}thought\n{thought}{CHANNEL_CLOSE}"
    calls = "".join(render_call(call) for call in draw(CALLS))
    end = draw(st.sampled_from(["", TURN_END, RESPONSE_OPEN]))
    return head + draw(PROSE) + calls + end, in_thought


def cuts_of(data: st.DataObject, text: str) -> list[str]:
    """`text` in chunks cut at arbitrary points."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=10), label="cuts"))
    return [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]


# --- the readings being compared ----------------------------------------------------------


def reading(message: AssistantMessage) -> tuple[str, str | None, list[Any]]:
    return message.text, message.thinking, [(c.name, typed(c.arguments)) for c in message.tool_calls]


def whole(text: str, *, strict: bool, in_thought: bool) -> tuple[str, str | None, list[Any]] | None:
    """What `parse_turn` reads, or None when it raises `ModelOutputError` (anything else fails the test)."""
    message = only_agentkit_errors(parse_turn, text, strict=strict, in_thought=in_thought)
    return None if message is None else reading(message)


def streamed(chunks: list[str], *, strict: bool, in_thought: bool) -> tuple[str, str | None, list[Any]] | None:
    """What `StreamParser` reads from `chunks`, trimmed as `parse_turn` trims, or None when it raises."""
    parser = StreamParser(strict=strict, in_thought=in_thought)

    def read() -> list[Any]:
        return [event for chunk in chunks for event in parser.feed(chunk)] + parser.close()

    events = only_agentkit_errors(read)
    if events is None:
        return None
    text = "".join(e.text for e in events if e.kind == "text").strip()
    thinking = "".join(e.text for e in events if e.kind == "thinking").strip() or None
    return text, thinking, [(e.call.name, typed(e.call.arguments)) for e in events if e.call is not None]


def deltas(chunks: list[str], *, strict: bool, in_thought: bool) -> tuple[str, str | None, list[Any]] | None:
    """What `TurnDeltas` yields from `chunks`, added up, or None when it raises."""
    parser = TurnDeltas(strict=strict, in_thought=in_thought)

    def read() -> list[Any]:
        return [delta for chunk in chunks for delta in parser.feed(chunk)] + parser.close()

    found = only_agentkit_errors(read)
    if found is None:
        return None
    assert all(d.text for d in found if isinstance(d, TextDelta | ThinkingDelta)), "an empty delta"
    text = "".join(d.text for d in found if isinstance(d, TextDelta))
    thinking = "".join(d.text for d in found if isinstance(d, ThinkingDelta)) or None
    return text, thinking, [(d.call.name, typed(d.call.arguments)) for d in found if isinstance(d, ToolCallReady)]


def check_streaming_reads_as_whole(text: str, chunks: list[str], *, in_thought: bool) -> None:
    """The property: in these chunks, both modes read `text` as `parse_turn` does, or fail as it does."""
    for strict in (True, False):
        expected = whole(text, strict=strict, in_thought=in_thought)
        assert streamed(chunks, strict=strict, in_thought=in_thought) == expected
        assert deltas(chunks, strict=strict, in_thought=in_thought) == expected


WEATHER = ToolSpec(
    name="get_weather",
    description="The weather.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)

# --- arbitrary text -----------------------------------------------------------------------


@fuzz_settings()
@given(TEXT, st.booleans(), st.booleans())
def test_parse_turn_on_arbitrary_text_returns_or_raises_model_output_error(
    text: str, strict: bool, in_thought: bool
) -> None:
    whole(text, strict=strict, in_thought=in_thought)


@fuzz_settings()
@given(TEXT, st.booleans(), st.data())
def test_streaming_arbitrary_text_in_any_chunks_reads_as_the_whole(
    text: str, in_thought: bool, data: st.DataObject
) -> None:
    check_streaming_reads_as_whole(text, cuts_of(data, text), in_thought=in_thought)


@fuzz_settings()
@given(
    TEXT,
    st.booleans(),
    st.booleans(),
    st.sampled_from(["auto", "required", "none", "get_weather"]),
)
def test_the_dialects_parse_on_arbitrary_text_returns_or_raises_model_output_error(
    text: str, strict: bool, thinking: bool, tool_choice: str
) -> None:
    dialect = Gemma4Dialect(strict=strict, thinking=thinking)
    asked = ModelRequest(messages=(UserMessage(text="Paris?"),), tools=(WEATHER,), tool_choice=tool_choice)
    message = only_agentkit_errors(dialect.parse, text, asked)
    if message is not None and tool_choice != "none":
        assert message.tool_calls or message.text


# --- valid turns, whole and in chunks -----------------------------------------------------


@fuzz_settings()
@given(valid_turns(), st.data())
def test_a_valid_turn_in_any_chunks_reads_as_the_whole(turn: tuple[str, bool], data: st.DataObject) -> None:
    text, in_thought = turn
    strict = whole(text, strict=True, in_thought=in_thought)
    assert strict is not None, "a turn the dialect wrote does not parse"
    assert whole(text, strict=False, in_thought=in_thought) == strict, "tolerant reading differs from strict"
    check_streaming_reads_as_whole(text, cuts_of(data, text), in_thought=in_thought)


# --- mutated turns ------------------------------------------------------------------------


@st.composite
def mutated_turns(draw: st.DrawFn) -> tuple[str, bool]:
    """A valid turn cut short, with characters deleted, and text inserted."""
    text, in_thought = draw(valid_turns())
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["cut", "delete", "insert"]))
        at = draw(st.integers(0, len(text)))
        if edit == "cut":
            text = text[:at]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 6)) :]
        else:
            text = text[:at] + draw(st.sampled_from(MARKERS) | st.sampled_from(PIECES + HUGE)) + text[at:]
    return text, in_thought


@fuzz_settings()
@given(mutated_turns(), st.data())
def test_a_mutated_turn_in_any_chunks_reads_as_the_whole(turn: tuple[str, bool], data: st.DataObject) -> None:
    text, in_thought = turn
    check_streaming_reads_as_whole(text, cuts_of(data, text), in_thought=in_thought)


NESTING = st.sampled_from(["[", "{a:", "(a:", "{a:[", '{<|"|>k<|"|>:'])


@fuzz_settings(max(20, EXAMPLES // 10))
@given(NESTING, st.integers(1, 10_000), st.booleans(), st.booleans())
def test_nesting_thousands_deep_raises_model_output_error_not_recursion_error(
    opener: str, depth: int, closed: bool, strict: bool
) -> None:
    closer = {"[": "]", "{a:": "}", "(a:": ")", "{a:[": "]}", '{<|"|>k<|"|>:': "}"}[opener]
    text = f"{CALL_OPEN}call:f{{a:" + opener * depth + "1" + (closer * depth + "}" + CALL_CLOSE if closed else "")
    whole(text, strict=strict, in_thought=False)  # each time-boxed (`only_agentkit_errors`)
    streamed([text[: len(text) // 2], text[len(text) // 2 :]], strict=strict, in_thought=False)
