"""`read_stream`: an engine's text, as it decodes, into the deltas of a streamed turn;
and `DIALECTS`, the table of dialects by name.

The text comes from a generator written here, as an engine would yield it;
the dialects that read it and make the response are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from agentkit import dialect as dialect_module
from agentkit.dialect import (
    DIALECTS,
    Dialect,
    StreamingDialect,
    final_response,
    get_dialect,
    read_stream,
    register_dialect,
)
from agentkit.dialects.json_action import JsonDialect
from agentkit.errors import ModelOutputError, UnknownName
from agentkit.messages import UserMessage
from agentkit.registry import Registry
from agentkit.runtime import ModelRequest, ModelResponse, TextDelta, ToolCallReady
from tests.support.tools import WEATHER

ASKED = ModelRequest(messages=(UserMessage(text="Paris?"),), tools=(WEATHER,))


async def decoding(
    dialect: Dialect, pieces: list[str], closed: list[bool] | None = None
) -> AsyncGenerator[str | ModelResponse, None]:
    """The text in `pieces`, then the response the dialect reads from the whole of it."""
    try:
        for piece in pieces:
            yield piece
        yield ModelResponse(message=dialect.parse("".join(pieces), ASKED), raw_text="".join(pieces))
    finally:
        if closed is not None:
            closed.append(True)


def read(dialect: Dialect, pieces: list[str]) -> list[Any]:
    async def go() -> list[Any]:
        return [item async for item in read_stream(dialect, ASKED, decoding(dialect, pieces))]

    return asyncio.run(go())


def test_a_streaming_dialect_reads_the_text_as_it_comes_and_the_calls_keep_their_ids() -> None:
    dialect = get_dialect("gemma4")
    assert isinstance(dialect, StreamingDialect)
    pieces = [
        "Let me ",
        "check.<|tool",
        '_call>call:get_weather{city:<|"|>Pa',
        'ris<|"|>}<tool_call|>',
        "<|tool_response>",
    ]
    *deltas, response = read(dialect, pieces)
    assert deltas[:2] == [TextDelta(text="Let me"), TextDelta(text=" check.")]
    (ready,) = deltas[2:]
    assert isinstance(ready, ToolCallReady)
    assert (ready.call.name, ready.call.arguments) == ("get_weather", {"city": "Paris"})
    assert response.message.tool_calls == (ready.call,)  # the same call, id and all
    assert response.raw_text == "".join(pieces)


def test_a_dialect_without_a_stream_parser_gives_the_turn_whole_at_the_end() -> None:
    dialect = get_dialect("json")
    assert not isinstance(dialect, StreamingDialect)
    pieces = ['{"final_answer":', '"It is sunny."}']
    *deltas, response = read(dialect, pieces)
    assert deltas == [TextDelta(text="It is sunny.")]
    assert response.message.text == "It is sunny."


def test_off_format_text_ends_the_deltas_and_the_whole_texts_parse_says_why() -> None:
    dialect = get_dialect("gemma4")
    seen: list[Any] = []

    async def go() -> None:
        async for item in read_stream(dialect, ASKED, decoding(dialect, ["Hello", "<tool_call|>", "more"])):
            seen.append(item)

    with pytest.raises(ModelOutputError, match="closes nothing"):
        asyncio.run(go())
    assert seen == [TextDelta(text="Hello")]


def test_leaving_early_ends_the_decoding_at_once() -> None:
    dialect = get_dialect("gemma4")
    closed: list[bool] = []

    async def go() -> None:
        stream = read_stream(dialect, ASKED, decoding(dialect, ["One ", "two ", "three"], closed))
        async for _ in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator
        assert closed == [True]

    asyncio.run(go())


def test_final_response_is_the_response_at_the_end() -> None:
    dialect = get_dialect("gemma4")
    response = asyncio.run(final_response(decoding(dialect, ["It is ", "sunny."])))
    assert response.message.text == "It is sunny."


def test_the_built_in_dialects_are_one_table_that_imports_nothing_to_list() -> None:
    assert DIALECTS.names == ("gemma4", "json")
    assert DIALECTS.target("json") == "agentkit.dialects.json_action:JsonDialect"
    assert isinstance(get_dialect("json", examples=1), JsonDialect)


def test_an_unknown_dialect_names_the_known_ones() -> None:
    with pytest.raises(UnknownName, match="unknown dialect 'nope'; known: gemma4, json"):
        get_dialect("nope")


def test_a_registered_dialect_is_built_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy of the table, so that the names added here stay in this test.
    table = Registry("dialect", {name: DIALECTS.target(name) for name in DIALECTS.names})
    monkeypatch.setattr(dialect_module, "DIALECTS", table)
    register_dialect("json-by-path", "agentkit.dialects.json_action:JsonDialect")
    register_dialect("json-copy", JsonDialect)
    dialect = get_dialect("json-copy", max_calls=2)
    assert isinstance(dialect, JsonDialect)
    assert dialect.max_calls == 2
    assert isinstance(get_dialect("json-by-path"), JsonDialect)
