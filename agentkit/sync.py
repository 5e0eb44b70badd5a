"""Running agentkit's async API from code that is not async."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(start: Callable[[], Coroutine[Any, Any, T]], refusal: str) -> T:
    """`start()` run to the end on an event loop of its own.

    The coroutine is made only once no loop is known to be running, so a
    refused call leaves no never-awaited coroutine behind; and it runs outside
    any `except` block, so an error it raises carries no unrelated context.

    Raises:
        RuntimeError: an event loop is already running in this thread; `refusal` says what to await instead.
    """
    import asyncio  # here: asyncio is a sixth of `import agentkit` otherwise (its first run imports it anyway)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop: the usual case, handled below and outside this block
    else:
        raise RuntimeError(refusal)
    return asyncio.run(start())
