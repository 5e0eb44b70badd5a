"""A tiny Gemma 4 with random weights, for tests: Gemma 4's real architecture and token ids on a CPU.

Real Gemma 4 weights cannot be fetched on many machines agentkit is tested
on. This builds, once, a 2-layer `Gemma4ForCausalLM` (transformers'
`Gemma4TextConfig`, random weights from a fixed seed, about 33 MB in bf16)
with a stand-in for Gemma 4's tokenizer: the embedded model's Gemma 3
tokenizer with its unused slots renamed to Gemma 4's markers at Gemma 4's
ids, so that `<|tool_call>`, `<|"|>`, `<turn|>`... are each one special token,
as on a real Gemma 4. vLLM loads it as `Gemma4ForCausalLM`
(`vllm:tiny-gemma4`). Its free text is junk: it exists to run agentkit's
grammar, parsers and token handling through Gemma 4's real code paths, never
to answer anything.

Run it from the shell (the Makefile's `install` does, after the embedded model):

    python -m agentkit.runtimes.vllm.tiny_gemma4            # prepare, print the folder
    python -m agentkit.runtimes.vllm.tiny_gemma4 --check    # exit 1 if not prepared
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentkit.dialects.gemma4 import MARKER_TOKENS
from agentkit.errors import RuntimeUnavailable
from agentkit.runtimes.vllm import embedded
from agentkit.runtimes.vllm.prepared import Preparation, require

__all__ = ["EOS_TOKEN_IDS", "MARKERS", "MODEL_DIRNAME", "is_prepared", "model_dir", "prepare", "save_tokenizer"]

MODEL_DIRNAME = "tiny-gemma4-random"
_SEED = 0

MARKERS: dict[int, str] = {token: marker for marker, token in MARKER_TOKENS.items()}
"""Gemma 4's markers at Gemma 4's ids (Gemma 3 has `<unusedN>`, or its own turn markers, there)."""

EOS_TOKEN_IDS = [1, 106, 50]
"""Gemma 4's stop tokens: `<eos>`, `<turn|>`, `<|tool_response>`."""

# The architecture at toy size. `global_head_dim` must equal `head_dim` (the
# default, 512, sends vLLM down another attention path), no per-layer input
# embeddings, and the last layer must be a full-attention one.
_CONFIG: dict[str, Any] = {
    "vocab_size": 262144,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "global_head_dim": 32,
    "hidden_size_per_layer_input": 0,
    "layer_types": ["sliding_attention", "full_attention"],
    "max_position_embeddings": 8192,
    "eos_token_id": EOS_TOKEN_IDS,
    "bos_token_id": 2,
    "pad_token_id": 0,
}


def model_dir() -> Path:
    """Where the prepared tiny model lives (it may not exist yet), beside the embedded one."""
    return _PREPARATION.model_dir()


def is_prepared(path: Path | None = None) -> bool:
    """Whether `path` (`model_dir()` by default) holds the tiny model as this agentkit prepares it."""
    return _PREPARATION.is_prepared(path)


def save_tokenizer(path: Path) -> None:
    """Write the stand-in Gemma 4 tokenizer's files into `path` (created if needed).

    It is the embedded model's tokenizer (prepared first if it is not) with
    `MARKERS` renamed in place: same vocabulary, same merges, `<bos>` added by
    default, and each marker one special token at its Gemma 4 id.

    Raises:
        RuntimeUnavailable: the embedded model cannot be prepared (see
            `agentkit.runtimes.vllm.embedded.prepare`).
    """
    source = embedded.prepare(quiet=True)
    path.mkdir(parents=True, exist_ok=True)
    data = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = data["model"]["vocab"]
    renamed: set[int] = set()
    for token in data["added_tokens"]:
        if token["id"] in MARKERS and vocab.get(token["content"]) == token["id"]:
            new = MARKERS[token["id"]]
            del vocab[token["content"]]
            vocab[new] = token["id"]
            token["content"], token["special"] = new, True
            renamed.add(token["id"])
    if missing := sorted(set(MARKERS) - renamed):
        raise RuntimeUnavailable(f"the embedded tokenizer has no tokens at ids {missing} to rename")
    # transformers 5 takes `add_bos_token` from tokenizer.json's post-processor
    # (it drops the tokenizer_config.json key when that file exists); write both.
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": "<bos>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "<bos>", "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}},
    }
    (path / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["add_bos_token"] = True
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def prepare(*, force: bool = False, quiet: bool = False) -> Path:
    """Build the tiny model and its tokenizer into the cache, once.

    Returns:
        The prepared model folder.

    Raises:
        RuntimeUnavailable: transformers (with Gemma 4) or the embedded model
            is missing.
    """
    return _PREPARATION.prepare(force=force, quiet=quiet)


def _build(out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    torch, transformers = require(
        "torch",
        "transformers",
        cannot="build the tiny Gemma 4",
        remedy="install agentkit with the cpu or vllm extra, or run `make install` in a checkout",
    )
    if not hasattr(transformers, "Gemma4TextConfig"):
        raise RuntimeUnavailable(
            f"transformers {transformers.__version__} has no Gemma 4: the tiny model needs a newer one"
        )
    torch.manual_seed(_SEED)
    config = transformers.Gemma4TextConfig(**_CONFIG)
    model = transformers.Gemma4ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=2, pad_token_id=0, eos_token_id=list(EOS_TOKEN_IDS)
    )
    model.save_pretrained(out)
    save_tokenizer(out)
    return {"seed": _SEED, "config": _CONFIG}


_PREPARATION = Preparation(dirname=MODEL_DIRNAME, format=1, build=_build)


def main(argv: list[str] | None = None) -> int:
    return _PREPARATION.command(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
