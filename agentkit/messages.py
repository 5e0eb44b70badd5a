"""Conversation values: what the user, the model and the tools say.

These are plain frozen values. Identity and persistence belong to the store,
not to them: two equal messages are the same message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = [
    "AssistantMessage",
    "Message",
    "SystemMessage",
    "ToolCall",
    "ToolResult",
    "UserMessage",
    "new_call_id",
]


def new_call_id() -> str:
    """A fresh tool-call id, for runtimes whose model does not name its calls."""
    return "call_" + uuid.uuid4().hex[:16]


@dataclass(frozen=True, kw_only=True)
class SystemMessage:
    """Instructions that frame the whole conversation."""

    text: str
    role: Literal["system"] = "system"


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
    """Pairs the call with its `ToolResult`."""


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
    role: Literal["tool"] = "tool"


Message: TypeAlias = SystemMessage | UserMessage | AssistantMessage | ToolResult
"""Any message of a conversation."""
