"""The `agentkit` command line, on a real SQLite file with agents imported from a module on disk."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import tests.support.ledger
from agentkit import (
    AssistantMessage,
    ModelResponse,
    Sampling,
    SystemMessage,
    ToolCall,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from agentkit.cli import app, printing
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import RunRecorder, Store

# The user's module: the ledger's tools (`add`, `charge` and their `CALLS`), then agents that use them.
AGENTS = (
    Path(tests.support.ledger.__file__).read_text(encoding="utf-8")
    + '''

import pydantic

from agentkit import Agent, tool


class Adder(Agent):
    instructions = "Add numbers with the tool."
    tools = [add, charge]
    max_steps = 4


class Total(pydantic.BaseModel):
    total: int

    @pydantic.field_validator("total")
    @classmethod
    def halve(cls, value: int) -> int:
        return value // 0  # a bug in the agent's own code: not a ValueError, so pydantic lets it through


class Buggy(Adder):
    output_type = Total


@tool
def rumble() -> str:
    """Make the noise an engine makes as it starts."""
    import logging, subprocess, sys, warnings

    logging.getLogger("vllm.engine").info("engine: loading weights")
    logging.getLogger("agentkit.noise").debug("agentkit: a debug detail")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("torch: a deprecation", DeprecationWarning, stacklevel=1)
    subprocess.run([sys.executable, "-c", "import sys; print('engine core: ready', file=sys.stderr)"], check=True)
    return "rumbled"


class Noisy(Agent):
    instructions = "Start up."
    tools = [rumble]
    max_steps = 3
'''
)

ADD = {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}
RUMBLE = {"tool_calls": [{"name": "rumble", "arguments": {}}]}
NOISE = ["engine: loading weights", "torch: a deprecation", "engine core: ready"]
TURNS: list[Any] = [ADD, "The sum is 3 apricots."]

Cli = Callable[..., Result]
Script = Callable[[list[Any]], str]  # the `cli`, `script` and `on_a_terminal` fixtures are in conftest.py
Terminal = Callable[[list[str], list[str], Path], tuple[int, str]]


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A module of agents written to disk and importable, as a user's would be."""
    name = f"cli_agents_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / f"{name}.py").write_text(AGENTS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module(name)
    yield module
    sys.modules.pop(name, None)


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def run_id_of(result: Result) -> str:
    found = re.fullmatch(r"run ([0-9A-Z]{26}) (\w+)\n", result.stderr)
    assert found, result.stderr
    return found[1]


def assert_fails(result: Result, message: str) -> None:
    """Exit code 1 and one readable line on stderr, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert re.fullmatch(r"error: [^\n]+\n", result.stderr), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.output


def run_adder(
    cli: Cli, agents: ModuleType, script: Script, prompt: str = "Add 1 and 2.", answer: str = TURNS[-1]
) -> str:
    result = cli("run", f"{agents.__name__}:Adder", prompt, "--runtime", script([ADD, answer]))
    assert result.exit_code == 0, result.output
    assert result.stdout == answer + "\n"
    return run_id_of(result)


# --- run, list, show, search, export --------------------------------------------------------------


def test_run_stores_the_run_and_list_shows_it(cli: Cli, agents: ModuleType, script: Script) -> None:
    run_id = run_adder(cli, agents, script)
    assert agents.CALLS == ["add 1 2"]
    listed = cli("runs", "list")
    assert listed.exit_code == 0
    row = next(line for line in lines(listed.stdout) if run_id in line)
    assert re.fullmatch(rf"│ {run_id} │ {agents.__name__}:Adder +│ done +│ +2 │ \d+ s ago +│", row)
    assert run_id not in cli("runs", "list", "--status", "failed").stdout


def test_a_failed_run_exits_1_with_the_error_and_its_id(cli: Cli, agents: ModuleType, script: Script) -> None:
    result = cli("run", f"{agents.__name__}:Adder", "Add.", "--runtime", script([ADD]))
    assert result.exit_code == 1
    assert result.stdout == ""
    error, stopped = result.stderr.splitlines()
    assert error == "error: the script has 1 turns and all were played; add more turns"
    run_id = re.fullmatch(r"run ([0-9A-Z]{26}) failed", stopped)
    assert run_id
    assert run_id[1] in cli("runs", "list", "--status", "failed").stdout


def test_show_prints_the_record_and_the_conversation(cli: Cli, agents: ModuleType, script: Script) -> None:
    # Brackets are the user's and the model's text, not rich markup.
    run_id = run_adder(cli, agents, script, prompt="Add 1 and 2, [red]please[/].", answer="Sum: [b]3[/b].")
    shown = cli("runs", "show", run_id)
    assert shown.exit_code == 0
    out = lines(shown.stdout)
    for fact in (
        f"run +{run_id}",
        "status +done",
        "steps +2 of at most 4",
        "tools +add, charge",
        r"output +Sum: \[b\]3\[/b\]\.",
    ):
        assert any(re.fullmatch(fact + ".*", line) for line in out), fact
    conversation = out[out.index("") + 1 :]
    step = "step +{} · runtime scripted · model script_\\w+ · dialect none · {} · tokens 0 in, 0 out"
    expected = [
        "0 system +Add numbers with the tool.",
        r"1 user +Add 1 and 2, \[red\]please\[/\].",
        "  " + step.format(0, "tool_calls"),
        r"2 assistant +→ add\(a=1, b=2\) #call_0_0",
        "3 tool +add #call_0_0 → 3",
        "  " + step.format(1, "stop"),
        r"4 assistant +Sum: \[b\]3\[/b\]\.",
    ]
    assert len(conversation) == len(expected), conversation
    for line, pattern in zip(conversation, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_search_finds_the_message(cli: Cli, agents: ModuleType, script: Script) -> None:
    run_id = run_adder(cli, agents, script)
    found = cli("runs", "search", "apricots")
    assert found.exit_code == 0
    assert [line for line in lines(found.stdout) if run_id in line] == [
        f"│ {run_id} │        4 │ The sum is 3 [apricots]. │"
    ]
    assert cli("runs", "search", "pears").stdout == "no message matches 'pears'\n"


def test_export_writes_the_run_then_its_messages_then_its_steps(
    cli: Cli, script: Script, agents: ModuleType, tmp_path: Path
) -> None:
    run_id = run_adder(cli, agents, script)
    exported = cli("runs", "export", run_id, "--format", "jsonl")
    assert exported.exit_code == 0
    items = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [item["type"] for item in items] == ["run"] + ["message"] * 5 + ["step"] * 2
    run, messages, steps = items[0], items[1:6], items[6:]
    assert (run["id"], run["status"], run["output"], run["steps"]) == (run_id, "done", "The sum is 3 apricots.", 2)
    assert [t["name"] for t in run["tools"]] == ["add", "charge"]
    assert [m["position"] for m in messages] == [0, 1, 2, 3, 4]
    assert [m["message"]["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[2]["message"]["tool_calls"] == [
        {"name": "add", "arguments": {"a": 1, "b": 2}, "id": "call_0_0", "runtime_id": None}
    ]
    assert (messages[3]["message"]["call_id"], messages[3]["message"]["content"]) == ("call_0_0", 3)
    assert [(s["index"], s["position"], s["finish_reason"], s["runtime"]) for s in steps] == [
        (0, 2, "tool_calls", "scripted"),
        (1, 4, "stop", "scripted"),
    ]
    assert steps[0]["sampling"]["max_tokens"] == 512

    target = tmp_path / "run.jsonl"
    written = cli("runs", "export", run_id, "--output", str(target))
    assert (written.exit_code, written.stdout) == (0, "")
    assert written.stderr == f"wrote 8 lines to {target}\n"
    assert target.read_text(encoding="utf-8") == exported.stdout


def assert_unexpected(result: Result, error: str) -> None:
    """Exit code 1, the error line and a hint, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert lines(result.stderr) == [
        f"error: {error}",
        "hint: this looks like a bug (in agentkit, or in the agent's own code); run again as `agentkit -v ...` for "
        "the traceback",
    ]


def test_an_unexpected_exception_in_run_is_one_line_and_a_hint(
    cli: Cli, script: Script, agents: ModuleType, tmp_path: Path
) -> None:
    failed = cli("run", f"{agents.__name__}:Buggy", "Add.", "--runtime", script([ADD, '{"total": 3}']))
    assert_unexpected(failed, "ZeroDivisionError: integer division or modulo by zero")
    [record] = Store(tmp_path / "runs.db").runs()
    assert (record.status, record.steps) == ("failed", 2)  # the run is stored as far as it went
    assert "ZeroDivisionError" in (record.error or "")


def test_an_unexpected_exception_in_resume_is_one_line_and_a_hint_or_with_v_a_traceback(
    cli: Cli, script: Script, agents: ModuleType, tmp_path: Path
) -> None:
    cli("run", f"{agents.__name__}:Buggy", "Add.", "--runtime", script([ADD, '{"total": 3}']))
    [record] = Store(tmp_path / "runs.db").runs()
    resumed = cli("runs", "resume", record.id, "--runtime", script([]))
    assert_unexpected(resumed, "ZeroDivisionError: integer division or modulo by zero")

    verbose = cli("-v", "runs", "resume", record.id, "--runtime", script([]))
    assert verbose.exit_code == 1
    told = lines(verbose.stderr)
    assert told[0] == "Traceback (most recent call last):"
    assert (
        "    return value // 0  # a bug in the agent's own code: not a ValueError, so pydantic lets it through" in told
    )
    assert told[-2:] == [
        "ZeroDivisionError: integer division or modulo by zero",
        "error: ZeroDivisionError: integer division or modulo by zero",
    ]


def test_v_adds_the_traceback_to_an_agentkit_error(cli: Cli, agents: ModuleType, script: Script) -> None:
    result = cli("-v", "run", f"{agents.__name__}:Adder", "Add.", "--runtime", script([ADD]))
    told = lines(result.stderr)
    assert (result.exit_code, told[0]) == (1, "Traceback (most recent call last):")
    assert told[-2:-1] == ["error: the script has 1 turns and all were played; add more turns"]
    assert re.fullmatch(r"run [0-9A-Z]{26} failed", told[-1])


# --- budgets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "exhausted", "shown", "calls"),
    [
        # The second turn is the last the budget affords: asked to answer, the scripted model calls anyway.
        (["--max-tool-calls", "1"], "tool_calls", "tool calls (at most 1)", ["add 1 2"]),
        (["--max-steps", "1"], "steps", "steps (at most 1)", []),
        # Not even the first turn's reply fits.
        (["--max-tokens", "10"], "tokens", "tokens (at most 10)", []),
    ],
)
def test_a_run_that_spends_a_budget_exits_1_as_budget_exhausted(
    cli: Cli,
    script: Script,
    agents: ModuleType,
    tmp_path: Path,
    flags: list[str],
    exhausted: str,
    shown: str,
    calls: list[str],
) -> None:
    ran = cli("run", f"{agents.__name__}:Adder", "Add.", *flags, "--runtime", script([ADD, ADD, "3."]))
    assert (ran.exit_code, ran.stdout) == (1, "")
    error, stopped = ran.stderr.splitlines()
    assert error.startswith(f"error: the run {'took 1 model steps' if exhausted == 'steps' else 'spent its'}")
    run_id = re.fullmatch(r"run ([0-9A-Z]{26}) budget_exhausted", stopped)
    assert run_id, stopped
    record = Store(tmp_path / "runs.db").run(run_id[1])
    assert (record.status, record.exhausted) == ("budget_exhausted", exhausted)
    assert calls == agents.CALLS
    out = lines(cli("runs", "show", run_id[1]).stdout)
    assert any(re.fullmatch(f"exhausted +{re.escape(shown)}", line) for line in out), out
    if exhausted != "steps":
        assert any(re.fullmatch(rf"budget +{re.escape(shown.split(' (')[0])} \d+", line) for line in out), out


def test_a_budget_the_run_keeps_to_changes_nothing(
    cli: Cli, script: Script, agents: ModuleType, tmp_path: Path
) -> None:
    flags = ["--max-tool-calls", "3", "--max-tokens", "100000", "--max-seconds", "60", "--max-steps", "3"]
    ran = cli("run", f"{agents.__name__}:Adder", "Add.", *flags, "--runtime", script(TURNS))
    assert (ran.exit_code, ran.stdout) == (0, "The sum is 3 apricots.\n"), ran.stderr
    [record] = Store(tmp_path / "runs.db").runs()
    assert record.budget is not None
    assert (record.budget.max_tool_calls, record.budget.max_tokens, record.budget.max_seconds) == (3, 100000, 60)
    assert (record.max_steps, record.exhausted) == (3, None)


def test_budget_flags_are_checked_before_the_run(cli: Cli, agents: ModuleType, tmp_path: Path) -> None:
    assert_fails(cli("run", f"{agents.__name__}:Adder", "Add.", "--max-seconds", "0"), "--max-seconds must be more")
    assert cli("run", f"{agents.__name__}:Adder", "Add.", "--max-steps", "0").exit_code == 2  # a usage error
    assert not Store(tmp_path / "runs.db").runs()


# --- resume ---------------------------------------------------------------------------------------


def stopped_run(db: Path, agents: ModuleType, call: ToolCall) -> tuple[str, RunRecorder, Store]:
    """A run left `running` right after its first decision, as a killed process leaves it."""
    store = Store(db)
    recorder = store.begin_run(
        agent=f"{agents.__name__}:Adder",
        messages=[SystemMessage(text=agents.Adder.instructions), UserMessage(text="Go.")],
        max_steps=4,
        tools=[t.spec for t in agents.Adder().bound_tools],
    )
    recorder.decision(
        index=0,
        position=2,
        response=ModelResponse(message=AssistantMessage(tool_calls=[call]), finish_reason="tool_calls"),
        runtime=ScriptedRuntime([]).info,
        sampling=Sampling(),
        idempotent={"add": True, "charge": False},
    )
    return recorder.run_id, recorder, store


def test_resume_finishes_a_run_left_running(cli: Cli, db: Path, agents: ModuleType, script: Script) -> None:
    run_id, _, store = stopped_run(db, agents, ToolCall(name="add", arguments={"a": 1, "b": 2}, id="c1"))
    store.close()
    shown = lines(cli("runs", "show", run_id).stdout)
    assert any(re.fullmatch("status +running", line) for line in shown)
    assert any(line.endswith("· no result yet: add #c1") for line in shown)

    resumed = cli("runs", "resume", run_id, "--runtime", script(["3."]))
    assert (resumed.exit_code, resumed.stdout, resumed.stderr) == (0, "3.\n", f"run {run_id} done\n")
    assert agents.CALLS == ["add 1 2"]
    assert f"│ {run_id} │ {agents.__name__}:Adder │ done " in cli("runs", "list").stdout
    assert_fails(cli("runs", "resume", run_id, "--runtime", script([])), f"run {run_id} is done")


def test_resume_with_a_script_that_numbers_its_calls_afresh(
    cli: Cli, script: Script, agents: ModuleType, tmp_path: Path
) -> None:
    """A run stopped after one step, resumed with the remaining script: the
    resumed run's first call has the id the script gave the run's first call."""
    stopped = cli("run", f"{agents.__name__}:Adder", "Add twice.", "--runtime", script([ADD]))
    assert stopped.exit_code == 1
    [record] = Store(tmp_path / "runs.db").runs()
    resumed = cli("runs", "resume", record.id, "--runtime", script([ADD, "3 and 3."]))
    assert (resumed.exit_code, resumed.stdout, resumed.stderr) == (0, "3 and 3.\n", f"run {record.id} done\n")
    assert agents.CALLS == ["add 1 2", "add 1 2"]
    ids = [
        c.id
        for m in Store(tmp_path / "runs.db").load(record.id).messages
        if isinstance(m, AssistantMessage)
        for c in m.tool_calls
    ]
    assert ids == ["call_0_0", "call_0_0@1"]


def test_resume_asks_before_rerunning_a_started_call(cli: Cli, db: Path, agents: ModuleType, script: Script) -> None:
    call = ToolCall(name="charge", arguments={"amount": 5}, id="p1")
    run_id, recorder, store = stopped_run(db, agents, call)
    recorder.tool_started(call)
    store.close()
    refused = cli("runs", "resume", run_id, "--runtime", script(["Charged."]))
    assert_fails(refused, "charge (p1)")
    assert "--rerun-started" in refused.stderr
    assert agents.CALLS == []
    assert run_id in cli("runs", "list", "--status", "running").stdout

    resumed = cli("runs", "resume", run_id, "--rerun-started", "--runtime", script(["Charged."]))
    assert (resumed.exit_code, resumed.stdout) == (0, "Charged.\n")
    assert agents.CALLS == ["charge 5"]


@pytest.mark.parametrize(
    ("agent", "tools", "message"),
    [
        ("__main__:Adder", [], "defined in a script run as __main__; resume it from that script"),
        ("{agents}:Adder", ["add", "multiply"], "offered the tools ['multiply'], which {agents}:Adder does not have"),
    ],
)
def test_resume_refuses_an_agent_it_cannot_rebuild(
    cli: Cli, db: Path, agents: ModuleType, agent: str, tools: list[str], message: str
) -> None:
    store = Store(db)
    run_id = store.begin_run(
        agent=agent.format(agents=agents.__name__),
        messages=[UserMessage(text="Go.")],
        max_steps=4,
        tools=[ToolSpec(name=name, description="A tool.", parameters={"type": "object"}) for name in tools],
    ).run_id
    store.close()
    assert_fails(cli("runs", "resume", run_id), message.format(agents=agents.__name__))


def test_show_puts_an_unreadable_turn_before_its_feedback(cli: Cli, db: Path, agents: ModuleType) -> None:
    run_id, recorder, store = stopped_run(db, agents, ToolCall(name="add", arguments={"a": 1, "b": 2}, id="c1"))
    recorder.tool_result(ToolResult(call_id="c1", name="add", content=3))
    garbled = ModelResponse(message=AssistantMessage(), finish_reason="error", raw_text="{oops")
    recorder.decision(
        index=1, position=None, response=garbled, runtime=None, sampling=Sampling(), idempotent={"add": True}
    )
    recorder.message(4, UserMessage(text="Your last reply could not be read."))
    store.close()
    out = lines(cli("runs", "show", run_id).stdout)
    at = next(i for i, line in enumerate(out) if re.fullmatch("3 tool +add #c1 → 3", line))
    assert re.fullmatch(r"  step +1 · runtime \? · .* · error · .* · unreadable reply: \"\{oops\"", out[at + 1])
    assert re.fullmatch("4 user +Your last reply could not be read.", out[at + 2])


# --- replay ---------------------------------------------------------------------------------------


def test_replay_prints_each_step_and_the_first_divergence(cli: Cli, agents: ModuleType, script: Script) -> None:
    run_id = run_adder(cli, agents, script)
    replayed = cli("runs", "replay", run_id, "--runtime", script([ADD, "Three."]))
    assert replayed.exit_code == 0, replayed.output
    out = lines(replayed.stdout)
    rows = [re.split(r" *│ *", line.strip("│ ")) for line in out if line.startswith("│")]
    assert rows == [
        ["0", "add(a=1, b=2)", "add(a=1, b=2)", "yes", "1/1"],
        ["1", '"The sum is 3 apricots."', '"Three."', "no", "-"],
    ]
    assert out[-2:] == ["first divergence: step 1", "valid-call rate: 100% (1 of 1 calls)"]


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "show", "01NOPE"], "no run '01NOPE' in"),
        (["runs", "export", "01NOPE"], "no run '01NOPE' in"),
        (["runs", "resume", "01NOPE"], "no run '01NOPE' in"),
        (["runs", "replay", "01NOPE", "--runtime", "scripted:x.json"], "no run '01NOPE' in"),
        (["runs", "export", "01NOPE", "--format", "csv"], "unsupported export format 'csv'; the only format is jsonl"),
        (["runs", "list", "--status", "finished"], "unknown status 'finished'; use one of running, done"),
        (["run", "no_such_module_here:Agent", "hi"], "no module 'no_such_module_here'"),
        (["run", "{agents}", "hi"], "is not an agent's import path; write MODULE:CLASS"),
        (["run", "{agents}:Missing", "hi"], "module {agents} has no 'Missing'"),
        (["run", "{agents}:add", "hi"], "{agents}:add is a FunctionTool, not an Agent subclass"),
        (["run", "{agents}:Adder.run", "hi"], "{agents}:Adder.run is a function, not an Agent subclass"),
        (["run", "{agents}:Adder", "hi", "--runtime", "nope:x"], "unknown runtime scheme 'nope'"),
        (["run", "{agents}:Adder", "hi", "--runtime", "scripted:missing.json"], "cannot read script missing.json"),
    ],
)
def test_errors_are_one_line_and_exit_1(cli: Cli, db: Path, agents: ModuleType, args: list[str], message: str) -> None:
    Store(db).close()
    name = agents.__name__
    assert_fails(cli(*(a.format(agents=name) for a in args)), message.format(agents=name))


def test_reading_commands_do_not_create_a_database(cli: Cli, db: Path) -> None:
    assert_fails(cli("runs", "list"), f"no run database at {db}")
    assert not db.exists()


def test_a_file_that_is_not_sqlite_is_refused(cli: Cli, db: Path) -> None:
    db.write_bytes(b"name,value\n")
    assert_fails(cli("runs", "list"), "is not an SQLite database")
    assert db.read_bytes() == b"name,value\n"


def test_a_module_that_fails_to_import_is_one_line(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_agents_cli.py").write_text("raise RuntimeError('no config')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_agents_cli", raising=False)
    assert_fails(cli("run", "broken_agents_cli:X", "hi"), "importing broken_agents_cli failed: RuntimeError: no config")


def test_the_console_script_imports_agents_from_the_current_directory(tmp_path: Path, script: Script) -> None:
    # -I: no current directory on sys.path, as when the installed `agentkit` script runs.
    (tmp_path / "my_cli_agents.py").write_text(AGENTS, encoding="utf-8")
    command = [sys.executable, "-I", "-c", "from agentkit.cli import main; main()"]
    ran = subprocess.run(
        [*command, "run", "my_cli_agents:Adder", "Add.", "--runtime", script(TURNS), "--db", "runs.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (ran.returncode, ran.stdout) == (0, "The sum is 3 apricots.\n"), ran.stderr
    (tmp_path / "notes.db").write_text("not a database", encoding="utf-8")
    failed = subprocess.run(
        [*command, "runs", "list", "--db", "notes.db"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert (failed.returncode, failed.stdout) == (1, "")
    assert failed.stderr.startswith("error: notes.db is not an SQLite database")
    assert failed.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("ago", "shown"),
    [
        (0, "0 s ago"),
        (59, "59 s ago"),
        (60, "1 min ago"),
        (3599, "59 min ago"),
        (3600, "1 h ago"),
        (86_399, "23 h ago"),
    ],
)
def test_recent_times_read_as_how_long_ago(ago: float, shown: str) -> None:
    assert printing.ago(1_000_000.0 - ago, 1_000_000.0) == shown


def test_older_and_future_times_read_as_dates() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", printing.ago(0.0, 1_000_000.0))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", printing.ago(2_000_000.0, 1_000_000.0))


# --- logs and --version -------------------------------------------------------------------------


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"], catch_exceptions=False)
    assert (result.exit_code, result.stdout) == (0, f"agentkit {version('agentkit')}\n")


def test_library_and_engine_logs_go_to_the_log_file(cli: Cli, agents: ModuleType, db: Path, script: Script) -> None:
    ran = cli("run", f"{agents.__name__}:Noisy", "Start.", "--runtime", script([RUMBLE, "Started."]))
    assert (ran.exit_code, ran.stdout) == (0, "Started.\n"), ran.output
    run_id_of(ran)  # stderr is the run's id alone: no log lines, no log path off a terminal
    log = (db.parent / "cache" / "logs" / "agentkit.log").read_text(encoding="utf-8")
    for noise in NOISE:  # a logger, the warnings module, a subprocess writing to its stderr
        assert noise in log
    assert "agentkit: a debug detail" not in log  # INFO and above


def test_a_failed_run_names_the_log_file_when_it_has_something(
    cli: Cli, agents: ModuleType, db: Path, script: Script
) -> None:
    ran = cli("run", f"{agents.__name__}:Noisy", "Start.", "--runtime", script([RUMBLE]))
    assert ran.exit_code == 1
    error, log, status = ran.stderr.splitlines()
    assert error.startswith("error: the script has 1 turns")
    assert log == f"logs: {db.parent / 'cache' / 'logs' / 'agentkit.log'}"
    assert status.endswith(" failed")


@pytest.mark.parametrize(("flag", "env", "shown"), [("-v", {}, 1), (None, {"AGENTKIT_LOG": "debug"}, 2)])
def test_v_or_agentkit_log_sends_the_logs_to_stderr(
    agents: ModuleType, db: Path, script: Script, flag: str | None, env: dict[str, str], shown: int
) -> None:
    runner = CliRunner(env={"AGENTKIT_CACHE": str(db.parent / "cache"), **env})
    args = [*([flag] if flag else []), "run", f"{agents.__name__}:Noisy", "Start.", "--db", str(db)]
    with pytest.warns(DeprecationWarning, match="torch"):  # not captured into the logs: shown as Python shows it
        ran = runner.invoke(app, [*args, "--runtime", script([RUMBLE, "Started."])], catch_exceptions=False)
    assert (ran.exit_code, ran.stdout) == (0, "Started.\n"), ran.output
    assert "INFO vllm.engine: engine: loading weights" in ran.stderr
    assert ran.stderr.count("agentkit: a debug detail") == shown - 1  # DEBUG only with AGENTKIT_LOG=debug
    assert not (db.parent / "cache" / "logs").exists()


def test_agentkit_log_must_name_a_level(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTKIT_LOG", "loud")
    assert_fails(cli("runs", "list"), "error: AGENTKIT_LOG='loud' names no log level; use one of debug, info")


def test_on_a_terminal_the_log_path_is_shown_once_and_the_noise_is_not(
    tmp_path: Path, db: Path, script: Script, on_a_terminal: Terminal
) -> None:
    (tmp_path / "noisy_agents.py").write_text(AGENTS, encoding="utf-8")
    args = ["run", "noisy_agents:Noisy", "Start.", "--runtime", script([RUMBLE, "Started."]), "--db", str(db)]
    code, shown = on_a_terminal(args, [], tmp_path)
    log = tmp_path / "cache" / "logs" / "agentkit.log"
    assert code == 0, shown
    assert re.fullmatch(rf"logs: {re.escape(str(log))}\nStarted\.\nrun \w{{26}} done\n", shown), shown
    assert all(noise in log.read_text(encoding="utf-8") for noise in NOISE)


def test_run_with_plan_runs_a_plan_and_refuses_it_for_a_workflow(
    cli: Cli, agents: ModuleType, script: Script, tmp_path: Path
) -> None:
    plan = {
        "tool_calls": [
            {"name": "add", "arguments": {"a": 1, "b": 2}},
            {"name": "add", "arguments": {"a": {"$ref": "$1"}, "b": 10}},
        ]
    }
    result = cli(
        "run", f"{agents.__name__}:Adder", "Add 1 and 2, then 10.", "--plan", "--runtime", script([plan, "13"])
    )
    assert result.exit_code == 0, result.output
    assert agents.CALLS == ["add 1 2", "add 3 10"]  # the second call took the first's result
    shown = cli("runs", "show", run_id_of(result)).stdout
    assert re.search(r"\$2 +add\(a=\$1, b=10\) .*after \$1 +ok", shown), shown
    # Without --plan the reference is an ordinary (and here invalid) value: the call fails validation.
    agents.CALLS.clear()
    plain = cli("run", f"{agents.__name__}:Adder", "Again.", "--runtime", script([plan, "13"]))
    assert plain.exit_code == 0, plain.output
    assert agents.CALLS == ["add 1 2"]
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: f\nsteps:\n  - id: s\n    agent: {instructions: Hi.}\n    prompt: Hi.\n", encoding="utf-8")
    refused = cli("run", str(flow), "--plan")
    assert refused.exit_code != 0
    assert "--plan are for agents" in refused.stderr
