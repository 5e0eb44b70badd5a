"""Calling a tool the way an agent does: through the executor, reading the result the model reads."""

from __future__ import annotations

import asyncio
from typing import Any

from agentkit.executor import Executor
from agentkit.messages import ToolCall, ToolResult
from agentkit.tool import as_tool


def call(tool: Any, **arguments: Any) -> ToolResult:
    """One call of `tool` with the model's `arguments`, run by an `Executor` (errors become error results)."""
    bound = as_tool(tool)
    return asyncio.run(Executor({bound.name: bound}).run(ToolCall(name=bound.name, arguments=arguments)))


def refused(tool: Any, **arguments: Any) -> str:
    """The error text the model reads for a call that must be refused (fails the test if it is not)."""
    result = call(tool, **arguments)
    assert result.is_error, f"not refused: {result.content!r}"
    assert isinstance(result.content, str)
    return result.content


def ok(tool: Any, **arguments: Any) -> Any:
    """The content of a call that must succeed."""
    result = call(tool, **arguments)
    assert not result.is_error, result.content
    return result.content
