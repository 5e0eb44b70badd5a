"""A model agentkit prepares into its cache once: the steps every such model shares.

A model is a `Preparation`: its folder in the cache, its format number and
how to build it. The build writes the model into the folder it is given; the
preparation does the rest: it returns at once when the cache has the model in
this format, lets one process at a time prepare it, builds in a temporary
folder beside the target and moves the result into place with a marker file,
so an interrupted preparation never leaves a half model.

    def build(folder: Path, say: Callable[[str], None]) -> dict[str, Any]:
        (folder / "config.json").write_text("{}")
        return {"seed": 0}  # recorded in the marker beside the format

    MY_MODEL = Preparation(dirname="my-model", format=1, build=build)
    MY_MODEL.prepare()   # built once, then returned at once: cache_dir() / "my-model"
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from agentkit.errors import RuntimeUnavailable

__all__ = ["MARKER", "Build", "Preparation", "cache_dir", "require"]

MARKER = "agentkit-prepared.json"
"""The file in a prepared folder that records its preparation's format."""

Build = Callable[[Path, Callable[[str], None]], dict[str, Any]]
"""Writes a model into a folder (`say` reports progress); returns what the marker records beside the format."""


def cache_dir() -> Path:
    """`AGENTKIT_CACHE`, else the user cache dir (e.g. `~/.cache/agentkit`)."""
    env = os.environ.get("AGENTKIT_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("agentkit", appauthor=False))


def require(*modules: str, cannot: str, remedy: str) -> tuple[Any, ...]:
    """The `modules` a build needs, imported.

    Raises:
        RuntimeUnavailable: one of them is not installed; the message says
            "cannot CANNOT (MODULE is missing): REMEDY".
    """
    try:
        return tuple(importlib.import_module(module) for module in modules)
    except ImportError as exc:
        raise RuntimeUnavailable(f"cannot {cannot} ({exc.name} is missing): {remedy}") from exc


@dataclass(frozen=True, kw_only=True)
class Preparation:
    """A model agentkit builds into its cache once."""

    dirname: str
    """The model's folder in `cache_dir()`."""
    format: int
    """Bumped when the build changes, so that caches prepared before are rebuilt."""
    build: Build
    """Writes the model into the (empty) folder it is given; raises `RuntimeUnavailable`
    (see `require`) when what it needs is not installed."""

    def model_dir(self) -> Path:
        """Where the prepared model lives (it may not exist yet)."""
        return cache_dir() / self.dirname

    def is_prepared(self, path: Path | None = None) -> bool:
        """Whether `path` (the model's folder by default) holds the model in this format."""
        marker = (path or self.model_dir()) / MARKER
        try:
            return bool(json.loads(marker.read_text()).get("format") == self.format)
        except (OSError, ValueError):
            return False

    def prepare(self, *, force: bool = False, quiet: bool = False) -> Path:
        """Build the model into the cache unless it is there (or `force`); quiet, say nothing.

        Returns:
            The prepared model folder.
        """
        target = self.model_dir()
        if self.is_prepared(target) and not force:
            return target

        def say(message: str) -> None:
            if not quiet:
                print(f"[agentkit] {message}", file=sys.stderr, flush=True)

        started = time.monotonic()
        target.parent.mkdir(parents=True, exist_ok=True)
        # One preparation at a time per cache (two test runs, two agents' processes):
        # the second waits, then finds the model ready.
        with open(target.parent / f".{self.dirname}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_prepared(target) and not force:
                return target
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-") as tmp:
                out = Path(tmp) / self.dirname
                out.mkdir()
                facts = self.build(out, say)
                (out / MARKER).write_text(json.dumps({"format": self.format, **facts}))
                if target.exists():
                    shutil.rmtree(target)
                out.rename(target)
        say(f"prepared {target} in {time.monotonic() - started:.0f} s")
        return target

    def command(self, module: ModuleType, argv: list[str] | None = None) -> int:
        """`python -m MODULE [--check] [--force]`, for the module that holds this
        preparation (its docstring's first paragraph describes it): prints the folder."""
        name = module.__spec__.name if module.__spec__ else module.__name__  # run with -m, its __name__ is __main__
        description = (module.__doc__ or "").split("\n\n")[0]
        parser = argparse.ArgumentParser(prog=f"python -m {name}", description=description)
        parser.add_argument("--check", action="store_true", help="exit 1 unless the model is prepared")
        parser.add_argument("--force", action="store_true", help="prepare again even if cached")
        args = parser.parse_args(argv)
        if args.check:
            ok = self.is_prepared()
            print(self.model_dir() if ok else f"not prepared: {self.model_dir()}")
            return 0 if ok else 1
        print(self.prepare(force=args.force))
        return 0
