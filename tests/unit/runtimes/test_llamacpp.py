"""`LlamaCppServer` (`llamacpp:` URIs) against a scripted HTTP server, and the command that serves `llama:`.

What a real llama.cpp server does with these requests is tested in
tests/integration/test_llama_server.py; here, what agentkit sends and how it
reads the answers.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import pytest

from agentkit.dialect import get_dialect
from agentkit.dialects.gemma4 import Gemma4Dialect
from agentkit.errors import RuntimeUnavailable
from agentkit.messages import UserMessage
from agentkit.runtime import ModelRequest, Sampling
from agentkit.runtimes import LlamaCppServer, OpenAICompatible, resolve
from agentkit.runtimes.llama import default_gguf, serve_command
from tests.support.grammars import gbnf_accepts
from tests.support.scripted_server import ScriptedServer
from tests.support.tools import WEATHER

CALL = '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>'


@pytest.mark.parametrize(
    ("uri", "mode", "model"),
    [
        ("llamacpp:http://127.0.0.1:8080/v1/", "raw", None),
        ("llamacpp:http://127.0.0.1:8080/v1?mode=chat", "chat", None),
        ("llamacpp:http://127.0.0.1:8080/v1?mode=raw&model=gemma", "raw", "gemma"),
    ],
)
def test_a_llamacpp_uri_is_a_llama_cpp_server_raw_by_default(uri: str, mode: str, model: str | None) -> None:
    runtime = resolve(uri)
    assert isinstance(runtime, LlamaCppServer)
    assert (runtime.mode, runtime.model, runtime.base_url) == (mode, model, "http://127.0.0.1:8080/v1")
    assert (runtime.info.name, runtime.info.provider) == ("llamacpp", "llama.cpp")
    assert runtime.info.uri == uri  # as given (a trailing slash too); the base URL has none
    assert isinstance(runtime._chat, OpenAICompatible)
    assert runtime._chat.kind.name == "llamacpp"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("llamacpp:http://127.0.0.1:8080/v1?mode=fast", "modes are raw and chat"),
        ("llamacpp:http://127.0.0.1:8080/v1?grammar=xgrammar", "unknown option grammar"),
        ("llamacpp:localhost:8080", "needs a server URL"),
    ],
)
def test_a_bad_llamacpp_uri_says_what_is_wrong(uri: str, message: str) -> None:
    with pytest.raises(RuntimeUnavailable, match=message):
        resolve(uri)


def ask(server: LlamaCppServer, request: ModelRequest) -> Any:
    async def go() -> Any:
        async with server:
            return await server.generate(request)

    return asyncio.run(go())


def test_raw_mode_sends_the_prompt_without_bos_and_the_grammar_as_gbnf() -> None:
    completion = {"choices": [{"text": CALL, "finish_reason": "stop"}], "usage": {"prompt_tokens": 40}}
    dialect = Gemma4Dialect()
    request = ModelRequest(messages=[UserMessage(text="Paris?")], tools=[WEATHER], tool_choice="required")
    with ScriptedServer() as scripted:
        scripted.replies = [(200, {}, completion)]
        response = ask(LlamaCppServer(scripted.base + "/v1", model="m", dialect=dialect), request)
    assert response.message.tool_calls[0].arguments == {"city": "Paris"}
    assert response.usage.prompt_tokens == 40
    _, path, body = scripted.seen[-1]
    assert path == "/v1/completions"
    assert body["prompt"] == dialect.render(request).removeprefix("<bos>")  # the server writes its own
    assert (body["temperature"], body["top_k"]) == (0.0, 1)  # greedy: a top-k of 1
    constraint = dialect.constraint(request)
    assert constraint is not None
    assert body["grammar"] == constraint.value.gbnf()
    assert "structured_outputs" not in body
    assert "add_special_tokens" not in body
    # The grammar sent is llama.cpp's own: it lets the model write the call, and not a wrong one.
    assert gbnf_accepts(body["grammar"], CALL)
    assert not gbnf_accepts(body["grammar"], CALL.replace("city", "town"))


def test_sampling_keeps_a_top_k_and_an_unconstrained_turn_sends_no_grammar() -> None:
    completion = {"choices": [{"text": "Hello.", "finish_reason": "stop"}], "usage": {}}
    request = ModelRequest(messages=[UserMessage(text="Hi")], sampling=Sampling(temperature=0.7, seed=3))
    with ScriptedServer() as scripted:
        scripted.replies = [(200, {}, completion)]
        server = LlamaCppServer(scripted.base + "/v1", model="m", dialect=Gemma4Dialect(), constrained=False)
        assert ask(server, request).message.text == "Hello."
    body = scripted.seen[-1][2]
    assert (body["temperature"], body["top_k"], body["seed"]) == (0.7, 40, 3)
    assert "grammar" not in body


def test_a_dialect_whose_constraint_is_no_grammar_is_refused_in_raw_mode() -> None:
    request = ModelRequest(messages=[UserMessage(text="Paris?")], tools=[WEATHER], tool_choice="required")
    with ScriptedServer() as scripted, pytest.raises(RuntimeUnavailable, match="raw mode sends grammars"):
        ask(LlamaCppServer(scripted.base + "/v1", model="m", dialect=get_dialect("json")), request)


def test_the_served_embedded_model_gets_the_embedded_presets_dialect() -> None:
    with ScriptedServer() as scripted:
        scripted.replies = [(200, {}, {"data": [{"id": "agentkit-embedded"}]})]
        server = LlamaCppServer(scripted.base + "/v1")
        asyncio.run(server.connect())
    assert server.model == "agentkit-embedded"
    assert isinstance(server.dialect, Gemma4Dialect)
    assert server.dialect.grammar.max_string == 60


def llama_parse(command: list[str]) -> argparse.Namespace:
    """The command line as llama-cpp-python's server reads it."""
    from llama_cpp.server.cli import add_args_from_model
    from llama_cpp.server.settings import Settings

    assert command[1:3] == ["-m", "llama_cpp.server"]
    parser = argparse.ArgumentParser()
    add_args_from_model(parser, Settings)
    return parser.parse_args(command[3:])


def test_llama_default_is_served_as_the_embedded_model() -> None:
    args = llama_parse(serve_command("llama:default", port=9001))
    assert args.model == str(default_gguf())
    assert args.model_alias == "agentkit-embedded"  # so clients write the embedded preset's dialect
    assert (args.host, args.port, args.n_ctx) == ("127.0.0.1", 9001, 4096)
    assert args.interrupt_requests is False  # concurrent requests wait; none is cut off


def test_a_gguf_path_is_served_under_its_name(tmp_path: Path) -> None:
    model = tmp_path / "gemma-4-E4B-it-Q4_K_M.gguf"
    model.write_bytes(b"GGUF")
    args = llama_parse(serve_command(f"llama:{model}"))
    assert (args.model, args.model_alias, args.n_ctx) == (str(model), "gemma-4-E4B-it-Q4_K_M", 8192)
    with pytest.raises(RuntimeUnavailable, match=r"existing \.gguf file"):
        serve_command(f"llama:{tmp_path / 'absent.gguf'}")
