"""Conversation values: what the user, the model and the tools say.

These are plain frozen values. Identity and persistence belong to the store,
not to them: two equal messages are the same message.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

__all__ = [
    "AssistantMessage",
    "Message",
    "SystemMessage",
    "ToolCall",
    "ToolResult",
    "UserMessage",
    "new_call_id",
    "with_unique_call_ids",
]


def new_call_id() -> str:
    """A fresh tool-call id, for runtimes whose model does not name its calls."""
    return "call_" + uuid.uuid4().hex[:16]


@dataclass(frozen=True, kw_only=True)
class SystemMessage:
    """Instructions that frame the whole conversation."""

    text: str
    role: Literal["system", "developer"] = "system"
    """`developer` is OpenAI's name for the application's own instructions;
    Gemma 4's template (and so every agentkit renderer) writes it as a system turn."""


@dataclass(frozen=True, kw_only=True)
class UserMessage:
    """What the user asks."""

    text: str
    role: Literal["user"] = "user"


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    """One call the model asks for.

    The arguments are exactly what the model produced (decoded from its
    syntax); they are validated against the tool's schema before the tool runs.
    """

    name: str
    """The tool's name, as offered to the model."""
    arguments: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments, as JSON-compatible values."""
    id: str = field(default_factory=new_call_id)
    """Pairs the call with its `ToolResult`; unique within a run (the loop sees to it)."""
    runtime_id: str | None = None
    """The id the runtime gave the call, when the loop had to give it another
    to keep ids unique within the run (a server that numbers calls per
    response, a script replayed after a resume). Runtimes that send ids back
    to a server (the chat-completions form) send this one, so the server
    sees its own ids; None: `id` is the runtime's own."""

    @property
    def wire_id(self) -> str:
        """The id as the runtime gave it: `runtime_id`, else `id`."""
        return self.runtime_id if self.runtime_id is not None else self.id


@dataclass(frozen=True, kw_only=True)
class AssistantMessage:
    """One model turn: optional thinking, text and any number of tool calls."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    thinking: str | None = None
    role: Literal["assistant"] = "assistant"

    def __post_init__(self) -> None:
        # Accept a list for convenience; store a tuple so the value stays frozen.
        calls: Any = self.tool_calls
        if not isinstance(calls, tuple):
            object.__setattr__(self, "tool_calls", tuple(calls))


@dataclass(frozen=True, kw_only=True)
class ToolResult:
    """What a tool returned (or why it failed), as the model will see it."""

    call_id: str
    name: str
    content: Any
    """The tool's return value serialised to JSON-compatible data."""
    is_error: bool = False
    duplicate_of: str | None = None
    """The id of the call this one repeated in the same turn (same tool, same
    arguments): this call did not run, and its result is that call's, or a
    refusal for a tool that is not idempotent (`agentkit.executor.repeated_calls`)."""
    role: Literal["tool"] = "tool"


def with_unique_call_ids(message: AssistantMessage, taken: set[str], step: int) -> AssistantMessage:
    """`message` with every call id unique among `taken`, which it then joins.

    A call whose id is empty or already taken (by an earlier turn of the run or
    an earlier call of this turn) gets `ID@STEP` (then `ID@STEP.1`, ...) and
    keeps its own in `runtime_id`; the others are left as they are. Ids made
    this way depend only on the run's history, so a run gives the same
    messages whether or not it is stored, resumed or replayed.
    """
    calls = []
    for call in message.tool_calls:
        if call.id and call.id not in taken:
            calls.append(call)
        else:
            base = f"{call.id or 'call'}@{step}"
            candidates = itertools.chain([base], (f"{base}.{n}" for n in itertools.count(1)))
            fresh = next(c for c in candidates if c not in taken)
            calls.append(replace(call, id=fresh, runtime_id=call.wire_id or None))
        taken.add(calls[-1].id)
    if all(new is old for new, old in zip(calls, message.tool_calls, strict=True)):
        return message
    return replace(message, tool_calls=tuple(calls))


Message: TypeAlias = SystemMessage | UserMessage | AssistantMessage | ToolResult
"""Any message of a conversation."""
