"""A workflow example on the real vLLM engine with the embedded model (what `vllm:default` runs)."""

from __future__ import annotations

from pathlib import Path

from agentkit.runtimes.vllm import VLLMEngine
from agentkit.store import Store
from agentkit.workflow import StepEvent, Workflow
from tests.conftest import FIGURES

EXAMPLES = Path(__file__).parents[2] / "examples" / "workflows"


def test_the_forecast_example_runs_on_the_embedded_model(engine: VLLMEngine, tmp_path: Path) -> None:
    flow = Workflow.load(EXAMPLES / "forecast.yaml")
    assert flow.spec.runtime == "vllm:default"  # the engine fixture is that runtime, started once per session
    store = Store(tmp_path / "runs.db")
    events: list[StepEvent] = []
    result = flow.run({"cities": ["Oslo", "Lima"]}, runtime=engine, store=store, on_event=events.append)
    assert result.output["warmest"] == "Lima"
    forecasts = result.output["forecasts"]
    assert len(forecasts) == 2
    assert all(isinstance(f, str) and f.strip() for f in forecasts)
    runs = store.runs(workflow_run=result.workflow_run)
    assert sorted(r.workflow_step or "" for r in runs) == ["forecasts[0].forecast", "forecasts[1].forecast"]
    calls = 0
    for run in runs:
        assert run.status == "done"
        for step in store.load(run.id).steps:
            assert step.runtime is not None
            assert step.model is not None
            for call in step.response.message.tool_calls:  # constrained decoding: every call is a real, valid one
                assert call.name == "get_weather"
                assert isinstance(call.arguments.get("city"), str)
                calls += 1
    assert calls >= 1, "the agents answered without calling get_weather"
    record = store.workflow_run(result.workflow_run)
    assert record.status == "done"
    assert {s.step for s in record.steps} >= {"forecasts", "warmest"}
    FIGURES["forecast workflow on vllm:default"] = f"2 agent runs, {calls} tool calls, output {forecasts}"
