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
`scripted:FILE.json` URI, which `from_uri` builds).

When several agents share one runtime concurrently (a workflow's `foreach`),
which of them asks first is not fixed. A script can then be a mapping from a
piece of each agent's prompt to its own turns: a request is answered from the
script whose key appears in its first user message, each played in order.

    runtime = ScriptedRuntime({
        "Oslo": ["Cold, -3 °C."],
        "Lima": ["Mild, 18 °C."],
    })
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentkit.errors import ScriptError
from agentkit.messages import AssistantMessage, ToolCall, UserMessage
from agentkit.runtime import Lifecycle, ModelRequest, ModelResponse, RuntimeInfo, Usage

__all__ = ["ScriptedRuntime", "Turn", "from_uri"]

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
        text, thinking = turn.get("text", ""), turn.get("thinking")
        if not isinstance(text, str) or not (thinking is None or isinstance(thinking, str)):
            raise ScriptError(f"turn {index}: text and thinking must be strings, got {text!r} and {thinking!r}")
        calls = turn.get("tool_calls")
        return AssistantMessage(text=text, thinking=thinking, tool_calls=tuple(_tool_calls(calls or (), index)))
    raise ScriptError(f"turn {index}: expected an AssistantMessage, a str or a mapping, got {type(turn).__name__}")


def _tool_calls(calls: Any, index: int) -> list[ToolCall]:
    """A mapping turn's `tool_calls`: a list of `{"name": ..., "arguments": {...}, "id": ...}`."""
    if not isinstance(calls, Sequence) or isinstance(calls, str):
        raise ScriptError(f"turn {index}: tool_calls must be a list of calls, got {calls!r}")
    parsed = []
    for n, call in enumerate(calls):
        if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
            raise ScriptError(f"turn {index}: tool call {n} needs a name, got {call!r}")
        arguments = call.get("arguments", {})
        if not isinstance(arguments, Mapping):
            raise ScriptError(f"turn {index}: the arguments of {call['name']!r} must be an object")
        call_id = call.get("id", f"call_{index}_{n}")
        if not isinstance(call_id, str):
            raise ScriptError(f"turn {index}: the id of tool call {n} must be a string, got {call_id!r}")
        parsed.append(ToolCall(name=call["name"], arguments=dict(arguments), id=call_id))
    return parsed


class ScriptedRuntime(Lifecycle):
    """Answers each request with the next turn of a script.

    It holds nothing: its `astart` and `aclose` do nothing, and `async with`
    works as for any runtime.

    Args:
        turns: The model's turns, in order; or a mapping from a piece of the
            prompt (the first user message) to the turns of the conversations
            that have it.
        name: The model name it reports.

    Raises:
        ScriptError: (from `generate`) the script is exhausted, or its next turn
            calls a tool the request does not offer, or answers in text where
            the request requires a call; or, for a keyed script, the prompt
            has no key or more than one.
    """

    def __init__(self, turns: Sequence[Turn] | Mapping[str, Sequence[Turn]], *, name: str = "scripted") -> None:
        scripts = turns if isinstance(turns, Mapping) else {"": turns}
        if isinstance(turns, Mapping) and not turns:
            raise ScriptError("a keyed script needs at least one key")
        self.scripts = {key: tuple(_to_message(t, i) for i, t in enumerate(each)) for key, each in scripts.items()}
        """The turns of each conversation by the piece of prompt that picks it ("" for a plain list)."""
        self.requests: list[ModelRequest] = []
        """Every request received, for assertions in tests."""
        self._played = dict.fromkeys(self.scripts, 0)
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
        except RecursionError:  # Python's JSON reader recurses once per level
            raise ScriptError(f"script {file} nests its JSON too deeply to read") from None
        if not isinstance(data, list | dict) or (
            isinstance(data, dict) and not all(isinstance(v, list) for v in data.values())
        ):
            raise ScriptError(
                f"script {file} must hold a JSON list of turns, or an object of such lists, got {type(data).__name__}"
            )
        return cls(data, name=file.stem)

    @property
    def info(self) -> RuntimeInfo:
        return self._info

    @property
    def turns(self) -> tuple[AssistantMessage, ...]:
        """The turns of a plain (unkeyed) script."""
        return self.scripts.get("", ())

    @property
    def remaining(self) -> int:
        """Turns not played yet."""
        return sum(len(turns) - self._played[key] for key, turns in self.scripts.items())

    def reset(self) -> None:
        """Play the script again from its first turn."""
        with self._lock:
            self._played = dict.fromkeys(self.scripts, 0)
            self.requests.clear()

    def _script(self, request: ModelRequest) -> str:
        if "" in self.scripts:
            return ""
        prompt = next((m.text for m in request.messages if isinstance(m, UserMessage)), "")
        keys = [key for key in self.scripts if key in prompt]
        if len(keys) != 1:
            found = f"{len(keys)} keys ({', '.join(map(repr, keys))})" if keys else "none of the keys"
            raise ScriptError(f"the prompt {prompt[:120]!r} holds {found}; a keyed script needs exactly one")
        return keys[0]

    async def generate(self, request: ModelRequest) -> ModelResponse:
        key = self._script(request)
        turns = self.scripts[key]
        with self._lock:
            index = self._played[key]
            if index >= len(turns):
                which = f" for {key!r}" if key else ""
                raise ScriptError(f"the script{which} has {len(turns)} turns and all were played; add more turns")
            self._played[key] += 1
            self.requests.append(request)
        message = turns[index]
        # A turn that calls a tool when the request allows none plays a model that
        # ignored the choice (as an unconstrained one can): the loop must cope.
        offered = {t.name for t in (request.tools if request.tool_choice == "none" else request.allowed_tools)}
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


def from_uri(scheme: str, value: str, uri: str) -> ScriptedRuntime:
    """`scripted:FILE.json`: the script in that file (`ScriptedRuntime.from_file`)."""
    return ScriptedRuntime.from_file(value)
