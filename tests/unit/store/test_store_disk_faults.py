"""The store when the disk or the file fails: full, read-only, locked too long, deleted mid-run.

Every case uses a real SQLite file and, where another party is involved (a
lock holder, another user), a real process. The rule checked each time: the
error is a `StoreError` naming the file and saying what happened; what was
committed stays readable by a fresh `Store`; and no tool runs unrecorded.
Tools count their executions in a file, so "did not run" is read from disk.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentkit import Agent, ToolResult, tool
from agentkit.cli import app
from agentkit.errors import StoreError
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store

PROMPT = "Count twice."


def call(tag: str, id: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "count", "arguments": {"tag": tag}, "id": id}]}


def counter(log: Path) -> Any:
    """A tool that appends its tag to `log`: what ran is read back from the file."""

    @tool
    def count(tag: str) -> str:
        """Count one call.

        Args:
            tag: Which call this is.
        """
        with log.open("a") as file:
            file.write(tag[:20] + "\n")
        return f"counted {tag[:20]}"

    return count


def ran(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def earlier_run(path: Path) -> str:
    """A whole run recorded and closed before the fault: it must stay readable."""
    store = Store(path)
    result = Agent(runtime=ScriptedRuntime(["Nothing to count."]), store=store).run("Anything?")
    store.close()
    return result.run_id


def assert_readable(path: Path, run_id: str) -> None:
    """A fresh `Store` on the file reads the run recorded before the fault, whole."""
    fresh = Store(path)
    try:
        assert fresh.run(run_id).status == "done"
        assert [m.role for m in fresh.load(run_id).messages] == ["user", "assistant"]
    finally:
        fresh.close()


# --- a full disk ----------------------------------------------------------------------------


def test_a_full_database_stops_the_run_before_the_steps_tools_run(tmp_path: Path) -> None:
    path, log = tmp_path / "runs.db", tmp_path / "count.log"
    before = earlier_run(path)
    store = Store(path)
    # SQLite's page limit stands in for a full disk: the same SQLITE_FULL, on this connection.
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 24}")
    turns = [call("small", "c1"), call("x" * 400_000, "c2"), "Counted."]
    agent = Agent(runtime=ScriptedRuntime(turns), tools=[counter(log)], store=store)
    with pytest.raises(StoreError) as failed:
        agent.run(PROMPT)
    message = str(failed.value)
    assert str(path) in message
    assert "disk is full" in message
    assert "step 1's model turn" in message
    assert ran(log) == ["small"]  # step 1's decision was refused, so its call never ran
    store.close()
    assert_readable(path, before)
    run_id = failed.value.partial.run_id if failed.value.partial else ""
    stopped = Store(path).load(run_id)
    assert [len(s.results) for s in stopped.steps] == [1]  # step 0, whole; nothing of step 1


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs (needs root, or CAP_SYS_ADMIN: skipped otherwise)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_tmpfs_stops_the_run_and_keeps_what_was_committed(small_tmpfs: Path, tmp_path: Path) -> None:
    path, log = small_tmpfs / "runs.db", tmp_path / "count.log"
    before = earlier_run(path)
    store = Store(path)
    turns = [call("small", "c1"), call("x" * 2_000_000, "c2"), "Counted."]
    with pytest.raises(StoreError, match="disk is full") as failed:
        Agent(runtime=ScriptedRuntime(turns), tools=[counter(log)], store=store).run(PROMPT)
    assert str(path) in str(failed.value)
    assert ran(log) == ["small"]
    store.close()
    assert_readable(path, before)


# --- a read-only file or folder ---------------------------------------------------------------

READER = r'''
"""Another user's process (or the same user's, on a chmod-ed file): read the store, then try a run."""

import json
import sys
from pathlib import Path

from agentkit import Agent, tool
from agentkit.errors import StoreError
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store

path, log = Path(sys.argv[1]), Path(sys.argv[2])


@tool
def count(tag: str) -> str:
    """Count one call.

    Args:
        tag: Which call this is.
    """
    with log.open("a") as file:
        file.write(tag + "\n")
    return tag


store = Store(path)
report = {"runs": [r.id for r in store.runs()]}
report["roles"] = [[m.role for m in store.load(run_id).messages] for run_id in report["runs"]]
turns = [{"tool_calls": [{"name": "count", "arguments": {"tag": "a"}, "id": "c1"}]}, "Counted."]
try:
    Agent(runtime=ScriptedRuntime(turns), tools=[count], store=store).run("Count.")
    report["error"] = None
except StoreError as exc:
    report["error"] = str(exc)
print(json.dumps(report))
'''


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder another user can enter (pytest's own tmp folder is private to this user)."""
    folder = Path(tempfile.mkdtemp(prefix="agentkit-read-only-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for inside in [folder, *folder.rglob("*")]:
            inside.chmod(0o777 if inside.is_dir() else 0o666)
        shutil.rmtree(folder)


def as_a_reader(args: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    """`python ARGS` as a user who may not write what this test made: root writes any file
    whatever its mode, so as root the process runs as `nobody` (util-linux's `setpriv`,
    which, unlike `subprocess`'s `user=`, can still start an interpreter kept under /root)."""
    env = {**os.environ, "AGENTKIT_CACHE": str(folder / "cache"), "HOME": str(folder / "cache")}
    command = [sys.executable, *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: no way to be a user a file mode applies to")
        command = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, cwd=folder, env=env, timeout=120, check=False)


def read_only_store(shared: Path, *, folder_writable: bool) -> tuple[Path, str, bytes]:
    """A store with one run, made read-only (and its folder, unless `folder_writable`)."""
    data = shared / "data"
    data.mkdir()
    path = data / "runs.db"
    run_id = earlier_run(path)
    assert sorted(p.name for p in data.iterdir()) == ["runs.db"]  # no WAL left: the reader must make one, or not
    path.chmod(0o444)
    data.chmod(0o777 if folder_writable else 0o555)
    for writable in ("cache", "counts"):
        (shared / writable).mkdir(mode=0o777)
        (shared / writable).chmod(0o777)
    (shared / "reader.py").write_text(READER, encoding="utf-8")
    return path, run_id, path.read_bytes()


@pytest.mark.parametrize("folder_writable", [True, False], ids=["read-only-file", "read-only-folder"])
def test_a_read_only_store_is_read_and_refuses_to_record_a_run(shared: Path, folder_writable: bool) -> None:
    path, run_id, before = read_only_store(shared, folder_writable=folder_writable)
    log = shared / "counts" / "count.log"
    done = as_a_reader([str(shared / "reader.py"), str(path), str(log)], shared)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["runs"] == [run_id]
    assert report["roles"] == [["user", "assistant"]]
    assert report["error"] is not None
    assert str(path) in report["error"]
    assert "read-only" in report["error"]
    assert "the start of a run" in report["error"]  # refused before the model was even asked
    assert ran(log) == []
    assert path.read_bytes() == before


def test_agentkit_runs_list_and_show_read_a_read_only_store(shared: Path) -> None:
    path, run_id, _ = read_only_store(shared, folder_writable=False)
    listed = as_a_reader(["-m", "agentkit.cli", "runs", "list", "--db", str(path)], shared)
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout
    shown = as_a_reader(["-m", "agentkit.cli", "runs", "show", run_id, "--db", str(path)], shared)
    assert shown.returncode == 0, shown.stderr
    assert "Anything?" in shown.stdout


# --- a lock held past the busy timeout --------------------------------------------------------

HOLDER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
conn.execute("ROLLBACK")
"""


class Holder:
    """Another process holding an exclusive lock on the file until `release`."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "locked\n"

    def release(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


def test_opening_a_store_locked_past_the_busy_timeout_names_the_file_and_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    before = earlier_run(path)
    holder = Holder(path)
    try:
        with pytest.raises(StoreError) as failed:
            Store(path, busy_timeout=0.2)
    finally:
        holder.release()
    assert str(path) in str(failed.value)
    assert "locked by another process for 0.2 s" in str(failed.value)
    assert_readable(path, before)


def test_a_lock_held_mid_run_stops_it_before_the_next_step(tmp_path: Path) -> None:
    path, log = tmp_path / "runs.db", tmp_path / "count.log"
    before = earlier_run(path)
    holders: list[Holder] = []

    @tool
    def lock(tag: str) -> str:
        """Count, then have another process lock the database.

        Args:
            tag: Which call this is.
        """
        with log.open("a") as file:
            file.write(tag + "\n")
        holders.append(Holder(path))
        return tag

    store = Store(path, busy_timeout=0.2)
    turns = [{"tool_calls": [{"name": "lock", "arguments": {"tag": "a"}, "id": "c1"}]}, call("b", "c2"), "Done."]
    try:
        with pytest.raises(StoreError) as failed:
            Agent(runtime=ScriptedRuntime(turns), tools=[lock, counter(log)], store=store).run(PROMPT)
    finally:
        for holder in holders:
            holder.release()
    message = str(failed.value)
    assert str(path) in message
    assert "locked by another process for 0.2 s" in message
    assert "the result of call lock (c1) in step 0" in message
    assert ran(log) == ["a"]  # step 1 was never asked for, so `count` never ran
    store.close()
    assert_readable(path, before)
    stopped = Store(path).load(failed.value.partial.run_id if failed.value.partial else "")
    assert [[c.id for c in s.pending] for s in stopped.steps] == [["c1"]]  # a resume reruns it


# --- the file deleted mid-run -----------------------------------------------------------------


def deleting(path: Path, log: Path) -> Any:
    @tool
    def delete(tag: str) -> str:
        """Count, then delete the database file (as `rm runs.db` would while the run goes on).

        Args:
            tag: Which call this is.
        """
        with log.open("a") as file:
            file.write(tag + "\n")
        path.unlink()
        return tag

    return delete


DELETE_THEN_COUNT = [
    {"tool_calls": [{"name": "delete", "arguments": {"tag": "a"}, "id": "c1"}]},
    call("b", "c2"),
    "Done.",
]


def test_a_database_deleted_mid_run_stops_it_rather_than_recording_into_the_deleted_file(tmp_path: Path) -> None:
    path, log = tmp_path / "runs.db", tmp_path / "count.log"
    store = Store(path)
    agent = Agent(runtime=ScriptedRuntime(DELETE_THEN_COUNT), tools=[deleting(path, log), counter(log)], store=store)
    with pytest.raises(StoreError) as failed:
        agent.run(PROMPT)
    message = str(failed.value)
    assert f"{path} was deleted (or moved) after it was opened" in message
    assert "the result of call delete (c1)" in message
    assert ran(log) == ["a"]
    assert not path.exists()  # nothing was silently recreated in its place


def test_a_database_replaced_mid_run_is_refused_as_well(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = Store(path)
    recorder = store.begin_run(agent="tests:Agent", messages=[], max_steps=2)
    path.rename(tmp_path / "moved.db")
    Store(path).close()  # another, empty store where the first was
    with pytest.raises(StoreError, match="was replaced by another file"):
        recorder.finished("done", output="x")
    with pytest.raises(StoreError, match="was replaced by another file"):
        store.runs()
    assert Store(path).runs() == []  # nothing of the first store's run went into the other file


def test_agentkit_run_prints_a_deleted_database_as_one_line_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"deleting_agents_{uuid.uuid4().hex[:8]}"
    path, log = tmp_path / "runs.db", tmp_path / "count.log"
    (tmp_path / f"{name}.py").write_text(
        "from pathlib import Path\n"
        "from agentkit import Agent, tool\n\n\n"
        "@tool\n"
        "def delete(tag: str) -> str:\n"
        '    """Delete the database.\n\n    Args:\n        tag: Which call this is.\n    """\n'
        f"    Path({str(path)!r}).unlink()\n"
        "    return tag\n\n\n"
        "class Deleter(Agent):\n"
        "    tools = [delete]\n",
        encoding="utf-8",
    )
    script = tmp_path / "turns.json"
    script.write_text(json.dumps(DELETE_THEN_COUNT), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = CliRunner(env={"COLUMNS": "200", "AGENTKIT_CACHE": str(tmp_path / "cache")})
    try:
        result = runner.invoke(
            app, ["run", f"{name}:Deleter", PROMPT, "--runtime", f"scripted:{script}", "--db", str(path)]
        )
    finally:
        sys.modules.pop(name, None)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    error, status = result.stderr.splitlines()
    assert error.startswith("error: ")
    assert f"{path} was deleted (or moved)" in error
    assert status.endswith("stopped (its status could not be read back)")
    assert "Traceback" not in result.output
    assert ran(log) == []


# --- going on unrecorded, when asked ------------------------------------------------------------


def test_on_store_error_continue_finishes_the_run_unrecorded_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, log = tmp_path / "runs.db", tmp_path / "count.log"
    agent = Agent(
        runtime=ScriptedRuntime(DELETE_THEN_COUNT),
        tools=[deleting(path, log), counter(log)],
        store=Store(path),
        on_store_error="continue",
    )
    with caplog.at_level(logging.WARNING, logger="agentkit.store"):
        result = agent.run(PROMPT)
    assert result.output == "Done."
    assert ran(log) == ["a", "b"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once, at the first refused write
    assert f"run {result.run_id} goes on unrecorded" in warnings[0]
    assert f"{path} was deleted" in warnings[0]


def test_on_store_error_continue_also_covers_a_store_that_cannot_start_the_run(tmp_path: Path) -> None:
    path, log = tmp_path / "runs.db", tmp_path / "count.log"
    store = Store(path)
    store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'no room'); END")
    turns = [call("a", "c1"), "Done."]
    failing = Agent(runtime=ScriptedRuntime(turns), tools=[counter(log)], store=store)
    with pytest.raises(StoreError, match="no room"):
        failing.run(PROMPT)
    assert ran(log) == []
    going_on = Agent(runtime=ScriptedRuntime(turns), tools=[counter(log)], store=store, on_store_error="continue")
    assert going_on.run(PROMPT).output == "Done."
    assert ran(log) == ["a"]
    assert store.runs() == []


def test_an_unrecorded_run_refuses_a_call_that_needs_approval_rather_than_pause(tmp_path: Path) -> None:
    # Paused, it could never be resumed: nothing of it is stored.
    path, log = tmp_path / "runs.db", tmp_path / "count.log"
    store = Store(path)
    store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'no room'); END")

    @tool(requires_approval=True)
    def guarded(tag: str) -> str:
        """Needs someone's word."""
        with log.open("a") as file:
            file.write(tag + "\n")
        return tag

    turns: list[Any] = [{"tool_calls": [{"name": "guarded", "arguments": {"tag": "g"}, "id": "g1"}]}, "Done."]
    agent = Agent(runtime=ScriptedRuntime(turns), tools=[guarded], store=store, on_store_error="continue")
    result = agent.run(PROMPT)
    assert result.output == "Done."
    refusal = next(m for m in result.messages if isinstance(m, ToolResult))
    assert refusal.is_error
    assert "cannot pause for it" in str(refusal.content)
    assert ran(log) == []


def test_on_store_error_takes_only_fail_or_continue() -> None:
    with pytest.raises(ValueError, match="on_store_error must be 'fail' or 'continue', got 'ignore'"):
        Agent(runtime=ScriptedRuntime(["x"]), on_store_error="ignore")  # type: ignore[arg-type]


# --- durability ---------------------------------------------------------------------------------


def synchronous(store: Store) -> int:
    """SQLite's synchronous setting on the store's connection: 1 NORMAL, 2 FULL."""
    value: int = store.db.execute("PRAGMA synchronous").fetchone()[0]
    return value


def test_durability_sets_sqlites_synchronous_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTKIT_DB_DURABILITY", raising=False)
    assert synchronous(Store(tmp_path / "default.db")) == 1
    assert synchronous(Store(tmp_path / "normal.db", durability="normal")) == 1
    full = Store(tmp_path / "full.db", durability="full")
    assert synchronous(full) == 2
    result = Agent(runtime=ScriptedRuntime(["Kept."]), store=full).run("Keep this.")
    with sqlite3.connect(tmp_path / "full.db") as other:  # committed and journaled as WAL, like normal
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("SELECT output FROM runs WHERE id = ?", [result.run_id]).fetchone() == ('"Kept."',)
    monkeypatch.setenv("AGENTKIT_DB_DURABILITY", "full")
    assert synchronous(Store(tmp_path / "from-env.db")) == 2
    assert synchronous(Store(tmp_path / "given.db", durability="normal")) == 1  # the argument wins


def test_an_unknown_durability_is_refused_naming_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StoreError, match=r"durability of the store .*runs.db must be one of normal, full, not 'max'"):
        Store(tmp_path / "runs.db", durability="max")  # type: ignore[arg-type]
    monkeypatch.setenv("AGENTKIT_DB_DURABILITY", "FULL")
    with pytest.raises(StoreError, match=r"\$AGENTKIT_DB_DURABILITY of the store .* not 'FULL'"):
        Store(tmp_path / "runs.db")
    assert not (tmp_path / "runs.db").exists()


def test_a_thread_that_connects_after_a_chdir_reads_the_file_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    store = Store("runs.db")
    run_id = Agent(runtime=ScriptedRuntime(["Kept."]), store=store).run("Keep this.").run_id
    monkeypatch.chdir(tmp_path / "b")
    seen: list[list[str]] = []
    reader = threading.Thread(target=lambda: seen.append([r.id for r in store.runs()]))
    reader.start()
    reader.join()
    assert seen == [[run_id]]
    assert list((tmp_path / "b").iterdir()) == []  # no new, empty database where the process now is
