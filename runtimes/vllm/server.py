"""`VLLMServer`: a running vLLM OpenAI server, with calls as valid as in-process.

    runtime = VLLMServer("http://gpu-box:8000/v1")               # raw mode
    runtime = VLLMServer("http://gpu-box:8000/v1", mode="chat")  # the server's template and parser
    runtime = resolve("vllm-server:http://gpu-box:8000/v1?mode=chat")

Raw mode (the default) does what `VLLMEngine` does, over HTTP: agentkit writes
the prompt with its dialect and sends it to `/v1/completions` with the
dialect's grammar in vLLM's `structured_outputs`, so every call is valid by
construction. The server needs no tool flags at all.

Chat mode sends `/v1/chat/completions` with `tools`: the server's chat
template writes the prompt and its `--tool-call-parser gemma4` reads the calls
(start it with `--enable-auto-tool-choice --tool-call-parser gemma4`). vLLM
does not constrain Gemma 4 calls itself, so agentkit sends the same grammar in
`structured_outputs` (Gemma 4's template ends its prompt where agentkit's
does), and still checks every call against its schema, as `OpenAICompatible`
does for any server (an invalid call is a `ModelOutputError` the agent's loop
feeds back). `constrained=False` leaves the grammar
out.

Both modes stream (`stream`): raw mode reads the streamed text with the
dialect, as `VLLMEngine` does; chat mode streams as `OpenAICompatible`. Raw
mode is the decoding pipeline's (`agentkit.decoding.decode`) over HTTP: this
module is its transport, `complete`.

Requests share one keep-alive connection pool; `await runtime.aclose()` (or
`async with runtime:`) lets it go, and `astart()` learns the served model ahead
of the first request.

The served model's name picks the dialect options: a server started by
`agentkit serve vllm:PRESET` (or any server naming its model by a preset's
Hugging Face id) gets that preset's; another model gets the plain Gemma 4
dialect.
"""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, Literal, Self

from agentkit.decoding import Completion, decode
from agentkit.dialect import Constraint, Dialect, final_response, get_dialect, read_stream
from agentkit.errors import RuntimeUnavailable
from agentkit.runtime import Lifecycle, ModelDelta, ModelRequest, ModelResponse, RuntimeInfo, Sampling, close_runtime
from agentkit.runtimes._http import ClientPool, RetryPolicy, check_url, first_choice, post_events, post_json
from agentkit.runtimes.openai import STREAMING, OpenAICompatible, bearer, usage_of, warn_repairs
from agentkit.runtimes.vllm.presets import checked_grammar_engine, preset_for_model

__all__ = ["VLLMServer"]


class VLLMServer(Lifecycle):
    """A vLLM OpenAI server, in raw (grammar-constrained) or chat mode.

    Args:
        base_url: The API root, e.g. `http://localhost:8000/v1`.
        mode: `raw` (agentkit's prompt and grammar on `/v1/completions`) or
            `chat` (the server's template and tool parser).
        model: The served model to ask for; None takes the server's only one.
        dialect: Overrides the dialect raw mode writes (a name or a `Dialect`).
        constrained: Send the dialect's grammar in raw mode (default on).
        api_key: Sent as a bearer token (a server started with `--api-key`);
            defaults to `AGENTKIT_API_KEY`.
        retry: How hard to try before giving up on a request.
        repairs: Deprecated, ignored: in chat mode a turn with invalid calls
            raises `ModelOutputError` at once, and the agent's loop asks again.
        grammar_engine: The server's structured-outputs backend, which the grammar
            is written for: `guidance` (llguidance; the default, and what
            `agentkit serve` runs) or `xgrammar`. A server on vLLM's `auto`
            backend takes `guidance`'s grammar (xgrammar refuses it, vLLM falls back).
    """

    def __init__(
        self,
        base_url: str,
        *,
        mode: Literal["raw", "chat"] = "raw",
        model: str | None = None,
        dialect: str | Dialect | None = None,
        constrained: bool = True,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        repairs: int | None = None,
        uri: str | None = None,
        grammar_engine: str | None = None,
    ) -> None:
        if repairs is not None:
            warn_repairs()
        if mode not in ("raw", "chat"):
            raise RuntimeUnavailable(f"VLLMServer mode must be 'raw' or 'chat', not {mode!r}")
        self.base_url = check_url(base_url)
        self.mode = mode
        self.model = model
        self.constrained = constrained
        self.grammar_engine = checked_grammar_engine(grammar_engine)
        """The server's structured-outputs backend (`vllm serve --structured-outputs-config.backend`):
        the constraint is written for it. `agentkit serve` starts servers on the default."""
        self.retry = retry or RetryPolicy()
        self.headers = bearer(api_key, self.base_url)
        self._dialect_choice = dialect
        self.dialect: Dialect | None = dialect if dialect is not None and not isinstance(dialect, str) else None
        self._uri = uri or f"{self.scheme}:{self.base_url}" + ("?mode=chat" if mode == "chat" else "")
        self._chat = self._chat_half(model=model, api_key=api_key)
        self._pool: ClientPool = self._chat.pool  # raw mode and chat mode share one keep-alive client

    def variant(self, *, dialect: str | Dialect | None = None, constrained: bool | None = None) -> Self:
        """This runtime with another dialect or constraint setting, on the same connections.

        A dialect name is resolved when the twin first learns the served model;
        closing either runtime closes the connections of both.
        """
        twin = copy.copy(self)
        if dialect is not None:
            twin._dialect_choice = dialect
            twin.dialect = None if isinstance(dialect, str) else dialect
        if constrained is not None:
            twin.constrained = constrained
        twin._chat = chat = copy.copy(self._chat)  # the same pool, answering to the twin
        if isinstance(chat, _Chat):
            chat.owner = twin
        return twin

    scheme = "vllm-server"
    """The URI scheme, and the runtime's name in `info`."""
    provider = "vllm"

    @property
    def info(self) -> RuntimeInfo:
        return RuntimeInfo(
            name=self.scheme,
            model=self.model or "(the server's model)",
            dialect=self.dialect.name if self.dialect is not None else "gemma4",
            constrained=self.constrained,
            context_length=self._chat.info.context_length,
            uri=self._uri,
            provider=self.provider,
            server=self.base_url,
        )  # fmt: skip

    def _chat_half(self, *, model: str | None, api_key: str | None) -> OpenAICompatible:
        """Chat mode's runtime, whose connections raw mode shares."""
        return _Chat(self, self.base_url, model=model, server="vllm", api_key=api_key, retry=self.retry)

    async def connect(self) -> None:
        """Learn the served model and its context length (done on first use)."""
        if self.model is not None and self.dialect is not None:
            return
        self._chat.retry = self.retry
        self.model = self._chat.choose_model(await self._chat.models())
        if self.dialect is None:
            preset = preset_for_model(self.model)
            name = self._dialect_choice if isinstance(self._dialect_choice, str) else None
            name = name or (preset.dialect if preset else "gemma4")
            options = preset.options(name) if preset else {}
            self.dialect = get_dialect(name, **options)

    async def astart(self) -> None:
        """Learn the served model ahead of the first request (`connect`)."""
        await self.connect()

    async def aclose(self) -> None:
        """Close the pooled connections. Safe to call twice."""
        await close_runtime(self._chat)
        await self._pool.aclose()

    async def generate(self, request: ModelRequest) -> ModelResponse:
        await self.connect()
        if self.mode == "chat":
            return await self._chat.generate(request)
        return await final_response(self._raw(request, live=False))

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        """The turn as the server decodes it, then what `generate` returns.

        Raw mode reads the text with the dialect as it streams; chat mode is
        `OpenAICompatible.stream`. Retries happen only before the first delta.
        """
        await self.connect()
        assert self.dialect is not None  # set by connect()
        turn = (
            self._chat.stream(request)
            if self.mode == "chat"
            else read_stream(self.dialect, request, self._raw(request, live=True))
        )
        async for item in turn:
            yield item

    def _raw(self, request: ModelRequest, *, live: bool) -> AsyncGenerator[str | ModelResponse, None]:
        """Raw mode's turn: the text as it streams when `live`, then its response."""
        assert self.dialect is not None  # set by connect()
        return decode(self, self.dialect, request, constrained=self.constrained, live=live)

    async def complete(
        self, prompt: str, constraint: Constraint | None, sampling: Sampling, stop: Sequence[str], *, live: bool
    ) -> AsyncIterator[str | Completion]:
        """`prompt` on `/v1/completions`: the text as it streams when `live`, then the `Completion`."""
        url = f"{self.base_url}/completions"
        payload = self.completion_payload(prompt, constraint, sampling, stop)
        stamps: list[float] = []  # when the first and the last piece came, streaming
        client = self._pool.client()
        if live:
            parts: list[str] = []
            last: dict[str, Any] | None = None
            usage_seen: Any = None
            streaming = {**payload, **STREAMING}
            async with post_events(url, streaming, headers=self.headers, policy=self.retry, client=client) as events:
                async for event in events:
                    usage_seen = (event.get("usage") if isinstance(event, Mapping) else None) or usage_seen
                    if isinstance(event, Mapping) and not event.get("choices"):
                        continue  # the last event: the usage alone
                    last = first_choice(event, url)
                    if piece := str(last.get("text") or ""):
                        now = time.monotonic()
                        stamps = [stamps[0] if stamps else now, now]
                        parts.append(piece)
                        yield piece
            retries = events.retries
            # The answer as one completion: the text whole, the last chunk's finish reason. A server
            # that reports no usage when streaming (llama-cpp-python's) streams a token per chunk.
            usage_seen = usage_seen or {"prompt_tokens": 0, "completion_tokens": len(parts)}
            body = {"choices": [{**last, "text": "".join(parts)}] if last else [], "usage": usage_seen}
        else:
            body, retries = await post_json(url, payload, headers=self.headers, policy=self.retry, client=client)
        choice = first_choice(body, url)
        yield Completion(
            text=str(choice.get("text") or ""),
            cut=choice.get("finish_reason") == "length",
            usage=usage_of(body),
            retries=tuple(retries),
            first_token_at=stamps[0] if stamps else None,
            last_token_at=stamps[-1] if stamps else None,
        )

    def completion_payload(
        self, prompt: str, constraint: Constraint | None, sampling: Sampling, stop: Sequence[str]
    ) -> dict[str, Any]:
        """The `/v1/completions` request for one raw-mode turn."""
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "stop": list(stop),
            # The dialect writes <bos> itself, and Gemma 4's markers are special
            # tokens the dialect must see in the text it parses.
            "add_special_tokens": False,
            "skip_special_tokens": False,
        }
        if sampling.seed is not None:
            payload["seed"] = sampling.seed
        if constraint is not None:
            payload["structured_outputs"] = constraint.structured_outputs(self.grammar_engine)
        return payload


class _Chat(OpenAICompatible):
    """Chat completions on vLLM, with the dialect's grammar in `structured_outputs`."""

    def __init__(self, owner: VLLMServer, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.owner = owner

    def truncation_is_final(self, request: ModelRequest) -> bool:
        return self.owner.constrained and bool(request.allowed_tools)

    def payload(self, request: ModelRequest, messages: list[dict[str, Any]], *, final: bool) -> dict[str, Any]:
        body = super().payload(request, messages, final=final)
        dialect = self.owner.dialect
        if "tools" in body and self.owner.constrained and dialect is not None:
            constraint = dialect.constraint(request)
            if constraint is not None:
                body["structured_outputs"] = constraint.structured_outputs(self.owner.grammar_engine)
                # The tool parser reads Gemma 4's markers, which are special tokens.
                body["skip_special_tokens"] = False
                # And the turn ends where raw mode's does: a spelled-out `<turn|>` is
                # no text of the answer (without this, chat mode wrote one and went on).
                body["stop"] = list(dict.fromkeys([*dialect.stop(), *body.get("stop", ())]))
        # The template must write the prompt the grammar continues: thinking on, it opens
        # the model's turn bare (and after tool results, inside a thought).
        kwargs = {
            key: True
            for key, on in (("enable_thinking", "thinking"), ("preserve_thinking", "preserve_thinking"))
            if getattr(dialect, on, False)
        }
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        return body
