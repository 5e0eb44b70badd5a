"""Dialects: how a conversation becomes a prompt, and model text becomes a turn.

A dialect is the contract between agentkit and a model family's text format.
It does three things for a runtime that drives a raw engine:

- `render(request)`: the prompt text (always starting with the model's BOS).
- `constraint(request)`: what the engine must enforce while decoding, so that
  whatever the model writes is a valid decision.
- `parse(text, request)`: the model's text back into an `AssistantMessage`.

A new dialect implements the `Dialect` protocol and registers a factory:

    register_dialect("mine", MyDialect)
    runtime = VLLMEngine(model=..., dialect="mine")
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agentkit.messages import AssistantMessage
from agentkit.runtime import ModelRequest

__all__ = ["Constraint", "Dialect", "get_dialect", "register_dialect"]


@dataclass(frozen=True, kw_only=True)
class Constraint:
    """What the engine enforces while decoding.

    `kind` names the vLLM structured-outputs field it maps to; `value` is that
    field's content (a JSON Schema, an EBNF grammar or a structural tag).
    """

    kind: Literal["json", "grammar", "structural_tag", "regex"]
    value: Any

    @property
    def digest(self) -> str:
        """A short stable hash, to record which constraint produced a step."""
        blob = json.dumps([self.kind, self.value], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Dialect(Protocol):
    """Renders requests and parses model text for one model family's format."""

    name: str

    def render(self, request: ModelRequest) -> str:
        """The whole prompt for `request`, ending where the model's turn begins."""
        ...

    def constraint(self, request: ModelRequest) -> Constraint | None:
        """What decoding must satisfy for `request` (None: unconstrained)."""
        ...

    def parse(self, text: str, request: ModelRequest) -> AssistantMessage:
        """The model's turn, read from its text.

        Raises:
            ModelOutputError: the text is not a decision in this dialect.
        """
        ...

    def stop(self) -> tuple[str, ...]:
        """Strings that end the model's turn."""
        ...


_FACTORIES: dict[str, Callable[..., Dialect]] = {}


def register_dialect(name: str, factory: Callable[..., Dialect]) -> None:
    """Make `get_dialect(name, ...)` build dialects with `factory`."""
    _FACTORIES[name] = factory


def get_dialect(name: str, **options: Any) -> Dialect:
    """Build the dialect called `name` with `options`.

    Raises:
        ValueError: no dialect has that name.
    """
    # The built-in dialects register themselves on import.
    from agentkit.dialects import gemma4, json_action  # noqa: F401

    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; known: {', '.join(sorted(_FACTORIES))}") from None
    return factory(**options)
