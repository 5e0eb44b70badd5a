"""The Gemma 4 grammar on a real-size Gemma 4: valid calls and decode speed, on one CUDA GPU.

`benchmarks/gemma4_grammar.py` measures the grammar's cost on the embedded
270M model on a CPU. This measures it where it matters: a model with the
*real* architecture of a Gemma 4 preset (its Hugging Face `config.json`,
below), with random weights, so that nothing is downloaded: the config is
written to a temporary folder beside the stand-in Gemma 4 tokenizer
(`agentkit.runtimes.vllm.tiny_gemma4.save_tokenizer`: every marker one special
token at its Gemma 4 id) and vLLM initialises the weights itself
(`load_format="dummy"`).

One engine, agentkit's own `VLLMEngine` with the preset's `gemma4` dialect,
two arms on it (`VLLMEngine.variant`): decoding under the dialect's
structural tag, and the same prompts free. The 50 prompts over 5 tools of
`tests/integration/native_suite.py`, `tool_choice="required"`, greedy.

    python benchmarks/gemma4_real_size.py --preset gemma-4-26b-a4b
    python benchmarks/gemma4_real_size.py --preset gemma-4-31b --batch 1 32 --requests 64
    python benchmarks/gemma4_real_size.py --preset gemma-4-31b --print-config   # no GPU needed

Random weights never choose to end a string or a turn, so the dialect caps
strings, arrays and calls per turn (its `max_string`, `max_items` and
`parallel_calls=False` options, the ones the embedded model's preset uses):
every constrained reply is then finite, and must be valid, 100%. Free replies
are junk; they are counted, and give the speed to compare with.

Speed, at each `--batch` (requests in flight at once): decode tokens per
second as each stream sees it (tokens after the first over the time from
the first token to the last, summed over requests) and in total (all
completion tokens over the pass's wall time). The free arm is given each
prompt's constrained reply length as `max_tokens`, the arms alternate, and
each figure is the median over `--repetitions`. The result is the ratio
constrained/free, measured in one run. How to run it: docs/gpu.md.

Results go to stdout and to benchmarks/results/gemma4_real_size-PRESET.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "benchmarks/gemma4_real_size.py"
DOCS = "docs/gpu.md"

# --- the architectures ------------------------------------------------------------------
#
# Each preset's text decoder, key for key as the `text_config` of its Hugging
# Face config.json has it. The hub cannot be reached from the machine this was
# written on: the values come from public copies of those files, each checked
# against at least two independent ones (found with a code search, December 2026):
#
# - gemma-4-e2b: https://huggingface.co/google/gemma-4-E2B-it/blob/main/config.json
#   as mirrored in the configs of several Gemma 4 ports (Swift/MLX, Rust and Python
#   test fixtures "mirroring the real checkpoint") and in Raschka's Gemma 4
#   notebook config; the layer pattern is 4 sliding : 1 full (the others 5 : 1).
# - gemma-4-e4b: https://huggingface.co/google/gemma-4-E4B-it/blob/main/config.json
#   as mirrored in the same kind of fixtures and in an EXPECTED_ARCHITECTURE
#   check pinned to revision a4c2d58b of google/gemma-4-E4B-it.
# - gemma-4-12b: https://huggingface.co/google/gemma-4-12B-it/blob/main/config.json
#   The whole config.json of google/gemma-4-12B (revision 56820d7d), printed in
#   a public agent transcript, agrees with a Rust port's fixture. The 12B's
#   model_type is `gemma4_unified` (an encoder-free multimodal wrapper), but its
#   text decoder is the same: vLLM's Gemma4UnifiedForConditionalGeneration
#   wraps Gemma4ForCausalLM, and its `gemma4_unified_text` keys are Gemma4TextConfig's.
# - gemma-4-26b-a4b: https://huggingface.co/google/gemma-4-26B-A4B-it/blob/main/config.json
#   as mirrored in six independent fixtures (MLX, Go, Rust, Swift, Python).
#   One of them gives max_position_embeddings 131072; five others, and a survey
#   that opened the file on 2026-08-19, give 262144 (kept).
# - gemma-4-31b: https://huggingface.co/google/gemma-4-31B-it/blob/main/config.json
#   as mirrored in five independent fixtures, one with every key of its text_config.
#
# A cross-check: built by transformers on the meta device, these configs have
# the model cards' sizes: 25.2B parameters with 3.8B active per token (26B-A4B),
# 30.7B (31B), 11.9B (12B; 11.95B with its media embedders), and for the text
# alone 7.5B (E4B) and 4.6B (E2B), which the cards' 8B and 5.1B include.
#
# Left out on purpose: `use_bidirectional_attention: "vision"` (the big models'
# files have it; it concerns image tokens only, and this model is text-only),
# and the vision/audio configs. Nothing below is a guess; a key that no source
# gave is absent and takes Gemma4TextConfig's default.

_COMMON: dict[str, Any] = {
    "vocab_size": 262144,
    "vocab_size_per_layer_input": 262144,
    "head_dim": 256,  # sliding-window layers
    "global_head_dim": 512,  # full-attention layers
    "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-6,
    "final_logit_softcapping": 30.0,
    "attention_bias": False,
    "tie_word_embeddings": True,
    "rope_parameters": {
        "full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0, "rope_type": "proportional"},
        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
    },
}

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "gemma-4-e2b": {
        "hidden_size": 1536,
        "intermediate_size": 6144,
        "num_hidden_layers": 35,
        "num_attention_heads": 8,
        "num_key_value_heads": 1,
        "attention_k_eq_v": False,
        "sliding_window": 512,
        "hidden_size_per_layer_input": 256,  # per-layer embeddings (the "E" in E2B)
        "num_kv_shared_layers": 20,
        "use_double_wide_mlp": True,
        "enable_moe_block": False,
        "max_position_embeddings": 131072,
    },
    "gemma-4-e4b": {
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "num_hidden_layers": 42,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "attention_k_eq_v": False,
        "sliding_window": 512,
        "hidden_size_per_layer_input": 256,
        "num_kv_shared_layers": 18,
        "use_double_wide_mlp": False,
        "enable_moe_block": False,
        "max_position_embeddings": 131072,
    },
    "gemma-4-12b": {
        "hidden_size": 3840,
        "intermediate_size": 15360,
        "num_hidden_layers": 48,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "num_global_key_value_heads": 1,
        "attention_k_eq_v": True,  # full-attention layers: keys are the values
        "sliding_window": 1024,
        "hidden_size_per_layer_input": 0,
        "num_kv_shared_layers": 0,
        "use_double_wide_mlp": False,
        "enable_moe_block": False,
        "max_position_embeddings": 262144,
    },
    "gemma-4-26b-a4b": {
        "hidden_size": 2816,
        "intermediate_size": 2112,  # the dense MLP beside the experts in every layer
        "num_hidden_layers": 30,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "num_global_key_value_heads": 2,
        "attention_k_eq_v": True,
        "sliding_window": 1024,
        "hidden_size_per_layer_input": 0,
        "num_kv_shared_layers": 0,
        "use_double_wide_mlp": False,
        "enable_moe_block": True,
        "num_experts": 128,
        "top_k_experts": 8,
        "moe_intermediate_size": 704,
        "max_position_embeddings": 262144,
    },
    "gemma-4-31b": {
        "hidden_size": 5376,
        "intermediate_size": 21504,
        "num_hidden_layers": 60,
        "num_attention_heads": 32,
        "num_key_value_heads": 16,
        "num_global_key_value_heads": 4,
        "attention_k_eq_v": True,
        "sliding_window": 1024,
        "hidden_size_per_layer_input": 0,
        "num_kv_shared_layers": 0,
        "use_double_wide_mlp": False,
        "enable_moe_block": False,
        "max_position_embeddings": 262144,
    },
}

FULL_ATTENTION_EVERY = {"gemma-4-e2b": 5}
"""Every Nth layer is a full-attention one (6 unless listed), the last always."""
EOS_TOKEN_IDS = [1, 106, 50]
"""`<eos>`, `<turn|>`, `<|tool_response>`: the instruction-tuned models' generation_config.json."""

# Random weights never end a string, an array or a turn of their own accord:
# the caps the embedded model's preset uses keep every constrained reply finite.
CAPS: dict[str, Any] = {"max_string": 60, "max_items": 4, "parallel_calls": False}
GOAL_VALID = 1.0
"""Every constrained reply valid: the grammar's guarantee."""


def model_config(preset: str) -> dict[str, Any]:
    """The config.json of `preset`'s text model, as vLLM's `Gemma4ForCausalLM` reads it."""
    arch = ARCHITECTURES[preset]
    layers, every = arch["num_hidden_layers"], FULL_ATTENTION_EVERY.get(preset, 6)
    layer_types = ["full_attention" if (i + 1) % every == 0 else "sliding_attention" for i in range(layers)]
    layer_types[-1] = "full_attention"
    return {
        "architectures": ["Gemma4ForCausalLM"],
        "model_type": "gemma4_text",
        **_COMMON,
        **arch,
        "layer_types": layer_types,
        "bos_token_id": 2,
        "eos_token_id": EOS_TOKEN_IDS,
        "pad_token_id": 0,
        "dtype": "bfloat16",
    }


def write_model(folder: Path, config: Mapping[str, Any]) -> None:
    """A model folder vLLM loads with random weights: config, generation config, tokenizer."""
    from agentkit.runtimes.vllm.tiny_gemma4 import save_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    generation = {"bos_token_id": 2, "eos_token_id": EOS_TOKEN_IDS, "pad_token_id": 0}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    save_tokenizer(folder)


def cuda_problem() -> str | None:
    """Why this machine cannot run the benchmark, or None. Imports torch, not vLLM: seconds."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    return None


# --- the measurement --------------------------------------------------------------------


def dialect_options(preset: str) -> dict[str, Any]:
    """The preset's `gemma4` options (its template family, markers by token id), with the caps random weights need."""
    from agentkit.runtimes.vllm import PRESETS

    return {**PRESETS[preset].options("gemma4"), **CAPS}


def engine_args(preset: str, extra: Mapping[str, Any], batches: Sequence[int]) -> dict[str, Any]:
    """The preset's engine arguments, random weights, a context the short prompts need, then `extra`."""
    from agentkit.runtimes.vllm import PRESETS

    known = PRESETS.get(preset)
    args = dict(known.engine_args) if known else {}
    args.pop("limit_mm_per_prompt", None)  # for the multimodal checkpoint; this model is text-only
    args["max_model_len"] = min(args.get("max_model_len", 8192), 8192)
    args["max_num_seqs"] = max(args.get("max_num_seqs", 0), *batches)
    return {**args, "load_format": "dummy", "seed": 0, **extra}


def judge(responses: Sequence[Any], *, strict: bool) -> dict[str, int]:
    """Counts of valid replies and calls: a reply parses (strictly, for the constrained
    arm: the product's own parser), holds a call, and every call names an offered tool
    with arguments valid under its JSON Schema."""
    import jsonschema

    from agentkit.dialects.gemma4 import parse_turn
    from agentkit.errors import ModelOutputError
    from tests.integration.native_suite import TOOLS

    validators = {t.spec.name: jsonschema.Draft202012Validator(t.spec.parameters) for t in TOOLS}
    counts = dict.fromkeys(["replies", "valid_replies", "calls", "valid_calls", "unparsable", "no_call"], 0)
    for response in responses:
        counts["replies"] += 1
        try:
            message = parse_turn(response.raw_text, strict=strict)
        except ModelOutputError:
            counts["unparsable"] += 1
            continue
        if not message.tool_calls:
            counts["no_call"] += 1
            continue
        valid = [c.name in validators and validators[c.name].is_valid(c.arguments) for c in message.tool_calls]
        counts["calls"] += len(valid)
        counts["valid_calls"] += sum(valid)
        counts["valid_replies"] += all(valid)
    return counts


async def in_flight(runtime: Any, batch: Sequence[Any], width: int) -> tuple[list[Any], float]:
    """Every request, `width` at a time; the replies and the wall time."""
    from gemma4_grammar import ask

    gate = asyncio.Semaphore(width)

    async def one(request: Any) -> Any:
        async with gate:
            return await ask(runtime, request)

    started = time.monotonic()
    replies = list(await asyncio.gather(*(one(request) for request in batch)))
    return replies, time.monotonic() - started


def measure(
    model_dir: Path,
    preset: str,
    *,
    batches: Sequence[int],
    requests: int,
    max_tokens: int,
    repetitions: int,
    extra_engine_args: Mapping[str, Any],
) -> dict[str, Any]:
    # The shared tool suite under tests/, and the CPU benchmark's helpers beside this file.
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    from gemma4_grammar import RawText, aggregate_rate

    from agentkit import ModelRequest, Sampling, SystemMessage, UserMessage
    from agentkit.dialect import get_dialect
    from agentkit.runtimes.vllm import VLLMEngine
    from tests.integration.native_suite import PROMPTS, TOOLS

    options = dialect_options(preset)
    args = engine_args(preset, extra_engine_args, batches)
    engine = VLLMEngine(str(model_dir), dialect=get_dialect("gemma4", **options), engine_args=args)
    started = time.monotonic()
    engine.start()
    ready = time.monotonic() - started
    try:
        dialect = RawText(engine.dialect)  # both arms render alike; the benchmark reads every reply itself
        arms = {
            "constrained": engine.variant(dialect=dialect, constrained=True),
            "free": engine.variant(dialect=dialect, constrained=False),
        }
        specs = [t.spec for t in TOOLS]
        batch = [
            ModelRequest(
                messages=[SystemMessage(text="Use the tools."), UserMessage(text=PROMPTS[i % len(PROMPTS)])],
                tools=specs,
                tool_choice="required",
                sampling=Sampling(max_tokens=max_tokens, temperature=0.0),
            )
            for i in range(requests)
        ]
        widest = max(batches)
        # A first pass per arm, all in flight: warms the grammar and prefix caches,
        # and gives each prompt's constrained length for the free arm's max_tokens.
        replies = {name: asyncio.run(in_flight(arm, batch, widest))[0] for name, arm in arms.items()}
        lengths = [max(r.usage.completion_tokens, 2) for r in replies["constrained"]]
        timed = {
            "constrained": batch,
            "free": [
                replace(r, sampling=replace(r.sampling, max_tokens=n)) for r, n in zip(batch, lengths, strict=True)
            ],
        }
        per_stream: dict[tuple[int, str], list[float]] = {}
        total: dict[tuple[int, str], list[float]] = {}
        for width in batches:
            for repetition in range(repetitions):
                for name in list(arms) if repetition % 2 == 0 else list(arms)[::-1]:
                    responses, wall = asyncio.run(in_flight(arms[name], timed[name], width))
                    replies[name] += responses
                    per_stream.setdefault((width, name), []).append(aggregate_rate(responses))
                    tokens = sum(r.usage.completion_tokens for r in responses)
                    total.setdefault((width, name), []).append(tokens / wall if wall else 0.0)
        report: dict[str, Any] = {"engine_ready_s": round(ready, 1), "validity": {}, "speed": {}}
        for name in arms:
            counts = judge(replies[name], strict=name == "constrained")
            report["validity"][name] = {
                **counts,
                "valid_reply_rate": counts["valid_replies"] / counts["replies"],
                "example_reply": replies[name][0].raw_text[:300],
            }
        for width in batches:
            row: dict[str, Any] = {}
            for name in arms:
                row[name] = {
                    "decode_tokens_per_s_per_stream": statistics.median(per_stream[width, name]),
                    "decode_tokens_per_s_total": statistics.median(total[width, name]),
                    "samples_per_stream": per_stream[width, name],
                    "samples_total": total[width, name],
                }
            for measure_name in ("per_stream", "total"):
                key = f"decode_tokens_per_s_{measure_name}"
                free = row["free"][key]
                row[f"ratio_{measure_name}"] = row["constrained"][key] / free if free else None
            report["speed"][str(width)] = row
        report["goals"] = {"constrained_all_valid": report["validity"]["constrained"]["valid_reply_rate"] >= GOAL_VALID}
        report["setup"] = {
            "preset": preset,
            "dialect_options": options,
            "engine_args": args,
            "batches": list(batches),
            "requests": requests,
            "max_tokens": max_tokens,
            "repetitions": repetitions,
            "tools": len(TOOLS),
        }
        return report
    finally:
        engine.close()


def machine() -> dict[str, Any]:
    import torch

    versions = {}
    for name in ("vllm", "xgrammar", "torch", "transformers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        **versions,
    }


def show(report: Mapping[str, Any]) -> None:
    setup = report["setup"]
    print(f"{setup['preset']}: real config, random weights; engine ready in {report['engine_ready_s']:.0f} s")
    for name, v in report["validity"].items():
        print(
            f"{name:>11}: {v['valid_replies']}/{v['replies']} replies valid ({v['valid_calls']}/{v['calls']} calls; "
            f"{v['unparsable']} unparsable, {v['no_call']} without a call)"
        )
    print(f"{'batch':>5}  {'arm':<11}  {'tok/s per stream':>16}  {'tok/s total':>11}")
    for width, row in report["speed"].items():
        for name in ("constrained", "free"):
            arm = row[name]
            print(
                f"{width:>5}  {name:<11}  {arm['decode_tokens_per_s_per_stream']:>16.1f}  "
                f"{arm['decode_tokens_per_s_total']:>11.1f}"
            )
        ratios = [f"{row[f'ratio_{m}']:.2f}" if row[f"ratio_{m}"] is not None else "-" for m in ("per_stream", "total")]
        print(f"{width:>5}  {'ratio':<11}  {ratios[0]:>16}  {ratios[1]:>11}")
    print("goals:", ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in report["goals"].items()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", required=True, choices=list(ARCHITECTURES))
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="requests in flight (default 1 32)")
    parser.add_argument("--requests", type=int, default=64, help="requests per pass (default 64)")
    parser.add_argument("--max-tokens", type=int, default=512, help="per constrained reply (default 512)")
    parser.add_argument("--repetitions", type=int, default=3, help="alternating passes per arm (default 3)")
    parser.add_argument("--engine-args", type=json.loads, default={}, help="more vLLM engine arguments, a JSON object")
    parser.add_argument("--output", type=Path, help="default: benchmarks/results/gemma4_real_size-PRESET.json")
    parser.add_argument("--print-config", action="store_true", help="print the config.json it would use, and exit")
    args = parser.parse_args(argv)
    if min(args.batch) < 1 or args.requests < max(args.batch):
        parser.error(f"--batch must be at least 1 and at most --requests ({args.requests})")
    if not isinstance(args.engine_args, dict):
        parser.error("--engine-args must be a JSON object")

    config = model_config(args.preset)
    if args.print_config:
        print(json.dumps(config, indent=2))
        return 0
    if problem := cuda_problem():
        print(f"{SCRIPT} needs a CUDA GPU ({problem}); see {DOCS}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix=f"agentkit-{args.preset}-") as tmp:
        folder = Path(tmp) / args.preset
        write_model(folder, config)
        report = measure(
            folder,
            args.preset,
            batches=args.batch,
            requests=args.requests,
            max_tokens=args.max_tokens,
            repetitions=args.repetitions,
            extra_engine_args=args.engine_args,
        )
    report["config"] = config
    report["machine"] = machine()
    show(report)
    output = args.output or ROOT / "benchmarks" / "results" / f"gemma4_real_size-{args.preset}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    # A missed speed ratio is a finding to report; an invalid constrained reply breaks the guarantee.
    return 0 if report["goals"]["constrained_all_valid"] else 1


if __name__ == "__main__":  # vLLM starts its engine core in a subprocess: keep this guard
    sys.exit(main())
