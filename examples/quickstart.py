"""Quickstart: an agent with two tools, on the embedded model (vLLM on the CPU).

    make demo                      # or: python examples/quickstart.py "Is it raining in Oslo?"
    AGENTKIT_RUNTIME=llama:default python examples/quickstart.py    # the same model on llama.cpp

It runs on the default runtime, `vllm:default` (`llama:default` where vLLM has
no build: macOS, ARM Linux), or the one `AGENTKIT_RUNTIME` names, and says which.

The embedded model is a 270M-parameter *base* model: it knows no tool use of
its own. Decoding is constrained, so every call it makes names a real tool
with valid arguments; worked examples built from the tools' `examples` show it
the protocol. Judge answer quality on a real Gemma 4 (`vllm:gemma-4-e4b`, ...).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Literal

from agentkit import Agent, ModelTurn, RunFinished, ToolsFinished, tool
from agentkit.logs import quiet_logs
from agentkit.loop import describe_result
from agentkit.tools import calculate

# A stand-in for a weather service, so the demo runs offline.
WEATHER = {
    "paris": (18.0, "cloudy"),
    "tokyo": (24.0, "sunny"),
    "oslo": (-3.0, "snowing"),
    "madrid": (29.0, "sunny"),
    "new york": (12.0, "raining"),
}


@tool(examples=[{"city": "Paris", "unit": "celsius"}, {"city": "Madrid", "unit": "fahrenheit"}])
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Get the current weather in a city.

    Args:
        city: The city's name, e.g. "Paris".
        unit: The temperature unit.
    """
    try:
        celsius, sky = WEATHER[city.strip().lower()]
    except KeyError:
        raise ValueError(f"no weather station in {city!r}; known: {', '.join(sorted(WEATHER))}") from None
    degrees = celsius if unit == "celsius" else celsius * 9 / 5 + 32
    return f"{degrees:g} degrees {unit} and {sky} in {city}"


class TravelAgent(Agent):
    instructions = "You help travellers. Use the tools to answer."
    tools = [get_weather, calculate]
    max_steps = 4


async def main(prompts: list[str]) -> None:
    agent = TravelAgent()  # the default runtime (or AGENTKIT_RUNTIME's)
    info = agent.resolved_runtime.info
    print(f"engine: {info.uri} ({info.provider}, {info.model}, constrained: {info.constrained})", flush=True)
    for prompt in prompts:
        print(f"\n>>> {prompt}", flush=True)
        async for event in agent.stream(prompt):
            if isinstance(event, ModelTurn):
                for call in event.response.message.tool_calls:
                    print(f"  call   {call.name}({call.arguments})", flush=True)
            elif isinstance(event, ToolsFinished):
                for result in event.results:
                    print(f"  result {result.name}: {describe_result(result)}", flush=True)
            elif isinstance(event, RunFinished):
                result = event.result
                print(f"  answer {result.output}")
                print(
                    f"  ({len(result.steps)} steps, {len(result.tool_calls)} tool calls, "
                    f"{result.usage.prompt_tokens} prompt + {result.usage.completion_tokens} completion tokens, "
                    f"{result.usage.cached_tokens} from cache)"
                )


if __name__ == "__main__":  # vLLM starts its engine core in a subprocess: keep this guard
    quiet_logs()  # the engine's and libraries' logs go to a file, whose path this prints; the terminal shows the agent
    asyncio.run(main(sys.argv[1:] or ["What is the weather in Tokyo?", "How much is 17 * 23?"]))
