"""Runtimes: where the model runs, behind the one `Runtime` protocol.

Pick one in code (`VLLMEngine("default")`, `ScriptedRuntime([...])`) or by a
URI string wherever a runtime is accepted (`Agent(runtime="vllm:default")`,
the `AGENTKIT_RUNTIME` variable):

| URI | runtime |
|---|---|
| `vllm:default` | `VLLMEngine`, the embedded model (CPU) |
| `vllm:gemma-4-e2b` ... `vllm:gemma-4-31b`, `vllm:/path/or/hf-id` | `VLLMEngine` with a preset or a model |
| `vllm:tiny-gemma4` | `VLLMEngine`, a random-weights Gemma 4 for tests (CPU) |
| `llama:default`, `llama:PATH.gguf` | `LlamaEngine`, llama.cpp in process (the packaged GGUF as it is) |
| `vllm-server:http://host:port/v1` | `VLLMServer`, raw mode (add `?mode=chat` for chat mode) |
| `openai:http://host:port/v1` | `OpenAICompatible` (add `?model=NAME` when the server has several) |
| `llamacpp:http://host:port/v1` | `LlamaCppServer`, raw mode (add `?mode=chat` for chat mode) |
| `ollama:MODEL`, `lmstudio:MODEL` | `OpenAICompatible` on that server's default port |
| `scripted:FILE.json` | `ScriptedRuntime` playing a JSON list of turns |
| `replay:RUN_ID` | `ReplayRuntime` playing a stored run's turns (add `?db=PATH` for another store) |

`RUNTIMES` is the one table from a URI scheme to the function that builds its
runtime, `factory(scheme, value, uri)` (`value` is what follows the first
colon); `SCHEMES`, `check_uri` and `resolve` read it. A new runtime is a
module with its class and that function, and one line:

    RUNTIMES.add("echo", "my_package.echo:from_uri")

Heavy runtimes import their engine only when built, so `import agentkit.runtimes`
stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from agentkit.errors import RuntimeUnavailable
from agentkit.registry import Registry
from agentkit.runtime import Runtime

if TYPE_CHECKING:  # for type checkers: the classes `__getattr__` imports on first use
    from agentkit.replay import ReplayRuntime as ReplayRuntime
    from agentkit.runtimes._http import RetryPolicy as RetryPolicy
    from agentkit.runtimes.function import FunctionRuntime as FunctionRuntime
    from agentkit.runtimes.llama import LlamaEngine as LlamaEngine
    from agentkit.runtimes.llamacpp import LlamaCppServer as LlamaCppServer
    from agentkit.runtimes.openai import OpenAICompatible as OpenAICompatible
    from agentkit.runtimes.scripted import ScriptedRuntime as ScriptedRuntime
    from agentkit.runtimes.vllm.engine import VLLMEngine as VLLMEngine
    from agentkit.runtimes.vllm.server import VLLMServer as VLLMServer

RuntimeFactory: TypeAlias = Callable[[str, str, str], Runtime]
"""Builds the runtime a URI names, from its scheme, its value and the whole URI."""

RUNTIMES: Registry[RuntimeFactory] = Registry(
    "runtime scheme",
    {
        "vllm": "agentkit.runtimes.vllm.uris:engine_from_uri",
        "vllm-server": "agentkit.runtimes.vllm.uris:server_from_uri",
        "llama": "agentkit.runtimes.llama:from_uri",
        "openai": "agentkit.runtimes.openai:from_uri",
        "ollama": "agentkit.runtimes.openai:from_uri",
        "lmstudio": "agentkit.runtimes.openai:from_uri",
        "llamacpp": "agentkit.runtimes.llamacpp:from_uri",
        "scripted": "agentkit.runtimes.scripted:from_uri",
        "replay": "agentkit.replay:from_uri",
    },
)
"""URI scheme -> the `module:function` that builds its runtime (`RuntimeFactory`)."""

_CLASSES: Registry[type] = Registry(
    "runtime class",
    {
        "FunctionRuntime": "agentkit.runtimes.function:FunctionRuntime",
        "LlamaCppServer": "agentkit.runtimes.llamacpp:LlamaCppServer",
        "LlamaEngine": "agentkit.runtimes.llama:LlamaEngine",
        "OpenAICompatible": "agentkit.runtimes.openai:OpenAICompatible",
        "ReplayRuntime": "agentkit.replay:ReplayRuntime",
        "RetryPolicy": "agentkit.runtimes._http:RetryPolicy",
        "ScriptedRuntime": "agentkit.runtimes.scripted:ScriptedRuntime",
        "VLLMEngine": "agentkit.runtimes.vllm.engine:VLLMEngine",
        "VLLMServer": "agentkit.runtimes.vllm.server:VLLMServer",
    },
)
"""The classes this package exports, imported when first asked for."""

__all__ = [  # spelled out for static tools; tests/unit/runtimes checks it against _CLASSES
    "RUNTIMES",
    "SCHEMES",
    "FunctionRuntime",
    "LlamaCppServer",
    "LlamaEngine",
    "OpenAICompatible",
    "ReplayRuntime",
    "RetryPolicy",
    "RuntimeFactory",
    "ScriptedRuntime",
    "VLLMEngine",
    "VLLMServer",
    "check_uri",
    "resolve",
]


def _split(uri: str) -> tuple[str, str]:
    scheme, sep, value = uri.partition(":")
    if not sep or not value:
        raise RuntimeUnavailable(f"runtime URI {uri!r} must look like SCHEME:VALUE, e.g. vllm:default")
    return scheme, value


def check_uri(uri: str) -> None:
    """Check a runtime URI's form and scheme without making the runtime (nothing is started or read).

    Raises:
        RuntimeUnavailable: the URI is not `SCHEME:VALUE`.
        UnknownName: no runtime has that scheme (`SCHEMES` lists those there are).
    """
    scheme, _ = _split(uri)
    RUNTIMES.check(scheme, context=repr(uri))


def resolve(uri: str) -> Runtime:
    """The runtime a URI names.

    Raises:
        RuntimeUnavailable: the URI is not `SCHEME:VALUE`, or its runtime cannot be made from it.
        UnknownName: no runtime has that scheme.
    """
    scheme, value = _split(uri)
    factory = RUNTIMES.load(scheme, context=repr(uri))
    return factory(scheme, value, uri)


def __getattr__(name: str) -> Any:
    if name == "SCHEMES":  # read from the table each time: `RUNTIMES.add` extends it
        return RUNTIMES.names
    if name in _CLASSES:
        return _CLASSES.load(name)
    raise AttributeError(f"module 'agentkit.runtimes' has no attribute {name!r}")
