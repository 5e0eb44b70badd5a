"""Server runtimes against a real vLLM OpenAI server on loopback.

One server for the session, started the way a user starts it
(`agentkit serve vllm:default`, the `served` fixture). Faults are put between
client and server by a fault-injecting proxy on real sockets. The last tests
kill the server (and bring it back), then stop it with Ctrl-C: keep them last.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest

from agentkit import Agent, MaxStepsExceeded, ModelRequest, RunResult, Sampling, ServerError, Step, UserMessage
from agentkit.runtimes import OpenAICompatible, RetryPolicy, VLLMServer
from agentkit.store import Store
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.server_faults import ctrl_c_stops_it, kill_then_resume
from tests.support.weather import CITIES, WeatherAgent, get_weather

from ..conftest import FIGURES, ServeCommand

FAST = RetryPolicy(attempts=4, backoff=0.05, max_backoff=0.2, timeout=60.0)


async def attempt(run: Awaitable[RunResult[Any]]) -> RunResult[Any] | MaxStepsExceeded:
    """A run (or resume), or the budget error that carries its partial trajectory (the tiny model may ramble)."""
    try:
        return await run
    except MaxStepsExceeded as exc:
        return exc


def steps_of(outcome: RunResult[Any] | MaxStepsExceeded) -> tuple[Step, ...]:
    if isinstance(outcome, MaxStepsExceeded):
        assert outcome.partial is not None
        return outcome.partial.steps
    return outcome.steps


def calls_and_validity(outcomes: list[RunResult[Any] | MaxStepsExceeded], *, fed_back: bool = False) -> tuple[int, int]:
    """Calls made and calls valid. `fed_back`: a chat server's invalid call may be an error
    step the loop fed back (its problems on record); raw mode has none."""
    schemas = {get_weather.spec.name: get_weather.spec.parameters}
    calls = valid = 0
    for outcome in outcomes:
        for step in steps_of(outcome):
            if fed_back and step.response.finish_reason == "error":
                assert step.response.metadata["problems"], step.response.raw_text
                continue
            assert step.response.finish_reason != "error", step.response.raw_text
            for call in step.response.message.tool_calls:
                calls += 1
                schema = schemas.get(call.name)
                if schema is not None and jsonschema.Draft202012Validator(schema).is_valid(call.arguments):
                    valid += 1
    return calls, valid


def run_all(agent: Agent[Any], prompts: list[str]) -> list[RunResult[Any] | MaxStepsExceeded]:
    async def go() -> list[RunResult[Any] | MaxStepsExceeded]:
        return list(await asyncio.gather(*(attempt(agent.arun(p)) for p in prompts)))

    return asyncio.run(go())


# --- the three ways in ------------------------------------------------------------------------


def test_raw_mode_20_agents_at_once_all_complete_with_every_call_valid(served: ServeCommand) -> None:
    agent = WeatherAgent(runtime=VLLMServer(served.url))
    prompts = [f"What is the weather in {CITIES[i % 10]}{'?' if i < 10 else ' today?'}" for i in range(20)]
    started = time.monotonic()
    outcomes = run_all(agent, prompts)  # 20 runs at once on one server
    seconds = time.monotonic() - started
    calls, valid = calls_and_validity(outcomes)
    finished = sum(isinstance(o, RunResult) for o in outcomes)
    tokens = sum(s.response.usage.completion_tokens for o in outcomes for s in steps_of(o))
    FIGURES["vllm-server raw, 20 agents at once"] = (
        f"{valid}/{calls} calls valid, {finished}/20 answered within max_steps, "
        f"{seconds:.1f} s, {tokens / seconds:.1f} generated tokens/s"
    )
    assert len(outcomes) == 20
    assert calls >= 20  # every run's first step calls
    assert valid == calls
    first = steps_of(outcomes[0])[0].response
    assert first.grammar_digest
    assert first.usage.prompt_tokens > 0
    # The prompt of a run's second step extends its first: the server's prefix cache serves it.
    assert any(s.response.usage.cached_tokens > 0 for o in outcomes for s in steps_of(o)[1:])


def test_chat_mode_runs_the_same_agent_through_the_servers_template_and_parser(served: ServeCommand) -> None:
    runtime = VLLMServer(served.url, mode="chat")
    outcomes = run_all(WeatherAgent(runtime=runtime), [f"What is the weather in {c}?" for c in CITIES[:6]])
    calls, valid = calls_and_validity(outcomes, fed_back=True)
    FIGURES["vllm-server chat: valid calls"] = f"{valid}/{calls} over 6 runs"
    assert calls >= 6
    assert valid == calls
    first = steps_of(outcomes[0])[0]
    # Parsed by vLLM's Gemma 4 parser: the ids are the server's.
    assert first.response.message.tool_calls[0].id.startswith("chatcmpl-tool-")
    assert first.tool_results[0].content.startswith("21 degrees")


class Forecast(pydantic.BaseModel):
    city: str = pydantic.Field(max_length=20)
    cold: bool


def test_openai_compatible_gets_typed_answers_from_response_format(served: ServeCommand) -> None:
    class Typed(Agent[Forecast]):
        instructions = "Say whether a city is cold."
        output_type = Forecast
        sampling = Sampling(max_tokens=64)

    agent = Typed(runtime=OpenAICompatible(served.url, server="vllm"))
    for city in CITIES[:3]:
        result = agent.run(f"Is {city} cold in January?")
        assert isinstance(result.output, Forecast)


def test_openai_compatible_runs_the_same_agent_and_validates_what_comes_back(served: ServeCommand) -> None:
    # Without a grammar the tiny base model does not call; whatever it says must
    # still come back as a finished run or a clear, recorded error.
    runtime = OpenAICompatible(served.url, server="vllm")
    outcomes = run_all(WeatherAgent(runtime=runtime, max_steps=2), [f"Weather in {c}?" for c in CITIES[:2]])
    calls, valid = calls_and_validity(outcomes, fed_back=True)
    assert valid == calls
    assert runtime.model == "agentkit-embedded"
    assert all(s.response.usage.requests >= 1 for o in outcomes for s in steps_of(o))


def test_doctor_probes_the_live_server(served: ServeCommand) -> None:
    doctor = [str(Path(sys.executable).with_name("agentkit")), "doctor", f"vllm-server:{served.url}"]
    shown = subprocess.run(doctor, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines() if line.strip()}
    assert "agentkit-embedded" in lines["models:"]
    assert " ok " in lines["reachable"]
    assert " ok " in lines["raw"]  # the raw grammar check: a valid add(...) call
    assert "add(" in lines["raw"]


def test_doctor_says_what_is_wrong_with_an_address_nobody_answers() -> None:
    doctor = [str(Path(sys.executable).with_name("agentkit")), "doctor", "openai:http://127.0.0.1:9/v1?model=x"]
    shown = subprocess.run(doctor, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"})
    assert shown.returncode == 1
    assert "FAILED" in shown.stdout
    assert "127.0.0.1:9/v1/models" in " ".join(shown.stdout.split())


# --- faults -----------------------------------------------------------------------------------


@pytest.fixture
def proxy(served: ServeCommand) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=served.url.removesuffix("/v1")) as fault_proxy:
        yield fault_proxy


def proxied(proxy: FaultProxy, policy: RetryPolicy = FAST) -> VLLMServer:
    """A raw-mode runtime through the proxy, already connected: the faults then hit generation."""
    runtime = VLLMServer(proxy.url + "/v1", retry=policy)
    asyncio.run(runtime.connect())
    return runtime


def test_503s_are_retried_and_recorded_in_the_stored_step(proxy: FaultProxy, tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    runtime = proxied(proxy)
    proxy.inject(Fault.status(503, times=2))
    result = asyncio.run(attempt(WeatherAgent(runtime=runtime, store=store).arun("Weather in Oslo?")))
    assert isinstance(result, RunResult)
    stored = store.load(result.run_id)
    retries = stored.steps[0].response.metadata["retries"]
    assert [r["status"] for r in retries] == [503, 503]
    assert [e.status for e in proxy.requests[1:4]] == [503, 503, 200]  # after the connect's GET /models
    store.close()


def test_429_with_retry_after_is_waited_for(proxy: FaultProxy) -> None:
    runtime = proxied(proxy)
    proxy.inject(Fault.status(429, retry_after=2))
    outcome = asyncio.run(attempt(WeatherAgent(runtime=runtime).arun("Weather in Lima?")))
    first, second = proxy.requests[1], proxy.requests[2]
    assert first.status == 429
    assert second.at - first.at >= 1.9
    assert steps_of(outcome)[0].response.metadata["retries"][0]["wait"] == 2.0


def test_a_hung_response_times_out_is_retried_then_fails_clearly(proxy: FaultProxy) -> None:
    # Long enough for a real answer (a few seconds here), short for a test.
    runtime = proxied(proxy, RetryPolicy(attempts=2, backoff=0.05, timeout=15.0))
    proxy.inject(Fault.hang())
    outcome = asyncio.run(attempt(WeatherAgent(runtime=runtime).arun("Weather in Rome?")))
    assert "ReadTimeout" in steps_of(outcome)[0].response.metadata["retries"][0]["error"]
    runtime = proxied(proxy, RetryPolicy(attempts=2, backoff=0.05, timeout=2.0))
    proxy.inject(Fault.hang(times=2))
    with pytest.raises(ServerError, match=r"failed after 2 attempts over .*ReadTimeout") as info:
        WeatherAgent(runtime=runtime).run("Weather in Rome?")
    assert info.value.url == proxy.url + "/v1/completions"


def test_a_dropped_connection_is_retried(proxy: FaultProxy) -> None:
    runtime = proxied(proxy)
    proxy.inject(Fault.drop())
    outcome = asyncio.run(attempt(WeatherAgent(runtime=runtime).arun("Weather in Perth?")))
    assert steps_of(outcome)[0].response.message.tool_calls


def test_a_stream_dropped_after_it_began_is_a_clear_error(proxy: FaultProxy) -> None:
    # Half the answer has come, and may be shown already: it is not asked for again.
    runtime = proxied(proxy)
    proxy.inject(Fault.drop())
    request = ModelRequest(messages=[UserMessage(text="Weather in Perth?")], tools=[get_weather.spec])

    async def stream() -> list[Any]:
        return [item async for item in runtime.stream(request)]

    with pytest.raises(ServerError, match=r"the stream from .*/v1/completions broke after \d+ events"):
        asyncio.run(stream())
    assert [e.status for e in proxy.requests[1:]] == [200]  # after the connect's GET /models: one try


def test_a_refused_connection_is_a_clear_error_naming_the_url(proxy: FaultProxy) -> None:
    runtime = proxied(proxy)
    proxy.refuse()
    with pytest.raises(ServerError, match=f"{proxy.url}/v1/completions failed after 4 attempts.*connection failed"):
        WeatherAgent(runtime=runtime).run("Weather in Quito?")


# --- the server dies, and comes back; Ctrl-C (keep these last) -------------------------------


def test_a_run_whose_server_is_killed_resumes_once_the_server_is_back(served: ServeCommand, tmp_path: Path) -> None:
    kill_then_resume(served, VLLMServer, tmp_path)


def test_ctrl_c_stops_the_server_and_its_engine(served: ServeCommand) -> None:
    ctrl_c_stops_it(served)
