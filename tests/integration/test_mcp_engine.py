"""An MCP server's tools on the real vLLM engine: the embedded model calls them under the grammar.

The server is the real test server (tests/support/mcp_server.py) over stdio;
its schemas are as servers write them (a dotted name, draft-07 `definitions`
with a recursive `$ref`). Every call the engine decodes must satisfy the
flattened schema, and reach the server, which answers with a real result.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import jsonschema

from agentkit import (
    Agent,
    BudgetExceeded,
    MaxStepsExceeded,
    ModelRequest,
    Sampling,
    SystemMessage,
    ToolCall,
    UserMessage,
)
from agentkit import mcp as agentkit_mcp
from agentkit.executor import Executor
from agentkit.runtimes.vllm import VLLMEngine
from agentkit.toolset import open_toolsets

from ..conftest import FIGURES

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [
    "What is the weather in Paris?",
    "Search my notes for the word tea.",
    "Count the nodes of a tree whose root is 'a' with children 'b' and 'c'.",
    "How cold is it in Oslo?",
]


def server() -> agentkit_mcp.MCPToolset:
    return agentkit_mcp.stdio(
        sys.executable,
        "-m",
        "tests.support.mcp_server",
        cwd=ROOT,
        include=["get_weather", "notes.search", "make_tree"],
    )


def test_the_engine_calls_mcp_tools_validly_and_gets_real_results(engine: VLLMEngine) -> None:
    async def main() -> tuple[list[ToolCall], list[str], list[object]]:
        async with open_toolsets([server()], ()) as tools:
            specs = [t.spec for t in tools]
            requests = [
                ModelRequest(
                    messages=[SystemMessage(text="Use the tools."), UserMessage(text=prompt)],
                    tools=specs,
                    tool_choice="required",
                    sampling=Sampling(max_tokens=160),
                )
                for prompt in PROMPTS
            ]
            responses = await asyncio.gather(*(engine.generate(r) for r in requests))
            calls = [call for r in responses for call in r.message.tool_calls]
            validators = {s.name: jsonschema.Draft202012Validator(s.parameters) for s in specs}
            problems = [
                f"{c.name}({c.arguments}): {e.message}"
                for c in calls
                for e in validators[c.name].iter_errors(c.arguments)
            ]
            results = await Executor({t.name: t for t in tools}).run_all(calls)
            return calls, problems, [r.content if not r.is_error else f"ERROR {r.content}" for r in results]

    calls, problems, contents = asyncio.run(main())
    FIGURES["MCP tools on the engine"] = (
        f"{len(calls) - len(problems)}/{len(calls)} calls valid over {len(PROMPTS)} prompts"
    )
    assert len(calls) >= len(PROMPTS)
    assert problems == []
    # Each call reached the server and came back with its answer (an unknown city is the server's own error).
    for call, content in zip(calls, contents, strict=True):
        if call.name == "get_weather" and call.arguments["city"] not in ("Paris", "Oslo", "Lima"):
            assert str(content).startswith("ERROR")
            assert "no weather for" in str(content)
        else:
            assert not str(content).startswith("ERROR"), (call, content)


def test_an_agent_with_an_mcp_server_runs_to_an_answer_on_the_engine(engine: VLLMEngine) -> None:
    agent = Agent(runtime=engine, tools=[server()], instructions="Use the tools, then answer.", max_steps=3)
    try:
        result = agent.run("What is the weather in Paris?")
    except MaxStepsExceeded as exc:  # the small model may go on calling: the steps it took still count
        partial = exc.partial
    else:
        partial = result
    assert partial is not None
    result = partial
    invalid = [r for s in result.steps for r in s.tool_results if "invalid arguments" in str(r.content)]
    assert invalid == []
    assert result.steps


def test_the_mcp_example_agent_reaches_its_server_on_the_engine(engine: VLLMEngine) -> None:
    spec = importlib.util.spec_from_file_location("mcp_assistant", ROOT / "examples" / "mcp" / "assistant.py")
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    try:
        result = example.Assistant(runtime=engine).run("What did I note about tea?")
    except BudgetExceeded as exc:
        assert exc.partial is not None  # noqa: PT017 (the steps it took are what is checked)
        result = exc.partial
    outcomes = [(r.name, r.is_error, r.content) for s in result.steps for r in s.tool_results]
    assert outcomes, "the example agent made no call"
    assert not any("invalid arguments" in str(content) for _, _, content in outcomes)
    assert any(name in ("search_notes", "list_notes") and not error for name, error, _ in outcomes), outcomes
