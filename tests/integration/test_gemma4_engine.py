"""The native Gemma 4 dialect on the real engine: every call valid by construction.

The embedded model was not trained on Gemma 4's syntax; under the grammar, with
worked examples and `tool_choice="required"`, every reply must be a call that
names an offered tool with arguments that satisfy its JSON Schema.
"""

from __future__ import annotations

import asyncio

import jsonschema

from agentkit import ModelRequest, ModelResponse, Sampling, SystemMessage, UserMessage
from agentkit.dialects.gemma4 import Gemma4Dialect
from agentkit.runtimes.vllm import VLLMEngine
from agentkit.tool import as_tool

from ..conftest import FIGURES
from .native_suite import EXPECTED, PROMPTS, TOOLS


def test_every_native_call_is_valid(engine: VLLMEngine) -> None:
    # As for the JSON dialect on this tiny model: capped strings, or it may write on inside one.
    native = engine.variant(dialect=Gemma4Dialect(examples=len(TOOLS), max_string=60))
    specs = [as_tool(t).spec for t in TOOLS]
    validators = {s.name: jsonschema.Draft202012Validator(s.parameters) for s in specs}
    requests = [
        ModelRequest(
            messages=[SystemMessage(text="Use the tools."), UserMessage(text=prompt)],
            tools=specs,
            tool_choice="required",
            sampling=Sampling(max_tokens=160),
        )
        for prompt in PROMPTS
    ]

    async def ask_all() -> list[ModelResponse]:
        return list(await asyncio.gather(*(native.generate(r) for r in requests)))

    responses = asyncio.run(ask_all())
    calls = [call for response in responses for call in response.message.tool_calls]
    problems = [
        f"{call.name}({call.arguments}): {error.message}"
        for call in calls
        for error in validators[call.name].iter_errors(call.arguments)
    ]
    matched = sum(
        bool(r.message.tool_calls) and r.message.tool_calls[0].name == expected
        for r, expected in zip(responses, EXPECTED, strict=True)
    )
    FIGURES["gemma4 dialect, required calls"] = (
        f"{len(calls) - len(problems)}/{len(calls)} valid over {len(PROMPTS)} prompts, 5 tools; "
        f"{matched}/{len(PROMPTS)} chose the tool the prompt asks for"
    )
    assert len(PROMPTS) == 50
    assert all(r.message.tool_calls for r in responses), [r.raw_text for r in responses if not r.message.tool_calls]
    assert problems == []
    assert all(r.raw_text.startswith("<|tool_call>call:") for r in responses)
