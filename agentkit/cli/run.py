"""`agentkit run`, and running agents for every command that does: build one, run it on the terminal, end.

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
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import pydantic_core
import typer

from agentkit.agent import Agent
from agentkit.budget import Budget
from agentkit.cli.options import (
    AllowModule,
    CommandError,
    Db,
    Plan,
    RuntimeURI,
    Trace,
    carried_options,
    is_verbose,
    open_store,
    tracing,
)
from agentkit.cli.printing import as_json, print_error, say, stderr
from agentkit.cli.workflows import run_workflow
from agentkit.errors import AgentkitError, AwaitingApproval
from agentkit.events import ModelTurn, RunEvent, RunFinished, RunPaused, RunResult
from agentkit.messages import ToolCall
from agentkit.runtime import TextDelta

if TYPE_CHECKING:
    from agentkit.store import Store

__all__ = [
    "PAUSED",
    "TerminalApprover",
    "agent_class",
    "build",
    "decide",
    "drive",
    "finish",
    "is_workflow",
    "paused_text",
    "resume",
    "run_agent",
]

PAUSED = 3
"""The exit code of a command whose run paused for approval (failures exit 1)."""


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
        arguments = as_json(dict(call.arguments), indent=2).replace("\n", "\n  ")
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


# --- the run command ---------------------------------------------------------------------------


def run_agent(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="An agent class (MODULE:CLASS, e.g. myagents:WeatherAgent) or a workflow file (.yaml).",
        ),
    ],
    prompt: Annotated[
        str | None, typer.Argument(help="What to ask the agent (an agent only).", show_default=False)
    ] = None,
    given: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", metavar="KEY=VALUE", help="A workflow input; repeatable.", show_default=False),
    ] = None,
    inputs_file: Annotated[
        Path | None,
        typer.Option("--inputs", metavar="FILE", help="A workflow's inputs as a JSON object.", show_default=False),
    ] = None,
    allow_module: AllowModule = None,
    max_steps: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Most model turns (default: the agent's max_steps).", show_default=False),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="N", help="Most tokens, prompt plus completion over every turn.", show_default=False
        ),
    ] = None,
    max_seconds: Annotated[
        float | None,
        typer.Option(metavar="S", help="Most seconds of wall time (more than 0).", show_default=False),
    ] = None,
    max_tool_calls: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Most tool calls.", show_default=False)
    ] = None,
    plan: Plan = None,
    runtime: RuntimeURI = None,
    db: Db = None,
    trace: Trace = False,
) -> None:
    """Run an agent on a prompt, or a workflow on its inputs, and store the run; prints the output (ids: stderr).

    On a terminal, a text answer is printed as the model writes it, and calls of tools that need approval are
    asked about (y, n or p). Exit code 1: the run failed or spent a --max-* budget (budget_exhausted);
    3: it paused for approval (see agentkit runs approve and deny).
    """
    if max_seconds is not None and not max_seconds > 0:
        raise CommandError(f"--max-seconds must be more than 0, got {max_seconds:g}")
    budget = Budget(max_steps=max_steps, max_tokens=max_tokens, max_seconds=max_seconds, max_tool_calls=max_tool_calls)
    if is_workflow(target):
        if prompt is not None:
            raise CommandError(f"a workflow takes inputs, not a prompt: agentkit run {target} -i KEY=VALUE")
        if budget != Budget() or plan is not None:
            raise CommandError(
                "--max-steps, --max-tokens, --max-seconds, --max-tool-calls and --plan are for agents "
                "(a workflow's agents set planning: in the file)"
            )
        allowed = allow_module or []
        run_workflow(Path(target), given or [], inputs_file, allowed, runtime, db, trace, verbose=is_verbose(ctx))
        return
    if given or inputs_file or allow_module:
        raise CommandError("--input, --inputs and --allow-module are for workflows (a .yaml file), not agents")
    if prompt is None:
        raise CommandError(f'what should {target} do? give a prompt: agentkit run {target} "QUESTION"')
    cls = agent_class(target)
    with closing(open_store(db, create=True)) as store, tracing(trace):
        agent = build(cls, target, store, runtime, planning=plan)
        finish(
            agent,
            lambda deltas: agent.stream(prompt, budget=budget, deltas=deltas),
            store,
            verbose=is_verbose(ctx),
            again=carried_options(runtime, db),
        )


def is_workflow(target: str) -> bool:
    """Whether `agentkit run TARGET` names a workflow file rather than an agent class."""
    return target.endswith((".yaml", ".yml")) or (":" not in target and Path(target).is_file())


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


def build(
    cls: type[Agent[Any]],
    path: str,
    store: Store,
    runtime: str | None,
    *,
    planning: bool | None = None,
    ask: bool = True,
) -> Agent[Any]:
    """The agent, recording into `store`; on a terminal (and `ask`) it asks there about calls that need approval."""
    given: dict[str, Any] = {"store": store}
    if runtime is not None:
        given["runtime"] = runtime
    if planning is not None:
        given["planning"] = planning
    if ask and _terminal(sys.stdin):  # else no one could answer: a call that needs approval pauses the run
        given["approve"] = TerminalApprover(sys.stdin, stderr())
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
        say(paused_text(exc.run_id, exc.calls, again))
        say(f"run {exc.run_id} awaiting_approval")
        raise typer.Exit(PAUSED) from None
    except AgentkitError as exc:
        if exc.partial is None:  # nothing was stored: the run did not start
            raise
        run_id = exc.partial.run_id
        print_error(exc, traceback=verbose)
        try:
            status: str = store.run(run_id).status
        except AgentkitError:  # the store itself is what failed
            status = "stopped (its status could not be read back)"
        say(f"run {run_id} {status}")
        raise typer.Exit(1) from None
    output = result.output
    if live is None:  # else it was printed as it came
        typer.echo(output if isinstance(output, str) else as_json(pydantic_core.to_jsonable_python(output), indent=2))
    say(f"run {result.run_id} done")


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
    waiting = "".join(f"\n  {c.id}: {c.name} {as_json(dict(c.arguments))}" for c in calls)
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
    if missing and not agent.toolsets:  # a toolset's tools are known once it is opened, by the run
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
            f"{as_json(dict(call.arguments))}"
            + (f" (by {decided_by})" if decided_by else "")
            + (f": {reason}" if reason else "")
        )
    left = [c for c in waiting if c not in chosen]
    say(
        f"run {run_id} awaiting_approval: continue it with {resume_command}"
        + (f" (still waiting: {', '.join(left)})" if left else "")
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
