"""Dialects: how a conversation becomes a prompt, and model text becomes a turn.

A dialect is the contract between agentkit and a model family's text format.
It does three things for a runtime that drives a raw engine:

- `render(request)`: the prompt text (always starting with the model's BOS).
- `constraint(request)`: what the engine must enforce while decoding, so that
  whatever the model writes is a valid decision.
- `parse(text, request)`: the model's text back into an `AssistantMessage`.

A dialect that can read a turn as it streams also has `stream_parser(request)`
(a `StreamingDialect`): runtimes feed it the text as the engine decodes, and
`read_stream` turns that into the deltas of `StreamingRuntime.stream`.

The dialects there are by name are one table, `DIALECTS` (a `Registry`:
each name to where its factory lives, imported when it is first asked for).
A new dialect implements the `Dialect` protocol and adds its factory:

    register_dialect("mine", MyDialect)  # or "my_package.dialect:MyDialect"
    runtime = VLLMEngine(model=..., dialect="mine")
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from agentkit.errors import ModelOutputError, OutputTruncated
from agentkit.grammar import Grammar
from agentkit.messages import AssistantMessage, ToolCall
from agentkit.registry import Registry
from agentkit.runtime import (
    FinishReason,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    ToolCallReady,
    Usage,
    deltas_of,
)

__all__ = [
    "DIALECTS",
    "Constraint",
    "DeltaParser",
    "Dialect",
    "StreamingDialect",
    "final_response",
    "get_dialect",
    "read_stream",
    "read_turn",
    "register_dialect",
]


@dataclass(frozen=True, kw_only=True)
class Constraint:
    """What the engine enforces while decoding.

    `kind` names the vLLM structured-outputs field it maps to; `value` is that
    field's content (a JSON Schema, a grammar or a structural tag).
    """

    kind: Literal["json", "grammar", "structural_tag", "regex"]
    value: Any
    """The field's content; for `grammar`, an `agentkit.grammar.Grammar` (each
    engine writes it in its grammar engine's syntax) or EBNF text."""

    @property
    def digest(self) -> str:
        """A short stable hash, to record which constraint produced a step."""
        value = self.value.lark() if isinstance(self.value, Grammar) else self.value
        blob = json.dumps([self.kind, value], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def structured_outputs(self, engine: str) -> dict[str, Any]:
        """vLLM's `structured_outputs` fields for this constraint, for a vLLM
        whose structured-outputs backend is `engine` (`guidance` or `xgrammar`).

        Raises:
            ValueError: `engine` is neither.
        """
        if engine not in GRAMMAR_ENGINES:
            raise ValueError(f"unknown grammar engine {engine!r}: expected one of {', '.join(GRAMMAR_ENGINES)}")
        if isinstance(self.value, Grammar):
            return {"grammar": self.value.lark() if engine == "guidance" else self.value.ebnf()}
        return {self.kind: self.value}


GRAMMAR_ENGINES = ("guidance", "xgrammar")
"""vLLM's structured-outputs backends agentkit writes grammars for: llguidance
(the default: compiles in milliseconds) and xgrammar."""


class Dialect(Protocol):
    """Renders requests and parses model text for one model family's format."""

    name: str

    def render(self, request: ModelRequest) -> str:
        """The whole prompt for `request`, ending where the model's turn begins."""
        ...

    def constraint(self, request: ModelRequest) -> Constraint | None:
        """What decoding must satisfy for `request` (None: unconstrained)."""
        ...

    def parse(self, text: str, request: ModelRequest) -> AssistantMessage:
        """The model's turn, read from its text.

        Raises:
            ModelOutputError: the text is not a decision in this dialect.
        """
        ...

    def stop(self) -> tuple[str, ...]:
        """Strings that end the model's turn."""
        ...


class DeltaParser(Protocol):
    """Reads one turn's text as it arrives, into the deltas `StreamingRuntime.stream` yields.

    Fed the whole text, its deltas add up to what `Dialect.parse` reads from it:
    the `TextDelta`s to the message's text, the `ThinkingDelta`s to its thinking,
    one `ToolCallReady` per call, in order.
    """

    def feed(self, chunk: str) -> list[ModelDelta]:
        """The deltas `chunk` completes.

        Raises:
            ModelOutputError: the text so far is not a turn in this dialect.
        """
        ...

    def close(self) -> list[ModelDelta]:
        """The last deltas, once the text has ended."""
        ...


@runtime_checkable
class StreamingDialect(Dialect, Protocol):
    """A dialect that can also read a turn as it streams."""

    def stream_parser(self, request: ModelRequest) -> DeltaParser:
        """A fresh parser for the model's turn in answer to `request`."""
        ...


def read_turn(
    dialect: Dialect, request: ModelRequest, text: str, *, cut: bool, constrained: bool, usage: Usage
) -> tuple[AssistantMessage, FinishReason]:
    """The turn an engine wrote, read from its whole `text`, and why it ended.

    `cut`: decoding stopped at `max_tokens`; `constrained`: under the dialect's constraint.

    Raises:
        OutputTruncated: cut off under a constraint, the turn is incomplete (and
            a retry would be cut off at the same place).
        ModelOutputError: the dialect cannot read it; it carries `usage`.
    """
    if constrained and cut:
        raise OutputTruncated(request.sampling.max_tokens, text, usage=usage)
    try:
        message = dialect.parse(text, request)
    except ModelOutputError as exc:  # the dialect knows the text, the engine what it cost
        raise ModelOutputError(exc.reason, exc.raw_text, usage=usage) from None
    return message, "tool_calls" if message.tool_calls else ("length" if cut else "stop")


async def read_stream(
    dialect: Dialect, request: ModelRequest, pieces: AsyncGenerator[str | ModelResponse, None]
) -> AsyncIterator[ModelDelta | ModelResponse]:
    """What `StreamingRuntime.stream` yields, from an engine's text as it decodes.

    `pieces` is the model's text in the order it came, then the `ModelResponse`
    the runtime made of the whole of it (what its `generate` returns); errors
    raised while making it pass through. A `StreamingDialect` reads the text as
    it comes; another dialect's turn is yielded whole, from the response's message,
    once the text has ended. Text the parser finds off-format ends the deltas
    early: the whole text's parse then raises why.

    The response's calls take the ids of the calls streamed before it, so that
    a `ToolCallReady` and the response's call are one call.
    """
    parser = dialect.stream_parser(request) if isinstance(dialect, StreamingDialect) else None
    whole = parser is None
    streamed: list[ToolCall] = []
    async with contextlib.aclosing(pieces):  # a consumer that leaves early ends the decoding now
        async for piece in pieces:
            if isinstance(piece, ModelResponse):
                deltas = deltas_of(piece.message) if whole else _closing(parser)
                streamed += (d.call for d in deltas if isinstance(d, ToolCallReady))
                for delta in deltas:
                    yield delta
                yield _with_calls(piece, streamed)
                return
            deltas = []
            if parser is not None:
                try:
                    deltas = parser.feed(piece)
                except ModelOutputError:
                    parser = None
            streamed += (d.call for d in deltas if isinstance(d, ToolCallReady))
            for delta in deltas:
                yield delta


def _closing(parser: DeltaParser | None) -> list[ModelDelta]:
    if parser is None:
        return []
    try:
        return parser.close()
    except ModelOutputError:  # the response was read from the same text: not expected
        return []


def _with_calls(response: ModelResponse, streamed: list[ToolCall]) -> ModelResponse:
    """`response` with the ids of the calls streamed, when they are its calls."""
    calls = response.message.tool_calls
    if not calls or [(c.name, c.arguments) for c in streamed] != [(c.name, c.arguments) for c in calls]:
        return response
    message = dataclasses.replace(response.message, tool_calls=tuple(streamed))
    return dataclasses.replace(response, message=message)


async def final_response(items: AsyncIterator[object]) -> ModelResponse:
    """The `ModelResponse` that ends `items` (a runtime's stream), what came before
    it dropped: `generate` for a runtime that decodes as a stream either way."""
    response = None
    async for item in items:
        if isinstance(item, ModelResponse):
            response = item
    if response is None:
        raise RuntimeError("the stream ended without a response")
    return response


DIALECTS: Registry[Callable[..., Dialect]] = Registry(
    "dialect",
    {
        "gemma4": "agentkit.dialects.gemma4:Gemma4Dialect",
        "json": "agentkit.dialects.json_action:JsonDialect",
    },
)
"""Each dialect's name to its factory (`module:attribute`, imported on first use)."""


def register_dialect(name: str, factory: str | Callable[..., Dialect]) -> None:
    """Make `get_dialect(name, ...)` build dialects with `factory` (or a `module:attribute` naming it)."""
    DIALECTS.add(name, factory)


def get_dialect(name: str, **options: Any) -> Dialect:
    """Build the dialect called `name` with `options`.

    Raises:
        UnknownName: no dialect has that name.
    """
    return DIALECTS.load(name)(**options)
