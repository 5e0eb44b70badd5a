"""The spans and metrics of runs, and the attributes both live and re-emitted spans carry.

Until a tracer or meter provider is set, every OpenTelemetry span and
instrument is a no-op; agentkit then makes none at all (`tracing_on`,
`metrics_on`), and does not even import OpenTelemetry: an untraced step costs
a check, not a quarter of the loop's time.

Declared secrets (`agentkit.secrets`) are masked in what these spans carry:
the opt-in content (every JSON attribute goes through `dumps`), error
statuses (`fail`) and exception events (`record_exception`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResult, UserMessage
from agentkit.secrets import declared, redact_text

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram
    from opentelemetry.trace import Span, Tracer

    from agentkit.runtime import ModelRequest, ModelResponse, Runtime, RuntimeInfo, Usage
    from agentkit.tool import ToolSpec

    tracer: Tracer
    """agentkit's tracer (`get_tracer()`), for `from agentkit.tracing.spans import tracer`."""

__all__ = [
    "CAPTURE_CONTENT",
    "AgentSpan",
    "ChatSpan",
    "ToolSpan",
    "capture_content",
    "chat_span",
    "describe_error",
    "error_type",
    "get_tracer",
    "metrics_on",
    "plan_attributes",
    "plan_span",
    "record_exception",
    "span_context",
    "tool_span",
    "tracing_on",
    "workflow_span",
]

log = logging.getLogger("agentkit.tracing")

CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""The variable that opts in to recording message content."""

# The conventions' attribute names (semantic conventions 1.38+; the Python
# semconv package marks its gen_ai constants deprecated, so they are spelled here).
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHED_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CONVERSATION = "gen_ai.conversation.id"
AGENT_NAME = "gen_ai.agent.name"
WORKFLOW_NAME = "gen_ai.workflow.name"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_DESCRIPTION = "gen_ai.tool.description"
OUTPUT_TYPE = "gen_ai.output.type"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
# Opt-in content.
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"
STEP = "agentkit.step"
"""The step's index in its run (agentkit's own attribute)."""
PLAN_CALLS = "agentkit.plan.calls"
PLAN_DEPENDENCIES = "agentkit.plan.dependencies"
"""A plan's number of edges: references from a call to an earlier one."""
DEPENDENCY = "agentkit.plan.dependency"
"""On a span link: the linked call's result was used by this one."""
RESUMED = "agentkit.resumed"
"""On `invoke_agent`: this invocation resumed a stored run."""

# The conventions' advised bucket boundaries.
_TOKEN_BUCKETS = [4.0**n for n in range(14)]  # 1, 4, 16, ... 67108864
_DURATION_BUCKETS = [0.01 * 2.0**n for n in range(14)]  # 0.01, 0.02, ... 81.92 s


# --- whether anything listens, and the tracer and instruments when something does ---------------

_TRACER_PROVIDER = "OTEL_PYTHON_TRACER_PROVIDER"
_METER_PROVIDER = "OTEL_PYTHON_METER_PROVIDER"
"""The variables that make OpenTelemetry load a provider without any code setting one."""


def tracing_on() -> bool:
    """Whether a tracer provider is set: by the application, `configure()` or `OTEL_PYTHON_TRACER_PROVIDER`.

    Without one every span is a no-op, so agentkit makes none. Asked at each
    run's start and each tool call (about a microsecond), so a provider set
    later is used from the next run on.
    """
    if "opentelemetry.trace" not in sys.modules and _TRACER_PROVIDER not in os.environ:
        return False  # a provider is set through that module: nobody has imported it yet
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def metrics_on() -> bool:
    """Whether a meter provider is set (see `tracing_on`): without one the histograms record nothing."""
    if "opentelemetry.metrics" not in sys.modules and _METER_PROVIDER not in os.environ:
        return False
    from opentelemetry import metrics

    # The API's stand-in until a provider is set; OpenTelemetry does not export its class.
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    return not isinstance(metrics.get_meter_provider(), _ProxyMeterProvider | metrics.NoOpMeterProvider)


@dataclass(frozen=True)
class _Instruments:
    tracer: Tracer
    token_usage: Histogram
    duration: Histogram


@functools.cache
def _instruments() -> _Instruments:
    """agentkit's tracer and histograms, made on first use (so OpenTelemetry is imported then).

    They are the API's proxies: they send to the application's provider
    whenever one is set, before or after they were made.
    """
    from importlib.metadata import PackageNotFoundError, version

    from opentelemetry import metrics, trace

    try:
        release = version("agentkit")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
        release = "0"
    meter = metrics.get_meter("agentkit", release)
    return _Instruments(
        tracer=trace.get_tracer("agentkit", release),
        token_usage=meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        ),
        duration=meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        ),
    )


def get_tracer() -> Tracer:
    """agentkit's tracer (imports OpenTelemetry on first use)."""
    return _instruments().tracer


def __getattr__(name: str) -> Any:
    # `tracer` was a module attribute made at import; it is made on first use now.
    if name == "tracer":
        return get_tracer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- content opt-in -----------------------------------------------------------------------------

_SPAN_CONTENT = {"true", "span_only", "span_and_event"}
_NO_CONTENT = {"", "false", "no_content"}
_warned: set[str] = set()


def capture_content() -> bool:
    """Whether spans record message content (read from the environment each run)."""
    value = os.environ.get(CAPTURE_CONTENT, "").strip().lower()
    if value in _SPAN_CONTENT:
        if value == "span_and_event" and value not in _warned:
            _warned.add(value)
            log.warning("%s=SPAN_AND_EVENT: agentkit records content on spans; it emits no events", CAPTURE_CONTENT)
        return True
    if value not in _NO_CONTENT and value not in _warned:
        _warned.add(value)
        log.warning(
            "%s=%s: agentkit records content on spans only (true or SPAN_ONLY); recording none",
            CAPTURE_CONTENT,
            os.environ[CAPTURE_CONTENT],
        )
    return False


def dumps(value: Any) -> str:
    """A value as a JSON attribute, declared secrets masked."""
    return redact_text(json.dumps(value, ensure_ascii=False, default=str))


def message_parts(message: Message) -> dict[str, Any]:
    """A message in the conventions' form: `{"role": ..., "parts": [...]}`."""
    if isinstance(message, SystemMessage | UserMessage):
        return {"role": message.role, "parts": [{"type": "text", "content": message.text}]}
    if isinstance(message, ToolResult):
        return {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": message.call_id, "response": message.content}],
        }
    parts: list[dict[str, Any]] = []
    if message.thinking:
        parts.append({"type": "reasoning", "content": message.thinking})
    if message.text:
        parts.append({"type": "text", "content": message.text})
    parts.extend(
        {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
        for call in message.tool_calls
    )
    return {"role": "assistant", "parts": parts}


def output_messages(message: AssistantMessage, finish_reason: str) -> str:
    # The conventions' message schema says `tool_call` where the response's finish reason says `tool_calls`.
    reason = "tool_call" if finish_reason == "tool_calls" else finish_reason
    return dumps([{**message_parts(message), "finish_reason": reason}])


def input_attributes(messages: Sequence[Message]) -> dict[str, str]:
    """A run's starting conversation (content): its instructions and the rest."""
    attributes = {INPUT_MESSAGES: dumps([message_parts(m) for m in messages if not isinstance(m, SystemMessage)])}
    if instructions := [{"type": "text", "content": m.text} for m in messages if isinstance(m, SystemMessage)]:
        attributes[SYSTEM_INSTRUCTIONS] = dumps(instructions)
    return attributes


# --- attributes shared by live spans and re-emitted runs ---------------------------------------


def error_type(text: str) -> str:
    """The `error.type` of an error as agentkit writes it down (`"ToolTimeoutError: ..."`).

    The exception's class name when the text starts with one, else `_OTHER`
    (the conventions' fallback): the same for a live error and a stored one.
    """
    match = re.match(r"([A-Za-z_][\w.]*)(?::|$)", text)
    return match[1] if match else "_OTHER"


def describe_error(exc: BaseException) -> str:
    """`"Type: message"`, as the store keeps a run's error."""
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def fail(span: Span, text: str) -> None:
    """Mark `span` failed: its `error.type` and an error status saying `text` (secrets masked)."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute(ERROR_TYPE, error_type(text))
    span.set_status(Status(StatusCode.ERROR, redact_text(text)[:1000]))


def record_exception(span: Span, exc: BaseException) -> None:
    """`span.record_exception(exc)`, with declared secrets masked in its message and stack trace."""
    if not declared():
        span.record_exception(exc)
        return
    masked = {
        "exception.message": redact_text(str(exc)),
        "exception.stacktrace": redact_text("".join(traceback.format_exception(exc))),
    }
    span.record_exception(exc, attributes=masked)


def runtime_attributes(provider: str, model: str, server: str | None) -> dict[str, Any]:
    """Who served a model call: provider, model and, for servers, address and port."""
    attributes: dict[str, Any] = {PROVIDER: provider, REQUEST_MODEL: model}
    if server:
        parts = urlsplit(server)
        if parts.hostname:
            attributes[SERVER_ADDRESS] = parts.hostname
            attributes[SERVER_PORT] = parts.port or (443 if parts.scheme == "https" else 80)
    return attributes


def _of(info: RuntimeInfo) -> dict[str, Any]:
    return runtime_attributes(info.provider or info.name, info.model, info.server)


def request_attributes(request: ModelRequest, content: bool) -> dict[str, Any]:
    """What a model call asked for (the content only if `content`)."""
    sampling = request.sampling
    attributes: dict[str, Any] = {
        OPERATION: "chat",
        OUTPUT_TYPE: "json" if request.output_schema is not None else "text",
        "gen_ai.request.max_tokens": sampling.max_tokens,
        "gen_ai.request.temperature": sampling.temperature,
    }
    if sampling.seed is not None:
        attributes["gen_ai.request.seed"] = sampling.seed
    if sampling.stop:
        attributes["gen_ai.request.stop_sequences"] = list(sampling.stop)
    if content:
        attributes[INPUT_MESSAGES] = dumps([message_parts(m) for m in request.messages])
        if request.tools:
            attributes[TOOL_DEFINITIONS] = dumps([_definition(t) for t in request.tools])
    return attributes


def _definition(spec: ToolSpec) -> dict[str, Any]:
    return {"type": "function", "name": spec.name, "description": spec.description, "parameters": spec.parameters}


def response_attributes(response: ModelResponse, model: str, content: bool) -> dict[str, Any]:
    """What a model call returned and cost."""
    usage = response.usage
    attributes: dict[str, Any] = {RESPONSE_MODEL: model, FINISH_REASONS: [response.finish_reason]}
    attributes.update(usage_attributes(usage))
    if usage.cached_tokens:
        attributes[CACHED_TOKENS] = usage.cached_tokens
    if content:
        attributes[OUTPUT_MESSAGES] = output_messages(response.message, response.finish_reason)
    return attributes


def tool_attributes(call: ToolCall, description: str | None, content: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        OPERATION: "execute_tool",
        TOOL_NAME: call.name,
        TOOL_CALL_ID: call.id,
        TOOL_TYPE: "function",
    }
    if description:
        attributes[TOOL_DESCRIPTION] = description
    if content:
        attributes[TOOL_ARGUMENTS] = dumps(call.arguments)
    return attributes


def record_tool_result(span: Span, result: ToolResult, content: bool) -> None:
    """A tool's outcome on its span: the result (opt-in) and, for an error, its type."""
    if content:
        span.set_attribute(TOOL_RESULT, dumps(result.content))
    if result.is_error:
        fail(span, result.content if isinstance(result.content, str) else dumps(result.content))


def agent_attributes(name: str, run_id: str, provider: str, model: str, server: str | None) -> dict[str, Any]:
    return {
        OPERATION: "invoke_agent",
        AGENT_NAME: name,
        CONVERSATION: run_id,
        **runtime_attributes(provider, model, server),
    }


def usage_attributes(usage: Usage) -> dict[str, Any]:
    """Token counts, when the runtime reported any (a scripted model reports none)."""
    if not usage.total_tokens:
        return {}
    return {INPUT_TOKENS: usage.prompt_tokens, OUTPUT_TOKENS: usage.completion_tokens}


def record_metrics(runtime: Mapping[str, Any], usage: Usage | None, seconds: float, error: str | None) -> None:
    """A chat call's duration and tokens on the conventions' two histograms (`runtime`: `runtime_attributes`)."""
    common = {**runtime, OPERATION: "chat"}
    if error is None:
        common[RESPONSE_MODEL] = runtime[REQUEST_MODEL]
    instruments = _instruments()
    instruments.duration.record(seconds, {**common, ERROR_TYPE: error_type(error)} if error else common)
    if usage is not None and usage.total_tokens:
        instruments.token_usage.record(usage.prompt_tokens, {**common, "gen_ai.token.type": "input"})
        instruments.token_usage.record(usage.completion_tokens, {**common, "gen_ai.token.type": "output"})


# --- live spans ---------------------------------------------------------------------------------

_NOTHING = nullcontext()


@dataclass
class AgentSpan:
    """The `invoke_agent` span of one run (the loop holds it across its steps)."""

    span: Span | None
    """None when nothing listens (no tracer or meter provider was set when the run
    started): no span is made for the run, its model calls or its tools."""
    runtime: Runtime
    run_id: str
    content: bool
    ended: bool = False
    _untraced_chat: AbstractContextManager[ChatSpan] | None = field(default=None, init=False, repr=False)
    """What `chat_span` gives each model call of a run with no span (it holds no state: one serves them all)."""

    @classmethod
    def start(
        cls,
        name: str,
        run_id: str,
        runtime: Runtime,
        *,
        typed: bool,
        messages: Sequence[Message],
        resumed: bool = False,
    ) -> AgentSpan:
        """Start the span under whatever span is current (a workflow's, a tool's).

        A resumed run is a new trace of the same conversation (`gen_ai.conversation.id`),
        marked `agentkit.resumed`; its `messages` are the conversation it goes on from.
        """
        if not (tracing_on() or metrics_on()):
            return cls(span=None, runtime=runtime, run_id=run_id, content=False)
        from opentelemetry.trace import SpanKind

        content, info = capture_content(), runtime.info
        attributes = agent_attributes(name, run_id, info.provider or info.name, info.model, info.server)
        attributes[OUTPUT_TYPE] = "json" if typed else "text"
        if resumed:
            attributes[RESUMED] = True
        span = get_tracer().start_span(f"invoke_agent {name}", kind=SpanKind.INTERNAL, attributes=attributes)
        if content and span.is_recording():
            span.set_attributes(input_attributes(messages))
        return cls(span=span, runtime=runtime, run_id=run_id, content=content)

    def current(self) -> AbstractContextManager[object]:
        """Make the run's span current (for the tools, whose spans nest under it).

        Only around code that does not yield to the loop's caller: the loop is
        an async generator, and a context attached across a yield leaks into it.
        """
        if self.span is None:
            return _NOTHING
        from opentelemetry import trace

        return trace.use_span(self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False)

    def end(self, usage: Usage, *, answer: ModelResponse | None = None, error: BaseException | None = None) -> None:
        """End the run's span (once; later calls do nothing): the tokens this run
        spent, its answer (opt-in) or its error."""
        if self.ended or self.span is None:
            return
        self.ended = True
        self.span.set_attributes({**usage_attributes(usage), REQUEST_MODEL: self.runtime.info.model})
        if answer is not None and self.content:
            self.span.set_attribute(OUTPUT_MESSAGES, output_messages(answer.message, answer.finish_reason))
        if error is not None:
            fail(self.span, describe_error(error))
            if isinstance(error, Exception):
                record_exception(self.span, error)
        self.span.end()


@dataclass
class ChatSpan:
    """The `chat` span of one model call; `record` its response before the block ends."""

    span: Span | None
    """None when the run is not traced: `record` does nothing."""
    runtime: Runtime
    content: bool
    response: ModelResponse | None = None

    def record(self, response: ModelResponse) -> None:
        if self.span is None:
            return
        self.response = response
        # A server runtime learns its model's name from the server on its first call.
        model = self.runtime.info.model
        self.span.update_name(f"chat {model}")
        self.span.set_attributes({REQUEST_MODEL: model, **response_attributes(response, model, self.content)})


def chat_span(agent: AgentSpan, request: ModelRequest, step: int) -> AbstractContextManager[ChatSpan]:
    """Trace one model call of `agent`'s run; an exception is recorded and re-raised.

    The span is current inside the block, so an instrumented HTTP client's
    spans nest under it.
    """
    if agent.span is None:
        if agent._untraced_chat is None:
            agent._untraced_chat = nullcontext(ChatSpan(span=None, runtime=agent.runtime, content=False))
        return agent._untraced_chat
    return _chat_span(agent, agent.span, request, step)


@contextmanager
def _chat_span(agent: AgentSpan, parent: Span, request: ModelRequest, step: int) -> Iterator[ChatSpan]:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    info = agent.runtime.info
    attributes = {**_of(info), **request_attributes(request, agent.content), CONVERSATION: agent.run_id, STEP: step}
    started = time.monotonic()
    with get_tracer().start_as_current_span(
        f"chat {info.model}",
        context=trace.set_span_in_context(parent),
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        chat = ChatSpan(span=span, runtime=agent.runtime, content=agent.content)
        try:
            yield chat
        except BaseException as exc:
            text = describe_error(exc)
            fail(span, text)
            if isinstance(exc, Exception):
                record_exception(span, exc)
            record_metrics(_of(agent.runtime.info), getattr(exc, "usage", None), time.monotonic() - started, text)
            raise
        usage = chat.response.usage if chat.response is not None else None
        record_metrics(_of(agent.runtime.info), usage, time.monotonic() - started, None)


@dataclass
class ToolSpan:
    span: Span | None
    """None when no tracer provider is set: `record` does nothing."""
    content: bool

    def record(self, result: ToolResult) -> None:
        if self.span is not None:
            record_tool_result(self.span, result, self.content)


_UNTRACED_TOOL = nullcontext(ToolSpan(span=None, content=False))
"""What `tool_span` gives while no tracer provider is set (it holds no state: one serves every call)."""


def tool_span(call: ToolCall, description: str | None, links: Sequence[Any] = ()) -> AbstractContextManager[ToolSpan]:
    """Trace one tool call under the current span; `record` its result before the block ends.

    `links`: span contexts to link the span to (the plan calls whose results it uses).
    """
    # Without the API imported no provider is set: a run's start (or a workflow's
    # span) has already imported it if OTEL_PYTHON_TRACER_PROVIDER names one.
    if "opentelemetry.trace" not in sys.modules or not tracing_on():
        return _UNTRACED_TOOL
    return _tool_span(call, description, links)


@contextmanager
def _tool_span(call: ToolCall, description: str | None, links: Sequence[Any]) -> Iterator[ToolSpan]:
    from opentelemetry.trace import Link, SpanKind

    content = capture_content()
    with get_tracer().start_as_current_span(
        f"execute_tool {call.name}",
        kind=SpanKind.INTERNAL,
        attributes=tool_attributes(call, description, content),
        links=[Link(context, {DEPENDENCY: True}) for context in links],
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield ToolSpan(span=span, content=content)
        except BaseException as exc:  # the executor turns failures into results: this is a cancellation
            fail(span, describe_error(exc))
            raise


def span_context() -> Any:
    """The current span's context (to link to it later), or None when nothing is traced."""
    if "opentelemetry.trace" not in sys.modules or not tracing_on():
        return None
    from opentelemetry.trace import get_current_span

    context = get_current_span().get_span_context()
    return context if context.is_valid else None


def plan_span(step: int, plan: Sequence[ToolCall], run_id: str) -> AbstractContextManager[Any]:
    """Trace one plan's execution: its calls' `execute_tool` spans nest under it."""
    if "opentelemetry.trace" not in sys.modules or not tracing_on():
        return _NOTHING
    from opentelemetry.trace import SpanKind

    from agentkit.planning import dependencies

    name, attributes = plan_attributes(step, len(plan), run_id, dependencies(plan))
    return get_tracer().start_as_current_span(name, kind=SpanKind.INTERNAL, attributes=attributes)


def plan_attributes(
    step: int, calls: int, run_id: str, depends_on: Mapping[str, Sequence[str]]
) -> tuple[str, dict[str, Any]]:
    """A plan span's name and attributes (live, or re-emitted from the store)."""
    edges = sum(len(ids) for ids in depends_on.values())
    attributes = {OPERATION: "execute_plan", CONVERSATION: run_id, STEP: step, PLAN_CALLS: calls}
    return f"execute_plan {calls} call{'s' if calls != 1 else ''}", {**attributes, PLAN_DEPENDENCIES: edges}


@contextmanager
def workflow_span(name: str, *, run_id: str | None = None) -> Iterator[Span]:
    """Trace a workflow run: the agents run inside the block nest under it."""
    from opentelemetry.trace import SpanKind

    attributes: dict[str, Any] = {OPERATION: "invoke_workflow", WORKFLOW_NAME: name}
    if run_id is not None:
        attributes[CONVERSATION] = run_id
    with get_tracer().start_as_current_span(
        f"invoke_workflow {name}",
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            fail(span, describe_error(exc))
            if isinstance(exc, Exception):  # as OpenTelemetry records them: not a GeneratorExit
                record_exception(span, exc)
            raise
