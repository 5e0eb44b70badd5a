"""What an MCP server's tools cost in prompt tokens, per model turn.

A 20-tool MCP server (tests/support/mcp_server.py `--many 20`: tools shaped
like a typical server's, four typed parameters each with descriptions, one
enum) is opened over stdio as an agent opens it; its tools' declarations are
rendered into the prompt each turn by the Gemma 4 dialect (with the worked
examples the embedded preset writes) and by the JSON action dialect, and
counted with the Gemma 4 stand-in tokenizer (the embedded model's vocabulary,
each Gemma 4 marker one token). Without prefix caching every turn pays it;
with vLLM's prefix cache a run pays it once (the system turn comes first).

    python benchmarks/mcp_prompt.py        # or: make bench

Results go to benchmarks/results/mcp_prompt.json.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agentkit import ModelRequest, SystemMessage, ToolSpec, UserMessage
from agentkit import mcp as agentkit_mcp
from agentkit.dialects.gemma4 import Gemma4Dialect
from agentkit.dialects.json_action import JsonDialect
from agentkit.runtimes.vllm.presets import PRESETS
from agentkit.toolset import open_toolsets

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "mcp_prompt.json"


async def server_specs(count: int) -> list[ToolSpec]:
    """The specs of `count` tools of the test server, as an agent offers them."""
    toolset = agentkit_mcp.stdio(
        sys.executable, "-m", "tests.support.mcp_server", "--many", str(count), cwd=ROOT, include=["records.*"]
    )
    async with open_toolsets([toolset], ()) as tools:
        return [t.spec for t in tools]


def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from agentkit.runtimes.vllm import tiny_gemma4

    return AutoTokenizer.from_pretrained(tiny_gemma4.prepare(quiet=True))


def measure(count: int = 20) -> dict[str, Any]:
    """Prompt tokens of one turn with and without the server's `count` tools, per dialect."""
    specs = asyncio.run(server_specs(count))
    tok = tokenizer()
    embedded, gemma4 = PRESETS["default"], PRESETS["gemma-4-26b-a4b"]
    dialects = {
        "gemma4, vllm:default (2 worked examples)": Gemma4Dialect(**embedded.options("gemma4")),
        "gemma4, vllm:gemma-4-26b-a4b": Gemma4Dialect(**gemma4.options("gemma4")),
        "json, vllm:default": JsonDialect(**embedded.options("json")),
    }
    messages = [SystemMessage(text="Use the tools."), UserMessage(text="Find record 42 in the orders collection.")]
    rows = {}
    for label, dialect in dialects.items():
        bare = len(tok.encode(dialect.render(ModelRequest(messages=messages)), add_special_tokens=False))
        full = len(tok.encode(dialect.render(ModelRequest(messages=messages, tools=specs)), add_special_tokens=False))
        cost = full - bare
        rows[label] = {"without tools": bare, "with tools": full, "tools cost": cost, "per tool": cost / count}
    return {
        "tools": count,
        "tokenizer": "Gemma 4 stand-in (embedded vocabulary, Gemma 4 markers)",
        "prompt tokens": rows,
    }


def main() -> None:
    result = measure()
    for label, row in result["prompt tokens"].items():
        print(
            f"{label:45s} {row['without tools']:5d} tokens bare, {row['with tools']:5d} with "
            f"{result['tools']} MCP tools: +{row['tools cost']} ({row['per tool']:.0f}/tool) per uncached turn"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
