"""`agentkit serve`'s server command line for each case, with no engine started.

`ServedModel.start` is replaced by one that records `ServedModel.command()`, the
command line the real `start` runs, and stops as a Ctrl-C would. The flags are
read back with vLLM's and llama-cpp-python's own argument parsers, so a flag
either server does not know fails here. Starting the server for real is in
tests/integration/test_server_runtimes.py.
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from agentkit.cli import app
from agentkit.errors import RuntimeUnavailable
from agentkit.runtimes.vllm import presets
from agentkit.runtimes.vllm.serve import CHAT_TEMPLATE, ServedModel, check_extra_flags

Serve = Callable[..., tuple[Result, list[str] | None]]
"""`serve("vllm:gemma-4-31b", "-tp", "2")`: the command's result, and the server command line it would run."""

_GUIDANCE = '{"backend":"guidance","disable_any_whitespace":true,"disable_additional_properties":true}'

# The command lines `agentkit serve URI` built before the parallel options (bar the model's folder):
# with no new option, they stay exactly these.
_DEFAULT_ON_A_CPU = [
    *("--served-model-name", "agentkit-embedded", "--host", "127.0.0.1", "--port", "8000"),
    *("--gpu-memory-utilization", "0.3", "--enforce-eager", "--dtype", "bfloat16"),
    *("--max-model-len", "4096", "--max-num-seqs", "16", "--structured-outputs-config", _GUIDANCE),
    *("--enable-auto-tool-choice", "--tool-call-parser", "gemma4", "--enable-prompt-tokens-details"),
    *("--chat-template", str(CHAT_TEMPLATE)),
]
_GEMMA_4_31B_ON_A_GPU = [
    *(sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", "google/gemma-4-31B-it"),
    *("--served-model-name", "google/gemma-4-31B-it", "--host", "127.0.0.1", "--port", "8000"),
    *("--max-model-len", "32768", "--kv-cache-dtype", "fp8"),
    *("--limit-mm-per-prompt", '{"image":0,"audio":0,"video":0}'),
    *("--structured-outputs-config", _GUIDANCE),
    *("--enable-auto-tool-choice", "--tool-call-parser", "gemma4", "--enable-prompt-tokens-details"),
]


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def serve(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """`agentkit serve ARGS` on a GPU machine (as vLLM would report it), its server never started."""
    started: list[list[str]] = []

    def start(self: ServedModel) -> None:
        started.append(self.command())
        raise KeyboardInterrupt  # as Ctrl-C while the server starts: `serve` stops it and exits

    monkeypatch.setattr(ServedModel, "start", start)
    monkeypatch.setattr(presets, "on_cpu", lambda: False)
    runner = CliRunner(env={"COLUMNS": "200", "AGENTKIT_CACHE": str(cache)})

    def invoke(*args: str) -> tuple[Result, list[str] | None]:
        started.clear()
        result = runner.invoke(app, ["serve", *args], catch_exceptions=False)
        assert len(started) <= 1
        return result, started[0] if started else None

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield invoke
    for sig, handler in handlers.items():  # `serve` sets its own
        signal.signal(sig, handler)


def vllm_parser() -> argparse.ArgumentParser:
    """vLLM's server argument parser (`python -m vllm.entrypoints.openai.api_server`'s)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
        from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser: argparse.ArgumentParser = make_arg_parser(FlexibleArgumentParser())  # type: ignore[no-untyped-call]
    return parser


def llama_parser() -> argparse.ArgumentParser:
    """llama-cpp-python's server argument parser (`python -m llama_cpp.server`'s)."""
    from llama_cpp.server.cli import add_args_from_model
    from llama_cpp.server.settings import Settings

    parser = argparse.ArgumentParser()
    add_args_from_model(parser, Settings)
    parser.add_argument("--config_file")
    return parser


def vllm_parse(command: list[str]) -> Any:
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    return vllm_parser().parse_args(command[3:])


def without(command: list[str], *flags: str) -> list[str]:
    """`command` less each of `flags` and the value after it."""
    for flag in flags:
        at = command.index(flag)
        command = command[:at] + command[at + 2 :]
    return command


def test_without_new_options_the_default_command_line_is_as_before(
    serve: Serve, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentkit.runtimes.vllm import embedded

    cache.mkdir()
    (cache / embedded.MODEL_DIRNAME).symlink_to(embedded.prepare(quiet=True))  # prepared once, in the test's cache
    monkeypatch.setattr(presets, "on_cpu", lambda: True)

    result, command = serve("vllm:default")

    assert result.exit_code == 0, result.output
    model = str(cache / embedded.MODEL_DIRNAME)
    assert command == [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, *_DEFAULT_ON_A_CPU]


def test_without_new_options_a_gpu_preset_command_line_is_as_before(serve: Serve) -> None:
    result, command = serve("vllm:gemma-4-31b")
    assert result.exit_code == 0, result.output
    assert command == _GEMMA_4_31B_ON_A_GPU


def test_tensor_and_data_parallel_sizes_reach_vllm(serve: Serve) -> None:
    result, command = serve("vllm:gemma-4-31b", "--tensor-parallel-size", "2", "--data-parallel-size", "4")

    assert result.exit_code == 0, result.output
    assert command is not None
    assert command[command.index("--tensor-parallel-size") + 1] == "2"
    assert command[command.index("--data-parallel-size") + 1] == "4"
    assert without(command, "--tensor-parallel-size", "--data-parallel-size") == _GEMMA_4_31B_ON_A_GPU
    args = vllm_parse(command)
    assert (args.tensor_parallel_size, args.data_parallel_size, args.pipeline_parallel_size) == (2, 4, 1)


def test_the_short_forms_are_the_same_options(serve: Serve) -> None:
    _, long = serve("vllm:gemma-4-26b-a4b", "--tensor-parallel-size", "2", "--data-parallel-size", "2")
    _, short = serve("vllm:gemma-4-26b-a4b", "-tp", "2", "-dp", "2")
    assert short == long
    assert short is not None
    assert "--tensor-parallel-size" in short


def test_one_parallel_option_alone_adds_only_its_flag(serve: Serve) -> None:
    _, command = serve("vllm:gemma-4-31b", "-dp", "2")
    assert command is not None
    assert "--tensor-parallel-size" not in command
    assert without(command, "--data-parallel-size") == _GEMMA_4_31B_ON_A_GPU


def test_flags_after_the_double_dash_are_appended_as_given(serve: Serve) -> None:
    extra = ["--pipeline-parallel-size", "2", "--max-model-len", "16384", "--data-parallel-address", "10.0.0.1"]
    result, command = serve("vllm:gemma-4-31b", "-tp", "4", "--", *extra)

    assert result.exit_code == 0, result.output
    assert command is not None
    assert command[-len(extra) :] == extra
    args = vllm_parse(command)
    assert (args.pipeline_parallel_size, args.tensor_parallel_size) == (2, 4)
    assert args.data_parallel_address == "10.0.0.1"
    assert args.max_model_len == 16384  # vLLM keeps the last: a flag here replaces the preset's 32768


@pytest.mark.parametrize(
    ("flags", "refused", "advice"),
    [
        (["--port", "9000"], "--port", "use agentkit serve's own --port"),
        (["--port=9000"], "--port", "use agentkit serve's own --port"),
        (["--host", "0.0.0.0"], "--host", "use agentkit serve's own --host"),
        (["--model", "google/gemma-4-E4B-it"], "--model", "the URI names the model"),
        (["--served_model_name", "x"], "--served_model_name (read as --served-model-name)", "names the model"),
        (["--served", "x"], "--served (read as --served-model-name)", "names the model"),
        (["--chat-template", "mine.jinja"], "--chat-template", "chat mode needs"),
        (["--no-enable-auto-tool-choice"], "--no-enable-auto-tool-choice", "chat mode needs it"),
        (["--max-num-seqs", "8", "--tool-call-parser", "hermes"], "--tool-call-parser", "gemma4 parser"),
        (["-tp", "2"], "-tp", "use agentkit serve's own --tensor-parallel-size (-tp)"),
        (["--data-parallel-size=2"], "--data-parallel-size", "use agentkit serve's own --data-parallel-size (-dp)"),
        (["--api-server-count", "2"], "--api-server-count", "runs one API server, which ignores it"),
        (["--headless"], "--headless", "runs one API server, which ignores it"),
    ],
)
def test_a_flag_agentkit_sets_itself_is_refused(serve: Serve, flags: list[str], refused: str, advice: str) -> None:
    result, command = serve("vllm:gemma-4-31b", "--", *flags)

    assert result.exit_code == 1, result.output
    assert command is None  # refused before any server starts
    assert f"error: server flag {refused}: " in result.stderr
    assert advice in result.stderr


def test_a_model_after_the_double_dash_is_refused(serve: Serve) -> None:
    result, command = serve("vllm:gemma-4-31b", "--", "google/gemma-4-E4B-it")
    assert (result.exit_code, command) == (1, None)
    assert "server flags start with a flag, not 'google/gemma-4-E4B-it' (the URI names the model)" in result.stderr


@pytest.mark.parametrize("option", ["-tp", "--tensor-parallel-size", "-dp", "--data-parallel-size"])
def test_llama_cpp_refuses_the_parallel_options(serve: Serve, tmp_path: Path, option: str) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.touch()
    result, command = serve(f"llama:{gguf}", option, "2")
    assert (result.exit_code, command) == (1, None)
    assert "llama.cpp's server has no tensor or data parallelism: serve a vllm: preset for that" in result.stderr


def test_llama_cpp_takes_flags_after_the_double_dash(serve: Serve, tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.touch()
    result, command = serve(f"llama:{gguf}", "--", "--n_threads", "1", "--n_batch", "64")

    assert result.exit_code == 0, result.output
    assert command is not None
    assert command[-4:] == ["--n_threads", "1", "--n_batch", "64"]
    args = llama_parser().parse_args(command[3:])
    assert (args.n_threads, args.n_batch, args.model) == (1, 64, str(gguf))


@pytest.mark.parametrize(("flag", "refused"), [("--port", "--port"), ("--model_alias", "--model_alias")])
def test_llama_cpp_refuses_a_flag_agentkit_sets(serve: Serve, tmp_path: Path, flag: str, refused: str) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.touch()
    result, command = serve(f"llama:{gguf}", "--", flag, "1")
    assert (result.exit_code, command) == (1, None)
    assert f"error: server flag {refused}: " in result.stderr


def test_servedmodel_builds_the_same_command_line_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presets, "on_cpu", lambda: False)
    server = ServedModel("gemma-4-31b", tensor_parallel_size=2, extra=["--pipeline-parallel-size", "2"])
    command = server.command()
    assert without(command, "--tensor-parallel-size")[:-2] == _GEMMA_4_31B_ON_A_GPU
    assert command[-2:] == ["--pipeline-parallel-size", "2"]
    with pytest.raises(RuntimeUnavailable, match="no tensor or data parallelism"):
        ServedModel("llama:default", data_parallel_size=2)


def _refused(flag: str, *, llama: bool = False) -> bool:
    try:
        check_extra_flags([flag], llama=llama)
    except RuntimeUnavailable:
        return True
    return False


_VLLM_OWN = {
    *("model", "served_model_name", "host", "port", "uds", "tensor_parallel_size", "data_parallel_size"),
    *("chat_template", "enable_auto_tool_choice", "tool_call_parser", "enable_prompt_tokens_details"),
    *("api_server_count", "headless"),
}


def test_the_refused_flags_are_exactly_vllms_spellings_of_the_settings_agentkit_owns() -> None:
    """Every spelling vLLM's parser has for those settings is refused, and no other flag it knows."""
    parser = vllm_parser()
    spellings = {(option, action.dest) for action in parser._actions for option in action.option_strings}
    assert {dest for option, dest in spellings if _refused(option)} == _VLLM_OWN
    assert all(_refused(option) for option, dest in spellings if dest in _VLLM_OWN)


def test_the_refused_llama_flags_are_exactly_the_settings_agentkit_owns() -> None:
    own = {"model", "model_alias", "host", "port"}
    spellings = {(option, action.dest) for action in llama_parser()._actions for option in action.option_strings}
    assert {dest for option, dest in spellings if _refused(option, llama=True)} == own
    assert all(_refused(option, llama=True) for option, dest in spellings if dest in own)
