"""The executor: runs the tool calls of one model turn, concurrently.

Every problem a call can have — an unknown tool, arguments that do not fit,
a tool that raises or hangs, a refused approval — becomes an error
`ToolResult` the model reads on its next turn. Nothing is swallowed: the error
text says what happened, and the exception type is kept in the result.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tenacity

from agentkit.errors import ToolArgumentsError, ToolExecutionError, ToolTimeoutError, UnknownToolError
from agentkit.messages import ToolCall, ToolResult
from agentkit.tool import BoundTool, to_json_value
from agentkit.tracing.spans import tool_span

__all__ = ["Approver", "Executor"]

log = logging.getLogger("agentkit.executor")

Approver = Callable[[ToolCall], bool | Awaitable[bool]]
"""Decides whether a call to a `requires_approval` tool may run."""


@functools.cache
def _tool_threads() -> ThreadPoolExecutor:
    """The worker threads sync tools run in, shared by every agent in the process.

    Not the event loop's default executor: `asyncio.run` (and so `Agent.run`)
    waits for that one at exit, so a sync tool that timed out but is still
    running would hold the run open. A thread cannot be killed; the process
    still waits for it when it exits.
    """
    return ThreadPoolExecutor(max_workers=32, thread_name_prefix="agentkit-tool")


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

    async def run_all(
        self,
        calls: Sequence[ToolCall],
        *,
        on_start: Callable[[ToolCall, BoundTool], None] | None = None,
        on_result: Callable[[ToolResult], None] | None = None,
    ) -> list[ToolResult]:
        """Run `calls` concurrently; results come back in the calls' order.

        `on_start` is called right before a tool runs (after its arguments
        validated and it was approved), `on_result` as each call finishes.
        """

        async def one(call: ToolCall) -> ToolResult:
            result = await self.run(call, on_start=on_start)
            if on_result is not None:
                on_result(result)
            return result

        if len(calls) == 1:
            return [await one(calls[0])]
        return list(await asyncio.gather(*(one(call) for call in calls)))

    async def run(self, call: ToolCall, *, on_start: Callable[[ToolCall, BoundTool], None] | None = None) -> ToolResult:
        """Run one call, traced as `execute_tool`. Never raises for the tool's (or the approver's) failures."""
        tool = self.tools.get(call.name)
        with tool_span(call, tool.spec.description if tool is not None else None) as span:
            result = await self._run(call, tool, on_start)
            span.record(result)
        return result

    async def _run(
        self, call: ToolCall, tool: BoundTool | None, on_start: Callable[[ToolCall, BoundTool], None] | None
    ) -> ToolResult:
        if tool is None:
            return _error(call, UnknownToolError(call.name, list(self.tools)))
        try:
            thunk = tool.validate(call.arguments)
        except ToolArgumentsError as exc:
            return _error(call, exc)
        if tool.options.requires_approval:
            try:
                refusal = await self._ask(tool, call)
            except Exception as exc:
                return _error(call, ToolExecutionError(call.name, exc), f"the approver of {call.name!r} raised")
            if refusal is not None:
                return ToolResult(call_id=call.id, name=call.name, content=refusal, is_error=True)
        if on_start is not None:
            on_start(call, tool)
        try:
            value = await self._invoke(tool, thunk)
        except ToolExecutionError as exc:
            return _error(call, exc)
        try:
            content = to_json_value(value)
        except Exception as exc:  # TypeError, ValueError (circular), UnicodeDecodeError (bytes)...
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

        async def bounded(job: Awaitable[Any]) -> Any:
            if options.timeout is None:
                return await job
            try:
                return await asyncio.wait_for(job, options.timeout)
            except TimeoutError:
                # Only the timeout agentkit imposed; a tool's own TimeoutError
                # (a socket's, say) is an ordinary failure below.
                raise ToolTimeoutError(tool.name, options.timeout) from None

        async def once() -> Any:
            if tool.is_async:
                value = await bounded(thunk())
            elif options.inline:
                value = thunk()
            else:
                # Sync tools run in a thread so that other calls (and other
                # agents on this loop) go on; on timeout the call fails and the
                # thread finishes in the background.
                loop = asyncio.get_running_loop()
                context = contextvars.copy_context()
                value = await bounded(loop.run_in_executor(_tool_threads(), context.run, thunk))
            if inspect.isawaitable(value):  # an async tool behind a sync wrapper
                value = await bounded(value)
            return value

        async def guarded() -> Any:
            try:
                return await once()
            except (asyncio.CancelledError, ToolTimeoutError):
                raise
            except Exception as exc:
                raise ToolExecutionError(tool.name, exc) from exc

        def worth_retrying(exc: BaseException) -> bool:
            # A sync tool that timed out is still running in its thread: a
            # second attempt would run beside it.
            return isinstance(exc, ToolExecutionError) and not (isinstance(exc, ToolTimeoutError) and not tool.is_async)

        if options.retries == 0:
            return await guarded()
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(options.retries + 1),
            wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=2.0),
            retry=tenacity.retry_if_exception(worth_retrying),
            before_sleep=lambda state: log.warning(
                "tool %s failed (attempt %d), retrying: %s",
                tool.name,
                state.attempt_number,
                state.outcome.exception() if state.outcome else "",
            ),
            reraise=True,
        )
        return await retrying(guarded)


def _error(call: ToolCall, exc: Exception, context: str | None = None) -> ToolResult:
    cause = exc.__cause__ if isinstance(exc, ToolExecutionError) else None
    log.warning("%s: %s", context or f"tool call {call.name!r} failed", exc, exc_info=cause or None)
    return ToolResult(call_id=call.id, name=call.name, content=f"{type(exc).__name__}: {exc}", is_error=True)
