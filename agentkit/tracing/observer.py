"""`Tracing`: a run's phases as OpenTelemetry GenAI spans (`invoke_agent`, `chat`).

The `execute_tool` spans are the executor's; they nest under the run's span
because the loop runs its tools inside `scope()`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agentkit.observers import RunEnd, RunObserver
from agentkit.secrets import redact_text
from agentkit.tracing.spans import (
    CONVERSATION,
    STEP,
    TOOL_CALL_ID,
    TOOL_NAME,
    AgentSpan,
    ChatSpan,
    _of,
    describe_error,
    fail,
    get_tracer,
    record_exception,
    record_metrics,
    request_attributes,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from agentkit.loop import Run
    from agentkit.messages import ToolCall
    from agentkit.runtime import ModelRequest, ModelResponse

__all__ = ["APPROVAL", "APPROVAL_BY", "APPROVAL_REASON", "Tracing"]

APPROVAL = "agentkit.approval.decision"
"""On an `agentkit.approval` event of `invoke_agent`: approved, denied or waiting."""
APPROVAL_REASON = "agentkit.approval.reason"
APPROVAL_BY = "agentkit.approval.decided_by"


class Tracing(RunObserver):
    """Traces one run: its `invoke_agent` span, and a `chat` span per model call."""

    def __init__(self) -> None:
        self.agent: AgentSpan | None = None
        self.chat: Span | None = None
        self.asked = 0.0

    def started(self, run: Run, *, resumed: bool) -> None:
        config = run.config
        self.agent = AgentSpan.start(
            config.name,
            run.run_id,
            config.runtime,
            typed=run.schema is not None,
            messages=run.messages,
            resumed=resumed,
        )

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        # The model call's span while one is open (an instrumented HTTP client's
        # spans nest under it), else the run's (the tools' spans nest there).
        span = self.chat or (self.agent.span if self.agent is not None else None)
        if span is None:
            yield
            return
        from opentelemetry import trace  # here: a process that sets up no tracing never imports it

        with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield

    def asking(self, run: Run, index: int, request: ModelRequest) -> None:
        assert self.agent is not None
        if self.agent.span is None:  # no tracer or meter provider: the run makes no spans
            return
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        info = self.agent.runtime.info
        attributes = {
            **_of(info),
            **request_attributes(request, self.agent.content),
            CONVERSATION: self.agent.run_id,
            STEP: index,
        }
        self.asked = time.monotonic()
        self.chat = get_tracer().start_span(
            f"chat {info.model}",
            context=trace.set_span_in_context(self.agent.span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )

    def answered(self, run: Run, index: int, response: ModelResponse, position: int | None) -> None:
        if self.chat is None or self.agent is None:
            return
        ChatSpan(span=self.chat, runtime=self.agent.runtime, content=self.agent.content).record(response)
        record_metrics(_of(self.agent.runtime.info), response.usage, time.monotonic() - self.asked, None)
        self.chat.end()
        self.chat = None

    def ask_failed(self, run: Run, index: int, error: BaseException) -> None:
        if self.chat is None or self.agent is None:
            return
        text = describe_error(error)
        fail(self.chat, text)
        if isinstance(error, Exception):
            record_exception(self.chat, error)
        usage = getattr(error, "usage", None)
        record_metrics(_of(self.agent.runtime.info), usage, time.monotonic() - self.asked, text)
        self.chat.end()
        self.chat = None

    def decided(
        self, run: Run, call: ToolCall, approved: bool | None, reason: str | None, by: str | None, *, stored: bool
    ) -> None:
        """An event on the run's span: the call, the decision (or the wait), why and who."""
        span = self.agent.span if self.agent is not None else None
        if span is None:
            return
        attributes: dict[str, Any] = {TOOL_CALL_ID: call.id, TOOL_NAME: call.name}
        attributes[APPROVAL] = "waiting" if approved is None else "approved" if approved else "denied"
        if reason:
            attributes[APPROVAL_REASON] = redact_text(reason)
        if by:
            attributes[APPROVAL_BY] = by
        span.add_event("agentkit.approval", attributes)

    def ended(self, run: Run, end: RunEnd) -> None:
        if self.chat is not None and end.error is not None:
            self.ask_failed(run, -1, end.error)
        if self.agent is not None:
            self.agent.end(run.spent, answer=end.answer, error=end.error)
