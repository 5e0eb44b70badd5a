"""Runtime selection by URI, the Runtime protocol, and what `import agentkit` loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentkit import Agent, ModelRequest, Runtime, RuntimeUnavailable, UserMessage
from agentkit.errors import UnknownName
from agentkit.runtimes import RUNTIMES, ScriptedRuntime, check_uri, resolve


def test_import_agentkit_stays_light() -> None:
    # OpenTelemetry's API is light and is imported (spans are no-ops until an
    # application sets a provider); its SDK and exporters are not.
    code = (
        "import sys, agentkit, agentkit.runtimes, agentkit.tools, agentkit.tracing;"
        "heavy = sorted({'.'.join(m.split('.')[:2]) for m in sys.modules} & "
        "{'vllm', 'torch', 'transformers', 'xgrammar', 'numpy', 'opentelemetry.sdk', 'opentelemetry.exporter'});"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import agentkit loaded: {out.stdout}"


def test_scripted_uri(tmp_path: Path) -> None:
    script = tmp_path / "s.json"
    script.write_text(json.dumps(["hello"]))
    runtime = resolve(f"scripted:{script}")
    assert isinstance(runtime, ScriptedRuntime)
    assert isinstance(runtime, Runtime)
    assert Agent(runtime=f"scripted:{script}").run("x").output == "hello"


def test_agentkit_runtime_variable_picks_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "s.json"
    script.write_text(json.dumps(["from the environment"]))
    monkeypatch.setenv("AGENTKIT_RUNTIME", f"scripted:{script}")
    assert Agent().run("x").output == "from the environment"


@pytest.mark.parametrize("uri", ["default", "vllm:"])
def test_a_uri_without_scheme_and_value_is_refused(uri: str) -> None:
    for check in (check_uri, resolve):
        with pytest.raises(RuntimeUnavailable, match="must look like SCHEME:VALUE"):
            check(uri)


def test_an_unknown_scheme_names_the_known_ones() -> None:
    for check in (check_uri, resolve):
        with pytest.raises(UnknownName, match=r"unknown runtime scheme 'ftp' in 'ftp:thing'; known: vllm, ") as info:
            check("ftp:thing")
        assert info.value.known == RUNTIMES.names


def test_every_list_of_runtimes_comes_from_the_one_table() -> None:
    import agentkit.runtimes

    assert RUNTIMES.names == agentkit.runtimes.SCHEMES
    built_in = {"vllm", "vllm-server", "openai", "ollama", "lmstudio", "llamacpp", "scripted", "replay"}
    assert built_in <= set(RUNTIMES.names)  # docs/runtimes.md's example adds `echo` for the session
    for scheme in RUNTIMES.names:  # each entry names a function that exists
        assert callable(RUNTIMES.load(scheme)), scheme
    for name in agentkit.runtimes.__all__:
        assert getattr(agentkit.runtimes, name) is not None, name
    lazy = set(agentkit.runtimes._CLASSES.names)
    assert lazy <= set(agentkit.runtimes.__all__), "a lazily exported class is missing from __all__"


def test_a_runtime_added_to_the_table_resolves_by_its_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RUNTIMES, "_entries", dict(RUNTIMES._entries))  # the table as it was, afterwards
    seen: list[tuple[str, str, str]] = []

    def echo(scheme: str, value: str, uri: str) -> ScriptedRuntime:
        seen.append((scheme, value, uri))
        return ScriptedRuntime([value])

    RUNTIMES.add("echo", echo)
    import agentkit.runtimes

    assert "echo" in agentkit.runtimes.SCHEMES
    check_uri("echo:hi:there")
    assert Agent(runtime="echo:hi:there").run("x").output == "hi:there"
    assert seen == [("echo", "hi:there", "echo:hi:there")]


def test_vllm_uris_share_one_engine_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentkit.runtimes.vllm import uris

    monkeypatch.setattr(uris, "_ENGINES", {})  # leave the process-wide cache as it was
    # Building a VLLMEngine does not start it: no model is loaded here.
    assert resolve("vllm:default") is resolve("vllm:default")
    assert resolve("vllm:default") is not resolve("vllm:gemma-4-e2b")


def test_a_missing_vllm_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentkit.runtimes.vllm import VLLMEngine

    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    engine = VLLMEngine("default")
    with pytest.raises(RuntimeUnavailable, match=r"agentkit\[cpu\].*agentkit\[vllm\]"):
        engine.start()
    request = ModelRequest(messages=[UserMessage(text="x")])
    import asyncio

    with pytest.raises(RuntimeUnavailable, match="vLLM is not installed"):
        asyncio.run(engine.generate(request))


def test_presets_name_the_gemma_4_models() -> None:
    from agentkit.runtimes.vllm import PRESETS, VLLMEngine

    assert PRESETS["gemma-4-26b-a4b"].model == "google/gemma-4-26B-A4B-it"
    assert PRESETS["gemma-4-31b"].model == "google/gemma-4-31B-it"
    assert {"gemma-4-e2b", "gemma-4-e4b", "default"} <= set(PRESETS)
    engine = VLLMEngine("gemma-4-e4b")
    assert engine.info.model == "google/gemma-4-E4B-it"
    assert engine.info.uri == "vllm:gemma-4-e4b"
    assert engine.info.constrained
    assert engine.engine_args["limit_mm_per_prompt"] == {"image": 0, "audio": 0, "video": 0}


def test_each_preset_names_its_gemma_4_template_family() -> None:
    from agentkit.dialects.gemma4 import Gemma4Dialect
    from agentkit.runtimes.vllm import PRESETS, VLLMEngine

    assert {name: preset.family for name, preset in PRESETS.items()} == {
        "default": "big",
        "gemma-4-e2b": "small",
        "gemma-4-e4b": "small",
        "gemma-4-12b": "big",
        "gemma-4-26b-a4b": "big",
        "gemma-4-31b": "big",
        "tiny-gemma4": "big",
    }
    assert PRESETS["gemma-4-12b"].model == "google/gemma-4-12B-it"
    for name in ("gemma-4-e2b", "gemma-4-12b", "default"):
        dialect = VLLMEngine(name).dialect
        assert isinstance(dialect, Gemma4Dialect)
        assert dialect.family == PRESETS[name].family
    # The family is the gemma4 dialect's option only; an explicit option wins.
    assert PRESETS["gemma-4-e4b"].options("gemma4") == {"family": "small", "marker_tokens": True}
    assert PRESETS["gemma-4-e4b"].options("json") == {"turns": "gemma4"}
    assert PRESETS["default"].options("gemma4")["examples"] == 2


def test_the_tiny_gemma4_preset_is_a_cpu_test_model() -> None:
    from agentkit.dialects.gemma4 import Gemma4Dialect
    from agentkit.runtimes.vllm import PRESETS, VLLMEngine, served_model_name

    engine = VLLMEngine("vllm:tiny-gemma4")
    assert engine.info.model == "tiny-gemma4 (random weights)"
    assert engine.info.uri == "vllm:tiny-gemma4"
    assert engine.info.context_length == 2048
    assert engine.engine_args["enforce_eager"]
    assert isinstance(engine.dialect, Gemma4Dialect)
    assert engine.dialect.examples == 0  # random weights: examples teach it nothing
    assert engine.dialect.family == "big"
    assert "TEST model" in PRESETS["tiny-gemma4"].description
    assert served_model_name(PRESETS["tiny-gemma4"]) == "agentkit-tiny-gemma4"


def test_a_local_model_resolves_to_its_prepared_folder() -> None:
    from agentkit.runtimes.vllm import local_model_path, tiny_gemma4

    assert local_model_path("tiny-gemma4") == tiny_gemma4.prepare(quiet=True)
    assert local_model_path("google/gemma-4-12B-it") is None


def test_model_request_checks_tool_choice() -> None:
    with pytest.raises(ValueError, match="neither auto"):
        ModelRequest(messages=[], tool_choice="nope")
    with pytest.raises(ValueError, match="at least one tool"):
        ModelRequest(messages=[], tool_choice="required")


def test_a_closed_engine_refuses_to_start_again() -> None:
    from agentkit.runtimes.vllm import VLLMEngine

    engine = VLLMEngine("default")
    engine.close()
    with pytest.raises(RuntimeUnavailable, match="was closed"):
        engine.start()


def test_registering_a_dialect_keeps_the_built_in_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentkit.dialect import DIALECTS, get_dialect, register_dialect
    from agentkit.dialects.json_action import JsonDialect

    monkeypatch.setattr(DIALECTS, "_entries", dict(DIALECTS._entries))  # the table as it was, afterwards
    register_dialect("json-copy", JsonDialect)
    assert get_dialect("json").name == "json"
    assert isinstance(get_dialect("json-copy", examples=1), JsonDialect)
    with pytest.raises(UnknownName, match="unknown dialect 'nope'"):
        get_dialect("nope")


def test_the_gemma4_dialect_is_built_in() -> None:
    from agentkit.dialect import get_dialect
    from agentkit.dialects.gemma4 import Gemma4Dialect

    dialect = get_dialect("gemma4", thinking=True)
    assert isinstance(dialect, Gemma4Dialect)
    assert dialect.name == "gemma4"
