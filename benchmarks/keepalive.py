"""Per-call latency against a local vLLM server: a pooled keep-alive client next to a fresh one per call.

One real server (`agentkit serve`'s `ServedModel` with `vllm:tiny-gemma4`, the
random-weights Gemma 4 test model, on the CPU) and both runtimes that talk to
it, `OpenAICompatible` (chat completions) and `VLLMServer` (raw mode, a tool
offered and the grammar on, as an agent's step asks), asking for a few
tokens. Each with two arms, side by side, the four alternating call by call
so that any drift of the machine falls on all:

- pooled: the runtime's own `ClientPool`, one keep-alive connection for every call;
- fresh: a client (a TCP connection, a TLS context lookup, a connection pool)
  made for each call and closed after it, as every call did before the pool.

The figures are each arm's median seconds per call and their ratio
(fresh over pooled). The tiny model decodes in milliseconds, so what the
pool saves is a larger share here than behind a real model.

    .venv/bin/python benchmarks/keepalive.py [--calls 40] [--max-tokens 4]

Results go to stdout and to benchmarks/results/keepalive.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import statistics
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from agentkit import ModelRequest, Sampling, UserMessage, tool
from agentkit.runtimes import OpenAICompatible, RetryPolicy, VLLMServer
from agentkit.runtimes._http import ClientPool, _new_client
from agentkit.runtimes.vllm.serve import ServedModel

RESULTS = Path(__file__).resolve().parent / "results" / "keepalive.json"


@tool
def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


class FreshClients(ClientPool):
    """A pool that pools nothing: a new client for every request, closed by `close_all`."""

    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__(policy)
        self.made: list[httpx.AsyncClient] = []

    def client(self) -> httpx.AsyncClient:
        client = _new_client(self.policy)
        self.made.append(client)
        return client

    async def close_all(self) -> None:
        made, self.made = self.made, []
        for client in made:
            await client.aclose()


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:  # e.g. a vLLM built from source without its metadata
        import importlib

        return str(getattr(importlib.import_module(distribution), "__version__", "unknown"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def arms(url: str, policy: RetryPolicy) -> dict[str, tuple[Any, FreshClients | None]]:
    """Each arm's runtime and, for a fresh arm, the pool that pools nothing.

    A step's model call two ways: chat completions (`OpenAICompatible`) and raw
    mode (`VLLMServer`: agentkit's prompt and grammar on /v1/completions, what
    `vllm-server:` URIs get), each with the pool and with a client per call."""
    made: dict[str, tuple[Any, FreshClients | None]] = {}
    for kind in ("chat", "raw"):
        for pooling in ("pooled", "fresh"):
            runtime: Any = OpenAICompatible(url, retry=policy) if kind == "chat" else VLLMServer(url, retry=policy)
            fresh = None
            if pooling == "fresh":
                fresh = FreshClients(policy)
                if kind == "chat":
                    runtime.pool = fresh
                else:
                    runtime._pool = runtime._chat.pool = fresh
            made[f"{kind} {pooling}"] = (runtime, fresh)
    return made


async def measure(url: str, calls: int, max_tokens: int) -> dict[str, list[float]]:
    policy = RetryPolicy(attempts=1)
    runtimes = arms(url, policy)
    requests = {
        "chat": ModelRequest(
            messages=(UserMessage(text="Say hello."),), sampling=Sampling(max_tokens=max_tokens, temperature=0.0)
        ),
        # Raw mode as an agent's step asks: a tool offered, the grammar on, room for a whole call.
        "raw": ModelRequest(
            messages=(UserMessage(text="Add 1 and 2."),),
            tools=(add.spec,),
            tool_choice="required",
            sampling=Sampling(max_tokens=96, temperature=0.0),
        ),
    }
    for runtime, _ in runtimes.values():  # the model's name, then a warm-up: a server's first requests are slower
        await runtime.astart()
    for name, (runtime, fresh) in runtimes.items():
        await runtime.generate(requests[name.split()[0]])
        if fresh is not None:
            await fresh.close_all()
    seconds: dict[str, list[float]] = {name: [] for name in runtimes}
    order = list(runtimes.items())
    for n in range(calls):
        for name, (runtime, fresh) in order if n % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            await runtime.generate(requests[name.split()[0]])
            if fresh is not None:
                await fresh.close_all()  # part of a fresh client's cost, as `async with` paid it
            seconds[name].append(time.perf_counter() - started)
    for runtime, _ in runtimes.values():
        await runtime.aclose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="model calls per arm")
    parser.add_argument("--max-tokens", type=int, default=4, help="tokens each call asks for")
    args = parser.parse_args()

    log = Path(tempfile.mkdtemp(prefix="keepalive-")) / "serve.log"
    server = ServedModel("tiny-gemma4", port=free_port(), log=log)
    started = time.monotonic()
    server.start()
    startup = time.monotonic() - started
    try:
        seconds = asyncio.run(measure(server.url, args.calls, args.max_tokens))
    finally:
        server.stop()

    medians = {name: statistics.median(values) for name, values in seconds.items()}
    ratios = {kind: medians[f"{kind} fresh"] / medians[f"{kind} pooled"] for kind in ("chat", "raw")}
    result: dict[str, Any] = {
        "server": "ServedModel('tiny-gemma4') on loopback (vLLM, CPU)",
        "runtimes": "OpenAICompatible (chat completions), VLLMServer (raw mode, a tool offered, grammar on)",
        "calls_per_arm": args.calls,
        "max_tokens": args.max_tokens,
        "server_start_s": round(startup, 1),
        "median_s": {name: round(value, 4) for name, value in medians.items()},
        "p90_s": {name: round(statistics.quantiles(v, n=10)[-1], 4) for name, v in seconds.items()},
        "ratio_fresh_over_pooled": {kind: round(value, 3) for kind, value in ratios.items()},
        "python": platform.python_version(),
        "httpx": version("httpx"),
        "vllm": version("vllm"),
    }
    print(f"server up in {startup:.0f} s; {args.calls} calls per arm, max_tokens={args.max_tokens}")
    for name in seconds:
        print(f"  {name:>12}: median {medians[name] * 1000:7.1f} ms per call")
    for kind, value in ratios.items():
        print(f"  {kind} fresh / pooled: {value:.2f}x")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
