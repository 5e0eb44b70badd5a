"""Fixtures the command-line tests share: a run database, the `agentkit` command on it, scripted runtimes."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from agentkit.cli import app

Cli = Callable[..., Result]
"""`cli("runs", "list")`: the command's result."""

Script = Callable[[list[Any]], str]
"""`script(turns)`: a `scripted:` runtime URI playing `turns`."""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def cli(db: Path) -> Cli:
    """`agentkit ARGS --db DB` with stdin and stdout not terminals (as in a script or CI); an exception the
    command lets through fails the test."""
    # Wide enough that rich wraps no line the tests read; library logs go to the test's own log file.
    runner = CliRunner(env={"COLUMNS": "200", "AGENTKIT_CACHE": str(db.parent / "cache")})

    def invoke(*args: str) -> Result:
        return runner.invoke(app, [*args, "--db", str(db)], catch_exceptions=False)

    return invoke


@pytest.fixture
def on_a_terminal() -> Callable[[list[str], list[str], Path], tuple[int, str]]:
    """`on_a_terminal(ARGS, ANSWERS, CWD)`: the exit code and what the terminal showed."""

    def run(args: list[str], answers: list[str], cwd: Path) -> tuple[int, str]:
        """`python -m agentkit.cli ARGS` with a pseudo-terminal as stdin, stdout and stderr, answering each
        approval question in turn; the exit code and everything the terminal showed. Logs go to `CWD/cache/logs`."""
        controller, terminal = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "agentkit.cli", *args],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(cwd), "AGENTKIT_CACHE": str(cwd / "cache")},
        )
        os.close(terminal)
        shown, left, deadline = b"", list(answers), time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([controller], [], [], 1)
                if not ready:
                    if process.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the process exited: the terminal is gone (EIO)
                    break
                if not chunk:
                    break
                shown += chunk
                if left and shown.rstrip().endswith(b"[y/n/p]"):
                    os.write(controller, left.pop(0).encode() + b"\n")
            code = process.wait(timeout=30)
        finally:
            os.close(controller)
            if process.poll() is None:
                process.kill()
        assert not left, shown
        return code, shown.decode().replace("\r\n", "\n")

    return run


@pytest.fixture
def script(tmp_path: Path) -> Script:
    """Writes `turns` to a new JSON file; returns the `scripted:` runtime URI that plays them."""

    def write(turns: list[Any]) -> str:
        path = tmp_path / f"script_{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(turns), encoding="utf-8")
        return f"scripted:{path}"

    return write
