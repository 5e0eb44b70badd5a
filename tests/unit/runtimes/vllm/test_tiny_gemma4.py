"""The tiny Gemma 4 for tests: its stand-in tokenizer, its prepared folder, its preset.

No engine here: the tokenizer is checked with transformers, the folder by its
files. tests/integration/test_tiny_gemma4.py runs it on the real vLLM engine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from agentkit.runtimes.vllm import embedded, tiny_gemma4
from agentkit.runtimes.vllm.tiny_gemma4 import EOS_TOKEN_IDS, MARKERS


def load(folder: Path) -> Any:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("tokenizer")
    tiny_gemma4.save_tokenizer(folder)
    return load(folder)


@pytest.fixture(scope="module")
def gemma3() -> Any:
    """The embedded model's own tokenizer, which the stand-in is made from."""
    return load(embedded.prepare(quiet=True))


def test_the_markers_sit_at_gemma_4s_ids() -> None:
    assert MARKERS == {
        46: "<|tool>",
        47: "<tool|>",
        48: "<|tool_call>",
        49: "<tool_call|>",
        50: "<|tool_response>",
        51: "<tool_response|>",
        52: '<|"|>',
        98: "<|think|>",
        100: "<|channel>",
        101: "<channel|>",
        105: "<|turn>",
        106: "<turn|>",
    }
    assert EOS_TOKEN_IDS == [1, 106, 50]


@pytest.mark.parametrize(("token_id", "marker"), sorted(MARKERS.items()))
def test_each_marker_is_one_special_token(tokenizer: Any, token_id: int, marker: str) -> None:
    assert tokenizer.encode(marker, add_special_tokens=False) == [token_id]
    assert tokenizer.convert_ids_to_tokens(token_id) == marker
    assert tokenizer.added_tokens_decoder[token_id].special
    # Glued to text, as the format writes it, it is still the one token.
    assert tokenizer.encode(f"x{marker}y", add_special_tokens=False).count(token_id) == 1


def test_a_call_is_tokenised_marker_by_marker_and_decodes_back(tokenizer: Any) -> None:
    call = '<|tool_call>call:f{a:<|"|>x<|"|>}<tool_call|>'
    ids = tokenizer.encode(call, add_special_tokens=False)
    assert ids[0] == 48
    assert ids.count(52) == 2
    assert ids[-1] == 49
    assert tokenizer.decode(ids, skip_special_tokens=False) == call
    # Special tokens: a decoder that skips them loses the format (why agentkit never does).
    assert tokenizer.decode(ids, skip_special_tokens=True) == "call:f{a:x}"


def test_gemma_3s_turn_markers_are_gone(tokenizer: Any, gemma3: Any) -> None:
    assert gemma3.convert_ids_to_tokens([105, 106]) == ["<start_of_turn>", "<end_of_turn>"]
    assert len(tokenizer.encode("<start_of_turn>", add_special_tokens=False)) > 1
    prompt = "<|turn>model\n<|channel>thought\n<channel|>"
    assert tokenizer.encode(prompt, add_special_tokens=False) == [105, 4368, 107, 100, 45518, 107, 101]


def test_ordinary_text_keeps_gemma_3s_ids(tokenizer: Any, gemma3: Any) -> None:
    text = "The weather in Paris: 21 °C, 東京は晴れ.\n  thought call"
    assert tokenizer.encode(text, add_special_tokens=False) == gemma3.encode(text, add_special_tokens=False)
    assert len(tokenizer) == len(gemma3) == 262144


def test_bos_is_added_unless_asked_not_to(tokenizer: Any) -> None:
    plain = tokenizer.encode("hi", add_special_tokens=False)
    assert tokenizer.encode("hi") == [2, *plain]
    assert tokenizer.bos_token_id == 2


def test_the_prepared_folder_is_a_gemma_4_with_gemma_4s_stop_tokens() -> None:
    folder = tiny_gemma4.prepare(quiet=True)
    assert folder == tiny_gemma4.model_dir()
    assert tiny_gemma4.is_prepared()
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Gemma4ForCausalLM"]
    assert config["model_type"] == "gemma4_text"
    assert config["eos_token_id"] == EOS_TOKEN_IDS
    assert config["vocab_size"] == 262144
    assert config["layer_types"][-1] == "full_attention"
    assert config["hidden_size_per_layer_input"] == 0
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == EOS_TOKEN_IDS
    # bf16 weights: the 262k x 64 embedding is most of it.
    assert 30e6 < (folder / "model.safetensors").stat().st_size < 40e6
    assert (folder / "tokenizer.json").is_file()
    # Cached: a second preparation returns at once.
    started = time.monotonic()
    assert tiny_gemma4.prepare(quiet=True) == folder
    assert time.monotonic() - started < 1


def test_a_stale_cache_is_not_taken_for_prepared(tmp_path: Path) -> None:
    assert not tiny_gemma4.is_prepared(tmp_path)
    (tmp_path / "agentkit-prepared.json").write_text(json.dumps({"format": 0}))
    assert not tiny_gemma4.is_prepared(tmp_path)


def test_the_check_command_reports_the_folder(capsys: pytest.CaptureFixture[str]) -> None:
    tiny_gemma4.prepare(quiet=True)
    assert tiny_gemma4.main(["--check"]) == 0
    assert capsys.readouterr().out.strip() == str(tiny_gemma4.model_dir())
