"""What the fuzz tests (`tests/unit/fuzz/`) share: how many examples, the time box, the rule.

The rule of every fuzz target: whatever the input, agentkit either returns or
raises one of its documented errors (`AgentkitError` subclasses), never a
`KeyError`, `IndexError`, `RecursionError`..., and never hangs.

`make test` runs a small, fixed slice (`AGENTKIT_FUZZ_EXAMPLES` unset: 100
examples a target, derandomized so CI is repeatable); `make fuzz` sets
`AGENTKIT_FUZZ_EXAMPLES=100000` and lets hypothesis pick fresh inputs. A crash
found either way becomes a regular test beside the code it broke.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

from agentkit.errors import AgentkitError

__all__ = ["EXAMPLES", "FULL", "Hung", "fuzz_settings", "only_agentkit_errors", "time_box", "typed"]

_SLICE = 100
EXAMPLES = int(os.environ.get("AGENTKIT_FUZZ_EXAMPLES", _SLICE))
"""Examples per target: 100 in `make test`, 10^5 in `make fuzz`."""

FULL = EXAMPLES > _SLICE
"""A `make fuzz` run (random inputs) rather than CI's fixed slice."""

T = TypeVar("T")


def fuzz_settings(examples: int = EXAMPLES, **overrides: Any) -> settings:
    """Hypothesis settings for a fuzz target: `examples` examples (scaled down by
    `examples / EXAMPLES` for a slow target that asks for fewer), no per-example
    deadline (the time box catches hangs instead), no example database."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=not FULL,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        **overrides,
    )


class Hung(Exception):
    """An input kept agentkit busy past the time box: a hang, reported as a failure."""


@contextmanager
def time_box(seconds: float = 5.0) -> Iterator[None]:
    """Fail with `Hung` if the block runs longer than `seconds` (SIGALRM: main thread only)."""

    def expire(signum: int, frame: object) -> None:
        raise Hung(f"no answer within {seconds:g} s")

    # pytest-timeout arms the same timer for the whole test: its time left is put back after.
    previous = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))


def only_agentkit_errors(function: Callable[..., T], *args: Any, seconds: float = 5.0, **kwargs: Any) -> T | None:
    """Call `function`, time-boxed: its value, or None when it raised an `AgentkitError`.

    Any other exception propagates, and so fails the fuzz test with hypothesis's
    shrunk example: that is the crash the target is looking for.
    """
    with time_box(seconds):
        try:
            return function(*args, **kwargs)
        except AgentkitError:
            return None


def typed(value: Any) -> Any:
    """`value` with its types spelled out, so that 1, 1.0 and True differ and floats compare bit for bit."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)
