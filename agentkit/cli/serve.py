"""`agentkit serve` starts a vLLM OpenAI server for a preset; `agentkit doctor` probes a live model server.

agentkit serve vllm:default --port 8000
agentkit doctor vllm-server:http://localhost:8000/v1
"""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from agentkit.cli import printing
from agentkit.cli.options import CommandError

__all__ = ["doctor", "serve"]


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
    # Quiet (no -v): the server's output goes to the log file, and its end is shown if it fails to start.
    server = ServedModel(preset, host=host, port=port, log=printing.log_file())
    # Ctrl-C and SIGTERM (`kill`, `docker stop`, systemd) both stop the server cleanly, even when
    # this process was started with SIGINT ignored (as shells start background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    printing.say(f"starting the vLLM server for {preset} on {server.url} (about a minute on a CPU)")
    try:
        server.start()
        assert server.process is not None
        pid = server.process.pid
        printing.say(f"ready (pid {pid}): agents can use --runtime {server.uri}; Ctrl-C stops it")
        code = server.process.wait()
        raise CommandError(f"the vLLM server exited with code {code}")
    except KeyboardInterrupt:
        printing.say("stopping the server")
    finally:
        server.stop()


def doctor(
    uri: Annotated[str, typer.Argument(metavar="URI", help="A server runtime URI, e.g. ollama:gemma4:e4b.")],
) -> None:
    """Probe a live model server: reachable, its models, tool calls, JSON Schema answers (and, for vLLM, grammars)."""
    from agentkit.runtimes.doctor import probe

    report = asyncio.run(probe(uri))
    console = printing.console()
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


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
