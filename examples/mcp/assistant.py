"""An assistant with an MCP server's tools and two of agentkit's own, on the embedded model.

    python examples/mcp/assistant.py                        # the default questions
    python examples/mcp/assistant.py "What did I note about tea?"

Its tools: the notes server next to this file (an MCP server written with
the official SDK, started over stdio for each run), `now` (the time, time
zone aware) and `read_file`, which reads only under `examples/mcp/notes/`.
The server's tools are offered and constrained exactly like agentkit's own,
so every call the model makes is valid by construction. The embedded model
is a 270M *base* model: judge the answers on a real Gemma 4
(`AGENTKIT_RUNTIME=vllm:gemma-4-e4b`).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agentkit import Agent, BudgetExceeded, ModelTurn, RunFinished, ToolsFinished, mcp
from agentkit.logs import quiet_logs
from agentkit.loop import describe_result
from agentkit.tools import now, read_file

HERE = Path(__file__).resolve().parent


class Assistant(Agent):
    instructions = "You answer questions about the user's notes and files. Use the tools, then answer."
    tools = [
        now,
        # Example arguments per tool: the embedded model copies the worked examples built from them.
        mcp.stdio(
            sys.executable, str(HERE / "notes_server.py"), name="notes", examples={"search_notes": [{"word": "coat"}]}
        ),
        read_file(HERE / "notes"),
    ]
    max_steps = 4


async def main(prompts: list[str]) -> None:
    agent = Assistant(runtime="vllm:default")
    for prompt in prompts:
        print(f"\n>>> {prompt}", flush=True)
        try:
            async for event in agent.stream(prompt):
                if isinstance(event, ModelTurn):
                    for call in event.response.message.tool_calls:
                        print(f"  call   {call.name}({call.arguments})", flush=True)
                elif isinstance(event, ToolsFinished):
                    for result in event.results:
                        print(f"  result {result.name}: {describe_result(result)}", flush=True)
                elif isinstance(event, RunFinished):
                    print(f"  answer {event.result.output}")
        except BudgetExceeded as exc:  # a small base model may keep calling tools: say so and go on
            print(f"  stopped: {exc}")


if __name__ == "__main__":  # vLLM starts its engine core in a subprocess: keep this guard
    quiet_logs()
    asyncio.run(main(sys.argv[1:] or ["What did I note about tea?", "What time is it in Tokyo?", "Read packing.txt."]))
