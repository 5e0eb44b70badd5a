"""MCP servers as toolsets: `stdio(...)` and `http(...)` (the official SDK, v2).

A session lives in a task of its own (`_Connection`): the SDK's transports
are anyio task groups, which must be left by the task that entered them, and
an agent's run is an async generator that may be closed from anywhere.
Calls are made from the run's tasks and race the session's task, so a
server that dies mid-call ends the call at once with an error naming it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import urlsplit

from agentkit.errors import ToolDefinitionError, ToolsetError
from agentkit.mcp.schemas import SchemaProblem, flatten
from agentkit.secrets import declare_credential, declare_headers, sensitive_name
from agentkit.tool import BoundTool, Tool
from agentkit.toolset import Offered, Toolset, valid_name

if TYPE_CHECKING:
    import mcp
    import mcp.types

__all__ = ["MCPToolError", "MCPToolset", "ServerOptions", "http", "stdio"]

log = logging.getLogger("agentkit.mcp")

_STDERR_TAIL = 2000
"""Characters of a stdio server's stderr quoted when it fails."""


class MCPToolError(RuntimeError):
    """An MCP tool answered with `isError`: its text is what the model reads."""


@dataclass(kw_only=True, eq=False)
class MCPToolset(Toolset):
    """An MCP server whose tools an agent offers. Make one with `stdio()` or `http()`."""

    name: str
    """The server's name: in errors, and the prefix of its tools' names when they collide."""
    target: Any
    """What the SDK's `Client` connects to: `StdioServerParameters` or a URL."""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    """HTTP headers sent with every request (`http` only)."""
    include: Sequence[str] | None = None
    """Only these tools (names as the server lists them; `*` patterns allowed)."""
    exclude: Sequence[str] = ()
    """Never these tools (names or patterns)."""
    requires_approval: bool | Collection[str] = False
    """Every call of the server's tools needs a decision (True), or the calls of these tools."""
    examples: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    """Example arguments per tool (by its listed name), for the worked examples small models copy."""
    timeout: float = 60.0
    """Seconds one call may take before it fails with a timeout result."""
    connect_timeout: float = 30.0
    """Seconds to start the server and list its tools."""

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[list[Offered]]:
        connection = _Connection(self)
        listed = await connection.start()
        try:
            yield self._offers(connection, listed)
        finally:
            await connection.stop()

    def _offers(self, connection: _Connection, listed: Sequence[mcp.types.Tool]) -> list[Offered]:
        names = [t.name for t in listed]
        unknown = [p for p in (self.include or ()) if not fnmatch.filter(names, p)]
        if unknown:
            raise ToolsetError(self.name, f"include names no tool it lists: {unknown}; it lists {sorted(names)}")
        strays = sorted(set(self.examples) - set(names))
        if strays:
            raise ToolsetError(self.name, f"examples name no tool it lists: {strays}; it lists {sorted(names)}")
        chosen = [
            t
            for t in listed
            if (self.include is None or any(fnmatch.fnmatchcase(t.name, p) for p in self.include))
            and not any(fnmatch.fnmatchcase(t.name, p) for p in self.exclude)
        ]
        offers: list[Offered] = []
        asked: set[str] = set()
        for listed_tool in chosen:
            name = valid_name(listed_tool.name)
            while name in asked:  # two of its names that differ only in characters a tool name cannot have
                name = valid_name(f"{name}_{len(asked)}")
            asked.add(name)
            offers.append(Offered(name=name, build=self._builder(connection, listed_tool), listed=listed_tool.name))
        return offers

    def _builder(self, connection: _Connection, listed: mcp.types.Tool) -> Any:
        try:
            parameters = flatten(listed.input_schema)
        except SchemaProblem as exc:
            raise ToolsetError(self.name, f"tool {listed.name!r} lists an invalid input schema: {exc}") from None
        result = None
        if listed.output_schema is not None:
            try:
                result = flatten(listed.output_schema)
            except SchemaProblem as exc:  # only told to the model: the call works without it
                log.warning("MCP server %r: the output schema of %r is left out: %s", self.name, listed.name, exc)
        annotations = listed.annotations
        idempotent = bool(annotations and (annotations.read_only_hint or annotations.idempotent_hint))
        approval = (
            self.requires_approval
            if isinstance(self.requires_approval, bool)
            else listed.name in self.requires_approval
        )

        async def call(**arguments: Any) -> Any:
            return await connection.call(listed.name, arguments)

        def build(name: str) -> BoundTool:
            def made(examples: Sequence[Mapping[str, Any]]) -> BoundTool:
                return Tool.from_schema(
                    name,
                    (listed.description or listed.title or listed.name).strip(),
                    parameters,
                    call,
                    result=result,
                    examples=examples,
                    timeout=self.timeout,
                    requires_approval=approval,
                    idempotent=idempotent,
                )

            try:
                bound = made(())
            except ToolDefinitionError as exc:
                problem = f"tool {listed.name!r} lists an invalid input schema ({exc}); leave it out with exclude="
                raise ToolsetError(self.name, problem) from None
            if listed.name not in self.examples:
                return bound
            try:
                return made(self.examples[listed.name])
            except ToolDefinitionError as exc:
                raise ToolsetError(
                    self.name, f"the examples given for tool {listed.name!r} do not fit: {exc}"
                ) from None

        return build


class ServerOptions(TypedDict, total=False):
    """What `stdio()` and `http()` both take, besides where the server is."""

    include: Sequence[str] | None
    """Offer only these tools (names as the server lists them, `*` patterns); default: all."""
    exclude: Sequence[str]
    """Never offer these (names or patterns)."""
    requires_approval: bool | Collection[str]
    """Calls need a decision: every call of the server's tools (True), or these tools' calls."""
    examples: Mapping[str, Sequence[Mapping[str, Any]]]
    """Example arguments per tool (by its listed name), for the worked examples small
    models copy; each must fit the tool's schema."""
    timeout: float
    """Seconds a call may take (default 60)."""
    connect_timeout: float
    """Seconds to start the server and list its tools (default 30)."""


def stdio(
    command: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    name: str | None = None,
    **options: Unpack[ServerOptions],
) -> MCPToolset:
    """An MCP server started as a subprocess, spoken to over its stdin and stdout.

        Agent(tools=[mcp.stdio("python", "server.py", env={"TOKEN": token})])

    Args:
        command: The program (looked up on `PATH`).
        args: Its arguments.
        env: Variables added to a minimal environment (the SDK passes on only
            `PATH`, `HOME` and the like, not the whole of yours). The values of
            those named as credentials (`TOKEN`, `API_KEY`...: `agentkit.secrets.sensitive_name`)
            are declared secrets.
        cwd: Its working directory.
        name: The server's name (default: the script's, module's or program's name).
        options: `ServerOptions`: `include`, `exclude`, `requires_approval`,
            `examples`, `timeout`, `connect_timeout`.
    """
    require_sdk()
    from mcp import StdioServerParameters

    for key, value in (env or {}).items():
        if sensitive_name(key):
            declare_credential(value)
    return MCPToolset(
        name=valid_name(name or _program(command, args)),
        target=StdioServerParameters(command=command, args=list(args), env=dict(env or {}), cwd=cwd),
        **options,
    )


def _program(command: str, args: Sequence[str]) -> str:
    """The name a stdio server goes by: its module (`-m pkg.server`), script or package, else the command's."""
    for before, arg in zip(("", *args), args, strict=False):
        if before == "-m":
            return arg.rsplit(".", 1)[-1]
        if before == "-c":
            break
        if not arg.startswith("-"):
            return Path(arg).stem
    return Path(command).stem


def http(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    name: str | None = None,
    **options: Unpack[ServerOptions],
) -> MCPToolset:
    """An MCP server reached over streamable HTTP.

        Agent(tools=[mcp.http("http://127.0.0.1:8000/mcp", headers={"Authorization": f"Bearer {token}"})])

    Args:
        url: The server's endpoint (its `/mcp` path included).
        headers: Sent with every request (an API key, say). The values of those
            named as credentials (`Authorization`, `X-API-Key`, a cookie...) are
            declared secrets: nothing agentkit records shows them.
        name: The server's name (default: the URL's host).
        options: `ServerOptions`, as for `stdio`.
    """
    require_sdk()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    declare_headers(headers or {})
    return MCPToolset(name=valid_name(name or parts.hostname), target=url, headers=dict(headers or {}), **options)


def require_sdk(purpose: str = "MCP servers need") -> None:
    """Raises `ImportError` saying how to install the MCP SDK when it is missing."""
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise ImportError(f"{purpose} the MCP SDK: pip install 'agentkit[mcp]'") from None


class _Connection:
    """One session with a server, owned by a task of its own (see the module)."""

    def __init__(self, toolset: MCPToolset) -> None:
        self.toolset = toolset
        self.client: mcp.Client | None = None
        self.stderr: IO[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> list[mcp.types.Tool]:
        listed: asyncio.Future[list[mcp.types.Tool]] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._own(listed), name=f"mcp:{self.toolset.name}")
        waiting: set[asyncio.Future[Any]] = {listed, self._task}
        try:
            done, _ = await asyncio.wait(waiting, timeout=self.toolset.connect_timeout, return_when="FIRST_COMPLETED")
        except BaseException:
            await self.stop()
            raise
        if listed in done:
            return listed.result()
        problem = (
            self._failure()
            if self._task in done
            else f"did not start and list its tools within {self.toolset.connect_timeout:g} s"
        )
        await self.stop()
        raise ToolsetError(f"MCP server {self.toolset.name!r}", problem)

    async def _own(self, listed: asyncio.Future[list[mcp.types.Tool]]) -> None:
        from mcp import Client, StdioServerParameters

        target = self.toolset.target
        async with contextlib.AsyncExitStack() as stack:
            if isinstance(target, StdioServerParameters):
                from mcp.client.stdio import stdio_client

                # Appending: the server writes through its own copy of the descriptor, whatever our
                # offset. Kept open until `stop()`, to quote it after the server is gone.
                self.stderr = tempfile.TemporaryFile("a+", encoding="utf-8", errors="replace")  # noqa: SIM115
                transport: Any = stdio_client(target, errlog=self.stderr)
            else:
                transport = await self._http_transport(stack, target)
            client = await stack.enter_async_context(Client(transport, cache=None))
            tools: list[mcp.types.Tool] = []
            cursor = None
            while True:
                page = await client.list_tools(cursor=cursor)
                tools += page.tools
                cursor = page.next_cursor
                if not cursor:
                    break
            self.client = client
            listed.set_result(tools)
            await self._stop.wait()

    async def _http_transport(self, stack: contextlib.AsyncExitStack, url: str) -> Any:
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        http_client = await stack.enter_async_context(create_mcp_http_client(headers=dict(self.toolset.headers)))
        return streamable_http_client(url, http_client=http_client)

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """What the server's tool `name` returns, as a tool result (see `_result`)."""
        server = f"MCP server {self.toolset.name!r}"
        if self.client is None or self._task is None or self._task.done():
            raise ToolsetError(server, f"is not running ({self._failure()})")
        request = asyncio.ensure_future(self.client.call_tool(name, arguments))
        try:
            await asyncio.wait({request, self._task}, return_when="FIRST_COMPLETED")
        finally:
            if not request.done():
                request.cancel()
                with contextlib.suppress(BaseException):
                    await request
        if not request.done() or request.cancelled():
            raise ToolsetError(server, f"stopped during the call to {name!r} ({self._failure()})")
        if (error := request.exception()) is not None:
            raise ToolsetError(
                server, f"failed the call to {name!r}: {type(error).__name__}: {error}{self._stderr()}"
            ) from error
        return _result(request.result())

    async def stop(self) -> None:
        """End the session (and a stdio server's process); waits a little, then cancels."""
        self._stop.set()
        task = self._task
        try:
            if task is None:
                return
            if not task.done() and self.client is not None:  # connected: let it close the session cleanly
                await asyncio.wait({task}, timeout=5.0)
            if not task.done():
                task.cancel()
                await asyncio.wait({task})  # our own cancellation, if any, still reaches the caller
            if not task.cancelled():
                task.exception()  # retrieved: why it ended was said (or needs no saying)
        finally:
            if self.stderr is not None:
                self.stderr.close()

    def _failure(self) -> str:
        """Why the session's task ended, with the tail of the server's stderr."""
        task = self._task
        reason = "it stopped"
        if task is not None and task.done() and not task.cancelled() and (error := task.exception()) is not None:
            reason = _cause(error)
        return reason + self._stderr()

    def _stderr(self) -> str:
        """`; its stderr ends: ...` for a stdio server that wrote to stderr, else nothing."""
        if self.stderr is None or self.stderr.closed:
            return ""
        self.stderr.flush()
        self.stderr.seek(0)
        tail = self.stderr.read()[-_STDERR_TAIL:].strip()
        return f"; its stderr ends: {tail}" if tail else ""


def _cause(error: BaseException) -> str:
    """The innermost useful error of an anyio exception group, as text."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, FileNotFoundError | PermissionError):
        return f"cannot start it: {error}"
    return f"{type(error).__name__}: {error}"


def _result(result: mcp.types.CallToolResult) -> Any:
    """A tool result from an MCP one: its structured content when it has some, else its content.

    Text comes back as text (one string, or a list when mixed with other
    content); an image or audio block as `{"type", "mime_type", "data"}`
    (base64, as sent); a resource by its URI and text. `isError` raises
    `MCPToolError` with the text, so the model reads it as an error result.
    """
    parts = [_part(block) for block in result.content]
    if result.is_error:
        text = "\n".join(p if isinstance(p, str) else json.dumps(p) for p in parts)
        raise MCPToolError(text or "the tool reported an error")
    if result.structured_content is not None:
        return result.structured_content
    if all(isinstance(p, str) for p in parts):
        return "\n".join(parts)
    return parts


def _part(block: Any) -> Any:
    kind = getattr(block, "type", None)
    if kind == "text":
        return block.text
    if kind in ("image", "audio"):
        return {"type": kind, "mime_type": block.mime_type, "data": block.data, "bytes": _size(block.data)}
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        body = {"text": text} if text is not None else {"blob": resource.blob}
        return {"type": "resource", "uri": str(resource.uri), "mime_type": resource.mime_type, **body}
    if kind == "resource_link":
        return {"type": "resource_link", "uri": str(block.uri), "name": block.name}
    return block.model_dump(mode="json") if hasattr(block, "model_dump") else str(block)


def _size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except ValueError:
        return len(data)
