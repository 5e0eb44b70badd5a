"""The `Runtime` protocol: one interface over wherever the model runs.

A runtime takes a `ModelRequest` (the conversation, the offered tools, what
kind of answer is allowed) and returns a `ModelResponse` (the model's turn as
an `AssistantMessage`, with usage and timings). Everything else — rendering a
prompt, constraining decoding, talking to a server — is the runtime's business.

Writing one is a matter of one method and one attribute:

    class EchoRuntime:
        info = RuntimeInfo(name="echo", model="echo")

        async def generate(self, request: ModelRequest) -> ModelResponse:
            last = request.messages[-1]
            text = last.text if isinstance(last, UserMessage) else "done"
            return ModelResponse(message=AssistantMessage(text=text))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Self, TypeAlias, runtime_checkable

from agentkit.messages import AssistantMessage, Message, ToolCall
from agentkit.tool import ToolSpec

__all__ = [
    "FinishReason",
    "Lifecycle",
    "ModelDelta",
    "ModelRequest",
    "ModelResponse",
    "Runtime",
    "RuntimeInfo",
    "Sampling",
    "StreamingRuntime",
    "TextDelta",
    "ThinkingDelta",
    "ToolCallReady",
    "ToolChoice",
    "Usage",
    "close_runtime",
    "start_runtime",
    "stream_turn",
]

ToolChoice: TypeAlias = str
"""`"auto"` (text or calls), `"required"` (at least one call), `"none"` (text
only), or a tool's name (exactly that tool)."""

FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "error"]


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """Decoding settings. Defaults are greedy and bounded."""

    temperature: float = 0.0
    max_tokens: int = 512
    """Always capped: a constrained small model can otherwise pad until the context ends."""
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ModelRequest:
    """Everything a runtime needs to produce the model's next turn."""

    messages: Sequence[Message]
    tools: Sequence[ToolSpec] = ()
    tool_choice: ToolChoice = "auto"
    output_schema: Mapping[str, Any] | None = None
    """JSON Schema the final answer must satisfy, or None for free text."""
    sampling: Sampling = field(default_factory=Sampling)
    plan: bool = False
    """The turn is a plan (`agentkit.planning`): its calls may use earlier calls'
    results (`$2.city`), and the dialect says so and constrains it so."""

    def __post_init__(self) -> None:
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique, got {names}")
        if self.tool_choice not in ("auto", "required", "none") and self.tool_choice not in names:
            raise ValueError(
                f"tool_choice {self.tool_choice!r} is neither auto, required, none nor an offered tool ({names})"
            )
        if self.tool_choice in ("required",) and not self.tools:
            raise ValueError("tool_choice 'required' needs at least one tool")

    @property
    def allowed_tools(self) -> tuple[ToolSpec, ...]:
        """The tools the model may call under `tool_choice`."""
        if self.tool_choice == "none":
            return ()
        if self.tool_choice in ("auto", "required"):
            return tuple(self.tools)
        return tuple(t for t in self.tools if t.name == self.tool_choice)

    @property
    def allows_text(self) -> bool:
        """Whether the model may answer instead of calling a tool."""
        return self.tool_choice in ("auto", "none")


@dataclass(frozen=True, kw_only=True)
class Usage:
    """Token counts. Add them up with `+`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens served from the engine's prefix cache."""
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            requests=self.requests + other.requests,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, kw_only=True)
class ModelResponse:
    """The model's turn and what it cost."""

    message: AssistantMessage
    usage: Usage = field(default_factory=Usage)
    finish_reason: FinishReason = "stop"
    raw_text: str = ""
    """The model's text before parsing, for the trajectory."""
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds spent, e.g. `{"total": 1.2}`; keys are runtime-specific (`VLLMEngine`
    adds `first_token`, from the request to the first token, and `decode`, from
    the first token to the last)."""
    grammar_digest: str | None = None
    """The digest of the constraint the turn was decoded under (None: decoded free);
    the store keeps it with the step, so a trajectory says which grammar made each turn."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Runtime-specific facts worth keeping with the step (e.g. `retries`, `problems`)."""


@dataclass(frozen=True, kw_only=True)
class RuntimeInfo:
    """What a runtime is and can do."""

    name: str
    """Runtime kind, e.g. `vllm`, `scripted`."""
    model: str
    """The model's id."""
    dialect: str = "json"
    """How prompts are written and answers read, e.g. `gemma4`, `json`."""
    constrained: bool = False
    """Whether tool calls and typed answers are enforced while decoding."""
    context_length: int | None = None
    uri: str | None = None
    """The URI that selects this runtime, when it has one."""
    provider: str | None = None
    """Who serves the model, as traces name it (`gen_ai.provider.name`: `vllm`,
    `ollama`, ...); default: `name`."""
    server: str | None = None
    """The API root of a runtime that talks to a server, e.g. `http://localhost:8000/v1`."""


@runtime_checkable
class Runtime(Protocol):
    """Where the model runs. Implement `generate` and `info`.

    A runtime that holds something (an engine, a pool of connections) also
    has a lifecycle: `astart()` readies it ahead of the first call, `aclose()`
    lets it go, and `async with runtime:` does both. Both are optional;
    `start_runtime` and `close_runtime` call them when a runtime has them, and
    `Lifecycle` gives a class the context manager from the two.
    """

    @property
    def info(self) -> RuntimeInfo: ...

    async def generate(self, request: ModelRequest) -> ModelResponse:
        """Produce the model's next turn for `request`."""
        ...


class Lifecycle:
    """`async with` for a runtime from its `astart` and `aclose` (both no-ops here)."""

    async def astart(self) -> None:
        """Ready the runtime ahead of its first call (start an engine, learn a server's model)."""

    async def aclose(self) -> None:
        """Let go of what the runtime holds (connections, an engine). Safe to call twice."""

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def start_runtime(runtime: Runtime) -> None:
    """Ready `runtime` now if it can be (its `astart`), so the first model call waits for no start-up."""
    start = getattr(runtime, "astart", None)
    if start is not None:
        await start()


async def close_runtime(runtime: Runtime) -> None:
    """Let `runtime` go if it holds anything (its `aclose`)."""
    close = getattr(runtime, "aclose", None)
    if close is not None:
        await close()


@dataclass(frozen=True, kw_only=True)
class TextDelta:
    """More of the answer's text, as the model decodes it."""

    text: str


@dataclass(frozen=True, kw_only=True)
class ThinkingDelta:
    """More of the model's thinking, as it decodes it."""

    text: str


@dataclass(frozen=True, kw_only=True)
class ToolCallReady:
    """A tool call complete in the stream, before the turn has ended.

    Its id is the runtime's: the loop may still rename it to keep ids unique
    within the run (the `ModelTurn` that follows has the final one).
    """

    call: ToolCall


ModelDelta: TypeAlias = TextDelta | ThinkingDelta | ToolCallReady
"""What a streaming runtime yields before the turn's `ModelResponse`."""


@runtime_checkable
class StreamingRuntime(Runtime, Protocol):
    """A runtime that can also stream the turn as it is decoded."""

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        """Yield deltas as the model decodes, then the whole turn's `ModelResponse`, last and once.

        The response is exactly what `generate` would have returned; it raises
        what `generate` raises.
        """
        ...


def deltas_of(message: AssistantMessage) -> list[ModelDelta]:
    """A whole turn as the deltas a streaming runtime would have yielded."""
    deltas: list[ModelDelta] = []
    if message.thinking:
        deltas.append(ThinkingDelta(text=message.thinking))
    if message.text:
        deltas.append(TextDelta(text=message.text))
    deltas.extend(ToolCallReady(call=call) for call in message.tool_calls)
    return deltas


async def stream_turn(runtime: Runtime, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
    """The turn for `request` as a stream: the runtime's own when it has one,
    else its `generate` as one delta per part of the turn, then the response."""
    streaming = getattr(runtime, "stream", None)
    if streaming is not None:
        async for item in streaming(request):
            yield item
        return
    response = await runtime.generate(request)
    for delta in deltas_of(response.message):
        yield delta
    yield response
