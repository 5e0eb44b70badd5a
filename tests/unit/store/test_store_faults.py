"""The store under faults and load: runs killed with SIGKILL, many writers, racing migrations.

Every agent here runs in a real process on a real SQLite file: `WORKER` (written
to the test's tmp_path) is the program, and the tests kill it, resume its runs
and read the database back with `sqlite3`. Tools count their executions by
appending a line to a file, so "ran once" is a fact read from disk.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import IO, Annotated, Any

import pydantic
import pytest

from agentkit import Message
from agentkit.store import Store

WORKER = r'''
"""One agent process for test_store_faults.py: `worker.py MODE ...` (see main)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import pydantic

from agentkit import Agent, Message, ModelRequest, ModelResponse, tool
from agentkit.errors import StoreError
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store

MESSAGES = pydantic.TypeAdapter(list[Annotated[Message, pydantic.Field(discriminator="role")]])
INSTRUCTIONS = "Call the tools you are given, then say so."
PROMPT = "Run the script."
HOLD_SECONDS = 600.0  # "forever": the test kills the process long before

# Step 0 runs `fast` and `slow` in parallel; every call has a fixed id so that
# a resumed run and an uninterrupted one produce equal messages.
TURNS: list[Any] = [
    {
        "tool_calls": [
            {"name": "fast", "arguments": {"tag": "a"}, "id": "call-fast-a"},
            {"name": "slow", "arguments": {"tag": "a"}, "id": "call-slow-a"},
        ]
    },
    {"tool_calls": [{"name": "fast", "arguments": {"tag": "b"}, "id": "call-fast-b"}]},
    {"tool_calls": [{"name": "slow", "arguments": {"tag": "b"}, "id": "call-slow-b"}]},
    "All four calls came back.",
]


def wait_for(path: Path, seconds: float = 60.0, *, abort: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if abort is not None and abort.exists():
            sys.exit(f"stopped waiting for {path}: another process failed")
        if time.monotonic() > deadline:
            sys.exit(f"{path} did not appear within {seconds} s")
        time.sleep(0.001)


def make_tools(counts: Path, *, hold_slow: bool, slow_idempotent: bool) -> list[Any]:
    def count(name: str, tag: str) -> None:
        with (counts / f"{name}.log").open("a") as file:
            file.write(tag + "\n")

    @tool
    def fast(tag: str) -> str:
        """Return at once.

        Args:
            tag: Which call this is.
        """
        count("fast", tag)
        return f"fast {tag}"

    @tool(idempotent=slow_idempotent)
    def slow(tag: str) -> str:
        """Return, or with --hold tool, never return.

        Args:
            tag: Which call this is.
        """
        count("slow", tag)
        if hold_slow:
            (counts / "slow_started").touch()
            time.sleep(HOLD_SECONDS)
        return f"slow {tag}"

    return [fast, slow]


class HeldScripted(ScriptedRuntime):
    """A script whose model hangs (as if generating) when asked for turn `hold_at`."""

    def __init__(self, turns: list[Any], *, hold_at: int, marker: Path) -> None:
        super().__init__(turns)
        self.hold_at, self.marker, self.asked = hold_at, marker, 0

    async def generate(self, request: ModelRequest) -> ModelResponse:
        if self.asked == self.hold_at:
            self.marker.touch()
            await asyncio.sleep(HOLD_SECONDS)
        self.asked += 1
        return await super().generate(request)


def report(result: Any) -> None:
    messages = MESSAGES.dump_python(list(result.messages), mode="json")
    print(json.dumps({"run_id": result.run_id, "output": result.output, "messages": messages}))


def script_run(args: argparse.Namespace) -> None:
    """One run of TURNS; --hold tool|model hangs it in `slow` or in the model's step 1."""
    counts = Path(args.counts)
    tools = make_tools(counts, hold_slow=args.hold == "tool", slow_idempotent=not args.non_idempotent)
    runtime = ScriptedRuntime(TURNS)
    if args.hold == "model":
        runtime = HeldScripted(TURNS, hold_at=1, marker=counts / "model_started")
    store = Store(args.db)
    agent: Agent[str] = Agent(runtime=runtime, tools=tools, instructions=INSTRUCTIONS, store=store)
    report(agent.run(PROMPT))
    store.close()


def script_resume(args: argparse.Namespace) -> None:
    """Resume a run with the turns it has not played; a refusal is printed as {"error": ...}."""
    store = Store(args.db)
    played = len(store.load(args.run_id).steps)
    tools = make_tools(Path(args.counts), hold_slow=False, slow_idempotent=not args.non_idempotent)
    runtime = ScriptedRuntime(TURNS[played:])
    agent: Agent[str] = Agent(runtime=runtime, tools=tools, instructions=INSTRUCTIONS, store=store)
    try:
        result = agent.resume(args.run_id, rerun_started=args.rerun_started)
    except StoreError as exc:
        print(json.dumps({"error": str(exc)}))
        sys.exit(3)
    report(result)
    store.close()


def script_many(args: argparse.Namespace) -> None:
    """`runs` short runs (a call, then an answer) into one database, from the moment `go` appears."""

    @tool
    def echo(text: str) -> str:
        """Say it back.

        Args:
            text: What to say.
        """
        return text

    store = Store(args.db)
    Path(args.ready).touch()
    wait_for(Path(args.go))
    for n in range(args.runs):
        runtime = ScriptedRuntime(
            [{"tool_calls": [{"name": "echo", "arguments": {"text": f"run {n}"}, "id": "call-echo"}]}, f"said run {n}"]
        )
        agent: Agent[str] = Agent(runtime=runtime, tools=[echo], instructions=INSTRUCTIONS, store=store)
        print(agent.run(PROMPT).run_id, flush=True)
    store.close()


def script_open(args: argparse.Namespace) -> None:
    """Open a fresh store in each of `rounds` databases, together with `of` other processes."""
    root = Path(args.root)
    abort = root / "abort"
    seen = []
    for r in range(args.rounds):
        (root / f"ready-{r}-{args.index}").touch()
        ready = [root / f"ready-{r}-{i}" for i in range(args.of)]
        for path in ready:
            wait_for(path, abort=abort)
        # All start at one instant, agreed without talking: just after the last one was ready.
        start = max(path.stat().st_mtime for path in ready) + 0.02
        time.sleep(max(0.0, start - time.time()))
        try:
            store = Store(root / f"round-{r}.db")
        except BaseException:
            abort.touch()  # the others stop at the next round instead of waiting for this one
            raise
        seen.append(store.schema_steps())
        store.close()
    print(json.dumps(seen))


def main() -> None:
    parser = argparse.ArgumentParser()
    modes = parser.add_subparsers(dest="mode", required=True)
    run = modes.add_parser("run")
    run.add_argument("db")
    run.add_argument("counts")
    run.add_argument("--hold", choices=["tool", "model"])
    run.add_argument("--non-idempotent", action="store_true")
    run.set_defaults(main=script_run)
    resume = modes.add_parser("resume")
    resume.add_argument("db")
    resume.add_argument("counts")
    resume.add_argument("run_id")
    resume.add_argument("--rerun-started", action="store_true")
    resume.add_argument("--non-idempotent", action="store_true")
    resume.set_defaults(main=script_resume)
    many = modes.add_parser("many")
    many.add_argument("db")
    many.add_argument("runs", type=int)
    many.add_argument("ready")
    many.add_argument("go")
    many.set_defaults(main=script_many)
    opener = modes.add_parser("open")
    opener.add_argument("root")
    opener.add_argument("index", type=int)
    opener.add_argument("of", type=int)
    opener.add_argument("rounds", type=int)
    opener.set_defaults(main=script_open)
    args = parser.parse_args()
    args.main(args)


if __name__ == "__main__":
    main()
'''

MESSAGES: pydantic.TypeAdapter[list[Message]] = pydantic.TypeAdapter(
    list[Annotated[Message, pydantic.Field(discriminator="role")]]
)
FINISH_SECONDS = 120.0
"""How long a worker may take to finish (a loaded CI machine; they take about a second)."""


# --- running workers ----------------------------------------------------------------------


class Workers:
    """Starts `WORKER` processes in one directory; kills any left running at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.script = root / "worker.py"
        self.script.write_text(WORKER, encoding="utf-8")
        self._started: list[tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes]]] = []

    def start(self, name: str, *args: object) -> subprocess.Popen[bytes]:
        """A worker in the background; its output goes to `name.out` and `name.err`."""
        out, err = (self.root / f"{name}.out").open("wb"), (self.root / f"{name}.err").open("wb")
        proc = subprocess.Popen([sys.executable, self.script, *map(str, args)], stdout=out, stderr=err, cwd=self.root)
        self._started.append((proc, out, err))
        return proc

    def output(self, name: str) -> tuple[str, str]:
        return (self.root / f"{name}.out").read_text(), (self.root / f"{name}.err").read_text()

    def finish(self, name: str, proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
        """Wait for a worker: its exit code, stdout and stderr."""
        try:
            code = proc.wait(timeout=FINISH_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {name} did not finish within {FINISH_SECONDS} s: {self.output(name)[1]}")
        return (code, *self.output(name))

    def call(self, name: str, *args: object) -> tuple[int, dict[str, Any]]:
        """Run a worker to its end: its exit code and the JSON it printed."""
        code, out, err = self.finish(name, self.start(name, *args))
        assert out.strip(), f"worker {name} printed nothing (exit {code}): {err}"
        return code, json.loads(out)

    def close(self) -> None:
        for proc, out, err in self._started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
            err.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(tmp_path)
    yield pool
    pool.close()


def wait_until(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], seconds: float = 60.0) -> None:
    """Poll `ready` until true; fail clearly on timeout or if `proc` died first."""
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the worker exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds} s")
        time.sleep(0.02)


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def committed_results(db: Path) -> set[str]:
    """The call ids whose results are committed (none while the schema is not there yet)."""
    if not db.exists():
        return set()
    try:
        return {call_id for (call_id,) in query(db, "SELECT call_id FROM tool_results")}
    except sqlite3.OperationalError:  # no such table: the worker is still migrating
        return set()


def executions(counts: Path) -> dict[str, Counter[str]]:
    """How many times each tool ran, per tag, as the tools wrote it down."""
    return {
        name: Counter((counts / f"{name}.log").read_text().split()) if (counts / f"{name}.log").exists() else Counter()
        for name in ("fast", "slow")
    }


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=FINISH_SECONDS) == -signal.SIGKILL


def kill_a_run(workers: Workers, folder: Path, hold: str, *flags: str) -> tuple[Path, Path]:
    """Start the script in a fresh database in `folder` and kill it where it holds; returns the database and
    the folder the tools count their runs in.

    `hold` is "tool" (`fast` finished and was committed while `slow`, its sibling, still runs) or "model"
    (the model started step 1).
    """
    db, counts = folder / "runs.db", folder / "counts"
    counts.mkdir()
    proc = workers.start("killed", "run", db, counts, "--hold", hold, *flags)
    if hold == "tool":
        wait_until(
            "slow started and fast's result was committed",
            lambda: (counts / "slow_started").exists() and "call-fast-a" in committed_results(db),
            proc,
        )
    else:
        wait_until("the model started step 1", (counts / "model_started").exists, proc)
    kill(proc)
    return db, counts


def uninterrupted(workers: Workers, *flags: str) -> dict[str, Any]:
    """The same script and tools, never killed, in a fresh database."""
    counts = workers.root / "counts-uninterrupted"
    counts.mkdir()
    code, result = workers.call("uninterrupted", "run", workers.root / "uninterrupted.db", counts, *flags)
    assert code == 0, result
    assert executions(counts) == {"fast": Counter(a=1, b=1), "slow": Counter(a=1, b=1)}
    return result


def messages(payload: dict[str, Any]) -> tuple[Message, ...]:
    return tuple(MESSAGES.validate_python(payload["messages"]))


# --- killed runs --------------------------------------------------------------------------


def test_a_run_killed_while_a_tool_runs_resumes_without_rerunning_finished_tools(
    workers: Workers, tmp_path: Path
) -> None:
    db, counts = kill_a_run(workers, tmp_path, "tool")

    ((run_id, status),) = query(db, "SELECT id, status FROM runs")
    assert status == "running"
    assert committed_results(db) == {"call-fast-a"}
    assert executions(counts) == {"fast": Counter(a=1), "slow": Counter(a=1)}

    code, resumed = workers.call("resume", "resume", db, counts, run_id)

    assert code == 0, resumed
    assert resumed["run_id"] == run_id
    assert query(db, "SELECT status, output FROM runs") == [("done", json.dumps("All four calls came back."))]
    # `fast a` finished before the kill and is not run again; `slow a` was cut short and is.
    assert executions(counts) == {"fast": Counter(a=1, b=1), "slow": Counter(a=2, b=1)}
    assert messages(resumed) == messages(uninterrupted(workers))


def test_a_run_killed_while_the_model_generates_resumes_from_the_last_decision(
    workers: Workers, tmp_path: Path
) -> None:
    db, counts = kill_a_run(workers, tmp_path, "model")

    ((run_id, status, steps),) = query(
        db, "SELECT id, status, (SELECT COUNT(*) FROM steps WHERE run_id = runs.id) FROM runs"
    )
    assert (status, steps) == ("running", 1)
    assert committed_results(db) == {"call-fast-a", "call-slow-a"}

    code, resumed = workers.call("resume", "resume", db, counts, run_id)

    assert code == 0, resumed
    assert query(db, "SELECT status FROM runs") == [("done",)]
    assert executions(counts) == {"fast": Counter(a=1, b=1), "slow": Counter(a=1, b=1)}
    assert messages(resumed) == messages(uninterrupted(workers))


def test_a_killed_non_idempotent_tool_reruns_only_when_asked(workers: Workers, tmp_path: Path) -> None:
    db, counts = kill_a_run(workers, tmp_path, "tool", "--non-idempotent")
    ((run_id,),) = query(db, "SELECT id FROM runs")
    ((started,),) = query(db, "SELECT started FROM tool_calls WHERE id = 'call-slow-a'")
    assert started is not None

    code, refused = workers.call("refused", "resume", db, counts, run_id, "--non-idempotent")

    assert code == 3, refused
    assert "slow (call-slow-a)" in refused["error"]
    assert "rerun_started" in refused["error"]
    assert query(db, "SELECT status FROM runs") == [("running",)]
    assert query(db, "SELECT COUNT(*) FROM steps") == [(1,)]
    assert executions(counts) == {"fast": Counter(a=1), "slow": Counter(a=1)}

    code, resumed = workers.call("resumed", "resume", db, counts, run_id, "--non-idempotent", "--rerun-started")

    assert code == 0, resumed
    assert query(db, "SELECT status FROM runs") == [("done",)]
    assert executions(counts) == {"fast": Counter(a=1, b=1), "slow": Counter(a=2, b=1)}
    assert messages(resumed) == messages(uninterrupted(workers, "--non-idempotent"))


# --- many writers -------------------------------------------------------------------------

PROCESSES, RUNS_EACH = 8, 50


def test_eight_processes_record_fifty_runs_each_into_one_database(workers: Workers, tmp_path: Path) -> None:
    db, go = tmp_path / "runs.db", tmp_path / "go"
    # The schema exists before the writers start: racing migrations are the next test's subject.
    Store(db).close()
    procs = {
        f"many-{i}": workers.start(f"many-{i}", "many", db, RUNS_EACH, tmp_path / f"ready-{i}", go)
        for i in range(PROCESSES)
    }
    for name, proc in procs.items():
        wait_until(f"{name} opened the store", (tmp_path / f"ready-{name.removeprefix('many-')}").exists, proc)
    began = time.monotonic()
    go.touch()  # all write at once from here

    printed: list[str] = []
    for name, proc in procs.items():
        code, out, err = workers.finish(name, proc)
        assert code == 0, f"{name} exited {code}: {err}"
        assert "database is locked" not in err
        printed += out.split()
    seconds = time.monotonic() - began
    print(f"{PROCESSES} x {RUNS_EACH} runs in {seconds:.1f} s")

    total = PROCESSES * RUNS_EACH
    assert len(set(printed)) == total
    runs = query(db, "SELECT id, status, (SELECT COUNT(*) FROM steps WHERE run_id = runs.id) FROM runs")
    assert sorted(runs) == sorted((run_id, "done", 2) for run_id in printed)
    # Per run: system, user, the call, its result, the answer.
    tables = ("messages", "tool_calls", "tool_results")
    counts = {table: query(db, f"SELECT COUNT(*) FROM {table}")[0][0] for table in tables}
    assert counts == {"messages": 5 * total, "tool_calls": total, "tool_results": total}
    # Each process's first run said "run 0": one result per process, none lost or doubled.
    assert query(db, "SELECT COUNT(*) FROM tool_results WHERE content = ?", json.dumps("run 0")) == [(PROCESSES,)]
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


OPENERS, ROUNDS = 6, 60
"""Processes opening fresh databases together, and how many databases they open: a race
lasts microseconds, so one round rarely shows it (60 rounds take about 5 s)."""


def test_processes_opening_a_fresh_database_at_once_apply_each_migration_once(workers: Workers, tmp_path: Path) -> None:
    reference = Store(tmp_path / "reference.db")
    expected = reference.schema_steps()
    reference.close()
    assert expected

    root = tmp_path / "race"
    root.mkdir()
    procs = [workers.start(f"open-{i}", "open", root, i, OPENERS, ROUNDS) for i in range(OPENERS)]
    finished = [workers.finish(f"open-{i}", proc) for i, proc in enumerate(procs)]
    failures = [err.strip().splitlines()[-1] for code, _, err in finished if code != 0]
    causes = [line for line in failures if "another process failed" not in line] or failures
    assert not failures, "\n".join(causes)
    for _, out, _ in finished:
        assert json.loads(out) == [expected] * ROUNDS

    for r in range(ROUNDS):
        db = root / f"round-{r}.db"
        applied = query(
            db,
            "SELECT name, COUNT(*) FROM _sqlite_migrations WHERE migration_set = 'agentkit' "
            "GROUP BY name ORDER BY MIN(rowid)",
        )
        assert applied == [(name, 1) for name in expected], f"round {r}"
        assert query(db, "PRAGMA journal_mode") == [("wal",)]
        assert query(db, "PRAGMA integrity_check") == [("ok",)]
