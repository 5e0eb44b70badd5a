"""vLLM: the in-process engine (`VLLMEngine`), a running `vllm serve` (`VLLMServer`),
and what belongs to vLLM alone: its model presets, `agentkit serve`'s server
(`serve`), and the models agentkit prepares itself (`embedded`, `tiny_gemma4`).

Nothing here imports vLLM until an engine starts.
"""

from agentkit.runtimes.vllm.engine import VLLMEngine
from agentkit.runtimes.vllm.presets import (
    EMBEDDED_SERVED_NAME,
    LOCAL_MODELS,
    PRESETS,
    Preset,
    engine_settings,
    local_model_path,
    preset_for_model,
    served_model_name,
)
from agentkit.runtimes.vllm.server import VLLMServer

__all__ = [
    "EMBEDDED_SERVED_NAME",
    "LOCAL_MODELS",
    "PRESETS",
    "Preset",
    "VLLMEngine",
    "VLLMServer",
    "engine_settings",
    "local_model_path",
    "preset_for_model",
    "served_model_name",
]
