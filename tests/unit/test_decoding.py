"""`agentkit.decoding`: the pipeline around an engine's one method, `complete`.

The engine here is a double that only replays text: what is checked is the
pipeline's own work (the prompt and constraint it asks for, the stop strings,
the digest, reading the text back, deltas against the response, cut turns).
The real engines' `complete` is driven in tests/integration.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from agentkit.decoding import Completion, DialectRuntime, decode
from agentkit.dialect import Constraint, Dialect, get_dialect
from agentkit.errors import OutputTruncated
from agentkit.messages import AssistantMessage, UserMessage
from agentkit.runtime import (
    ModelRequest,
    ModelResponse,
    RuntimeInfo,
    Sampling,
    TextDelta,
    ThinkingDelta,
    ToolCallReady,
    Usage,
)
from tests.support.tools import WEATHER

ASKED = ModelRequest(
    messages=(UserMessage(text="Paris?"),), tools=(WEATHER,), sampling=Sampling(max_tokens=64, stop=("STOP",))
)
CALL = '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>'


class Replay(DialectRuntime):
    """An engine that writes `pieces`, whatever it is asked, and notes what it was asked."""

    info = RuntimeInfo(name="replay", model="replay")

    def __init__(self, dialect: Dialect, pieces: Sequence[str], *, constrained: bool = True, **completion: Any):
        self.dialect, self.constrained = dialect, constrained
        self.pieces, self.completion = list(pieces), completion
        self.asked: list[tuple[str, Constraint | None, Sampling, tuple[str, ...], bool]] = []
        self.closed = False
        self.started = 0

    async def astart(self) -> None:
        self.started += 1

    async def complete(
        self, prompt: str, constraint: Constraint | None, sampling: Sampling, stop: Sequence[str], *, live: bool
    ) -> AsyncIterator[str | Completion]:
        self.asked.append((prompt, constraint, sampling, tuple(stop), live))
        try:
            for piece in self.pieces:
                yield piece
            usage = Usage(prompt_tokens=len(prompt), completion_tokens=len(self.pieces), requests=1)
            yield Completion(text="".join(self.pieces), usage=usage, **self.completion)
        finally:
            self.closed = True


def streamed(runtime: DialectRuntime, request: ModelRequest = ASKED) -> list[Any]:
    async def go() -> list[Any]:
        return [item async for item in runtime.stream(request)]

    return asyncio.run(go())


def test_the_engine_is_asked_for_the_dialects_prompt_constraint_and_stop_strings() -> None:
    dialect = get_dialect("gemma4")
    engine = Replay(dialect, [CALL])
    response = asyncio.run(engine.generate(ASKED))
    [(prompt, constraint, sampling, stop, live)] = engine.asked
    assert prompt == dialect.render(ASKED)
    assert constraint == dialect.constraint(ASKED)
    assert sampling == ASKED.sampling
    assert stop == (*dialect.stop(), "STOP")
    assert not live
    assert engine.started == 1
    assert response.message.tool_calls[0].arguments == {"city": "Paris"}
    assert response.finish_reason == "tool_calls"
    assert response.raw_text == CALL
    assert response.usage == Usage(prompt_tokens=len(prompt), completion_tokens=1, requests=1)
    assert constraint is not None
    assert response.grammar_digest == constraint.digest
    assert response.metadata == {}
    assert set(response.timings) == {"total"}


def test_free_decoding_asks_for_no_constraint_and_records_no_digest() -> None:
    engine = Replay(get_dialect("gemma4"), ["It is sunny."], constrained=False)
    response = asyncio.run(engine.generate(ASKED))
    assert engine.asked[0][1] is None
    assert response.grammar_digest is None
    assert response.message == AssistantMessage(text="It is sunny.")


def test_the_streamed_deltas_add_up_to_the_response() -> None:
    pieces = ["<|channel>thought\nRain", "y?<channel|>Let me ", "check.<|tool", CALL.removeprefix("<|tool")]
    engine = Replay(get_dialect("gemma4", thinking=True), pieces)
    *deltas, response = streamed(engine)
    assert engine.asked[0][4]  # live
    assert isinstance(response, ModelResponse)
    message = response.message
    assert "".join(d.text for d in deltas if isinstance(d, ThinkingDelta)) == message.thinking == "Rainy?"
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == message.text == "Let me check."
    assert [d.call for d in deltas if isinstance(d, ToolCallReady)] == list(message.tool_calls)
    assert [(c.name, c.arguments) for c in message.tool_calls] == [("get_weather", {"city": "Paris"})]


def test_a_dialect_without_a_stream_parser_streams_its_turn_whole() -> None:
    engine = Replay(get_dialect("json"), ['{"final_answer":', '"Sunny."}'])
    *deltas, response = streamed(engine)
    assert deltas == [TextDelta(text="Sunny.")]
    assert response.message.text == "Sunny."
    assert response.grammar_digest == get_dialect("json").constraint(ASKED).digest


def test_a_constrained_turn_cut_at_max_tokens_is_truncated() -> None:
    engine = Replay(get_dialect("gemma4"), [CALL[:30]], cut=True)
    with pytest.raises(OutputTruncated):
        asyncio.run(engine.generate(ASKED))


def test_a_free_turn_cut_at_max_tokens_ends_for_length() -> None:
    engine = Replay(get_dialect("gemma4"), ["It is sunny and"], cut=True, constrained=False)
    response = asyncio.run(engine.generate(ASKED))
    assert (response.finish_reason, response.message.text) == ("length", "It is sunny and")


def test_token_times_and_retries_reach_the_response() -> None:
    retries = ({"attempt": 1, "error": "503 busy", "wait": 0.5},)
    engine = Replay(get_dialect("gemma4"), ["Hi."], first_token_at=0.0, last_token_at=0.25, retries=retries)
    response = asyncio.run(engine.generate(ASKED))
    assert set(response.timings) == {"total", "first_token", "decode"}
    assert response.timings["decode"] == 0.25
    assert response.metadata == {"retries": list(retries)}


def test_leaving_the_stream_early_ends_the_engines_decoding() -> None:
    engine = Replay(get_dialect("gemma4"), ["One ", "two ", "three."])

    async def go() -> None:
        stream = engine.stream(ASKED)
        async for _ in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator
        assert engine.closed

    asyncio.run(go())


def test_an_engine_that_ends_without_a_completion_is_an_error() -> None:
    class Silent(Replay):
        async def complete(
            self, prompt: str, constraint: Constraint | None, sampling: Sampling, stop: Sequence[str], *, live: bool
        ) -> AsyncIterator[str | Completion]:
            yield "Hi."

    async def go() -> None:
        dialect = get_dialect("gemma4")
        async for _ in decode(Silent(dialect, []), dialect, ASKED, constrained=True, live=True):
            pass

    with pytest.raises(RuntimeError, match=r"Silent\.complete ended without a Completion"):
        asyncio.run(go())


class SlowToConstrain:
    """A dialect whose constraint blocks until the event loop releases it (a grammar that takes a while)."""

    def __init__(self, inner: Dialect) -> None:
        self.inner, self.name = inner, inner.name
        self.released = threading.Event()
        self.released_in_time: bool | None = None

    def render(self, request: ModelRequest) -> str:
        return self.inner.render(request)

    def stop(self) -> tuple[str, ...]:
        return self.inner.stop()

    def parse(self, text: str, request: ModelRequest) -> AssistantMessage:
        return self.inner.parse(text, request)

    def constraint(self, request: ModelRequest) -> Constraint | None:
        self.released_in_time = self.released.wait(timeout=5)
        return self.inner.constraint(request)


def test_the_constraint_is_built_off_the_event_loop() -> None:
    # Built on the loop, it would block the task that releases it: the wait would time out.
    dialect = SlowToConstrain(get_dialect("gemma4"))
    engine = Replay(dialect, [CALL])

    async def turn_and_release() -> ModelResponse:
        async def release() -> None:
            await asyncio.sleep(0.05)
            dialect.released.set()

        releaser = asyncio.create_task(release())
        response = await engine.generate(ASKED)
        await releaser
        return response

    response = asyncio.run(turn_and_release())
    assert dialect.released_in_time is True
    assert response.message.tool_calls[0].arguments == {"city": "Paris"}
    assert engine.asked[0][1] is not None
