"""The tiny random-weights Gemma 4 on the real vLLM engine: Gemma 4's architecture and token ids.

Random weights know nothing, so whatever a constrained turn holds is the
grammar's doing. One batch of requests (required, named and auto choices over
the native suite's five tools) runs once; the tests read its turns and the
engine's own outputs (token ids, stop reasons), recorded as `generate` sees them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest

from agentkit import ModelRequest, ModelResponse, Sampling, SystemMessage, UserMessage
from agentkit.runtimes.tiny_gemma4 import EOS_TOKEN_IDS, MARKERS
from agentkit.runtimes.vllm import VLLMEngine
from agentkit.tool import as_tool

from ..conftest import FIGURES
from .native_suite import PROMPTS, TOOLS

SPECS = [as_tool(t).spec for t in TOOLS]
CHOICES = ["required"] * 4 + ["book_flight", "order_groceries"] + ["auto"] * 2
STOP_STRINGS = ("<turn|>", "<|tool_response>")


@dataclass
class Turn:
    request: ModelRequest
    response: ModelResponse | BaseException
    params: Any
    """The `SamplingParams` the engine got."""
    output: Any
    """vLLM's `CompletionOutput`: the token ids behind the text."""


@pytest.fixture(scope="module")
def turns(tiny_engine: VLLMEngine) -> list[Turn]:
    requests = [
        ModelRequest(
            messages=[SystemMessage(text="Use the tools."), UserMessage(text=PROMPTS[i * 6])],
            tools=SPECS,
            tool_choice=choice,
            sampling=Sampling(max_tokens=300, temperature=1.0, seed=i),
        )
        for i, choice in enumerate(CHOICES)
    ]
    seen: dict[int, tuple[Any, Any]] = {}
    core = tiny_engine._core
    submit = core.submit

    async def recording(prompt: Any, params: Any) -> Any:
        result = await submit(prompt, params)
        seen[params.seed] = (params, result[0].outputs[0])
        return result

    async def ask_all() -> list[ModelResponse | BaseException]:
        return await asyncio.gather(*(tiny_engine.generate(r) for r in requests), return_exceptions=True)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(core, "submit", recording)
        responses = asyncio.run(ask_all())
    return [Turn(r, response, *seen[r.sampling.seed]) for r, response in zip(requests, responses, strict=True)]


def test_constrained_turns_are_valid_and_end_on_gemma_4s_stops(turns: list[Turn]) -> None:
    validators = {s.name: jsonschema.Draft202012Validator(s.parameters) for s in SPECS}
    failed = [(t.request.tool_choice, t.response) for t in turns if isinstance(t.response, BaseException)]
    assert failed == []
    calls = 0
    for turn in turns:
        assert isinstance(turn.response, ModelResponse)
        message, choice = turn.response.message, turn.request.tool_choice
        if choice != "auto":
            assert message.tool_calls, turn.response.raw_text
        for call in message.tool_calls:
            assert choice in ("auto", "required", call.name)
            assert list(validators[call.name].iter_errors(call.arguments)) == [], turn.response.raw_text
            calls += 1
        assert message.tool_calls or message.text
        # The markers reach the text only because special tokens are not skipped.
        assert turn.params.skip_special_tokens is False
        # Each turn ended on one of Gemma 4's stop tokens (which stay out of the text)
        # or on a stop string, never on max_tokens.
        assert turn.output.finish_reason == "stop"
        ids = list(turn.output.token_ids)
        assert ids[-1] in EOS_TOKEN_IDS or turn.output.stop_reason in STOP_STRINGS
    stops = Counter(str(t.output.stop_reason or f"eos {t.output.token_ids[-1]}") for t in turns if t.output is not None)
    FIGURES["tiny-gemma4, constrained turns"] = (
        f"{len(turns)} turns ({', '.join(sorted(set(CHOICES)))}), {calls} calls, all valid; "
        f"ended by {dict(sorted(stops.items()))}"
    )


def single_token_markers(turn: Turn) -> Counter[str]:
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
    spelled = sum((single_token_markers(t) for t in turns), Counter[str]())
    written = sum(t.output.text.count(m) for t in turns for m in MARKERS.values())
    FIGURES["tiny-gemma4, markers not written as one token"] = f"{sum(spelled.values())} of {written}: {dict(spelled)}"
    assert spelled == Counter()
