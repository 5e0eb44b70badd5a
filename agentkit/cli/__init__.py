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
    agentkit mcp serve myagents:WeatherAgent --runtime vllm:default
    agentkit mcp serve flow.yaml --transport http --port 8000
    agentkit eval bfcl --runtime vllm:default --limit 20
    agentkit eval replay --runs status=done --runtime llama:default --min-same 0.9

Every command takes `--db PATH` (default: `$AGENTKIT_DB`, else `runs.db` in
the user data directory). Every failure is printed as one `error: ...` line on
stderr, with exit code 1; an unexpected one (a bug, here or in the agent's
code) also gets a hint, and `agentkit -v ...` prints its traceback. A run that
pauses for approval exits 3 (`run.PAUSED`) after saying how to decide;
`eval replay` exits 4 (`evals.GATE_MISSED`) when a threshold is missed. Runs
are traced (OpenTelemetry) when an OTLP endpoint or `OTEL_TRACES_EXPORTER` is
set, or `--trace` is given.

Library and engine logs (vLLM and its engine core, transformers, torch,
httpx, agentkit's own) go to a file (`agentkit.logs.quiet_logs`), whose path
a command that runs a model prints once on a terminal, and an error names
when the file got something; `-v` or `AGENTKIT_LOG=debug` sends them to
stderr instead. The modules: `run` (agent runs), `runs`, `workflows`,
`serve` (serve, doctor), `mcp` (mcp serve), `options` (shared options, the store, tracing),
`printing` and `progress` (what the commands print). docs/cli.md's reference is
made from `app` by docs/generate.py.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from agentkit.cli import batch, evals, mcp, printing, runs, serve, workflows
from agentkit.cli.options import VERBOSE, CommandError
from agentkit.cli.run import run_agent
from agentkit.errors import AgentkitError
from agentkit.logs import env_level, quiet_logs, verbose_logs

__all__ = ["app", "main"]

_CONSOLE_SCRIPT = object()
"""`ctx.obj` when `main()` runs the command: the logs stay routed until the process ends."""


class _Commands(TyperGroup):
    """The top-level group: every failure becomes one line on stderr and exit code 1."""

    def invoke(self, ctx: Any) -> Any:  # Any: typer's Context type is in its private, vendored click
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise  # typer's own: usage errors, --help, an exit code already chosen
        except (AgentkitError, CommandError) as exc:
            printing.print_error(exc, traceback=ctx.meta.get(VERBOSE, False))
            raise typer.Exit(1) from None
        except Exception as exc:
            verbose = ctx.meta.get(VERBOSE, False)
            printing.print_error(exc, traceback=verbose, unexpected=True)
            if not verbose:
                printing.say(
                    "hint: this looks like a bug (in agentkit, or in the agent's own code); "
                    "run again as `agentkit -v ...` for the traceback"
                )
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Commands,
    name="agentkit",
    help="Run agents and work with their stored runs.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(runs.group)
app.add_typer(workflows.group)
app.add_typer(mcp.group)
app.add_typer(evals.group)
app.command("run")(run_agent)
app.command("batch")(batch.batch)
app.command("serve")(serve.serve)
app.command("doctor")(serve.doctor)


def _version(shown: bool) -> None:
    if shown:
        try:
            typer.echo(f"agentkit {version('agentkit')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("agentkit (not installed)")
        raise typer.Exit()


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option(
            "-v",
            "--verbose",
            help="Print library and engine logs to stderr (not to the log file), "
            "and a failure's full traceback (before its error line).",
        ),
    ] = False,
    _: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print agentkit's version and exit.", show_default=False
        ),
    ] = False,
) -> None:
    """Run agents and work with their stored runs."""
    ctx.meta[VERBOSE] = verbose
    try:
        level = env_level()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if verbose or level is not None:
        logs = verbose_logs(level if level is not None else logging.INFO)
    else:
        logs = quiet_logs(announce=False)
    ctx.with_resource(printing.logging_to(logs))
    if ctx.invoked_subcommand in ("run", "serve"):  # `runs` says so for its commands that run a model
        printing.announce_logs()
    if ctx.obj is _CONSOLE_SCRIPT:
        # The engine closes when the process exits (and logs as it does): its output stays in the file,
        # while what click prints after the command (a usage error, "Aborted!") goes to the terminal.
        ctx.call_on_close(lambda: setattr(sys, "stderr", logs.stderr))
    else:  # in-process (tests, an embedding program): put everything back
        ctx.call_on_close(logs.close)


def main() -> None:
    """The `agentkit` console script."""
    # As with `python -m`, agents in the current directory can be named (`mymodule:MyAgent`).
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    app(prog_name="agentkit", obj=_CONSOLE_SCRIPT)
