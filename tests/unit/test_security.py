"""The claims of docs/security.md that no other test checks: what each actor can make agentkit do.

Real parts throughout: workflow files and modules on disk, real subprocesses
(an MCP "server" that only writes down what it was given, `agentkit mcp serve`
over HTTP), real sockets, a real SQLite file. No model server is started:
`agentkit serve`'s command line is read back as tests/unit/cli/test_cli_serve.py does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jinja2
import pytest
from typer.testing import CliRunner

from agentkit import Agent, ToolsetError, WorkflowFailed, tool
from agentkit import mcp as agentkit_mcp
from agentkit.cli import app
from agentkit.messages import ToolResult, UserMessage
from agentkit.runtimes import ScriptedRuntime
from agentkit.runtimes.vllm import presets
from agentkit.runtimes.vllm.serve import ServedModel
from agentkit.store import Store
from agentkit.tool import as_tool
from agentkit.tools import _html, calculate, files
from agentkit.tools._html import html_to_text
from agentkit.workflow import Workflow
from agentkit.workflow.templates import render

ROOT = Path(__file__).resolve().parents[2]


def write_workflow(folder: Path, text: str) -> Path:
    path = folder / "flow.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --- the model, through the standard tools ----------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    ["(10**100)**100", "(((((10**100)**100)**100)**100)**100)", "2 ** ((10**100)**100)"],
)
def test_calculate_refuses_a_power_tower_before_computing_it(expression: str) -> None:
    # Unchecked, the five-level tower asks for a number of 10**10 digits: calculate runs inline,
    # so the event loop (every agent on it) would be held for hours, and the memory filled.
    with pytest.raises(ValueError, match=r"\(10 \*\* 100\) \*\* 100 is too large: about 10025 digits"):
        calculate(expression)


def test_calculate_still_computes_large_powers_within_the_cap() -> None:
    assert calculate("2 ** 100") == 2.0**100
    assert calculate("(2 ** 100) ** 3 / (2 ** 100) ** 2 / 2 ** 90") == 1024.0


@pytest.mark.parametrize(
    ("markup", "parse"),
    [
        ("<!--", "parse_comment"),
        ("<a ", "parse_starttag"),
        ("</", "parse_endtag"),
        ("<?", "parse_pi"),
        ("<!", "parse_html_declaration"),
        ("<![CDATA[", "parse_html_declaration"),
    ],
)
def test_a_page_of_unterminated_markup_is_scanned_once_not_once_per_character(
    markup: str, parse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each of these parses looks for its end to the end of the page. Asked again at every
    # character (as HTMLParser.close() does), 100 KB of "<!--" took half a minute, 1 MB most of an hour,
    # on the event loop, where no time cap can stop it.
    asked: list[int] = []
    original = getattr(_html._Text, parse)

    def counted(self: Any, i: int) -> int:
        asked.append(i)
        result: int = original(self, i)
        return result

    monkeypatch.setattr(_html._Text, parse, counted)
    html_to_text(markup * 20_000)
    assert asked == [0]


def test_a_page_keeps_its_text_and_drops_the_markup_left_open_at_its_end() -> None:
    assert html_to_text("<p>1 < 2 and 3 > 2</p><p>AT&T") == "1 < 2 and 3 > 2\n\nAT&T"
    assert html_to_text("<p>kept</p><!-- never closed <p>hidden</p>") == "kept"
    assert html_to_text("<p>kept</p><script>never closed") == "kept"
    assert html_to_text("<p>kept</p><a href='x") == "kept"


def test_a_hard_link_inside_the_root_to_a_file_outside_is_read_like_any_file(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the root\n")
    root = tmp_path / "root"
    root.mkdir()
    os.link(outside, root / "looks-inside.txt")  # the operating system cannot tell it from any other name
    (read,) = (t for t in files(root) if as_tool(t).name == "read_file")
    assert read("looks-inside.txt").text == "outside the root\n"


def test_write_file_with_requires_approval_writes_nothing_without_a_yes(tmp_path: Path) -> None:
    runtime = ScriptedRuntime(
        [{"tool_calls": [{"name": "write_file", "arguments": {"path": "a.txt", "content": "x"}}]}, "not written"]
    )
    agent: Agent[str] = Agent(runtime=runtime, tools=files(tmp_path, write=True, requires_approval=True))
    result = agent.run("write a.txt")
    (refused,) = (r for s in result.steps for r in s.tool_results)
    assert refused.is_error
    assert "requires approval" in refused.content
    assert not (tmp_path / "a.txt").exists()


def test_a_sync_tool_that_times_out_goes_on_running_in_its_thread() -> None:
    release, finished = threading.Event(), threading.Event()

    @tool(timeout=0.2)
    def slow() -> str:
        """Waits to be released."""
        release.wait(30)
        finished.set()
        return "late"

    runtime = ScriptedRuntime([{"tool_calls": [{"name": "slow", "arguments": {}}]}, "gave up"])
    agent: Agent[str] = Agent(runtime=runtime, tools=[slow])
    result = agent.run("go")
    (timed_out,) = (r for s in result.steps for r in s.tool_results)
    assert timed_out.is_error
    assert "did not finish within 0.2 s" in timed_out.content
    assert not finished.is_set()  # the run is over; the tool is not
    release.set()
    assert finished.wait(30)  # ... and it ran to its end: a thread cannot be stopped


# --- a workflow file ---------------------------------------------------------------------------------


def test_a_workflows_mcp_server_command_runs_as_written_when_a_step_needs_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    program = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('any code at all')"
    path = write_workflow(
        tmp_path,
        f"""
        name: command
        mcp_servers:
          probe:
            command: [{json.dumps(sys.executable)}, -c, {json.dumps(program)}]
            connect_timeout: 20
        steps:
          - id: a
            tool: mcp:probe/anything
        """,
    )
    flow = Workflow.load(path)
    assert not marker.exists()  # loading (what `agentkit workflow validate` does) starts nothing
    with pytest.raises(WorkflowFailed, match="MCP server 'probe'"):  # it speaks no MCP: it only ran
        flow.run(store=Store(tmp_path / "runs.db"))
    assert marker.read_text() == "any code at all"  # no allow-list, no question: it ran


def test_a_module_beside_the_workflow_runs_its_code_when_the_file_is_only_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    name = f"beside_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path

            from agentkit import tool

            Path({str(marker)!r}).write_text("import-time code ran")


            @tool
            def ping() -> str:
                \"\"\"Answers pong.\"\"\"
                return "pong"
            """
        ),
        encoding="utf-8",
    )
    path = write_workflow(
        tmp_path,
        f"""
        name: beside
        steps:
          - id: a
            tool: {name}:ping
        """,
    )
    try:
        Workflow.load(path)
        assert marker.read_text() == "import-time code ran"
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'].system('true') }}",
        "{{ '{0.__class__}'.format(inputs) }}",
        "{{ inputs.names.append('x') }}",
    ],
)
def test_a_template_cannot_reach_python_internals_or_change_values(template: str) -> None:
    context = {"inputs": {"names": ["a"]}}
    with pytest.raises(jinja2.exceptions.SecurityError, match="is unsafe"):
        render(template, context)
    assert context == {"inputs": {"names": ["a"]}}


def test_a_template_cannot_make_a_huge_range() -> None:
    with pytest.raises(jinja2.exceptions.TemplateRuntimeError, match="Range too big"):
        render("{{ range(10**9) | list }}", {})


def test_what_a_model_answers_is_data_in_later_steps_not_a_template(tmp_path: Path) -> None:
    path = write_workflow(
        tmp_path,
        """
        name: echo
        steps:
          - id: a
            agent: {instructions: Answer.}
            prompt: First question.
          - id: b
            agent: {instructions: Check.}
            prompt: "Check this: {{ steps.a.output }}"
        output: "{{ steps.b.output }}"
        """,
    )
    answer = "{{ 6 * 7 }} {% for x in range(3) %}{{ x }}{% endfor %} {{ ''.__class__ }}"
    runtime = ScriptedRuntime({"First question": [answer], "Check this": ["checked"]})
    assert Workflow.load(path).run(runtime=runtime).output == "checked"
    (prompt,) = (m for m in runtime.requests[1].messages if isinstance(m, UserMessage))
    assert prompt.text == f"Check this: {answer}"


# --- an MCP server -----------------------------------------------------------------------------------


def test_a_stdio_mcp_server_gets_a_minimal_environment_and_what_is_declared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTKIT_SECURITY_PROBE_TOKEN", "hunter2-not-for-servers")
    seen = tmp_path / "environment.json"
    program = f"import json, os, pathlib; pathlib.Path({str(seen)!r}).write_text(json.dumps(dict(os.environ)))"
    server = agentkit_mcp.stdio(
        sys.executable, "-c", program, env={"DECLARED": "given"}, name="probe", connect_timeout=20
    )
    with pytest.raises(ToolsetError, match="MCP server 'probe'"):  # it speaks no MCP: it only looks around
        Agent(runtime=ScriptedRuntime(["ok"]), tools=[server]).run("go")
    environment = json.loads(seen.read_text())
    assert environment["DECLARED"] == "given"
    assert "AGENTKIT_SECURITY_PROBE_TOKEN" not in environment
    assert set(environment) - {"DECLARED"} <= {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LC_CTYPE"}


def test_an_mcp_servers_results_are_not_cut_for_the_model() -> None:
    server = agentkit_mcp.stdio(sys.executable, "-m", "tests.support.mcp_server", cwd=ROOT, include=["get_weather"])

    async def offered() -> Any:
        async with server.session() as offers:
            return [offer.build(offer.name) for offer in offers]

    (weather,) = asyncio.run(offered())
    assert weather.options.max_result_chars is None
    assert weather.options.timeout == 60.0


# --- `agentkit serve` and `agentkit mcp serve` -------------------------------------------------------


@pytest.fixture
def served_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`agentkit serve ARGS` as the user types it: the (host, command line) it would start, with no server."""
    started: list[tuple[str, list[str]]] = []

    def start(self: ServedModel) -> None:
        started.append((self.host, self.command()))
        raise KeyboardInterrupt  # as a Ctrl-C while the server starts

    monkeypatch.setattr(ServedModel, "start", start)
    monkeypatch.setattr(presets, "on_cpu", lambda: False)
    runner = CliRunner(env={"AGENTKIT_CACHE": str(tmp_path / "cache")})
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def invoke(*args: str) -> tuple[str, list[str]]:
        started.clear()
        result = runner.invoke(app, ["serve", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        (found,) = started
        return found

    yield invoke
    for sig, handler in handlers.items():  # `serve` sets its own
        signal.signal(sig, handler)


def outward_address() -> str | None:
    """This machine's address on its way out (a UDP connect sends nothing), if it has one that is not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def test_agentkit_serve_listens_on_loopback_only_and_sets_no_api_key(served_hosts: Any) -> None:
    host, command = served_hosts("vllm:gemma-4-31b")
    assert host == "127.0.0.1"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert not any(flag.startswith("--api-key") for flag in command)
    with socket.create_server((host, 0)) as listener:  # where the server would listen
        port = listener.getsockname()[1]
        assert ipaddress.ip_address(listener.getsockname()[0]).is_loopback
        outward = outward_address()
        if outward is not None:  # not reachable from the network, even from this machine's own address
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((outward, port), timeout=10).close()
    host, command = served_hosts("vllm:gemma-4-31b", "--host", "0.0.0.0", "--", "--api-key", "k")
    assert (host, command[command.index("--host") + 1]) == ("0.0.0.0", "0.0.0.0")  # as asked
    assert command[-2:] == ["--api-key", "k"]  # vLLM's own key, passed as given


HEALTHY_SERVER = """
import http.server, json, os, sys
with open(sys.argv[1], "w") as seen:
    json.dump(dict(os.environ), seen)

class Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer((sys.argv[2], int(sys.argv[3])), Healthy).serve_forever()
"""


def test_the_served_model_server_inherits_the_environment_so_vllm_api_key_reaches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tmp_path / "environment.json"

    def command(self: ServedModel) -> list[str]:  # a stand-in that answers /health as vLLM's server does
        return [sys.executable, "-c", HEALTHY_SERVER, str(seen), self.host, str(self.port)]

    monkeypatch.setattr(ServedModel, "command", command)
    monkeypatch.setenv("VLLM_API_KEY", "key-for-vllm")
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with ServedModel("gemma-4-31b", port=port) as server:
        assert server.process is not None
    assert json.loads(seen.read_text())["VLLM_API_KEY"] == "key-for-vllm"


def serve_clerk(folder: Path, *flags: str) -> Iterator[str]:
    """`agentkit mcp serve` of a scripted agent over HTTP on a free port; yields the URL it says it serves at."""
    script = folder / "script.json"
    script.write_text(json.dumps(["Hello."]), encoding="utf-8")
    stderr = folder / "stderr.txt"
    command = [sys.executable, "-m", "agentkit.cli", "mcp", "serve", "tests.support.mcp_agents:Clerk"]
    command += ["--runtime", f"scripted:{script}", "--db", str(folder / "runs.db"), "--transport", "http"]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "AGENTKIT_CACHE": str(folder / "cache")}
    with stderr.open("w") as errlog:
        process = subprocess.Popen(
            [*command, "--port", "0", *flags],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
            cwd=folder,
            env=environment,
        )
    try:
        deadline = time.monotonic() + 60
        while not (said := re.search(r"serving \S+ at (http://\S+)", stderr.read_text())):
            assert process.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.1)
        yield said[1]
    finally:
        process.terminate()
        process.wait(timeout=30)


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}},
}


def initialize(url: str, host: str) -> int:
    """The status of an MCP `initialize` POSTed to `url` with the Host header `host` and no credentials."""
    headers = {"Host": host, "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with httpx.Client(trust_env=False, timeout=30) as client:
        return client.post(url, json=INITIALIZE, headers=headers).status_code


def test_agentkit_mcp_serve_on_loopback_answers_anyone_local_but_refuses_a_foreign_host_header(tmp_path: Path) -> None:
    for url in serve_clerk(tmp_path):
        port = httpx.URL(url).port
        assert url == f"http://127.0.0.1:{port}/mcp"  # loopback unless asked
        assert initialize(url, f"127.0.0.1:{port}") == 200  # no authentication: any local process may call
        assert initialize(url, f"evil.example:{port}") == 421  # a web page's DNS rebinding is refused


def test_agentkit_mcp_serve_on_another_host_checks_no_host_header(tmp_path: Path) -> None:
    try:
        socket.create_server(("127.0.0.2", 0)).close()
    except OSError:
        pytest.skip("this system does not route 127.0.0.2 to loopback")
    for url in serve_clerk(tmp_path, "--host", "127.0.0.2"):
        port = httpx.URL(url).port
        assert initialize(url, f"evil.example:{port}") == 200


# --- whoever can read the files agentkit writes ------------------------------------------------------


def test_the_store_file_gets_the_permissions_the_umask_gives(tmp_path: Path) -> None:
    program = (
        "import os, sys; from agentkit.store import Store; os.umask(0o022); "
        "Store(sys.argv[1]).close(); print(oct(os.stat(sys.argv[1]).st_mode & 0o777))"
    )
    made = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path / "runs.db")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    assert made.stdout.strip() == "0o644"  # readable by every user of the machine: agentkit narrows nothing


def test_tool_results_are_stored_whole_in_clear(tmp_path: Path) -> None:
    @tool
    def lookup() -> str:
        """A private record."""
        return "card 4111 1111 1111 1111"

    store = Store(tmp_path / "runs.db")
    runtime = ScriptedRuntime([{"tool_calls": [{"name": "lookup", "arguments": {}}]}, "done"])
    run_id = Agent(runtime=runtime, tools=[lookup], store=store).run("go").run_id
    store.close()
    (stored,) = (r for s in Store(tmp_path / "runs.db").load(run_id).steps for r in s.results)
    assert isinstance(stored, ToolResult)
    assert stored.content == "card 4111 1111 1111 1111"
    assert b"card 4111 1111 1111 1111" in (tmp_path / "runs.db").read_bytes() + _wal(tmp_path / "runs.db")


def _wal(database: Path) -> bytes:
    wal = database.with_name(database.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""
