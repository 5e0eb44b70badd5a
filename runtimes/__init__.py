"""Runtimes: where the model runs, behind the one `Runtime` protocol.

Pick one in code (`VLLMEngine("default")`, `ScriptedRuntime([...])`) or by a
URI string wherever a runtime is accepted (`Agent(runtime="vllm:default")`,
the `AGENTKIT_RUNTIME` variable):

| URI | runtime |
|---|---|
| `vllm:default` | `VLLMEngine`, the embedded model (CPU) |
| `vllm:gemma-4-e2b` ... `vllm:gemma-4-31b`, `vllm:/path/or/hf-id` | `VLLMEngine` with a preset or a model |
| `vllm:tiny-gemma4` | `VLLMEngine`, a random-weights Gemma 4 for tests (CPU) |
| `vllm-server:http://host:port/v1` | `VLLMServer`, raw mode (add `?mode=chat` for chat mode) |
| `openai:http://host:port/v1` | `OpenAICompatible` (add `?model=NAME` when the server has several) |
| `ollama:MODEL`, `lmstudio:MODEL`, `llamacpp:URL` | `OpenAICompatible` on that server's default port |
| `scripted:FILE.json` | `ScriptedRuntime` playing a JSON list of turns |

Heavy runtimes import their engine only when built, so `import agentkit.runtimes`
stays light.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from agentkit.errors import RuntimeUnavailable
from agentkit.runtime import Runtime

if TYPE_CHECKING:
    from agentkit.runtimes._http import RetryPolicy
    from agentkit.runtimes.openai import OpenAICompatible
    from agentkit.runtimes.scripted import ScriptedRuntime
    from agentkit.runtimes.vllm import VLLMEngine
    from agentkit.runtimes.vllm.server import VLLMServer

__all__ = [
    "SCHEMES",
    "OpenAICompatible",
    "RetryPolicy",
    "ScriptedRuntime",
    "VLLMEngine",
    "VLLMServer",
    "check_uri",
    "resolve",
]

_LAZY = {
    "OpenAICompatible": "agentkit.runtimes.openai",
    "RetryPolicy": "agentkit.runtimes._http",
    "ScriptedRuntime": "agentkit.runtimes.scripted",
    "VLLMEngine": "agentkit.runtimes.vllm",
    "VLLMServer": "agentkit.runtimes.vllm.server",
}
_SERVER_SCHEMES = ("openai", "ollama", "lmstudio", "llamacpp")

# One in-process engine per model per process: an engine holds the model's
# weights and a KV cache sized to the machine, so agents that name the same
# URI share it (vLLM batches their requests together).
_ENGINES: dict[str, Runtime] = {}
_ENGINES_LOCK = threading.Lock()


SCHEMES = ("vllm", "vllm-server", *_SERVER_SCHEMES, "scripted")
"""The runtime URI schemes `resolve` knows."""


def check_uri(uri: str) -> None:
    """Check a runtime URI's form and scheme without making the runtime (nothing is started or read).

    Raises:
        RuntimeUnavailable: the URI's scheme is unknown or malformed.
    """
    scheme, sep, rest = uri.partition(":")
    if not sep or not rest:
        raise RuntimeUnavailable(f"runtime URI {uri!r} must look like SCHEME:VALUE, e.g. vllm:default")
    if scheme not in SCHEMES:
        raise RuntimeUnavailable(f"unknown runtime scheme {scheme!r} in {uri!r}; known: {', '.join(SCHEMES)}")


def resolve(uri: str) -> Runtime:
    """The runtime a URI names.

    Raises:
        RuntimeUnavailable: the URI's scheme is unknown or malformed.
    """
    check_uri(uri)
    scheme, _, rest = uri.partition(":")
    if scheme == "vllm":
        from agentkit.runtimes.vllm import VLLMEngine

        with _ENGINES_LOCK:
            if uri not in _ENGINES:
                _ENGINES[uri] = VLLMEngine(rest)
            return _ENGINES[uri]
    if scheme == "vllm-server" or scheme in _SERVER_SCHEMES:
        from agentkit.runtimes.openai import OpenAICompatible, parse_server_uri

        url, model, options = parse_server_uri("vllm" if scheme == "vllm-server" else scheme, rest)
        if scheme == "vllm-server":
            from agentkit.runtimes.vllm.server import VLLMServer

            mode = options.get("mode", "raw")
            if mode not in ("raw", "chat"):
                raise RuntimeUnavailable(f"mode={mode!r} in {uri!r}: VLLMServer modes are raw and chat")
            return VLLMServer(url, mode="chat" if mode == "chat" else "raw", model=model, uri=uri)
        return OpenAICompatible(url, model=model, server=scheme, uri=uri)
    if scheme == "scripted":
        from agentkit.runtimes.scripted import ScriptedRuntime

        return ScriptedRuntime.from_file(rest)
    raise AssertionError(f"check_uri let {uri!r} through")  # pragma: no cover


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agentkit.runtimes' has no attribute {name!r}")
