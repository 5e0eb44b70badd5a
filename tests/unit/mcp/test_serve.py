"""`agentkit mcp serve`, checked with the MCP SDK's own client over stdio and streamable HTTP.

Each server is a real `agentkit mcp serve` process (the agents are in
tests/support/mcp_agents.py) on a scripted runtime, so no model runs; its runs
go to a real SQLite file, which the tests read back. A server starts once per
module and its client session is shared by the tests that use it (`Session`);
each test asks with prompts of its own, since a keyed script plays each
key's turns once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import get_default_environment, stdio_client
from mcp_types import CallToolResult, TextContent
from typer.testing import CliRunner

from agentkit.cli import app
from agentkit.mcp.serve import RUN_ID, WORKFLOW_RUN_ID, AgentTool, mcp_server
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store
from tests.support.mcp_agents import Forecast, Forecaster

ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")

FORECASTER_SCRIPT = {
    "Oslo": [
        {"tool_calls": [{"name": "get_temperature", "arguments": {"city": "Oslo"}}]},
        json.dumps({"city": "Oslo", "temperature": -3, "summary": "Cold and clear."}),
    ],
}
CLERK_SCRIPT = {
    "Hello": ["Hello! Ask me about invoices."],
    "Thanks": ["You are welcome."],
    "Invoice": [{"tool_calls": [{"name": "send_invoice", "arguments": {"customer": "ACME", "amount": 120}}]}],
    "legacy": ["Answered over the older protocol."],
}
WORKFLOW = """\
name: city-report
description: Reports on a city's weather for a reader.
inputs:
  city: {type: string, description: The city.}
  days: {type: integer, default: 1}
  audience: {type: enum, values: [children, engineers], default: engineers}
  tags: {type: list, items: string, default: []}
steps:
  - id: report
    agent:
      instructions: You write weather reports for {{ inputs.audience }}.
    prompt: "Report on {{ inputs.city }} for {{ inputs.days }} days."
output:
  city: "{{ inputs.city }}"
  report: "{{ steps.report.output }}"
"""
WORKFLOW_SCRIPT = {"Report on Oslo": ["Cold and clear, both days."]}


def environment(folder: Path) -> dict[str, str]:
    """What a server process needs: the tests importable, its log file in `folder`."""
    return {"PYTHONPATH": str(ROOT), "AGENTKIT_CACHE": str(folder / "cache")}


def serve_args(target: str, script: dict[str, Any], folder: Path, *flags: str) -> list[str]:
    """`-m agentkit.cli mcp serve TARGET` on a scripted runtime playing `script`, storing into `folder/runs.db`."""
    path = folder / "script.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    return [
        "-m",
        "agentkit.cli",
        "mcp",
        "serve",
        target,
        "--runtime",
        f"scripted:{path}",
        "--db",
        str(folder / "runs.db"),
        *flags,
    ]


class Session:
    """An MCP `Client` session kept open on an event loop in a thread of its own, so a module's tests share
    one server. `run(lambda client: client.call_tool(...))` waits for the call's result.

    Whatever the client could not read as the protocol (a stray line on a stdio server's stdout) is in
    `unreadable`.
    """

    def __init__(self, server: Any, *, mode: str = "auto") -> None:
        self.unreadable: list[Exception] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        opened: concurrent.futures.Future[Client] = concurrent.futures.Future()
        self.held = asyncio.run_coroutine_threadsafe(self._hold(server, mode, opened), self.loop)
        try:
            self.client = opened.result(timeout=30)
        except BaseException:
            self._stop_loop()
            raise

    async def _hold(self, server: Any, mode: str, opened: concurrent.futures.Future[Client]) -> None:
        self.closing = asyncio.Event()
        try:
            async with Client(server, mode=mode, read_timeout_seconds=30, message_handler=self._seen) as client:
                opened.set_result(client)
                await self.closing.wait()
        except BaseException as exc:
            if not opened.done():
                opened.set_exception(exc)
            raise

    async def _seen(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.unreadable.append(message)

    @staticmethod
    async def _cancel_the_rest() -> None:
        rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def run(self, call: Callable[[Client], Awaitable[T]]) -> T:
        async def wrapped() -> T:
            return await call(self.client)

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout=30)

    def close(self) -> None:
        """Close the session (a stdio client stops its server) and the loop."""
        try:
            self.loop.call_soon_threadsafe(self.closing.set)
            self.held.result(timeout=30)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        # A session that never opened, or did not close, is cancelled first: its client still stops its server.
        ending = asyncio.run_coroutine_threadsafe(self._cancel_the_rest(), self.loop)
        concurrent.futures.wait([ending], timeout=15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class Served:
    """A running server: its client session, its run database and its stderr."""

    session: Session
    db: Path
    stderr: Path

    def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        return self.session.run(lambda client: client.call_tool(tool, arguments))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp_serve")


def stdio_server(target: str, script: dict[str, Any], folder: Path) -> Iterator[Served]:
    """`agentkit mcp serve TARGET` started over stdio by the SDK's own client; the client stops it at the end."""
    folder.mkdir()
    parameters = StdioServerParameters(
        command=sys.executable, args=serve_args(target, script, folder), env=environment(folder), cwd=folder
    )
    stderr = folder / "stderr.txt"
    with stderr.open("w") as errlog:
        session = Session(stdio_client(parameters, errlog=errlog))
        try:
            yield Served(session, folder / "runs.db", stderr)
        finally:
            session.close()


@pytest.fixture(scope="module")
def forecaster(folder: Path) -> Iterator[Served]:
    """The Forecaster agent (a Pydantic output type), served over stdio."""
    yield from stdio_server("tests.support.mcp_agents:Forecaster", FORECASTER_SCRIPT, folder / "forecaster")


@pytest.fixture(scope="module")
def city_report(folder: Path) -> Iterator[Served]:
    """The workflow file `city-report`, served over stdio."""
    workflow = folder / "city_report.yaml"
    workflow.write_text(WORKFLOW, encoding="utf-8")
    yield from stdio_server(str(workflow), WORKFLOW_SCRIPT, folder / "city_report")


@pytest.fixture(scope="module")
def clerk(folder: Path) -> Iterator[Served]:
    """The Clerk agent (text answers, a tool that needs approval), served over streamable HTTP on a free port."""
    here = folder / "clerk"
    here.mkdir()
    stderr = here / "stderr.txt"
    with stderr.open("w") as errlog:
        process = subprocess.Popen(
            [
                sys.executable,
                *serve_args("tests.support.mcp_agents:Clerk", CLERK_SCRIPT, here, "--transport", "http", "--port", "0"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
            cwd=here,
            env={**os.environ, **environment(here)},
        )
    try:
        url = listening(process, stderr)
        session = Session(url)
        try:
            yield Served(session, here / "runs.db", stderr)
        finally:
            session.close()
        process.terminate()  # SIGTERM, as a service manager stops it: a clean exit
        assert process.wait(timeout=15) == 0, stderr.read_text()
        assert "stopped serving clerk" in stderr.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def listening(process: subprocess.Popen[bytes], stderr: Path, timeout: float = 30.0) -> str:
    """The URL an HTTP server says it serves at, once it says so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        said = re.search(r"serving \S+ at (http://\S+)", stderr.read_text())
        if said:
            return said[1]
        if process.poll() is not None:
            raise RuntimeError(f"agentkit mcp serve exited with {process.returncode}: {stderr.read_text()}")
        time.sleep(0.05)
    raise RuntimeError(f"agentkit mcp serve did not listen within {timeout:g} s: {stderr.read_text()}")


def text(result: CallToolResult) -> str:
    assert len(result.content) == 1
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


# --- an agent with a typed answer, over stdio ------------------------------------------------


def test_an_agent_is_one_tool_that_takes_a_prompt_and_declares_its_output_type(forecaster: Served) -> None:
    listed = forecaster.session.run(lambda client: client.list_tools())
    assert [tool.name for tool in listed.tools] == ["forecaster"]
    tool = listed.tools[0]
    assert tool.title == "Forecaster"
    assert tool.description == "Forecasts the weather in a city: its temperature and a one-line summary."
    assert tool.input_schema == {
        "type": "object",
        "properties": {"prompt": {"type": "string", "minLength": 1, "description": "What to ask the agent."}},
        "required": ["prompt"],
        "additionalProperties": False,
    }
    assert tool.output_schema is not None
    assert tool.output_schema["type"] == "object"
    assert tool.output_schema["properties"] == {
        "city": {"type": "string"},
        "temperature": {"type": "integer", "description": "Degrees Celsius."},
        "summary": {"type": "string"},
    }
    assert sorted(tool.output_schema["required"]) == ["city", "summary", "temperature"]


def test_a_call_answers_with_the_typed_output_as_structured_content_and_is_stored(forecaster: Served) -> None:
    result = forecaster.call("forecaster", {"prompt": "What is the weather in Oslo?"})
    assert not result.is_error, text(result)
    answer: dict[str, Any] = {"city": "Oslo", "temperature": -3, "summary": "Cold and clear."}
    assert result.structured_content == answer
    assert Forecast.model_validate(result.structured_content) == Forecast(
        city="Oslo", temperature=-3, summary="Cold and clear."
    )
    assert json.loads(text(result)) == answer  # for clients that read only the content
    assert result.meta is not None
    run_id = result.meta[RUN_ID]
    with closing(Store(forecaster.db)) as store:
        record = store.run(run_id)
        assert record.status == "done"
        assert record.agent == "tests.support.mcp_agents:Forecaster"
        assert record.output == answer
        assert [call.name for step in store.load(run_id).steps for call in step.response.message.tool_calls] == [
            "get_temperature"
        ]
    # The module printed when imported and the tool printed when it ran: neither reached the protocol.
    assert forecaster.session.unreadable == []


def test_a_call_of_an_unknown_tool_is_a_protocol_error(forecaster: Served) -> None:
    with pytest.raises(MCPError, match="unknown tool 'weather'"):
        forecaster.call("weather", {"prompt": "Oslo?"})


# --- an agent with a text answer, over streamable HTTP --------------------------------------


def test_a_text_answer_is_wrapped_as_result(clerk: Served) -> None:
    listed = clerk.session.run(lambda client: client.list_tools())
    (tool,) = listed.tools
    assert tool.name == "clerk"
    assert tool.description == "You answer questions about invoices, and send one only when asked to."
    assert tool.output_schema == {
        "type": "object",
        "properties": {"result": {"type": "string"}},
        "required": ["result"],
    }

    result = clerk.call("clerk", {"prompt": "Hello, who are you?"})
    assert not result.is_error, text(result)
    assert result.structured_content == {"result": "Hello! Ask me about invoices."}
    assert json.loads(text(result)) == {"result": "Hello! Ask me about invoices."}
    assert result.meta is not None
    with closing(Store(clerk.db)) as store:
        assert store.run(result.meta[RUN_ID]).output == "Hello! Ask me about invoices."


def test_a_run_that_fails_is_an_error_result_and_the_server_goes_on(clerk: Served) -> None:
    failed = clerk.call("clerk", {"prompt": "What is the weather like?"})  # no script has this prompt: the run fails
    assert failed.is_error
    assert failed.structured_content is None
    assert failed.meta is not None
    run_id = failed.meta[RUN_ID]
    message = text(failed)
    assert message.startswith(f"run {run_id} failed: ")
    assert "none of the keys" in message  # the runtime's own error
    assert f"agentkit runs show {run_id} --db {clerk.db}" in message
    with closing(Store(clerk.db)) as store:
        assert store.run(run_id).status == "failed"

    after = clerk.call("clerk", {"prompt": "Thanks!"})
    assert not after.is_error, text(after)
    assert after.structured_content == {"result": "You are welcome."}


def test_a_run_that_pauses_for_approval_says_how_to_decide(clerk: Served) -> None:
    paused = clerk.call("clerk", {"prompt": "Invoice ACME for 120 euros."})
    assert paused.is_error
    assert paused.meta is not None
    run_id = paused.meta[RUN_ID]
    message = text(paused)
    assert message.startswith(f"run {run_id} paused: it waits for a person to approve send_invoice ")
    assert f"agentkit runs approve {run_id} --runtime scripted:" in message
    assert f"--db {clerk.db}" in message
    assert f"agentkit runs deny {run_id} call_0_0 --reason WHY" in message
    with closing(Store(clerk.db)) as store:
        assert store.run(run_id).status == "awaiting_approval"
        assert [call.id for call in store.load(run_id).awaiting] == ["call_0_0"]


def test_arguments_that_do_not_fit_are_an_error_result_and_start_no_run(clerk: Served) -> None:
    with closing(Store(clerk.db)) as store:
        before = len(store.runs(limit=1000))
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "'prompt' is a required property"),
        ({"prompt": 42}, "['prompt']: 42 is not of type 'string'"),
        ({"prompt": "Hello", "city": "Oslo"}, "Additional properties are not allowed"),
    ]
    for arguments, problem in cases:
        result = clerk.call("clerk", arguments)
        assert result.is_error
        assert text(result).startswith("the arguments do not fit clerk's input schema: ")
        assert problem in text(result)
    with closing(Store(clerk.db)) as store:
        assert len(store.runs(limit=1000)) == before


def test_a_client_on_the_older_protocol_is_answered_too(clerk: Served) -> None:
    # Hosts that speak the initialize handshake (protocol 2025-11-25 and before) get the same tool and answer.
    url = re.search(r"serving \S+ at (http://\S+)", clerk.stderr.read_text())
    assert url is not None
    legacy = Session(url[1], mode="legacy")
    try:
        assert legacy.client.protocol_version == "2025-11-25"
        result = legacy.run(lambda client: client.call_tool("clerk", {"prompt": "Answer over the legacy protocol."}))
    finally:
        legacy.close()
    assert result.structured_content == {"result": "Answered over the older protocol."}


# --- a workflow, over stdio ------------------------------------------------------------------


def test_a_workflow_is_one_tool_that_takes_its_declared_inputs(city_report: Served) -> None:
    (tool,) = city_report.session.run(lambda client: client.list_tools()).tools
    assert tool.name == "city_report"
    assert tool.title == "city-report"
    assert tool.description == "Reports on a city's weather for a reader."
    assert tool.input_schema == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city."},
            "days": {"type": "integer", "default": 1},
            "audience": {"enum": ["children", "engineers"], "default": "engineers"},
            "tags": {"type": "array", "items": {"type": "string"}, "default": []},
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert tool.output_schema is not None
    assert tool.output_schema["required"] == ["result"]


def test_a_workflow_call_answers_with_its_output_and_is_stored(city_report: Served) -> None:
    result = city_report.call("city_report", {"city": "Oslo", "days": 2})
    assert not result.is_error, text(result)
    output = {"city": "Oslo", "report": "Cold and clear, both days."}
    assert result.structured_content == {"result": output}
    assert result.meta is not None
    with closing(Store(city_report.db)) as store:
        record = store.workflow_run(result.meta[WORKFLOW_RUN_ID])
        assert record.status == "done"
        assert record.inputs == {"city": "Oslo", "days": 2, "audience": "engineers", "tags": []}
        assert record.output == output
        (step,) = record.steps
        assert step.run_id is not None
        assert store.run(step.run_id).status == "done"


def test_a_workflow_that_fails_is_an_error_result_naming_its_run(city_report: Served) -> None:
    result = city_report.call("city_report", {"city": "Lima"})  # the script has no report on Lima
    assert result.is_error
    assert result.meta is not None
    run_id = result.meta[WORKFLOW_RUN_ID]
    message = text(result)
    assert message.startswith("workflow 'city-report' failed at step report: ")
    assert f"agentkit workflow show {run_id} --db {city_report.db}" in message
    with closing(Store(city_report.db)) as store:
        assert store.workflow_run(run_id).status == "failed"

    wrong = city_report.call("city_report", {"city": "Oslo", "audience": "poets"})
    assert wrong.is_error
    assert "'poets' is not one of ['children', 'engineers']" in text(wrong)


# --- stdout is the protocol's --------------------------------------------------------------


def test_on_stdio_only_the_protocol_reaches_stdout(tmp_path: Path) -> None:
    """Every line the server writes to stdout, from its start to its exit, is a JSON-RPC message.

    The agents' module prints when it is imported and its tool prints when it
    runs; both must go to stderr (the log file), even what sits in stdout's
    buffer when serving ends.
    """
    process = subprocess.Popen(
        [sys.executable, *serve_args("tests.support.mcp_agents:Forecaster", FORECASTER_SCRIPT, tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
        # As an MCP host starts it (the SDK's own environment: no PYTHONUNBUFFERED), so stdout is block-buffered.
        env=get_default_environment() | environment(tmp_path),
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        for message in [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            },
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "forecaster", "arguments": {"prompt": "Weather in Oslo?"}},
            },
        ]:
            process.stdin.write(json.dumps(message).encode() + b"\n")
            process.stdin.flush()
        lines = [process.stdout.readline(), process.stdout.readline()]  # the two answers
        process.stdin.close()  # the client is done: the server ends
        lines += process.stdout.readlines()
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    messages = [json.loads(line) for line in lines if line.strip()]  # a stray line fails here
    assert [m.get("id") for m in messages] == [1, 2]
    assert messages[1]["result"]["structuredContent"]["city"] == "Oslo"
    assert "looking up Oslo" in (tmp_path / "cache" / "logs" / "agentkit.log").read_text()


# --- refused before serving ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["tests.support.mcp_agents:Nobody"], "error: module tests.support.mcp_agents has no 'Nobody'"),
        (["no_such_module:Agent"], "error: no module 'no_such_module'"),
        (
            ["tests.support.mcp_agents:Forecast"],
            "error: tests.support.mcp_agents:Forecast is a ModelMetaclass, not an Agent subclass",
        ),
        (["missing.yaml"], "missing.yaml:1:1: cannot read the file"),
        (["tests.support.mcp_agents:Clerk", "--name", "the clerk"], "error: 'the clerk' is not a valid MCP tool name"),
        (["tests.support.mcp_agents:Clerk", "--transport", "sse"], "error: unknown transport 'sse'; use stdio or http"),
        (["tests.support.mcp_agents:Clerk", "--runtime", "nonsense:x"], "error: unknown runtime scheme 'nonsense'"),
    ],
)
def test_a_bad_target_or_option_is_an_error_before_anything_is_served(
    args: list[str], error: str, tmp_path: Path
) -> None:
    runner = CliRunner(env={"AGENTKIT_CACHE": str(tmp_path / "cache")})
    result = runner.invoke(app, ["mcp", "serve", *args, "--db", str(tmp_path / "runs.db")], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert error in result.stderr
    assert result.stdout == ""


def test_a_port_in_use_is_an_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        runner = CliRunner(env={"AGENTKIT_CACHE": str(tmp_path / "cache")})
        args = ["tests.support.mcp_agents:Clerk", "--transport", "http", "--port", str(port)]
        result = runner.invoke(app, ["mcp", "serve", *args, "--db", str(tmp_path / "runs.db")], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr


def test_without_the_sdk_the_command_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # `import mcp` now fails, as when it is not installed
    runner = CliRunner(env={"AGENTKIT_CACHE": str(tmp_path / "cache")})
    result = runner.invoke(app, ["mcp", "serve", "tests.support.mcp_agents:Clerk", "--db", str(tmp_path / "runs.db")])
    assert result.exit_code == 1
    assert "error: serving over MCP needs the MCP SDK: pip install 'agentkit[mcp]'" in result.stderr


def test_the_command_line_does_not_import_the_sdk() -> None:
    # `agentkit --help` stays fast: the SDK (and uvicorn, starlette) load only when a server is made.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, agentkit.cli; print(sorted({'mcp', 'uvicorn', 'starlette'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert loaded.stdout.strip() == "[]"


# --- failures, in process ------------------------------------------------------------------


def call_in_process(tool: AgentTool, arguments: dict[str, Any]) -> CallToolResult:
    """One call through the SDK's client, connected in process to the server `agentkit mcp serve` runs."""

    async def call() -> CallToolResult:
        async with tool, Client(mcp_server(tool)) as client:
            return await client.call_tool(tool.name, arguments)

    return asyncio.run(call())


def test_a_spent_budget_is_an_error_result_naming_the_run(tmp_path: Path) -> None:
    lookup = {"tool_calls": [{"name": "get_temperature", "arguments": {"city": "Oslo"}}]}
    agent = Forecaster(runtime=ScriptedRuntime([lookup, lookup]), store=tmp_path / "runs.db", max_steps=1)
    result = call_in_process(AgentTool(agent), {"prompt": "Weather in Oslo?"})
    assert result.is_error
    assert result.meta is not None
    run_id = result.meta[RUN_ID]
    assert text(result).startswith(f"run {run_id} budget_exhausted: the run took 1 model steps without a final answer")
    with closing(Store(tmp_path / "runs.db")) as store:
        assert store.run(run_id).status == "budget_exhausted"


def test_a_runtime_that_cannot_be_made_fails_the_call_not_the_server(tmp_path: Path) -> None:
    agent = Forecaster(runtime=f"scripted:{tmp_path / 'missing.json'}", store=tmp_path / "runs.db")
    result = call_in_process(AgentTool(agent), {"prompt": "Weather in Oslo?"})
    assert result.is_error
    assert text(result).startswith("Forecaster could not run: cannot read script ")
    assert RUN_ID not in (result.meta or {})  # no run started
