"""What tracing costs a step: the loop with no provider, and with `configure()` exporting over OTLP.

The same run in each arm, on `ScriptedRuntime` (an instant model), so what is
measured is the loop and its spans: 20 model steps per run, 19 tool calls.

- `off`: nothing configured; agentkit's spans are OpenTelemetry's no-ops.
- `sdk`: an SDK tracer provider with no exporter: every span is recorded and
  dropped (what creating spans costs, without the export).
- `otlp`: `agentkit.tracing.configure()` with `OTEL_EXPORTER_OTLP_ENDPOINT` set to a
  receiver on loopback (in this script's process): real spans, batched and
  sent over OTLP/HTTP by the SDK's export thread.
- `otlp+content`: the same, with message content opted in
  (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`): every chat span
  carries the whole conversation as JSON.

A provider can be set once per process, so each arm runs in a fresh process;
the arms alternate, several rounds, and each figure is the median. The goal is
a ratio, measured here side by side, on what agentkit controls: with the SDK
recording its spans (`sdk`), a step costs at most 1.5x what it costs with
tracing off. The export itself (protobuf encoding and HTTP in the SDK's
batch thread, which shares the GIL with the loop) comes on top and is
reported, as is the added time per step, to set against a model call
(hundreds of milliseconds on the embedded model).

    python benchmarks/tracing_overhead.py          # or: make bench

Results go to stdout and to benchmarks/results/tracing_overhead.json.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

STEPS = 20
RUNS = 100
"""Runs a process times (2,000 steps), after warming up."""
ROUNDS = 5
ARMS = ("off", "sdk", "otlp", "otlp+content")
GOAL_RATIO = 1.5
RESULTS = Path(__file__).parent / "results" / "tracing_overhead.json"


def measure(arm: str) -> float:
    """Per-step microseconds in this process (the child's side)."""
    if arm == "sdk":  # a provider with no exporter: spans are recorded, then dropped
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())
    elif arm != "off":
        import agentkit.tracing

        agentkit.tracing.configure()
    from agentkit import Agent, tool
    from agentkit.runtimes import ScriptedRuntime

    @tool
    def noop(n: int) -> int:
        """Return `n` unchanged."""
        return n

    turns = [{"tool_calls": [{"name": "noop", "arguments": {"n": i}}]} for i in range(STEPS - 1)] + ["done"]
    runtime = ScriptedRuntime(turns)
    agent = Agent(runtime=runtime, tools=[noop], max_steps=STEPS, instructions="Call noop until told otherwise.")

    def one() -> None:
        runtime.reset()
        agent.run("Go.")

    for _ in range(10):
        one()
    started = time.perf_counter()
    for _ in range(RUNS):
        one()
    seconds = time.perf_counter() - started
    if arm in ("otlp", "otlp+content"):
        import agentkit.tracing

        agentkit.tracing.shutdown()  # the export finishes before the process exits (not timed)
    return seconds / (RUNS * STEPS) * 1e6


class Sink(http.server.BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports and counts them."""

    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        Sink.received += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(measure(args.arm))
        return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    env = {
        "off": base,
        "sdk": base,
        "otlp": {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        "otlp+content": {
            **base,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
        },
    }
    figures: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for n in range(ROUNDS):
        for arm in ARMS:
            child = subprocess.run(
                [sys.executable, __file__, "--arm", arm], env=env[arm], capture_output=True, text=True, check=True
            )
            figures[arm].append(float(child.stdout.strip()))
        print(f"round {n + 1}: " + ", ".join(f"{arm} {figures[arm][-1]:.0f} µs" for arm in ARMS), flush=True)
    server.shutdown()

    median = {arm: statistics.median(values) for arm, values in figures.items()}
    ratio = median["sdk"] / median["off"]
    print(f"\nper step, median of {ROUNDS} processes x {RUNS} runs x {STEPS} steps (ScriptedRuntime):")
    for arm in ARMS:
        print(f"  {arm:13} {median[arm]:7.0f} µs   ({median[arm] / median['off']:.2f}x off)")
    print(f"added per step: sdk {median['sdk'] - median['off']:.0f} µs, otlp {median['otlp'] - median['off']:.0f} µs")
    print(f"OTLP exports received: {Sink.received}")
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    print(f"goal: sdk at most {GOAL_RATIO}x off per step: {verdict} ({ratio:.2f}x)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "steps_per_run": STEPS,
                "runs_per_process": RUNS,
                "per_step_us": figures,
                "median_us": median,
                "ratio_sdk_to_off": ratio,
                "ratio_otlp_to_off": median["otlp"] / median["off"],
                "exports_received": Sink.received,
                "goal_ratio": GOAL_RATIO,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
