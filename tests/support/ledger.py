"""Tools that write each call they run into `CALLS`, for tests that count what ran (a resumed run must not run
a finished call again).

The command-line tests write this file's text into a user's module of agents, so it imports nothing from the
tests and each such module starts with a `CALLS` of its own.
"""

from __future__ import annotations

from agentkit import tool

CALLS: list[str] = []


@tool
def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: The first.
        b: The second.
    """
    CALLS.append(f"add {a} {b}")
    return a + b


@tool(idempotent=False)
def charge(amount: int) -> str:
    """Charge a card.

    Args:
        amount: Euros.
    """
    CALLS.append(f"charge {amount}")
    return f"charged {amount}"
