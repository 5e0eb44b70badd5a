"""`agentkit batch`: files in and out, exit codes, refusals, resuming (after SIGKILL too), workflows.

The agent is `tests.support.batch_agents.Tally` (a model that a function
plays, with a latency; a tool that appends each item to a file, so every
execution is counted across processes). The store is a real SQLite file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentkit.store import Store
from tests.support import batch_agents
from tests.support.batch_agents import counts
from tests.unit.cli.conftest import Cli

AGENT = "tests.support.batch_agents:Tally"


@pytest.fixture
def tally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "tally.txt"
    monkeypatch.setenv("AGENTKIT_TEST_TALLY", str(path))
    monkeypatch.setenv("AGENTKIT_TEST_LATENCY", "0.01")
    return path


def prompts(path: Path, n: int, *, boom: tuple[int, ...] = ()) -> Path:
    with path.open("w", encoding="utf-8") as file:
        for i in range(n):
            file.write(json.dumps({"id": f"q{i}", "prompt": f"{'boom' if i in boom else 'item'} {i}"}) + "\n")
    return path


def rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_batch_writes_a_row_per_item_in_input_order(cli: Cli, tmp_path: Path, db: Path, tally: Path) -> None:
    batch_agents.IN_FLIGHT["most"] = 0
    source, out = prompts(tmp_path / "in.jsonl", 40, boom=(3,)), tmp_path / "out.jsonl"
    result = cli("batch", AGENT, "--input", str(source), "--output", str(out), "--concurrency", "6")
    assert result.exit_code == 1, result.output  # one item failed
    written = rows(out)
    assert [r["id"] for r in written] == [f"q{i}" for i in range(40)]
    assert written[0] == {
        "id": "q0",
        "status": "done",
        "output": "done: item 0",
        "run_id": written[0]["run_id"],
        "tokens": 50,
        "seconds": written[0]["seconds"],
        "error": None,
    }
    assert written[3]["status"] == "failed"
    assert "fell over on 'boom 3'" in str(written[3]["error"])
    assert "40 of 40 items: 39 done, 1 failed" in result.output
    assert "q3: failed: RunFailed" in result.output
    assert batch_agents.IN_FLIGHT["most"] == 6  # --concurrency items at once, no more
    store = Store(db)
    assert {store.run(str(r["run_id"])).status for r in written} == {"done", "failed"}
    batch = store.batches(limit=1)[0]
    shown = cli("runs", "show", str(written[1]["run_id"]))
    assert f"item q1 of batch {batch.id}" in shown.output


def test_resume_skips_what_is_done_and_retry_failed_runs_failures_again(
    cli: Cli, tmp_path: Path, db: Path, tally: Path
) -> None:
    source, out = prompts(tmp_path / "in.jsonl", 6, boom=(2,)), tmp_path / "out.jsonl"
    args = ("batch", AGENT, "--input", str(source), "--output", str(out))
    assert cli(*args).exit_code == 1
    first = rows(out)
    again = cli(*args, "--resume")
    assert again.exit_code == 1
    assert "resuming: 6 of 6 items finished earlier (1 failed)" in again.output

    def settled(written: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in written]  # stored: start to last write

    assert settled(rows(out)) == settled(first)  # nothing ran: the same rows, the same runs
    retried = cli(*args, "--resume", "--retry-failed")
    assert "resuming: 5 of 6 items finished earlier" in retried.output
    assert rows(out)[2]["run_id"] != first[2]["run_id"]
    assert rows(out)[2]["status"] == "failed"
    assert counts(tally) == {f"item {i}": 1 for i in range(6) if i != 2}
    # New rows join a batch that is resumed with a longer input.
    prompts(source, 8, boom=(2,))
    grown = cli(*args, "--resume")
    assert [r["id"] for r in rows(out)] == [f"q{i}" for i in range(8)]
    assert "this time 2 in" in grown.output
    assert Store(db).batches(limit=1)[0].items == 8


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--resume", "--overwrite"), "pick one"),
        (("--retry-failed",), "--retry-failed goes with --resume"),
        (("--ray-workers", "3"), "are for --ray"),
        (("--resume",), "no batch in .* wrote .*out.jsonl; run without --resume"),
        (("--allow-module", "x"), "--allow-module is for workflows"),
    ],
)
def test_options_that_do_not_go_together_are_refused(
    cli: Cli, tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    source = prompts(tmp_path / "in.jsonl", 2)
    result = cli("batch", AGENT, "--input", str(source), "--output", str(tmp_path / "out.jsonl"), *extra)
    assert result.exit_code == 1
    assert __import__("re").search(message, result.output), result.output


def test_an_existing_output_is_not_overwritten_by_accident(cli: Cli, tmp_path: Path, tally: Path) -> None:
    source, out = prompts(tmp_path / "in.jsonl", 2), tmp_path / "out.jsonl"
    out.write_text("precious\n")
    result = cli("batch", AGENT, "--input", str(source), "--output", str(out))
    assert result.exit_code == 1
    assert "out.jsonl exists: --resume goes on" in result.output
    assert out.read_text() == "precious\n"
    assert cli("batch", AGENT, "--input", str(source), "--output", str(out), "--overwrite").exit_code == 0
    assert len(rows(out)) == 2


def test_bad_input_is_refused_before_anything_runs(cli: Cli, tmp_path: Path, tally: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "fine"}\n{"text": "no prompt"}\n')
    result = cli("batch", AGENT, "--input", str(source), "--output", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 1
    assert "in.jsonl:2: no 'prompt' text" in result.output
    assert not tally.exists()
    assert not (tmp_path / "out.jsonl").exists()


def test_ray_without_ray_says_how_to_install_it(
    cli: Cli, tmp_path: Path, tally: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    source = prompts(tmp_path / "in.jsonl", 2)
    result = cli("batch", AGENT, "--input", str(source), "--output", str(tmp_path / "out.jsonl"), "--ray")
    assert result.exit_code == 1
    assert "--ray needs Ray (Ray Data): pip install 'agentkit[ray]'" in result.output


def test_a_batch_killed_with_sigkill_resumes_and_runs_no_tool_twice(tmp_path: Path) -> None:
    source, out, db, tally = (
        prompts(tmp_path / "in.jsonl", 200),
        tmp_path / "out.jsonl",
        tmp_path / "runs.db",
        tmp_path / "t",
    )
    env = {
        **os.environ,
        "AGENTKIT_TEST_TALLY": str(tally),
        "AGENTKIT_TEST_LATENCY": "0.05",
        "AGENTKIT_CACHE": str(tmp_path),
    }
    command = [sys.executable, "-m", "agentkit.cli", "batch", AGENT, "--input", str(source), "--output", str(out),
               "--db", str(db), "--concurrency", "8"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 40):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    before = len([line for line in out.read_text().splitlines() if line.strip()])
    assert 40 <= before < 200, "killed mid-way"
    assert Store(db).batches(limit=1)[0].status == "running"  # it never knew it ended

    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode in (0, 1), resumed.stderr
    assert f"resuming: {before} of 200 items finished earlier" in resumed.stderr
    assert "items went on from interrupted runs" in resumed.stderr  # the kill left runs in flight
    written = rows(out)
    assert [r["id"] for r in written] == [f"q{i}" for i in range(200)]
    # The kill can land while an item's tool (not idempotent) runs: that item is not run
    # again, and its row says why (--rerun-started would run it again).
    held = {r["id"] for r in written if r["status"] != "done"}
    for row in written:
        if row["id"] in held:
            assert "stopped while non-idempotent tool calls were running" in str(row["error"])
    assert len(held) <= 8  # at most the items in flight
    # No item's tool ran twice: not the finished ones, not the interrupted ones. A held
    # item's tool ran once, or not at all when the kill landed between the store's
    # record of its start and the tool's first line.
    ran = counts(tally)
    assert {item: n for item, n in ran.items() if n != 1} == {}
    assert {f"item {i}" for i in range(200)} - set(ran) <= {f"item {q.removeprefix('q')}" for q in held}
    runs = Store(db).db.execute("SELECT COUNT(*), COUNT(DISTINCT parent_part) FROM runs").fetchone()
    assert runs == (200, 200)  # an interrupted run went on under its own id


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_cleanly_and_says_how_to_go_on(tmp_path: Path, stop: signal.Signals) -> None:
    source, out, db = prompts(tmp_path / "in.jsonl", 100), tmp_path / "out.jsonl", tmp_path / "runs.db"
    env = {**os.environ, "AGENTKIT_TEST_LATENCY": "0.05", "AGENTKIT_CACHE": str(tmp_path)}
    command = [sys.executable, "-m", "agentkit.cli", "batch", AGENT, "--input", str(source), "--output", str(out),
               "--db", str(db), "--concurrency", "4"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 10):
        time.sleep(0.02)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted: " in stderr
    assert f"--db {db} --resume" in stderr  # the command that goes on
    written = rows(out)
    assert 10 <= len(written) < 100
    assert [r["id"] for r in written] == sorted((r["id"] for r in written), key=lambda i: int(str(i)[1:]))
    store = Store(db)
    assert store.batches(limit=1)[0].status == "stopped"
    statuses = {r.status for r in store.batch_items(store.batches(limit=1)[0].id).values()}
    assert "cancelled" in statuses  # the runs in flight, recorded as such
    assert "running" not in statuses
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode in (0, 1), resumed.stderr  # 1: a tool was cut off mid-call (not run again)
    assert len(rows(out)) == 100


def test_a_resumed_batch_keeps_its_options(cli: Cli, tmp_path: Path, db: Path, tally: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"doc": f"d{i}", "text": f"item {i}"}) + "\n" for i in range(4)))
    args = ("batch", AGENT, "--input", str(source), "--output", str(out))
    assert cli(*args, "--id-key", "doc", "--prompt-key", "text", "--concurrency", "2").exit_code == 0
    source.write_text(source.read_text() + json.dumps({"doc": "d4", "text": "item 4"}) + "\n")
    again = cli(*args, "--resume")  # no --id-key, --prompt-key: the batch's own
    assert again.exit_code == 0, again.output
    assert [r["id"] for r in rows(out)] == ["d0", "d1", "d2", "d3", "d4"]
    assert counts(tally) == {f"item {i}": 1 for i in range(5)}
    assert Store(db).batches(limit=1)[0].options["concurrency"] == 2
    # Ids made another way match none of the batch's items: refused, nothing runs.
    refused = cli(*args, "--resume", "--id-key", "text")
    assert refused.exit_code == 1
    assert "none of the 5 items" in refused.output
    assert counts(tally) == {f"item {i}": 1 for i in range(5)}


def test_an_unfinished_batch_is_not_started_over_by_accident(cli: Cli, tmp_path: Path, db: Path) -> None:
    source, out = prompts(tmp_path / "in.jsonl", 2), tmp_path / "out.parquet"
    Store(db).begin_batch(target=AGENT, items=2, input=source, output=out)  # as a killed batch leaves it
    result = cli("batch", AGENT, "--input", str(source), "--output", str(out))
    assert result.exit_code == 1
    assert "did not finish (running): --resume goes on with it" in result.output


def test_a_second_batch_on_the_same_output_is_refused_while_one_runs(cli: Cli, tmp_path: Path) -> None:
    import fcntl

    source, out = prompts(tmp_path / "in.jsonl", 2), tmp_path / "out.jsonl"
    with (tmp_path / ".out.jsonl.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a running batch holds
        held.write("4242")
        held.flush()
        result = cli("batch", AGENT, "--input", str(source), "--output", str(out))
    assert result.exit_code == 1
    assert f"another agentkit batch (pid 4242) is writing {out}" in result.output
    assert not out.exists()


@pytest.mark.parametrize("ray", [False, True], ids=["local", "ray"])
def test_items_waiting_for_approval_go_on_once_decided(
    cli: Cli, tmp_path: Path, db: Path, tally: Path, ray: bool
) -> None:
    source, out = prompts(tmp_path / "in.jsonl", 3), tmp_path / "out.jsonl"
    args = ("batch", "tests.support.batch_agents:Careful", "--input", str(source), "--output", str(out))
    first = cli(*args, "--max-failures", "1")
    assert first.exit_code == 1  # not done: waiting
    assert [r["status"] for r in rows(out)] == ["awaiting_approval"] * 3  # not failures: no --max-failures stop
    waiting = str(rows(out)[1]["run_id"])
    assert cli("runs", "approve", waiting).exit_code == 0
    # With --ray the decided run goes on in this process, from the store (a worker's new
    # SQLite file has none of it); nothing is left for the workers, so no cluster starts.
    again = cli(*args, "--resume", *(["--ray"] if ray else []))
    written = rows(out)
    assert [r["status"] for r in written] == ["awaiting_approval", "done", "awaiting_approval"], again.output
    assert written[1]["run_id"] == waiting
    assert written[1]["output"] == "done: item 1"
    assert counts(tally) == {"item 1": 1}


WORKFLOW = """
name: shout
inputs:
  word: {type: string}
  times: {type: integer, default: 1}
steps:
  - id: loud
    tool: MODULE:shout
    arguments: {word: "{{ inputs.word }}", times: "{{ inputs.times }}"}
"""

TOOLS = '''
from agentkit import tool


@tool
def shout(word: str, times: int) -> str:
    """Shout a word.

    Args:
        word: The word.
        times: How many times.
    """
    if word == "fail":
        raise RuntimeError("no shouting that")
    return " ".join([word.upper()] * times)
'''


def test_a_workflow_runs_on_each_row_of_inputs(cli: Cli, tmp_path: Path, db: Path) -> None:
    module = f"batch_tools_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text(TOOLS)
    flow = tmp_path / "shout.yaml"
    flow.write_text(WORKFLOW.replace("MODULE", module))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"id": "a", "word": "hi", "times": 2}\n{"id": "b", "word": "fail"}\n{"id": "c", "word": "yo"}\n')
    result = cli("batch", str(flow), "--input", str(source), "--output", str(out))
    assert result.exit_code == 1, result.output
    written = {r["id"]: r for r in rows(out)}
    assert written["a"]["output"] == "HI HI"
    assert written["c"]["output"] == "YO"
    assert written["b"]["status"] == "failed"
    assert "no shouting that" in str(written["b"]["error"])
    store = Store(db)
    flows = store.db.execute("SELECT id, parent_kind, parent_part FROM workflow_runs ORDER BY parent_part").fetchall()
    assert [(kind, part) for _, kind, part in flows] == [("batch", "a"), ("batch", "b"), ("batch", "c")]
    assert written["a"]["run_id"] == flows[0][0]
    # A row the workflow's inputs refuse stops the batch before anything runs.
    source.write_text('{"id": "d", "word": 3}\n')
    bad = cli("batch", str(flow), "--input", str(source), "--output", str(tmp_path / "other.jsonl"))
    assert bad.exit_code == 1
    assert "item 1 (id d)" in bad.output
    sys.modules.pop(module, None)
