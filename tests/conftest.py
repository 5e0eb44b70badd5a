"""Shared fixtures. The real vLLM engine starts once per test session."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from agentkit.runtimes.vllm import VLLMEngine
    from agentkit.runtimes.vllm.serve import ServedModel

# Figures the integration tests measure, printed at the end of the session.
FIGURES: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _no_secrets_carried_over() -> Iterator[None]:
    """Secrets are declared process-wide (`agentkit.secrets`): each test starts and ends with none."""
    from agentkit.secrets import forget_all

    forget_all()
    yield
    forget_all()


@pytest.fixture(scope="session")
def engine() -> Iterator[VLLMEngine]:
    """The embedded model on the real vLLM engine (about a minute to start on a CPU)."""
    from agentkit.runtimes.vllm import VLLMEngine

    runtime = VLLMEngine("default")
    # vLLM, torch and transformers warn about their own internals while they
    # import and load; agentkit's tests keep every other warning an error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runtime.start()
    yield runtime
    runtime.close()


# The tiny Gemma 4's engine and server live for their one test module each, not the
# session: the embedded engine and server stay up beside them, and on a 2-core,
# one-NUMA-node machine every engine reserves memory from the same node.
@pytest.fixture(scope="module")
def tiny_engine() -> Iterator[VLLMEngine]:
    """The tiny random-weights Gemma 4 (`vllm:tiny-gemma4`) on the real vLLM engine: Gemma 4's
    architecture and token ids, about a minute to start on a CPU."""
    from agentkit.runtimes.vllm import VLLMEngine

    runtime = VLLMEngine("tiny-gemma4")
    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runtime.start()
    FIGURES["tiny-gemma4 engine start"] = f"{time.monotonic() - started:.0f} s"
    yield runtime
    runtime.close()


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class ServeCommand:
    """`agentkit serve vllm:default` (or another URI) in a subprocess, as a user runs it in a terminal."""

    def __init__(self, port: int, log: Path, uri: str = "vllm:default") -> None:
        self.port, self.log, self.uri = port, log, uri
        self.url = f"http://127.0.0.1:{port}/v1"
        self.process: subprocess.Popen[bytes] | None = None
        self.server_pid: int | None = None

    def start(self, timeout: float = 600.0) -> None:
        command = [
            str(Path(sys.executable).with_name("agentkit")),
            "-v",
            "serve",
            self.uri,
            "--port",
            str(self.port),
        ]
        seen = self.log.stat().st_size if self.log.exists() else 0  # a restart appends to the log
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = re.search(rb"ready \(pid (\d+)\)", self.log.read_bytes()[seen:])
            if ready:
                self.server_pid = int(ready[1])
                return
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"agentkit serve exited with {self.process.returncode}: {self.log.read_text()[-3000:]}"
                )
            time.sleep(1)
        raise RuntimeError(f"agentkit serve was not ready in {timeout:.0f} s: {self.log.read_text()[-3000:]}")

    def ensure_running(self) -> None:
        """Start it again if an earlier test stopped it (the server tests end with Ctrl-C)."""
        if self.process is None or self.process.poll() is not None:
            self.start()

    def kill_server(self) -> None:
        """SIGKILL the server (and a vLLM server's engine), as a crash would; `agentkit serve` then exits."""
        assert self.server_pid is not None
        assert self.process is not None
        os.killpg(self.server_pid, signal.SIGKILL)
        self.process.wait(60)

    def interrupt(self) -> int:
        """Ctrl-C, as in a terminal; returns the command's exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(120)


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeCommand]:
    """A real vLLM OpenAI server for the embedded model, started with `agentkit serve`."""
    command = ServeCommand(free_port(), tmp_path_factory.mktemp("serve") / "serve.log")
    command.start()
    yield command
    if command.process is not None and command.process.poll() is None:
        command.interrupt()


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedModel]:
    """`agentkit serve vllm:tiny-gemma4`'s server (`ServedModel`, which the command runs) on
    loopback: the tiny random-weights Gemma 4 with agentkit's chat template and vLLM's own
    `gemma4` tool parser. About a minute to start on a CPU; its log is in the test's temp dir."""
    from agentkit.runtimes.vllm.serve import ServedModel

    server = ServedModel("tiny-gemma4", port=free_port(), log=tmp_path_factory.mktemp("tiny-serve") / "serve.log")
    started = time.monotonic()
    server.start()
    FIGURES["tiny-gemma4 server start"] = f"{time.monotonic() - started:.0f} s"
    yield server
    server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"engine", "tiny_engine", "served", "tiny_server", "llama", "llama_served"} & set(
            getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.engine)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("agentkit figures")
        for key, value in FIGURES.items():
            terminalreporter.write_line(f"{key}: {value}")
