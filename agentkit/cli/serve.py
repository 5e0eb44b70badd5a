"""`agentkit serve` starts a model server (vLLM for a preset, llama.cpp for a GGUF); `agentkit doctor` probes one.

agentkit serve vllm:default --port 8000
agentkit serve vllm:gemma-4-31b -tp 2 -dp 2 -- --max-num-seqs 64
agentkit serve llama:default --port 8080
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
        str,
        typer.Argument(
            metavar="URI",
            help="What to serve: vllm:default, vllm:gemma-4-e4b, ..., vllm:HF_ID, llama:default or llama:PATH.gguf.",
        ),
    ],
    port: Annotated[int, typer.Option(min=1, max=65535, help="The port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="The interface to listen on; 0.0.0.0 for every one.")] = "127.0.0.1",
    tensor_parallel_size: Annotated[
        int | None,
        typer.Option(
            "--tensor-parallel-size",
            "-tp",
            min=1,
            help="vLLM only: split the model across this many GPUs (tensor parallel). Default: vLLM's, 1.",
        ),
    ] = None,
    data_parallel_size: Annotated[
        int | None,
        typer.Option(
            "--data-parallel-size",
            "-dp",
            min=1,
            help="vLLM only: run this many replicas of the engine behind the one server (data parallel), "
            "each on tensor-parallel-size GPUs. Default: vLLM's, 1.",
        ),
    ] = None,
    server_flags: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[-- FLAGS...]",
            help="More flags for the server, after `--`, passed as given (e.g. -- --pipeline-parallel-size 2); "
            "those agentkit sets itself (--port, --host, --model, ...) are refused.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start a model server (vLLM's for a preset, llama.cpp's for a GGUF), wait until it answers, stop it on Ctrl-C."""
    from agentkit.runtimes.vllm.serve import ServedModel

    if not preset.startswith(("vllm:", "llama:")):
        raise CommandError(
            f"{preset!r}: serve starts vllm: presets and models, or llama: GGUF files, e.g. vllm:default"
        )
    # Quiet (no -v): the server's output goes to the log file, and its end is shown if it fails to start.
    server = ServedModel(
        preset,
        host=host,
        port=port,
        log=printing.log_file(),
        extra=server_flags or (),
        tensor_parallel_size=tensor_parallel_size,
        data_parallel_size=data_parallel_size,
    )
    # Ctrl-C and SIGTERM (`kill`, `docker stop`, systemd) both stop the server cleanly, even when
    # this process was started with SIGINT ignored (as shells start background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    wait = "seconds" if server.llama else "about a minute on a CPU"
    printing.say(f"starting the {server.engine} server for {preset} on {server.url} ({wait})")
    try:
        server.start()
        assert server.process is not None
        pid = server.process.pid
        printing.say(f"ready (pid {pid}): agents can use --runtime {server.uri}; Ctrl-C stops it")
        code = server.process.wait()
        raise CommandError(f"the {server.engine} server exited with code {code}")
    except KeyboardInterrupt:
        printing.say("stopping the server")
    finally:
        server.stop()


def doctor(
    uri: Annotated[str, typer.Argument(metavar="URI", help="A server runtime URI, e.g. ollama:gemma4:e4b.")],
) -> None:
    """Probe a live model server: reachable, its models, tool calls, JSON Schema answers (and raw grammars)."""
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
