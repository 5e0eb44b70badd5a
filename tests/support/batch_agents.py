"""Agents for batch tests and benchmarks: a model that a function plays, with a latency, and a tool that counts.

`Tally` asks for one tool call per item, then answers `done: PROMPT`
(`Careful` the same, with a tool that needs approval). Each
call of its tool appends the item to the file `$AGENTKIT_TEST_TALLY` (when
set), so a test can count how many times every item's tool ran, across
processes and kills. The model sleeps `$AGENTKIT_TEST_LATENCY` seconds a turn
(default 0.01). A prompt that starts with `boom` makes the model fail.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from agentkit import Agent, tool
from agentkit.messages import AssistantMessage, ToolCall, UserMessage
from agentkit.runtime import ModelRequest, ModelResponse, Usage
from agentkit.runtimes.function import FunctionRuntime

__all__ = ["IN_FLIGHT", "Careful", "Tally", "agentkit", "counts", "tally_runtime"]


def _prompt(request: ModelRequest) -> str:
    return next(m.text for m in request.messages if isinstance(m, UserMessage))


IN_FLIGHT = {"now": 0, "most": 0}
"""Model turns running at once in this process, now and at most (tests reset it)."""


async def _model(request: ModelRequest, index: int) -> ModelResponse:
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["most"] = max(IN_FLIGHT["most"], IN_FLIGHT["now"])
    try:
        await asyncio.sleep(float(os.environ.get("AGENTKIT_TEST_LATENCY", "0.01")))
    finally:
        IN_FLIGHT["now"] -= 1
    prompt = _prompt(request)
    if prompt.startswith("boom"):
        raise RuntimeError(f"the model fell over on {prompt!r}")
    answered = any(m.role == "tool" for m in request.messages)
    if answered:
        message = AssistantMessage(text=f"done: {prompt}")
    else:
        tool = request.tools[0].name  # count, or send (Careful's)
        message = AssistantMessage(tool_calls=(ToolCall(name=tool, arguments={"item": prompt}),))
    return ModelResponse(message=message, usage=Usage(prompt_tokens=20, completion_tokens=5, requests=1))


def tally_runtime() -> FunctionRuntime:
    return FunctionRuntime(_model, name="tally")


@tool(idempotent=False)  # a resumed run never runs it twice without being told to
def count(item: str) -> str:
    """Count one item."""
    path = os.environ.get("AGENTKIT_TEST_TALLY")
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(item + "\n")
    return f"counted {item}"


def counts(path: Path) -> dict[str, int]:
    """How many times the tool ran for each item, from the tally file."""
    found: dict[str, int] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        found[line] = found.get(line, 0) + 1
    return found


class Tally(Agent[str]):
    instructions = "Count the item, then say so."
    tools = [count]
    max_steps = 4
    runtime = tally_runtime()


@tool(requires_approval=True)
def send(item: str) -> str:
    """Send one item (someone must approve each call)."""
    return count(item)


class Careful(Agent[str]):
    """`Tally` whose tool waits for someone's approval: its items pause until decided."""

    instructions = "Send the item, then say so."
    tools = [send]
    max_steps = 4
    runtime = tally_runtime()


def agentkit(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m agentkit.cli ARGS` in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "agentkit.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
