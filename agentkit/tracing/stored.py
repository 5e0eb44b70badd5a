"""Re-emit a stored run as a trace, with the times it really had.

A run recorded without tracing (or before the dashboard existed) can still be
looked at: `agentkit runs trace RUN_ID`, or `emit_run(store.load(run_id))`
after `configure()`. The spans carry the same names and attributes as live
ones; their times come from the store:

- the run: from its creation to its last update;
- a model call: ending when its step was committed, lasting the runtime's
  measured `total` (else starting where the step before it ended);
- a tool call: from when the tool began to its stored result;
- a turn that could not be read: from where the step before it ended;
- a plan: from its first call's start to its last call's end, its calls
  nested and linked to the calls whose results they used, as live.

Metrics are not re-emitted: they were (or were not) recorded when the run happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentkit.messages import Message
from agentkit.runtime import ModelRequest
from agentkit.tracing.spans import (
    CONVERSATION,
    DEPENDENCY,
    OUTPUT_MESSAGES,
    OUTPUT_TYPE,
    STEP,
    agent_attributes,
    capture_content,
    fail,
    get_tracer,
    input_attributes,
    output_messages,
    plan_attributes,
    record_tool_result,
    request_attributes,
    response_attributes,
    runtime_attributes,
    tool_attributes,
    usage_attributes,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

    from agentkit.store import StoredRun, StoredStep

__all__ = ["EmittedTrace", "emit_run"]


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


@dataclass(frozen=True)
class EmittedTrace:
    trace_id: str
    """The trace's id, hex (what dashboards search by)."""
    spans: int


def emit_run(run: StoredRun) -> EmittedTrace:
    """Emit `run` as one trace through the current tracer provider.

    Call `configure()` first (or set up a provider): without one, this is a no-op.
    """
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    record, content = run.record, capture_content()
    first = run.steps[0] if run.steps else None
    provider, server = _served_by(first)
    model = (first.model if first is not None else None) or "unknown"
    name = record.name
    attributes = agent_attributes(name, record.id, provider, model, server)
    attributes[OUTPUT_TYPE] = "json" if record.output_schema is not None else "text"
    root = get_tracer().start_span(
        f"invoke_agent {name}", kind=SpanKind.INTERNAL, attributes=attributes, start_time=_ns(record.created)
    )
    if content and root.is_recording():
        root.set_attributes(input_attributes(_conversation(run, _input_end(run, 0)) if run.steps else run.messages))
    context = trace.set_span_in_context(root)
    boundary, spans = record.created, 1
    for n in range(len(run.steps)):
        boundary = _emit_step(run, n, context, boundary, content)
        spans += 1 + len(run.steps[n].results)
    root.set_attributes(usage_attributes(run.usage))
    if record.status == "done":
        answer = run.steps[-1].response if run.steps else None
        if content and answer is not None:
            root.set_attribute(OUTPUT_MESSAGES, output_messages(answer.message, answer.finish_reason))
    else:
        fail(root, record.error or f"the run's status is {record.status}")
    root.end(end_time=_ns(max(record.updated, boundary)))
    return EmittedTrace(trace_id=format(root.get_span_context().trace_id, "032x"), spans=spans)


def _emit_step(run: StoredRun, n: int, context: Context, boundary: float, content: bool) -> float:
    """Step `n`'s chat span and tool spans; returns when the step ended."""
    from opentelemetry.trace import Link, SpanKind, set_span_in_context

    tracer = get_tracer()
    step = run.steps[n]
    response = step.response
    total = response.timings.get("total")
    start = step.created - total if isinstance(total, int | float) else boundary
    tools = run.record.tools
    request = ModelRequest(
        messages=_conversation(run, _input_end(run, n)),
        tools=tools,
        tool_choice="auto" if tools else "none",
        output_schema=run.record.output_schema,
        sampling=step.sampling,
    )
    provider, server = _served_by(step)
    model = step.model or "unknown"
    attributes = {
        **runtime_attributes(provider, model, server),
        **request_attributes(request, content),
        CONVERSATION: run.record.id,
        STEP: step.index,
    }
    chat = tracer.start_span(
        f"chat {model}", context=context, kind=SpanKind.CLIENT, attributes=attributes, start_time=_ns(start)
    )
    if response.finish_reason == "error":  # a turn that could not be read
        fail(chat, "ModelOutputError: the model's reply could not be read")
    else:
        chat.set_attributes(response_attributes(response, model, content))
    chat.end(end_time=_ns(step.created))
    ended = step.created
    calls = {c.id: c for c in response.message.tool_calls}
    times = {r.call_id: step.tool_times.get(r.call_id, (step.created, step.created)) for r in step.results}
    plan = None
    if step.plan and step.results:
        # A plan: one span around its calls (from the first to start to the last to end), each call linked to
        # the calls whose results it used (earlier in the plan: their spans are made first).
        name, plan_attrs = plan_attributes(step.index, len(calls), run.record.id, step.depends_on)
        plan = tracer.start_span(
            name,
            context=context,
            kind=SpanKind.INTERNAL,
            attributes=plan_attrs,
            start_time=_ns(min(began for began, _ in times.values())),
        )
        context = set_span_in_context(plan, context)
    spans: dict[str, Span] = {}
    for result in step.results:
        began, finished = times[result.call_id]
        used = [spans[d].get_span_context() for d in step.depends_on.get(result.call_id, ()) if d in spans]
        span = spans[result.call_id] = tracer.start_span(
            f"execute_tool {result.name}",
            context=context,
            kind=SpanKind.INTERNAL,
            attributes=tool_attributes(calls[result.call_id], _description(run, result.name), content),
            links=[Link(c, {DEPENDENCY: True}) for c in used],
            start_time=_ns(began),
        )
        record_tool_result(span, result, content)
        span.end(end_time=_ns(finished))
        ended = max(ended, finished)
    if plan is not None:
        plan.end(end_time=_ns(max(finished for _, finished in times.values())))
    return ended


def _served_by(step: StoredStep | None) -> tuple[str, str | None]:
    """The provider and server of a step (the runtime URI's scheme for steps stored before agentkit kept them)."""
    if step is None:
        return "unknown", None
    return step.provider or (step.runtime or "unknown").partition(":")[0], step.server


def _description(run: StoredRun, name: str) -> str | None:
    return next((t.description for t in run.record.tools if t.name == name), None)


def _input_end(run: StoredRun, n: int) -> int:
    """The conversation position step `n`'s model call saw up to (exclusive).

    A turn that could not be read has no position; each such turn added one
    feedback message, so it is found back from the next readable turn.
    """
    unreadable = 0
    for step in run.steps[n:]:
        if step.position is not None:
            return step.position - unreadable
        unreadable += 1
    return (max(run.positions) + 1 if run.positions else 0) - unreadable


def _conversation(run: StoredRun, end: int) -> list[Message]:
    return [m for m, p in zip(run.messages, run.positions, strict=True) if p < end]
