"""Choosing vLLM's grammar engine: what each runtime asks vLLM for, and what it sends.

vLLM's own config class checks the structured-outputs settings; a scripted
HTTP server (tests/support/scripted_server.py) records what `VLLMServer`
posts. The engines themselves run in tests/integration.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentkit.dialects.gemma4 import Gemma4Dialect
from agentkit.errors import RuntimeUnavailable
from agentkit.messages import UserMessage
from agentkit.runtime import ModelRequest
from agentkit.runtimes import resolve
from agentkit.runtimes.vllm import VLLMEngine, VLLMServer
from agentkit.runtimes.vllm.presets import engine_settings, grammar_engine_of
from tests.support.scripted_server import ScriptedServer
from tests.support.tools import WEATHER

CALL = '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>'


def vllm_config(args: dict[str, Any]) -> Any:
    from vllm.config.structured_outputs import StructuredOutputsConfig

    return StructuredOutputsConfig(**args["structured_outputs_config"])


def test_engines_run_llguidance_by_default_and_vllm_takes_the_settings() -> None:
    engine = VLLMEngine("default")
    assert engine.grammar_engine == "guidance"
    config = vllm_config(engine_settings(engine.engine_args, cpu=True))
    assert (config.backend, config.disable_any_whitespace, config.disable_additional_properties) == (
        "guidance",
        True,
        True,
    )


def test_xgrammar_can_be_chosen_and_vllm_takes_its_settings_too() -> None:
    engine = VLLMEngine("default", grammar_engine="xgrammar")
    assert engine.grammar_engine == "xgrammar"
    # vLLM refuses `disable_additional_properties` for xgrammar: it is left out.
    config = vllm_config(engine_settings(engine.engine_args, cpu=True))
    assert (config.backend, config.disable_any_whitespace) == ("xgrammar", True)
    assert grammar_engine_of({"structured_outputs_config": {"backend": "xgrammar"}}) == "xgrammar"


@pytest.mark.parametrize("name", ["outlines", "auto", "Guidance"])
def test_an_unknown_grammar_engine_is_refused(name: str) -> None:
    with pytest.raises(RuntimeUnavailable, match="guidance, xgrammar"):
        VLLMEngine("default", grammar_engine=name)
    with pytest.raises(RuntimeUnavailable, match="guidance, xgrammar"):
        VLLMServer("http://127.0.0.1:1/v1", grammar_engine=name)
    with pytest.raises(RuntimeUnavailable, match="guidance, xgrammar"):
        VLLMEngine("default", engine_args={"structured_outputs_config": {"backend": name}})


@pytest.mark.parametrize(("query", "expected"), [("", "guidance"), ("?grammar=xgrammar", "xgrammar")])
def test_a_server_uri_names_its_grammar_engine(query: str, expected: str) -> None:
    runtime = resolve(f"vllm-server:http://127.0.0.1:1/v1{query}")
    assert isinstance(runtime, VLLMServer)
    assert runtime.grammar_engine == expected


@pytest.mark.parametrize(("engine", "syntax"), [("guidance", "%llguidance {}"), ("xgrammar", "root ::= ")])
def test_a_server_in_raw_mode_is_sent_the_grammar_in_its_engines_syntax(engine: str, syntax: str) -> None:
    completion = {"choices": [{"text": CALL, "finish_reason": "stop"}], "usage": {}}
    with ScriptedServer() as scripted:
        scripted.replies = [(200, {}, completion)]
        server = VLLMServer(scripted.base + "/v1", model="m", dialect=Gemma4Dialect(), grammar_engine=engine)
        request = ModelRequest(messages=[UserMessage(text="Paris?")], tools=[WEATHER], tool_choice="required")

        async def ask() -> Any:
            async with server:
                return await server.generate(request)

        response = asyncio.run(ask())
    assert response.message.tool_calls[0].arguments == {"city": "Paris"}
    _, path, body = scripted.seen[-1]
    assert path == "/v1/completions"
    assert list(body["structured_outputs"]) == ["grammar"]
    assert body["structured_outputs"]["grammar"].startswith(syntax)
