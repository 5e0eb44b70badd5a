"""The executor: runs the tool calls of one model turn, concurrently.

Every problem a call can have — an unknown tool, arguments that do not fit,
a tool that raises or hangs, a refused approval — becomes an error
`ToolResult` the model reads on its next turn. Nothing is swallowed: the error
text says what happened, and the exception type is kept in the result.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentkit.errors import ToolArgumentsError, ToolExecutionError, ToolTimeoutError, UnknownToolError
from agentkit.messages import ToolCall, ToolResult
from agentkit.secrets import MASK, marks_secrets, masked_arguments
from agentkit.tool import PACE_SLOW, BoundTool, Pace, to_json_value
from agentkit.tracing.spans import tool_span

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["Approver", "Executor", "repeated_calls", "shared_result"]

log = logging.getLogger("agentkit.executor")

Approver = Callable[[ToolCall], "bool | str | Awaitable[bool | str | None] | None"]
"""Decides on a call of a `requires_approval` tool: True runs it; False, or a
reason, refuses it (the model reads the reason); None defers the decision (an
agent with a store then pauses the run until someone decides). Its decisions
are stored as made by its `decided_by` attribute when it has one (a person's
name, say), else by `callback`."""


@functools.cache
def _tool_threads() -> ThreadPoolExecutor:
    """The worker threads sync tools run in, shared by every agent in the process.

    Not the event loop's default executor: `asyncio.run` (and so `Agent.run`)
    waits for that one at exit, so a sync tool that timed out but is still
    running would hold the run open. A thread cannot be killed; the process
    still waits for it when it exits.
    """
    from concurrent.futures import ThreadPoolExecutor

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
        decisions: Mapping[str, bool | str] | None = None,
        on_start: Callable[[ToolCall, BoundTool], None] | None = None,
        on_result: Callable[[ToolResult], None] | None = None,
    ) -> list[ToolResult]:
        """Run `calls` concurrently; results come back in the calls' order.

        `decisions` are decisions already made on calls of `requires_approval`
        tools, by call id (True, or a refusal's reason); the approver is asked
        about the others. `on_start` is called right before a tool runs (after
        its arguments validated and it was approved), `on_result` as each call
        finishes.
        """

        async def one(call: ToolCall) -> ToolResult:
            decision = decisions.get(call.id) if decisions is not None else None
            result = await self.run(call, decision=decision, on_start=on_start)
            if on_result is not None:
                on_result(result)
            return result

        if len(calls) == 1:
            return [await one(calls[0])]
        import asyncio

        return list(await asyncio.gather(*(one(call) for call in calls)))

    async def run(
        self,
        call: ToolCall,
        *,
        decision: bool | str | None = None,
        on_start: Callable[[ToolCall, BoundTool], None] | None = None,
        links: Sequence[Any] = (),
    ) -> ToolResult:
        """Run one call, traced as `execute_tool`. Never raises for the tool's (or the approver's) failures.

        `decision`: a decision already made when the tool requires approval.
        `links`: span contexts the call's span links to (the plan calls whose results it uses).
        """
        tool = self.tools.get(call.name)
        with tool_span(call, tool.spec.description if tool is not None else None, links) as span:
            result = await self._run(call, tool, decision, on_start)
            span.record(result)
        return result

    async def _run(
        self,
        call: ToolCall,
        tool: BoundTool | None,
        decision: bool | str | None,
        on_start: Callable[[ToolCall, BoundTool], None] | None,
    ) -> ToolResult:
        if tool is None:
            return _error(call, UnknownToolError(call.name, list(self.tools)))
        try:
            thunk = tool.validate(call.arguments)
        except ToolArgumentsError as exc:
            return _error(call, exc)
        if marks_secrets(tool.spec.parameters) and masked_arguments(tool.spec.parameters, call.arguments):
            return ToolResult(call_id=call.id, name=call.name, content=_MASKED, is_error=True)
        if tool.options.requires_approval:
            try:
                refusal = await self._ask(tool, call) if decision is None else _refusal(tool, decision)
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
        return _refusal(tool, decision)

    async def _invoke(self, tool: BoundTool, thunk: Callable[[], Any]) -> Any:
        if tool.options.retries == 0:
            return await _attempt(tool, thunk)
        import tenacity  # only tools with retries need it

        def worth_retrying(exc: BaseException) -> bool:
            # A sync tool that timed out is still running in its thread: a
            # second attempt would run beside it.
            return isinstance(exc, ToolExecutionError) and not (isinstance(exc, ToolTimeoutError) and not tool.is_async)

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(tool.options.retries + 1),
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
        return await retrying(_attempt, tool, thunk)


async def _attempt(tool: BoundTool, thunk: Callable[[], Any]) -> Any:
    """One run of the tool; what it raises becomes a `ToolExecutionError` (a timeout stays `ToolTimeoutError`)."""
    try:
        if tool.is_async:
            value = await _bounded(tool, thunk())
        elif _inline(tool):
            started = time.perf_counter()
            try:
                value = thunk()
            finally:
                tool.pace.record(time.perf_counter() - started, inline=True)
        else:
            # Sync tools run in a thread so that other calls (and other agents on
            # this loop) go on; on timeout the call fails and the thread finishes
            # in the background.
            value = await _bounded(tool, _in_thread(thunk, tool.pace))
        if inspect.isawaitable(value):  # an async tool behind a sync wrapper
            value = await _bounded(tool, value)
        return value
    except ToolTimeoutError:
        raise
    except Exception as exc:
        raise ToolExecutionError(tool.name, exc) from exc


def _bounded(tool: BoundTool, job: Awaitable[Any]) -> Awaitable[Any]:
    """`job`, failing with `ToolTimeoutError` after the tool's `timeout`."""
    return job if tool.options.timeout is None else _timed(tool, job)


async def _timed(tool: BoundTool, job: Awaitable[Any]) -> Any:
    import asyncio

    timeout = tool.options.timeout
    assert timeout is not None
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            return await job
    except TimeoutError:
        if not limit.expired():
            raise  # the tool's own TimeoutError (a socket's, say): an ordinary failure
        raise ToolTimeoutError(tool.name, timeout) from None


def _inline(tool: BoundTool) -> bool:
    """Whether a sync tool runs on the event loop: when it says so, or, left to
    agentkit (`inline=None`, no timeout), once its calls proved fast."""
    inline = tool.options.inline
    if inline is None:
        return tool.options.timeout is None and tool.pace.inline()
    return inline


def _in_thread(thunk: Callable[[], Any], pace: Pace) -> asyncio.Future[Any]:
    """`thunk()` in a worker thread, as a future of this loop; its time goes into `pace`.

    Settled with `call_soon_threadsafe`, without `run_in_executor`'s chaining
    of a second future (a sizeable share of a fast tool's step).
    """
    import asyncio

    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def work() -> None:
        started = time.perf_counter()
        try:
            outcome: tuple[Any, BaseException | None] = (context.run(thunk), None)
        except BaseException as exc:
            outcome = (None, exc)
        pace.record(time.perf_counter() - started if outcome[1] is None else PACE_SLOW, inline=False)
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits for the call
            loop.call_soon_threadsafe(_settle, future, *outcome)

    _tool_threads().submit(work)
    return future


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.cancelled():  # timed out or cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _refusal(tool: BoundTool, decision: bool | str | None) -> str | None:
    """None when `decision` lets the call run, else the text the model reads."""
    if decision is True:
        return None
    return decision if isinstance(decision, str) and decision else f"the call to {tool.name!r} was not approved"


def repeated_calls(calls: Sequence[ToolCall]) -> dict[str, str]:
    """The calls of one turn that repeat an earlier call of it (same tool, same
    arguments), by id, each with the id of the first such call.

    Unconstrained models repeat a call within a turn, sometimes hundreds of
    times; the loop runs the first and gives the repeats its result
    (`shared_result`). Arguments compare as JSON: `1` and `1.0` differ.
    """
    first: dict[tuple[str, str], str] = {}
    repeats: dict[str, str] = {}
    for call in calls:
        try:
            key = (call.name, json.dumps(call.arguments, sort_keys=True, ensure_ascii=False))
        except (TypeError, ValueError, RecursionError):  # not JSON (a test's runtime): never a repeat
            continue
        if key in first:
            repeats[call.id] = first[key]
        else:
            first[key] = call.id
    return repeats


def shared_result(call: ToolCall, first: ToolResult, *, idempotent: bool) -> ToolResult:
    """The result of `call`, which repeats the call `first` answers in the same turn, marked `duplicate_of` it.

    An idempotent tool's result is shared: running it again would give the same.
    A tool that is not idempotent is not run again on a repeat either: the call
    is refused, and the model is told to call again in a later turn if it meant
    a second run (a model that repeats itself would otherwise repeat the effect).
    """
    if idempotent:
        return ToolResult(
            call_id=call.id, name=call.name, content=first.content, is_error=first.is_error, duplicate_of=first.call_id
        )
    refusal = (
        f"not run: this call repeats call {first.call_id} of the same turn (same tool, same arguments), and "
        f"{call.name!r} is not idempotent, so running it again could repeat its effects; "
        "call it again in a later turn if you mean it to run twice"
    )
    return ToolResult(call_id=call.id, name=call.name, content=refusal, is_error=True, duplicate_of=first.call_id)


_MASKED = (
    f"not run: a secret argument of this call reads {MASK}, as the store keeps it (the run was resumed "
    "from the store, which never holds the value); call the tool again with the value"
)


def _error(call: ToolCall, exc: Exception, context: str | None = None) -> ToolResult:
    cause = exc.__cause__ if isinstance(exc, ToolExecutionError) else None
    log.warning("%s: %s", context or f"tool call {call.name!r} failed", exc, exc_info=cause or None)
    return ToolResult(call_id=call.id, name=call.name, content=f"{type(exc).__name__}: {exc}", is_error=True)
