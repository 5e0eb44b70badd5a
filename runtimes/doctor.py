"""Probe a live model server: what `agentkit doctor URI` prints.

    report = await probe("ollama:gemma4:e4b")
    for check in report.checks:
        print(check.name, check.ok, check.detail)

Each check is a real request: the model list, a chat request offering one
tool, a chat request under a `response_format` JSON Schema and, for a vLLM
or llama.cpp server, a raw completion under an agentkit grammar. A failed check says why;
the report also carries the capability table agentkit assumes for the kind of
server, so a mismatch between the two is visible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from agentkit.errors import AgentkitError
from agentkit.messages import SystemMessage, UserMessage
from agentkit.runtime import ModelRequest, Runtime, Sampling, close_runtime
from agentkit.runtimes._http import RetryPolicy, post_json
from agentkit.runtimes.openai import Capabilities, OpenAICompatible, chat_messages, check_calls
from agentkit.tool import ToolSpec

__all__ = ["Check", "Report", "probe"]

# One quick try each: a doctor reports a problem, it does not wait it out.
_PROBE_RETRY = RetryPolicy(attempts=1, timeout=120.0)

_ADD = ToolSpec(
    name="add",
    description="Add two integers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
)
_ANSWER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 40}, "cold": {"type": "boolean"}},
    "required": ["city", "cold"],
    "additionalProperties": False,
}


@dataclass(frozen=True, kw_only=True)
class Check:
    """One probe and what came of it."""

    name: str
    ok: bool
    detail: str


@dataclass(kw_only=True)
class Report:
    """What a server is and does."""

    uri: str
    url: str
    kind: str
    capabilities: Capabilities
    models: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return bool(self.checks) and self.checks[0].ok


async def probe(uri: str) -> Report:
    """Run every check against the server `uri` names (an `openai:`-family or `vllm-server:` URI).

    The runtime it makes for them is closed before it returns.
    """
    from agentkit.runtimes import resolve

    runtime = resolve(uri)
    try:
        return await _checks(uri, runtime)
    finally:
        await close_runtime(runtime)
        await close_runtime(getattr(runtime, "_chat", runtime))  # a VLLMServer's chat half: its connections


async def _checks(uri: str, runtime: Runtime) -> Report:
    from agentkit.runtimes.vllm.server import VLLMServer

    chat: OpenAICompatible
    if isinstance(runtime, VLLMServer):
        chat = runtime._chat  # chat mode's request, grammar included, once connected
    elif isinstance(runtime, OpenAICompatible):
        chat = runtime
    else:
        raise AgentkitError(f"{uri} is not a server runtime; doctor probes vllm-server:, openai:, ollama:, ... URIs")
    chat.retry = _PROBE_RETRY
    if isinstance(runtime, VLLMServer):
        runtime.retry = _PROBE_RETRY
    report = Report(uri=uri, url=chat.base_url, kind=chat.kind.name, capabilities=chat.capabilities)
    try:
        listed = await chat.models()
    except AgentkitError as exc:
        report.checks.append(Check(name="reachable", ok=False, detail=str(exc)))
        return report
    report.models = [str(m.get("id")) for m in listed]
    report.checks.append(Check(name="reachable", ok=True, detail=f"{chat.base_url}/models lists {len(listed)}"))
    try:
        chat.choose_model(listed)
    except AgentkitError as exc:
        report.checks.append(Check(name="model", ok=False, detail=str(exc)))
        return report
    if isinstance(runtime, VLLMServer):
        runtime.model = chat.model
        try:
            await runtime.connect()
        except AgentkitError as exc:
            report.checks.append(Check(name="model", ok=False, detail=str(exc)))
            return report
    report.checks.append(await _tool_check(chat))
    report.checks.append(await _schema_check(chat))
    if isinstance(runtime, VLLMServer):
        report.checks.append(await _raw_check(runtime))
    return report


async def _chat(chat: OpenAICompatible, payload: dict[str, Any]) -> Any:
    """The server's answer to one chat request, on the runtime's own connections."""
    url = f"{chat.base_url}/chat/completions"
    body, _ = await post_json(url, payload, headers=chat.headers, policy=chat.retry, client=chat.pool.client())
    return body


async def _tool_check(chat: OpenAICompatible) -> Check:
    request = ModelRequest(
        messages=(
            SystemMessage(text="You can call tools."),
            UserMessage(text="What is 2 + 3? Use the add tool."),
        ),
        tools=(_ADD,),
        tool_choice="auto",
        sampling=Sampling(max_tokens=128),
    )
    payload = chat.payload(request, chat_messages(request.messages, None), final=False)
    try:
        body = await _chat(chat, payload)
    except AgentkitError as exc:
        return Check(name="tool calls", ok=False, detail=str(exc))
    reply = ((body.get("choices") or [{}])[0]).get("message") or {}
    calls, problems = check_calls(reply, request)
    if problems:
        return Check(name="tool calls", ok=False, detail="invalid call: " + "; ".join(problems))
    if not calls:
        said = (reply.get("content") or "")[:80]
        return Check(name="tool calls", ok=False, detail=f"accepted tools but made no call (said {said!r})")
    return Check(name="tool calls", ok=True, detail=f"add({json.dumps(calls[0].arguments)})")


async def _schema_check(chat: OpenAICompatible) -> Check:
    request = ModelRequest(
        messages=(UserMessage(text="Is Oslo cold in January? Answer as JSON."),),
        output_schema=_ANSWER,
        tool_choice="none",
        sampling=Sampling(max_tokens=64),
    )
    payload = chat.payload(request, chat_messages(request.messages, None), final=True)
    payload["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": _ANSWER}}
    try:
        body = await _chat(chat, payload)
    except AgentkitError as exc:
        return Check(name="json schema", ok=False, detail=str(exc))
    text = (((body.get("choices") or [{}])[0]).get("message") or {}).get("content") or ""
    try:
        jsonschema.validate(json.loads(text), _ANSWER)
    except (ValueError, jsonschema.ValidationError) as exc:
        return Check(name="json schema", ok=False, detail=f"answer does not fit: {str(exc)[:80]} ({text[:60]!r})")
    return Check(name="json schema", ok=True, detail=text[:80])


async def _raw_check(runtime: object) -> Check:
    from agentkit.runtimes.vllm.server import VLLMServer

    assert isinstance(runtime, VLLMServer)
    raw = type(runtime)(runtime.base_url, model=runtime._chat.model, retry=_PROBE_RETRY)  # a LlamaCppServer too
    raw.headers = runtime.headers
    request = ModelRequest(
        messages=(UserMessage(text="What is 2 + 3? Use the add tool."),),
        tools=(_ADD,),
        tool_choice="required",
        sampling=Sampling(max_tokens=96),
    )
    try:
        response = await raw.generate(request)
    except AgentkitError as exc:
        return Check(name="raw grammar", ok=False, detail=str(exc))
    finally:
        await close_runtime(raw)
        await close_runtime(raw._chat)
    calls = response.message.tool_calls
    if not calls:
        return Check(
            name="raw grammar", ok=False, detail=f"no call under tool_choice=required: {response.raw_text[:80]!r}"
        )
    return Check(name="raw grammar", ok=True, detail=f"{calls[0].name}({json.dumps(calls[0].arguments)})")
