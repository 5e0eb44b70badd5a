"""`ScriptedRuntime`: a model that plays back a script of turns.

For tests, docs and benchmarks of the loop's own logic: deterministic, instant,
and strict. It checks that each request offers the tools its next scripted
turn calls, so a script that no longer fits the agent fails loudly instead of
passing by accident.

    runtime = ScriptedRuntime([
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]},
        "It is cold in Oslo.",
    ])

A turn is an `AssistantMessage`, a string (a final text answer) or a mapping
`{"text": ..., "thinking": ..., "tool_calls": [{"name": ..., "arguments": {...}}]}`.
`ScriptedRuntime.from_file(path)` reads a JSON list of such turns (the
`scripted:FILE.json` URI).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentkit.errors import ScriptError
from agentkit.messages import AssistantMessage, ToolCall
from agentkit.runtime import ModelRequest, ModelResponse, RuntimeInfo, Usage

__all__ = ["ScriptedRuntime", "Turn"]

Turn = AssistantMessage | str | Mapping[str, Any]


def _to_message(turn: Turn, index: int) -> AssistantMessage:
    if isinstance(turn, AssistantMessage):
        return turn
    if isinstance(turn, str):
        return AssistantMessage(text=turn)
    if isinstance(turn, Mapping):
        unknown = set(turn) - {"text", "thinking", "tool_calls"}
        if unknown:
            raise ScriptError(f"turn {index}: unknown keys {sorted(unknown)}; use text, thinking, tool_calls")
        calls = []
        for n, call in enumerate(turn.get("tool_calls") or ()):
            if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
                raise ScriptError(f"turn {index}: tool call {n} needs a name, got {call!r}")
            arguments = call.get("arguments", {})
            if not isinstance(arguments, Mapping):
                raise ScriptError(f"turn {index}: the arguments of {call['name']!r} must be an object")
            calls.append(ToolCall(name=call["name"], arguments=dict(arguments), id=call.get("id", f"call_{index}_{n}")))
        return AssistantMessage(text=turn.get("text", ""), thinking=turn.get("thinking"), tool_calls=tuple(calls))
    raise ScriptError(f"turn {index}: expected an AssistantMessage, a str or a mapping, got {type(turn).__name__}")


class ScriptedRuntime:
    """Answers each request with the next turn of a script.

    Args:
        turns: The model's turns, in order.
        name: The model name it reports.

    Raises:
        ScriptError: (from `generate`) the script is exhausted, or its next turn
            calls a tool the request does not offer, or answers in text where
            the request requires a call.
    """

    def __init__(self, turns: Sequence[Turn], *, name: str = "scripted") -> None:
        self.turns = tuple(_to_message(t, i) for i, t in enumerate(turns))
        self.requests: list[ModelRequest] = []
        """Every request received, for assertions in tests."""
        self._next = 0
        self._lock = threading.Lock()
        self._info = RuntimeInfo(name="scripted", model=name, dialect="none", constrained=False)

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedRuntime:
        """Read a JSON list of turns.

        Raises:
            ScriptError: the file is missing, not JSON, or not a list of turns.
        """
        file = Path(path)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ScriptError(f"cannot read script {file}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ScriptError(f"script {file} is not valid JSON: {exc}") from exc
        if not isinstance(data, list):
            raise ScriptError(f"script {file} must hold a JSON list of turns, got {type(data).__name__}")
        return cls(data, name=file.stem)

    @property
    def info(self) -> RuntimeInfo:
        return self._info

    @property
    def remaining(self) -> int:
        """Turns not played yet."""
        return len(self.turns) - self._next

    def reset(self) -> None:
        """Play the script again from its first turn."""
        with self._lock:
            self._next = 0
            self.requests.clear()

    async def generate(self, request: ModelRequest) -> ModelResponse:
        with self._lock:
            index = self._next
            if index >= len(self.turns):
                raise ScriptError(f"the script has {len(self.turns)} turns and all were played; add more turns")
            self._next += 1
            self.requests.append(request)
        message = self.turns[index]
        offered = {t.name for t in request.allowed_tools}
        for call in message.tool_calls:
            if call.name not in offered:
                raise ScriptError(
                    f"turn {index} calls {call.name!r}, but the request offers {sorted(offered) or 'no tools'}"
                )
        if not message.tool_calls and not request.allows_text:
            raise ScriptError(f"turn {index} answers in text, but the request requires a call ({request.tool_choice})")
        return ModelResponse(
            message=message,
            usage=Usage(requests=1),
            finish_reason="tool_calls" if message.tool_calls else "stop",
            raw_text=message.text,
        )
