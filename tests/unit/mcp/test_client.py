"""MCP servers as toolsets, against a real MCP server (tests/support/mcp_server.py) over stdio and HTTP.

The model is scripted (the loop's logic is not what is tested here); the
server, its subprocess, the SDK's transports and the SQLite store are real.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkit import Agent, AwaitingApproval, ToolResult, ToolsetError, ToolsFinished, tool
from agentkit import mcp as agentkit_mcp
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store

ROOT = Path(__file__).resolve().parents[3]


def server(*flags: str, **options: Any) -> agentkit_mcp.MCPToolset:
    return agentkit_mcp.stdio(sys.executable, "-m", "tests.support.mcp_server", *flags, cwd=ROOT, **options)


def calls(*pairs: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": args} for name, args in pairs]}


def results(result: Any) -> dict[str, ToolResult]:
    return {m.name: m for m in result.messages if isinstance(m, ToolResult)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once it exited.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@tool
def local_weather(city: str) -> str:
    """The agent's own tool.

    Args:
        city: A city.
    """
    return f"sunny in {city}"


# --- tools from a server ------------------------------------------------------------------


def test_a_servers_tools_are_offered_and_called_with_their_results() -> None:
    runtime = ScriptedRuntime(
        [
            calls(
                ("get_weather", {"city": "Paris"}),
                ("notes_search", {"word": "tea"}),
                ("make_tree", {"root": {"label": "a", "children": [{"label": "b", "children": [{"label": "c"}]}]}}),
                ("snapshot", {}),
            ),
            "done",
        ]
    )
    agent = Agent(runtime=runtime, tools=[server(), local_weather])
    result = agent.run("go")

    got = results(result)
    assert got["get_weather"].content == {"city": "Paris", "celsius": 18}  # structured content
    assert got["notes_search"].content == "note 1 mentions tea"  # a dotted name, mapped and back
    assert got["make_tree"].content == "3"  # draft-07 definitions with a recursive $ref
    assert got["snapshot"].content[0] == "the desk"
    assert got["snapshot"].content[1]["type"] == "image"
    assert got["snapshot"].content[1]["mime_type"] == "image/png"
    assert not any(r.is_error for r in got.values())
    offered = {t.name for t in runtime.requests[0].tools}
    assert {"get_weather", "notes_search", "make_tree", "local_weather"} <= offered


def test_flattened_schemas_are_what_the_model_is_offered() -> None:
    runtime = ScriptedRuntime(["ok"])
    Agent(runtime=runtime, tools=[server(include=["make_tree", "notes.search"])]).run("go")
    specs = {t.name: t for t in runtime.requests[0].tools}
    assert set(specs) == {"make_tree", "notes_search"}
    tree = specs["make_tree"].parameters
    assert tree["properties"]["root"] == {"$ref": "#/$defs/node"}
    assert tree["$defs"]["node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/node"}
    assert tree["properties"]["color"] == {"type": "string", "enum": ["red", "green"]}  # inlined
    assert "definitions" not in tree
    assert "$schema" not in specs["notes_search"].parameters


def test_is_error_becomes_an_error_result_the_model_reads() -> None:
    runtime = ScriptedRuntime([calls(("fail", {"reason": "disk full"}), ("get_weather", {"city": "Atlantis"})), "ok"])
    got = results(Agent(runtime=runtime, tools=[server()]).run("go"))
    assert got["fail"].is_error
    assert "failed: disk full" in got["fail"].content
    assert got["get_weather"].is_error
    assert "no weather for Atlantis" in got["get_weather"].content


def test_include_exclude_and_approval_per_server() -> None:
    runtime = ScriptedRuntime(["ok"])
    Agent(runtime=runtime, tools=[server(include=["get_*", "calls"], exclude=["calls"])]).run("go")
    assert [t.name for t in runtime.requests[0].tools] == ["get_weather"]

    with pytest.raises(ToolsetError, match=r"include names no tool it lists: \['nope'\]"):
        Agent(runtime=ScriptedRuntime(["ok"]), tools=[server(include=["nope"])]).run("go")


def test_a_call_needing_approval_pauses_and_resumes_on_a_new_session(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    toolset = server(requires_approval=["get_weather"])
    first = ScriptedRuntime([calls(("get_weather", {"city": "Oslo"}), ("notes_search", {"word": "x"}))])
    with pytest.raises(AwaitingApproval) as paused:
        Agent(runtime=first, tools=[toolset], store=store).run("go")
    run_id = paused.value.run_id
    stored = store.load(run_id)
    assert [r.name for r in stored.steps[0].results] == ["notes_search"]  # ran; the other waits

    agent = Agent(runtime=ScriptedRuntime(["cold"]), tools=[toolset], store=store)
    result = agent.resume(run_id, approvals={next(c.id for c in paused.value.calls): True})
    assert result.output == "cold"
    assert results(result)["get_weather"].content == {"city": "Oslo", "celsius": -3}
    assert store.run(run_id).status == "done"


# --- names --------------------------------------------------------------------------------


def test_names_that_collide_are_prefixed_with_their_servers_name() -> None:
    @tool
    def get_weather(city: str) -> str:
        """Shadows the server's.

        Args:
            city: A city.
        """
        return city

    runtime = ScriptedRuntime([calls(("north_get_weather", {"city": "Oslo"}), ("notes_search", {"word": "w"})), "ok"])
    agent = Agent(
        runtime=runtime,
        tools=[
            get_weather,
            server(name="north", include=["get_weather"]),
            server(name="south", include=["notes.search", "get_weather"]),
        ],
    )
    got = results(agent.run("go"))
    offered = [t.name for t in runtime.requests[0].tools]
    assert offered == ["get_weather", "north_get_weather", "south_get_weather", "notes_search"]
    # notes_search collides with nothing, so it keeps its name; each call reaches its own server's tool.
    assert got["north_get_weather"].content == {"city": "Oslo", "celsius": -3}
    assert got["notes_search"].content == "note 1 mentions w"


def test_two_servers_with_one_name_are_refused_when_the_agent_is_made() -> None:
    with pytest.raises(Exception, match="share the name"):
        Agent(runtime=ScriptedRuntime(["ok"]), tools=[server(), server()])


# --- faults -------------------------------------------------------------------------------


def test_a_server_that_is_not_found_fails_at_start_naming_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    toolset = agentkit_mcp.stdio("no-such-mcp-server-binary", name="ghost")
    with pytest.raises(ToolsetError, match=r"MCP server 'ghost'.*(cannot start|No such file)"):
        Agent(runtime=ScriptedRuntime(["ok"]), tools=[toolset], store=store).run("go")
    assert store.runs() == []  # no run began: nothing half-recorded


def test_a_server_that_never_answers_times_out_at_start() -> None:
    toolset = server("--hang-on-start", connect_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(ToolsetError, match=r"did not start and list its tools within 2 s"):
        Agent(runtime=ScriptedRuntime(["ok"]), tools=[toolset]).run("go")
    assert time.monotonic() - started < 15


def test_a_server_listing_an_invalid_schema_fails_at_start_naming_server_and_tool() -> None:
    with pytest.raises(ToolsetError, match=r"mcp_server: tool 'broken' lists an invalid input schema.*exclude="):
        Agent(runtime=ScriptedRuntime(["ok"]), tools=[server("--invalid-schema")]).run("go")
    # Leaving it out is the way on.
    runtime = ScriptedRuntime(["ok"])
    Agent(runtime=runtime, tools=[server("--invalid-schema", exclude=["broken"])]).run("go")
    assert "broken" not in {t.name for t in runtime.requests[0].tools}


def test_a_server_that_crashes_mid_run_gives_error_results_and_the_store_keeps_everything(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    runtime = ScriptedRuntime(
        [
            calls(("get_weather", {"city": "Lima"})),
            calls(("crash", {})),
            calls(("get_weather", {"city": "Paris"})),
            "the server is gone",
        ]
    )
    result = Agent(runtime=runtime, tools=[server()], store=store).run("go")
    assert result.output == "the server is gone"
    contents = [(r.name, r.is_error, r.content) for s in result.steps for r in s.tool_results]
    assert contents[0] == ("get_weather", False, {"city": "Lima", "celsius": 22})
    assert contents[1][1]
    assert "MCP server 'mcp_server'" in contents[1][2]
    assert contents[2][1]
    assert "MCP server 'mcp_server'" in contents[2][2]
    stored = store.load(result.run_id)
    assert [r.content for s in stored.steps for r in s.results] == [c for _, _, c in contents]


def test_a_call_that_hangs_times_out_and_the_run_goes_on() -> None:
    runtime = ScriptedRuntime([calls(("hang", {})), calls(("get_weather", {"city": "Oslo"})), "ok"])
    result = Agent(runtime=runtime, tools=[server(timeout=1.0)]).run("go")
    first, second = (r for s in result.steps for r in s.tool_results)
    assert first.is_error
    assert "did not finish within 1 s" in first.content
    assert second.content == {"city": "Oslo", "celsius": -3}  # the session survives a timed-out call


# --- lifecycle ----------------------------------------------------------------------------


def test_each_run_has_its_own_session_closed_when_the_run_ends() -> None:
    runtime = ScriptedRuntime([calls(("pid", {})), "one", calls(("pid", {})), "two"])
    agent = Agent(runtime=runtime, tools=[server()])
    pids = [results(agent.run("go"))["pid"].content["pid"] for _ in range(2)]
    assert pids[0] != pids[1]
    assert all(gone(pid) for pid in pids)


def test_async_with_shares_one_session_across_runs_and_closes_it() -> None:
    runtime = ScriptedRuntime([calls(("pid", {})), "one", calls(("pid", {}), ("calls", {})), "two"])

    async def main() -> tuple[int, int, dict[str, int]]:
        async with Agent(runtime=runtime, tools=[server()]) as agent:
            first = results(await agent.arun("go"))["pid"].content["pid"]
            second = results(await agent.arun("go"))
            assert alive(first)
        return first, second["pid"].content["pid"], second["calls"].content

    first, second, counted = asyncio.run(main())
    assert first == second
    assert counted["pid"] == 2
    assert gone(first)


def test_a_cancelled_run_closes_its_session() -> None:
    runtime = ScriptedRuntime([calls(("pid", {})), calls(("hang", {})), "never"])
    pids: list[int] = []

    async def main() -> None:
        agent = Agent(runtime=runtime, tools=[server()])
        async for event in agent.stream("go"):
            if isinstance(event, ToolsFinished):  # the pid call ran; the next turn's call hangs
                pids.append(event.results[0].content["pid"])
                task = asyncio.current_task()
                assert task is not None
                asyncio.get_running_loop().call_later(0.5, task.cancel)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert pids
    assert gone(pids[0])


# --- streamable HTTP ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.mcp_server", "--http", str(port), "--token", "s3cret"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1.0)
                break
            except httpx.HTTPError:
                if process.poll() is not None:
                    raise RuntimeError(process.stderr.read().decode() if process.stderr else "server exited") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


def test_a_server_over_streamable_http_with_headers(http_server: str) -> None:
    runtime = ScriptedRuntime([calls(("get_weather", {"city": "Paris"}), ("notes_search", {"word": "w"})), "ok"])
    toolset = agentkit_mcp.http(http_server, headers={"Authorization": "Bearer s3cret"}, name="remote")
    got = results(Agent(runtime=runtime, tools=[toolset]).run("go"))
    assert got["get_weather"].content == {"city": "Paris", "celsius": 18}
    assert got["notes_search"].content == "note 1 mentions w"


def test_a_server_over_http_that_refuses_us_fails_at_start_naming_it(http_server: str) -> None:
    toolset = agentkit_mcp.http(http_server, name="remote", connect_timeout=10)
    with pytest.raises(ToolsetError, match="MCP server 'remote'"):
        Agent(runtime=ScriptedRuntime(["ok"]), tools=[toolset]).run("go")


def test_an_http_url_must_be_one() -> None:
    with pytest.raises(ValueError, match="not an http"):
        agentkit_mcp.http("ftp://example.com/mcp")


# --- worked examples and order --------------------------------------------------------------


def test_examples_given_per_tool_reach_the_spec_and_are_checked() -> None:
    runtime = ScriptedRuntime(["ok"])
    toolset = server(include=["get_weather"], examples={"get_weather": [{"city": "Lima"}]})
    Agent(runtime=runtime, tools=[toolset]).run("go")
    assert runtime.requests[0].tools[0].examples == ({"city": "Lima"},)

    with pytest.raises(ToolsetError, match=r"the examples given for tool 'get_weather' do not fit"):
        Agent(runtime=ScriptedRuntime(["ok"]), tools=[server(examples={"get_weather": [{"town": "Lima"}]})]).run("go")
    with pytest.raises(ToolsetError, match=r"examples name no tool it lists: \['get_wether'\]"):
        Agent(runtime=ScriptedRuntime(["ok"]), tools=[server(examples={"get_wether": [{"city": "Lima"}]})]).run("go")


def test_a_servers_tools_are_offered_where_it_was_declared() -> None:
    @tool
    def first(x: int) -> int:
        """Declared before the server.

        Args:
            x: A number.
        """
        return x

    runtime = ScriptedRuntime(["ok"])
    Agent(runtime=runtime, tools=[first, server(include=["get_weather", "calls"]), local_weather]).run("go")
    assert [t.name for t in runtime.requests[0].tools] == ["first", "get_weather", "calls", "local_weather"]


def test_a_server_that_dies_at_start_fails_naming_it_with_its_stderr() -> None:
    toolset = agentkit_mcp.stdio(sys.executable, "-c", "import sys; sys.exit('bad config: no TOKEN')", name="dies")
    with pytest.raises(ToolsetError, match=r"MCP server 'dies'.*its stderr ends: bad config: no TOKEN"):
        Agent(runtime=ScriptedRuntime(["ok"]), tools=[toolset]).run("go")
