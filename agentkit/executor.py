"""The executor: runs the tool calls of one model turn, concurrently.

Every problem a call can have — an unknown tool, arguments that do not fit,
a tool that raises or hangs, a refused approval — becomes an error
`ToolResult` the model reads on its next turn. Nothing is swallowed: the error
text says what happened, and the exception type is kept in the result.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import tenacity

from agentkit.errors import ToolArgumentsError, ToolExecutionError, ToolTimeoutError, UnknownToolError
from agentkit.messages import ToolCall, ToolResult
from agentkit.tool import BoundTool, to_json_value

__all__ = ["Approver", "Executor"]

log = logging.getLogger("agentkit.executor")

Approver = Callable[[ToolCall], bool | Awaitable[bool]]
"""Decides whether a call to a `requires_approval` tool may run."""


class Executor:
    """Runs tool calls against a fixed set of tools.

    Args:
        tools: The tools by name.
        approve: Asked before each call of a tool marked `requires_approval`;
            without it such calls are refused with an explanation.
    """

    def __init__(self, tools: Mapping[str, BoundTool], *, approve: Approver | None = None) -> None:
        self.tools = dict(tools)
        self.approve = approve

    async def run_all(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """Run `calls` concurrently; results come back in the calls' order."""
        if len(calls) == 1:
            return [await self.run(calls[0])]
        return list(await asyncio.gather(*(self.run(call) for call in calls)))

    async def run(self, call: ToolCall) -> ToolResult:
        """Run one call. Never raises for the tool's own failures."""
        tool = self.tools.get(call.name)
        if tool is None:
            return _error(call, UnknownToolError(call.name, list(self.tools)))
        try:
            thunk = tool.validate(call.arguments)
        except ToolArgumentsError as exc:
            return _error(call, exc)
        if tool.options.requires_approval:
            refusal = await self._ask(tool, call)
            if refusal is not None:
                return ToolResult(call_id=call.id, name=call.name, content=refusal, is_error=True)
        try:
            value = await self._invoke(tool, thunk)
        except ToolExecutionError as exc:
            return _error(call, exc)
        try:
            content = to_json_value(value)
        except TypeError as exc:
            return _error(call, ToolExecutionError(call.name, exc))
        return ToolResult(call_id=call.id, name=call.name, content=content)

    async def _ask(self, tool: BoundTool, call: ToolCall) -> str | None:
        if self.approve is None:
            return (
                f"tool {tool.name!r} requires approval and this agent has no approver; "
                "pass approve=... to the agent to allow it"
            )
        decision = self.approve(call)
        if inspect.isawaitable(decision):
            decision = await decision
        return None if decision else f"the call to {tool.name!r} was not approved"

    async def _invoke(self, tool: BoundTool, thunk: Callable[[], Any]) -> Any:
        options = tool.options

        async def once() -> Any:
            if tool.is_async:
                coro = thunk()
                return await (asyncio.wait_for(coro, options.timeout) if options.timeout else coro)
            if options.inline:
                return thunk()
            # Sync tools run in a thread so that other calls (and other agents
            # on this loop) go on. A thread cannot be killed: on timeout the
            # call fails and the thread finishes in the background.
            job = asyncio.to_thread(thunk)
            return await (asyncio.wait_for(job, options.timeout) if options.timeout else job)

        async def guarded() -> Any:
            try:
                return await once()
            except TimeoutError:
                raise ToolTimeoutError(tool.name, options.timeout or 0) from None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise ToolExecutionError(tool.name, exc) from exc

        if options.retries == 0:
            return await guarded()
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(options.retries + 1),
            wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=2.0),
            retry=tenacity.retry_if_exception_type(ToolExecutionError),
            before_sleep=lambda state: log.warning(
                "tool %s failed (attempt %d), retrying: %s",
                tool.name,
                state.attempt_number,
                state.outcome.exception() if state.outcome else "",
            ),
            reraise=True,
        )
        return await retrying(guarded)


def _error(call: ToolCall, exc: Exception) -> ToolResult:
    return ToolResult(call_id=call.id, name=call.name, content=f"{type(exc).__name__}: {exc}", is_error=True)
