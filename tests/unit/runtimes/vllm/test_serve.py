"""`agentkit serve`'s command line, checked by vLLM's own argument parser.

Starting the server for real is in tests/integration/test_server_runtimes.py.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest

from agentkit.runtimes.vllm import PRESETS, preset_for_model, served_model_name
from agentkit.runtimes.vllm.serve import CHAT_TEMPLATE, engine_flags, serve_command


def vllm_parse(command: list[str]) -> Any:
    """The namespace vLLM's server builds from `command`'s flags (a flag it does not know fails)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
        from vllm.utils.argparse_utils import FlexibleArgumentParser

    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    return make_arg_parser(FlexibleArgumentParser()).parse_args(command[3:])


def test_engine_args_become_flags() -> None:
    flags = engine_flags({"max_model_len": 4096, "enforce_eager": True, "limit_mm_per_prompt": {"image": 0}})
    assert flags == ["--max-model-len", "4096", "--enforce-eager", "--limit-mm-per-prompt", '{"image":0}']


def test_a_gpu_preset_is_served_with_its_engine_args_and_name() -> None:
    command = serve_command("vllm:gemma-4-26b-a4b", port=9000, cpu=False)
    args = vllm_parse(command)
    assert args.model == "google/gemma-4-26B-A4B-it"
    assert args.served_model_name == ["google/gemma-4-26B-A4B-it"]
    assert (args.port, args.host) == (9000, "127.0.0.1")
    assert args.max_model_len == 65536
    assert args.kv_cache_dtype == "fp8"
    assert args.enable_auto_tool_choice
    assert args.tool_call_parser == "gemma4"
    assert args.enable_prompt_tokens_details
    assert args.chat_template is None  # Gemma 4 ships its own
    assert "--gpu-memory-utilization" not in command
    assert json.loads(command[command.index("--limit-mm-per-prompt") + 1]) == {"image": 0, "audio": 0, "video": 0}


def test_the_embedded_model_is_served_on_a_cpu_with_agentkits_template() -> None:
    args = vllm_parse(serve_command("vllm:default", cpu=True))
    assert args.served_model_name == ["agentkit-embedded"]
    assert args.gpu_memory_utilization == 0.3
    assert args.enforce_eager
    assert args.chat_template == str(CHAT_TEMPLATE)
    assert CHAT_TEMPLATE.is_file()


def test_the_tiny_gemma4_is_served_from_its_prepared_folder() -> None:
    from agentkit.runtimes.vllm import tiny_gemma4

    args = vllm_parse(serve_command("vllm:tiny-gemma4", cpu=True))
    assert args.model == str(tiny_gemma4.prepare(quiet=True))
    assert args.served_model_name == ["agentkit-tiny-gemma4"]
    assert args.chat_template == str(CHAT_TEMPLATE)  # the folder ships none
    assert (args.gpu_memory_utilization, args.max_model_len) == (0.05, 2048)
    assert args.tool_call_parser == "gemma4"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_served_name_leads_back_to_its_preset(name: str) -> None:
    assert preset_for_model(served_model_name(PRESETS[name])) is PRESETS[name]


def test_an_unknown_served_model_has_no_preset() -> None:
    assert preset_for_model("some/other-model") is None
