"""The tiny random-weights Gemma 4 on the real vLLM engine: Gemma 4's architecture and token ids.

Random weights know nothing, so whatever a constrained turn holds is the
grammar's doing, and an unconstrained turn of the same model shows what it
does without one. One batch runs once: 64 requests with the grammar (required,
each tool by name, and auto, over the native suite's five tools; thinking off
and on, on; some resuming inside a thought after a tool result) and the same
requests without it. The tests read the turns and the engine's own outputs
(token ids, stop reasons), recorded as `generate` sees them.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest

from agentkit import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    Sampling,
    SystemMessage,
    ToolCall,
    ToolResult,
    UserMessage,
)
from agentkit.dialect import get_dialect
from agentkit.dialects.gemma4 import parse_turn
from agentkit.runtimes.vllm import PRESETS, VLLMEngine
from agentkit.runtimes.vllm.tiny_gemma4 import EOS_TOKEN_IDS, MARKERS
from agentkit.tool import as_tool

from ..conftest import FIGURES
from .native_suite import PROMPTS, TOOLS

SPECS = [as_tool(t).spec for t in TOOLS]
VALIDATORS = {s.name: jsonschema.Draft202012Validator(s.parameters) for s in SPECS}
KINDS = ["required", *(s.name for s in SPECS), "auto"]
PER_MODE = 32
"""Requests per thinking mode: 64 with the grammar, 64 without."""
STOP_STRINGS = ("<turn|>", "<|tool_response>")


@dataclass
class Turn:
    request: ModelRequest
    thinking: bool
    constrained: bool
    response: ModelResponse | BaseException
    params: Any
    """The `SamplingParams` the engine got."""
    output: Any
    """vLLM's `CompletionOutput`: the token ids behind the text."""

    @property
    def kind(self) -> str:
        choice = self.request.tool_choice
        return choice if choice in ("required", "auto") else "named"

    @property
    def resumed(self) -> bool:
        """The prompt ended after a tool result (with thinking on: inside an open thought)."""
        return isinstance(self.request.messages[-1], ToolResult)

    def valid(self) -> bool:
        """A decision the loop can use: calls that name allowed tools with arguments that fit, or text where allowed."""
        if not isinstance(self.response, ModelResponse):
            return False
        message, choice = self.response.message, self.request.tool_choice
        if choice != "auto" and not message.tool_calls:
            return False
        if not message.tool_calls and not message.text:
            return False
        return all(
            choice in ("auto", "required", call.name)
            and call.name in VALIDATORS
            and VALIDATORS[call.name].is_valid(call.arguments)
            for call in message.tool_calls
        )


def requests(max_tokens: int) -> list[ModelRequest]:
    """`PER_MODE` requests over every kind of choice; every fourth ends after a call's result."""
    out = []
    for i in range(PER_MODE):
        kind = KINDS[i % len(KINDS)]
        messages: list[Any] = [SystemMessage(text="Use the tools."), UserMessage(text=PROMPTS[(i * 7) % len(PROMPTS)])]
        if i % 4 == 3:
            call = ToolCall(name="get_weather", arguments={"city": "Lima"}, id=f"c{i}")
            messages += [AssistantMessage(tool_calls=[call]), ToolResult(call_id=call.id, name=call.name, content="21")]
        out.append(
            ModelRequest(
                messages=messages,
                tools=SPECS,
                tool_choice=kind,
                # No seed: on vLLM 0.32's CPU backend a seeded request whose prompt is
                # prefilled in chunks (many long prompts at once) kills the engine
                # ("CPU Generator does not use offset").
                sampling=Sampling(max_tokens=max_tokens, temperature=1.0),
            )
        )
    return out


@pytest.fixture(scope="module")
def turns(tiny_engine: VLLMEngine) -> list[Turn]:
    options = PRESETS["tiny-gemma4"].options("gemma4")
    runs: list[tuple[ModelRequest, bool, bool, VLLMEngine]] = []
    for thinking in (False, True):
        dialect = get_dialect("gemma4", **options, thinking=thinking)
        for constrained in (True, False):
            runtime = tiny_engine.variant(dialect=dialect, constrained=constrained)
            # Unconstrained turns run to max_tokens: a few dozen tokens show what they are.
            runs += [(request, thinking, constrained, runtime) for request in requests(240 if constrained else 48)]
    seen: dict[int, tuple[Any, Any]] = {}
    which: contextvars.ContextVar[int] = contextvars.ContextVar("which")
    core = tiny_engine._core
    outputs = core.outputs

    async def recording(prompt: Any, params: Any) -> AsyncIterator[tuple[Any, float]]:
        async for output, arrived in outputs(prompt, params):
            seen[which.get()] = (params, output.outputs[0])  # the last one stays: the whole turn
            yield output, arrived

    async def ask(index: int, runtime: VLLMEngine, request: ModelRequest) -> ModelResponse:
        which.set(index)  # each gathered task runs in a context of its own
        return await runtime.generate(request)

    async def ask_all() -> list[ModelResponse | BaseException]:
        asked = (ask(i, runtime, request) for i, (request, _, _, runtime) in enumerate(runs))
        return await asyncio.gather(*asked, return_exceptions=True)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(core, "outputs", recording)
        responses = asyncio.run(ask_all())
    return [
        Turn(request, thinking, constrained, response, *seen.get(i, (None, None)))
        for i, ((request, thinking, constrained, _), response) in enumerate(zip(runs, responses, strict=True))
    ]


def table(turns: list[Turn]) -> str:
    """Valid turns per choice and thinking mode, with the grammar and without."""
    cells = []
    for thinking in (False, True):
        for kind in ("required", "named", "auto"):
            cell = [t for t in turns if t.thinking == thinking and t.kind == kind]
            with_grammar = [t for t in cell if t.constrained]
            without = [t for t in cell if not t.constrained]
            cells.append(
                f"{kind}, thinking {'on' if thinking else 'off'}: "
                f"{sum(t.valid() for t in with_grammar)}/{len(with_grammar)} with the grammar, "
                f"{sum(t.valid() for t in without)}/{len(without)} without"
            )
    return "; ".join(cells)


def test_constrained_turns_are_all_valid_and_unconstrained_ones_are_not(turns: list[Turn]) -> None:
    constrained = [t for t in turns if t.constrained]
    free = [t for t in turns if not t.constrained]
    FIGURES["tiny-gemma4 validity"] = table(turns)
    invalid = [(t.request.tool_choice, t.thinking, t.response) for t in constrained if not t.valid()]
    assert invalid == []
    assert len(constrained) >= 50
    assert sum(t.resumed and t.thinking for t in constrained) >= 8  # resumed inside an open thought
    assert sum(len(t.response.message.tool_calls) for t in constrained if isinstance(t.response, ModelResponse)) >= 40
    # The contrast: the same model, the same requests, no grammar.
    assert sum(t.valid() for t in free) < len(free) / 4, table(turns)


def test_constrained_turns_end_on_gemma_4s_stop_tokens(turns: list[Turn]) -> None:
    ended = Counter[str]()
    for turn in (t for t in turns if t.constrained):
        # Each turn ended on one of Gemma 4's stop tokens (which stay out of the text) or on a
        # stop string, never on max_tokens.
        assert turn.output.finish_reason == "stop", turn.output.text
        ids = list(turn.output.token_ids)
        assert ids[-1] in EOS_TOKEN_IDS or turn.output.stop_reason in STOP_STRINGS
        reason = turn.output.stop_reason  # a stop token's id, a stop string, or None for <eos>
        ended[reason if isinstance(reason, str) else f"token {reason or ids[-1]}"] += 1
    # Mostly as a real Gemma 4 ends a turn: on <turn|> (106), <|tool_response> (50) or <eos> (1).
    assert sum(n for key, n in ended.items() if key.startswith("token")) > sum(ended.values()) / 2, ended
    FIGURES["tiny-gemma4, constrained turns ended by"] = str(dict(sorted(ended.items())))


def spelled_markers(turn: Turn) -> Counter[str]:
    """How many markers the turn's text holds that were not written as their one token."""
    ids = list(turn.output.token_ids)
    if ids and ids[-1] in EOS_TOKEN_IDS:
        ids.pop()  # the stop token ends the turn; it is not in the text
    return Counter(
        {
            marker: turn.output.text.count(marker) - ids.count(token_id)
            for token_id, marker in MARKERS.items()
            if turn.output.text.count(marker) != ids.count(token_id)
        }
    )


def test_every_marker_is_written_as_its_one_token(turns: list[Turn]) -> None:
    constrained = [t for t in turns if t.constrained]
    spelled = sum((spelled_markers(t) for t in constrained), Counter[str]())
    written = sum(t.output.text.count(m) for t in constrained for m in MARKERS.values())
    FIGURES["tiny-gemma4, markers not written as one token"] = f"{sum(spelled.values())} of {written}: {dict(spelled)}"
    assert written >= 100
    assert spelled == Counter()


def test_skipping_special_tokens_would_lose_every_call(turns: list[Turn], tiny_engine: VLLMEngine) -> None:
    """The engine decodes with `skip_special_tokens=False`; with the default, the markers vanish."""
    with_calls = [
        t for t in turns if t.constrained and isinstance(t.response, ModelResponse) and t.response.message.tool_calls
    ]
    assert with_calls
    for turn in with_calls:
        assert turn.params.skip_special_tokens is False
        skipped = tiny_engine.tokenizer.decode(list(turn.output.token_ids), skip_special_tokens=True)
        assert not any(marker in skipped for marker in MARKERS.values())
        assert parse_turn(skipped, strict=False).tool_calls == ()
