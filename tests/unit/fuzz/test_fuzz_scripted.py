"""Fuzz `ScriptedRuntime` files (`scripted:FILE.json`): any JSON or bytes in the file, loaded through the
runtime URI and, when it loads, asked for one turn: a runtime and an answer, or a `ScriptError` (another
`AgentkitError`), never a `TypeError`, a `RecursionError` or a hang.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agentkit.messages import UserMessage
from agentkit.runtime import ModelRequest
from agentkit.runtimes import resolve
from agentkit.tool import tool
from tests.support.fuzzing import fuzz_settings, only_agentkit_errors


@tool
def lookup(key: str) -> str:
    """Look a key up.

    Args:
        key: The key.
    """
    return key


REQUESTS = [
    ModelRequest(messages=[UserMessage(text="hi Oslo")]),
    ModelRequest(messages=[UserMessage(text="hi Lima")], tools=[lookup.spec]),
    ModelRequest(messages=[UserMessage(text="hi")], tools=[lookup.spec], tool_choice="required"),
    ModelRequest(messages=[UserMessage(text="Oslo")], tools=[lookup.spec], tool_choice="none"),
]
TURN_KEYS = st.sampled_from(["text", "thinking", "tool_calls", "name", "arguments", "id", "Oslo", "Lima", ""])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.sampled_from(["lookup"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TURN_KEYS | st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)
SCRIPTS = (
    st.lists(JSON_VALUES, max_size=4)
    | st.dictionaries(TURN_KEYS | st.text(max_size=6), st.lists(JSON_VALUES, max_size=3), max_size=3)
    | JSON_VALUES
)
"""Scripts shaped like real ones (a list of turns, or turns by a piece of the prompt), and any JSON."""


def play(content: bytes, request: ModelRequest) -> Any:
    """Write `content` as a script file, load it through its URI and ask it for one turn."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "script.json"
        path.write_bytes(content)
        runtime = only_agentkit_errors(resolve, f"scripted:{path}")
    if runtime is None:
        return None
    response = only_agentkit_errors(asyncio.run, runtime.generate(request))
    if response is not None:  # a turn the loop can read (a number as its text would break it later)
        message = response.message
        assert isinstance(message.text, str), message
        assert isinstance(message.thinking, str | None), message
        assert all(isinstance(c.id, str) and isinstance(c.arguments, dict) for c in message.tool_calls), message
    return response


@fuzz_settings()
@given(SCRIPTS, st.sampled_from(REQUESTS))
def test_any_json_script(script: Any, request: ModelRequest) -> None:
    play(json.dumps(script).encode(), request)


@fuzz_settings()
@given(st.binary(), st.sampled_from(REQUESTS))
def test_any_bytes(content: bytes, request: ModelRequest) -> None:
    play(content, request)


@fuzz_settings()
@given(
    st.sampled_from(["[", '[{"text":', '{"Oslo":[', '[{"tool_calls":[{"name":"lookup","arguments":{"a":[']),
    st.integers(1, 20_000),
    st.sampled_from(REQUESTS),
)
def test_deep_nesting(opener: str, depth: int, request: ModelRequest) -> None:
    play((opener * depth).encode(), request)
