"""The runtimes the `vllm:` and `vllm-server:` URIs name (entries of `agentkit.runtimes.RUNTIMES`).

    resolve("vllm:gemma-4-e4b")                          # engine_from_uri: the process's VLLMEngine for it
    resolve("vllm-server:http://gpu-box:8000/v1?mode=chat")  # server_from_uri: a VLLMServer

Each takes the URI's scheme, its value (what follows the first colon) and the
whole URI, as every `RUNTIMES` factory does.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from agentkit.runtimes.vllm.engine import VLLMEngine
    from agentkit.runtimes.vllm.server import VLLMServer

__all__ = ["engine_from_uri", "server_from_uri"]

# One in-process engine per model per process: an engine holds the model's
# weights and a KV cache sized to the machine, so agents that name the same
# URI share it (vLLM batches their requests together).
_ENGINES: dict[str, VLLMEngine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_from_uri(scheme: str, value: str, uri: str) -> VLLMEngine:
    """`vllm:PRESET` or `vllm:MODEL`: the process's one engine for that URI (built, not started)."""
    from agentkit.runtimes.vllm.engine import VLLMEngine

    with _ENGINES_LOCK:
        if uri not in _ENGINES:
            _ENGINES[uri] = VLLMEngine(value)
        return _ENGINES[uri]


def server_from_uri(scheme: str, value: str, uri: str) -> VLLMServer:
    """`vllm-server:URL`, with `?model=NAME`, `?mode=chat` (or `raw`, the default) and
    `?grammar=xgrammar` (the server's structured-outputs backend, if not `guidance`).

    Raises:
        RuntimeUnavailable: no URL, an unknown option, or an unknown mode.
    """
    from agentkit.runtimes.openai import parse_server_uri
    from agentkit.runtimes.vllm.server import VLLMServer

    url, model, options = parse_server_uri("vllm", value)
    mode: Literal["raw", "chat"] = "chat" if options.get("mode") == "chat" else "raw"  # any other was refused
    return VLLMServer(url, mode=mode, model=model, uri=uri, grammar_engine=options.get("grammar"))
