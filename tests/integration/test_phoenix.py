"""End to end: an agent run through the CLI, traced into a real Arize Phoenix, read back from Phoenix's API.

The agent runs on the real vLLM server (`agentkit serve vllm:default`, the
session's `served` fixture) and exports over OTLP/HTTP because
`OTEL_EXPORTER_OTLP_ENDPOINT` is set, as a user would do. What Phoenix stored
is checked against the run the same command stored in SQLite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkit.store import Store
from tests.support.phoenix import Phoenix

from ..conftest import FIGURES, ServeCommand

REPO = Path(__file__).resolve().parents[2]
PROJECT = "agentkit-e2e"


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    dashboard = Phoenix(tmp_path_factory.mktemp("phoenix"))
    seconds = dashboard.start()
    FIGURES["phoenix ready"] = f"{seconds:.1f} s"
    yield dashboard
    dashboard.stop()


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    agentkit = str(Path(sys.executable).with_name("agentkit"))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [agentkit, *args], cwd=REPO, capture_output=True, text=True, timeout=600, env={**clean, **env}
    )


def test_a_cli_run_shows_up_in_phoenix_as_stored(phoenix: Phoenix, served: ServeCommand, tmp_path: Path) -> None:
    served.ensure_running()
    db = tmp_path / "runs.db"
    ran = run_cli(
        "run",
        "tests.support.weather:WeatherAgent",
        "What is the weather in Oslo?",
        "--runtime",
        f"vllm-server:{served.url}",
        "--db",
        str(db),
        OTEL_EXPORTER_OTLP_ENDPOINT=phoenix.url,
        OTEL_RESOURCE_ATTRIBUTES=f"openinference.project.name={PROJECT}",
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true",
    )
    # The tiny model may ramble past max_steps; the trace must be right either way.
    assert ran.returncode in (0, 1), ran.stderr
    run_id = ran.stderr.strip().splitlines()[-1].split()[1]
    stored = Store(db).load(run_id)
    assert stored.record.status in ("done", "budget_exhausted"), stored.record.error
    calls = sum(len(step.results) for step in stored.steps)
    assert calls >= 1  # constrained decoding: the first step calls get_weather

    expected = 1 + len(stored.steps) + calls
    spans = [s for s in phoenix.wait_for(PROJECT, expected) if s["context"]["trace_id"]]
    [root] = [s for s in spans if s["parent_id"] is None]
    trace = [s for s in spans if s["context"]["trace_id"] == root["context"]["trace_id"]]
    assert len(trace) == expected, json.dumps(spans, indent=1)[:3000]

    # Names and nesting.
    assert root["name"] == "invoke_agent WeatherAgent"
    assert root["attributes"]["gen_ai.conversation.id"] == run_id
    children = [s for s in trace if s is not root]
    assert all(s["parent_id"] == root["context"]["span_id"] for s in children)
    chats = sorted(
        (s for s in children if s["name"].startswith("chat ")), key=lambda s: s["attributes"]["agentkit.step"]
    )
    tools = [s for s in children if s["name"].startswith("execute_tool ")]
    assert {s["name"] for s in chats} == {"chat agentkit-embedded"}
    assert {s["name"] for s in tools} == {"execute_tool get_weather"}
    assert (len(chats), len(tools)) == (len(stored.steps), calls)
    # Phoenix's own reading of the GenAI conventions: an agent, model calls, tools.
    assert (root["span_kind"], {s["span_kind"] for s in chats}, {s["span_kind"] for s in tools}) == (
        "AGENT",
        {"LLM"},
        {"TOOL"},
    )

    # Token counts: each model call's, as the server reported them and the store kept them.
    for chat, step in zip(chats, stored.steps, strict=True):
        attributes = chat["attributes"]
        usage = step.response.usage
        assert attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens > 0
        assert attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens > 0
        assert attributes["llm.token_count.prompt"] == usage.prompt_tokens  # Phoenix's mapping
        assert attributes["gen_ai.provider.name"] == "vllm"
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == served.port
    assert root["attributes"]["gen_ai.usage.input_tokens"] == stored.usage.prompt_tokens
    assert root["attributes"]["gen_ai.usage.output_tokens"] == stored.usage.completion_tokens
    # The tool calls are the stored ones, with their arguments (content was opted in).
    stored_calls = {r.call_id for step in stored.steps for r in step.results}
    assert {s["attributes"]["gen_ai.tool.call.id"] for s in tools} == stored_calls
    first_call = stored.steps[0].response.message.tool_calls[0]
    [traced] = [s for s in tools if s["attributes"]["gen_ai.tool.call.id"] == first_call.id]
    assert json.loads(traced["attributes"]["gen_ai.tool.call.arguments"]) == first_call.arguments
    FIGURES["phoenix trace"] = (
        f"{len(trace)} spans ({len(chats)} chat, {len(tools)} execute_tool), "
        f"{stored.usage.prompt_tokens}+{stored.usage.completion_tokens} tokens, trace {root['context']['trace_id']}"
    )


def test_a_stored_run_re_emitted_over_grpc_shows_up_in_phoenix_with_its_times(
    phoenix: Phoenix, tmp_path: Path, served: ServeCommand
) -> None:
    served.ensure_running()
    db = tmp_path / "runs.db"
    ran = run_cli(
        "run", "tests.support.weather:WeatherAgent", "Weather in Lima?", "--runtime", f"vllm-server:{served.url}",
        "--db", str(db),
    )  # fmt: skip
    assert ran.returncode in (0, 1), ran.stderr
    run_id = ran.stderr.strip().splitlines()[-1].split()[1]
    stored = Store(db).load(run_id)
    project = "agentkit-re-emitted"
    # Over gRPC this time, to Phoenix's gRPC receiver.
    sent = run_cli(
        "runs", "trace", run_id, "--db", str(db),
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{phoenix.grpc_port}", OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_RESOURCE_ATTRIBUTES=f"openinference.project.name={project}",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    expected = 1 + len(stored.steps) + sum(len(s.results) for s in stored.steps)
    spans = phoenix.wait_for(project, expected)
    assert len(spans) == expected
    [root] = [s for s in spans if s["parent_id"] is None]
    assert root["attributes"]["gen_ai.conversation.id"] == run_id
    assert abs(iso_seconds(root["start_time"]) - stored.record.created) < 1e-3
    assert abs(iso_seconds(root["end_time"]) - stored.record.updated) < 1e-3


def iso_seconds(value: Any) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()
