"""Worked examples: short conversations, built from the offered tools, shown to
small models before the real one so they copy the protocol.

Each example asks for one tool with that tool's own `examples` (or values made
from its schema), calls it, shows a result and, when the request lets the model
answer, a final answer that restates the result. For a plan (`request.plan`)
the example is a plan: the tool called twice in one turn and, where another
tool takes what it returns, a third call using the first's result by
reference (`$1`, `$1.field`). Every dialect renders these conversations in its
own format.
"""

from __future__ import annotations

import json
from typing import Any

from agentkit.messages import AssistantMessage, Message, ToolCall, ToolResult, UserMessage
from agentkit.planning import Reference, references
from agentkit.runtime import ModelRequest
from agentkit.schema import example_value
from agentkit.tool import ToolSpec

__all__ = ["worked_examples"]


def worked_examples(request: ModelRequest, count: int) -> list[list[Message]]:
    """`count` example conversations, cycling through the tools `request` allows."""
    tools = request.allowed_tools
    if not count or not tools:
        return []
    if not request.plan:
        return [_example(tools[i % len(tools)], i // len(tools), request) for i in range(count)]
    plans = [_plan_example(tools[i % len(tools)], i // len(tools), request) for i in range(count)]
    # A plan that uses a reference goes last: a small model copies what it sees right before it.
    return sorted(plans, key=lambda plan: any(references(c.arguments) for m in plan for c in _calls(m)))


def _calls(message: Message) -> tuple[ToolCall, ...]:
    return message.tool_calls if isinstance(message, AssistantMessage) else ()


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _arguments(spec: ToolSpec, variant: int) -> dict[str, Any]:
    return dict(spec.examples[variant % len(spec.examples)]) if spec.examples else example_value(spec.parameters)


def _asked(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_plain(v)}" for k, v in arguments.items())


def _purpose(spec: ToolSpec) -> str:
    return spec.description.split("\n")[0].rstrip(".") or spec.name.replace("_", " ")


def _example(spec: ToolSpec, variant: int, request: ModelRequest) -> list[Message]:
    arguments = _arguments(spec, variant)
    asked = _asked(arguments)
    purpose = _purpose(spec)
    question = f"{purpose}: {asked}?" if asked else f"{purpose}?"
    call = ToolCall(name=spec.name, arguments=arguments, id=f"example_{spec.name}_{variant}")
    result_value = example_value(spec.result) if spec.result else "done"
    messages: list[Message] = [
        UserMessage(text=question),
        AssistantMessage(tool_calls=(call,)),
        ToolResult(call_id=call.id, name=spec.name, content=result_value),
    ]
    if request.tool_choice == "auto":
        if request.output_schema is not None:
            answer = _plain(example_value(request.output_schema))
        else:
            answer = f"{spec.name} says: {_plain(result_value)}"
        messages.append(AssistantMessage(text=answer))
    return messages


def _plan_example(spec: ToolSpec, variant: int, request: ModelRequest) -> list[Message]:
    """A plan: `spec` called twice, then (where a tool takes what it returns) a call using `$1`."""
    first, second = _arguments(spec, 2 * variant), _arguments(spec, 2 * variant + 1)
    calls = [
        ToolCall(name=spec.name, arguments=first, id=f"example_{spec.name}_{variant}_1"),
        ToolCall(name=spec.name, arguments=second, id=f"example_{spec.name}_{variant}_2"),
    ]
    purpose = _purpose(spec)
    question = f"{purpose}: {_asked(first)}; and {_asked(second)}?"
    result = example_value(spec.result) if spec.result else "done"
    results: list[Any] = [result, result]
    use = _consumer(spec, request)
    if use is not None:
        consumer, key, ref = use
        arguments = {**_arguments(consumer, 0), key: ref.value()}
        calls.append(ToolCall(name=consumer.name, arguments=arguments, id=f"example_{spec.name}_{variant}_3"))
        results.append(example_value(consumer.result) if consumer.result else "done")
        purpose = _purpose(consumer)
        question += f" Then {purpose[:1].lower()}{purpose[1:]} with the first {key}."
    messages: list[Message] = [UserMessage(text=question), AssistantMessage(tool_calls=tuple(calls))]
    messages += [ToolResult(call_id=c.id, name=c.name, content=r) for c, r in zip(calls, results, strict=True)]
    if request.tool_choice == "auto":
        if request.output_schema is not None:
            answer = _plain(example_value(request.output_schema))
        else:
            answer = "; ".join(f"{c.name} says: {_plain(r)}" for c, r in zip(calls, results, strict=True))
        messages.append(AssistantMessage(text=answer))
    return messages


_SCALARS = ("string", "integer", "number", "boolean")


def _consumer(producer: ToolSpec, request: ModelRequest) -> tuple[ToolSpec, str, Reference] | None:
    """Another offered tool with a parameter of the type `producer` returns (or a field of it has), if any."""
    returned = producer.result or {}
    fields = returned.get("properties") if returned.get("type") == "object" else None
    for consumer in request.allowed_tools:
        if consumer.name == producer.name:
            continue
        for key, schema in (consumer.parameters.get("properties") or {}).items():
            kind = schema.get("type") if isinstance(schema, dict) else None
            if kind not in _SCALARS:
                continue
            if returned.get("type") == kind:
                return consumer, key, Reference(1)
            for field, field_schema in (fields or {}).items():
                if isinstance(field_schema, dict) and field_schema.get("type") == kind and field.isidentifier():
                    return consumer, key, Reference(1, (field,))
    return None
