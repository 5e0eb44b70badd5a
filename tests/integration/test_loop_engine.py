"""The loop's seams on the real vLLM engine with the embedded model: context that fits, budgets, streaming, plans."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pydantic

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
from agentkit.dialects.gemma4 import Gemma4Dialect
from agentkit.planning import references
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


class Capital(pydantic.BaseModel):
    city: str


@tool(examples=[{"country": "France"}, {"country": "Japan"}])
def capital(country: str) -> Capital:
    """The capital of a country.

    Args:
        country: The country's name.
    """
    return Capital(city=f"{country[:3]}ville")


@tool(examples=[{"city": "Paris"}, {"city": "Tokyo"}])
def temperature(city: str) -> float:
    """The temperature in a city, in °C.

    Args:
        city: The city's name.
    """
    return float(len(city))


def test_plans_the_engine_decodes_parse_and_refer_only_backwards(engine: VLLMEngine) -> None:
    countries = ["Norway", "Peru", "Kenya", "Chile", "Spain", "Japan"]
    specs = [capital.bind().spec, temperature.bind().spec]
    # The preset's dialect with strings and text capped at 20 characters: 12 calls and the text between
    # them then fit in max_tokens, so no plan can be cut short (the grammar bounds every part of it).
    dialect = engine.dialect
    assert isinstance(dialect, Gemma4Dialect)
    grammar = replace(dialect.grammar, max_string=20, max_text=20)
    capped = engine.variant(dialect=Gemma4Dialect(examples=dialect.examples, family=dialect.family, grammar=grammar))

    def request(country: str) -> ModelRequest:
        return ModelRequest(
            messages=[UserMessage(text=f"How warm is the capital of {country}?")],
            tools=specs,
            tool_choice="required",  # a plan every time
            plan=True,
            # Unseeded: vLLM's CPU worker dies when a seeded request is prefilled in chunks.
            sampling=Sampling(temperature=0.8, max_tokens=2400),
        )

    async def plans() -> list[Any]:
        return await asyncio.gather(*(capped.generate(request(c)) for c in countries))  # batched

    responses = asyncio.run(plans())  # a turn that did not parse would raise ModelOutputError
    with_references = 0
    for response in responses:
        calls = response.message.tool_calls
        assert calls
        for position, call in enumerate(calls, start=1):
            assert all(ref.number < position for ref in references(call.arguments)), call
        with_references += any(references(c.arguments) for c in calls)
    FIGURES["plan mode: plans decoded / with references"] = f"{len(responses)} / {with_references}"
