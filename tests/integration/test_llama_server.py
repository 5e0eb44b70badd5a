"""A real llama.cpp server (`agentkit serve llama:default`) in raw mode: calls valid by construction over HTTP.

The server is llama-cpp-python's (the same llama.cpp build the in-process
runtime uses), started the way a user starts it; the constraint travels as GBNF
in the completion's `grammar` field. It starts in seconds, so the module has
its own. The last tests kill the server (and bring it back), then stop it with
Ctrl-C: keep them last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkit import (
    ModelRequest,
    ModelResponse,
    Sampling,
    UserMessage,
)
from agentkit.decoding import Completion
from agentkit.dialects.gemma4 import Gemma4Dialect
from agentkit.runtimes import LlamaCppServer, LlamaEngine, resolve
from agentkit.runtimes.doctor import probe
from tests.support.server_faults import ctrl_c_stops_it, kill_then_resume

from ..conftest import FIGURES, ServeCommand, free_port
from .native_suite import PROMPTS, TOOLS
from .test_llama_engine import NATIVE, check_required_calls, chosen, required

SLICE = 10  # of the 50 prompts: 2 per tool (the server decodes them one by one: 5 s each on 2 cores)


@pytest.fixture(scope="module")
def llama_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeCommand]:
    command = ServeCommand(free_port(), tmp_path_factory.mktemp("serve") / "serve.log", uri="llama:default")
    started = time.monotonic()
    command.start(timeout=120)
    FIGURES["agentkit serve llama:default, ready in"] = f"{time.monotonic() - started:.1f} s"
    yield command
    if command.process is not None and command.process.poll() is None:
        command.interrupt()


def native(url: str) -> LlamaCppServer:
    # As in process (tests/integration/test_llama_engine.py): a worked example per tool, capped strings.
    return LlamaCppServer(url, dialect=Gemma4Dialect(examples=len(TOOLS), max_string=60))


def test_the_uri_names_the_raw_mode_and_the_served_preset(llama_served: ServeCommand) -> None:
    runtime = resolve(f"llamacpp:{llama_served.url}")
    assert isinstance(runtime, LlamaCppServer)
    assert runtime.mode == "raw"
    asyncio.run(runtime.connect())
    assert runtime.model == "agentkit-embedded"
    assert isinstance(runtime.dialect, Gemma4Dialect)
    assert runtime.dialect.grammar.max_string == 60  # the embedded preset's
    asyncio.run(runtime.aclose())


def test_every_call_over_http_is_valid_under_the_grammar(llama_served: ServeCommand) -> None:
    runtime = LlamaCppServer(llama_served.url, dialect=NATIVE)
    try:  # all at once: the server takes them in turn
        check_required_calls("llamacpp: raw mode", runtime, chosen(SLICE // 5))
    finally:
        asyncio.run(runtime.aclose())


def test_the_gbnf_and_the_in_process_mask_decode_the_same_turns(llama_served: ServeCommand) -> None:
    # One constraint, two serialisations, two engines: greedy decoding under llama.cpp's
    # GBNF (the server) and under llguidance's mask (in process) calls the same tools. (The
    # text may part where the model hesitates between near-equal tokens: the server evaluates
    # the prompt in other batches than the in-process engine, whose logits differ in the last bits.)
    server, engine = LlamaCppServer(llama_served.url, dialect=NATIVE), LlamaEngine("default", dialect=NATIVE)
    prompts = [PROMPTS[i] for i in (0, 10, 20, 30, 40)]

    async def both() -> list[tuple[ModelResponse, ModelResponse]]:
        try:
            return [(await server.generate(required(p)), await engine.generate(required(p))) for p in prompts]
        finally:
            await server.aclose()
            await engine.aclose()

    pairs = asyncio.run(both())
    same = sum(a.raw_text == b.raw_text for a, b in pairs)
    FIGURES["llamacpp: raw mode vs llama: in process, greedy"] = f"{same}/{len(pairs)} turns identical"
    for over_http, in_process in pairs:
        assert [c.name for c in over_http.message.tool_calls] == [c.name for c in in_process.message.tool_calls]
        # Both begin the same: the call's name and its first argument's name.
        assert over_http.raw_text.split(":")[:3] == in_process.raw_text.split(":")[:3]
    assert same >= len(pairs) // 2


def test_raw_mode_streams_over_http(llama_served: ServeCommand) -> None:
    runtime = LlamaCppServer(llama_served.url)

    async def stream() -> list[Any]:
        await runtime.connect()
        try:  # no stop, no grammar: the text streams for all 24 tokens
            pieces = runtime.complete("<bos>Paris is", None, Sampling(max_tokens=24), (), live=True)
            return [item async for item in pieces]
        finally:
            await runtime.aclose()

    *pieces, completion = asyncio.run(stream())
    assert isinstance(completion, Completion)
    assert len(pieces) > 5
    assert "".join(pieces) == completion.text
    # llama-cpp-python's server reports no usage when streaming: a token per chunk.
    assert completion.cut
    assert completion.usage.completion_tokens == len(pieces)
    hi = ModelRequest(messages=[UserMessage(text="Hi")])
    whole = asyncio.run(LlamaCppServer(llama_served.url).generate(hi))
    # <bos> once (the server's own; the dialect's is left out): the prompt in process has as many tokens.
    engine = LlamaEngine("default")
    try:
        assert whole.usage.prompt_tokens == engine.count_tokens(hi)
    finally:
        engine.close()


def test_doctor_knows_a_llama_cpp_server(llama_served: ServeCommand) -> None:
    report = asyncio.run(probe(f"llamacpp:{llama_served.url}"))
    checks = {check.name: check for check in report.checks}
    assert report.kind == "llamacpp"
    assert report.models == ["agentkit-embedded"]
    assert checks["raw grammar"].ok, checks["raw grammar"].detail


# --- the server dies, and comes back; Ctrl-C (keep these last) -------------------------------


def test_a_run_whose_server_is_killed_resumes_once_the_server_is_back(
    llama_served: ServeCommand, tmp_path: Path
) -> None:
    kill_then_resume(llama_served, LlamaCppServer, tmp_path)


def test_ctrl_c_stops_the_server(llama_served: ServeCommand) -> None:
    ctrl_c_stops_it(llama_served)
