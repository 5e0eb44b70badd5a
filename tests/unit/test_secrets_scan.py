"""Planted keys never leave a run in clear: every byte it wrote is scanned for them.

One run, in a process of its own (OpenTelemetry's provider can be set once
per process), takes every path a secret has into a run:

- the runtime's API key (`api_key=`), which the model server (a real HTTP
  server on loopback) also echoes back in an error that is retried;
- a `SecretStr` argument the model gives a tool, which the tool receives
  whole (it writes the key's digest to a file: the test compares);
- a value the user declares with `agentkit.secret`, in the prompt, in a tool
  result, in a tool's exception (logged with its traceback) and in the answer;
- an MCP server's `Authorization` header (a real MCP server over HTTP).

It runs with tracing on (content opted in) and sent with the real OTLP HTTP
exporter, gzipped, to a receiver here that keeps every request body, and with
agentkit's log file at DEBUG. Then `agentkit runs show` and `runs export` read
the store. Scanned: the database file and its write-ahead log (copied while
the store was open, and as they are at the end), every OTLP payload, the log
files, the export and the commands' output.

The same run with masking switched off finds the keys in each of these
places: so the scan can fail, and every place was reached.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.support.scripted_server import ScriptedServer

pytest.importorskip("mcp")

ROOT = Path(__file__).resolve().parents[2]

RUN = textwrap.dedent(
    """
    import hashlib, logging, os, shutil
    from pathlib import Path

    import agentkit.secrets
    if os.environ.get("SCAN_UNMASKED"):  # the control run: secrets are declared, and masked in no form
        agentkit.secrets._forms = lambda value: set()

    import pydantic
    import agentkit, agentkit.tracing
    from agentkit import Agent, mcp, tool
    from agentkit.logs import quiet_logs
    from agentkit.runtimes import OpenAICompatible
    from agentkit.runtimes._http import RetryPolicy
    from agentkit.store import Store

    env = os.environ
    logs = quiet_logs(Path(env["SCAN_LOG"]), announce=False, level=logging.DEBUG)
    agentkit.tracing.configure("otlp")
    mine = agentkit.secret(env["SCAN_USER_SECRET"])

    @tool
    def use_key(key: pydantic.SecretStr, account: str) -> str:
        '''Use the account's key.'''
        Path(env["SCAN_RECEIVED"]).write_text(hashlib.sha256(key.get_secret_value().encode()).hexdigest())
        return f"account {account} is open"

    @tool
    def audit(note: str) -> str:
        '''Audit the account.'''
        raise RuntimeError(f"the audit refused {note}")

    runtime = OpenAICompatible(
        env["SCAN_URL"], model="m", api_key=env["SCAN_API_KEY"], retry=RetryPolicy(backoff=0.01, max_backoff=0.02)
    )
    remote = mcp.http(env["SCAN_MCP"], headers={"Authorization": "Bearer " + env["SCAN_MCP_TOKEN"]}, name="remote")
    store = Store(env["SCAN_DB"])
    result = Agent(runtime=runtime, tools=[use_key, audit, remote], store=store).run(f"Open my account {mine}.")
    for name in ("runs.db", "runs.db-wal"):  # as they are while the store is open
        if (Path(env["SCAN_DB"]).parent / name).exists():
            shutil.copy(Path(env["SCAN_DB"]).parent / name, Path(env["SCAN_SNAPSHOT"]) / name)
    store.close()
    print(result.run_id)
    print(result.output == f"Opened {mine}.")
    agentkit.tracing.shutdown()
    logs.close()
    """
)


@dataclass
class Keys:
    api: str = field(default_factory=lambda: "sk-planted-" + uuid.uuid4().hex)
    tool: str = field(default_factory=lambda: "sk-tool-" + uuid.uuid4().hex)
    user: str = field(default_factory=lambda: "acct-" + uuid.uuid4().hex)
    mcp: str = field(default_factory=lambda: "mcp-token-" + uuid.uuid4().hex)

    def named(self) -> dict[str, str]:
        return {"api": self.api, "tool": self.tool, "user": self.user, "mcp": self.mcp}

    def found_in(self, data: bytes) -> set[str]:
        """The keys `data` holds, whole or their random part alone (a full-text index splits words)."""
        return {name for name, key in self.named().items() if key.encode() in data or key[-32:].encode() in data}


class Receiver:
    """An OTLP/HTTP receiver that keeps every request body, gunzipped when sent gzipped."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        kept = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                kept.append(gzip.decompress(body) if self.headers.get("content-encoding") == "gzip" else body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mcp_token() -> str:
    return "mcp-token-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def mcp_server(mcp_token: str) -> Iterator[str]:
    """The test MCP server over streamable HTTP, refusing requests without `Bearer TOKEN`."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.mcp_server", "--http", str(port), "--token", mcp_token],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1.0)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the MCP test server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def model_turns(keys: Keys) -> list[Any]:
    """What the model server answers: an overload naming the API key, then two turns of calls, then the answer."""

    def turn(message: dict[str, Any]) -> Any:
        body = {"choices": [{"message": message, "finish_reason": "stop"}], "usage": {}}
        return (200, {}, body)

    def call(index: int, name: str, arguments: str) -> dict[str, Any]:
        return {"id": f"call_{index}", "type": "function", "function": {"name": name, "arguments": arguments}}

    first = [
        call(0, "use_key", f'{{"key": "{keys.tool}", "account": "{keys.user}"}}'),
        call(1, "get_weather", '{"city": "Paris"}'),
    ]
    return [
        (503, {}, {"error": {"message": f"the key {keys.api} is over its quota, try again"}}),
        turn({"role": "assistant", "content": None, "tool_calls": first}),
        turn({"role": "assistant", "content": None, "tool_calls": [call(2, "audit", f'{{"note": "{keys.user}"}}')]}),
        turn({"role": "assistant", "content": f"Opened {keys.user}."}),
    ]


@dataclass
class Scanned:
    """Every output of one run, by where it came from; `found` the keys in each."""

    outputs: dict[str, bytes]
    received: str
    run_printed: list[str]

    def found(self, keys: Keys) -> dict[str, set[str]]:
        return {where: found for where, data in self.outputs.items() if (found := keys.found_in(data))}


def run_and_collect(tmp_path: Path, keys: Keys, mcp_url: str, *, masked: bool) -> Scanned:
    db, snapshot, log = tmp_path / "runs.db", tmp_path / "snapshot", tmp_path / "run.log"
    snapshot.mkdir()
    with ScriptedServer() as model, Receiver() as receiver:
        model.replies = model_turns(keys)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AGENTKIT_CACHE": str(tmp_path / "cache"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
            "SCAN_URL": model.base + "/v1",
            "SCAN_API_KEY": keys.api,
            "SCAN_USER_SECRET": keys.user,
            "SCAN_MCP": mcp_url,
            "SCAN_MCP_TOKEN": keys.mcp,
            "SCAN_DB": str(db),
            "SCAN_SNAPSHOT": str(snapshot),
            "SCAN_LOG": str(log),
            "SCAN_RECEIVED": str(tmp_path / "received.txt"),
        }
        env.pop("AGENTKIT_API_KEY", None)
        if not masked:
            env["SCAN_UNMASKED"] = "1"
        ran = subprocess.run(
            [sys.executable, "-c", RUN], cwd=tmp_path, env=env, capture_output=True, timeout=300, check=False
        )
        assert ran.returncode == 0, ran.stderr.decode() + (log.read_text() if log.exists() else "")
        otlp = b"".join(receiver.bodies)
    run_id, answered = ran.stdout.decode().split()
    outputs = {
        "run's stdout": ran.stdout,
        "run's stderr": ran.stderr,
        "log file": log.read_bytes(),
        "OTLP payloads": otlp,
        **{f"{name} while open": (snapshot / name).read_bytes() for name in ("runs.db", "runs.db-wal")},
    }
    outputs.update(read_with_the_cli(tmp_path, db, run_id))
    for name in ("runs.db", "runs.db-wal"):
        if (tmp_path / name).exists():
            outputs[f"{name} at the end"] = (tmp_path / name).read_bytes()
    for path in (tmp_path / "cache").rglob("*.log"):
        outputs[f"CLI log {path.name}"] = path.read_bytes()
    received = (tmp_path / "received.txt").read_text()
    return Scanned(outputs=outputs, received=received, run_printed=[run_id, answered])


def read_with_the_cli(tmp_path: Path, db: Path, run_id: str) -> dict[str, bytes]:
    """`agentkit runs show` and `runs export` (to stdout and to a file) on the run, in this process."""
    from agentkit.cli import app

    runner = CliRunner(env={"COLUMNS": "200", "AGENTKIT_CACHE": str(tmp_path / "cache")})
    outputs: dict[str, bytes] = {}
    exported = tmp_path / "export.jsonl"
    for args in (["runs", "show", run_id], ["runs", "export", run_id], ["runs", "export", run_id, "-o", str(exported)]):
        result = runner.invoke(app, [*args, "--db", str(db)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        outputs[" ".join(args[:2]) + (" -o" if "-o" in args else "")] = result.stdout_bytes + result.stderr_bytes
    outputs["exported file"] = exported.read_bytes()
    return outputs


@pytest.fixture
def keys(mcp_token: str) -> Keys:
    return Keys(mcp=mcp_token)


def test_no_planted_key_is_written_anywhere_and_the_tool_received_its_key(
    tmp_path: Path, keys: Keys, mcp_server: str
) -> None:
    scanned = run_and_collect(tmp_path, keys, mcp_server, masked=True)
    assert scanned.run_printed[1] == "True"  # the run answered, with the real value in its answer
    assert scanned.received == hashlib.sha256(keys.tool.encode()).hexdigest()  # the tool got the real key
    assert scanned.found(keys) == {}
    # The places were reached: each holds the mask where a key would have been.
    reached = ("log file", "OTLP payloads", "runs.db-wal while open", "runs.db at the end", "exported file")
    for where in reached:
        assert b"[secret]" in scanned.outputs[where], where
    assert b"execute_tool get_weather" in scanned.outputs["OTLP payloads"]  # the MCP server's tool ran


def test_without_masking_the_same_scan_finds_the_keys(tmp_path: Path, keys: Keys, mcp_server: str) -> None:
    scanned = run_and_collect(tmp_path, keys, mcp_server, masked=False)
    found = scanned.found(keys)
    assert scanned.received == hashlib.sha256(keys.tool.encode()).hexdigest()
    for where in ("log file", "OTLP payloads", "runs.db-wal while open", "exported file", "runs show", "runs export"):
        assert found.get(where), (where, found)
    assert {"api", "tool", "user"} <= set().union(*found.values()), found
