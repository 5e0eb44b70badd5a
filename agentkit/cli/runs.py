"""`agentkit runs`: list, show, search, resume, approve, deny, replay, trace, export and merge stored runs.

agentkit runs list --status failed
agentkit runs show 01JD...
agentkit runs approve 01JD...
agentkit runs export 01JD... --format jsonl > run.jsonl
agentkit runs merge all.db shard-1.db shard-2.db
"""

from __future__ import annotations

import asyncio
import json
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table
from rich.text import Text

from agentkit.cli import printing
from agentkit.cli.options import (
    CommandError,
    Db,
    DecidedBy,
    NoResume,
    RerunStarted,
    RunId,
    RuntimeURI,
    Trace,
    carried_options,
    is_verbose,
    list_stored,
    open_store,
    tracing,
)
from agentkit.cli.run import decide, resume
from agentkit.replay import replay
from agentkit.runtimes import resolve
from agentkit.store import STATUSES, StoredStep
from agentkit.store.merge import MergeCounts, merge

__all__ = ["group"]

group = typer.Typer(
    name="runs",
    help="List, show, search, resume, approve, deny, replay, export and merge stored runs.",
    no_args_is_help=True,
)


@group.callback()
def _runs(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand in ("resume", "approve", "deny", "replay"):  # they may start a model
        printing.announce_logs()


_ROLE_STYLE = {"system": "magenta", "developer": "magenta", "user": "cyan", "assistant": "green", "tool": "blue"}


@group.command("list")
def list_runs(
    status: Annotated[
        str | None,
        typer.Option(help=f"Only runs with this status: {', '.join(STATUSES)}.", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs, newest first.")] = 20,
    db: Db = None,
) -> None:
    """List stored runs, newest first."""
    list_stored(
        "runs",
        status,
        STATUSES,
        db,
        lambda store: store.runs(limit=limit, status=status),
        ("id", "agent", "status", Column("steps", justify="right"), "updated"),
        lambda record, now: (
            record.id,
            record.agent,
            printing.status(record.status),
            str(record.steps),
            printing.ago(record.updated, now),
        ),
    )


@group.command("show")
def show_run(run_id: RunId, db: Db = None) -> None:
    """Show a run: its record, then its conversation with each step's runtime, model and tokens.

    The record names the budget a budget_exhausted run spent. Calls that needed approval are listed with their
    decisions (who, when, why), or as waiting. A plan (planning=True) shows as its graph: each call numbered $1…$N,
    the calls whose results it uses (after $1, $2) and its outcome (ok, the error, or not run yet).
    """
    with closing(open_store(db)) as store:
        stored = store.load(run_id)
    console = printing.console()
    console.print(printing.record_grid(stored.record, stored.usage.prompt_tokens, stored.usage.completion_tokens))
    decisions = printing.approvals_table(stored)
    if decisions is not None:
        console.print()
        console.print(decisions)
    console.print()
    before = _steps_by_position(stored.steps, stored.positions)
    plans = {s.position: s for s in stored.steps if s.plan and s.position is not None}
    conversation = Table.grid(padding=(0, 1))
    conversation.add_column(justify="right", style="dim", no_wrap=True)
    conversation.add_column(no_wrap=True)
    conversation.add_column()
    for position, message in zip(stored.positions, stored.messages, strict=True):
        for step in before.pop(position, []):
            conversation.add_row("", Text("step", style="bold"), printing.step_line(step, stored.approvals))
        plan = plans.get(position)
        shown = printing.message_line(message) if plan is None else printing.plan_lines(plan, stored.approvals)
        conversation.add_row(str(position), Text(message.role, style=_ROLE_STYLE[message.role]), shown)
    for steps in before.values():  # steps whose messages were never written (the run stopped)
        for step in steps:
            conversation.add_row("", Text("step", style="bold"), printing.step_line(step, stored.approvals))
    console.print(conversation)


@group.command("search")
def search_runs(
    text: Annotated[str, typer.Argument(help='What to look for (SQLite full-text syntax: words, "phrases", OR).')],
    limit: Annotated[int, typer.Option(min=1, help="At most this many messages.")] = 20,
    db: Db = None,
) -> None:
    """Find the messages that mention something, across all runs."""
    with closing(open_store(db)) as store:
        hits = store.search(text, limit=limit)
    if not hits:
        printing.console().print(f"no message matches {text!r}")
        return
    table = Table("run", "position", "snippet")
    table.columns[0].no_wrap = True
    table.columns[1].justify = "right"
    for run_id, position, snippet in hits:
        found = Text(printing.one_line(snippet))
        found.highlight_regex(r"\[[^\]]*\]", "bold yellow")
        table.add_row(run_id, str(position), found)
    printing.console().print(table)


@group.command("resume")
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
    with closing(open_store(db)) as store, tracing(trace):
        verbose = is_verbose(ctx)
        resume(store, run_id, runtime, verbose=verbose, rerun_started=rerun_started, again=carried_options(runtime, db))


WaitingCalls = Annotated[
    list[str] | None,
    typer.Argument(metavar="[CALL]...", help="Call ids (default: every call the run waits on).", show_default=False),
]


@group.command("approve")
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


@group.command("deny")
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


@group.command("replay")
def replay_run(
    run_id: RunId,
    runtime: Annotated[
        str, typer.Option("--runtime", metavar="URI", help="The runtime to put the run's steps to, e.g. vllm:default.")
    ],
    db: Db = None,
) -> None:
    """Put each step of a stored run to another runtime and compare its decisions with the stored ones."""
    with closing(open_store(db)) as store:
        store.run(run_id)  # a missing run is reported before a runtime is built
        report = asyncio.run(replay(store, run_id, resolve(runtime)))
    console = printing.console()
    table = Table("step", "stored", "replayed", "match", "valid calls", title=f"run {run_id} on {report.runtime}")
    table.columns[0].justify = "right"
    for step in report.steps:
        replayed = (
            Text(printing.decision(step.replayed))
            if step.replayed is not None
            else Text(step.error or "failed", style="red")
        )
        match = Text("yes", style="green") if step.matches else Text("no", style="red")
        valid = f"{step.valid_calls}/{step.calls}" if step.calls else "-"
        table.add_row(str(step.index), printing.decision(step.stored), replayed, match, valid)
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


@group.command("trace")
def trace_run(run_id: RunId, db: Db = None) -> None:
    """Send a stored run as a trace with its original times: OTLP to $OTEL_EXPORTER_OTLP_ENDPOINT, else the console."""
    from agentkit.tracing import emit_run

    with closing(open_store(db)) as store:
        stored = store.load(run_id)
    with tracing(True) as traced:
        if not traced.on:
            raise CommandError("tracing is not set up (OTEL_TRACES_EXPORTER=none): nothing was sent")
        emitted = emit_run(stored)
    if traced.failed:
        raise typer.Exit(1)  # tracing() said why
    printing.say(f"run {run_id}: trace {emitted.trace_id}, {emitted.spans} spans")


@group.command("export")
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
    with closing(open_store(db)) as store:
        lines = [json.dumps(item, ensure_ascii=False) for item in store.load(run_id).records()]
    if output is None:
        for line in lines:
            typer.echo(line)
        return
    try:
        output.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror}") from None
    printing.say(f"wrote {len(lines)} lines to {output}")


@group.command("merge")
def merge_stores(
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="The store to merge into (created if missing).", show_default=False)
    ],
    sources: Annotated[
        list[Path],
        typer.Argument(metavar="IN...", help="The stores to merge (read, never changed).", show_default=False),
    ],
) -> None:
    """Merge stores into one, e.g. the shards of parallel batch workers: every run, workflow run and batch.

    A run already in OUT is replaced by a newer state of it, so merging a shard again after its runs went on brings
    their later state, and merging one twice changes nothing. Each source is merged whole or not at all; all must
    have OUT's schema (open an older one once with this agentkit, e.g. agentkit runs list --db IN, to upgrade it).
    """
    report = merge(out, sources)
    for source in report.sources:
        typer.echo(f"{source.path}: {_merged(source.counts)}")
    typer.echo(f"total: {_merged(report.total)} into {report.into}")


def _merged(counts: MergeCounts) -> str:
    """`2 runs added, 0 updated; 1 batch added, 0 updated; 31 rows copied`: workflow runs and batches if any."""

    def part(added: int, updated: int, one: str, many: str) -> str:
        return f"{added} {one if added == 1 else many} added, {updated} updated"

    parts = [part(counts.runs_added, counts.runs_updated, "run", "runs")]
    if counts.workflow_runs_added or counts.workflow_runs_updated:
        parts.append(part(counts.workflow_runs_added, counts.workflow_runs_updated, "workflow run", "workflow runs"))
    if counts.batches_added or counts.batches_updated:
        parts.append(part(counts.batches_added, counts.batches_updated, "batch", "batches"))
    return "; ".join([*parts, f"{counts.rows} {'row' if counts.rows == 1 else 'rows'} copied"])


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
    with closing(open_store(db)) as store, tracing(trace and not no_resume):
        decide(
            store,
            run_id,
            calls,
            decision,
            by=by,
            runtime=runtime,
            verbose=is_verbose(ctx),
            rerun_started=rerun_started,
            no_resume=no_resume,
            again=carried_options(runtime, db),
        )


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
