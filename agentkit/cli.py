"""The `agentkit` command: run agents, serve models, probe servers, and work with stored runs.

    agentkit run myagents:WeatherAgent "Is it cold in Oslo?"
    agentkit run flow.yaml -i topic="tidal power"
    agentkit workflow validate flow.yaml
    agentkit serve vllm:default --port 8000
    agentkit doctor vllm-server:http://localhost:8000/v1
    agentkit runs list --status failed
    agentkit runs show 01JD...
    agentkit runs resume 01JD... --runtime vllm:default
    agentkit runs approve 01JD...
    agentkit runs deny 01JD... call_1_0 --reason "not on a Friday"
    agentkit runs replay 01JD... --runtime vllm:gemma-4-e4b
    agentkit runs export 01JD... --format jsonl > run.jsonl
    agentkit runs trace 01JD...

Every command takes `--db PATH` (default: `$AGENTKIT_DB`, else `runs.db` in
the user data directory). Every failure is printed as one `error: ...` line on
stderr, with exit code 1; an unexpected one (a bug, here or in the agent's
code) also gets a hint, and `agentkit -v ...` prints its traceback. A run that
pauses for approval exits 3 (`cli_run.PAUSED`) after saying how to decide. Runs
are traced (OpenTelemetry) when an OTLP endpoint or `OTEL_TRACES_EXPORTER` is
set, or `--trace` is given.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pydantic_core
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup
from typer.exceptions import TyperException

from agentkit import terminal
from agentkit.budget import Budget
from agentkit.cli_run import CommandError, agent_class, build, decide, finish, print_error, resume
from agentkit.errors import AgentkitError
from agentkit.replay import replay
from agentkit.runtimes import resolve
from agentkit.store import STATUSES, WORKFLOW_STATUSES, Store, StoredStep, default_path

__all__ = ["app", "main"]

_ROLE_STYLE = {"system": "magenta", "developer": "magenta", "user": "cyan", "assistant": "green", "tool": "blue"}


_VERBOSE = "agentkit.verbose"
"""The key in click's `Context.meta` (shared by every command of one invocation) that `-v` sets."""


class _Commands(TyperGroup):
    """The top-level group: every failure becomes one line on stderr and exit code 1."""

    def invoke(self, ctx: Any) -> Any:  # Any: typer's Context type is in its private, vendored click
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise  # typer's own: usage errors, --help, an exit code already chosen
        except (AgentkitError, CommandError) as exc:
            print_error(exc, traceback=ctx.meta.get(_VERBOSE, False))
            raise typer.Exit(1) from None
        except Exception as exc:
            verbose = ctx.meta.get(_VERBOSE, False)
            print_error(exc, traceback=verbose, unexpected=True)
            if not verbose:
                typer.echo(
                    "hint: this looks like a bug (in agentkit, or in the agent's own code); "
                    "run again as `agentkit -v ...` for the traceback",
                    err=True,
                )
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Commands,
    name="agentkit",
    help="Run agents and work with their stored runs.",
    no_args_is_help=True,
    add_completion=False,
)
runs = typer.Typer(
    name="runs",
    help="List, show, search, resume, approve, deny, replay and export stored runs.",
    no_args_is_help=True,
)
app.add_typer(runs)
workflow = typer.Typer(
    name="workflow",
    help="Check YAML workflows, print their JSON Schema, show stored workflow runs.",
    no_args_is_help=True,
)
app.add_typer(workflow)

Db = Annotated[
    Path | None,
    typer.Option(
        "--db",
        metavar="PATH",
        help="The run database (default: $AGENTKIT_DB, else runs.db in the user data directory).",
        show_default=False,
    ),
]
RuntimeURI = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        metavar="URI",
        help="A runtime URI, e.g. vllm:default or scripted:turns.json (default: the agent's).",
        show_default=False,
    ),
]
RunId = Annotated[str, typer.Argument(metavar="ID", help="The run's id (see agentkit runs list).", show_default=False)]
Trace = Annotated[
    bool,
    typer.Option(
        "--trace",
        help="Trace the run: OTLP to $OTEL_EXPORTER_OTLP_ENDPOINT, else to the console "
        "(on without this flag when that variable is set).",
    ),
]
RerunStarted = Annotated[
    bool,
    typer.Option(
        "--rerun-started",
        help="Run again the non-idempotent calls that had started when the run stopped (they may have acted).",
    ),
]
DecidedBy = Annotated[
    str | None,
    typer.Option(
        "--by",
        metavar="NAME",
        help="Who decides, stored with the decision (default: your user name).",
        show_default=False,
    ),
]
NoResume = Annotated[
    bool,
    typer.Option("--no-resume", help="Only record the decisions; continue the run later (agentkit runs resume)."),
]


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Print a failure's full traceback (before its error line).")
    ] = False,
) -> None:
    """Run agents and work with their stored runs."""
    ctx.meta[_VERBOSE] = verbose


def main() -> None:
    """The `agentkit` console script."""
    # As with `python -m`, agents in the current directory can be named (`mymodule:MyAgent`).
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    app(prog_name="agentkit")


# --- commands ---------------------------------------------------------------------------------


AllowModule = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-module",
        metavar="MODULE",
        help="A module (with its submodules) the workflow may import agents and tools from, beyond agentkit.tools "
        "and the workflow's own directory; repeatable.",
        show_default=False,
    ),
]


@app.command("run")
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
    if _is_workflow(target):
        if prompt is not None:
            raise CommandError(f"a workflow takes inputs, not a prompt: agentkit run {target} -i KEY=VALUE")
        if budget != Budget():
            raise CommandError("--max-steps, --max-tokens, --max-seconds and --max-tool-calls are for agents")
        verbose = ctx.meta.get(_VERBOSE, False)
        _run_workflow(Path(target), given or [], inputs_file, allow_module or [], runtime, db, trace, verbose=verbose)
        return
    if given or inputs_file or allow_module:
        raise CommandError("--input, --inputs and --allow-module are for workflows (a .yaml file), not agents")
    if prompt is None:
        raise CommandError(f'what should {target} do? give a prompt: agentkit run {target} "QUESTION"')
    cls = agent_class(target)
    with closing(_open(db, create=True)) as store, _tracing(trace):
        agent = build(cls, target, store, runtime)
        finish(
            agent,
            lambda deltas: agent.stream(prompt, budget=budget, deltas=deltas),
            store,
            verbose=ctx.meta.get(_VERBOSE, False),
            again=_again(runtime, db),
        )


@workflow.command("validate")
def validate_workflow(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The workflow file.")],
    allow_module: AllowModule = None,
) -> None:
    """Check a workflow file without running it: every problem with its line, column and place in the document."""
    from agentkit.workflow import Workflow

    flow = Workflow.load(file, allow_modules=allow_module or [])
    steps = sum(1 for _ in _walk_steps(flow.spec.steps))
    inputs = ", ".join(f"{name}{'' if spec.required else '?'}" for name, spec in flow.spec.inputs.items()) or "none"
    typer.echo(f"{file}: workflow {flow.name!r} is valid: {steps} step{'s' if steps != 1 else ''}, inputs: {inputs}")


@workflow.command("schema")
def workflow_schema() -> None:
    """Print the JSON Schema of workflow files (editors validate and complete YAML with it)."""
    from agentkit.workflow import schema_text

    typer.echo(schema_text(), nl=False)


@workflow.command("list")
def list_workflow_runs(
    status: Annotated[
        str | None,
        typer.Option(help=f"Only workflow runs with this status: {', '.join(WORKFLOW_STATUSES)}.", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many workflow runs, newest first.")] = 20,
    db: Db = None,
) -> None:
    """List stored workflow runs, newest first."""
    if status is not None and status not in WORKFLOW_STATUSES:
        raise CommandError(f"unknown status {status!r}; use one of {', '.join(WORKFLOW_STATUSES)}")
    with closing(_open(db)) as store:
        records = store.workflow_runs(limit=limit, status=status)
        if not records:
            terminal.console().print(f"no workflow runs{f' with status {status}' if status else ''} in {store.path}")
            return
    now = time.time()
    table = Table("id", "workflow", "status", "inputs", "updated")
    table.columns[0].no_wrap = True
    for record in records:
        table.add_row(
            record.id,
            record.name,
            terminal.status(record.status),
            terminal.one_line(terminal.brief(record.inputs, 60)),
            terminal.ago(record.updated, now),
        )
    terminal.console().print(table)


@workflow.command("show")
def show_workflow(run_id: RunId, db: Db = None) -> None:
    """Show a stored workflow run: its inputs, each step's status and output, its agent runs."""
    with closing(_open(db)) as store:
        record = store.workflow_run(run_id)
    console = terminal.console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("workflow run", record.id)
    grid.add_row("workflow", f"{record.name} ({record.file})" if record.file else record.name)
    grid.add_row("status", terminal.status(record.status))
    grid.add_row("created", terminal.local_time(record.created))
    grid.add_row("inputs", terminal.as_json(record.inputs))
    if record.output is not None:
        grid.add_row("output", record.output if isinstance(record.output, str) else terminal.as_json(record.output))
    if record.error:
        grid.add_row("error", Text(record.error, style="red"))
    console.print(grid)
    table = Table("step", "kind", "status", "time", "output or error", "agent run", box=None)
    for step in record.steps:
        took = f"{step.finished - step.started:.1f} s" if step.finished is not None and step.status != "skipped" else ""
        shown = (
            Text(step.error, style="red")
            if step.error
            else Text(terminal.one_line(terminal.brief(step.output)) if step.output is not None else "")
        )
        table.add_row(step.step, step.kind, terminal.status(step.status), took, shown, step.run_id or "")
    console.print(table)


@app.command("serve")
def serve(
    preset: Annotated[
        str, typer.Argument(metavar="URI", help="What to serve: vllm:default, vllm:gemma-4-e4b, ... or vllm:HF_ID.")
    ],
    port: Annotated[int, typer.Option(min=1, max=65535, help="The port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="The interface to listen on; 0.0.0.0 for every one.")] = "127.0.0.1",
) -> None:
    """Start a vLLM OpenAI server for a preset, wait until it is healthy, stop it cleanly on Ctrl-C."""
    from agentkit.runtimes.vllm.serve import ServedModel

    if not preset.startswith("vllm:"):
        raise CommandError(f"{preset!r}: serve starts vLLM presets and models, e.g. vllm:default")
    server = ServedModel(preset, host=host, port=port)
    # Ctrl-C and SIGTERM (`kill`, `docker stop`, systemd) both stop the server cleanly, even when
    # this process was started with SIGINT ignored (as shells start background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    typer.echo(f"starting the vLLM server for {preset} on {server.url} (about a minute on a CPU)", err=True)
    try:
        server.start()
        assert server.process is not None
        pid = server.process.pid
        typer.echo(f"ready (pid {pid}): agents can use --runtime {server.uri}; Ctrl-C stops it", err=True)
        code = server.process.wait()
        raise CommandError(f"the vLLM server exited with code {code}")
    except KeyboardInterrupt:
        typer.echo("stopping the server", err=True)
    finally:
        server.stop()


@app.command("doctor")
def doctor(
    uri: Annotated[str, typer.Argument(metavar="URI", help="A server runtime URI, e.g. ollama:gemma4:e4b.")],
) -> None:
    """Probe a live model server: reachable, its models, tool calls, JSON Schema answers (and, for vLLM, grammars)."""
    from agentkit.runtimes.doctor import probe

    report = asyncio.run(probe(uri))
    console = terminal.console()
    console.print(Text(f"{report.uri}  ({report.kind} server at {report.url})", style="bold"))
    if report.models:
        console.print(Text("models: " + ", ".join(report.models)))
    table = Table("check", "result", "detail", box=None)
    for check in report.checks:
        table.add_row(
            check.name, Text("ok" if check.ok else "FAILED", style="green" if check.ok else "red"), check.detail
        )
    console.print(table)
    assumed = Table("agentkit assumes", "", box=None)
    for name, value in vars(report.capabilities).items():
        shown = ", ".join(value) or "none" if isinstance(value, tuple) else ("yes" if value else "no")
        assumed.add_row(name.replace("_", " "), shown)
    console.print(assumed)
    if not report.reachable:
        raise typer.Exit(1)


@runs.command("list")
def list_runs(
    status: Annotated[
        str | None,
        typer.Option(help=f"Only runs with this status: {', '.join(STATUSES)}.", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs, newest first.")] = 20,
    db: Db = None,
) -> None:
    """List stored runs, newest first."""
    if status is not None and status not in STATUSES:
        raise CommandError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
    with closing(_open(db)) as store:
        records = store.runs(limit=limit, status=status)
        if not records:
            terminal.console().print(f"no runs{f' with status {status}' if status else ''} in {store.path}")
            return
        now = time.time()
        table = Table("id", "agent", "status", "steps", "updated")
        table.columns[0].no_wrap = True
        table.columns[3].justify = "right"
        for record in records:
            table.add_row(
                record.id,
                record.agent,
                terminal.status(record.status),
                str(record.steps),
                terminal.ago(record.updated, now),
            )
        terminal.console().print(table)


@runs.command("show")
def show_run(run_id: RunId, db: Db = None) -> None:
    """Show a run: its record, then its conversation with each step's runtime, model and tokens.

    The record names the budget a budget_exhausted run spent. Calls that needed approval are listed with their
    decisions (who, when, why), or as waiting.
    """
    with closing(_open(db)) as store:
        stored = store.load(run_id)
    console = terminal.console()
    console.print(terminal.record_grid(stored.record, stored.usage.prompt_tokens, stored.usage.completion_tokens))
    decisions = terminal.approvals_table(stored)
    if decisions is not None:
        console.print()
        console.print(decisions)
    console.print()
    before = _steps_by_position(stored.steps, stored.positions)
    conversation = Table.grid(padding=(0, 1))
    conversation.add_column(justify="right", style="dim", no_wrap=True)
    conversation.add_column(no_wrap=True)
    conversation.add_column()
    for position, message in zip(stored.positions, stored.messages, strict=True):
        for step in before.pop(position, []):
            conversation.add_row("", Text("step", style="bold"), terminal.step_line(step, stored.approvals))
        conversation.add_row(
            str(position), Text(message.role, style=_ROLE_STYLE[message.role]), terminal.message_line(message)
        )
    for steps in before.values():  # steps whose messages were never written (the run stopped)
        for step in steps:
            conversation.add_row("", Text("step", style="bold"), terminal.step_line(step, stored.approvals))
    console.print(conversation)


@runs.command("search")
def search_runs(
    text: Annotated[str, typer.Argument(help='What to look for (SQLite full-text syntax: words, "phrases", OR).')],
    limit: Annotated[int, typer.Option(min=1, help="At most this many messages.")] = 20,
    db: Db = None,
) -> None:
    """Find the messages that mention something, across all runs."""
    with closing(_open(db)) as store:
        hits = store.search(text, limit=limit)
    if not hits:
        terminal.console().print(f"no message matches {text!r}")
        return
    table = Table("run", "position", "snippet")
    table.columns[0].no_wrap = True
    table.columns[1].justify = "right"
    for run_id, position, snippet in hits:
        found = Text(terminal.one_line(snippet))
        found.highlight_regex(r"\[[^\]]*\]", "bold yellow")
        table.add_row(run_id, str(position), found)
    terminal.console().print(table)


@runs.command("resume")
def resume_run(
    ctx: typer.Context,
    run_id: RunId,
    runtime: RuntimeURI = None,
    rerun_started: RerunStarted = False,
    db: Db = None,
    trace: Trace = False,
) -> None:
    """Continue a stored run that stopped, with the agent class that recorded it.

    Calls still waiting for approval are asked about on a terminal; otherwise the run pauses again (exit code 3).
    """
    with closing(_open(db)) as store, _tracing(trace):
        verbose = ctx.meta.get(_VERBOSE, False)
        resume(store, run_id, runtime, verbose=verbose, rerun_started=rerun_started, again=_again(runtime, db))


WaitingCalls = Annotated[
    list[str] | None,
    typer.Argument(metavar="[CALL]...", help="Call ids (default: every call the run waits on).", show_default=False),
]


@runs.command("approve")
def approve_calls(
    ctx: typer.Context,
    run_id: RunId,
    calls: WaitingCalls = None,
    by: DecidedBy = None,
    runtime: RuntimeURI = None,
    rerun_started: RerunStarted = False,
    no_resume: NoResume = False,
    db: Db = None,
    trace: Trace = False,
) -> None:
    """Approve calls a paused run waits on, then continue it as runs resume does (exit code 3: it paused again)."""
    _decide(ctx, run_id, calls or [], True, by, runtime, rerun_started, no_resume, db, trace)


@runs.command("deny")
def deny_calls(
    ctx: typer.Context,
    run_id: RunId,
    calls: Annotated[list[str], typer.Argument(metavar="CALL...", help="The ids of the calls to refuse.")],
    reason: Annotated[
        str | None,
        typer.Option(
            metavar="TEXT", help="Why; the model reads it (default: that the call was denied).", show_default=False
        ),
    ] = None,
    by: DecidedBy = None,
    runtime: RuntimeURI = None,
    rerun_started: RerunStarted = False,
    no_resume: NoResume = False,
    db: Db = None,
    trace: Trace = False,
) -> None:
    """Refuse calls a paused run waits on, then continue it as runs resume does (exit code 3: it paused again)."""
    _decide(ctx, run_id, calls, reason or False, by, runtime, rerun_started, no_resume, db, trace)


@runs.command("replay")
def replay_run(
    run_id: RunId,
    runtime: Annotated[
        str, typer.Option("--runtime", metavar="URI", help="The runtime to put the run's steps to, e.g. vllm:default.")
    ],
    db: Db = None,
) -> None:
    """Put each step of a stored run to another runtime and compare its decisions with the stored ones."""
    with closing(_open(db)) as store:
        store.run(run_id)  # a missing run is reported before a runtime is built
        report = asyncio.run(replay(store, run_id, resolve(runtime)))
    console = terminal.console()
    table = Table("step", "stored", "replayed", "match", "valid calls", title=f"run {run_id} on {report.runtime}")
    table.columns[0].justify = "right"
    for step in report.steps:
        replayed = (
            Text(terminal.decision(step.replayed))
            if step.replayed is not None
            else Text(step.error or "failed", style="red")
        )
        match = Text("yes", style="green") if step.matches else Text("no", style="red")
        valid = f"{step.valid_calls}/{step.calls}" if step.calls else "-"
        table.add_row(str(step.index), terminal.decision(step.stored), replayed, match, valid)
    console.print(table)
    divergence = report.first_divergence
    console.print(
        "first divergence: " + (f"step {divergence}" if divergence is not None else "none (every decision matches)")
    )
    rate, calls = report.valid_call_rate, sum(s.calls for s in report.steps)
    console.print(
        f"valid-call rate: {rate:.0%} ({sum(s.valid_calls for s in report.steps)} of {calls} calls)"
        if rate is not None
        else "valid-call rate: n/a (no calls)"
    )


@runs.command("trace")
def trace_run(run_id: RunId, db: Db = None) -> None:
    """Send a stored run as a trace with its original times: OTLP to $OTEL_EXPORTER_OTLP_ENDPOINT, else the console."""
    from agentkit.tracing import emit_run

    with closing(_open(db)) as store:
        stored = store.load(run_id)
    with _tracing(True) as tracing:
        if not tracing.on:
            raise CommandError("tracing is not set up (OTEL_TRACES_EXPORTER=none): nothing was sent")
        emitted = emit_run(stored)
    if tracing.failed:
        raise typer.Exit(1)  # _tracing said why
    typer.echo(f"run {run_id}: trace {emitted.trace_id}, {emitted.spans} spans", err=True)


@runs.command("export")
def export_run(
    run_id: RunId,
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="The output format; only jsonl.")] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write here instead of to stdout.")
    ] = None,
    db: Db = None,
) -> None:
    """Export a run as JSON lines: the run's record, then each message, then each step."""
    if fmt != "jsonl":
        raise CommandError(f"unsupported export format {fmt!r}; the only format is jsonl")
    with closing(_open(db)) as store:
        lines = [json.dumps(item, ensure_ascii=False) for item in _export(store, run_id)]
    if output is None:
        for line in lines:
            typer.echo(line)
        return
    try:
        output.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror}") from None
    typer.echo(f"wrote {len(lines)} lines to {output}", err=True)


# --- running agents and workflows -------------------------------------------------------------


def _decide(
    ctx: typer.Context,
    run_id: str,
    calls: list[str],
    decision: bool | str,
    by: str | None,
    runtime: str | None,
    rerun_started: bool,
    no_resume: bool,
    db: Path | None,
    trace: bool,
) -> None:
    with closing(_open(db)) as store, _tracing(trace and not no_resume):
        decide(
            store,
            run_id,
            calls,
            decision,
            by=by,
            runtime=runtime,
            verbose=ctx.meta.get(_VERBOSE, False),
            rerun_started=rerun_started,
            no_resume=no_resume,
            again=_again(runtime, db),
        )


def _again(runtime: str | None, db: Path | None) -> list[str]:
    """The options a run was given that the commands deciding on it or resuming it need too."""
    return [*(["--runtime", runtime] if runtime else []), *(["--db", str(db)] if db is not None else [])]


def _is_workflow(target: str) -> bool:
    return target.endswith((".yaml", ".yml")) or (":" not in target and Path(target).is_file())


def _walk_steps(steps: Any) -> Iterator[Any]:
    for step in steps:
        yield step
        for body in ("then", "else_", "steps", "parallel"):
            yield from _walk_steps(getattr(step, body, None) or [])


def _run_workflow(
    file: Path,
    given: list[str],
    inputs_file: Path | None,
    allowed: list[str],
    runtime: str | None,
    db: Path | None,
    trace: bool,
    *,
    verbose: bool,
) -> None:
    from agentkit.errors import WorkflowFailed
    from agentkit.workflow import Workflow
    from agentkit.workflow.progress import Progress

    flow = Workflow.load(file, allow_modules=allowed)
    values: dict[str, Any] = {}
    if inputs_file is not None:
        try:
            loaded = json.loads(inputs_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the inputs from {inputs_file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise CommandError(f"{inputs_file} must hold a JSON object of inputs, got {type(loaded).__name__}")
        values.update(loaded)
    texts = []
    for item in given:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--input {item!r}: write KEY=VALUE, e.g. -i topic=tides")
        values[key.strip()] = value
        texts.append(key.strip())
    inputs = flow.inputs(values, as_text=texts)  # refused here, before anything runs
    progress = Progress(Console(stderr=True, markup=False, emoji=False, highlight=False))
    with closing(_open(db, create=True)) as store, _tracing(trace):
        try:
            result = flow.run(inputs, runtime=runtime, store=store, on_event=progress.show)
        except WorkflowFailed as exc:
            print_error(exc, traceback=verbose)
            typer.echo(f"workflow run {exc.workflow_run} failed (agentkit workflow show {exc.workflow_run})", err=True)
            raise typer.Exit(1) from None
    output = result.output
    typer.echo(output if isinstance(output, str) else terminal.as_json(output, indent=2))
    typer.echo(f"workflow run {result.workflow_run} done", err=True)


@contextmanager
def _tracing(asked: bool) -> Iterator[_Traced]:
    """Tracing set up for one command, when asked (`--trace`) or when the environment asks; flushed at the end.

    A set-up the environment asked for and that cannot be made warns and the
    command goes on: tracing is never why an agent did not run. Spans that
    could not be sent are one warning line (OpenTelemetry's own retry
    messages are kept off the terminal).
    """
    from agentkit.errors import TracingError
    from agentkit.tracing.exporting import ENDPOINTS, configure, shutdown, wanted

    traced = _Traced()
    if not (asked or wanted()):
        yield traced
        return
    try:
        traced.on = configure() is not None
    except TracingError as exc:
        if asked:
            raise
        typer.echo(f"warning: tracing is off: {exc}", err=True)
        yield traced
        return
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    try:
        yield traced
    finally:
        delivery = shutdown()
        if delivery.failed:
            traced.failed = delivery.failed
            where = next((os.environ[name] for name in reversed(ENDPOINTS) if os.environ.get(name)), "the collector")
            typer.echo(
                f"warning: {delivery.failed} of {delivery.failed + delivery.sent} spans could not be sent to {where}",
                err=True,
            )


@dataclass
class _Traced:
    on: bool = False
    """Whether this command's spans go somewhere."""
    failed: int = 0
    """Spans the exporter could not send."""


# --- reading the store ------------------------------------------------------------------------


def _open(db: Path | None, *, create: bool = False) -> Store:
    """The store at `db`; reading commands refuse to create one (a mistyped path would show nothing)."""
    path = db if db is not None else default_path()
    if not create and not path.exists():
        raise CommandError(f"no run database at {path}; give its path with --db or AGENTKIT_DB")
    return Store(path)


def _export(store: Store, run_id: str) -> Iterator[dict[str, Any]]:
    stored = store.load(run_id)
    yield {"type": "run", **pydantic_core.to_jsonable_python(stored.record)}
    for position, message in zip(stored.positions, stored.messages, strict=True):
        yield {"type": "message", "position": position, "message": pydantic_core.to_jsonable_python(message)}
    for step in stored.steps:
        response = step.response
        yield {
            "type": "step",
            "index": step.index,
            "position": step.position,
            "runtime": step.runtime,
            "model": step.model,
            "dialect": step.dialect,
            "grammar_hash": step.response.metadata.get("grammar_hash"),
            "seed": step.seed,
            "created": step.created,
            "finish_reason": response.finish_reason,
            "raw_text": response.raw_text,
            "sampling": pydantic_core.to_jsonable_python(step.sampling),
            "usage": pydantic_core.to_jsonable_python(response.usage),
            "timings": dict(response.timings),
            "metadata": dict(response.metadata),
            "pending": [c.id for c in step.pending],
            "started": [c.id for c in step.started],
        }


def _steps_by_position(
    steps: tuple[StoredStep, ...], message_positions: tuple[int, ...]
) -> dict[int, list[StoredStep]]:
    """Where each step is shown: before its turn's message.

    A turn that could not be read has no message; it is shown before the
    feedback the loop wrote after it, which comes right before the next
    step's turn (or last).
    """
    positions = set(message_positions)
    after = max(positions, default=-1) + 1
    at: dict[int, list[StoredStep]] = {}
    for step in reversed(steps):
        if step.position is not None:
            after = step.position
        elif after - 1 in positions:
            after -= 1
        at.setdefault(after, []).insert(0, step)
    return at


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def reference_markdown() -> str:
    """Every command with its arguments and options, as markdown (docs/cli.md's reference).

    Regenerate the page's section with `python -c "from agentkit.cli import reference_markdown as r; print(r())"`.
    """
    import typer.main

    def walk(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
        if hasattr(command, "commands"):  # a group: its own options (agentkit -v), then its commands
            own = [(path, command)] if any(p.name != "help" for p in command.params) else []
            return own + [found for name, sub in command.commands.items() for found in walk(sub, [*path, name])]
        return [(path, command)]

    parts = []
    for path, command in walk(typer.main.get_command(app), ["agentkit"]):
        lines = [f"### `{' '.join(path)}`", "", (command.help or "").strip(), ""]
        params = [p for p in command.params if not getattr(p, "hidden", False) and p.name != "help"]
        if params:
            lines += ["| argument or option | what |", "|---|---|"]
            for param in params:
                if param.param_type_name == "argument":
                    name = f"`{param.metavar or param.name.upper()}`"
                else:
                    name = ", ".join(f"`{opt}`" for opt in (*param.opts, *param.secondary_opts))
                    if not getattr(param, "is_flag", False) and param.metavar:
                        name += f" `{param.metavar}`"
                default = param.default
                shown = (
                    f" (default: `{default}`)"
                    if isinstance(default, str | int) and not isinstance(default, bool)
                    else ""
                )
                what = (param.help or "").strip().replace("|", "\\|")
                lines.append(f"| {name} | {what}{shown} |")
            lines.append("")
        parts.append("\n".join(lines))
    return "\n".join(parts)


if __name__ == "__main__":
    main()
