"""Budgets: how much a run may spend, and the meter the loop keeps against them.

    agent = MyAgent(budget=Budget(max_tokens=20_000, max_seconds=60))
    agent.run("...", budget=Budget(max_tool_calls=5))   # per run, over the agent's

When the next turn is the last a budget can afford, the loop asks it with
`tool_choice="none"`: a constrained model must answer then (a typed answer
included) instead of failing. When not even that turn fits, or a model on an
unconstrained runtime calls a tool anyway, the run raises `BudgetExceeded`
with its trajectory, and the store marks it `budget_exhausted`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields, replace

__all__ = ["Budget", "Meter"]

MIN_REPLY_TOKENS = 32
"""The fewest tokens a last turn is asked with: below this, the run stops instead."""


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Limits on one run; None is no limit.

    `max_steps` (model turns) defaults to the agent's `max_steps`. Steps,
    tokens and tool calls count over the run's whole life, across resumes;
    `max_seconds` is wall time of each invocation (a run paused for approval
    does not spend it while it waits).
    """

    max_steps: int | None = None
    max_tokens: int | None = None
    """Prompt plus completion tokens of every model turn."""
    max_seconds: float | None = None
    max_tool_calls: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            whole = f.name != "max_seconds"
            if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
                raise ValueError(f"Budget.{f.name} must be a {'whole ' if whole else ''}number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Budget.{f.name} must be > 0, got {value!r}")

    def over(self, base: Budget | None) -> Budget:
        """This budget with `base`'s limits where it sets none."""
        if base is None:
            return self
        merged = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(base, **{name: value for name, value in merged.items() if value is not None})


@dataclass(kw_only=True)
class Meter:
    """What a run has spent against its budget (steps, tokens and calls carry over a resume)."""

    budget: Budget
    steps: int = 0
    tokens: int = 0
    tool_calls: int = 0
    started: float = 0.0
    longest_turn: float = 0.0
    """The slowest model call so far, seconds: a time budget's last turn must fit one."""

    def __post_init__(self) -> None:
        self.started = self.started or time.monotonic()

    def seconds_left(self) -> float | None:
        if self.budget.max_seconds is None:
            return None
        return self.budget.max_seconds - (time.monotonic() - self.started)

    def spent(self) -> str | None:
        """The budget already spent, if one is (no turn at all may be asked)."""
        budget = self.budget
        if budget.max_steps is not None and self.steps >= budget.max_steps:
            return "steps"
        if budget.max_tokens is not None and self.tokens >= budget.max_tokens:
            return "tokens"
        left = self.seconds_left()
        if left is not None and left <= 0:
            return "seconds"
        return None

    def last_turn(self, turn_tokens: int) -> str | None:
        """The budget that makes the next turn the last one, if one does.

        `turn_tokens` is what the next turn is expected to cost (its prompt
        and its reply budget): a turn after it must fit as well, to read the
        results of any calls it makes.
        """
        budget = self.budget
        if budget.max_steps is not None and self.steps + 1 >= budget.max_steps:
            return "steps"
        if budget.max_tool_calls is not None and self.tool_calls >= budget.max_tool_calls:
            return "tool_calls"
        if budget.max_tokens is not None and self.tokens + 2 * turn_tokens > budget.max_tokens:
            return "tokens"
        left = self.seconds_left()
        if left is not None and left < 2 * self.longest_turn:
            return "seconds"
        return None

    def reply_tokens(self, prompt_tokens: int, asked: int) -> int:
        """How many tokens the next reply may take: `asked`, or less when the token budget is nearly spent."""
        if self.budget.max_tokens is None:
            return asked
        return min(asked, self.budget.max_tokens - self.tokens - prompt_tokens)

    def limit(self, which: str) -> float:
        """The value of budget `which` (`steps`, `tokens`, `seconds`, `tool_calls`)."""
        value = getattr(self.budget, "max_" + which)
        assert value is not None
        return float(value)
