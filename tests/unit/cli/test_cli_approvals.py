"""Approvals, pauses and live answers on the command line: a real SQLite file, agents imported from a module on
disk, and a real pseudo-terminal for what only happens when a person sits at one."""

from __future__ import annotations

import asyncio
import getpass
import importlib
import io
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import Result

from agentkit import Agent, ToolCall, ToolResult, tool
from agentkit.cli.run import TerminalApprover, drive, paused_text
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store

AGENTS = '''
from pathlib import Path

from agentkit import Agent, tool

LEDGER = Path(__file__).with_name("ledger.txt")


@tool(requires_approval=True, idempotent=False)
def pay(amount: int, to: str) -> str:
    """Pay someone.

    Args:
        amount: Euros.
        to: Who gets them.
    """
    with LEDGER.open("a", encoding="utf-8") as ledger:
        ledger.write(f"{amount} {to}\\n")
    return f"paid {amount} to {to}"


class Payer(Agent):
    instructions = "Pay what you are asked to."
    tools = [pay]
    max_steps = 4
'''

PAY = {"tool_calls": [{"name": "pay", "arguments": {"amount": 5, "to": "bob"}}]}
PAY_TWO = {
    "tool_calls": [
        {"name": "pay", "arguments": {"amount": 5, "to": "bob"}},
        {"name": "pay", "arguments": {"amount": 7, "to": "eve"}},
    ]
}

Cli = Callable[..., Result]
Script = Callable[[list[Any]], str]  # the `cli`, `script` and `on_a_terminal` fixtures are in conftest.py
Terminal = Callable[[list[str], list[str], Path], tuple[int, str]]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Where the agents' module (and the ledger its tool writes) lives."""
    path = tmp_path / "src"
    path.mkdir()
    return path


@pytest.fixture
def agents(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    name = f"cli_payers_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(AGENTS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    yield importlib.import_module(name)
    sys.modules.pop(name, None)


def ledger(folder: Path) -> list[str]:
    """The payments the tool made, one a line."""
    path = folder / "ledger.txt"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def paused(cli: Cli, agents: ModuleType, script: Script, turn: dict[str, Any] = PAY) -> str:
    """A run of Payer paused on its first turn's calls; its id."""
    ran = cli("run", f"{agents.__name__}:Payer", "Pay bob 5.", "--runtime", script([turn]))
    assert ran.exit_code == 3, ran.output
    found = re.search(r"^run ([0-9A-Z]{26}) awaiting_approval$", ran.stderr, re.MULTILINE)
    assert found, ran.stderr
    return found[1]


# --- pausing --------------------------------------------------------------------------------------


def test_without_a_terminal_a_call_that_needs_approval_pauses_the_run_with_exit_code_3(
    cli: Cli, agents: ModuleType, folder: Path, db: Path, script: Script
) -> None:
    runtime = script([PAY])
    ran = cli("run", f"{agents.__name__}:Payer", "Pay bob 5.", "--runtime", runtime)
    assert (ran.exit_code, ran.stdout) == (3, "")
    run_id = re.findall(r"[0-9A-Z]{26}", ran.stderr)[0]
    assert ran.stderr.splitlines() == [
        f"run {run_id} waits for approval of 1 call:",
        '  call_0_0: pay {"amount": 5, "to": "bob"}',
        "approve (every waiting call; or name some after the run id):",
        f"  agentkit runs approve {run_id} --runtime {runtime} --db {db}",
        "deny (the model reads the reason):",
        f"  agentkit runs deny {run_id} call_0_0 --reason 'WHY' --runtime {runtime} --db {db}",
        f"run {run_id} awaiting_approval",
    ]
    stored = Store(db).load(run_id)
    assert stored.record.status == "awaiting_approval"
    assert [(c.id, c.name, c.arguments) for c in stored.awaiting] == [("call_0_0", "pay", {"amount": 5, "to": "bob"})]
    assert ledger(folder) == []


def test_show_lists_the_waiting_calls_then_the_decisions(
    cli: Cli, agents: ModuleType, script: Script, db: Path
) -> None:
    run_id = paused(cli, agents, script)
    shown = [line.rstrip() for line in cli("runs", "show", run_id).stdout.splitlines()]
    assert any(re.fullmatch("status +awaiting_approval", line) for line in shown)
    waiting = r' *call_0_0 +pay \{"amount": 5, "to": "bob"\} +waiting +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d'
    assert any(re.fullmatch(waiting, line) for line in shown), shown
    assert any(line.endswith("no result yet: pay #call_0_0 (awaiting approval)") for line in shown), shown

    denied = cli("runs", "deny", run_id, "call_0_0", "--reason", "not this week", "--by", "ann", "--no-resume")
    assert denied.exit_code == 0, denied.output
    shown = [line.rstrip() for line in cli("runs", "show", run_id).stdout.splitlines()]
    decided = r' *call_0_0 +pay \{"amount": 5, "to": "bob"\} +denied +ann +[\d :-]{19} +not this week'
    assert any(re.fullmatch(decided, line) for line in shown), shown


def test_paused_text_names_every_waiting_call_and_quotes_what_a_shell_would_split() -> None:
    calls = [ToolCall(name="pay", arguments={"to": "a b"}, id="c 1"), ToolCall(name="pay", arguments={}, id="c2")]
    assert paused_text("01RUN", calls, ["--db", "my runs.db"]).splitlines() == [
        "run 01RUN waits for approval of 2 calls:",
        '  c 1: pay {"to": "a b"}',
        "  c2: pay {}",
        "approve (every waiting call; or name some after the run id):",
        "  agentkit runs approve 01RUN --db 'my runs.db'",
        "deny (the model reads the reason):",
        "  agentkit runs deny 01RUN 'c 1' c2 --reason 'WHY' --db 'my runs.db'",
    ]


# --- approve and deny -----------------------------------------------------------------------------


def test_approve_runs_the_call_exactly_once_and_finishes_the_run(
    cli: Cli, agents: ModuleType, folder: Path, db: Path, script: Script
) -> None:
    run_id = paused(cli, agents, script)
    approved = cli("runs", "approve", run_id, "--by", "ann", "--runtime", script(["Paid bob 5."]))
    assert (approved.exit_code, approved.stdout, approved.stderr) == (0, "Paid bob 5.\n", f"run {run_id} done\n")
    assert ledger(folder) == ["5 bob"]
    stored = Store(db).load(run_id)
    assert (stored.record.status, stored.record.output) == ("done", "Paid bob 5.")
    decision = stored.approvals["call_0_0"]
    assert (decision.approved, decision.decided_by, decision.reason) == (True, "ann", None)

    again = cli("runs", "approve", run_id, "--runtime", script(["Paid twice?"]))
    assert again.exit_code == 1
    assert again.stderr == f"error: run {run_id} has no call waiting for a decision (its status: done)\n"
    assert ledger(folder) == ["5 bob"]


def test_deny_gives_the_model_the_reason_and_the_run_finishes(
    cli: Cli, agents: ModuleType, folder: Path, db: Path, script: Script
) -> None:
    run_id = paused(cli, agents, script)
    denied = cli("runs", "deny", run_id, "call_0_0", "--reason", "bob was paid", "--runtime", script(["Not paid."]))
    assert (denied.exit_code, denied.stdout, denied.stderr) == (0, "Not paid.\n", f"run {run_id} done\n")
    assert ledger(folder) == []
    stored = Store(db).load(run_id)
    # What the model was sent before its last turn: the refusal, with the reason, as the call's result.
    *sent, answer = stored.messages
    assert sent[-1] == ToolResult(call_id="call_0_0", name="pay", content="bob was paid", is_error=True)
    assert (stored.record.status, answer.text) == ("done", "Not paid.")
    decision = stored.approvals["call_0_0"]
    assert (decision.approved, decision.reason, decision.decided_by) == (False, "bob was paid", getpass.getuser())


def test_approving_some_calls_pauses_again_on_the_others(
    cli: Cli, agents: ModuleType, folder: Path, db: Path, script: Script
) -> None:
    run_id = paused(cli, agents, script, PAY_TWO)
    first = cli("runs", "approve", run_id, "call_0_0", "--runtime", script([]))
    assert (first.exit_code, first.stdout) == (3, "")
    assert first.stderr.splitlines()[:2] == [
        f"run {run_id} waits for approval of 1 call:",
        '  call_0_1: pay {"amount": 7, "to": "eve"}',
    ]
    assert ledger(folder) == ["5 bob"]
    second = cli("runs", "deny", run_id, "call_0_1", "--runtime", script(["Paid bob only."]))
    assert (second.exit_code, second.stdout) == (0, "Paid bob only.\n"), second.output
    assert ledger(folder) == ["5 bob"]
    assert Store(db).run(run_id).status == "done"


def test_no_resume_only_records_the_decision(
    cli: Cli, agents: ModuleType, folder: Path, db: Path, script: Script
) -> None:
    run_id = paused(cli, agents, script, PAY_TWO)
    recorded = cli("runs", "approve", run_id, "call_0_1", "--by", "ann", "--no-resume")
    assert recorded.exit_code == 0, recorded.output
    assert recorded.stdout == 'approved call_0_1: pay {"amount": 7, "to": "eve"} (by ann)\n'
    assert recorded.stderr == (
        f"run {run_id} awaiting_approval: continue it with agentkit runs resume {run_id} --db {db} "
        "(still waiting: call_0_0)\n"
    )
    stored = Store(db).load(run_id)
    assert (stored.record.status, len(stored.steps)) == ("awaiting_approval", 1)
    assert [c.id for c in stored.awaiting] == ["call_0_0"]
    assert stored.approvals["call_0_1"].approved is True
    assert ledger(folder) == []

    # Resumed without a terminal: the decided call runs, the other one keeps the run paused.
    resumed = cli("runs", "resume", run_id, "--runtime", script([]))
    assert resumed.exit_code == 3, resumed.output
    assert ledger(folder) == ["7 eve"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["approve", "{run}", "call_9"], "run {run} has no waiting call 'call_9'; the calls waiting: call_0_0 (pay)"),
        (["deny", "{run}", "call_0_0", "nope"], "has no waiting call 'nope'; the calls waiting: call_0_0 (pay)"),
        (["approve", "01NOPE"], "no run '01NOPE' in"),
        (["deny", "01NOPE", "call_0_0"], "no run '01NOPE' in"),
    ],
)
def test_deciding_on_a_call_that_does_not_wait_is_an_error_and_records_nothing(
    cli: Cli, agents: ModuleType, folder: Path, db: Path, script: Script, args: list[str], message: str
) -> None:
    run_id = paused(cli, agents, script)
    failed = cli("runs", *(a.format(run=run_id) for a in args), "--runtime", script(["Paid."]))
    assert (failed.exit_code, failed.stdout) == (1, "")
    assert re.fullmatch(r"error: [^\n]+\n", failed.stderr), failed.stderr
    assert message.format(run=run_id) in failed.stderr
    stored = Store(db).load(run_id)
    assert (stored.record.status, stored.approvals["call_0_0"].approved) == ("awaiting_approval", None)
    assert ledger(folder) == []


def test_a_run_whose_calls_are_all_decided_is_continued_with_resume(
    cli: Cli, agents: ModuleType, script: Script, db: Path
) -> None:
    run_id = paused(cli, agents, script)
    assert cli("runs", "approve", run_id, "--no-resume").exit_code == 0
    failed = cli("runs", "approve", run_id)
    assert failed.stderr == (
        f"error: run {run_id} has no call waiting for a decision (its status: awaiting_approval); "
        f"continue it with agentkit runs resume {run_id} --db {db}\n"
    )


# --- the terminal approver and the live answer ----------------------------------------------------

CALL = ToolCall(name="pay", arguments={"amount": 5, "to": "bob"}, id="call_0_0")


@pytest.mark.parametrize(
    ("typed", "decision"),
    [
        ("y\n", True),
        ("yes\n", True),
        ("n\nbob was paid\n", "bob was paid"),
        ("n\n\n", False),
        ("n\n", False),  # the end of input after the refusal: no reason
        ("p\n", None),
        ("", None),  # the end of input (Ctrl-D, or nothing to read): pause
        ("maybe\n\nY\n", True),
    ],
)
def test_the_terminal_approver_shows_the_call_and_reads_the_decision(typed: str, decision: bool | str | None) -> None:
    out = io.StringIO()
    assert TerminalApprover(io.StringIO(typed), out)(CALL) == decision
    shown = out.getvalue()
    assert shown.startswith('pay (call call_0_0) needs your approval; its arguments:\n  {\n    "amount": 5,\n')
    assert shown.count("approve, deny or pause? [y/n/p] ") == (3 if typed.startswith("maybe") else 1)


class _Interrupted(io.StringIO):
    def readline(self, size: int | None = -1) -> str:
        raise KeyboardInterrupt


def test_ctrl_c_at_the_question_pauses() -> None:
    out = io.StringIO()
    assert TerminalApprover(_Interrupted(), out)(CALL) is None
    assert out.getvalue().endswith("[y/n/p] \n")


@tool
def balance() -> int:
    """The account's balance."""
    return 100


def test_drive_writes_the_text_as_it_comes_each_turn_on_its_line_and_not_the_thinking() -> None:
    runtime = ScriptedRuntime(
        [
            {"text": "Checking.", "thinking": "The balance first.", "tool_calls": [{"name": "balance"}]},
            {"text": "You have 100 euros.", "thinking": "Easy."},
        ]
    )
    live = io.StringIO()
    result = asyncio.run(drive(Agent(runtime=runtime, tools=[balance]).stream("Balance?"), live=live))
    assert live.getvalue() == "Checking.\nYou have 100 euros.\n"
    assert result.output == "You have 100 euros."

    quiet = asyncio.run(drive(Agent(runtime=ScriptedRuntime(["Quiet."])).stream("Hi.")))
    assert quiet.output == "Quiet."


# --- on a real terminal ---------------------------------------------------------------------------


def test_on_a_terminal_the_call_is_asked_about_and_the_answer_streams(
    agents: ModuleType, folder: Path, db: Path, script: Script, on_a_terminal: Terminal
) -> None:
    turns = [{"text": "Paying bob.", **PAY}, "Paid bob 5 euros."]
    args = ["run", f"{agents.__name__}:Payer", "Pay bob 5.", "--runtime", script(turns), "--db", str(db)]
    code, shown = on_a_terminal(args, ["y"], folder)
    assert code == 0, shown
    assert re.fullmatch(
        rf"logs: {re.escape(str(folder / 'cache' / 'logs' / 'agentkit.log'))}\n"  # where the engine's would go
        r"Paying bob\.\n"
        r"pay \(call call_0_0\) needs your approval; its arguments:\n"
        r'  \{\n    "amount": 5,\n    "to": "bob"\n  \}\n'
        r"approve, deny or pause\? \[y/n/p\] y\n"
        r"Paid bob 5 euros\.\n"
        r"run [0-9A-Z]{26} done\n",
        shown,
    ), shown
    assert ledger(folder) == ["5 bob"]
    [record] = Store(db).runs()
    assert record.status == "done"
    assert Store(db).approvals(record.id)["call_0_0"].approved is True


def test_on_a_terminal_pausing_exits_3_and_the_run_waits(
    agents: ModuleType, folder: Path, db: Path, script: Script, on_a_terminal: Terminal
) -> None:
    args = ["run", f"{agents.__name__}:Payer", "Pay bob 5.", "--runtime", script([PAY]), "--db", str(db)]
    code, shown = on_a_terminal(args, ["p"], folder)
    assert code == 3, shown
    assert "approve, deny or pause? [y/n/p] p\n" in shown
    [record] = Store(db).runs()
    assert record.status == "awaiting_approval"
    assert f"  agentkit runs approve {record.id} --runtime " in shown
    assert shown.endswith(f"run {record.id} awaiting_approval\n")
    assert ledger(folder) == []
