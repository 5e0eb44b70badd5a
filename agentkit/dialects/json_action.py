"""The `json` dialect: every model turn is one compact JSON action object.

    {"tool_calls":[{"name":"get_weather","arguments":{"city":"Paris"}}]}
    {"final_answer":"It is 18 degrees in Paris."}

It works on any engine that can enforce a JSON Schema, and is the fallback for
models without a native call syntax. The constraint is one schema: either a
list of calls, each naming an offered tool with arguments valid under that
tool's schema, or a final answer valid under the output schema (a bounded
string by default). `tool_choice` narrows it: `required` and a tool name drop
the final answer, `none` drops the calls.

Prompts are written with a model family's turn markers (`TurnFormat`).
Small models that were never trained on tool use get worked examples: short
conversations, generated from the offered tools' schemas, placed before the
real one (`examples=2`).

In a plan turn (`agentkit.planning`) an argument may instead be a reference
to an earlier call's result, the one-key object `{"$ref":"$2.city"}`:

    {"tool_calls":[{"name":"find_city","arguments":{"query":"capital of France"}},
                   {"name":"get_weather","arguments":{"city":{"$ref":"$1.name"}}}]}

It has no `stream_parser`: a streaming runtime gives its turn whole, once the
text has ended (the answer is one JSON string, its escapes read at its end).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentkit.dialect import Constraint
from agentkit.dialects.worked_examples import worked_examples
from agentkit.errors import ModelOutputError
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResult, UserMessage
from agentkit.planning import FIELD, MAX_PATH, MAX_PLAN_CALLS, REF_KEY, plan_instructions
from agentkit.runtime import ModelRequest
from agentkit.schema import bound, hoist_defs

__all__ = ["GEMMA3_TURNS", "GEMMA4_TURNS", "JsonDialect", "TurnFormat"]


@dataclass(frozen=True, kw_only=True)
class TurnFormat:
    """A model family's conversation markers."""

    name: str
    bos: str
    user: str
    model: str
    end: str
    system: str | None = None
    """The system turn's opening marker; None folds system text into the first user turn."""
    generation: str | None = None
    """What opens the model's new turn when it is asked to write (default: `model`)."""


GEMMA3_TURNS = TurnFormat(
    name="gemma3", bos="<bos>", user="<start_of_turn>user\n", model="<start_of_turn>model\n", end="<end_of_turn>\n"
)
GEMMA4_TURNS = TurnFormat(
    name="gemma4",
    bos="<bos>",
    system="<|turn>system\n",
    user="<|turn>user\n",
    model="<|turn>model\n",
    end="<turn|>\n",
    # Gemma 4's template with thinking off: an empty thought opens the turn.
    generation="<|turn>model\n<|channel>thought\n<channel|>",
)
TURN_FORMATS = {t.name: t for t in (GEMMA3_TURNS, GEMMA4_TURNS)}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class JsonDialect:
    """Compact JSON actions, constrained by one JSON Schema.

    Args:
        turns: The model family's turn markers (a `TurnFormat` or its name).
        examples: How many worked examples to write before the conversation
            (0 for instruction-tuned models; 2 makes a tiny base model usable).
        max_string: Ceiling on free strings in the decoding constraint, for
            small models that may otherwise pad a string forever. Under
            xgrammar 0.2.8 (not the default grammar engine) a length-capped
            string has no escapes, so it cannot hold quotes, backslashes or
            newlines; llguidance allows them. Leave it off (None) for models
            that follow the format on their own.
        max_items: Ceiling on arrays in the decoding constraint.
        max_calls: Most tool calls in one turn (a plan turn holds up to
            `agentkit.planning.MAX_PLAN_CALLS`).
        results_in_turn: Write tool results inside the model's turn, as Gemma 4
            does natively (else as a user turn, the older convention).
    """

    name = "json"

    def __init__(
        self,
        *,
        turns: TurnFormat | str = GEMMA4_TURNS,
        examples: int = 0,
        max_string: int | None = None,
        max_items: int = 16,
        max_calls: int = 4,
        results_in_turn: bool = True,
    ) -> None:
        self.turns = TURN_FORMATS[turns] if isinstance(turns, str) else turns
        self.examples = examples
        self.max_string = max_string
        self.max_items = max_items
        self.max_calls = max_calls
        self.results_in_turn = results_in_turn

    # --- rendering ------------------------------------------------------------------

    def stop(self) -> tuple[str, ...]:
        return (self.turns.end.strip(),)

    def render(self, request: ModelRequest) -> str:
        t = self.turns
        messages = list(request.messages)
        system_parts = []
        while messages and isinstance(first := messages[0], SystemMessage):
            system_parts.append(first.text.strip())
            messages.pop(0)
        system_parts.append(self._protocol(request))
        system = "\n\n".join(p for p in system_parts if p)

        out = [t.bos]
        if t.system is not None:
            out.append(f"{t.system}{system}{t.end}")
            pending_system = ""
        else:
            pending_system = system + "\n\n"
        typed = request.output_schema is not None
        for example in worked_examples(request, self.examples if request.tools else 0):
            out.append(self._render_turns(example, pending_system, typed=typed, complete=True))
            pending_system = ""
        out.append(self._render_turns(messages, pending_system, typed=typed))
        return "".join(out)

    def _protocol(self, request: ModelRequest) -> str:
        lines = []
        if request.tools and request.tool_choice != "none":
            lines.append("Tools you can call:")
            lines.extend(
                _dumps({"name": s.name, "description": s.description, "parameters": s.parameters})
                for s in request.tools
            )
            lines.append('To call tools, answer {"tool_calls":[{"name":...,"arguments":{...}}]}.')
            if request.plan:
                lines.append(_PLAN_INSTRUCTIONS)
        if request.allows_text:
            if request.output_schema is not None:
                lines.append(
                    'To give the final answer, answer {"final_answer":...} where the answer fits this '
                    f"JSON Schema: {_dumps(request.output_schema)}"
                )
            else:
                lines.append('To give the final answer, answer {"final_answer":"..."}.')
        return "\n".join(lines)

    def _render_turns(
        self, messages: Sequence[Message], prefix: str = "", *, typed: bool = False, complete: bool = False
    ) -> str:
        """User and model turns.

        With `results_in_turn` (the default, as in Gemma 4's native format) a
        model turn holds its calls, their results and what the model does next,
        one JSON object a line; the turn closes only with a final answer (or
        when the user speaks). Otherwise results go back as a user turn.

        `complete`: the conversation is a closed example (every turn closed);
        else it ends ready for the model to write.
        """
        t = self.turns
        out: list[str] = []
        in_model_turn = False

        def close_model_turn() -> None:
            nonlocal in_model_turn
            if in_model_turn:
                out.append(t.end)
                in_model_turn = False

        pending: list[ToolResult] = []

        def flush_results() -> None:
            if not pending:
                return
            body = "".join(_dumps(self._result_object(r)) + "\n" for r in pending)
            pending.clear()
            if self.results_in_turn:
                out.append(body)
            else:
                close_model_turn()
                out.append(f"{t.user}{body.rstrip()}{t.end}")

        for message in messages:
            if isinstance(message, ToolResult):
                pending.append(message)
                continue
            flush_results()
            if isinstance(message, UserMessage | SystemMessage):
                close_model_turn()
                out.append(f"{t.user}{prefix}{message.text}{t.end}")
                prefix = ""
            elif isinstance(message, AssistantMessage):
                if not in_model_turn:
                    out.append(t.model)
                    in_model_turn = True
                out.append(self.render_action(message, typed=typed))
                if message.tool_calls and self.results_in_turn:
                    out.append("\n")
                else:
                    close_model_turn()
        flush_results()
        if complete:
            close_model_turn()
        elif not in_model_turn:
            out.append(t.generation or t.model)
        return "".join(out)

    @staticmethod
    def _result_object(result: ToolResult) -> dict[str, Any]:
        return {"tool_error" if result.is_error else "tool_result": {"name": result.name, "content": result.content}}

    def render_action(self, message: AssistantMessage, *, typed: bool = False) -> str:
        """A model turn as the action object the model would have written.

        `typed`: the final answer is JSON text (an answer under an output
        schema), written as the value it encodes; else it is a plain string.
        """
        if message.tool_calls:
            calls = [{"name": c.name, "arguments": c.arguments} for c in message.tool_calls]
            return _dumps({"tool_calls": calls})
        answer: Any = message.text
        if typed:
            # An answer that missed the schema is shown as the model wrote it.
            with contextlib.suppress(ValueError):
                answer = json.loads(message.text)
        return _dumps({"final_answer": answer})

    # --- the constraint --------------------------------------------------------------

    def constraint(self, request: ModelRequest) -> Constraint:
        defs: dict[str, Any] = {}
        branches: list[dict[str, Any]] = []
        tools = request.allowed_tools
        if tools and request.tool_choice != "none":
            arguments = {spec.name: hoist_defs(spec.parameters, f"tool__{spec.name}__", defs) for spec in tools}
            if request.plan:
                calls = _plan_calls(arguments)
            else:
                calls = {"type": "array", "items": _any_call(arguments), "minItems": 1, "maxItems": self.max_calls}
            branches.append(_only("tool_calls", calls))
        if request.allows_text:
            if request.output_schema is not None:
                answer = hoist_defs(request.output_schema, "output__", defs)
            else:
                # No minLength: xgrammar 0.2.8 compiles any length-bounded string
                # without escapes (no quotes or newlines). `max_string`, when set,
                # still caps it below, with that cost.
                answer = {"type": "string"}
            branches.append(_only("final_answer", answer))
        schema: dict[str, Any] = branches[0] if len(branches) == 1 else {"anyOf": branches}
        if defs:
            schema = {**schema, "$defs": defs}
        if self.max_string is not None:
            schema = bound(schema, max_string=self.max_string, max_items=self.max_items)
        return Constraint(kind="json", value=schema)

    # --- parsing ---------------------------------------------------------------------

    def parse(self, text: str, request: ModelRequest) -> AssistantMessage:
        """Read an action object. Text that is no JSON at all is a plain answer
        when the request allows free text; anything else is a `ModelOutputError`."""
        stripped = text.strip()
        for marker in self.stop():
            stripped = stripped.removesuffix(marker).strip()
        free_text_allowed = request.allows_text and request.output_schema is None
        try:
            action, _ = json.JSONDecoder().raw_decode(stripped)
        except ValueError:
            action = None
        except RecursionError:
            # Python's JSON reader recurses once per level: thousands of "[" exhaust the stack.
            raise ModelOutputError("the JSON action is nested too deeply to read", text) from None
        if not isinstance(action, dict):
            # Text that is not an action object ("3 apples.") is a plain answer
            # where the request allows one.
            if free_text_allowed and stripped:
                return AssistantMessage(text=stripped)
            raise ModelOutputError("expected a JSON action object", text)
        if len(action) != 1:
            raise ModelOutputError('expected one key, "tool_calls" or "final_answer"', text)
        if "final_answer" in action:
            answer = action["final_answer"]
            # A typed answer keeps its JSON form (the loop validates it as JSON);
            # a free-text answer is the string itself.
            typed = request.output_schema is not None
            if typed or not isinstance(answer, str):
                return AssistantMessage(text=_dumps(answer))
            return AssistantMessage(text=answer)
        calls = action.get("tool_calls")
        if not isinstance(calls, list) or not calls:
            raise ModelOutputError('"tool_calls" must be a non-empty list', text)
        parsed = []
        for call in calls:
            if not (isinstance(call, dict) and isinstance(call.get("name"), str)):
                raise ModelOutputError('each tool call needs a "name"', text)
            arguments = call.get("arguments", {})
            if not isinstance(arguments, dict):
                raise ModelOutputError(f'the "arguments" of {call["name"]!r} must be an object', text)
            parsed.append(ToolCall(name=call["name"], arguments=arguments))
        return AssistantMessage(tool_calls=tuple(parsed))


def _only(key: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {key: dict(schema)}, "required": [key], "additionalProperties": False}


def _any_call(arguments: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One call of any of the tools, each with its `arguments` schema (tool name to schema)."""
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": dict(schema)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for name, schema in arguments.items()
    ]
    return calls[0] if len(calls) == 1 else {"anyOf": calls}


_PLAN_INSTRUCTIONS = plan_instructions(lambda ref: _dumps({REF_KEY: ref})) + (
    ' A reference is the whole value of one of the call\'s arguments, {"$ref":"$N"} or {"$ref":"$N.field"}'
    ' (".0" picks the first item of a list), where N is the number of an earlier call.'
    f" A plan holds at most {MAX_PLAN_CALLS} calls."
)
"""What a plan turn's prompt adds: the plan guidance, with references as this dialect writes them."""


def _plan_calls(arguments: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A plan's `tool_calls` array: up to `MAX_PLAN_CALLS` calls, the call at
    position k (from 1) allowed to reference calls 1 … k-1 only.

    Each position has its own copy of the tools' argument schemas (their
    `$defs` stay shared at the root); a reference can stand for a top-level
    argument's value, never for a part of one. An argument whose own schema
    takes any object takes a wrong reference too: the executor checks again.
    """
    positions = [
        _any_call({name: _referring(schema, position) for name, schema in arguments.items()})
        for position in range(1, MAX_PLAN_CALLS + 1)
    ]
    return {"type": "array", "prefixItems": positions, "items": False, "minItems": 1, "maxItems": MAX_PLAN_CALLS}


def _referring(arguments: Mapping[str, Any], position: int) -> dict[str, Any]:
    """`arguments` (a tool's schema) with each top-level property's value
    either what it was or a reference to a call before `position`."""
    properties = arguments.get("properties")
    if position == 1 or not isinstance(properties, Mapping):
        return dict(arguments)
    ref = _reference(position)
    return {**arguments, "properties": {key: {"anyOf": [schema, ref]} for key, schema in properties.items()}}


def _reference(position: int) -> dict[str, Any]:
    """A reference the plan's call `position` may make: `{"$ref":"$N…"}` for N in 1 … position-1,
    then up to `MAX_PATH` `.field` or `.index` steps (`agentkit.planning.REFERENCE`'s syntax)."""
    numbers = "|".join(str(n) for n in range(1, position))
    step = rf"\.({FIELD}|0|[1-9][0-9]*)"
    return {
        "type": "object",
        "properties": {REF_KEY: {"type": "string", "pattern": rf"^\$({numbers})({step}){{0,{MAX_PATH}}}$"}},
        "required": [REF_KEY],
        "additionalProperties": False,
    }
