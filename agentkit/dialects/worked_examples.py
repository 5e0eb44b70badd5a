"""Worked examples: short conversations, built from the offered tools, shown to
small models before the real one so they copy the protocol.

Each example asks for one tool with that tool's own `examples` (or values made
from its schema), calls it, shows a result and, when the request lets the model
answer, a final answer that restates the result. Every dialect renders these
conversations in its own format.
"""

from __future__ import annotations

import json
from typing import Any

from agentkit.messages import AssistantMessage, Message, ToolCall, ToolResult, UserMessage
from agentkit.runtime import ModelRequest
from agentkit.schema import example_value
from agentkit.tool import ToolSpec

__all__ = ["worked_examples"]


def worked_examples(request: ModelRequest, count: int) -> list[list[Message]]:
    """`count` example conversations, cycling through the tools `request` allows."""
    tools = request.allowed_tools
    if not count or not tools:
        return []
    return [_example(tools[i % len(tools)], i // len(tools), request) for i in range(count)]


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _example(spec: ToolSpec, variant: int, request: ModelRequest) -> list[Message]:
    arguments = dict(spec.examples[variant % len(spec.examples)]) if spec.examples else example_value(spec.parameters)
    asked = ", ".join(f"{k} {_plain(v)}" for k, v in arguments.items())
    purpose = spec.description.split("\n")[0].rstrip(".") or spec.name.replace("_", " ")
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
