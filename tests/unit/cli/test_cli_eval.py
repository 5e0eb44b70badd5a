"""`agentkit eval bfcl` and `agentkit eval replay` as a user runs them (no model: a function plays it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentkit import Agent, AssistantMessage, ToolCall
from agentkit.cli import app, evals
from agentkit.eval.bfcl import data_dir
from agentkit.runtimes import ScriptedRuntime
from agentkit.runtimes.function import FunctionRuntime
from agentkit.store import Store
from tests.support.tools import add

from .conftest import Cli, Script


@pytest.fixture
def bfcl(tmp_path: Path) -> Cli:
    """`agentkit eval bfcl ARGS` (which keeps no runs: no --db)."""
    runner = CliRunner(env={"COLUMNS": "200", "AGENTKIT_CACHE": str(tmp_path / "cache")})
    return lambda *args: runner.invoke(app, ["eval", "bfcl", *args], catch_exceptions=False)


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> FunctionRuntime:
    """The runtime `--runtime fn:` resolves to: it answers every entry by calling the first tool offered."""
    runtime = FunctionRuntime(
        lambda request, _: AssistantMessage(tool_calls=[ToolCall(name=request.tools[0].name, arguments={})])
    )
    monkeypatch.setattr(evals, "resolve", lambda uri: runtime)
    return runtime


def test_eval_bfcl_writes_its_three_files(bfcl: Cli, model: FunctionRuntime, tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = ["--runtime", "fn:", "--categories", "simple,irrelevance", "--limit", "3", "--arms", "free"]
    result = bfcl(*args, "--data", str(data_dir()), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert len(model.requests) == 6
    data = json.loads((out / "results.json").read_text())
    assert [(s["category"], s["entries"], s["correct"]) for s in data["summaries"]] == [
        ("simple_python", 3, 0),  # a call without its required arguments
        ("irrelevance", 3, 0),  # a call where none was due
    ]
    assert "| simple_python | free | 3 |" in result.output  # the table, printed
    assert f"chart: {out / 'results.png'}" in result.output
    assert (out / "results.md").read_text().startswith("# BFCL results")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--categories", "simpel"], "error: unknown category simpel; choose among simple_python"),
        (["--arms", "greedy"], "error: unknown arm greedy; choose among constrained, free"),
        (["--arms", "constrained"], "only decodes free; run it with --arms free"),
    ],
)
def test_eval_bfcl_says_what_is_wrong(bfcl: Cli, model: FunctionRuntime, args: list[str], message: str) -> None:
    result = bfcl("--runtime", "fn:", "--limit", "1", "--data", str(data_dir()), *args)
    assert result.exit_code == 1
    assert message in result.output
    assert model.requests == []


def test_eval_bfcl_names_data_it_cannot_read(bfcl: Cli, model: FunctionRuntime, tmp_path: Path) -> None:
    result = bfcl("--runtime", "fn:", "--data", str(tmp_path))
    assert result.exit_code == 1
    assert f"error: {tmp_path} holds no bfcl_eval/data/" in result.output


@pytest.fixture
def stored(db: Path) -> list[str]:
    store = Store(db)
    call = AssistantMessage(tool_calls=[ToolCall(name="add", arguments={"a": 2, "b": 3})])
    try:
        return [
            Agent(tools=[add], runtime=ScriptedRuntime([call, "5"]), store=store).run("What is 2 + 3?").run_id
            for _ in range(2)
        ]
    finally:
        store.close()


def test_eval_replay_passes_the_gate_on_the_same_decisions(
    cli: Cli, script: Script, stored: list[str], tmp_path: Path
) -> None:
    same = script([{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "5"] * 2)
    report = tmp_path / "replay.json"
    result = cli("eval", "replay", "--runtime", same, "--min-same", "1", "--min-valid", "1", "--json", str(report))
    assert result.exit_code == 0, result.output
    assert "same decisions: 100% (4/4 steps) · valid calls: 100% (2/2) · failed steps: 0" in result.output
    data: dict[str, Any] = json.loads(report.read_text())
    assert sorted(r["run_id"] for r in data["runs"]) == sorted(stored)
    assert data["same_decision_rate"] == 1.0


def test_eval_replay_exits_4_when_a_threshold_is_missed(cli: Cli, script: Script, stored: list[str]) -> None:
    other = script([{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 4}}]}, "6"] * 2)
    result = cli("eval", "replay", "--runtime", other, "--runs", stored[0], "--min-same", "0.9")
    assert result.exit_code == evals.GATE_MISSED == 4
    assert "gate missed: same-decision rate 0.0% is below 90.0%" in result.output
    assert "first divergence" in result.output
    assert "step 0" in result.output


def test_eval_replay_refuses_a_query_that_selects_nothing(cli: Cli, script: Script, stored: list[str]) -> None:
    result = cli("eval", "replay", "--runtime", script(["x"]), "--runs", "status=failed")
    assert result.exit_code == 1
    assert "error: no stored run with steps matches status=failed" in result.output
    result = cli("eval", "replay", "--runtime", script(["x"]), "--runs", "colour=red")
    assert "error: unknown field 'colour'" in result.output


def test_eval_bfcl_runs_the_entries_named(bfcl: Cli, model: FunctionRuntime, tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = bfcl(
        "--runtime",
        "fn:",
        "--ids",
        "parallel_29,live_simple_0-0-0",
        "--arms",
        "free",
        "--data",
        str(data_dir()),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert len(model.requests) == 2  # found in a non-live and a live category, with no --categories
    assert "2 entries" in (out / "results.md").read_text()
    result = bfcl("--runtime", "fn:", "--ids", "parallel_2900", "--data", str(data_dir()))
    assert "error: unknown entry parallel_2900; choose among BFCL's ids, e.g. simple_python_0" in result.output
