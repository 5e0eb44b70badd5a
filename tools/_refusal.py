"""What the ready-made tools raise when a call breaks one of their rules or caps.

The executor turns each into an error result the model reads, so the
message says what was refused (or stopped) and why:

    refused: http://10.0.0.1/ resolves to a private address (10.0.0.1); pass allow_private=True to allow it

    Exception
    ├── PermissionError
    │   └── ToolRefused        a host, path, statement or content the tool's rules do not allow
    └── RuntimeError
        └── TimeCapExceeded    the tool's own time cap stopped the work
"""

from __future__ import annotations

__all__ = ["TimeCapExceeded", "ToolRefused"]


class ToolRefused(PermissionError):
    """A ready-made tool refused a call: a host not allowed, a path outside the
    sandbox, a query that would write. The message starts with "refused: " and
    says what was refused and why."""

    def __init__(self, message: str) -> None:
        super().__init__(f"refused: {message}")


class TimeCapExceeded(RuntimeError):
    """A ready-made tool stopped its work at its own time cap (a fetch, a query).

    Not a `TimeoutError`: the executor reads a `TimeoutError` out of a tool
    with a `timeout` as its own, and would report that timeout instead.
    """
