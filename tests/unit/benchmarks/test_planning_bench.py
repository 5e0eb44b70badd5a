"""benchmarks/planning.py: its scripts are the tasks' call graphs, its modelled runtime runs every
task and arm through the real loop (plan mode taking fewer turns), and its engine arm's bookkeeping
holds up on a stand-in for the engine (no vLLM)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agentkit import (
    AssistantMessage,
    ModelOutputError,
    ModelRequest,
    ModelResponse,
    OutputTruncated,
    ToolCall,
    ToolResult,
)
from agentkit.planning import references
from agentkit.runtime import RuntimeInfo, Usage
from agentkit.runtimes.vllm.presets import PRESETS
from agentkit.schema import example_value

ROOT = Path(__file__).resolve().parents[3]
TINY = ["--tool-latency", "0.001", "--decode", "0.0005", "--prefill", "0", "--per-turn", "0", "--tokenizer", "chars"]
"""Delays small enough for a unit test (the loop runs for real; the model's time is what is shrunk)."""


@pytest.fixture(scope="module")
def planning() -> ModuleType:
    spec = importlib.util.spec_from_file_location("planning_bench", ROOT / "benchmarks" / "planning.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["planning_bench"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_scripts_follow_the_call_graph(planning: ModuleType) -> None:
    for task in planning.TASKS.values():
        plan, *rest = task.script("plan")
        calls = plan["tool_calls"]
        assert [c["name"] for c in calls] == [c.name for c in task.plan()]
        used = [(p, r.number) for p, c in enumerate(calls, 1) for r in references(c["arguments"])]
        assert used
        assert all(number < position for position, number in used)
        step = task.script("step")
        assert [len(t["tool_calls"]) for t in step[:-1]] == [1] * len(calls)  # one call a turn, then the answer
        assert not any(references(t["tool_calls"]) for t in step[:-1])  # values, not references
        parallel = task.script("step-parallel")
        assert [len(t["tool_calls"]) for t in parallel[:-1]] == [len(level) for level in task.levels]
        assert rest == [step[-1]] == [parallel[-1]] == [task.answer(task.expected())]
    lookups = planning.TASKS["lookups"].script("step")
    assert lookups[4]["tool_calls"][0]["arguments"] == {"a": 2_102_650, "b": 717_710, "c": 10_092_000, "d": 10_230_350}


def test_plan_mode_takes_fewer_turns_than_the_step_loop(
    planning: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "planning.json"
    assert planning.main(["--engine", "none", *TINY, "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(output.read_text(encoding="utf-8"))
    rows = {(r["task"], r["arm"]): r for r in report["modelled"]["rows"]}
    assert set(rows) == {(t, a) for t in ("lookups", "chain", "diamond") for a in ("plan", "step", "step-parallel")}
    for (task, arm), row in rows.items():
        assert row["finished"] == row["done"] == 1, (task, arm, row["errors"])
        assert f"{task:<8} {arm:<13}" in printed
        assert row["prompt_tokens"] > 0
        assert row["completion_tokens"] > 0
    for task in ("lookups", "chain", "diamond"):
        assert rows[task, "plan"]["turns"] == 2
        assert rows[task, "plan"]["turns"] < rows[task, "step"]["turns"]
    assert [rows["lookups", arm]["turns"] for arm in ("step", "step-parallel")] == [6, 3]
    assert rows["lookups", "plan"]["turns_vs_step"] == pytest.approx(2 / 6)
    assert report["modelled"]["goal"]["turns"] == "met"
    assert "goal (lookups, plan vs step): turns 0.33x" in printed
    assert "engine" not in report


def test_the_modelled_runtime_takes_the_modelled_time(planning: ModuleType) -> None:
    latency = planning.Latency(per_turn=0.05, prefill=0.0, decode=0.001, cache_block=16)
    task = planning.TASKS["chain"]
    runtime = planning.Modelled(task.script("step"), latency, planning.Tokens("chars"))
    agent = planning.Agent(runtime=runtime, tools=[planning.make_tools(0)[n] for n in task.tools])
    result = agent.run(task.prompt)
    assert result.output == task.answer(task.expected())
    for step in result.steps:
        usage = step.response.usage
        assert step.response.timings["total"] >= step.response.timings["modelled"]
        assert step.response.timings["modelled"] == pytest.approx(0.05 + 0.001 * usage.completion_tokens)
    cached = [s.response.usage.cached_tokens for s in result.steps]
    assert cached[0] == 0
    assert all(c > 0 and c % 16 == 0 for c in cached[1:])  # each prompt extends the one before


class StandIn:
    """The vLLM engine's surface the benchmark uses, answering at once: plans of two calls (the
    second referring to the first), every fifth turn garbled and every seventh cut at max_tokens;
    after results, an answer."""

    preset = PRESETS["default"]
    info = RuntimeInfo(name="stand-in", model="stand-in", dialect="gemma4")

    def __init__(self) -> None:
        self.requests = 0
        self.closed = False

    async def astart(self) -> None:
        pass

    async def aclose(self) -> None:
        self.closed = True

    def variant(self, **_: Any) -> StandIn:
        return self

    def count_tokens(self, request: ModelRequest) -> int:
        return 100

    async def generate(self, request: ModelRequest) -> ModelResponse:
        self.requests += 1
        usage = Usage(prompt_tokens=100 + self.requests, completion_tokens=11, requests=1)
        timings = {"first_token": 0.01 + 0.001 * self.requests, "decode": 0.1}
        if any(isinstance(m, ToolResult) for m in request.messages) or request.tool_choice == "none":
            return ModelResponse(message=AssistantMessage(text="done"), usage=usage, timings=timings)
        if self.requests % 5 == 0:
            raise ModelOutputError("garbled", "<|tool_call>call:", usage=usage)
        if self.requests % 7 == 0:
            raise OutputTruncated(request.sampling.max_tokens, "<|tool_call>call:")
        first = request.tools[0]
        calls = [ToolCall(name=first.name, arguments=example_value(first.parameters), id="a")]
        if request.plan:
            keys = list(first.parameters["properties"])
            calls.append(ToolCall(name=first.name, arguments={k: {"$ref": "$1"} for k in keys}, id="b"))
        return ModelResponse(message=AssistantMessage(tool_calls=tuple(calls)), usage=usage, timings=timings)


def test_the_engine_arm_counts_plans_and_parse_failures(
    planning: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = StandIn()
    monkeypatch.setattr(planning, "resolve", lambda uri: engine)
    output = tmp_path / "planning.json"
    argv = ["--tasks", "lookups", "--plans", "10", *TINY, "--output", str(output)]
    assert planning.main(argv) == 1  # garbled plan turns: the run fails
    assert engine.closed
    report = json.loads(output.read_text(encoding="utf-8"))["engine"]
    assert [r["arm"] for r in report["rows"]] == ["plan", "step", "step-parallel"]
    sampled = report["plans_sampled"]
    assert sampled["plan_turns"] >= 10
    assert sampled["parse_failures"] >= 1
    assert sampled["cut_at_max_tokens"] >= 1
    assert sampled["parsed"] + sampled["parse_failures"] + sampled["cut_at_max_tokens"] == sampled["plan_turns"]
    assert sampled["references"] == sampled["plans_with_references"] == sampled["parsed"]
    assert sampled["forward_references"] == 0
    assert report["plans_in_runs"]["plan_turns"] >= 1
    assert all(row["turns"] >= 1 for row in report["rows"])  # a run cut short still counts its turns
    assert report["calibration"]["decode_s_per_token"] == pytest.approx(0.01)
    assert report["calibration"]["prefill_s_per_token"] == pytest.approx(0.001)
    printed = capsys.readouterr().out
    assert "engine vllm:default" in printed
    assert "plans sampled (temperature 0.8)" in printed


def test_a_reference_forward_is_counted(planning: ModuleType) -> None:
    forward = ToolCall(name="population", arguments={"city": {"$ref": "$2.city"}}, id="x")
    back = ToolCall(name="population", arguments={"city": {"$ref": "$1.city"}}, id="y")
    found = planning.plan_check(
        [planning.Turn(plan=True, calls=[forward, back]), planning.Turn(plan=True), planning.Turn(plan=False)]
    )
    assert (found["plan_turns"], found["references"], found["forward_references"]) == (1, 2, 1)
    assert found["answered_in_text"] == 1
    assert found["forward_examples"] == ["call 1 uses $2.city"]
