"""Running agents for the `agentkit` commands: build one, run it on the terminal, end the command.

    agent = build(agent_class("payments:Payer"), "payments:Payer", store, runtime=None)
    finish(agent, lambda deltas: agent.stream("Pay the invoice.", deltas=deltas), store, verbose=False)

`build` gives the agent a `TerminalApprover` when stdin is a terminal, so a
call of a `requires_approval` tool is asked about there; otherwise such a
call pauses the run. `finish` drives the run's events (`drive`: on a
terminal, a text answer is printed as the model writes it), then prints the
output and ends the command: exit code 1 when the run failed, `PAUSED` (3)
when it paused, after `paused_text` has said which calls wait and the exact
commands that decide them (`decide`: `agentkit runs approve` and `deny`).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import importlib
import shlex
import sys
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import pydantic_core
import typer

from agentkit import terminal
from agentkit.agent import Agent
from agentkit.errors import AgentkitError, AwaitingApproval
from agentkit.events import ModelTurn, RunEvent, RunFinished, RunPaused, RunResult
from agentkit.messages import ToolCall
from agentkit.runtime import TextDelta

if TYPE_CHECKING:
    from agentkit.store import Store

__all__ = [
    "PAUSED",
    "CommandError",
    "TerminalApprover",
    "agent_class",
    "build",
    "decide",
    "drive",
    "finish",
    "paused_text",
    "print_error",
    "resume",
]

PAUSED = 3
"""The exit code of a command whose run paused for approval (failures exit 1)."""


class CommandError(Exception):
    """A problem with what the command was asked to do (a bad import path, a missing file)."""


class TerminalApprover:
    """Asks a person at the terminal about each call of a `requires_approval` tool.

    Shows the call (its tool, its arguments as JSON, its id) and asks:
    approve (`y`), deny (`n`, then an optional reason, which the model reads)
    or pause (`p`: the run is stored as `awaiting_approval`, to be decided
    later). The end of input or Ctrl-C at the question pauses as well.

    Args:
        stdin: Where the answers are read, a line each.
        out: Where the call and the questions are written (stderr: stdout is the answer's).
    """

    def __init__(self, stdin: TextIO, out: TextIO) -> None:
        self.stdin = stdin
        self.out = out

    def __call__(self, call: ToolCall) -> bool | str | None:
        arguments = terminal.as_json(dict(call.arguments), indent=2).replace("\n", "\n  ")
        self._say(f"{call.name} (call {call.id}) needs your approval; its arguments:\n  {arguments}\n")
        while True:
            answer = self._ask("approve, deny or pause? [y/n/p] ")
            choice = answer.strip().lower() if answer is not None else "p"
            if choice in ("y", "yes"):
                return True
            if choice in ("n", "no"):
                reason = (self._ask("why (the model reads it; Enter for no reason)? ") or "").strip()
                return reason or False
            if choice in ("p", "pause"):
                return None
            self._say("answer y to run the call, n to refuse it, p to decide later\n")

    def _ask(self, question: str) -> str | None:
        """One line from the person; None at the end of input or on Ctrl-C."""
        self._say(question)
        try:
            line = self.stdin.readline()
        except KeyboardInterrupt:
            line = ""
        if not line:
            self._say("\n")  # the question's line was not ended by the person
        return line or None

    def _say(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


# --- building and running ---------------------------------------------------------------------


def agent_class(path: str) -> type[Agent[Any]]:
    """The Agent subclass at `module:Class`."""
    module_name, sep, qualname = path.partition(":")
    if not (sep and module_name and qualname):
        raise CommandError(f"{path!r} is not an agent's import path; write MODULE:CLASS, e.g. myagents:WeatherAgent")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise CommandError(
                f"no module {module_name!r} (looked in the current directory and on PYTHONPATH)"
            ) from None
        raise CommandError(f"importing {module_name} failed: {exc}") from None
    except Exception as exc:  # the user's module raised while it was imported
        raise CommandError(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    found: Any = module
    for name in qualname.split("."):
        if not hasattr(found, name):
            raise CommandError(f"module {module_name} has no {qualname!r}")
        found = getattr(found, name)
    if not (isinstance(found, type) and issubclass(found, Agent)):
        raise CommandError(f"{path} is a {type(found).__name__}, not an Agent subclass")
    return found


def build(cls: type[Agent[Any]], path: str, store: Store, runtime: str | None) -> Agent[Any]:
    """The agent, recording into `store`; on a terminal it asks there about calls that need approval."""
    given: dict[str, Any] = {"store": store}
    if runtime is not None:
        given["runtime"] = runtime
    if _terminal(sys.stdin):  # else no one could answer: a call that needs approval pauses the run
        given["approve"] = TerminalApprover(sys.stdin, sys.stderr)
    try:
        return cls(**given)
    except AgentkitError:
        raise
    except Exception as exc:  # the user's constructor
        raise CommandError(f"cannot build {path}: {type(exc).__name__}: {exc}") from None


def finish(
    agent: Agent[Any],
    start: Callable[[bool], AsyncGenerator[RunEvent, None]],
    store: Store,
    *,
    verbose: bool,
    again: Sequence[str] = (),
) -> None:
    """Run `start(deltas)`'s events to the end, then print the output (stdout) and the run's id (stderr).

    On a terminal, a text answer is printed as the model writes it. A failed
    run exits 1; a paused one says which calls wait and how to decide (its
    commands given the options `again`: `--db`, `--runtime`), and exits 3.
    """
    live = sys.stdout if agent.output_type is str and _terminal(sys.stdout) else None
    try:
        result = asyncio.run(drive(start(live is not None), live=live))
    except AwaitingApproval as exc:
        typer.echo(paused_text(exc.run_id, exc.calls, again), err=True)
        typer.echo(f"run {exc.run_id} awaiting_approval", err=True)
        raise typer.Exit(PAUSED) from None
    except AgentkitError as exc:
        if exc.partial is None:  # nothing was stored: the run did not start
            raise
        run_id = exc.partial.run_id
        print_error(exc, traceback=verbose)
        try:
            status = store.run(run_id).status
        except AgentkitError:  # the store itself is what failed
            status = "stopped (its status could not be read back)"
        typer.echo(f"run {run_id} {status}", err=True)
        raise typer.Exit(1) from None
    output = result.output
    if live is None:  # else it was printed as it came
        typer.echo(
            output if isinstance(output, str) else terminal.as_json(pydantic_core.to_jsonable_python(output), indent=2)
        )
    typer.echo(f"run {result.run_id} done", err=True)


async def drive(events: AsyncGenerator[RunEvent, None], *, live: TextIO | None = None) -> RunResult[Any]:
    """Drain a run's `events` to its result, as `agentkit.loop.final_result` does.

    With `live`, the model's text is written there as it decodes, each turn's
    ending its line (a turn that calls tools can say something first); the
    thinking is not shown.

    Raises:
        AwaitingApproval: the run paused for decisions on calls.
    """
    mid_line = False
    async with contextlib.aclosing(events):
        async for event in events:
            if live is not None and isinstance(event, TextDelta) and event.text:
                live.write(event.text)
                live.flush()
                mid_line = not event.text.endswith("\n")
            elif live is not None and isinstance(event, ModelTurn) and mid_line:
                live.write("\n")  # before a tool's approval question, or as the answer's last newline
                live.flush()
                mid_line = False
            elif isinstance(event, RunFinished):
                return event.result
            elif isinstance(event, RunPaused):
                raise AwaitingApproval(event.run_id, event.calls, event.partial)
    raise AssertionError("the run ended without a result")  # pragma: no cover - the loop raises instead


def paused_text(run_id: str, calls: Sequence[ToolCall], again: Sequence[str] = ()) -> str:
    """What a paused run tells: the calls that wait (id, tool, arguments) and the commands that decide them.

    `again` are options added to each command (the `--db` and `--runtime` the run was given).
    """
    tail = f" {shlex.join(again)}" if again else ""
    ids = " ".join(shlex.quote(c.id) for c in calls)
    waiting = "".join(f"\n  {c.id}: {c.name} {terminal.as_json(dict(c.arguments))}" for c in calls)
    return (
        f"run {run_id} waits for approval of {len(calls)} call{'s' if len(calls) != 1 else ''}:{waiting}\n"
        f"approve (every waiting call; or name some after the run id):\n"
        f"  agentkit runs approve {run_id}{tail}\n"
        f"deny (the model reads the reason):\n"
        f"  agentkit runs deny {run_id} {ids} --reason 'WHY'{tail}"
    )


# --- resuming and deciding --------------------------------------------------------------------


def resume(
    store: Store,
    run_id: str,
    runtime: str | None,
    *,
    verbose: bool,
    rerun_started: bool,
    again: Sequence[str] = (),
    approvals: Mapping[str, bool | str] | None = None,
    decided_by: str | None = None,
) -> None:
    """Continue a stored run with the agent class that recorded it, after storing `approvals` (`runs resume`)."""
    record = store.run(run_id)
    if record.agent.startswith("__main__:"):
        raise CommandError(
            f"run {run_id} was recorded by {record.agent.partition(':')[2]}, defined in a script run as "
            "__main__; resume it from that script with agent.resume(run_id)"
        )
    agent = build(agent_class(record.agent), record.agent, store, runtime)
    missing = sorted({t.name for t in record.tools} - {t.name for t in agent.bound_tools})
    if missing:
        raise CommandError(
            f"run {run_id} offered the tools {missing}, which {record.agent} does not have; "
            "resume it in code with an agent that has them"
        )
    finish(
        agent,
        lambda deltas: agent.stream_resume(
            run_id, approvals=approvals, decided_by=decided_by, rerun_started=rerun_started, deltas=deltas
        ),
        store,
        verbose=verbose,
        again=again,
    )


def decide(
    store: Store,
    run_id: str,
    calls: Sequence[str],
    decision: bool | str,
    *,
    by: str | None,
    runtime: str | None,
    verbose: bool,
    rerun_started: bool,
    no_resume: bool,
    again: Sequence[str] = (),
) -> None:
    """`runs approve` and `runs deny`: `decision` (True, False or a reason) on `calls` (none: every waiting call).

    The calls must wait for a decision. The decisions are stored, then the
    run goes on (`resume`); with `no_resume` they are only stored, and printed.
    """
    stored = store.load(run_id)
    resume_command = shlex.join(["agentkit", "runs", "resume", run_id, *again])
    waiting = {c.id: c for c in stored.awaiting}
    if not waiting:
        status = stored.record.status
        raise CommandError(
            f"run {run_id} has no call waiting for a decision (its status: {status})"
            + (f"; continue it with {resume_command}" if status == "awaiting_approval" else "")
        )
    chosen = list(dict.fromkeys(calls)) or list(waiting)
    unknown = [c for c in chosen if c not in waiting]
    if unknown:
        listing = ", ".join(f"{c.id} ({c.name})" for c in waiting.values())
        raise CommandError(
            f"run {run_id} has no waiting call {', '.join(map(repr, unknown))}; the calls waiting: {listing}"
        )
    decided_by = by or _user()
    if not no_resume:
        approvals = dict.fromkeys(chosen, decision)
        resume(
            store,
            run_id,
            runtime,
            verbose=verbose,
            rerun_started=rerun_started,
            again=again,
            approvals=approvals,
            decided_by=decided_by,
        )
        return
    reason = decision if isinstance(decision, str) else None
    for call_id in chosen:
        store.decide(run_id, call_id, decision is True, reason=reason, by=decided_by)
        call = waiting[call_id]
        typer.echo(
            f"{'approved' if decision is True else 'denied'} {call_id}: {call.name} "
            f"{terminal.as_json(dict(call.arguments))}"
            + (f" (by {decided_by})" if decided_by else "")
            + (f": {reason}" if reason else "")
        )
    left = [c for c in waiting if c not in chosen]
    typer.echo(
        f"run {run_id} awaiting_approval: continue it with {resume_command}"
        + (f" (still waiting: {', '.join(left)})" if left else ""),
        err=True,
    )


def _terminal(stream: TextIO | None) -> bool:
    """Whether `stream` is a terminal (a process started with it closed has None)."""
    return stream is not None and stream.isatty()


def _user() -> str | None:
    """The OS user's name, who decides by default."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no name in the environment and none for the uid
        return None


def print_error(exc: BaseException, *, traceback: bool = False, unexpected: bool = False) -> None:
    """`error: ...` on stderr; an unexpected exception is named by its type, `traceback` adds the traceback."""
    from agentkit.errors import WorkflowSpecError

    if traceback:
        import traceback as tb

        typer.echo("".join(tb.format_exception(exc)).rstrip(), err=True)
    # A workflow's problems are one per line, each with its file:line:column.
    text = str(exc) if isinstance(exc, WorkflowSpecError) else terminal.one_line(str(exc))
    if unexpected:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    typer.echo(f"error: {text}", err=True)
