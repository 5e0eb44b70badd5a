"""`OpenAICompatible`: any server that speaks OpenAI's chat completions.

    runtime = OpenAICompatible("http://localhost:11434/v1", model="gemma4:26b", server="ollama")
    runtime = resolve("ollama:gemma4:26b")          # the same, by URI
    runtime = resolve("lmstudio:google/gemma-4-e4b")
    runtime = resolve("llamacpp:http://localhost:8080/v1")
    runtime = resolve("openai:http://gpu-box:8000/v1?model=google/gemma-4-31B-it")

The server renders the prompt with its own chat template and parses the calls
with its own parser, so nothing is guaranteed while decoding. agentkit makes up
for it on the client side: every call is checked against its tool's JSON
Schema, and a turn with an invalid call is a `ModelOutputError` listing what is
wrong (`problems`); the agent's loop tells the model and asks again, as for any
turn it cannot use. A final answer that must fit an `output_schema` is asked
for with `response_format` when no call is possible (`tool_choice="none"`,
which the loop sends after an answer that missed the schema) and the server
supports it.

`stream(request)` asks for the answer as a stream of chunks and yields its
text, thinking and calls as they come, then the response `generate` returns
(see `OpenAICompatible.stream` for retries).

What each kind of server supports is in `SERVERS`; `agentkit doctor URI`
probes a live one.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import jsonschema

from agentkit.dialect import final_response
from agentkit.errors import ModelOutputError, OutputTruncated, RuntimeUnavailable, ServerError
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResult, UserMessage, new_call_id
from agentkit.planning import REF_KEY, plan_instructions
from agentkit.runtime import (
    FinishReason,
    Lifecycle,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    RuntimeInfo,
    TextDelta,
    ThinkingDelta,
    ToolCallReady,
    Usage,
)
from agentkit.runtimes._http import ClientPool, RetryPolicy, check_url, first_choice, get_json, post_events, post_json
from agentkit.secrets import declare_credential
from agentkit.tool import ToolSpec

__all__ = ["SERVERS", "STREAMING", "Capabilities", "OpenAICompatible", "ServerKind", "from_uri", "parse_server_uri"]

STREAMING: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
"""What a request adds to be answered as a stream of chunks, the last with the usage."""


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What a server does with the parts of a chat request agentkit uses."""

    tools: bool = True
    """Takes `tools` and answers with `tool_calls`."""
    tool_choice: tuple[str, ...] = ("auto", "none", "required", "named")
    """The `tool_choice` values it honours. Another is sent as the nearest one it
    does (a named tool as `required`, else left out) and checked on the client."""
    response_format: bool = True
    """Constrains the answer to a `response_format` JSON Schema."""
    structured_outputs: bool = False
    """Takes vLLM's `structured_outputs` extension (a grammar or structural tag)."""
    cached_tokens: bool = False
    """Reports prefix-cache hits in `usage.prompt_tokens_details.cached_tokens`."""


@dataclass(frozen=True, kw_only=True)
class ServerKind:
    """A known kind of OpenAI-compatible server."""

    name: str
    default_url: str | None
    """Where it listens out of the box (the URI shorthand's target)."""
    capabilities: Capabilities
    host_variable: str | None = None
    """An environment variable that moves the default host, as the server's own tools read it."""
    notes: str = ""


SERVERS: dict[str, ServerKind] = {
    "vllm": ServerKind(
        name="vllm",
        default_url="http://localhost:8000/v1",
        # With --tool-call-parser gemma4, vLLM skips forcing required and named choices.
        capabilities=Capabilities(tool_choice=("auto", "none"), structured_outputs=True, cached_tokens=True),
        notes="needs --enable-auto-tool-choice --tool-call-parser gemma4 for tools; "
        "cached tokens need --enable-prompt-tokens-details",
    ),
    "ollama": ServerKind(
        name="ollama",
        default_url="http://localhost:11434/v1",
        capabilities=Capabilities(tool_choice=()),
        host_variable="OLLAMA_HOST",
        notes="tool_choice is ignored: the model decides whether to call",
    ),
    "lmstudio": ServerKind(
        name="lmstudio",
        default_url="http://localhost:1234/v1",
        capabilities=Capabilities(tool_choice=("auto", "none", "required")),
        notes="a named tool_choice is refused; tools need a model whose template supports them",
    ),
    "llamacpp": ServerKind(
        name="llamacpp",
        default_url="http://localhost:8080/v1",
        capabilities=Capabilities(tool_choice=("auto", "none", "required"), cached_tokens=True),
        notes="tools need --jinja (the default in recent builds); a named tool_choice acts as auto",
    ),
    "openai": ServerKind(name="openai", default_url=None, capabilities=Capabilities()),
}


def parse_server_uri(scheme: str, rest: str) -> tuple[str, str | None, dict[str, str]]:
    """The base URL, model and options a server URI names.

    `openai:URL`, `llamacpp:URL`, `vllm-server:URL` (its scheme here: `vllm`),
    `ollama:MODEL`, `lmstudio:MODEL`. A URL may end in `?model=NAME`, a
    `vllm` one in `&mode=chat` and `&grammar=xgrammar` (its grammar engine),
    and a `llamacpp` one in `&mode=chat`.

    Raises:
        RuntimeUnavailable: a URL is needed and missing, an option is unknown, or a mode is not raw or chat.
    """
    kind = SERVERS.get(scheme)
    if rest.startswith(("http://", "https://")):
        parts = urlsplit(rest)
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        allowed = (
            {"model", "mode", "grammar"}
            if scheme == "vllm"
            else {"model", "mode"}
            if scheme == "llamacpp"
            else {"model"}
        )
        if unknown := sorted(set(options) - allowed):
            raise RuntimeUnavailable(
                f"unknown option {', '.join(unknown)} in {scheme}:{rest}; known: {', '.join(sorted(allowed))}"
            )
        if options.get("mode", "raw") not in ("raw", "chat"):
            raise RuntimeUnavailable(f"mode={options['mode']!r} in {scheme}:{rest}: server modes are raw and chat")
        url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        return url, options.pop("model", None), options
    if kind is None or kind.default_url is None or scheme in ("vllm", "llamacpp"):
        raise RuntimeUnavailable(f"{scheme}:{rest} needs a server URL, e.g. {scheme}:http://localhost:8080/v1")
    if "?" in rest:
        raise RuntimeUnavailable(f"{scheme}:{rest}: give the model's name alone, e.g. {scheme}:gemma4:e4b")
    url = kind.default_url
    host = os.environ.get(kind.host_variable or "", "")
    if host:
        host = host if "://" in host else f"http://{host}"
        if urlsplit(host).port is None and kind.default_url:  # Ollama's tools default the port too
            host = f"{host.rstrip('/')}:{urlsplit(kind.default_url).port}"
        url = f"{host.rstrip('/')}/v1"
    return url, rest, {}


def from_uri(scheme: str, value: str, uri: str) -> OpenAICompatible:
    """`openai:URL`, `ollama:MODEL` or `lmstudio:MODEL` as an `OpenAICompatible`.

    Raises:
        RuntimeUnavailable: as `parse_server_uri`.
    """
    url, model, _ = parse_server_uri(scheme, value)
    return OpenAICompatible(url, model=model, server=scheme, uri=uri)


def tool_definition(spec: ToolSpec) -> dict[str, Any]:
    """A tool as chat completions' `tools` lists it.

    A tool whose result is an object also sends its schema as `response`, the
    field Gemma 4's chat template declares it from (servers ignore it otherwise).
    """
    function: dict[str, Any] = {"name": spec.name, "description": spec.description, "parameters": dict(spec.parameters)}
    if spec.result is not None and spec.result.get("type") == "object":
        function["response"] = dict(spec.result)
    return {"type": "function", "function": function}


def _result_text(result: ToolResult) -> str:
    content = result.content if isinstance(result.content, str) else json.dumps(result.content, ensure_ascii=False)
    return f"error: {content}" if result.is_error else content


def chat_messages(
    messages: Sequence[Message], output_schema: Mapping[str, Any] | None, *, plan: bool = False
) -> list[dict[str, Any]]:
    """The conversation in chat-completions form; an output schema, and how to
    write a plan (`plan`: references as `{"$ref": "$2.city"}` argument values),
    are stated in the system message.

    Calls and results carry the ids the server gave them (`ToolCall.wire_id`),
    not the run-unique ids the loop may have put in their place.
    """
    out: list[dict[str, Any]] = []
    wire: dict[str, str] = {}  # a call's id in the run -> its id on the wire
    for message in messages:
        if isinstance(message, SystemMessage | UserMessage):
            # A developer message goes as a system one: what Gemma 4's template makes of it, what all servers know.
            out.append(
                {"role": "system" if isinstance(message, SystemMessage) else message.role, "content": message.text}
            )
        elif isinstance(message, AssistantMessage):
            # Some servers (Ollama) refuse a null content: calls alone leave it out.
            entry: dict[str, Any] = {"role": "assistant"}
            if message.text or not message.tool_calls:
                entry["content"] = message.text
            if message.tool_calls:
                wire.update((call.id, call.wire_id) for call in message.tool_calls)
                entry["tool_calls"] = [
                    {
                        "id": call.wire_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)},
                    }
                    for call in message.tool_calls
                ]
            out.append(entry)
        else:
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": wire.get(message.call_id, message.call_id),
                    "name": message.name,
                    "content": _result_text(message),
                }
            )
    notes = []
    if plan:
        notes.append(plan_instructions(lambda ref: json.dumps({REF_KEY: ref})))
    if output_schema is not None:
        notes.append("Give your final answer as JSON that fits this JSON Schema: " + json.dumps(output_schema))
    if notes:
        note = "\n\n".join(notes)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{note}"}
        else:
            out.insert(0, {"role": "system", "content": note})
    return out


def _tool_choice(request: ModelRequest, honoured: tuple[str, ...]) -> Any:
    """What to send as `tool_choice`, or None to leave it out."""
    choice = request.tool_choice
    if choice not in ("auto", "required", "none"):
        if "named" in honoured:
            return {"type": "function", "function": {"name": choice}}
        choice = "required"
    return choice if choice in honoured else None


def _arguments(raw: Any) -> dict[str, Any]:
    """A call's arguments: OpenAI sends a JSON string, some servers an object."""
    value = json.loads(raw) if isinstance(raw, str) else raw
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"arguments must be a JSON object, got {type(value).__name__}")
    return value


def check_calls(message: Mapping[str, Any], request: ModelRequest) -> tuple[list[ToolCall], list[str]]:
    """The calls of a chat answer and, for each invalid one, what is wrong with it."""
    specs = {spec.name: spec for spec in request.allowed_tools}
    calls, problems = [], []
    listed = message.get("tool_calls") or []
    for raw in listed if isinstance(listed, list) else [listed]:
        function = raw.get("function") if isinstance(raw, Mapping) else None
        if not isinstance(function, Mapping):
            problems.append(f"a tool call without a function: {json.dumps(raw)[:100]}")
            continue
        name = str(function.get("name", ""))
        spec = specs.get(name)
        if spec is None:
            problems.append(f"{name!r} is not a tool you may call now (allowed: {', '.join(sorted(specs)) or 'none'})")
            continue
        try:
            arguments = _arguments(function.get("arguments"))
        except ValueError as exc:
            problems.append(f"the arguments of {name} are not a JSON object: {exc}")
            continue
        errors = sorted(jsonschema.Draft202012Validator(spec.parameters).iter_errors(arguments), key=str)
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "arguments"
            problems.append(f"{name}: {where}: {errors[0].message}")
            continue
        calls.append(ToolCall(name=name, arguments=arguments, id=str(raw.get("id") or new_call_id())))
    if request.tool_choice == "required" and not calls and not problems:
        problems.append("you must call one of the tools")
    elif (
        request.tool_choice not in ("auto", "required", "none")
        and not problems
        and (not calls or any(c.name != request.tool_choice for c in calls))
    ):
        problems.append(f"you must call {request.tool_choice}")
    return calls, problems


def calls_in_content(reply: Mapping[str, Any], request: ModelRequest) -> tuple[dict[str, Any], int]:
    """`reply` with the Gemma 4 calls left in its `content` moved to `tool_calls`, and how many.

    A chat server whose own parser could not read a Gemma 4 call (an opener
    without `call`, arguments in parentheses, a delimiter cut short) leaves the
    call's text in `content` and sends no `tool_calls`; some also strip the
    `<|tool_call>` marker, leaving a line `call:NAME{…}`: one that cannot be read
    as a call that ends the text is taken for text (a model writing about a call). When tools may be called,
    such content is read with the gemma4 dialect's tolerant parser; its text
    stays the content. Other replies come back as they are, with 0.

    Raises:
        ModelOutputError: the content holds a call that cannot be read (the raw reply kept).
    """
    from agentkit.dialects.gemma4 import CALL_OPEN, parse_turn

    content = reply.get("content")
    if reply.get("tool_calls") or not isinstance(content, str) or not request.allowed_tools:
        return dict(reply), 0
    names = "|".join(re.escape(spec.name) for spec in request.allowed_tools)
    if CALL_OPEN not in content:
        # The markers stripped: a line that begins with a call to an offered tool.
        bare = re.search(rf"(?:^|\n)[ \t]*(call:(?:{names})[ \t]*[{{(])", content)
        if bare is None:
            return dict(reply), 0
        content = content[: bare.start(1)] + CALL_OPEN + content[bare.start(1) :]
    try:
        message = parse_turn(content, strict=False)
    except ModelOutputError as exc:
        if CALL_OPEN not in reply["content"]:
            return dict(reply), 0  # no marker, and no call that reads: text that mentions one
        reason = f"the reply's content holds a Gemma 4 tool call that cannot be read: {exc.reason}"
        raise ModelOutputError(reason, json.dumps(reply, ensure_ascii=False), problems=[reason]) from None
    if not message.tool_calls:
        return dict(reply), 0
    read = {**reply, "content": message.text or None}
    read["tool_calls"] = [
        {"id": new_call_id(), "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
        for c in message.tool_calls
    ]
    if message.thinking and not (reply.get("reasoning_content") or reply.get("reasoning")):
        read["reasoning_content"] = message.thinking
    return read, len(message.tool_calls)


def usage_of(body: Any) -> Usage:
    """The token counts an OpenAI-style answer reports (zero where it reports none)."""
    usage = body.get("usage") if isinstance(body, Mapping) else None
    usage = usage if isinstance(usage, Mapping) else {}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else {}

    def count(value: Any) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return Usage(
        prompt_tokens=count(usage.get("prompt_tokens")),
        completion_tokens=count(usage.get("completion_tokens")),
        cached_tokens=count(details.get("cached_tokens")),
        requests=1,
    )


def bearer(api_key: str | None, url: str) -> dict[str, str]:
    """The Authorization header for `url`: `api_key`, else `AGENTKIT_API_KEY`, else, for
    OpenAI's own API only (a key is not sent to just any host), `OPENAI_API_KEY`.

    The key is declared a secret (`agentkit.secrets`): nothing agentkit records shows it."""
    key = api_key or os.environ.get("AGENTKIT_API_KEY")
    if key is None and urlsplit(url).hostname == "api.openai.com":
        key = os.environ.get("OPENAI_API_KEY")
    if not key:
        return {}
    declare_credential(key)
    return {"Authorization": f"Bearer {key}"}


class _StreamedReply:
    """A chat answer streamed in chunks, put together as the whole answer comes,
    with the deltas each chunk brings (a whole answer is read as one chunk).

    A call's parts arrive by `index`: its name and arguments in pieces (joined
    as OpenAI's own client joins them), its id once. A call is complete when the
    next one begins or the answer ends; it is yielded then, if it is valid on
    its own (`check_calls`).
    """

    def __init__(self, request: ModelRequest) -> None:
        self.request = request
        self.content: list[str] = []
        self.thinking: list[str] = []
        self.thinking_field = ""  # the name the server gives it: `reasoning_content` or `reasoning`
        self.calls: dict[int, dict[str, Any]] = {}
        self.complete: set[int] = set()
        self.choice: dict[str, Any] | None = None  # None until a chunk brings a choice
        self.usage: Any = None

    def add(self, chunk: Any) -> list[ModelDelta]:
        """The deltas one chunk brings."""
        if not isinstance(chunk, Mapping):
            return []
        self.usage = chunk.get("usage") or self.usage
        choices = chunk.get("choices")
        if not (isinstance(choices, list) and choices and isinstance(choices[0], Mapping)):
            return []  # the last chunk, with the usage alone
        if self.choice is None:
            self.choice = {}
        if reason := choices[0].get("finish_reason"):
            self.choice["finish_reason"] = reason
        # A chunk brings a `delta`; a server that answers whole despite `stream`, its `message`.
        delta = choices[0].get("delta") or choices[0].get("message")
        delta = delta if isinstance(delta, Mapping) else {}
        deltas: list[ModelDelta] = []
        if text := delta.get("content"):
            self.content.append(str(text))
            deltas.append(TextDelta(text=str(text)))
        # A server may send the thought in both of the names it has had: read one.
        field = "reasoning_content" if delta.get("reasoning_content") else "reasoning"
        if thought := delta.get(field):
            self.thinking_field = self.thinking_field or field
            self.thinking.append(str(thought))
            deltas.append(ThinkingDelta(text=str(thought)))
        parts = delta.get("tool_calls")
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, Mapping):
                continue
            index = part.get("index")
            index = index if isinstance(index, int) else max(self.calls, default=-1) + 1
            if index not in self.calls:
                deltas += self._ready(before=index)
                self.calls[index] = {"id": None, "type": "function", "function": {"name": "", "arguments": None}}
            call = self.calls[index]
            call["id"] = call["id"] or part.get("id")
            function = part.get("function")
            function = function if isinstance(function, Mapping) else {}
            call["function"]["name"] += str(function.get("name") or "")
            pieces, more = call["function"]["arguments"], function.get("arguments")
            if isinstance(pieces, str) and isinstance(more, str):
                call["function"]["arguments"] = pieces + more
            elif more is not None:
                call["function"]["arguments"] = more
        return deltas

    def close(self) -> list[ModelDelta]:
        """The deltas left once the answer has ended: its last calls."""
        return self._ready()

    def _ready(self, *, before: int | None = None) -> list[ModelDelta]:
        """The calls now complete (all, or those before `before`) that are valid on their own."""
        deltas: list[ModelDelta] = []
        for index in sorted(self.calls):
            if index in self.complete or (before is not None and index >= before):
                continue
            self.complete.add(index)
            raw = self.calls[index]
            raw["id"] = raw["id"] or new_call_id()  # the id the whole answer's check gives it too
            calls, problems = check_calls({"tool_calls": [raw]}, self.request)
            if calls and not problems:
                deltas.append(ToolCallReady(call=calls[0]))
        return deltas

    def body(self) -> dict[str, Any]:
        """The answer as a whole chat completion."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if self.thinking:
            message[self.thinking_field] = "".join(self.thinking)
        if self.calls:
            message["tool_calls"] = [self.calls[index] for index in sorted(self.calls)]
        choices = [] if self.choice is None else [{**self.choice, "message": message}]
        return {"choices": choices, "usage": self.usage}


class OpenAICompatible(Lifecycle):
    """A chat-completions server: vLLM, Ollama, LM Studio, llama.cpp, or OpenAI's API.

    Its requests share keep-alive connections (`pool`); `aclose()`, or
    leaving `async with runtime:`, closes them, and `astart()` learns the
    served model ahead of the first turn when none was named.

    Args:
        base_url: The API root, e.g. `http://localhost:11434/v1`.
        model: The model to ask for; None takes the server's only model.
        server: Which kind of server (a key of `SERVERS`): sets its capabilities.
        api_key: Sent as a bearer token. Defaults to `AGENTKIT_API_KEY`, and
            for OpenAI's own API (api.openai.com) to `OPENAI_API_KEY`.
        retry: How hard to try before giving up on a request.
        repairs: Deprecated, ignored: a turn with invalid calls raises
            `ModelOutputError` at once, and the agent's loop asks again
            (bounded by the run's budget).
        extra_body: Fields added to every request (e.g. `{"top_k": 20}`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        server: str = "openai",
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        repairs: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        uri: str | None = None,
    ) -> None:
        if repairs is not None:
            warn_repairs()
        if server not in SERVERS:
            raise RuntimeUnavailable(f"unknown server kind {server!r}; known: {', '.join(SERVERS)}")
        self.base_url = check_url(base_url)
        self.model = model
        self.kind = SERVERS[server]
        self.capabilities = self.kind.capabilities
        self.headers = bearer(api_key, self.base_url)
        self.retry = retry or RetryPolicy()
        self.pool = ClientPool(self.retry)
        """The keep-alive HTTP clients every request goes through (one per event loop)."""
        self.extra_body = dict(extra_body or {})
        self._uri = uri or f"openai:{self.base_url}"
        self._context_length: int | None = None

    @property
    def info(self) -> RuntimeInfo:
        return RuntimeInfo(
            name=self.kind.name if self.kind.name != "openai" else "openai",
            model=self.model or "(the server's model)",
            dialect="openai-chat",
            constrained=False,
            context_length=self._context_length,
            uri=self._uri,
            provider=self.kind.name,
            server=self.base_url,
        )

    async def astart(self) -> None:
        """Learn the model to ask for when none was named (`choose_model`), as the first turn would."""
        if self.model is None:
            self.choose_model(await self.models())

    async def aclose(self) -> None:
        """Close the pool's connections (a later request opens new ones)."""
        await self.pool.aclose()

    async def models(self) -> list[dict[str, Any]]:
        """The server's `/models` list."""
        body, _ = await get_json(
            f"{self.base_url}/models", headers=self.headers, policy=self.retry, client=self.pool.client()
        )
        listed = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(listed, list):
            raise ServerError(
                f"{self.base_url}/models is not a model list: {json.dumps(body)[:200]}", url=self.base_url
            )
        return [dict(m) for m in listed if isinstance(m, Mapping) and "id" in m]

    def choose_model(self, listed: Sequence[Mapping[str, Any]]) -> str:
        """The model to ask for, from the server's `/models` list: the one named, which
        must be listed, or the only one listed. Learns its context length when given.

        Raises:
            RuntimeUnavailable: several models and none named, or the named one is not served.
        """
        names = ", ".join(str(m["id"]) for m in listed) or "none"
        if self.model is None:
            if len(listed) != 1:
                raise RuntimeUnavailable(
                    f"{self.base_url} serves {len(listed)} models ({names}); name one with model= or ?model=NAME"
                )
            self.model = str(listed[0]["id"])
        card = next((m for m in listed if m["id"] == self.model), None)
        if card is None:
            raise RuntimeUnavailable(f"{self.base_url} does not serve {self.model!r}; it serves: {names}")
        if isinstance(card.get("max_model_len"), int):
            self._context_length = card["max_model_len"]
        return self.model

    def payload(self, request: ModelRequest, messages: list[dict[str, Any]], *, final: bool) -> dict[str, Any]:
        """The chat-completions body for `request` (with `final`, a typed answer without tools)."""
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if request.allowed_tools and not final:
            body["tools"] = [tool_definition(spec) for spec in request.allowed_tools]
            choice = _tool_choice(request, self.capabilities.tool_choice)
            if choice is not None:
                body["tool_choice"] = choice
        elif request.output_schema is not None and self.capabilities.response_format:
            # Servers apply response_format to the whole reply, calls included,
            # so the schema is only sent when no call is possible.
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "final_answer", "schema": dict(request.output_schema)},
            }
        return {**body, **self.extra_body}

    async def generate(self, request: ModelRequest) -> ModelResponse:
        return await final_response(self._turn(request, live=False))

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        """The turn as the server streams it, then what `generate` returns.

        Text and thinking come as the server sends them; a call comes once it
        is complete (the next call begins, or the answer ends) and valid on its
        own. A turn with an invalid call raises after its deltas, as `generate`
        does.

        Retries happen only before the first delta: once the server has begun
        to answer, a stream that breaks is a `ServerError`.
        """
        return self._turn(request, live=True)

    async def _turn(self, request: ModelRequest, *, live: bool) -> AsyncIterator[ModelDelta | ModelResponse]:
        """The turn's response, after its deltas when `live` (streamed). One request: asking
        again is the agent loop's to decide.

        Raises:
            ModelOutputError: a call does not fit the request (`problems` says how).
            OutputTruncated: the reply was cut off at `max_tokens` where that cannot be used.
        """
        started = time.monotonic()
        if self.model is None:
            self.choose_model(await self.models())
        messages = chat_messages(request.messages, request.output_schema, plan=request.plan)
        final = not request.allowed_tools  # no call possible: the answer alone, under the schema
        payload = self.payload(request, messages, final=final)
        url = f"{self.base_url}/chat/completions"
        if live:
            streamed = _StreamedReply(request)
            async with post_events(
                url, {**payload, **STREAMING}, headers=self.headers, policy=self.retry, client=self.pool.client()
            ) as events:
                async for event in events:
                    for delta in streamed.add(event):
                        yield delta
            for delta in streamed.close():
                yield delta
            body, retries = streamed.body(), events.retries
        else:
            body, retries = await post_json(
                url, payload, headers=self.headers, policy=self.retry, client=self.pool.client()
            )
        usage = usage_of(body)
        choice = first_choice(body, url)
        message = choice.get("message")
        sent: Mapping[str, Any] = message if isinstance(message, Mapping) else {}
        raw = json.dumps(sent, ensure_ascii=False)
        # Servers report a reply cut off inside a call as complete calls
        # (vLLM: finish_reason "tool_calls"); the token count tells.
        cut = choice.get("finish_reason") == "length" or usage.completion_tokens >= request.sampling.max_tokens
        try:
            reply, from_content = calls_in_content(sent, request)
        except ModelOutputError as exc:
            if cut:
                raise OutputTruncated(request.sampling.max_tokens, raw) from None
            raise ModelOutputError(exc.reason, raw, usage=usage, problems=exc.problems) from None
        text = str(reply.get("content") or "")
        calls, problems = check_calls(reply, request)
        if cut and (problems or self.truncation_is_final(request)):
            raise OutputTruncated(request.sampling.max_tokens, raw)
        if problems:
            raise ModelOutputError(
                "the reply's tool calls do not fit the request: " + "; ".join(problems),
                raw,
                usage=usage,
                problems=problems,
            )
        if choice.get("finish_reason") == "length" and not calls and final and request.output_schema:
            raise OutputTruncated(request.sampling.max_tokens, text)
        finish: FinishReason = (
            "tool_calls" if calls else ("length" if choice.get("finish_reason") == "length" else "stop")
        )
        metadata: dict[str, Any] = {"retries": list(retries)} if retries else {}
        if from_content:  # the server's parser missed them: read from the content (`calls_in_content`)
            metadata["calls_from_content"] = from_content
        yield ModelResponse(
            message=AssistantMessage(
                text=text, tool_calls=tuple(calls), thinking=reply.get("reasoning_content") or reply.get("reasoning")
            ),
            usage=usage,
            finish_reason=finish,
            raw_text=raw,
            timings={"total": time.monotonic() - started},
            metadata=metadata,
        )

    def truncation_is_final(self, request: ModelRequest) -> bool:
        """Whether a reply cut off at `max_tokens` is an error even when what came back validates
        (true where decoding is constrained: the grammar had not finished)."""
        return False


def warn_repairs() -> None:
    """`repairs=` is deprecated: the agent's loop asks again for a turn with invalid calls."""
    warnings.warn(
        "repairs= is ignored and will be removed: a turn with invalid calls raises ModelOutputError at once, "
        "and the agent's loop tells the model what was wrong and asks again (bounded by the run's budget); "
        "leave repairs= out",
        DeprecationWarning,
        stacklevel=3,
    )
