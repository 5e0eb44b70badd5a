"""benchmarks/gemma4_real_size.py: it refuses at once without a GPU, and its configs are ones transformers accepts."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "gemma4_real_size.py"


@pytest.fixture(scope="module")
def benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gemma4_real_size", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refuses_without_a_gpu() -> None:
    # No GPU visible, whatever the machine has: the check must fail before vLLM is imported.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--preset", "gemma-4-26b-a4b"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "benchmarks/gemma4_real_size.py needs a CUDA GPU (torch.cuda.is_available() is False)" in done.stderr
    assert "docs/gpu.md" in done.stderr
    assert done.stdout == ""


def printed_config(benchmark: ModuleType, preset: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert benchmark.main(["--preset", preset, "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert isinstance(config, dict)
    return config


def test_the_moe_config_is_gemma4_text(benchmark: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import Gemma4TextConfig

    raw = printed_config(benchmark, "gemma-4-26b-a4b", capsys)
    assert raw["architectures"] == ["Gemma4ForCausalLM"]  # the class vLLM 0.32 registers for gemma4_text
    config = Gemma4TextConfig.from_dict(raw)
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (2816, 30, 262144)
    # vLLM builds the MoE block when num_experts is set; transformers reads enable_moe_block.
    assert config.enable_moe_block
    assert (config.num_experts, config.top_k_experts, config.moe_intermediate_size) == (128, 8, 704)
    assert config.intermediate_size == 2112  # the dense MLP beside the experts
    full = [i for i, kind in enumerate(config.layer_types) if kind == "full_attention"]
    assert full == [5, 11, 17, 23, 29]
    # Full-attention layers: 512-wide heads, 2 KV heads (keys are the values there).
    assert config.attention_k_eq_v
    assert (config.per_layer_config[5].head_dim, config.per_layer_config[5].num_key_value_heads) == (512, 2)
    sliding = config.per_layer_config[0]
    assert (sliding.head_dim, sliding.num_key_value_heads, config.sliding_window) == (256, 8, 1024)
    assert config.hidden_size_per_layer_input == 0
    assert config.eos_token_id == [1, 106, 50]


def test_the_dense_config_is_gemma4_text(benchmark: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import Gemma4TextConfig

    raw = printed_config(benchmark, "gemma-4-31b", capsys)
    assert raw["architectures"] == ["Gemma4ForCausalLM"]
    config = Gemma4TextConfig.from_dict(raw)
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (5376, 21504, 60)
    assert not config.enable_moe_block
    assert (config.num_experts, config.top_k_experts) == (None, None)
    assert config.layer_types.count("full_attention") == 10
    assert config.layer_types[-1] == "full_attention"
    sliding = config.per_layer_config[0]
    assert (config.num_attention_heads, sliding.num_key_value_heads, sliding.head_dim) == (32, 16, 256)
    assert (config.per_layer_config[59].head_dim, config.per_layer_config[59].num_key_value_heads) == (512, 4)
    assert config.final_logit_softcapping == 30.0


def test_every_preset_has_a_config(benchmark: ModuleType) -> None:
    for preset in benchmark.ARCHITECTURES:
        config = benchmark.model_config(preset)
        assert len(config["layer_types"]) == config["num_hidden_layers"], preset
        assert config["layer_types"][-1] == "full_attention", preset
