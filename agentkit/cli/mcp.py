"""`agentkit mcp serve`: an agent or a workflow as one MCP tool, for MCP hosts (desktop assistants, IDEs).

agentkit mcp serve myagents:WeatherAgent --runtime vllm:default        # stdio: the host starts it
agentkit mcp serve flow.yaml --transport http --port 8000              # http://127.0.0.1:8000/mcp

The target is loaded, and the store opened, before anything is served: a bad
target is an `error: ...` line and exit code 1. The server itself is
`agentkit.mcp.serve` (the SDK is imported only there, when the command runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agentkit.cli import printing
from agentkit.cli.options import AllowModule, CommandError, Db, RuntimeURI, Trace, open_store, tracing
from agentkit.cli.run import agent_class, build, is_workflow

if TYPE_CHECKING:
    from agentkit.mcp.serve import ServedTool
    from agentkit.store import Store

__all__ = ["group"]

group = typer.Typer(
    name="mcp",
    help="Serve agents and workflows as MCP tools (the Model Context Protocol).",
    no_args_is_help=True,
)

_TRANSPORTS = ("stdio", "http")


@group.command("serve")
def serve(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="An agent class (MODULE:CLASS, e.g. myagents:WeatherAgent) or a workflow file (.yaml).",
        ),
    ],
    transport: Annotated[
        str,
        typer.Option(
            metavar="TRANSPORT",
            help="stdio (an MCP host starts this command) or http (streamable HTTP on --host, --port and --path).",
        ),
    ] = "stdio",
    host: Annotated[str, typer.Option(help="http: the interface to listen on; 0.0.0.0 for every one.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="http: the port to listen on (0: any free one).")] = 8000,
    path: Annotated[str, typer.Option(help="http: the MCP endpoint's path.")] = "/mcp",
    name: Annotated[
        str | None,
        typer.Option(
            metavar="TOOLNAME",
            help="The tool's name (default: the agent's or workflow's name in snake_case).",
            show_default=False,
        ),
    ] = None,
    allow_module: AllowModule = None,
    runtime: RuntimeURI = None,
    db: Db = None,
    trace: Trace = False,
) -> None:
    """Serve an agent or a workflow as one MCP tool, until stdin closes (stdio) or Ctrl-C (http).

    The tool takes {"prompt": ...} (an agent) or the workflow's inputs, and answers with the typed output as
    structured content; the run's id is in the result's _meta (agentkit/run_id, agentkit/workflow_run_id).
    A run that fails, or pauses for approval, is an error result that says why and what to do. Runs are stored
    (--db) and traced as with agentkit run.
    """
    _check(transport, path, runtime)
    from agentkit.mcp import serve as serving

    with closing(open_store(db, create=True)) as store, tracing(trace):
        # On stdio, stdout is the protocol's from the first byte: what the user's modules print while they are
        # imported goes to stderr (the log file) instead. While serving, the SDK diverts stdout itself.
        quiet = contextlib.redirect_stdout(sys.stderr) if transport == "stdio" else contextlib.nullcontext()
        with quiet:
            tool = _tool(target, name, allow_module or [], runtime, store)

        def ready(where: str) -> None:
            how = "Ctrl-C stops it" if transport == "http" else "until the client closes stdin"
            printing.say(f"serving {tool.name} at {where} ({how}); runs are stored in {store.path}")

        printing.announce_logs()
        # SIGTERM (a host stopping the server, `kill`) ends it as Ctrl-C does: the runtime is closed on the way out.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            asyncio.run(
                serving.serve(
                    tool,
                    transport="http" if transport == "http" else "stdio",
                    host=host,
                    port=port,
                    path=path,
                    ready=ready,
                )
            )
        except OSError as exc:  # the port is taken, the host is not this machine's
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            printing.say(f"stopped serving {tool.name}")
        finally:
            signal.signal(signal.SIGTERM, previous)


def _check(transport: str, path: str, runtime: str | None) -> None:
    """The options, and the SDK, before anything is loaded."""
    if transport not in _TRANSPORTS:
        raise CommandError(f"unknown transport {transport!r}; use stdio or http")
    if not path.startswith("/"):
        raise CommandError(f"--path must start with '/', got {path!r}")
    try:
        from agentkit.mcp import serve as serving

        serving.require_sdk()
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    if runtime is not None:
        from agentkit.runtimes import check_uri

        check_uri(runtime)  # a mistyped URI is refused now; a runtime that cannot be made fails its calls


def _tool(target: str, name: str | None, allowed: list[str], runtime: str | None, store: Store) -> ServedTool:
    """The agent or the workflow at `target`, as the tool to serve."""
    from agentkit.mcp.serve import AgentTool, WorkflowTool

    if is_workflow(target):
        from agentkit.workflow import Workflow

        flow = Workflow.load(Path(target), allow_modules=allowed)
        try:
            return WorkflowTool(flow, runtime=runtime, store=store, name=name)
        except ValueError as exc:  # --name is no tool name
            raise CommandError(str(exc)) from None
    if allowed:
        raise CommandError("--allow-module is for workflows (a .yaml file), not agents")
    agent = build(agent_class(target), target, store, runtime)
    # Nobody answers at this process's terminal: a call that needs approval pauses its run, and the
    # tool's result says how to decide (agentkit runs approve / deny).
    agent.approve = None
    try:
        return AgentTool(agent, name=name)
    except ValueError as exc:  # --name is no tool name
        raise CommandError(str(exc)) from None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
