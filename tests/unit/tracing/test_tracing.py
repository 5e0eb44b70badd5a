"""Tracing: the spans and metrics of runs, checked on OpenTelemetry's in-memory exporter and reader.

The SDK provider these tests set is global for the rest of the session (an
OpenTelemetry provider can be set once per process); the checks that need a
process without one run in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydantic
import pytest
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentkit import (
    Agent,
    MaxStepsExceeded,
    ModelOutputError,
    ModelRequest,
    ModelResponse,
    RuntimeInfo,
    ServerError,
    TracingError,
    Usage,
    tool,
)
from agentkit.errors import StoreError, WorkflowFailed
from agentkit.runtimes import ScriptedRuntime
from agentkit.runtimes.function import FunctionRuntime
from agentkit.store import RunRecorder, Store
from agentkit.tracing import CAPTURE_CONTENT, configure, emit_run, workflow_span
from agentkit.tracing.exporting import _choice, wanted
from agentkit.tracing.spans import error_type
from agentkit.workflow import Workflow

REPO = Path(__file__).resolve().parents[3]


class OpenSpans(SpanProcessor):
    """The spans started and not ended: every test ends with none."""

    def __init__(self) -> None:
        self.open: dict[int, str] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.open[span.get_span_context().span_id] = span.name

    def on_end(self, span: ReadableSpan) -> None:
        assert span.context is not None
        self.open.pop(span.context.span_id, None)


OPEN = OpenSpans()


@pytest.fixture(scope="module")
def telemetry() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    provider = TracerProvider()
    provider.add_span_processor(OPEN)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    assert trace.get_tracer_provider() is provider, "another test set a tracer provider first"
    yield exporter, reader
    exporter.shutdown()  # later tests' spans are dropped, not kept in memory


@pytest.fixture
def spans(telemetry: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> Iterator[InMemorySpanExporter]:
    exporter, reader = telemetry
    exporter.clear()
    reader.get_metrics_data()  # (the reader is cumulative; tests compare before and after)
    OPEN.open.clear()
    yield exporter
    assert not OPEN.open, f"spans left open: {sorted(OPEN.open.values())}"


def Metered(turns: list[Any], *, fail_at: int | None = None) -> FunctionRuntime:  # reads as a class
    """Plays a script, reporting token counts as a server would (the loop's logic under test, not a model)."""
    script = ScriptedRuntime(turns)

    async def turn(request: ModelRequest, index: int) -> ModelResponse:
        call = index + 1
        if call == fail_at:
            raise ServerError("http://127.0.0.1:8123/v1/completions failed after 4 attempts: 503", url="x")
        started = time.monotonic()
        response = await script.generate(request)
        usage = Usage(prompt_tokens=100 * call, completion_tokens=10 * call, cached_tokens=5, requests=1)
        return replace(response, usage=usage, timings={"total": time.monotonic() - started})

    server = RuntimeInfo(
        name="vllm-server", model="gemma-test", provider="vllm", server="http://127.0.0.1:8123/v1", uri=None
    )
    return FunctionRuntime(turn, info=server)


METERED_CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "vllm",
    "gen_ai.request.model": "gemma-test",
    "gen_ai.response.model": "gemma-test",
    "server.address": "127.0.0.1",
    "server.port": 8123,
}
"""What a `Metered` model call's span and metrics say of it."""


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    await asyncio.sleep(0.05)
    return a + b


@tool
async def explode(reason: str) -> str:
    """Always fails."""
    await asyncio.sleep(0.05)
    raise ValueError(reason)


class Sum(pydantic.BaseModel):
    total: int


def parallel_script() -> list[Any]:
    return [
        {
            "tool_calls": [
                {"name": "add", "arguments": {"a": 1, "b": 2}, "id": "c1"},
                {"name": "explode", "arguments": {"reason": "no"}, "id": "c2"},
            ]
        },
        '{"total": 3}',
    ]


def calculator(runtime: Any, **kwargs: Any) -> Agent[Sum]:
    return Agent(
        runtime=runtime,
        instructions="Add numbers.",
        tools=[add, explode],
        output_type=Sum,
        name="Calculator",
        **kwargs,
    )


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


CONTENT_KEYS = {
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
}


def test_a_run_with_parallel_calls_a_failing_tool_and_a_typed_output(spans: InMemorySpanExporter) -> None:
    result = calculator(Metered(parallel_script())).run("What is 1 + 2?")
    assert result.output == Sum(total=3)
    finished = spans.get_finished_spans()
    named = by_name(finished)
    assert sorted(named) == ["chat gemma-test", "execute_tool add", "execute_tool explode", "invoke_agent Calculator"]
    [agent], chats = named["invoke_agent Calculator"], named["chat gemma-test"]
    [added], [exploded] = named["execute_tool add"], named["execute_tool explode"]
    assert len(finished) == 5
    assert len(chats) == 2

    # Kinds and nesting: one trace, everything a child of the run.
    assert agent.kind == SpanKind.INTERNAL
    assert agent.parent is None
    assert all(c.kind == SpanKind.CLIENT for c in chats)
    assert added.kind == exploded.kind == SpanKind.INTERNAL
    assert agent.context is not None
    for child in (*chats, added, exploded):
        assert child.parent is not None
        assert child.parent.span_id == agent.context.span_id
        assert child.context is not None
        assert child.context.trace_id == agent.context.trace_id
    # The two calls of one turn ran side by side, between the two model calls.
    first, second = sorted(chats, key=lambda s: s.start_time or 0)
    assert first.end_time is not None
    assert added.end_time is not None
    assert exploded.end_time is not None
    assert added.start_time is not None
    assert exploded.start_time is not None
    assert second.start_time is not None
    assert first.end_time <= min(added.start_time, exploded.start_time)
    assert max(added.start_time, exploded.start_time) < min(added.end_time, exploded.end_time)
    assert max(added.end_time, exploded.end_time) <= second.start_time

    assert attrs(agent) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "Calculator",
        "gen_ai.conversation.id": result.run_id,
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": "gemma-test",
        "server.address": "127.0.0.1",
        "server.port": 8123,
        "gen_ai.output.type": "json",
        "gen_ai.usage.input_tokens": 300,
        "gen_ai.usage.output_tokens": 30,
    }
    assert agent.status.status_code == StatusCode.UNSET
    assert attrs(first) == {
        **METERED_CHAT,
        "gen_ai.conversation.id": result.run_id,
        "agentkit.step": 0,
        "gen_ai.output.type": "json",
        "gen_ai.request.max_tokens": 512,
        "gen_ai.request.temperature": 0.0,
        "gen_ai.response.finish_reasons": ("tool_calls",),
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 10,
        "gen_ai.usage.cache_read.input_tokens": 5,
    }
    assert attrs(second)["gen_ai.response.finish_reasons"] == ("stop",)
    assert (attrs(second)["gen_ai.usage.input_tokens"], attrs(second)["agentkit.step"]) == (200, 1)
    assert attrs(added) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "gen_ai.tool.call.id": "c1",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": "Add two numbers.",
    }
    assert added.status.status_code == StatusCode.UNSET
    assert attrs(exploded)["gen_ai.tool.call.id"] == "c2"
    assert attrs(exploded)["error.type"] == "ToolExecutionError"
    assert exploded.status.status_code == StatusCode.ERROR
    assert "ValueError: no" in (exploded.status.description or "")
    # No content without the opt-in.
    assert not any(CONTENT_KEYS & set(attrs(s)) for s in finished)


def test_message_content_only_when_opted_in(spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT, "SPAN_ONLY")
    calculator(Metered(parallel_script())).run("What is 1 + 2?")
    named = by_name(spans.get_finished_spans())
    [agent], [added], [exploded] = (
        named["invoke_agent Calculator"],
        named["execute_tool add"],
        named["execute_tool explode"],
    )
    first, second = sorted(named["chat gemma-test"], key=lambda s: s.start_time or 0)

    assert json.loads(attrs(agent)["gen_ai.system_instructions"]) == [{"type": "text", "content": "Add numbers."}]
    assert json.loads(attrs(agent)["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is 1 + 2?"}]}
    ]
    answer = [{"role": "assistant", "parts": [{"type": "text", "content": '{"total": 3}'}], "finish_reason": "stop"}]
    assert json.loads(attrs(agent)["gen_ai.output.messages"]) == answer
    assert json.loads(attrs(second)["gen_ai.output.messages"]) == answer

    assert [m["role"] for m in json.loads(attrs(first)["gen_ai.input.messages"])] == ["system", "user"]
    assert json.loads(attrs(first)["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "c1", "name": "add", "arguments": {"a": 1, "b": 2}},
                {"type": "tool_call", "id": "c2", "name": "explode", "arguments": {"reason": "no"}},
            ],
            "finish_reason": "tool_call",  # the message schema's word for the response's `tool_calls`
        }
    ]
    definitions = json.loads(attrs(first)["gen_ai.tool.definitions"])
    assert [(d["type"], d["name"]) for d in definitions] == [("function", "add"), ("function", "explode")]
    assert definitions[0]["parameters"]["required"] == ["a", "b"]
    tool_turn = json.loads(attrs(second)["gen_ai.input.messages"])
    assert tool_turn[-2:] == [
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": 3}]},
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "c2", "response": tool_turn[-1]["parts"][0]["response"]}],
        },
    ]
    assert "ValueError: no" in tool_turn[-1]["parts"][0]["response"]
    assert json.loads(attrs(added)["gen_ai.tool.call.arguments"]) == {"a": 1, "b": 2}
    assert json.loads(attrs(added)["gen_ai.tool.call.result"]) == 3
    assert json.loads(attrs(exploded)["gen_ai.tool.call.arguments"]) == {"reason": "no"}


@pytest.mark.parametrize(
    ("value", "captured"),
    [("true", True), ("SPAN_ONLY", True), ("span_and_event", True), ("false", False), ("NO_CONTENT", False)],
)
def test_the_opt_in_values(
    value: str, captured: bool, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT, value)
    Agent(runtime=ScriptedRuntime(["hi"]), name="Echo").run("hello")
    [agent] = by_name(spans.get_finished_spans())["invoke_agent Echo"]
    assert ("gen_ai.input.messages" in attrs(agent)) is captured


def test_event_only_records_no_content_and_says_so(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT, "EVENT_ONLY")
    Agent(runtime=ScriptedRuntime(["hi"]), name="Echo").run("hello")
    [agent] = by_name(spans.get_finished_spans())["invoke_agent Echo"]
    assert not CONTENT_KEYS & set(attrs(agent))
    assert "agentkit records content on spans only" in caplog.text


def test_metrics_follow_the_conventions(
    spans: InMemorySpanExporter, telemetry: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    reader = telemetry[1]
    before = histograms(reader)
    calculator(Metered(parallel_script())).run("What is 1 + 2?")
    after = histograms(reader)
    common = METERED_CHAT
    key = json.dumps(common, sort_keys=True)
    duration = after["gen_ai.client.operation.duration", key]
    assert duration.count - count_of(before, "gen_ai.client.operation.duration", key) == 2
    assert duration.explicit_bounds[:3] == (0.01, 0.02, 0.04)
    inputs = json.dumps({**common, "gen_ai.token.type": "input"}, sort_keys=True)
    outputs = json.dumps({**common, "gen_ai.token.type": "output"}, sort_keys=True)
    assert after["gen_ai.client.token.usage", inputs].sum - sum_of(before, "gen_ai.client.token.usage", inputs) == 300
    assert after["gen_ai.client.token.usage", outputs].sum - sum_of(before, "gen_ai.client.token.usage", outputs) == 30
    assert after["gen_ai.client.token.usage", inputs].explicit_bounds[:3] == (1, 4, 16)


def histograms(reader: InMemoryMetricReader) -> dict[tuple[str, str], HistogramDataPoint]:
    found: dict[tuple[str, str], HistogramDataPoint] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    assert isinstance(point, HistogramDataPoint)
                    found[metric.name, json.dumps(dict(point.attributes or {}), sort_keys=True)] = point
    return found


def count_of(points: dict[tuple[str, str], HistogramDataPoint], name: str, key: str) -> int:
    return points[name, key].count if (name, key) in points else 0


def sum_of(points: dict[tuple[str, str], HistogramDataPoint], name: str, key: str) -> float:
    return points[name, key].sum if (name, key) in points else 0


# --- errors -----------------------------------------------------------------------------------


def test_a_runtime_failure_marks_the_model_call_and_the_run(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ServerError):
        calculator(Metered(parallel_script(), fail_at=2)).run("What is 1 + 2?")
    named = by_name(spans.get_finished_spans())
    [agent] = named["invoke_agent Calculator"]
    failed = max(named["chat gemma-test"], key=lambda s: s.start_time or 0)
    for span in (failed, agent):
        assert attrs(span)["error.type"] == "ServerError"
        assert span.status.status_code == StatusCode.ERROR
        assert "failed after 4 attempts" in (span.status.description or "")
    assert [e.name for e in failed.events] == ["exception"]
    assert "gen_ai.response.finish_reasons" not in attrs(failed)


def test_an_unreadable_turn_fails_its_model_call_and_the_run_goes_on(spans: InMemorySpanExporter) -> None:
    def garbled_once(request: ModelRequest, index: int) -> str:
        if index == 0:
            raise ModelOutputError("no action in the reply", "<garbage>")
        return "fine"

    result = Agent(runtime=FunctionRuntime(garbled_once, name="openai", model="tiny"), name="Talker").run("hi")
    assert result.output == "fine"
    named = by_name(spans.get_finished_spans())
    bad, good = sorted(named["chat tiny"], key=lambda s: s.start_time or 0)
    assert attrs(bad)["error.type"] == "ModelOutputError"
    assert good.status.status_code == StatusCode.UNSET
    assert named["invoke_agent Talker"][0].status.status_code == StatusCode.UNSET


def test_running_out_of_steps_fails_the_run_span(spans: InMemorySpanExporter) -> None:
    turns = [{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 1}}]}] * 2
    with pytest.raises(MaxStepsExceeded):
        calculator(ScriptedRuntime(turns), max_steps=2).run("loop")
    [agent] = by_name(spans.get_finished_spans())["invoke_agent Calculator"]
    assert attrs(agent)["error.type"] == "MaxStepsExceeded"
    assert agent.status.status_code == StatusCode.ERROR


def test_error_type_reads_the_class_name_agentkit_writes() -> None:
    assert error_type("ToolTimeoutError: tool 'x' took longer than 1 s") == "ToolTimeoutError"
    assert error_type("CancelledError") == "CancelledError"
    assert error_type("the call to 'rm' was not approved") == "_OTHER"


# --- nesting --------------------------------------------------------------------------------


def test_agents_nest_under_a_workflow_and_under_the_tool_that_runs_them(spans: InMemorySpanExporter) -> None:
    inner = Agent(runtime=ScriptedRuntime(["4"]), name="Inner")

    @tool
    async def ask_inner(question: str) -> str:
        """Ask the inner agent."""
        return (await inner.arun(question)).output

    outer = Agent(
        runtime=ScriptedRuntime([{"tool_calls": [{"name": "ask_inner", "arguments": {"question": "2+2?"}}]}, "4"]),
        tools=[ask_inner],
        name="Outer",
    )
    with workflow_span("maths", run_id="wf1"):
        outer.run("2+2?")
    named = {name: group[0] for name, group in by_name(spans.get_finished_spans()).items()}
    parent = {name: span.parent.span_id if span.parent else None for name, span in named.items()}
    ids = {name: span.context.span_id for name, span in named.items() if span.context}
    assert parent["invoke_workflow maths"] is None
    assert attrs(named["invoke_workflow maths"]) == {
        "gen_ai.operation.name": "invoke_workflow",
        "gen_ai.workflow.name": "maths",
        "gen_ai.conversation.id": "wf1",
    }
    assert parent["invoke_agent Outer"] == ids["invoke_workflow maths"]
    assert parent["execute_tool ask_inner"] == ids["invoke_agent Outer"]
    assert parent["invoke_agent Inner"] == ids["execute_tool ask_inner"]
    assert parent["chat scripted"] in (ids["invoke_agent Outer"], ids["invoke_agent Inner"])


def test_a_failing_workflow_marks_its_span(spans: InMemorySpanExporter) -> None:
    with pytest.raises(KeyError), workflow_span("broken"):
        raise KeyError("step 3")
    [span] = spans.get_finished_spans()
    assert attrs(span)["error.type"] == "KeyError"
    assert span.status.status_code == StatusCode.ERROR


def test_a_workflow_run_is_one_trace_with_its_agents_and_tool_steps_under_it(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    flow = Workflow.parse(
        """
        name: traced
        steps:
          - id: sum
            tool: calculate
            arguments: {expression: "1 + 2"}
          - id: each
            foreach: [Oslo, Lima]
            steps:
              - id: ask
                agent: {instructions: Answer., name: Asker}
                prompt: "About {{ item }} and {{ steps.sum.output }}"
        """
    )
    runtime = ScriptedRuntime({"Oslo": ["cold"], "Lima": ["mild"]})
    result = flow.run(runtime=runtime, store=Store(tmp_path / "runs.db"))
    finished = spans.get_finished_spans()
    named = by_name(finished)
    (root,) = named["invoke_workflow traced"]
    assert root.parent is None
    assert root.context is not None
    assert attrs(root) == {
        "gen_ai.operation.name": "invoke_workflow",
        "gen_ai.workflow.name": "traced",
        "gen_ai.conversation.id": result.workflow_run,
    }
    agents = named["invoke_agent Asker"]
    assert len(agents) == 2
    assert {span.attributes["gen_ai.conversation.id"] for span in agents} == {  # type: ignore[index]
        run.id for run in Store(tmp_path / "runs.db").runs(workflow_run=result.workflow_run)
    }
    (tool_step,) = named["execute_tool calculate"]
    for span in (*agents, tool_step):
        assert span.parent is not None
        assert span.parent.span_id == root.context.span_id
    assert {span.context.trace_id for span in finished if span.context} == {root.context.trace_id}


def test_a_failed_workflow_marks_its_span_with_the_error(spans: InMemorySpanExporter) -> None:
    flow = Workflow.parse(
        """
        name: broken
        steps:
          - id: divide
            tool: calculate
            arguments: {expression: "1 / 0"}
        """
    )
    with pytest.raises(WorkflowFailed):
        flow.run()
    (span,) = by_name(spans.get_finished_spans())["invoke_workflow broken"]
    assert attrs(span)["error.type"] == "WorkflowFailed"
    assert span.status.status_code == StatusCode.ERROR


# --- a stored run, re-emitted -------------------------------------------------------------------


def test_a_stored_run_is_re_emitted_with_its_times_and_the_live_attributes(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    store = Store(tmp_path / "runs.db")
    result = calculator(Metered(parallel_script()), store=store).run("What is 1 + 2?")
    live = {s.name + str(attrs(s).get("agentkit.step", "")): s for s in spans.get_finished_spans()}
    spans.clear()
    time.sleep(0.5)  # re-emitted later: the times must be the run's, not now

    sent = emit_run(store.load(result.run_id))
    assert sent.spans == 5
    emitted = {s.name + str(attrs(s).get("agentkit.step", "")): s for s in spans.get_finished_spans()}
    assert sorted(emitted) == sorted(live)
    [root] = [s for s in emitted.values() if s.parent is None]
    assert root.context is not None
    assert format(root.context.trace_id, "032x") == sent.trace_id
    assert root.name == "invoke_agent Calculator"
    for key, span in emitted.items():
        assert span.kind == live[key].kind
        if span is not root:
            assert span.parent is not None
            assert span.parent.span_id == root.context.span_id
        assert attrs(span) == attrs(live[key]), key
        assert span.status.status_code == live[key].status.status_code
        # Times as they were, to the store's resolution.
        assert span.start_time is not None
        assert span.end_time is not None
        assert live[key].start_time is not None
        assert live[key].end_time is not None
        assert abs(span.start_time - live[key].start_time) < 50e6, key  # 50 ms: the store's commits
        assert abs(span.end_time - live[key].end_time) < 50e6, key


def test_a_failed_stored_run_is_re_emitted_as_failed(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    with pytest.raises(ServerError) as failure:
        calculator(Metered(parallel_script(), fail_at=2), store=store).run("What is 1 + 2?")
    assert failure.value.partial is not None
    spans.clear()
    emit_run(store.load(failure.value.partial.run_id))
    named = by_name(spans.get_finished_spans())
    [agent] = named["invoke_agent Calculator"]
    assert attrs(agent)["error.type"] == "ServerError"
    assert len(named["chat gemma-test"]) == 1  # the failed request left no step behind


def test_a_stored_plan_is_re_emitted_as_live_its_calls_under_the_plan_and_linked_to_what_they_used(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    plan = {
        "tool_calls": [
            {"name": "add", "arguments": {"a": 1, "b": 2}, "id": "c1"},
            {"name": "add", "arguments": {"a": 3, "b": 4}, "id": "c2"},
            {"name": "add", "arguments": {"a": {"$ref": "$1"}, "b": {"$ref": "$2"}}, "id": "c3"},
        ]
    }
    store = Store(tmp_path / "runs.db")
    result = calculator(Metered([plan, '{"total": 10}']), store=store, planning=True).run("1 + 2 + 3 + 4?")
    assert result.output.total == 10

    def shape(finished: tuple[ReadableSpan, ...]) -> dict[str, Any]:
        by_id = {s.context.span_id: s for s in finished if s.context is not None}
        tools = {attrs(s)["gen_ai.tool.call.id"]: s for s in finished if s.name == "execute_tool add"}
        [planned] = [s for s in finished if s.name == "execute_plan 3 calls"]
        assert all(t.parent is not None and by_id[t.parent.span_id] is planned for t in tools.values())
        links = {
            call: sorted(attrs(by_id[link.context.span_id])["gen_ai.tool.call.id"] for link in span.links)
            for call, span in tools.items()
        }
        return {"plan": attrs(planned), "links": links, "names": sorted(s.name for s in finished)}

    live = shape(spans.get_finished_spans())
    assert live["links"] == {"c1": [], "c2": [], "c3": ["c1", "c2"]}
    assert live["plan"]["agentkit.plan.dependencies"] == 2
    spans.clear()
    emit_run(store.load(result.run_id))
    assert shape(spans.get_finished_spans()) == live


# --- configure() and the application's own provider (fresh processes) ---------------------------


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**clean, **env},
    )


def test_nothing_touches_the_global_provider_unless_asked() -> None:
    done = python(
        """
        import sys
        from opentelemetry import trace
        from agentkit import Agent
        from agentkit.runtimes import ScriptedRuntime
        Agent(runtime=ScriptedRuntime(["hi"])).run("hello")
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        assert not [m for m in sys.modules if m.startswith("opentelemetry.sdk")], "the SDK was imported"
        print("untouched")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "untouched"


def test_an_application_provider_set_before_import_keeps_agentkit_spans() -> None:
    done = python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        mine = TracerProvider()
        mine.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(mine)

        import agentkit.tracing
        from agentkit import Agent
        from agentkit.runtimes import ScriptedRuntime
        assert agentkit.tracing.configure() is None  # the application's provider stays
        assert trace.get_tracer_provider() is mine
        with trace.get_tracer("app").start_as_current_span("request"):
            Agent(runtime=ScriptedRuntime(["hi"]), name="Echo").run("hello")
        print(sorted(s.name for s in exporter.get_finished_spans()))
        """,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",  # would be used if configure() took over
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['chat scripted', 'invoke_agent Echo', 'request']"


RUN_WITH_A_TOOL = textwrap.dedent(
    """
    import sys
    from agentkit import Agent, tool
    from agentkit.runtimes import ScriptedRuntime

    @tool
    def add(a: int, b: int) -> int:
        '''Add two numbers.'''
        return a + b

    def run():
        turns = [{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}, "3"]
        Agent(runtime=ScriptedRuntime(turns), tools=[add], name="Adder").run("add 1 and 2")
    """
)
"""A script's start: `run()` runs an agent that calls a tool once."""


def test_without_a_provider_no_span_is_made_and_opentelemetry_is_not_imported() -> None:
    # The spans would all be no-ops: making them was a quarter of the loop's own time.
    done = python(
        RUN_WITH_A_TOOL
        + textwrap.dedent(
            """
        run()
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

        # The API imported (as a library might) but still no provider: still no span.
        from opentelemetry import trace
        made = []
        for cls in (trace.NoOpTracer, trace.ProxyTracer):
            for method in ("start_span", "start_as_current_span"):
                def counted(self, name, *args, _real=getattr(cls, method), **kwargs):
                    made.append(name)
                    return _real(self, name, *args, **kwargs)
                setattr(cls, method, counted)
        run()
        print(made)
        """
        )
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "[]"]


def test_spans_are_made_from_the_run_after_a_provider_is_set() -> None:
    done = python(
        RUN_WITH_A_TOOL
        + textwrap.dedent(
            """
        from agentkit.tracing.spans import metrics_on, tracing_on
        run()
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))  # metrics only, first
        print(tracing_on(), metrics_on())
        run()
        data = reader.get_metrics_data()
        print(sorted(m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics))

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        print(tracing_on())
        run()
        print(sorted(s.name for s in exporter.get_finished_spans()))
        """
        )
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "False True",
        "['gen_ai.client.operation.duration']",
        "True",
        "['chat scripted', 'chat scripted', 'execute_tool add', 'invoke_agent Adder']",
    ]


def test_configure_on_the_console_prints_each_span() -> None:
    done = python(
        """
        import agentkit.tracing
        from agentkit import Agent
        from agentkit.runtimes import ScriptedRuntime
        provider = agentkit.tracing.configure()
        Agent(runtime=ScriptedRuntime(["hi"]), name="Echo").run("hello")
        agentkit.tracing.shutdown()
        print(provider.resource.attributes["service.name"])
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "agentkit"
    assert '"name": "invoke_agent Echo"' in done.stderr
    assert '"gen_ai.conversation.id"' in done.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin': agentkit exports to otlp, console, none"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "OTLP protocol 'http/json' is not supported",
        ),
    ],
)
def test_configure_refuses_what_it_cannot_do(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(TracingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        configure()


# --- the CLI (fresh processes: it sets the global provider) ---------------------------------------

AGENTS = '''
from agentkit import Agent, tool


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


class Adder(Agent):
    instructions = "Add numbers with the tool."
    tools = [add]
'''


class OtlpReceiver:
    """An OTLP/HTTP trace receiver on loopback that decodes what it gets (protobuf, as the exporter sends)."""

    def __init__(self) -> None:
        import http.server
        import threading

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[Any] = []
        received = self.spans

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        received.extend((resource.resource, span) for span in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    found = OtlpReceiver()
    yield found
    found.close()


def agentkit_cli(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-I", "-c", "from agentkit.cli import main; main()", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
    )


def adder_run(folder: Path, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
    (folder / "trace_agents.py").write_text(AGENTS, encoding="utf-8")
    turns = [{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}, "3"]
    (folder / "turns.json").write_text(json.dumps(turns), encoding="utf-8")
    return agentkit_cli(
        folder,
        "run",
        "trace_agents:Adder",
        "1 + 2?",
        "--runtime",
        "scripted:turns.json",
        "--db",
        "runs.db",
        *flags,
        **env,
    )


def test_the_cli_exports_over_otlp_when_the_endpoint_is_set(tmp_path: Path, receiver: OtlpReceiver) -> None:
    ran = adder_run(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_SERVICE_NAME="adder-service")
    assert (ran.returncode, ran.stdout) == (0, "3\n"), ran.stderr
    names = sorted(span.name for _, span in receiver.spans)
    assert names == ["chat turns", "chat turns", "execute_tool add", "invoke_agent Adder"]
    resource = {a.key: a.value.string_value for a in receiver.spans[0][0].attributes}
    assert resource["service.name"] == "adder-service"
    run_id = ran.stderr.split("run ", 1)[1].split()[0]
    [root] = [span for _, span in receiver.spans if not span.parent_span_id]
    assert {a.key: a.value.string_value for a in root.attributes}["gen_ai.conversation.id"] == run_id


def test_an_agent_served_over_mcp_traces_each_call(tmp_path: Path, receiver: OtlpReceiver) -> None:
    from mcp import Client, StdioServerParameters

    (tmp_path / "trace_agents.py").write_text(AGENTS, encoding="utf-8")
    turns = [{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}, "3"]
    (tmp_path / "turns.json").write_text(json.dumps(turns), encoding="utf-8")
    served = StdioServerParameters(
        command=sys.executable,
        args=[
            *("-I", "-c", "from agentkit.cli import main; main()", "mcp", "serve", "trace_agents:Adder"),
            *("--runtime", "scripted:turns.json", "--db", "runs.db"),
        ],
        cwd=tmp_path,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "served-adder"},
    )

    async def call() -> Any:
        async with Client(served) as client:
            return await client.call_tool("adder", {"prompt": "1 + 2?"})

    answer = asyncio.run(call())
    assert answer.structured_content == {"result": "3"}
    deadline = time.monotonic() + 10  # the server exports its last spans as it exits
    while len(receiver.spans) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    spans = {span.name: span for _, span in receiver.spans}
    agentkit_spans = sorted(span.name for _, span in receiver.spans if "/" not in span.name)
    assert agentkit_spans == ["chat turns", "chat turns", "execute_tool add", "invoke_agent Adder"]
    # The SDK traces the MCP request too: the agent's run sits under the call that asked for it.
    root = spans["invoke_agent Adder"]
    assert root.parent_span_id == spans["tools/call adder"].span_id
    run_id = (answer.meta or {})["agentkit/run_id"]
    assert {a.key: a.value.string_value for a in root.attributes}["gen_ai.conversation.id"] == run_id


def test_the_cli_traces_nothing_unless_asked(tmp_path: Path) -> None:
    ran = adder_run(tmp_path)
    assert (ran.returncode, ran.stdout) == (0, "3\n"), ran.stderr
    assert "invoke_agent" not in ran.stderr


def test_trace_flag_without_an_endpoint_prints_spans(tmp_path: Path) -> None:
    ran = adder_run(tmp_path, "--trace")
    assert (ran.returncode, ran.stdout) == (0, "3\n"), ran.stderr
    assert ran.stderr.count('"name": "chat turns"') == 2
    assert '"name": "invoke_agent Adder"' in ran.stderr


def test_runs_trace_re_emits_a_stored_run_with_its_original_times(tmp_path: Path, receiver: OtlpReceiver) -> None:
    ran = adder_run(tmp_path)  # recorded without tracing
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stderr.split("run ", 1)[1].split()[0]
    stored = Store(tmp_path / "runs.db").load(run_id)
    sent = agentkit_cli(tmp_path, "runs", "trace", run_id, "--db", "runs.db", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url)
    assert sent.returncode == 0, sent.stderr
    assert f"run {run_id}: trace " in sent.stderr
    assert sent.stderr.strip().endswith("4 spans")
    by = {span.name: span for _, span in receiver.spans}
    assert sorted(by) == ["chat turns", "execute_tool add", "invoke_agent Adder"]
    root = by["invoke_agent Adder"]
    assert root.start_time_unix_nano == int(stored.record.created * 1e9)
    assert root.end_time_unix_nano == int(stored.record.updated * 1e9)
    first = stored.steps[0]
    assert by["execute_tool add"].end_time_unix_nano == int(first.tool_times[first.results[0].call_id][1] * 1e9)
    assert by["execute_tool add"].parent_span_id == root.span_id


def test_runs_trace_of_an_unknown_run_is_one_line(tmp_path: Path) -> None:
    assert adder_run(tmp_path).returncode == 0
    sent = agentkit_cli(tmp_path, "runs", "trace", "nope", "--db", "runs.db")
    assert (sent.returncode, sent.stderr.count("\n")) == (1, 1)
    assert sent.stderr.startswith("error: no run 'nope'")


# --- the run's span ends with the run, on every path ---------------------------------------------


def test_arun_has_ended_the_runs_span_when_it_returns(spans: InMemorySpanExporter) -> None:
    agent = Agent(runtime=ScriptedRuntime(["hi"]), name="Echo")

    async def request() -> list[str]:
        with trace.get_tracer("app").start_as_current_span("request"):
            await agent.arun("hello")
            return [s.name for s in spans.get_finished_spans()]  # before the request's span ends

    assert "invoke_agent Echo" in asyncio.run(request())
    named = by_name(spans.get_finished_spans())
    [outer], [run] = named["request"], named["invoke_agent Echo"]
    assert run.end_time is not None
    assert outer.end_time is not None
    assert run.end_time <= outer.end_time


def test_a_refused_resume_starts_no_span(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    @tool(idempotent=False)
    async def charge(amount: int) -> str:
        """Charge a card."""
        raise asyncio.CancelledError  # the process "dies" while the charge runs

    store = Store(tmp_path / "runs.db")
    turns = [{"tool_calls": [{"name": "charge", "arguments": {"amount": 5}}]}, "charged"]
    agent = Agent(runtime=ScriptedRuntime(turns), tools=[charge], store=store, name="Till")
    with pytest.raises(asyncio.CancelledError):
        agent.run("charge 5")
    [run_id] = [r.id for r in store.runs()]
    spans.clear()
    with pytest.raises(StoreError, match="may have had effects"):
        agent.resume(run_id)
    assert spans.get_finished_spans() == ()  # and none left open (the fixture checks)


def test_the_runs_span_ends_even_when_the_store_fails(
    spans: InMemorySpanExporter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: RunRecorder, status: str, **kwargs: Any) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(RunRecorder, "finished", broken)
    turns = [{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 1}}]}]
    with pytest.raises(MaxStepsExceeded) as failed:  # the run's own error, not the store's second one
        calculator(ScriptedRuntime(turns), max_steps=1, store=Store(tmp_path / "runs.db")).run("loop")
    assert failed.value.__notes__ == ["and the run's end could not be stored: disk full"]
    [run] = by_name(spans.get_finished_spans())["invoke_agent Calculator"]
    assert attrs(run)["error.type"] == "MaxStepsExceeded"


def test_a_cancelled_run_marks_its_running_tools(spans: InMemorySpanExporter) -> None:
    @tool
    async def slow(n: int) -> int:
        """Take a while."""
        await asyncio.sleep(5)
        return n

    turns = [{"tool_calls": [{"name": "slow", "arguments": {"n": 1}}, {"name": "slow", "arguments": {"n": 2}}]}]
    agent = Agent(runtime=ScriptedRuntime(turns), tools=[slow], name="Slow")
    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(agent.arun("go"), 0.2))
    named = by_name(spans.get_finished_spans())
    assert [attrs(s)["error.type"] for s in named["execute_tool slow"]] == ["CancelledError"] * 2
    assert attrs(named["invoke_agent Slow"][0])["error.type"] == "CancelledError"


def test_a_resumed_run_is_a_new_trace_of_the_same_conversation(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    with pytest.raises(ServerError) as failure:
        calculator(Metered(parallel_script(), fail_at=2), store=store).run("What is 1 + 2?")
    assert failure.value.partial is not None
    run_id = failure.value.partial.run_id
    spans.clear()
    later = Metered(parallel_script()[1:])  # the answer only
    assert calculator(later, store=store).resume(run_id).output == Sum(total=3)
    [run] = by_name(spans.get_finished_spans())["invoke_agent Calculator"]
    assert attrs(run)["gen_ai.conversation.id"] == run_id
    assert attrs(run)["agentkit.resumed"] is True
    # Only what this invocation spent: the earlier attempt's tokens are on its own trace.
    assert (attrs(run)["gen_ai.usage.input_tokens"], attrs(run)["gen_ai.usage.output_tokens"]) == (100, 10)


# --- what the environment asks for ------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "wanted_", "choice"),
    [
        ({}, False, ("console", None)),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318"}, True, ("otlp", None)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://h:4318/v1/traces"}, True, ("otlp", None)),
        ({"OTEL_TRACES_EXPORTER": "otlp_proto_grpc"}, True, ("otlp", "grpc")),
        ({"OTEL_TRACES_EXPORTER": "otlp_proto_http"}, True, ("otlp", "http/protobuf")),
        ({"OTEL_TRACES_EXPORTER": "console"}, True, ("console", None)),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318"}, True, ("none", None)),
        ({"OTEL_TRACES_EXPORTER": "none"}, False, ("none", None)),
    ],
)
def test_the_environment_decides_whether_and_where(
    env: dict[str, str], wanted_: bool, choice: tuple[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    default = "otlp" if any(k.endswith("ENDPOINT") for k in env) else "console"
    assert wanted() is wanted_
    assert _choice(None, "OTEL_TRACES_EXPORTER", default) == choice


def test_exporter_none_sets_nothing_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert configure() is None


def test_a_tracing_set_up_the_environment_got_wrong_does_not_stop_the_run(tmp_path: Path) -> None:
    ran = adder_run(tmp_path, OTEL_TRACES_EXPORTER="zipkin")
    assert (ran.returncode, ran.stdout) == (0, "3\n"), ran.stderr
    assert ran.stderr.startswith("warning: tracing is off: OTEL_TRACES_EXPORTER='zipkin'")
    asked = adder_run(tmp_path, "--trace", OTEL_TRACES_EXPORTER="zipkin")  # asked for on the command line: an error
    assert asked.returncode == 1
    assert asked.stderr.startswith("error: OTEL_TRACES_EXPORTER='zipkin'")


def test_a_dead_collector_is_one_warning_line(tmp_path: Path) -> None:
    from tests.support.phoenix import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    ran = adder_run(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=dead, OTEL_EXPORTER_OTLP_TIMEOUT="1")
    assert (ran.returncode, ran.stdout) == (0, "3\n"), ran.stderr
    lines = ran.stderr.splitlines()
    assert len(lines) == 2, ran.stderr  # OpenTelemetry's retry messages stay off the terminal
    assert lines[0].startswith("run ")
    assert lines[1] == f"warning: 4 of 4 spans could not be sent to {dead}"


def test_approvals_are_traced_who_when_and_why(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    from agentkit import AwaitingApproval

    @tool(requires_approval=True)
    def wire(amount: int) -> str:
        """Wire money.

        Args:
            amount: How much.
        """
        return "wired"

    store = Store(tmp_path / "runs.db")
    turn = {"tool_calls": [{"name": "wire", "arguments": {"amount": 5}, "id": "w1"}]}
    with pytest.raises(AwaitingApproval) as paused:
        Agent(tools=[wire], runtime=ScriptedRuntime([turn]), store=store).run("pay")
    Agent(tools=[wire], runtime=ScriptedRuntime(["paid"]), store=store).resume(
        paused.value.run_id, approvals={"w1": "over the limit"}, decided_by="ops"
    )
    first, second = (s for s in spans.get_finished_spans() if s.name.startswith("invoke_agent"))
    (waiting,) = [e for e in first.events if e.name == "agentkit.approval"]
    assert dict(waiting.attributes or {}) == {
        "gen_ai.tool.call.id": "w1",
        "gen_ai.tool.name": "wire",
        "agentkit.approval.decision": "waiting",
    }
    (decided,) = [e for e in second.events if e.name == "agentkit.approval"]
    assert dict(decided.attributes or {}) == {
        "gen_ai.tool.call.id": "w1",
        "gen_ai.tool.name": "wire",
        "agentkit.approval.decision": "denied",
        "agentkit.approval.reason": "over the limit",
        "agentkit.approval.decided_by": "ops",
    }
    assert decided.timestamp >= waiting.timestamp
