"""An agent or a workflow served as one MCP tool, over stdio or streamable HTTP (`agentkit mcp serve`).

    tool = AgentTool(WeatherAgent(runtime="vllm:default", store="runs.db"))
    asyncio.run(serve(tool))  # stdio: an MCP host (a desktop assistant, an IDE) starts this process
    asyncio.run(serve(tool, transport="http", port=8000))  # http://127.0.0.1:8000/mcp

    async with mcp.Client(mcp_server(tool)) as client:  # in process, as the tests and docs do
        result = await client.call_tool("weather_agent", {"prompt": "Is it cold in Oslo?"})

The tool (`ServedTool`):

- its name is the agent's name (`WorkflowTool`: the workflow's) in snake_case,
  as a tool name (`weather_agent`); its description the agent class's
  docstring, else its instructions (the workflow's `description`);
- it takes `{"prompt": "..."}` (an agent) or the workflow's declared inputs,
  with their types, defaults and which are required;
- its answer is the call's `structuredContent`, and the same JSON is its text
  content (for clients that read only that): an output type that is a JSON
  object (a Pydantic model) as it is, any other answer (text, a list, a
  workflow's output) as `{"result": ...}`; the tool's `outputSchema` says which;
- the run's id is in the result's `_meta`: `agentkit/run_id` for an agent's
  run (`agentkit runs show ID`), `agentkit/workflow_run_id` for a workflow's
  (`agentkit workflow show ID`), so the answer itself stays the typed value;
- a call that cannot be answered (arguments that do not fit, a run that fails,
  spends its budget or pauses for approval, a runtime that cannot be made) is
  a result with `isError` and a message that says why and what to do; the
  server goes on serving.

One agent (and its runtime) serves every call, concurrently; the runtime is
resolved at the first call and closed when serving ends. Needs the SDK:
`pip install 'agentkit[mcp]'` (imported only when a server is made).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import re
import shlex
import socket
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Literal, Self

import jsonschema
import pydantic
from pydantic.alias_generators import to_snake

from agentkit.agent import Agent
from agentkit.errors import AgentkitError, AwaitingApproval, WorkflowFailed, WorkflowSpecError
from agentkit.mcp import client
from agentkit.runtime import Runtime, close_runtime
from agentkit.schema import strip_titles
from agentkit.toolset import valid_name
from agentkit.workflow.inputs import input_schema

if TYPE_CHECKING:
    import mcp.server
    import mcp.types

    from agentkit.store import Store
    from agentkit.workflow import Workflow

__all__ = [
    "RUN_ID",
    "WORKFLOW_RUN_ID",
    "AgentTool",
    "Outcome",
    "ServedTool",
    "WorkflowTool",
    "mcp_server",
    "require_sdk",
    "serve",
]

log = logging.getLogger("agentkit.mcp.serve")

RUN_ID = "agentkit/run_id"
"""The `_meta` key of an agent's run id in a call's result."""
WORKFLOW_RUN_ID = "agentkit/workflow_run_id"
"""The `_meta` key of a workflow run's id in a call's result."""

_MCP_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
"""What MCP allows in a tool name (SEP-986)."""


def require_sdk() -> None:
    """Raises `ImportError` saying how to install the MCP SDK when it is missing."""
    client.require_sdk("serving over MCP needs")


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one call of the tool gave: the answer, or why there is none."""

    answer: dict[str, Any] | None = None
    """The structured content (None when the call failed)."""
    error: str | None = None
    """Why there is no answer, and what to do about it."""
    meta: Mapping[str, str] = field(default_factory=dict)
    """The run's id, under `RUN_ID` or `WORKFLOW_RUN_ID` (none when no run started)."""


class ServedTool(ABC):
    """One MCP tool: how it is listed, and what a call of it runs (`run`).

    Use it as an async context manager for as long as it serves: leaving
    closes what it opened (the runtime it resolved).

    Args:
        name: The tool's name.
        title: Its name for people.
        description: What it does, for the client's model.
        input_schema: Its arguments (a JSON Schema object); a call's arguments are checked against it.
        output_schema: Its structured answer (a JSON Schema object).
    """

    def __init__(
        self,
        *,
        name: str,
        title: str,
        description: str,
        input_schema: dict[str, Any],
        output_schema: dict[str, Any],
    ) -> None:
        if not _MCP_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid MCP tool name: use 1 to 128 letters, digits, '_', '-' or '.'")
        self.name = name
        self.title = title
        self.description = description
        self.input_schema = input_schema
        self.output_schema = output_schema
        self._arguments = jsonschema.Draft202012Validator(input_schema)

    @abstractmethod
    async def run(self, arguments: dict[str, Any]) -> Outcome:
        """Run on a call's arguments (they fit `input_schema`); a failure is an `Outcome` with an `error`."""

    async def call(self, arguments: Mapping[str, Any]) -> Outcome:
        """Check the arguments, then `run`; whatever happens is an `Outcome` (an error in the code too)."""
        problem = jsonschema.exceptions.best_match(self._arguments.iter_errors(dict(arguments)))
        if problem is not None:
            where = "".join(f"[{p!r}]" for p in problem.absolute_path)
            return Outcome(
                error=f"the arguments do not fit {self.name}'s input schema: {where}{': ' if where else ''}"
                f"{problem.message}"
            )
        try:
            return await self.run(dict(arguments))
        except Exception as exc:  # a bug (here, or in the agent's own code): one call fails, the server goes on
            log.exception("a call of %s raised", self.name)
            return Outcome(
                error=f"the call stopped on an unexpected {type(exc).__name__}: {exc} "
                "(a bug in agentkit or in the agent's own code; the traceback is in the server's log)"
            )

    async def aclose(self) -> None:  # noqa: B027 - not abstract: a tool that opened nothing has nothing to close
        """Let go of what serving opened."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AgentTool(ServedTool):
    """An agent as a tool that takes `{"prompt": "..."}` and returns its typed answer.

    Every call is a run of this one agent (recorded in its store, if it has
    one). A call of a tool that needs approval pauses the run unless the
    agent has an `approve`; the call's result then says how to decide.

    Args:
        agent: The agent.
        name: The tool's name (default: the agent's name in snake_case).

    Raises:
        ValueError: `name` is not a valid MCP tool name.
    """

    def __init__(self, agent: Agent[Any], *, name: str | None = None) -> None:
        self.agent = agent
        self._adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(agent.output_type)
        answer = strip_titles(self._adapter.json_schema(mode="serialization"))
        self._wrapped = answer.get("type") != "object"
        docstring = type(agent).__dict__.get("__doc__")
        super().__init__(
            name=name or valid_name(to_snake(agent.name)),
            title=agent.name,
            description=inspect.cleandoc(docstring) if docstring else agent.instructions or f"Ask {agent.name}.",
            input_schema={
                "type": "object",
                "properties": {"prompt": {"type": "string", "minLength": 1, "description": "What to ask the agent."}},
                "required": ["prompt"],
                "additionalProperties": False,
            },
            output_schema=_result_schema(answer) if self._wrapped else answer,
        )
        # A URI (or the default) is resolved here and so closed here; a Runtime object given is the caller's.
        self._owns_runtime = agent.runtime is None or isinstance(agent.runtime, str)
        self._runtime: Runtime | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        # Its toolsets (MCP servers of its own) stay open while it serves, rather than opening for each run.
        await self._stack.enter_async_context(self.agent)
        return self

    async def run(self, arguments: dict[str, Any]) -> Outcome:
        agent = self.agent
        try:
            self._runtime = agent.resolved_runtime  # resolved once, at the first call
            result = await agent.arun(arguments["prompt"])
        except AwaitingApproval as exc:
            return Outcome(error=self._paused(exc), meta={RUN_ID: exc.run_id})
        except AgentkitError as exc:
            if exc.partial is None:  # nothing was stored: its runtime could not be made, say
                return Outcome(error=f"{agent.name} could not run: {exc}")
            run_id = exc.partial.run_id
            log.warning("run %s of %s failed: %s", run_id, agent.name, exc)
            return Outcome(
                error=f"run {run_id} {self._status(run_id)}: {exc}{self._see(run_id)}", meta={RUN_ID: run_id}
            )
        value = self._adapter.dump_python(result.output, mode="json", by_alias=True)
        log.info("run %s of %s done", result.run_id, agent.name)
        return Outcome(answer={"result": value} if self._wrapped else value, meta={RUN_ID: result.run_id})

    async def aclose(self) -> None:
        try:
            await self._stack.aclose()
        finally:
            if self._runtime is not None and self._owns_runtime:
                await close_runtime(self._runtime)

    def _status(self, run_id: str) -> str:
        store = self.agent.store
        if store is None:
            return "failed"
        try:
            return store.run(run_id).status
        except AgentkitError:  # the store itself is what failed
            return "failed"

    def _see(self, run_id: str) -> str:
        if self.agent.store is None:
            return ""
        return f" (its steps: agentkit runs show {shlex.join([run_id, *_db(self.agent.store)])})"

    def _paused(self, exc: AwaitingApproval) -> str:
        run_id, store = exc.run_id, self.agent.store
        waiting = "; ".join(
            f"{c.name} {json.dumps(dict(c.arguments), ensure_ascii=False)} (call {c.id})" for c in exc.calls
        )
        if store is None:
            return f"run {run_id} paused for approval of {waiting}, but the agent has no store to resume it from"
        again = [*(["--runtime", self.agent.runtime] if isinstance(self.agent.runtime, str) else []), *_db(store)]
        approve = shlex.join(["agentkit", "runs", "approve", run_id, *again])
        deny = shlex.join(["agentkit", "runs", "deny", run_id, *(c.id for c in exc.calls), "--reason", "WHY", *again])
        return (
            f"run {run_id} paused: it waits for a person to approve {waiting}. "
            f"Approve at a terminal with `{approve}` (the run then goes on there), or refuse with `{deny}`; "
            f"its answer is then in the store (agentkit runs show {shlex.join([run_id, *_db(store)])})"
        )


class WorkflowTool(ServedTool):
    """A workflow as a tool that takes its declared inputs and returns its output as `{"result": ...}`.

    Args:
        flow: The checked workflow.
        runtime: The runtime for agent steps that do not name their own, as
            for `Workflow.run` (default: the file's `runtime`). A URI (the
            file's too) is resolved once, at the first call, and closed when
            serving ends; a `Runtime` object given is the caller's.
        store: Record every workflow run and its agent runs here.
        name: The tool's name (default: the workflow's name in snake_case).

    Raises:
        ValueError: `name` is not a valid MCP tool name.
    """

    def __init__(
        self,
        flow: Workflow,
        *,
        runtime: Runtime | str | None = None,
        store: Store | None = None,
        name: str | None = None,
    ) -> None:
        spec = flow.spec
        properties: dict[str, Any] = {}
        for key, declared in spec.inputs.items():
            properties[key] = input_schema(declared)
            if declared.description:
                properties[key]["description"] = declared.description
            if not declared.required:
                properties[key]["default"] = declared.default
        required = [key for key, declared in spec.inputs.items() if declared.required]
        super().__init__(
            name=name or valid_name(to_snake(flow.name)),
            title=flow.name,
            description=spec.description or f"Run the workflow {flow.name!r} on its inputs.",
            input_schema={
                "type": "object",
                "properties": properties,
                **({"required": required} if required else {}),
                "additionalProperties": False,
            },
            output_schema=_result_schema({"description": "The workflow's output."}),
        )
        self.flow = flow
        self.store = store
        self._uri: str | None = None
        """The runtime URI this tool resolves (and so closes)."""
        self._runtime: Runtime | None = None
        if isinstance(runtime, str) or runtime is None:
            self._uri = runtime or spec.runtime
        else:
            self._runtime = runtime

    async def run(self, arguments: dict[str, Any]) -> Outcome:
        try:
            result = await self.flow.arun(arguments, runtime=self._shared_runtime(), store=self.store)
        except WorkflowFailed as exc:
            run_id = exc.workflow_run
            log.warning("workflow run %s of %s failed: %s", run_id, self.flow.name, exc)
            if run_id is None:
                return Outcome(error=str(exc))
            see = f"agentkit workflow show {shlex.join([run_id, *_db(self.store)])}"
            return Outcome(error=f"{exc} (its steps: {see})", meta={WORKFLOW_RUN_ID: run_id})
        except WorkflowSpecError as exc:  # the inputs do not fit: nothing ran
            return Outcome(error=f"the inputs do not fit the workflow: {exc}")
        except AgentkitError as exc:  # a runtime it names cannot be made: nothing ran
            return Outcome(error=f"the workflow {self.flow.name!r} could not run: {exc}")
        log.info("workflow run %s of %s done", result.workflow_run, self.flow.name)
        return Outcome(answer={"result": result.output}, meta={WORKFLOW_RUN_ID: result.workflow_run})

    def _shared_runtime(self) -> Runtime | None:
        # Agent steps that name no runtime of their own share this one across calls (one engine, not one per run).
        if self._runtime is None and self._uri is not None:
            from agentkit.runtimes import resolve

            self._runtime = resolve(self._uri)
        return self._runtime

    async def aclose(self) -> None:
        if self._runtime is not None and self._uri is not None:
            await close_runtime(self._runtime)


def _result_schema(answer: dict[str, Any]) -> dict[str, Any]:
    """The schema of `{"result": ANSWER}` (MCP wants an object); `answer`'s `$defs` move to the top."""
    inner = dict(answer)
    defs = inner.pop("$defs", None)
    return {
        "type": "object",
        "properties": {"result": inner},
        "required": ["result"],
        **({"$defs": defs} if defs else {}),
    }


def _db(store: Store | None) -> list[str]:
    """The `--db` option that names the store, for the commands a message suggests."""
    return ["--db", str(store.path)] if store is not None else []


# --- the server ------------------------------------------------------------------------------


def mcp_server(tool: ServedTool) -> mcp.server.Server[Any]:
    """The MCP server (the SDK's low-level `Server`) that lists `tool` and answers its calls.

    Connect to it in process with `mcp.Client(mcp_server(tool))`, or serve it
    with `serve`. It does not enter `tool` (`serve` does).
    """
    require_sdk()
    import mcp.types as types
    from mcp.server import Server
    from mcp.shared.exceptions import MCPError

    listing = types.Tool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
    )

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[listing])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name != tool.name:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}; this server has {tool.name!r}")
        outcome = await tool.call(params.arguments or {})
        meta = dict(outcome.meta) or None
        if outcome.answer is None:
            text = outcome.error or "the call failed"
            return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True, _meta=meta)
        text = json.dumps(outcome.answer, ensure_ascii=False)
        return types.CallToolResult(
            content=[types.TextContent(text=text)], structured_content=outcome.answer, _meta=meta
        )

    return Server(
        "agentkit",
        version=_version(),
        title=f"agentkit: {tool.title}",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=lambda name: tool.input_schema if name == tool.name else None,
    )


async def serve(
    tool: ServedTool,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    path: str = "/mcp",
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `tool` until the client closes stdin (stdio) or the process is interrupted (http); then close it.

    On stdio, the process's stdout is the protocol's: while serving, anything
    else written to it goes to stderr. Over HTTP the MCP endpoint is
    `http://HOST:PORT/PATH` (port 0: any free port).

    Args:
        ready: Told where the server listens (`stdio`, or the endpoint's URL) once it does.

    Raises:
        OSError: the HTTP server cannot listen on `host` and `port`.
        ToolsetError: the agent's own MCP servers could not be opened.
    """
    server = mcp_server(tool)
    async with tool:
        if transport == "stdio":
            await _stdio(server, ready)
        else:
            await _http(server, host, port, path, ready)


async def _stdio(server: mcp.server.Server[Any], ready: Callable[[str], None] | None) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        try:
            if ready is not None:
                ready("stdio")
            await server.run(read, write, server.create_initialization_options())
        finally:
            # What was printed while serving waits in sys.stdout's buffer: out with it now, to stderr, where
            # descriptor 1 points until the SDK gives it back to the protocol.
            sys.stdout.flush()


async def _http(
    server: mcp.server.Server[Any], host: str, port: int, path: str, ready: Callable[[str], None] | None
) -> None:
    import uvicorn

    try:
        # Bound here, so a port in use is an error now, and port 0 learns its number before the URL is told.
        listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    with listener:
        app = server.streamable_http_app(streamable_http_path=path, host=host)
        # log_config=None: uvicorn's logs go where every library's go (agentkit.logs), not to stdout.
        config = uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=2)
        shown = f"[{host}]" if ":" in host else host
        if ready is not None:
            ready(f"http://{shown}:{listener.getsockname()[1]}{path}")
        await uvicorn.Server(config).serve(sockets=[listener])


def _version() -> str:
    try:
        return version("agentkit")
    except PackageNotFoundError:  # a checkout that was never installed
        return ""
