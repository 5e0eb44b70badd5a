"""`FunctionRuntime`: a model whose every turn a Python function decides.

For tests of the loop's own logic where a fixed script is not enough: a turn
that depends on the request, a runtime that fails on the third call, a model
that reports token counts or sleeps. The handler gets each `ModelRequest`
(and how many came before it) and returns the turn, or raises.

    def model(request: ModelRequest, index: int) -> Turn:
        if index == 0:
            return {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}
        return "3"

    runtime = FunctionRuntime(model)

The handler may be sync or async. It returns what a `ScriptedRuntime` turn
may be (an `AssistantMessage`, a string for a text answer, or a mapping with
`text`, `thinking` and `tool_calls`), or a whole `ModelResponse` when the test
needs its usage, finish reason or raw text. `runtime.requests` keeps every
request, in order.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from agentkit.runtime import ModelRequest, ModelResponse, RuntimeInfo, Usage
from agentkit.runtimes.scripted import Turn, _to_message

__all__ = ["FunctionRuntime", "Handler"]

Handler = Callable[[ModelRequest, int], "Turn | ModelResponse | Awaitable[Turn | ModelResponse]"]
"""Gets the request and its index (0 for the run's first), returns the turn or raises."""


class FunctionRuntime:
    """A runtime that asks `handler` for each turn.

    Args:
        handler: `handler(request, index)`, sync or async, returns the turn
            (see the module docstring) or raises, as a failing runtime would.
        name: `info.name`. `info` can be replaced whole with `info=`.
        model: `info.model`.
        context_length: `info.context_length`, for the loop's context policy.
        count_tokens: The prompt's token count for a request, as an engine
            would report it (the loop's context policy asks); None: the loop estimates.
        info: The whole `RuntimeInfo`, overriding `name`, `model` and `context_length`.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        name: str = "function",
        model: str = "function",
        context_length: int | None = None,
        count_tokens: Callable[[ModelRequest], int] | None = None,
        info: RuntimeInfo | None = None,
    ) -> None:
        self.handler = handler
        self._info = info or RuntimeInfo(name=name, model=model, context_length=context_length)
        self.requests: list[ModelRequest] = []
        self._lock = threading.Lock()
        if count_tokens is not None:
            self.count_tokens = count_tokens

    @property
    def info(self) -> RuntimeInfo:
        return self._info

    async def generate(self, request: ModelRequest) -> ModelResponse:
        with self._lock:
            index = len(self.requests)
            self.requests.append(request)
        turn: Any = self.handler(request, index)
        if inspect.isawaitable(turn):
            turn = await turn
        if isinstance(turn, ModelResponse):
            return turn
        message = _to_message(turn, index)
        return ModelResponse(
            message=message,
            usage=Usage(requests=1),
            finish_reason="tool_calls" if message.tool_calls else "stop",
            raw_text=message.text,
        )
