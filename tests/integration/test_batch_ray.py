"""`agentkit batch --ray` on a real local Ray cluster, next to the same batch run locally.

The test starts a cluster on this machine (the driver, two worker processes)
through the command itself, runs 200 items on the function-played model of
`tests.support.batch_agents` with a per-turn latency, and checks the result
row by row against a local run of the same items; the workers' SQLite files,
merged with `agentkit runs merge`, hold the same conversations as the local
run's single store. (The batch against a real `agentkit serve` is in
test_serve_batch.py, beside the other tests of the session's server.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agentkit.batch.ray import shard_files
from agentkit.store import Store
from tests.support.batch_agents import agentkit

AGENT = "tests.support.batch_agents:Tally"


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
