"""`agentkit workflow`: check YAML workflows, print their JSON Schema, show stored workflow runs; and running one.

agentkit workflow validate flow.yaml
agentkit workflow validate flow.yaml --connect     # also start its MCP servers and list their tools
agentkit workflow list --status failed
agentkit run flow.yaml -i topic="tidal power"     # run_workflow
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agentkit.cli import printing
from agentkit.cli.options import AllowModule, CommandError, Db, RunId, list_stored, open_store, tracing
from agentkit.store import WORKFLOW_STATUSES

if TYPE_CHECKING:
    from agentkit.workflow.spec import MCPServerSpec

__all__ = ["group", "run_workflow"]

group = typer.Typer(
    name="workflow",
    help="Check YAML workflows, print their JSON Schema, show stored workflow runs.",
    no_args_is_help=True,
)


@group.command("validate")
def validate_workflow(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The workflow file.")],
    allow_module: AllowModule = None,
    connect: Annotated[
        bool,
        typer.Option("--connect", help="Also start each MCP server the file declares, list its tools, stop it."),
    ] = False,
) -> None:
    """Check a workflow file without running it: every problem with its line, column and place in the document.

    Its MCP servers are listed, and started only with --connect.
    """
    from agentkit.errors import ToolsetError
    from agentkit.workflow import Workflow
    from agentkit.workflow.servers import connect as connect_servers

    flow = Workflow.load(file, allow_modules=allow_module or [])
    steps = sum(1 for _ in _walk_steps(flow.spec.steps))
    inputs = ", ".join(f"{name}{'' if spec.required else '?'}" for name, spec in flow.spec.inputs.items()) or "none"
    typer.echo(f"{file}: workflow {flow.name!r} is valid: {steps} step{'s' if steps != 1 else ''}, inputs: {inputs}")
    declared = flow.spec.mcp_servers
    if not declared:
        return
    listed = asyncio.run(connect_servers(flow.plan.source, declared, os.environ)) if connect else {}
    how = "started to list their tools, then stopped" if connect else "not started; --connect lists their tools"
    typer.echo(f"MCP servers ({how}):")
    users = flow.plan.users()
    for name, server in declared.items():
        typer.echo(f"  {name}: {_server(server)}; used by: {', '.join(users[name]) or 'no step'}")
        tools = listed.get(name)
        if isinstance(tools, ToolsetError):
            typer.echo(f"    not started: {tools.problem}")
        elif tools is not None:
            typer.echo(f"    tools: {', '.join(tools) or 'none'}")
    failed = [name for name, tools in listed.items() if isinstance(tools, ToolsetError)]
    if failed:
        raise CommandError(f"MCP server{'s' if len(failed) > 1 else ''} {', '.join(failed)} could not be started")


def _server(server: MCPServerSpec) -> str:
    """How a server of the file is reached and which of its tools are offered, in one line (no secrets)."""
    from agentkit.workflow.spec import StdioServerSpec

    if isinstance(server, StdioServerSpec):
        parts = [f"stdio: {shlex.join(server.command)}"]
        parts += [f"cwd: {server.cwd}"] if server.cwd is not None else []
        parts += [f"env: {', '.join(server.env)}"] if server.env else []
    else:
        parts = [f"http: {server.url}"]
        parts += [f"headers: {', '.join(server.headers)}"] if server.headers else []
    parts += [f"include: {', '.join(server.include)}"] if server.include is not None else []
    parts += [f"exclude: {', '.join(server.exclude)}"] if server.exclude else []
    approval = server.requires_approval
    if approval:
        parts.append(f"requires approval: {'every tool' if approval is True else ', '.join(approval)}")
    for option in ("timeout", "connect_timeout"):
        if option in server.model_fields_set:
            parts.append(f"{option}: {getattr(server, option):g} s")
    return "; ".join(parts)


@group.command("schema")
def workflow_schema() -> None:
    """Print the JSON Schema of workflow files (editors validate and complete YAML with it)."""
    from agentkit.workflow import schema_text

    typer.echo(schema_text(), nl=False)


@group.command("list")
def list_workflow_runs(
    status: Annotated[
        str | None,
        typer.Option(help=f"Only workflow runs with this status: {', '.join(WORKFLOW_STATUSES)}.", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many workflow runs, newest first.")] = 20,
    db: Db = None,
) -> None:
    """List stored workflow runs, newest first."""
    list_stored(
        "workflow runs",
        status,
        WORKFLOW_STATUSES,
        db,
        lambda store: store.workflow_runs(limit=limit, status=status),
        ("id", "workflow", "status", "inputs", "updated"),
        lambda record, now: (
            record.id,
            record.name,
            printing.status(record.status),
            printing.one_line(printing.brief(record.inputs, 60)),
            printing.ago(record.updated, now),
        ),
    )


@group.command("show")
def show_workflow(run_id: RunId, db: Db = None) -> None:
    """Show a stored workflow run: its inputs, each step's status and output, its agent runs."""
    with closing(open_store(db)) as store:
        record = store.workflow_run(run_id)
    console = printing.console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("workflow run", record.id)
    grid.add_row("workflow", f"{record.name} ({record.file})" if record.file else record.name)
    grid.add_row("status", printing.status(record.status))
    grid.add_row("created", printing.local_time(record.created))
    grid.add_row("inputs", printing.as_json(record.inputs))
    if record.output is not None:
        grid.add_row("output", record.output if isinstance(record.output, str) else printing.as_json(record.output))
    if record.error:
        grid.add_row("error", Text(record.error, style="red"))
    console.print(grid)
    table = Table("step", "kind", "status", "time", "output or error", "agent run", box=None)
    for step in record.steps:
        took = f"{step.finished - step.started:.1f} s" if step.finished is not None and step.status != "skipped" else ""
        shown = (
            Text(step.error, style="red")
            if step.error
            else Text(printing.one_line(printing.brief(step.output)) if step.output is not None else "")
        )
        table.add_row(step.step, step.kind, printing.status(step.status), took, shown, step.run_id or "")
    console.print(table)


def run_workflow(
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
    """`agentkit run FILE.yaml`: load the workflow, read its inputs, run it with a line of progress per step."""
    from agentkit.cli.progress import Progress
    from agentkit.errors import WorkflowFailed
    from agentkit.workflow import Workflow

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
    progress = Progress(Console(file=printing.stderr(), markup=False, emoji=False, highlight=False))
    with closing(open_store(db, create=True)) as store, tracing(trace):
        try:
            result = flow.run(inputs, runtime=runtime, store=store, on_event=progress.show)
        except WorkflowFailed as exc:
            printing.print_error(exc, traceback=verbose)
            printing.say(f"workflow run {exc.workflow_run} failed (agentkit workflow show {exc.workflow_run})")
            raise typer.Exit(1) from None
    output = result.output
    typer.echo(output if isinstance(output, str) else printing.as_json(output, indent=2))
    printing.say(f"workflow run {result.workflow_run} done")


def _walk_steps(steps: Any) -> Iterator[Any]:
    for step in steps:
        yield step
        for body in ("then", "else_", "steps", "parallel"):
            yield from _walk_steps(getattr(step, body, None) or [])
