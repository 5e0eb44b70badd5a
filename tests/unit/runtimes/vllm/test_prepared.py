"""Preparing a model into the cache: once, one process at a time, never half."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentkit import RuntimeUnavailable
from agentkit.runtimes.vllm.prepared import MARKER, Preparation, cache_dir, require


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENTKIT_CACHE", str(tmp_path))
    return tmp_path


class Recipe:
    """A build that writes one file and counts how often it ran."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, folder: Path, say: Callable[[str], None]) -> dict[str, Any]:
        self.runs += 1
        say("writing weights")
        (folder / "weights.txt").write_text(f"run {self.runs}")
        return {"seed": 7}


def test_a_model_is_built_once_into_the_cache(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = Recipe()
    model = Preparation(dirname="toy", format=2, build=recipe)
    assert cache_dir() == cache
    assert not model.is_prepared()
    folder = model.prepare()
    assert folder == model.model_dir() == cache / "toy"
    assert (folder / "weights.txt").read_text() == "run 1"
    assert json.loads((folder / MARKER).read_text()) == {"format": 2, "seed": 7}
    assert model.is_prepared()
    assert model.prepare() == folder
    assert recipe.runs == 1
    said = capsys.readouterr().err
    assert "[agentkit] writing weights" in said
    assert f"[agentkit] prepared {folder} in " in said
    # Nothing is left beside it but the lock.
    assert sorted(p.name for p in cache.iterdir()) == [".toy.lock", "toy"]


def test_force_or_a_new_format_builds_again(capsys: pytest.CaptureFixture[str]) -> None:
    recipe = Recipe()
    Preparation(dirname="toy", format=1, build=recipe).prepare(quiet=True)
    folder = Preparation(dirname="toy", format=2, build=recipe).prepare(quiet=True)
    assert (folder / "weights.txt").read_text() == "run 2"
    Preparation(dirname="toy", format=2, build=recipe).prepare(force=True, quiet=True)
    assert recipe.runs == 3
    assert capsys.readouterr().err == ""


def test_a_failed_build_leaves_no_half_model(cache: Path) -> None:
    def broken(folder: Path, say: Callable[[str], None]) -> dict[str, Any]:
        (folder / "weights.txt").write_text("half")
        raise RuntimeUnavailable("cannot build: nothing installed")

    model = Preparation(dirname="toy", format=1, build=broken)
    with pytest.raises(RuntimeUnavailable, match="nothing installed"):
        model.prepare(quiet=True)
    assert not model.model_dir().exists()
    assert sorted(p.name for p in cache.iterdir()) == [".toy.lock"]


def test_require_names_the_missing_module_and_the_remedy(monkeypatch: pytest.MonkeyPatch) -> None:
    (found,) = require("json", cannot="build", remedy="install it")
    assert found is json
    monkeypatch.setitem(sys.modules, "absent_for_the_test", None)  # makes the import raise ImportError
    with pytest.raises(RuntimeUnavailable) as caught:
        require("json", "absent_for_the_test", cannot="build the toy", remedy="pip install it")
    assert str(caught.value) == "cannot build the toy (absent_for_the_test is missing): pip install it"


def test_the_command_checks_prepares_and_prints_the_folder(capsys: pytest.CaptureFixture[str]) -> None:
    model = Preparation(dirname="toy", format=1, build=Recipe())
    module = sys.modules[__name__]
    assert model.command(module, ["--check"]) == 1
    assert capsys.readouterr().out.strip() == f"not prepared: {model.model_dir()}"
    assert model.command(module, []) == 0
    assert model.command(module, ["--check"]) == 0
    assert capsys.readouterr().out.split() == [str(model.model_dir())] * 2
