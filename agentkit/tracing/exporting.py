"""`configure()`: the OpenTelemetry SDK set up to send agentkit's traces somewhere.

For scripts and the CLI. An application that sets up OpenTelemetry itself
does not call it: agentkit's spans go to the application's provider. The SDK
and exporters are imported here only, when `configure()` is called. The
values of the OTLP exporters' headers (`OTEL_EXPORTER_OTLP_HEADERS`, ...),
credentials as a rule, are declared secrets (`agentkit.secrets`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from agentkit.errors import TracingError
from agentkit.secrets import declare_credential

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["Delivery", "configure", "shutdown", "wanted"]

log = logging.getLogger("agentkit.tracing")

EXPORTERS = ("otlp", "console", "none")
ALIASES = {"otlp_proto_http": "http/protobuf", "otlp_proto_grpc": "grpc"}
"""`OTEL_TRACES_EXPORTER` values of OpenTelemetry's Python distro: OTLP with a protocol."""
ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
HEADERS = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS")
"""The variables whose `name=value,...` headers the OTLP exporters send (an observability vendor's key)."""

_providers: list[Any] = []
"""What `configure()` set up, for `shutdown()`."""


@dataclass
class Delivery:
    """How many spans the exporter `configure()` set up sent, and how many it could not."""

    sent: int = 0
    failed: int = 0


_delivery = Delivery()


class _Counting:
    """A span exporter that counts what its inner exporter delivered (for the CLI's last word)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        result = self.inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            _delivery.sent += len(spans)
        else:
            _delivery.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def wanted() -> bool:
    """Whether the environment asks for traces: an OTLP endpoint, or an `OTEL_TRACES_EXPORTER` but `none`."""
    chosen = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    return bool(any(os.environ.get(name) for name in ENDPOINTS) or (chosen and chosen != "none"))


def _choice(explicit: str | None, variable: str, default: str) -> tuple[str, str | None]:
    """The exporter asked for, and the OTLP protocol its name implies (if it names one)."""
    value = explicit if explicit is not None else os.environ.get(variable, "").split(",")[0].strip() or default
    value = value.lower()
    if value in ALIASES:
        return "otlp", ALIASES[value]
    if value not in EXPORTERS:
        source = "exporter" if explicit is not None else variable
        raise TracingError(f"{source}={value!r}: agentkit exports to {', '.join((*EXPORTERS, *ALIASES))}")
    return value, None


def _protocol(signal: str, implied: str | None) -> str:
    value = (
        implied
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if value not in ("http/protobuf", "grpc"):
        raise TracingError(
            f"OTLP protocol {value!r} is not supported by OpenTelemetry's Python exporters; use http/protobuf or grpc"
        )
    return value


def _grpc_missing(exc: ImportError) -> TracingError:
    return TracingError(f"OTLP over gRPC needs its exporter ({exc.name} is missing): pip install 'agentkit[grpc]'")


_EXPORTERS = {
    # signal: (console, OTLP over gRPC, OTLP over HTTP), each as module:class
    "traces": (
        "opentelemetry.sdk.trace.export:ConsoleSpanExporter",
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter:OTLPSpanExporter",
        "opentelemetry.exporter.otlp.proto.http.trace_exporter:OTLPSpanExporter",
    ),
    "metrics": (
        "opentelemetry.sdk.metrics.export:ConsoleMetricExporter",
        "opentelemetry.exporter.otlp.proto.grpc.metric_exporter:OTLPMetricExporter",
        "opentelemetry.exporter.otlp.proto.http.metric_exporter:OTLPMetricExporter",
    ),
}


def _declare_exporter_headers() -> None:
    """Declare the values of the OTLP exporters' headers secrets: they are there to authenticate."""
    from urllib.parse import unquote

    for variable in HEADERS:
        for pair in os.environ.get(variable, "").split(","):
            _, equals, value = pair.partition("=")
            if equals:
                declare_credential(value.strip())
                declare_credential(unquote(value.strip()))


def _exporter(signal: str, kind: str, protocol: str) -> Any:
    """The exporter of `signal` (`traces`, `metrics`) for `kind` (`console`, `otlp`) over `protocol`."""
    import importlib

    console, grpc, http = _EXPORTERS[signal]
    where = console if kind == "console" else grpc if protocol == "grpc" else http
    module, _, name = where.partition(":")
    try:
        exporter = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        if where == grpc:
            raise _grpc_missing(exc) from None
        raise
    return exporter(out=sys.stderr) if where == console else exporter()


def configure(
    exporter: str | None = None, *, metrics_exporter: str | None = None, service_name: str | None = None
) -> TracerProvider | None:
    """Set up OpenTelemetry's SDK as the global provider and send agentkit's traces.

    The OTLP exporters read the standard variables themselves
    (`OTEL_EXPORTER_OTLP_ENDPOINT`, `..._HEADERS`, `..._PROTOCOL`: `http/protobuf`
    or `grpc`, ...), and the resource reads `OTEL_SERVICE_NAME` and
    `OTEL_RESOURCE_ATTRIBUTES`.

    Args:
        exporter: Where spans go: `otlp` (also `otlp_proto_http` and
            `otlp_proto_grpc`), `console` (stderr) or `none` (nothing is set
            up). Default: `OTEL_TRACES_EXPORTER`, else `otlp` when an OTLP
            endpoint variable is set, else `console`.
        metrics_exporter: Where the two GenAI histograms go, the same choices.
            Default: `OTEL_METRICS_EXPORTER`, else `none`: the trace dashboards
            (Phoenix, Jaeger, Langfuse, Tempo) take no metrics.
        service_name: The `service.name` when the environment names none
            (default `agentkit`).

    Returns:
        The tracer provider set up (spans are batched: `shutdown()` flushes
        them, and runs at exit anyway), or None when the exporter is `none`
        or the application had already set a provider: it is kept, and
        agentkit's spans go to it.

    Raises:
        TracingError: an unknown exporter or an unsupported OTLP protocol.
    """
    from opentelemetry import metrics, trace

    traces_to, traces_protocol = _choice(
        exporter, "OTEL_TRACES_EXPORTER", "otlp" if any(map(os.environ.get, ENDPOINTS)) else "console"
    )
    metrics_to, metrics_protocol = _choice(metrics_exporter, "OTEL_METRICS_EXPORTER", "none")
    # A bad protocol is refused before anything is set up.
    traces_protocol = _protocol("TRACES", traces_protocol) if traces_to == "otlp" else ""
    metrics_protocol = _protocol("METRICS", metrics_protocol) if metrics_to == "otlp" else ""
    if traces_to == "none":
        log.info("OTEL_TRACES_EXPORTER=none: tracing is not set up")
        return None
    _declare_exporter_headers()
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        log.info("an OpenTelemetry tracer provider is already set; agentkit's spans go to it")
        return None

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource.create({"service.name": service_name or "agentkit"}))
    provider = TracerProvider(resource=resource)
    span_exporter = cast("SpanExporter", _Counting(_exporter("traces", traces_to, traces_protocol)))
    # The console prints each span as it ends; a network exporter sends batches off the loop's thread.
    processor = SimpleSpanProcessor(span_exporter) if traces_to == "console" else BatchSpanProcessor(span_exporter)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _providers.append(provider)
    if metrics_to != "none":
        meter_provider = _meter_provider(metrics_to, metrics_protocol, resource)
        metrics.set_meter_provider(meter_provider)  # OpenTelemetry keeps a provider the application set
        if metrics.get_meter_provider() is meter_provider:
            _providers.append(meter_provider)
        else:
            meter_provider.shutdown()
    return provider


def _meter_provider(kind: str, protocol: str, resource: Resource) -> MeterProvider:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(_exporter("metrics", kind, protocol))
    return MeterProvider(resource=resource, metric_readers=[reader])


def shutdown() -> Delivery:
    """Flush and stop what `configure()` set up; returns how many spans were sent and how many were not."""
    while _providers:
        _providers.pop().shutdown()
    return Delivery(sent=_delivery.sent, failed=_delivery.failed)
