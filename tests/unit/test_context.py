"""Context that fits: cut results, elided old results, the policy's choices; the store keeps every byte."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agentkit import Agent, ContextLengthExceeded, Message, ModelRequest, ToolResult, tool
from agentkit.context import ContextWindow
from agentkit.runtimes import ScriptedRuntime
from agentkit.runtimes.function import FunctionRuntime
from agentkit.store import Store


@tool(max_result_chars=200)
def page(n: int) -> str:
    """A page of a long document.

    Args:
        n: Which page.
    """
    return f"page {n}: " + "lorem ipsum " * 250  # 3,000+ characters


@tool
def fetch(n: int) -> str:
    """A long document.

    Args:
        n: Which one.
    """
    return f"doc {n}: " + "x" * 1500


def count_tokens(request: ModelRequest) -> int:
    """A token per 4 characters of each message, and 4 for its markers."""
    return sum(len(str(getattr(m, "content", "") or getattr(m, "text", ""))) // 4 + 4 for m in request.messages)


def Window(turns: Sequence[Any], context_length: int) -> FunctionRuntime:  # reads as a class
    """A script behind a small context window."""
    script = ScriptedRuntime(turns)
    return FunctionRuntime(
        lambda request, index: script.generate(request), context_length=context_length, count_tokens=count_tokens
    )


def calls(name: str, n: int) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": {"n": n}, "id": f"c{n}"}]}


def test_a_long_result_is_cut_for_the_model_and_kept_whole_in_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    runtime = ScriptedRuntime([calls("page", 1), "read"])
    result = Agent(tools=[page], runtime=runtime, store=store).run("read page 1")
    (seen,) = [m for m in runtime.requests[1].messages if isinstance(m, ToolResult)]
    assert seen.content.endswith("\n[... cut: 2868 of 3008 characters not shown]")
    assert len(seen.content) == 140 + len("\n[... cut: 2868 of 3008 characters not shown]")
    (kept,) = [m for m in store.load(result.run_id).messages if isinstance(m, ToolResult)]
    assert len(kept.content) == 3008  # every byte
    assert store.load(result.run_id).steps[1].response.metadata["context"] == {"cut": ["c1"]}


def test_old_results_are_elided_first_and_the_store_keeps_them(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    # Room for 572 tokens (1100 less the 512 of the reply and a margin); a result takes about 380.
    runtime = Window([calls("fetch", 1), calls("fetch", 2), calls("fetch", 3), "done"], context_length=1100)
    agent = Agent(tools=[fetch], runtime=runtime, store=store, instructions="Be brief.")
    result = agent.run("read three docs")
    last = runtime.requests[-1].messages
    results = [m for m in last if isinstance(m, ToolResult)]
    assert [r.content.startswith("[elided") for r in results] == [True, True, False]
    assert "the result of fetch (c1), 1507 characters" in results[0].content
    assert last[0].text == "Be brief."
    assert last[1].text == "read three docs"
    stored = store.load(result.run_id)
    assert [len(m.content) for m in stored.messages if isinstance(m, ToolResult)] == [1507, 1507, 1507]
    assert stored.steps[-1].response.metadata["context"]["elided"] == ["c1", "c2"]


def test_the_prompt_is_append_only_while_nothing_is_elided() -> None:
    runtime = Window([calls("fetch", 1), calls("fetch", 2), "done"], context_length=100_000)
    Agent(tools=[fetch], runtime=runtime).run("read")
    for before, after in zip(runtime.requests, runtime.requests[1:], strict=False):
        assert list(after.messages[: len(before.messages)]) == list(before.messages)


@tool
def note(n: int) -> str:
    """A short note.

    Args:
        n: Which one.
    """
    return f"note {n}: " + "y" * 400


def test_elision_goes_below_the_limit_so_the_prompt_changes_at_few_steps() -> None:
    runtime = Window([calls("note", n) for n in range(1, 21)] + ["done"], context_length=1400)
    Agent(tools=[note], runtime=runtime, max_steps=30).run("read")
    elided = [
        sum(1 for m in r.messages if isinstance(m, ToolResult) and m.content.startswith("[elided"))
        for r in runtime.requests
    ]
    assert elided == sorted(elided)  # never un-elided
    changed = [i for i in range(1, len(elided)) if elided[i] != elided[i - 1]]
    assert elided[-1] >= 8  # the run outgrew its window several times over
    # Each elision makes room for several more steps: the prompt changed at few steps, not every one.
    assert len(changed) <= (len(elided) - changed[0]) // 2


def test_context_fail_raises_instead() -> None:
    runtime = Window([calls("fetch", 1), calls("fetch", 2), "done"], context_length=700)
    with pytest.raises(ContextLengthExceeded, match="context='elide'") as failed:
        Agent(tools=[fetch], runtime=runtime, context="fail").run("read")
    assert failed.value.partial is not None


def test_a_callable_policy_chooses_the_messages() -> None:
    seen: list[ContextWindow] = []

    def keep_last_two(window: ContextWindow) -> list[Message]:
        seen.append(window)
        return [window.messages[0], *window.messages[-2:]]

    runtime = Window([calls("fetch", 1), calls("fetch", 2), "done"], context_length=1000)
    Agent(tools=[fetch], runtime=runtime, context=keep_last_two).run("read")
    assert seen
    assert seen[0].limit == 1000 - 512 - 16
    assert len(runtime.requests[-1].messages) == 3


def test_a_conversation_that_cannot_fit_says_so() -> None:
    runtime = Window(["never"], context_length=600)
    with pytest.raises(ContextLengthExceeded, match="even with every earlier tool result elided"):
        Agent(runtime=runtime).run("y" * 4000)


def test_max_result_chars_is_checked() -> None:
    from agentkit.errors import ToolDefinitionError

    with pytest.raises(ToolDefinitionError, match="max_result_chars must be a whole number >= 64"):
        tool(max_result_chars=10)(lambda: "x")
