"""Approvals that pause a run, stored write-ahead, decided later in any process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agentkit import Agent, AwaitingApproval, ToolCall, ToolResult, tool
from agentkit.errors import StoreError
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store

SENT: list[str] = []
ADDED: list[int] = []


@tool(requires_approval=True, idempotent=False)
def send(to: str) -> str:
    """Send a message.

    Args:
        to: Who gets it.
    """
    SENT.append(to)
    return f"sent to {to}"


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    ADDED.append(a + b)
    return a + b


TURN = {
    "tool_calls": [
        {"name": "send", "arguments": {"to": "bob"}, "id": "s1"},
        {"name": "add", "arguments": {"a": 1, "b": 2}, "id": "a1"},
    ]
}


@pytest.fixture(autouse=True)
def _clear() -> None:
    SENT.clear()
    ADDED.clear()


def agent(store: Store | None, turns: list[Any], **kwargs: Any) -> Agent[str]:
    return Agent(tools=[send, add], runtime=ScriptedRuntime(turns), store=store, **kwargs)


def test_a_call_without_an_approver_pauses_the_run_and_resume_runs_it_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    with pytest.raises(AwaitingApproval) as paused:
        agent(store, [TURN]).run("send it")
    run_id = paused.value.run_id
    assert [(c.name, c.arguments, c.id) for c in paused.value.calls] == [("send", {"to": "bob"}, "s1")]
    assert store.run(run_id).status == "awaiting_approval"
    assert [c.id for c in store.load(run_id).awaiting] == ["s1"]
    # The call that needed no approval ran (and is stored); the other did not.
    assert (SENT, ADDED) == ([], [3])

    later = agent(store, ["Sent, and 1 + 2 = 3."])  # another agent object: as in another process
    result = later.resume(run_id, approvals={"s1": True}, decided_by="alice")
    assert result.output == "Sent, and 1 + 2 = 3."
    assert (SENT, ADDED) == (["bob"], [3])  # each call ran exactly once
    decision = store.approvals(run_id)["s1"]
    assert (decision.approved, decision.decided_by) == (True, "alice")
    assert decision.created > 0
    assert store.run(run_id).status == "done"
    results = [m for m in result.messages if isinstance(m, ToolResult)]
    assert [(r.call_id, r.content) for r in results] == [("s1", "sent to bob"), ("a1", 3)]


def test_a_denied_call_becomes_an_error_result_the_model_reads(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    with pytest.raises(AwaitingApproval) as paused:
        agent(store, [TURN]).run("send it")
    runtime = ScriptedRuntime(["I did not send it."])
    resumed = Agent(tools=[send, add], runtime=runtime, store=store)
    resumed.resume(paused.value.run_id, approvals={"s1": "bob is on leave"})
    seen = [m for m in runtime.requests[0].messages if isinstance(m, ToolResult) and m.call_id == "s1"]
    assert seen == [ToolResult(call_id="s1", name="send", content="bob is on leave", is_error=True)]
    assert SENT == []
    assert store.approvals(paused.value.run_id)["s1"].approved is False


def test_a_decision_on_a_call_that_does_not_wait_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    with pytest.raises(AwaitingApproval) as paused:
        agent(store, [TURN]).run("send it")
    run_id = paused.value.run_id
    with pytest.raises(StoreError, match="no call 'a1' that waits for approval; waiting: s1"):
        agent(store, ["x"]).resume(run_id, approvals={"a1": True})
    store.decide(run_id, "s1", False, reason="no")
    with pytest.raises(StoreError, match="already denied"):
        store.decide(run_id, "s1", True)


def test_undecided_calls_keep_waiting_across_a_resume(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    with pytest.raises(AwaitingApproval) as paused:
        agent(store, [TURN]).run("send it")
    with pytest.raises(AwaitingApproval) as again:
        agent(store, ["never asked"]).resume(paused.value.run_id)
    assert [c.id for c in again.value.calls] == ["s1"]
    assert ADDED == [3]  # not run again


@pytest.mark.parametrize(
    ("answer", "ran", "content"),
    [
        (True, ["bob"], "sent to bob"),
        (False, [], "the call to 'send' was not approved"),
        ("not today", [], "not today"),
    ],
)
def test_the_approve_callback_decides_and_its_decision_is_stored(
    tmp_path: Path, answer: bool | str, ran: list[str], content: str
) -> None:
    store = Store(tmp_path / "runs.db")
    asked: list[ToolCall] = []

    def approve(call: ToolCall) -> bool | str:
        asked.append(call)
        return answer

    result = agent(store, [TURN, "ok"], approve=approve).run("send it")
    assert [c.id for c in asked] == ["s1"]  # only the tool that requires approval
    assert ran == SENT
    (sent,) = [m for m in result.messages if isinstance(m, ToolResult) and m.call_id == "s1"]
    assert sent.content == content
    decision = store.approvals(result.run_id)["s1"]
    assert (decision.approved, decision.decided_by) == (answer is True, "callback")


def test_a_callback_that_defers_pauses_a_stored_run(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    with pytest.raises(AwaitingApproval):
        agent(store, [TURN], approve=lambda call: None).run("send it")


def test_without_a_store_nothing_could_resume_so_the_call_is_refused() -> None:
    result = agent(None, [TURN, "ok"]).run("send it")
    (sent,) = [m for m in result.messages if isinstance(m, ToolResult) and m.call_id == "s1"]
    assert sent.is_error
    assert "neither an approver nor a store" in sent.content
    assert SENT == []


def test_invalid_arguments_need_no_approval() -> None:
    turn = {"tool_calls": [{"name": "send", "arguments": {"to": 5}, "id": "s1"}]}
    result = agent(None, [turn, "ok"], approve=lambda call: pytest.fail("asked")).run("send it")
    (sent,) = [m for m in result.messages if isinstance(m, ToolResult)]
    assert sent.is_error
    assert "ToolArgumentsError" in sent.content


# --- exactly once, with a real SIGKILL ----------------------------------------------------

SCRIPT = """
import os, signal, sys
from agentkit import Agent, AwaitingApproval, tool
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import RunRecorder, Store

mode, db, log = sys.argv[1:4]

@tool(requires_approval=True, idempotent=False)
def transfer(amount: int) -> str:
    '''Move money.

    Args:
        amount: How much.
    '''
    with open(log, "a") as f:
        f.write(f"{amount}\\n")
    if mode == "die-in-tool":
        os.kill(os.getpid(), signal.SIGKILL)
    return "moved"

def die_after(cls, name):
    original = getattr(cls, name)
    def dying(*args, **kwargs):
        original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # right after the commit
    setattr(cls, name, dying)

store = Store(db)
if mode == "start":
    turns = [{"tool_calls": [{"name": "transfer", "arguments": {"amount": 5}, "id": "t1"}]}]
    try:
        Agent(tools=[transfer], runtime=ScriptedRuntime(turns), store=store).run("pay")
    except AwaitingApproval as paused:
        print(paused.run_id)
    sys.exit(0)
run_id = sys.argv[4]
if mode == "approve-then-die":
    die_after(Store, "decide")
if mode == "die-after-result":
    die_after(RunRecorder, "tool_result")
agent = Agent(tools=[transfer], runtime=ScriptedRuntime(["paid"]), store=store)
approvals = {"t1": True} if mode in ("approve-then-die", "die-after-result", "die-in-tool") else None
print(agent.resume(run_id, approvals=approvals, decided_by="ops").output)
"""


def _script(tmp_path: Path) -> tuple[list[str], Path]:
    path = tmp_path / "pay.py"
    path.write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    return [sys.executable, str(path)], tmp_path / "transfers.log"


def _call(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120, check=False)


def _lines(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_an_approved_call_runs_exactly_once_when_the_process_is_killed_after_the_approval(tmp_path: Path) -> None:
    command, log = _script(tmp_path)
    db = str(tmp_path / "runs.db")
    started = _call(command, "start", db, str(log))
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()

    killed = _call(command, "approve-then-die", db, str(log), run_id)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _lines(log) == []  # killed before the call ran
    assert Store(db).approvals(run_id)["t1"].approved is True  # but the approval was kept

    resumed = _call(command, "resume", db, str(log), run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "paid"
    assert _lines(log) == ["5"]  # it ran once, on the recorded approval
    record = Store(db).approvals(run_id)["t1"]
    assert (record.approved, record.decided_by) == (True, "ops")

    again = _call(command, "resume", db, str(log), run_id)
    assert again.returncode != 0
    assert "is done" in again.stderr
    assert _lines(log) == ["5"]


def test_a_call_killed_after_its_result_was_stored_is_not_run_again(tmp_path: Path) -> None:
    command, log = _script(tmp_path)
    db = str(tmp_path / "runs.db")
    run_id = _call(command, "start", db, str(log)).stdout.strip()
    killed = _call(command, "die-after-result", db, str(log), run_id)
    assert killed.returncode == -signal.SIGKILL
    assert _lines(log) == ["5"]
    resumed = _call(command, "resume", db, str(log), run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert _lines(log) == ["5"]


def test_a_call_killed_while_it_ran_is_not_run_again_without_the_users_word(tmp_path: Path) -> None:
    command, log = _script(tmp_path)
    db = str(tmp_path / "runs.db")
    run_id = _call(command, "start", db, str(log)).stdout.strip()
    assert _call(command, "die-in-tool", db, str(log), run_id).returncode == -signal.SIGKILL
    refused = _call(command, "resume", db, str(log), run_id)
    assert refused.returncode != 0
    assert "may have had effects" in refused.stderr
    assert _lines(log) == ["5"]
