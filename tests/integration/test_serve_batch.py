"""examples/batch against a real `agentkit serve vllm:default` (the session's `served` server).

This file sorts after the engine tests on purpose: the session's server starts
with the first test that needs it, and the in-process engine, llama.cpp's
server and vLLM's server at once do not fit in 24 GiB (CI saw the engine
OOM-killed when this test ran first).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from agentkit.store import Store
from tests.conftest import FIGURES, ServeCommand
from tests.support.batch_agents import agentkit

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_batch_against_a_real_agentkit_serve(served: ServeCommand, tmp_path: Path) -> None:
    """examples/batch as its docstring runs it, the model behind `agentkit serve vllm:default`."""
    served.ensure_running()
    example = ROOT / "examples" / "batch"
    out, db = tmp_path / "reports.jsonl", tmp_path / "runs.db"
    env = {**os.environ, "AGENTKIT_CACHE": str(tmp_path / "cache")}
    result = agentkit(
        "batch", "cities:CityWeather", "--input", "questions.jsonl", "--output", str(out), "--db", str(db),
        "--runtime", f"vllm-server:{served.url}", "--concurrency", "4", env=env, cwd=example, timeout=600,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr  # 1: some item failed (its row says why)
    ids = [json.loads(line)["id"] for line in (example / "questions.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ids
    assert all(r["run_id"] for r in rows)
    done = [r for r in rows if r["status"] == "done"]
    assert done, rows
    for row in done:  # a typed answer, as JSON: the Report's fields
        assert set(row["output"]) == {"city", "celsius", "sky"}
    store = Store(db)
    for row in rows:
        stored = store.load(row["run_id"])
        assert stored.record.parent is not None
        assert (stored.record.parent.kind, stored.record.parent.part) == ("batch", row["id"])
        assert stored.steps
        assert all("vllm" in (s.runtime or "") for s in stored.steps)
        used = sum(s.response.usage.prompt_tokens + s.response.usage.completion_tokens for s in stored.steps)
        assert row["tokens"] == used
    called = sum(any(s.response.message.tool_calls for s in store.load(r["run_id"]).steps) for r in rows)
    FIGURES["example batch on agentkit serve (8 items, 4 at once)"] = (
        f"{len(done)}/8 done, {called}/8 called get_weather; {result.stderr.strip().splitlines()[-1][:120]}"
    )
