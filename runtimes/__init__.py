"""Runtimes: where the model runs, behind the one `Runtime` protocol.

Pick one in code (`VLLMEngine("default")`, `ScriptedRuntime([...])`) or by a
URI string wherever a runtime is accepted (`Agent(runtime="vllm:default")`,
the `AGENTKIT_RUNTIME` variable):

| URI | runtime |
|---|---|
| `vllm:default` | `VLLMEngine`, the embedded model (CPU) |
| `vllm:gemma-4-e2b` ... `vllm:gemma-4-31b`, `vllm:/path/or/hf-id` | `VLLMEngine` with a preset or a model |
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
    from agentkit.runtimes.scripted import ScriptedRuntime
    from agentkit.runtimes.vllm import VLLMEngine

__all__ = ["ScriptedRuntime", "VLLMEngine", "resolve"]

# One in-process engine per model per process: an engine holds the model's
# weights and a KV cache sized to the machine, so agents that name the same
# URI share it (vLLM batches their requests together).
_ENGINES: dict[str, Runtime] = {}
_ENGINES_LOCK = threading.Lock()


def resolve(uri: str) -> Runtime:
    """The runtime a URI names.

    Raises:
        RuntimeUnavailable: the URI's scheme is unknown or malformed.
    """
    scheme, sep, rest = uri.partition(":")
    if not sep or not rest:
        raise RuntimeUnavailable(f"runtime URI {uri!r} must look like SCHEME:VALUE, e.g. vllm:default")
    if scheme == "vllm":
        from agentkit.runtimes.vllm import VLLMEngine

        with _ENGINES_LOCK:
            if uri not in _ENGINES:
                _ENGINES[uri] = VLLMEngine(rest)
            return _ENGINES[uri]
    if scheme == "scripted":
        from agentkit.runtimes.scripted import ScriptedRuntime

        return ScriptedRuntime.from_file(rest)
    raise RuntimeUnavailable(f"unknown runtime scheme {scheme!r} in {uri!r}; known: vllm, scripted")


def __getattr__(name: str) -> Any:
    if name == "VLLMEngine":
        from agentkit.runtimes.vllm import VLLMEngine

        return VLLMEngine
    if name == "ScriptedRuntime":
        from agentkit.runtimes.scripted import ScriptedRuntime

        return ScriptedRuntime
    raise AttributeError(f"module 'agentkit.runtimes' has no attribute {name!r}")
