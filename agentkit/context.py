"""Context that fits: what the model reads of a conversation longer than its window.

The run keeps every message whole (and the store keeps them all); before each
model call the loop builds the *view* the model reads:

1. A tool result longer than its tool's `max_result_chars` is cut, with a
   marker saying how much was left out. Cuts depend only on the result, so
   the view stays append-only from step to step (the engine's prefix cache
   depends on it).
2. When the prompt would not fit the runtime's context length with room for
   the reply, the policy shrinks it. The default, `"elide"`, replaces the
   oldest tool results' content with a short marker naming the call and its
   size, then drops the oldest whole tool turns (a model turn and its
   results); it never touches the system prompt, the first user message or
   the last turn. It elides down to three quarters of the room, and what it
   elided stays elided, so the prompt changes at one step in several, not at
   every step once the conversation is long. `"fail"` raises `ContextLengthExceeded`
   instead; a callable gets a `ContextWindow` and returns the messages to send.

Token counts come from the runtime when it can count (`count_tokens`, e.g.
the vLLM engine with its tokenizer); otherwise they are estimated from the
text's size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

from agentkit.errors import ContextLengthExceeded
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolResult, UserMessage
from agentkit.runtime import ModelRequest, Runtime

__all__ = ["ContextPolicy", "ContextView", "ContextWindow", "count_tokens"]


@dataclass(frozen=True, kw_only=True)
class ContextWindow:
    """What a custom context policy is given."""

    messages: tuple[Message, ...]
    """The conversation as the model would read it (cuts and earlier elisions applied)."""
    limit: int
    """Tokens the prompt may take (the context length less the reply budget)."""
    count: Callable[[Sequence[Message]], int]
    """Tokens a list of messages takes in the prompt (tools and all)."""


ContextPolicy: TypeAlias = Literal["elide", "fail"] | Callable[[ContextWindow], Sequence[Message]]

MARGIN = 16
"""Tokens kept free beyond the reply budget (the turn's opening markers)."""
LOW_WATER = 0.75
"""When results must be elided, the prompt is shrunk to this share of the room it has."""


def _size(content: Any) -> int:
    return len(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False))


def _text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def cut(result: ToolResult, max_chars: int) -> ToolResult:
    """`result` as the model reads it when its tool allows `max_chars` characters."""
    text = _text(result.content)
    if len(text) <= max_chars:
        return result
    keep = max_chars - 60
    return replace(result, content=f"{text[:keep]}\n[... cut: {len(text) - keep} of {len(text)} characters not shown]")


def elided(result: ToolResult) -> ToolResult:
    """`result` with its content replaced by a marker naming the call and its size."""
    size = _size(result.content)
    return replace(
        result,
        content=f"[elided to fit the context: the result of {result.name} ({result.call_id}), {size} characters]",
    )


def estimate(request: ModelRequest) -> int:
    """A token count from the text's size (about 3 characters a token, rounded up, with each message's framing)."""
    chars = sum(_size(_body(m)) + 24 for m in request.messages)
    chars += sum(len(t.name) + len(t.description) + _size(t.parameters) + 32 for t in request.tools)
    return chars // 3 + 1


def upper_bound(request: ModelRequest) -> int:
    """Tokens the prompt cannot exceed (a token covers at least one byte; framing is generous)."""
    total = sum(len(_body(m).encode()) + 64 for m in request.messages)
    total += sum(2 * len(json.dumps([t.name, t.description, t.parameters]).encode()) + 128 for t in request.tools)
    return total + 256


def _body(message: Message) -> str:
    if isinstance(message, ToolResult):
        return _text(message.content)
    if isinstance(message, AssistantMessage):
        calls = "".join(c.name + json.dumps(c.arguments, ensure_ascii=False) for c in message.tool_calls)
        return message.text + (message.thinking or "") + calls
    return message.text


def count_tokens(runtime: Runtime, request: ModelRequest) -> int:
    """The prompt's tokens for `request`: the runtime's count when it has one, else an estimate."""
    counter = getattr(runtime, "count_tokens", None)
    if counter is not None:
        return int(counter(request))
    return estimate(request)


@dataclass(kw_only=True)
class ContextView:
    """Builds, step after step, what the model reads of one run's conversation."""

    runtime: Runtime
    policy: ContextPolicy = "elide"
    max_chars: Mapping[str, int] = field(default_factory=dict)
    """`max_result_chars` by tool name."""
    elided: set[str] = field(default_factory=set)
    """Call ids whose results the model no longer reads."""
    dropped: set[str] = field(default_factory=set)
    """Call ids whose whole turn (call and result) the model no longer reads."""

    def request(self, messages: Sequence[Message], base: ModelRequest) -> tuple[ModelRequest, dict[str, Any]]:
        """`base` with the view of `messages` that fits, and what was left out (for the step's record)."""
        request = self._view(messages, base)
        view = request.messages
        limit = self.runtime.info.context_length
        if limit is None:
            return request, self._report(messages)
        room = limit - base.sampling.max_tokens - MARGIN
        if upper_bound(request) <= room or count_tokens(self.runtime, request) <= room:
            return request, self._report(messages)
        if self.policy == "fail":
            raise ContextLengthExceeded(
                f"the prompt does not fit {self.runtime.info.model}'s {limit} tokens with {base.sampling.max_tokens} "
                "left for the reply; shorten the conversation, lower Sampling.max_tokens, or use context='elide'"
            )
        if callable(self.policy):
            window = ContextWindow(
                messages=tuple(view),
                limit=room,
                count=lambda ms: count_tokens(self.runtime, replace(base, messages=tuple(ms))),
            )
            request = replace(base, messages=tuple(self.policy(window)))
            if count_tokens(self.runtime, request) > room:
                raise ContextLengthExceeded(f"the context policy's messages do not fit {room} tokens")
            return request, {**self._report(messages), "policy": getattr(self.policy, "__name__", "custom")}
        return self._elide(messages, base, room)

    def _elide(self, messages: Sequence[Message], base: ModelRequest, room: int) -> tuple[ModelRequest, dict[str, Any]]:
        protected = _protected(messages)
        results = [m for i, m in enumerate(messages) if isinstance(m, ToolResult) and i not in protected]
        turns = [m for i, m in enumerate(messages) if isinstance(m, AssistantMessage) and i not in protected]
        # Oldest results first; then the oldest whole tool turns.
        steps: list[tuple[set[str], set[str]]] = [
            (self.elided, {r.call_id}) for r in results if r.call_id not in self.elided
        ]
        steps += [
            (self.dropped, {c.id for c in t.tool_calls})
            for t in turns
            if t.tool_calls and not all(c.id in self.dropped for c in t.tool_calls)
        ]
        # Results are elided down to a low-water mark, not just under the limit: the
        # next steps then append to an unchanged prompt (and its cached prefix) for a
        # while, instead of eliding one more result, and changing the prompt, each step.
        # Whole turns are dropped only as far as the prompt must shrink to fit.
        target, fits = int(room * LOW_WATER), False
        for into, ids in steps:
            if fits and into is self.dropped:
                break
            into.update(ids)
            tokens = count_tokens(self.runtime, self._view(messages, base))
            if tokens <= target:
                break
            fits = tokens <= room
        else:
            if not fits:
                raise self._too_long(room)
        return self._view(messages, base), self._report(messages)

    def _too_long(self, room: int) -> ContextLengthExceeded:
        return ContextLengthExceeded(
            f"the conversation does not fit {self.runtime.info.model}'s context even with every earlier tool "
            "result elided: the system prompt, the first user message and the last turn alone are too long "
            f"for {room} tokens (lower Sampling.max_tokens or max_result_chars)"
        )

    def _view(self, messages: Sequence[Message], base: ModelRequest) -> ModelRequest:
        """`base` with what the model reads of `messages`."""
        if not (self.max_chars or self.elided or self.dropped):
            return replace(base, messages=tuple(messages))
        return replace(base, messages=tuple(self._shown(m) for m in messages if not self._gone(m)))

    def _gone(self, message: Message) -> bool:
        if isinstance(message, ToolResult):
            return message.call_id in self.dropped
        if isinstance(message, AssistantMessage) and message.tool_calls:
            return all(c.id in self.dropped for c in message.tool_calls)
        return False

    def _shown(self, message: Message) -> Message:
        if not isinstance(message, ToolResult):
            return message
        if message.call_id in self.elided:
            return elided(message)
        limit = self.max_chars.get(message.name)
        return cut(message, limit) if limit is not None else message

    def _report(self, messages: Sequence[Message]) -> dict[str, Any]:
        if not (self.max_chars or self.elided or self.dropped):
            return {}
        cuts = [
            m.call_id
            for m in messages
            if isinstance(m, ToolResult)
            and m.call_id not in self.elided
            and (limit := self.max_chars.get(m.name)) is not None
            and _size(m.content) > limit
        ]
        report: dict[str, Any] = {}
        if cuts:
            report["cut"] = cuts
        if self.elided:
            report["elided"] = sorted(self.elided)
        if self.dropped:
            report["dropped"] = sorted(self.dropped)
        return report


def _protected(messages: Sequence[Message]) -> set[int]:
    """Positions the policy never touches: system prompts, the first user message, the last turn."""
    keep = {i for i, m in enumerate(messages) if isinstance(m, SystemMessage)}
    first_user = next((i for i, m in enumerate(messages) if isinstance(m, UserMessage)), None)
    if first_user is not None:
        keep.add(first_user)
    last_turn = max((i for i, m in enumerate(messages) if isinstance(m, AssistantMessage)), default=None)
    if last_turn is not None:
        keep.update(range(last_turn, len(messages)))
    return keep
