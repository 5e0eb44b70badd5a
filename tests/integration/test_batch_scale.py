"""`agentkit batch` beyond one event loop: on a real local Ray cluster, and against a real `agentkit serve`.

The Ray test starts a cluster on this machine (the driver, two worker
processes) through the command itself, runs 200 items on the function-played
model of `tests.support.batch_agents` with a per-turn latency, and checks the
result row by row against a local run of the same items; the workers' SQLite
files, merged with `agentkit runs merge`, hold the same conversations as the
local run's single store. The served test runs examples/batch against the
session's vLLM server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from agentkit.batch.ray import shard_files
from agentkit.store import Store
from tests.conftest import FIGURES, ServeCommand

AGENT = "tests.support.batch_agents:Tally"
ROOT = Path(__file__).resolve().parents[2]


def agentkit(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentkit.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def conversation(store: Store, run_id: str) -> list[Any]:
    """A run's messages without their ids (call ids are made per run)."""
    said = []
    for message in store.load(run_id).messages:
        body = {k: v for k, v in vars(message).items() if k not in ("tool_calls", "call_id", "id")}
        calls = [(c.name, c.arguments) for c in getattr(message, "tool_calls", ())]
        said.append((body, calls))
    return said


def test_a_batch_on_a_local_ray_cluster_matches_a_local_run_row_by_row(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"item {i}"}) + "\n" for i in range(200)))
    base = {**os.environ, "AGENTKIT_TEST_LATENCY": "0.05", "AGENTKIT_CACHE": str(tmp_path / "cache")}
    common = ("batch", AGENT, "--input", str(source), "--concurrency", "8")

    local_env = {**base, "AGENTKIT_TEST_TALLY": str(tmp_path / "local.tally")}
    local = agentkit(
        *common, "--output", str(tmp_path / "local.jsonl"), "--db", str(tmp_path / "local.db"), env=local_env
    )
    assert local.returncode == 0, local.stderr

    ray_env = {**base, "AGENTKIT_TEST_TALLY": str(tmp_path / "ray.tally")}
    shards = tmp_path / "shards"
    on_ray = agentkit(
        *common, "--output", str(tmp_path / "ray.jsonl"), "--db", str(tmp_path / "ray.db"),
        "--ray", "--ray-workers", "2", "--shards", str(shards), env=ray_env,
    )  # fmt: skip
    assert on_ray.returncode == 0, on_ray.stderr
    assert "200 of 200 items: 200 done, 0 failed" in on_ray.stderr

    def rows(name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]

    def same(row: dict[str, Any]) -> dict[str, Any]:
        return {k: row[k] for k in ("id", "status", "output", "tokens", "error")}

    assert [same(r) for r in rows("ray.jsonl")] == [same(r) for r in rows("local.jsonl")]
    assert [r["id"] for r in rows("ray.jsonl")] == [f"q{i}" for i in range(200)]
    tallies = [(tmp_path / name).read_text().splitlines() for name in ("local.tally", "ray.tally")]
    assert sorted(tallies[0]) == sorted(tallies[1]) == sorted(f"item {i}" for i in range(200))  # each tool once

    # Two worker processes, each with its own SQLite file, both given work.
    batch_id = Store(tmp_path / "ray.db").batches(limit=1)[0].id
    files = shard_files(shards, batch_id)
    assert len(files) == 2
    per_shard = [Store(f).db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] for f in files]
    assert sum(per_shard) == 200
    assert min(per_shard) > 0

    # The shards merged by hand hold what the local run's single store holds, item by item.
    merged_db = tmp_path / "merged.db"
    merged = agentkit("runs", "merge", str(merged_db), *map(str, files), env=base)
    assert merged.returncode == 0, merged.stderr
    assert "total: 200 runs added" in merged.stdout
    single, merged_store = Store(tmp_path / "local.db"), Store(merged_db)
    local_ids = {r["id"]: r["run_id"] for r in rows("local.jsonl")}
    ray_ids = {r["id"]: r["run_id"] for r in rows("ray.jsonl")}
    for item in local_ids:
        assert conversation(merged_store, ray_ids[item]) == conversation(single, local_ids[item]), item
    # The driver merged them into its own store as the batch ended: the same 200 runs.
    driver = Store(tmp_path / "ray.db")
    assert {r.run_id for r in driver.batch_items(batch_id).values()} == set(ray_ids.values())


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
