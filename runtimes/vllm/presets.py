"""The vLLM model presets: Gemma 4's sizes, the embedded default and the tiny
test model, each a model id with the dialect and engine arguments it runs well
with; and the models agentkit prepares into its cache itself.

`VLLMEngine(NAME)` and `agentkit serve vllm:NAME` read the same table; a server
reporting a preset's served name gets that preset's dialect options.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentkit.dialect import GRAMMAR_ENGINES
from agentkit.errors import RuntimeUnavailable

__all__ = [
    "EMBEDDED_SERVED_NAME",
    "LOCAL_MODELS",
    "PRESETS",
    "Preset",
    "engine_settings",
    "local_model_path",
    "preset_for_model",
    "served_model_name",
]

log = logging.getLogger("agentkit.vllm")


@dataclass(frozen=True, kw_only=True)
class Preset:
    """A named model with the engine arguments it runs well with."""

    model: str
    """Hugging Face id or local path, or a model agentkit prepares itself (`LOCAL_MODELS`)."""
    dialect: str
    """The dialect used unless the runtime is given another."""
    family: Literal["big", "small"] = "big"
    """Which of Google's two Gemma 4 chat templates the model takes: `big` (12B,
    26B-A4B, 31B) or `small` (E2B, E4B). The `gemma4` dialect is built with it."""
    dialect_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Options per dialect name, used whenever that dialect is chosen by name."""
    engine_args: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def options(self, dialect: str) -> dict[str, Any]:
        """The options the dialect named `dialect` is built with under this preset."""
        options = dict(self.dialect_options.get(dialect, {}))
        if dialect == "gemma4":
            options.setdefault("family", self.family)
        return options


# Gemma 4 presets: the native dialect, text-only by default (no image/audio
# encoders profiled or cached), context trimmed to what one GPU holds comfortably.
_GEMMA4_TEXT = {"limit_mm_per_prompt": {"image": 0, "audio": 0, "video": 0}}
# The JSON dialect, when asked for by name, writes Gemma 4's turn markers.
_JSON_GEMMA4 = {"json": {"turns": "gemma4"}}
# A Gemma 4 tokenizer holds each marker as one token: the grammar names them so.
_MARKER_TOKENS = {"marker_tokens": True}


def _gemma4(model: str, family: Literal["big", "small"], description: str, **engine_args: Any) -> Preset:
    return Preset(
        model=model,
        dialect="gemma4",
        family=family,
        dialect_options={"gemma4": _MARKER_TOKENS, **_JSON_GEMMA4},
        engine_args={**engine_args, **_GEMMA4_TEXT},
        description=description,
    )


PRESETS: dict[str, Preset] = {
    "default": Preset(
        model="embedded",
        dialect="gemma4",
        family="big",
        # The embedded model is a tiny *base* model, never trained on tool use:
        # worked examples show it the protocol, the grammar holds it there, and
        # caps on strings, text and calls per turn keep it from writing on until max_tokens.
        # Under `json` it is steadier with the Gemma 3 turn markers it knows.
        dialect_options={
            "gemma4": {"examples": 2, "max_string": 60, "max_items": 4, "max_text": 100, "parallel_calls": False},
            "json": {"turns": "gemma3", "examples": 2, "max_string": 80},
        },
        engine_args={"max_model_len": 4096, "max_num_seqs": 16},
        description="Gemma 3 270M (pretrained), packaged; runs on a CPU",
    ),
    "gemma-4-e2b": _gemma4(
        "google/gemma-4-E2B-it", "small", "Gemma 4 E2B instruction-tuned (edge, ~2B effective)", max_model_len=32768
    ),
    "gemma-4-e4b": _gemma4(
        "google/gemma-4-E4B-it", "small", "Gemma 4 E4B instruction-tuned (edge, ~4B effective)", max_model_len=32768
    ),
    "gemma-4-12b": _gemma4(
        "google/gemma-4-12B-it", "big", "Gemma 4 12B dense; one 40 GB GPU", max_model_len=32768, kv_cache_dtype="fp8"
    ),
    "gemma-4-26b-a4b": _gemma4(
        "google/gemma-4-26B-A4B-it",
        "big",
        "Gemma 4 26B A4B mixture of experts (~4B active); one 80 GB GPU",
        max_model_len=65536,
        kv_cache_dtype="fp8",
    ),
    "gemma-4-31b": _gemma4(
        "google/gemma-4-31B-it", "big", "Gemma 4 31B dense; one 80 GB GPU", max_model_len=32768, kv_cache_dtype="fp8"
    ),
    "tiny-gemma4": Preset(
        model="tiny-gemma4",
        dialect="gemma4",
        family="big",
        # Random weights: worked examples teach it nothing; the grammar alone makes
        # its turns valid, and caps on strings, arrays, text and calls per turn end
        # them (unbounded, it writes inside a string until max_tokens). Sized for a
        # CPU next to another engine.
        dialect_options={
            "gemma4": {"max_string": 20, "max_items": 3, "max_text": 40, "parallel_calls": False, **_MARKER_TOKENS},
            **_JSON_GEMMA4,
        },
        engine_args={"max_model_len": 2048, "max_num_seqs": 16, "gpu_memory_utilization": 0.05, "enforce_eager": True},
        description="TEST model, not for use: Gemma 4's architecture and token ids at toy size, random weights; "
        "runs on a CPU",
    ),
}


@dataclass(frozen=True)
class _Local:
    module: str
    """The module that prepares it: `prepare(quiet=...)`, `is_prepared()`, `model_dir()`."""
    served_name: str
    """The name `agentkit serve` gives it on its server."""
    label: str
    """What `RuntimeInfo.model` says."""


LOCAL_MODELS: dict[str, _Local] = {
    "embedded": _Local("agentkit.runtimes.vllm.embedded", "agentkit-embedded", "gemma-3-270m (embedded)"),
    "tiny-gemma4": _Local("agentkit.runtimes.vllm.tiny_gemma4", "agentkit-tiny-gemma4", "tiny-gemma4 (random weights)"),
}
"""Models agentkit prepares into its cache, by the name a preset's `model` gives them."""

EMBEDDED_SERVED_NAME = LOCAL_MODELS["embedded"].served_name
"""The name `agentkit serve vllm:default` gives the embedded model on its server."""


def served_model_name(preset: Preset) -> str:
    """The model name a server started by `agentkit serve` reports for `preset`."""
    local = LOCAL_MODELS.get(preset.model)
    return local.served_name if local else preset.model


def local_model_path(model: str) -> Path | None:
    """The folder of a model agentkit prepares (preparing it now if needed), or
    None when `model` is none of `LOCAL_MODELS` (a Hugging Face id or a path)."""
    local = LOCAL_MODELS.get(model)
    if local is None:
        return None
    import importlib

    module = importlib.import_module(local.module)
    if not module.is_prepared():
        log.warning("preparing %s into %s (once)", model, module.model_dir())
    path: Path = module.prepare(quiet=True)
    return path


def preset_for_model(model_id: str) -> Preset | None:
    """The preset a served model is, by its served name (a preset's HF id, or a local model's)."""
    for name, preset in PRESETS.items():
        if model_id in (name, served_model_name(preset)):
            return preset
    return None


# What a 2-core, 24 GiB machine with no GPU needs: the CPU backend reserves
# `gpu_memory_utilization` of NUMA node 0's memory (the default 0.92 refuses
# to start), and compiling graphs costs minutes for no gain at this size.
_CPU_ENGINE_ARGS: dict[str, Any] = {"gpu_memory_utilization": 0.3, "enforce_eager": True, "dtype": "bfloat16"}


DEFAULT_GRAMMAR_ENGINE = "guidance"
"""vLLM's structured-outputs backend agentkit runs: llguidance compiles a new
tool set's grammar in milliseconds, where xgrammar takes seconds (measured in
`benchmarks/grammar_engines.py`; `docs/gemma4.md` has the figures)."""


def with_grammar_engine(args: Mapping[str, Any], engine: str | None) -> dict[str, Any]:
    """`args` with vLLM's structured-outputs backend set to `engine` (None: left as it is).

    Raises:
        RuntimeUnavailable: `engine` is not a grammar engine agentkit writes for.
    """
    if engine is None:
        return dict(args)
    engine = checked_grammar_engine(engine)
    config = {**(args.get("structured_outputs_config") or _STRUCTURED_OUTPUTS), "backend": engine}
    if engine != "guidance":  # vLLM refuses it for other backends (xgrammar's JSON is strict already)
        config.pop("disable_additional_properties", None)
    return {**args, "structured_outputs_config": config}


def grammar_engine_of(args: Mapping[str, Any]) -> str:
    """The structured-outputs backend an engine started with `args` runs."""
    config = args.get("structured_outputs_config") or _STRUCTURED_OUTPUTS
    backend = config.get("backend", DEFAULT_GRAMMAR_ENGINE) if isinstance(config, Mapping) else config.backend
    return checked_grammar_engine(str(backend))


def checked_grammar_engine(engine: str | None) -> str:
    """`engine`, or the default for None.

    Raises:
        RuntimeUnavailable: `engine` is not a grammar engine agentkit writes for.
    """
    if engine is None:
        return DEFAULT_GRAMMAR_ENGINE
    if engine not in GRAMMAR_ENGINES:
        raise RuntimeUnavailable(
            f"grammar engine {engine!r}: agentkit writes grammars for {', '.join(GRAMMAR_ENGINES)} "
            "(vLLM's structured-outputs backends `guidance` and `xgrammar`)"
        )
    return engine


# vLLM 0.32 reads `disable_any_whitespace` from the engine-wide config only
# (its xgrammar backend ignores the per-request flag), and agentkit's JSON
# constraints are meant to be compact. `disable_additional_properties` closes a
# JSON Schema's objects to undeclared keys, as xgrammar does by default (without
# it, a small model answering under `response_format` wrote `"type"` six times).
_STRUCTURED_OUTPUTS = {
    "backend": DEFAULT_GRAMMAR_ENGINE,
    "disable_any_whitespace": True,
    "disable_additional_properties": True,
}


def engine_settings(args: Mapping[str, Any], *, cpu: bool) -> dict[str, Any]:
    """The engine arguments agentkit runs vLLM with (in-process or served): the CPU
    settings on a CPU, then `args`, with llguidance and compact JSON under structured outputs."""
    settings = {**(_CPU_ENGINE_ARGS if cpu else {}), **args}
    settings.setdefault("structured_outputs_config", dict(_STRUCTURED_OUTPUTS))
    return settings


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())
