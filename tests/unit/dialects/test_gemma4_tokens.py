"""The Gemma 4 grammar with markers named by token id (`Gemma4Dialect(marker_tokens=True)`).

A Gemma 4 tokenizer holds each marker (`<|tool_call>`, `<|"|>`, ...) as one
special token; a grammar that names a marker as text also accepts any
ordinary tokens that spell it. These tests feed token ids, as the engine
does, to xgrammar's matcher over the stand-in Gemma 4 tokenizer (the
embedded model's vocabulary with Gemma 4's markers at Gemma 4's ids, made by
`make install`): what the renderer writes, tokenised, is accepted; the same
text with one marker spelled out in ordinary tokens is not.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from agentkit.dialects.gemma4 import CALL_CLOSE, CALL_OPEN, MARKER_TOKENS, QUOTE, Gemma4Dialect, render_call
from agentkit.dialects.gemma4_grammar import build_constraint
from agentkit.messages import AssistantMessage, ToolCall, ToolResult, UserMessage
from agentkit.runtime import ModelRequest
from agentkit.tool import ToolSpec
from tests.support.grammars import TokenMatchers

from .test_gemma4_grammar import _STRINGS, toolboxes


@cache
def tokenizer() -> Any:
    import transformers

    from agentkit.runtimes.vllm.tiny_gemma4 import model_dir

    return transformers.AutoTokenizer.from_pretrained(model_dir())


@cache
def matchers() -> TokenMatchers:
    return TokenMatchers(tokenizer(), 262144)


@pytest.fixture(scope="module", autouse=True)
def _release_the_vocabulary() -> Iterator[None]:
    """The tokenizer and both engines' views of its 262k tokens take about a
    gigabyte: free them for the rest of the session (the vLLM engines need it)."""
    yield
    matchers.cache_clear()
    tokenizer.cache_clear()
    gc.collect()


def encode(text: str) -> list[int]:
    ids: list[int] = tokenizer().encode(text, add_special_tokens=False)
    return ids


def spelled(marker: str) -> list[int]:
    """`marker` in ordinary tokens, one character each: what a grammar naming it as text lets through."""
    ids = [tokenizer().convert_tokens_to_ids(char) for char in marker]
    assert MARKER_TOKENS[marker] not in ids
    assert tokenizer().decode(ids) == marker
    return ids


def accepts(tools: list[ToolSpec], tool_choice: str, ids: list[int], **options: Any) -> bool:
    return matchers().accepts(build_constraint(tools, tool_choice, tokens=True, **options), ids)


def test_the_stand_in_tokenizer_holds_each_marker_as_its_one_token() -> None:
    for marker, token in MARKER_TOKENS.items():
        assert encode(marker) == [token]


# Each example compiles a dozen grammars against the 262k-token vocabulary (about 6 s on 2 cores):
# 6 examples keep this test near half a minute of CI's time; the string-level grammar tests run hundreds.
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toolboxes(), _STRINGS.filter(lambda s: "<" not in s and "|" not in s))
def test_rendered_calls_tokenised_are_accepted_and_a_spelled_marker_is_not(
    box: tuple[list[ToolSpec], list[ToolCall]], text: str
) -> None:
    specs, calls = box
    first, last = render_call(calls[0]), render_call(calls[-1])
    assert accepts(specs, "auto", encode(first))
    assert accepts(specs, "auto", encode(text + first + last + text))
    assert accepts(specs, "required", encode(first + last))
    assert accepts(specs, "required", encode(text + first), thinking=True)
    assert accepts(specs, calls[0].name, encode(first))
    assert accepts(specs, "auto", encode("Done.\n<channel|>" + first), thinking=True, in_thought=True)
    # The same call with its opener, its closer or a string delimiter spelled out.
    opened = spelled(CALL_OPEN) + encode(first.removeprefix(CALL_OPEN))
    closed = encode(first.removesuffix(CALL_CLOSE)) + spelled(CALL_CLOSE)
    for choice in ("auto", "required", calls[0].name):
        assert not accepts(specs, choice, opened)
        assert not accepts(specs, choice, closed)
    if QUOTE in first:
        head, _, tail = first.partition(QUOTE)
        assert not accepts(specs, "required", encode(head) + spelled(QUOTE) + encode(tail))


WEATHER = ToolSpec(
    name="get_weather",
    description="Get the weather.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.mark.parametrize(
    "marker", ["<|tool_call>", "<tool_call|>", "<|channel>", "<channel|>", "<|turn>", "<|tool>", '<|"|>', "<|think|>"]
)
def test_free_text_holds_no_marker_spelled_or_as_its_token(marker: str) -> None:
    for ids in (spelled(marker), [MARKER_TOKENS[marker]]):
        assert not accepts([WEATHER], "auto", encode("Hello ") + ids + encode(" world"))
    assert accepts([WEATHER], "auto", encode("Hello world"))


def test_a_thought_opens_and_closes_with_its_tokens() -> None:
    call = encode(render_call(ToolCall(name="get_weather", arguments={"city": "Oslo"})))
    thought = encode("<|channel>thought\nNeed it.<channel|>")
    assert thought[0] == MARKER_TOKENS["<|channel>"]
    assert accepts([WEATHER], "auto", thought + call, thinking=True)
    assert not accepts([WEATHER], "auto", thought + call)  # not asked to think: no thought
    assert not accepts(
        [WEATHER], "auto", spelled("<|channel>") + encode("thought\nNeed it.<channel|>") + call, thinking=True
    )


def test_the_dialect_names_markers_by_token_when_told_and_the_gemma_4_presets_tell_it() -> None:
    from agentkit.runtimes.vllm import PRESETS

    request = ModelRequest(messages=[UserMessage(text="Oslo?")], tools=[WEATHER], tool_choice="required")
    by_token = Gemma4Dialect(marker_tokens=True).constraint(request)
    by_text = Gemma4Dialect().constraint(request)
    assert by_token is not None
    assert by_text is not None
    for engine, written in (("guidance", "<[{}]>"), ("xgrammar", "Token({})")):
        for marker in (CALL_OPEN, QUOTE):
            assert written.format(MARKER_TOKENS[marker]) in by_token.structured_outputs(engine)["grammar"]
            assert written.format(MARKER_TOKENS[marker]) not in by_text.structured_outputs(engine)["grammar"]
    for name, preset in PRESETS.items():
        # The embedded Gemma 3 holds other tokens at Gemma 4's ids.
        assert preset.options("gemma4").get("marker_tokens", False) == (name != "default"), name


def test_after_tool_results_with_thinking_the_grammar_starts_inside_the_thought() -> None:
    dialect = Gemma4Dialect(thinking=True, marker_tokens=True)
    call = ToolCall(name="get_weather", arguments={"city": "Oslo"}, id="c1")
    request = ModelRequest(
        messages=[
            UserMessage(text="Oslo?"),
            AssistantMessage(tool_calls=[call]),
            ToolResult(call_id="c1", name="get_weather", content="-3 C"),
        ],
        tools=[WEATHER],
    )
    constraint = dialect.constraint(request)
    assert constraint is not None
    assert matchers().accepts(constraint, encode("Cold.\n<channel|>It is -3 C."))
