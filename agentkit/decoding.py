"""One decoding pipeline for every engine: render → constrain → complete → read.

An engine is transport. It implements one method, `complete`: complete this
prompt under this constraint, yielding the text as it decodes, then one
`Completion`. Everything else is the pipeline's (`decode`): the dialect
renders the prompt and builds the constraint (when decoding is constrained),
the stop strings are the dialect's and the request's, and the dialect reads
the text back into the `ModelResponse`.

A runtime on a new engine subclasses `DialectRuntime` and writes `complete`:

    class EchoEngine(DialectRuntime):
        info = RuntimeInfo(name="echo", model="echo")

        def __init__(self) -> None:
            self.dialect = get_dialect("json")

        async def complete(self, prompt, constraint, sampling, stop, *, live):
            text = '{"final_answer":"hi"}'
            yield text
            yield Completion(text=text, usage=Usage(requests=1))

`generate` and `stream` come with it: `stream` reads the text with the
dialect as it decodes (`read_stream`), `generate` returns what `stream` ends
with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from agentkit.dialect import Constraint, Dialect, final_response, read_stream, read_turn
from agentkit.runtime import Lifecycle, ModelDelta, ModelRequest, ModelResponse, Sampling, Usage

__all__ = ["Completion", "DialectRuntime", "Engine", "decode"]


@dataclass(frozen=True, kw_only=True)
class Completion:
    """What an engine made of one prompt: the whole text and what it cost."""

    text: str
    """The model's text, as the dialect will read it (special tokens kept)."""
    cut: bool = False
    """Decoding stopped at `Sampling.max_tokens`, not at a stop string or the model's end."""
    usage: Usage
    first_token_at: float | None = None
    """When the first token came (`time.monotonic()`), if the engine knows: the
    response's timings then add `first_token` and `decode`."""
    last_token_at: float | None = None
    """When the last token came, likewise."""
    retries: Sequence[Mapping[str, Any]] = ()
    """The retries it took (a server's), kept in the response's metadata."""


class Engine(Protocol):
    """Where a prompt is completed: the one method an engine implements."""

    def complete(
        self, prompt: str, constraint: Constraint | None, sampling: Sampling, stop: Sequence[str], *, live: bool
    ) -> AsyncIterator[str | Completion]:
        """Complete `prompt` under `constraint`: the text as it decodes, then one `Completion`.

        Args:
            prompt: The whole prompt, as the dialect wrote it (its BOS included:
                add no special tokens).
            constraint: What decoding must satisfy, or None (decode free).
            sampling: Temperature, `max_tokens` and seed (its stop strings are in `stop`).
            stop: Strings that end the turn, left out of the text.
            live: Someone reads the text as it comes; else only the `Completion`
                is used, and the engine may send the text whole at the end.

        The pieces of text, joined, are the `Completion`'s text (when `live`).
        Leaving the iteration early must end the decoding. An engine with an
        `astart` (a `Lifecycle`) is started with it before the turn's clock starts.
        """
        ...


async def decode(
    engine: Engine, dialect: Dialect, request: ModelRequest, *, constrained: bool, live: bool
) -> AsyncGenerator[str | ModelResponse, None]:
    """The turn for `request` on `engine`: the model's text as it decodes, then the `ModelResponse`.

    `constrained`: decode under the dialect's constraint (its digest is the
    response's `grammar_digest`). What this yields is what `read_stream` reads.

    Raises:
        OutputTruncated: a constrained turn was cut at `max_tokens`.
        ModelOutputError: the dialect cannot read the text.
    """
    start = getattr(engine, "astart", None)
    if start is not None:  # an engine's start-up is no part of the turn's timings
        await start()
    started = time.monotonic()
    prompt = dialect.render(request)
    constraint, digest = await _constraint(engine, dialect, request) if constrained else (None, None)
    stop = (*dialect.stop(), *request.sampling.stop)
    completion: Completion | None = None
    pieces = engine.complete(prompt, constraint, request.sampling, stop, live=live)
    try:
        async for piece in pieces:
            if isinstance(piece, Completion):
                completion = piece
            else:
                yield piece
    finally:  # a reader that leaves early ends the decoding now, not when the engine's generator is collected
        close = getattr(pieces, "aclose", None)
        if close is not None:
            await close()
    if completion is None:
        raise RuntimeError(f"{type(engine).__name__}.complete ended without a Completion")
    timings = {"total": time.monotonic() - started}
    if completion.first_token_at is not None and completion.last_token_at is not None:
        # Time to the first token (prompt processing, queueing) and the decode after it.
        first, last = completion.first_token_at, completion.last_token_at
        timings |= {"first_token": first - started, "decode": last - first}
    message, finish = read_turn(
        dialect,
        request,
        completion.text,
        cut=completion.cut,
        constrained=constraint is not None,
        usage=completion.usage,
    )
    yield ModelResponse(
        message=message,
        usage=completion.usage,
        finish_reason=finish,
        raw_text=completion.text,
        timings=timings,
        grammar_digest=digest,
        metadata={"retries": list(completion.retries)} if completion.retries else {},
    )


_GRAMMAR_WORK = ThreadPoolExecutor(max_workers=2, thread_name_prefix="agentkit-grammar")
"""Where constraints are built: off the event loop (a new tool set's grammar
takes milliseconds to tens of them), and apart from the default executor, which
sync tools may hold."""


async def _constraint(engine: Engine, dialect: Dialect, request: ModelRequest) -> tuple[Constraint | None, str | None]:
    """The dialect's constraint for `request` and its digest, built off the event
    loop, and written for the engine's grammar engine if it names one (a grammar
    keeps what it wrote: the engine's call then costs nothing)."""

    def build() -> tuple[Constraint | None, str | None]:
        constraint = dialect.constraint(request)
        if constraint is None:
            return None, None
        if grammar_engine := getattr(engine, "grammar_engine", None):
            constraint.structured_outputs(grammar_engine)
        return constraint, constraint.digest

    return await asyncio.get_running_loop().run_in_executor(_GRAMMAR_WORK, build)


class DialectRuntime(Lifecycle):
    """A runtime whose engine takes a prompt: `complete` is the engine; the
    dialect (`self.dialect`) writes the prompt and reads the turn.

    Subclasses set `dialect` (and `constrained`, on by default), and provide
    `info` and `complete`; override `astart`/`aclose` when the engine holds something.
    """

    dialect: Dialect
    constrained: bool = True
    """Decode under the dialect's constraint."""

    def complete(
        self, prompt: str, constraint: Constraint | None, sampling: Sampling, stop: Sequence[str], *, live: bool
    ) -> AsyncIterator[str | Completion]:
        """See `Engine.complete`."""
        raise NotImplementedError

    async def generate(self, request: ModelRequest) -> ModelResponse:
        return await final_response(decode(self, self.dialect, request, constrained=self.constrained, live=False))

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        """The turn as the engine decodes it, read by the dialect, then what `generate` returns."""
        turn = decode(self, self.dialect, request, constrained=self.constrained, live=True)
        return read_stream(self.dialect, request, turn)
