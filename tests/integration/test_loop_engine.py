"""The loop's seams on the real vLLM engine with the embedded model: context that fits, budgets, streaming."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from agentkit import (
    Agent,
    AssistantMessage,
    Budget,
    ModelRequest,
    RunFinished,
    RunResult,
    Sampling,
    TextDelta,
    ToolCall,
    ToolResult,
    UserMessage,
    tool,
)
from agentkit.runtimes.vllm import VLLMEngine
from agentkit.store import Store
from tests.conftest import FIGURES


def log_page(n: int) -> str:
    # Numbers: the tokenizer writes each digit as a token, so a page is thousands of tokens.
    return f"log {n}: " + " ".join(str(10_000 * n + i) for i in range(250))


@tool
def read_log(n: int) -> str:
    """Read one page of the server log.

    Args:
        n: The page number, from 1.
    """
    return log_page(n)


def test_a_run_whose_results_outgrow_the_context_completes_and_the_store_keeps_every_byte(
    engine: VLLMEngine, tmp_path: Path
) -> None:
    history = [UserMessage(text="Read the server log, three pages, then say in one word if it is healthy.")]
    for n in (1, 2, 3):
        history += [
            AssistantMessage(tool_calls=(ToolCall(name="read_log", arguments={"n": n}, id=f"page{n}"),)),
            ToolResult(call_id=f"page{n}", name="read_log", content=log_page(n)),
        ]
    full = engine.count_tokens(ModelRequest(messages=tuple(history)))
    limit = engine.info.context_length
    assert limit is not None
    assert full > limit  # the conversation alone is longer than the model's window
    store = Store(tmp_path / "runs.db")
    # A one-word typed answer: the grammar ends it in a few tokens, whatever the model
    # makes of the numbers (a free answer could run on past max_tokens).
    agent = Agent[Literal["healthy", "unhealthy"]](
        tools=[read_log],
        runtime=engine,
        store=store,
        output_type=Literal["healthy", "unhealthy"],
        sampling=Sampling(max_tokens=64),
        max_steps=2,
    )
    result = agent.run(history)
    assert result.output in ("healthy", "unhealthy")
    stored = store.load(result.run_id)
    assert stored.record.status == "done"
    kept = {m.call_id: m.content for m in stored.messages if isinstance(m, ToolResult)}
    for n in (1, 2, 3):
        assert kept[f"page{n}"] == log_page(n)  # every byte
    context = stored.steps[0].response.metadata["context"]
    assert "page1" in context["elided"]
    assert "page3" not in context.get("elided", [])  # the last turn is never elided
    assert stored.steps[0].response.usage.prompt_tokens < limit
    FIGURES["context: tokens of the conversation / window"] = f"{full} / {limit}"


def test_the_engine_streams_an_answer_and_a_token_budget_makes_the_first_turn_answer(engine: VLLMEngine) -> None:
    agent = Agent(tools=[read_log], runtime=engine, sampling=Sampling(max_tokens=40))
    prompt = "Say hello to the operator."
    asked = ModelRequest(messages=(UserMessage(text=prompt),), tools=(read_log.bind().spec,))
    first = engine.count_tokens(asked) + 40
    budget = Budget(max_tokens=first + first // 2)  # one turn fits, two do not: the first must answer

    async def collect() -> tuple[list[str], RunResult[Any]]:
        deltas: list[str] = []
        async for event in agent.stream(prompt, budget=budget):
            if isinstance(event, TextDelta):
                deltas.append(event.text)
            elif isinstance(event, RunFinished):
                return deltas, event.result
        raise AssertionError("no result")

    deltas, result = asyncio.run(collect())
    assert len(result.steps) == 1
    assert not result.steps[0].message.tool_calls
    assert deltas
    assert "".join(deltas) == result.output
