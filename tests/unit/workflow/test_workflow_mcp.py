"""Workflows with MCP servers: declared once under `mcp_servers`, used by steps as `mcp:NAME` and `mcp:NAME/TOOL`.

The server is the real test server (tests/support/mcp_server.py, a subprocess
over stdio) and the store a real SQLite file; the model is scripted, as in
the other workflow tests. Each test that starts the server costs about a
second (its interpreter importing the SDK), so those are few and do a lot.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from agentkit.cli import app
from agentkit.errors import ToolsetError, WorkflowFailed, WorkflowSpecError
from agentkit.messages import ToolResult
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store
from agentkit.workflow import Workflow
from agentkit.workflow.servers import toolsets
from agentkit.workflow.source import format_path

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "workflows"

SERVER = f"""
mcp_servers:
  test:
    command: [{sys.executable}, -m, tests.support.mcp_server]
    cwd: {ROOT}
    exclude: [hang, crash]
"""
"""The test server, as a workflow declares it (the file's `{server}`)."""


def write(folder: Path, text: str) -> Path:
    """`text` (dedented, from line 1, `{server}` standing for SERVER) as `flow.yaml` in `folder`."""
    path = folder / "flow.yaml"
    text = textwrap.dedent(text).lstrip("\n").replace("{server}", SERVER.strip())
    path.write_text(text, encoding="utf-8")
    return path


def refused(folder: Path, text: str) -> WorkflowSpecError:
    with pytest.raises(WorkflowSpecError) as caught:
        Workflow.load(write(folder, text))
    return caught.value


def calls(*pairs: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": args} for name, args in pairs]}


def cli(*args: str, cache: Path) -> Result:
    """`agentkit ARGS`, its library logs kept under `cache`."""
    runner = CliRunner(env={"COLUMNS": "200", "AGENTKIT_CACHE": str(cache)})
    return runner.invoke(app, list(args), catch_exceptions=False)


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process `pid` has exited (a zombie counts as exited), waiting up to `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat")
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if not stat.exists() or stat.read_text().split()[2] == "Z":
            return True
        time.sleep(0.05)
    return False


# --- what is refused before anything runs ---------------------------------------------------------

CASES = [
    pytest.param(
        """
        name: both
        mcp_servers:
          notes: {command: [notes-server], url: "http://127.0.0.1:8000/mcp"}
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "3:10 mcp_servers.notes",
        "an MCP server has command (started over stdio) or url (reached over HTTP), not both",
        id="command-and-url",
    ),
    pytest.param(
        """
        name: neither
        mcp_servers:
          notes: {include: [search]}
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "3:10 mcp_servers.notes",
        "an MCP server needs command: [prog, arg, ...] (started over stdio) or url: ... (reached over HTTP)",
        id="neither-command-nor-url",
    ),
    pytest.param(
        """
        name: unknown
        mcp_servers:
          notes:
            command: [notes-server]
            timout: 5
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "5:5 mcp_servers.notes.timout",
        "unknown key 'timout' in a stdio server; did you mean 'timeout'?",
        id="unknown-key",
    ),
    pytest.param(
        """
        name: claude-desktop-style
        mcp_servers:
          notes:
            command: [python]
            args: [notes_server.py]
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "5:5 mcp_servers.notes.args",
        "unknown key 'args' in a stdio server; write the program and its arguments as one list: command: [prog, arg",
        id="args-beside-command",
    ),
    pytest.param(
        """
        name: string-command
        mcp_servers:
          notes:
            command: python notes_server.py
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "4:14 mcp_servers.notes.command",
        "write the program and its arguments as a list: [prog, arg, ...], got 'python notes_server.py'",
        id="command-as-text",
    ),
    pytest.param(
        """
        name: headers-for-stdio
        mcp_servers:
          notes: {command: [notes-server], headers: {X-Key: k}}
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "3:36 mcp_servers.notes.headers",
        "unknown key 'headers' in a stdio server; headers are for servers reached at a url",
        id="headers-on-a-stdio-server",
    ),
    pytest.param(
        """
        name: env-for-http
        mcp_servers:
          notes:
            url: "http://127.0.0.1:8000/mcp"
            env: {TOKEN: x}
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "5:5 mcp_servers.notes.env",
        "unknown key 'env' in an HTTP server; env is for servers started with command",
        id="env-on-an-http-server",
    ),
    pytest.param(
        """
        name: include
        mcp_servers:
          notes: {url: "http://127.0.0.1:8000/mcp", include: search}
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "3:54 mcp_servers.notes.include",
        "input should be a valid list, got 'search'",
        id="include-not-a-list",
    ),
    pytest.param(
        """
        name: approval
        mcp_servers:
          notes: {url: "http://127.0.0.1:8000/mcp", requires_approval: sometimes}
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "3:64 mcp_servers.notes.requires_approval",
        "requires_approval is true, false or a list of tool names, got 'sometimes'",
        id="requires-approval-neither-bool-nor-list",
    ),
    pytest.param(
        """
        name: timeout
        mcp_servers:
          notes: {command: [notes-server], connect_timeout: 0}
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "3:53 mcp_servers.notes.connect_timeout",
        "input should be greater than 0, got 0",
        id="timeout-not-positive",
    ),
    pytest.param(
        """
        name: names
        mcp_servers:
          my-notes: {command: [notes-server]}
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "3:3 mcp_servers.my-notes",
        "'my-notes' is not a valid server name: use letters, digits and _, not starting with a digit",
        id="server-name",
    ),
    pytest.param(
        """
        name: url
        mcp_servers:
          notes: {url: "ftp://example.com/mcp"}
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "3:16 mcp_servers.notes.url",
        "'ftp://example.com/mcp' is not an http(s) URL (the server's endpoint, e.g. http://127.0.0.1:8000/mcp)",
        id="url-not-http",
    ),
    pytest.param(
        """
        name: cwd
        mcp_servers:
          notes: {command: [notes-server], cwd: no_such_dir}
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "3:41 mcp_servers.notes.cwd",
        "no directory {dir}/no_such_dir",
        id="cwd-missing",
    ),
    pytest.param(
        """
        name: variables
        mcp_servers:
          notes:
            command: [notes-server]
            env: {TOKEN: "${NOTES TOKEN}"}
        steps: [{id: a, tool: calculate, arguments: {expression: "1"}}]
        """,
        "5:18 mcp_servers.notes.env.TOKEN",
        "'${NOTES TOKEN}' has a malformed ${...}: write ${VAR} or ${VAR:-default} ($$ for a $)",
        id="malformed-variable",
    ),
    pytest.param(
        """
        name: undeclared
        mcp_servers:
          notes: {command: [notes-server]}
        steps:
          - id: a
            agent: {instructions: Help., tools: [calculate, "mcp:nots"]}
            prompt: Hi.
        """,
        "6:53 steps[0].agent.tools[1]",
        "no MCP server 'nots'; did you mean 'notes'? the workflow declares notes (under mcp_servers)",
        id="undeclared-server-in-an-agent",
    ),
    pytest.param(
        """
        name: undeclared
        steps:
          - id: a
            tool: mcp:notes/search
        """,
        "4:11 steps[0].tool",
        "no MCP server 'notes'; the workflow declares none (under mcp_servers)",
        id="undeclared-server-in-a-tool-step",
    ),
    pytest.param(
        """
        name: malformed
        mcp_servers:
          notes: {command: [notes-server]}
        steps:
          - id: a
            agent: {instructions: Help., tools: ["mcp:notes/"]}
            prompt: Hi.
        """,
        "6:42 steps[0].agent.tools[0]",
        "'mcp:notes/' names no MCP server's tools; write mcp:NAME or mcp:NAME/TOOL",
        id="reference-without-a-tool",
    ),
    pytest.param(
        """
        name: twice
        mcp_servers:
          notes: {command: [notes-server]}
        steps:
          - id: a
            agent: {instructions: Help., tools: ["mcp:notes", "mcp:notes/search"]}
            prompt: Hi.
        """,
        "6:55 steps[0].agent.tools[1]",
        "mcp:notes/search repeats tools of mcp:notes this agent already has; give each once",
        id="server-given-twice-to-an-agent",
    ),
    pytest.param(
        """
        name: one-tool
        mcp_servers:
          notes: {command: [notes-server]}
        steps:
          - id: a
            tool: mcp:notes
        """,
        "6:11 steps[0].tool",
        "a tool step calls one tool: write mcp:notes/TOOL",
        id="tool-step-names-a-whole-server",
    ),
    pytest.param(
        """
        name: excluded
        mcp_servers:
          notes: {command: [notes-server], exclude: ["delete_*"]}
        steps:
          - id: a
            tool: mcp:notes/delete_note
        """,
        "6:11 steps[0].tool",
        "mcp:notes/delete_note is left out by the server's exclude: delete_*",
        id="tool-step-names-an-excluded-tool",
    ),
    pytest.param(
        """
        name: included
        mcp_servers:
          notes: {command: [notes-server], include: [search]}
        steps:
          - id: a
            agent: {instructions: Help., tools: ["mcp:notes/delete"]}
            prompt: Hi.
        """,
        "6:42 steps[0].agent.tools[0]",
        "mcp:notes/delete is left out by the server's include: search",
        id="agent-names-a-tool-include-leaves-out",
    ),
    pytest.param(
        """
        name: approval
        mcp_servers:
          notes: {command: [notes-server], requires_approval: [delete]}
        steps:
          - id: a
            tool: mcp:notes/delete
        """,
        "6:11 steps[0].tool",
        "mcp:notes/delete requires approval (the server's requires_approval) and a tool step has no one to ask",
        id="tool-step-needing-approval",
    ),
]


@pytest.mark.parametrize(("text", "where", "phrase"), CASES)
def test_a_mistake_is_one_line_at_its_place(tmp_path: Path, text: str, where: str, phrase: str) -> None:
    error = refused(tmp_path, text)
    assert len(error.problems) == 1, str(error)
    (problem,) = error.problems
    position, _, path = where.partition(" ")
    line, column = map(int, position.split(":"))
    assert (problem.line, problem.column, format_path(problem.path)) == (line, column, path), str(error)
    assert phrase.replace("{dir}", str(tmp_path)) in problem.message, str(error)


def test_every_mistake_in_the_servers_and_their_uses_is_reported_at_once(tmp_path: Path) -> None:
    error = refused(
        tmp_path,
        """
        name: many
        mcp_servers:
          notes: {command: [notes-server], cwd: nowhere}
          web: {url: "gopher://example.com"}
        steps:
          - id: a
            agent: {instructions: Help., tools: ["mcp:note"]}
            prompt: Hi.
          - id: b
            tool: mcp:web
        """,
    )
    assert [(p.line, format_path(p.path)) for p in error.problems] == [
        (3, "mcp_servers.notes.cwd"),
        (4, "mcp_servers.web.url"),
        (7, "steps[0].agent.tools[0]"),
        (10, "steps[1].tool"),
    ]


# --- ${VAR}: read from the environment when a run starts -------------------------------------------


def test_variables_are_read_when_the_run_starts_and_an_unset_one_stops_it_before_anything_runs(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
        name: secrets
        mcp_servers:
          notes:
            command: ["${NOTES_BIN:-notes-server}", --user, "${NOTES_USER}", --price, "$$5"]
            env: {TOKEN: "Bearer ${NOTES_TOKEN}"}
            cwd: "${NOTES_HOME}"
          web:
            url: "https://${WEB_HOST}/mcp"
            headers: {Authorization: "Bearer ${WEB_TOKEN}"}
        steps:
          - id: a
            tool: mcp:notes/search
            arguments: {word: tea}
        """,
    )
    flow = Workflow.load(path)  # offline: the variables are not read yet
    environ = {"NOTES_USER": "ada", "NOTES_TOKEN": "s3cret", "NOTES_HOME": str(tmp_path), "WEB_HOST": "example.com"}
    source = flow.plan.source
    built = toolsets(source, {"notes": flow.spec.mcp_servers["notes"]}, environ)
    params = built["notes"].target
    assert (params.command, params.args) == ("notes-server", ["--user", "ada", "--price", "$5"])
    assert params.env == {"TOKEN": "Bearer s3cret"}
    assert Path(params.cwd) == tmp_path

    with pytest.raises(ToolsetError) as unset:
        toolsets(source, flow.spec.mcp_servers, environ)
    assert str(unset.value) == (
        f"MCP server 'web': {path}:9:30: mcp_servers.web.headers.Authorization: the environment variable "
        "WEB_TOKEN is not set; set it, or give a default: ${WEB_TOKEN:-default}"
    )

    store = Store(tmp_path / "runs.db")
    with pytest.raises(ToolsetError) as unset:
        flow.run(store=store)  # only the servers steps use are built: web's unset WEB_TOKEN does not matter
    assert str(unset.value).splitlines() == [
        "MCP server 'notes': 3 environment variables are not set",
        f"{path}:4:53: mcp_servers.notes.command[2]: the environment variable NOTES_USER is not set; set it, "
        "or give a default: ${NOTES_USER:-default}",
        f"{path}:5:18: mcp_servers.notes.env.TOKEN: the environment variable NOTES_TOKEN is not set; set it, "
        "or give a default: ${NOTES_TOKEN:-default}",
        f"{path}:6:10: mcp_servers.notes.cwd: the environment variable NOTES_HOME is not set; set it, "
        "or give a default: ${NOTES_HOME:-default}",
    ]
    assert store.workflow_runs() == []  # refused before the workflow run began


# --- runs against the real server ------------------------------------------------------------------


def test_agents_and_tool_steps_share_one_session_that_ends_with_the_run(tmp_path: Path) -> None:
    flow = Workflow.load(
        write(
            tmp_path,
            """
            name: weather
            inputs:
              cities: {type: list, items: string, default: [Oslo, Paris]}
            {server}
            steps:
              - id: forecasts
                foreach: "{{ inputs.cities }}"
                as: city
                steps:
                  - id: forecast
                    agent:
                      instructions: Report the weather.
                      tools: [mcp:test/get_weather, calculate, mcp:test/pid]
                    prompt: "Weather in {{ city }}?"
              - id: server
                tool: mcp:test/pid
              - id: counted
                tool: mcp:test/calls
                needs: [forecasts, server]
            output:
              forecasts: "{{ steps.forecasts.output }}"
              calls: "{{ steps.counted.output }}"
            """,
        )
    )
    runtime = ScriptedRuntime(
        {
            "Oslo": [calls(("get_weather", {"city": "Oslo"}), ("pid", {})), "Cold in Oslo."],
            "Paris": [calls(("get_weather", {"city": "Paris"}), ("pid", {})), "Mild in Paris."],
        }
    )
    store = Store(tmp_path / "runs.db")
    result = flow.run(runtime=runtime, store=store)

    # One server for the whole run: it counted every call, from both agents and the tool step.
    assert result.output == {
        "forecasts": ["Cold in Oslo.", "Mild in Paris."],
        "calls": {"get_weather": 2, "pid": 3, "calls": 1},
    }
    assert sorted(t.name for t in runtime.requests[0].tools) == ["calculate", "get_weather", "pid"]  # the two named
    results: dict[str, dict[str, Any]] = {}
    for run in store.runs(workflow_run=result.workflow_run):
        first = store.load(run.id).steps[0]
        results[run.workflow_step or ""] = {r.name: r.content for r in first.results if isinstance(r, ToolResult)}
    assert results["forecasts[0].forecast"]["get_weather"] == {"city": "Oslo", "celsius": -3}  # the server's answer
    assert results["forecasts[1].forecast"]["get_weather"] == {"city": "Paris", "celsius": 18}
    pid = result.steps["server"]["pid"]
    assert results["forecasts[0].forecast"]["pid"] == results["forecasts[1].forecast"]["pid"] == {"pid": pid}
    assert pid != os.getpid()
    assert gone(pid), "the server outlived the workflow run"


def test_the_server_is_stopped_when_a_step_fails_and_a_missing_one_fails_the_step_naming_it(tmp_path: Path) -> None:
    flow = Workflow.load(
        write(
            tmp_path,
            """
            name: breaks
            {server}
            steps:
              - id: server
                tool: mcp:test/pid
              - id: broken
                tool: mcp:test/no_such_tool
                needs: [server]
            """,
        )
    )
    store = Store(tmp_path / "runs.db")
    with pytest.raises(WorkflowFailed) as failed:
        flow.run(store=store)
    assert str(failed.value) == (
        "workflow 'breaks' failed at step broken: ToolsetError: MCP server 'test': offers no tool 'no_such_tool' "
        "(it offers get_weather, notes.search, make_tree, snapshot, fail, pid, calls, after include and exclude)"
    )
    steps = {s.step: s for s in store.workflow_run(failed.value.workflow_run or "").steps}
    assert gone(steps["server"].output["pid"]), "the server outlived the failed workflow run"

    ghostly = Workflow.load(
        write(
            tmp_path,
            """
            name: ghostly
            {server}
              ghost: {command: [no-such-mcp-server-binary]}
            steps:
              - id: haunt
                agent: {instructions: Help., tools: ["mcp:ghost"]}
                prompt: Boo.
            """,
        )
    )
    with pytest.raises(WorkflowFailed, match=r"failed at step haunt: ToolsetError: MCP server 'ghost': cannot start"):
        ghostly.run(runtime=ScriptedRuntime(["never asked"]))


# --- agentkit workflow validate -----------------------------------------------------------------------


def test_validate_lists_the_servers_without_starting_them_and_connect_lists_their_tools(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: listed
        {server}
            requires_approval: [get_weather]
            timeout: 5
          remote:
            url: "https://${REMOTE_HOST:-example.com}/mcp"
            headers: {Authorization: "Bearer ${REMOTE_TOKEN}"}
            include: ["search_*"]
          ghost: {command: [no-such-mcp-server-binary, --flag]}
        steps:
          - id: ask
            agent: {instructions: Help., tools: ["mcp:test", "mcp:ghost"]}
            prompt: Hi.
          - id: pid
            tool: mcp:test/pid
        """,
    )
    test = f"stdio: {sys.executable} -m tests.support.mcp_server; cwd: {ROOT}; exclude: hang, crash"
    servers = [
        f"  test: {test}; requires approval: get_weather; timeout: 5 s; used by: ask, pid",
        "  remote: http: https://${REMOTE_HOST:-example.com}/mcp; headers: Authorization; include: search_*; "
        "used by: no step",
        "  ghost: stdio: no-such-mcp-server-binary --flag; used by: ask",
    ]
    offline = cli("workflow", "validate", str(path), cache=tmp_path / "cache")
    assert offline.exit_code == 0, offline.output  # the ghost was not started, so it did not fail
    assert offline.stdout.splitlines() == [
        f"{path}: workflow 'listed' is valid: 2 steps, inputs: none",
        "MCP servers (not started; --connect lists their tools):",
        *servers,
    ]
    assert "REMOTE_TOKEN" not in offline.stdout  # header values (secrets) are never shown

    connected = cli("workflow", "validate", str(path), "--connect", cache=tmp_path / "cache")
    assert connected.exit_code == 1
    lines = connected.stdout.splitlines()
    assert lines[1] == "MCP servers (started to list their tools, then stopped):"
    assert lines[2:4] == [servers[0], "    tools: get_weather, notes_search, make_tree, snapshot, fail, pid, calls"]
    assert lines[4] == servers[1]
    assert lines[5].startswith("    not started: ")
    assert "REMOTE_TOKEN is not set" in lines[5]
    assert lines[6] == servers[2]
    assert lines[7].startswith("    not started: cannot start it: ")
    assert connected.stderr.startswith("error: MCP servers remote, ghost could not be started\n")


def test_the_notes_example_runs_with_the_example_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The example starts `python`: the interpreter that has the MCP SDK is this one.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    flow = Workflow.load(EXAMPLES / "notes.yaml")
    runtime = ScriptedRuntime.from_file(EXAMPLES / "scripted" / "notes.json")
    result = flow.run(runtime=runtime, store=Store(tmp_path / "runs.db"))
    assert result.output == {"notes": ["groceries", "travel", "work"], "answer": "Green tea, oat milk and lemons."}
    first, second = runtime.requests
    assert first.messages[0].text.startswith("You answer from the user's notes, titled groceries, travel, work.")  # type: ignore[union-attr]
    assert [t.name for t in first.tools] == ["search_notes"]  # mcp:notes/search_notes: that tool only
    assert first.tools[0].examples == ({"word": "coat"},)  # the server's examples, from the file
    found = second.messages[-1]
    assert isinstance(found, ToolResult)
    assert found.content == {"result": ["groceries: Buy green tea, oat milk and lemons."]}  # the server's answer
