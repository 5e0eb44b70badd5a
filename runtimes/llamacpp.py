"""`LlamaCppServer`: a running llama.cpp server, with calls as valid as in-process.

    runtime = LlamaCppServer("http://laptop:8080/v1")                # raw mode
    runtime = LlamaCppServer("http://laptop:8080/v1", mode="chat")   # the server's template and parser
    runtime = resolve("llamacpp:http://localhost:8080/v1")           # the same, by URI (`?mode=chat`)

Raw mode (the default) is `VLLMServer`'s raw mode for llama.cpp: agentkit
writes the prompt with its dialect and sends it to `/v1/completions` with the
dialect's constraint as llama.cpp's own grammar format (GBNF, in the `grammar`
field), so every call is valid by construction over HTTP too. The GBNF is
written mechanically from the same grammar value the other engines read
(`agentkit.grammar.Grammar.gbnf`): no grammar is written by hand for it.

Both llama.cpp servers read these fields: `llama-server` (llama.cpp's own) and
llama-cpp-python's (`python -m llama_cpp.server`, what
`agentkit serve llama:default` starts). The server adds the model's `<bos>`
itself, so the dialect's is left out of the prompt. Sampling always has a
top-k (1 when greedy).

Chat mode is `OpenAICompatible` on `/v1/chat/completions`: the server's
template and tool-call parser, then agentkit's checks and asking again.

The served model's name picks the dialect options, as for `VLLMServer`: a
server started by `agentkit serve llama:default` names its model after the
embedded preset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from agentkit.dialect import Constraint, Dialect
from agentkit.errors import RuntimeUnavailable
from agentkit.grammar import Grammar
from agentkit.runtime import RuntimeInfo, Sampling
from agentkit.runtimes._http import RetryPolicy
from agentkit.runtimes.openai import OpenAICompatible
from agentkit.runtimes.vllm.server import VLLMServer

__all__ = ["LlamaCppServer", "from_uri"]

_BOS = "<bos>"
_TOP_K = 40
"""The server's top-k when sampling (greedy decoding sends 1), as `LlamaEngine`."""


class LlamaCppServer(VLLMServer):
    """A llama.cpp server, in raw (grammar-constrained, the default) or chat mode.

    The arguments are `VLLMServer`'s, less `grammar_engine` (llama.cpp reads
    GBNF); `base_url` is e.g. `http://localhost:8080/v1`.
    """

    scheme = "llamacpp"
    provider = "llama.cpp"

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
        uri: str | None = None,
    ) -> None:
        super().__init__(
            base_url,
            mode=mode,
            model=model,
            dialect=dialect,
            constrained=constrained,
            api_key=api_key,
            retry=retry,
            uri=uri,
        )

    @property
    def info(self) -> RuntimeInfo:
        # Chat mode sends no grammar to llama.cpp: its calls are checked, not constrained.
        info = super().info
        return dataclasses.replace(info, constrained=info.constrained and self.mode == "raw")

    def _chat_half(self, *, model: str | None, api_key: str | None) -> OpenAICompatible:
        return OpenAICompatible(self.base_url, model=model, server="llamacpp", api_key=api_key, retry=self.retry)

    def completion_payload(
        self, prompt: str, constraint: Constraint | None, sampling: Sampling, stop: Sequence[str]
    ) -> dict[str, Any]:
        """The `/v1/completions` request for one raw-mode turn, with the constraint as GBNF."""
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt.removeprefix(_BOS),  # the server writes the model's <bos>
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_k": 1 if sampling.temperature <= 0 else _TOP_K,
            "stop": list(stop),
        }
        if sampling.seed is not None:
            payload["seed"] = sampling.seed
        if constraint is not None:
            if not isinstance(constraint.value, Grammar):
                raise RuntimeUnavailable(
                    f"llama.cpp raw mode sends grammars; the {self.info.dialect} dialect asks for a "
                    f"{constraint.kind} constraint: use a gemma4 dialect, or mode='chat'"
                )
            payload["grammar"] = constraint.value.gbnf()
        return payload


def from_uri(scheme: str, value: str, uri: str) -> LlamaCppServer:
    """`llamacpp:URL`, with `?model=NAME` and `?mode=chat` (or `raw`, the default).

    Raises:
        RuntimeUnavailable: no URL, an unknown option, or an unknown mode.
    """
    from agentkit.runtimes.openai import parse_server_uri

    url, model, options = parse_server_uri(scheme, value)
    mode: Literal["raw", "chat"] = "chat" if options.get("mode") == "chat" else "raw"  # any other was refused
    return LlamaCppServer(url, mode=mode, model=model, uri=uri)
