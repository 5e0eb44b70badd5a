"""Traces and metrics of runs, by the OpenTelemetry GenAI semantic conventions.

agentkit speaks only the OpenTelemetry *API*. Until the application sets up an
SDK provider, every span is a no-op; when it has one (its own, or
`configure()`), each run shows up as:

    invoke_agent WeatherAgent          INTERNAL  gen_ai.conversation.id = the run id
    ├── chat gemma-4-e4b-it            CLIENT    tokens, finish reasons, server.address
    ├── execute_tool get_weather       INTERNAL  gen_ai.tool.name, gen_ai.tool.call.id
    ├── execute_tool get_weather       INTERNAL  (a turn's parallel calls are siblings)
    └── chat gemma-4-e4b-it            CLIENT

with `invoke_workflow NAME` above the agents of a workflow. Model calls also
feed the `gen_ai.client.token.usage` and `gen_ai.client.operation.duration`
histograms.

Message content, tool arguments and tool results are recorded only when
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` is `true` or `SPAN_ONLY`
(or `SPAN_AND_EVENT`, of which agentkit does the span half), as the
conventions' JSON message parts.

    import agentkit.tracing

    agentkit.tracing.configure()   # OTLP from OTEL_EXPORTER_OTLP_*, else the console
    WeatherAgent().run("Is it cold in Oslo?")

A stored run can be traced after the fact, with its original times:
`emit_run(store.load(run_id))`, or `agentkit runs trace RUN_ID`.
"""

from agentkit.tracing.exporting import configure, shutdown
from agentkit.tracing.spans import CAPTURE_CONTENT, capture_content, workflow_span
from agentkit.tracing.stored import emit_run

__all__ = ["CAPTURE_CONTENT", "capture_content", "configure", "emit_run", "shutdown", "workflow_span"]
