"""llama.cpp in process (`llama:default`): the packaged GGUF loaded as it is, every call valid under the grammar.

The constraint is the dialect's, the one vLLM gets, enforced by llguidance as
a token mask from llama.cpp's sampling. The model loads in about a second, so
one engine serves the module.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from agentkit import (
    Agent,
    ContextLengthExceeded,
    ModelRequest,
    ModelResponse,
    RuntimeUnavailable,
    Sampling,
    SystemMessage,
    TextDelta,
    UserMessage,
)
from agentkit.decoding import Completion
from agentkit.dialect import Constraint
from agentkit.dialects.gemma4 import Gemma4Dialect
from agentkit.grammar import Chars, Grammar, Lit, Rep, Tok, seq
from agentkit.runtime import Runtime
from agentkit.runtimes import resolve
from agentkit.runtimes.llama import LlamaEngine
from agentkit.tool import as_tool

from ..conftest import FIGURES
from .native_suite import EXPECTED, PROMPTS, TOOLS

SPECS = [as_tool(t).spec for t in TOOLS]
SLICE = 20  # of the 50 prompts: 4 per tool (they come 10 per tool, in order)


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaEngine]:
    engine = resolve("llama:default")
    assert isinstance(engine, LlamaEngine)
    yield engine
    engine.close()


def required(prompt: str) -> ModelRequest:
    return ModelRequest(
        messages=[SystemMessage(text="Use the tools."), UserMessage(text=prompt)],
        tools=SPECS,
        tool_choice="required",
        sampling=Sampling(max_tokens=160),
    )


NATIVE = Gemma4Dialect(examples=len(TOOLS), max_string=60)
"""As on vLLM (tests/integration/test_gemma4_engine.py): a worked example per tool, capped strings."""


def chosen(per_tool: int) -> list[int]:
    """`per_tool` prompts of each tool's ten."""
    return [i for i in range(len(PROMPTS)) if i % 10 < per_tool]


CHOSEN = chosen(SLICE // 5)


def test_every_call_decoded_under_the_grammar_is_valid(llama: LlamaEngine) -> None:
    native = LlamaEngine("default", dialect=NATIVE)
    try:
        check_required_calls("llama:default", native)
    finally:
        native.close()


def check_required_calls(label: str, runtime: Runtime, picked: list[int] = CHOSEN) -> None:
    """The `picked` prompts, all at once under `tool_choice="required"`: a call each, every one valid."""

    async def ask_all() -> list[ModelResponse]:
        return list(await asyncio.gather(*(runtime.generate(required(PROMPTS[i])) for i in picked)))

    started = time.monotonic()
    responses = asyncio.run(ask_all())
    seconds = time.monotonic() - started
    validators = {s.name: jsonschema.Draft202012Validator(s.parameters) for s in SPECS}
    calls = [call for r in responses for call in r.message.tool_calls]
    problems = [
        f"{c.name}({c.arguments}): {e.message}" for c in calls for e in validators[c.name].iter_errors(c.arguments)
    ]
    matched = sum(
        bool(r.message.tool_calls) and r.message.tool_calls[0].name == EXPECTED[i]
        for r, i in zip(responses, picked, strict=True)
    )
    tokens = sum(r.usage.completion_tokens for r in responses)
    FIGURES[f"{label}, required calls"] = (
        f"{len(calls) - len(problems)}/{len(calls)} valid over {len(picked)} prompts; "
        f"{matched}/{len(picked)} chose the tool the prompt asks for; {tokens} tokens in {seconds:.1f} s"
    )
    assert all(r.message.tool_calls for r in responses), [r.raw_text for r in responses if not r.message.tool_calls]
    assert problems == []
    assert all(r.raw_text.startswith("<|tool_call>call:") for r in responses)


def test_the_json_dialect_is_constrained_by_its_schema(llama: LlamaEngine) -> None:
    json_engine = LlamaEngine("default", dialect="json")
    try:
        response = asyncio.run(json_engine.generate(required("What is the weather in Lima?")))
    finally:
        json_engine.close()
    assert response.message.tool_calls
    json.loads(response.raw_text)  # the whole turn is one JSON value


def test_an_agent_runs_to_an_answer_and_the_prompt_prefix_is_cached(llama: LlamaEngine) -> None:
    agent = Agent(runtime=llama, tools=[TOOLS[0]], max_steps=3)
    result = agent.run("What is the weather in Oslo?")
    assert result.steps[0].tool_results  # a call, run
    assert result.usage.completion_tokens > 0
    assert result.usage.cached_tokens > 0  # the second turn reuses the first's prompt


def test_streaming_yields_text_as_it_decodes_and_leaving_early_frees_the_engine(llama: LlamaEngine) -> None:
    free = ModelRequest(messages=[UserMessage(text="Tell me about Paris.")], sampling=Sampling(max_tokens=64))

    async def first_delta_then_leave() -> list[object]:
        seen = []
        async for delta in llama.stream(free):
            seen.append(delta)
            if isinstance(delta, TextDelta):
                break
        return seen

    seen = asyncio.run(first_delta_then_leave())
    assert isinstance(seen[-1], TextDelta)
    # The decoding stopped and released the model: the next turn runs.
    after = asyncio.run(llama.generate(required("What is the weather in Paris?")))
    assert after.message.tool_calls


def test_special_tokens_the_grammar_asks_for_are_written_out(llama: LlamaEngine) -> None:
    # A Gemma 4 GGUF's markers are special tokens: the text must show them, as vLLM's does
    # (skip_special_tokens off). Here the embedded model's <start_of_turn> (105) stands in.
    forced = Constraint(
        kind="grammar", value=Grammar({"root": seq(Lit("Yes"), Tok(105, "<start_of_turn>"), Lit("ok"))})
    )

    async def complete() -> list[object]:
        return [item async for item in llama.complete("<bos>Say yes.", forced, Sampling(max_tokens=8), (), live=True)]

    *pieces, completion = asyncio.run(complete())
    assert isinstance(completion, Completion)
    assert completion.text == "Yes<start_of_turn>ok"
    assert "".join(str(p) for p in pieces) == completion.text
    assert not completion.cut  # the grammar ended, so did the turn


def test_stop_strings_end_the_turn_and_are_not_in_its_text(llama: LlamaEngine) -> None:
    forced = Constraint(kind="grammar", value=Grammar({"root": seq(Lit("one, two, three"), Rep(Chars("a-z"), 0, 5))}))

    async def complete() -> list[object]:
        return [
            item async for item in llama.complete("<bos>Count.", forced, Sampling(max_tokens=12), (", th",), live=True)
        ]

    *pieces, completion = asyncio.run(complete())
    assert isinstance(completion, Completion)
    assert completion.text == "one, two"
    assert "".join(str(p) for p in pieces) == "one, two"  # nothing of the stop string was passed on


def test_a_prompt_longer_than_the_context_is_refused(llama: LlamaEngine) -> None:
    long = ModelRequest(messages=[UserMessage(text="word " * 5000)])
    with pytest.raises(ContextLengthExceeded, match="takes 4096"):
        asyncio.run(llama.generate(long))


def test_what_llama_cannot_load_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnavailable, match=r"path of a \.gguf file"):
        resolve("llama:model.bin")
    missing = LlamaEngine(str(tmp_path / "absent.gguf"))
    with pytest.raises(RuntimeUnavailable, match="no GGUF file at"):
        missing.start()
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf")
    with pytest.raises(RuntimeUnavailable, match="could not load"):
        LlamaEngine(str(broken)).start()
