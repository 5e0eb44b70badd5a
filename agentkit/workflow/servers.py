"""A workflow's MCP servers: declared once under `mcp_servers`, used by steps as `mcp:NAME` or `mcp:NAME/TOOL`.

    mcp_servers:
      notes:
        command: [python, notes_server.py]
        env: {NOTES_TOKEN: "${NOTES_TOKEN}"}
    steps:
      - id: answer
        agent: {instructions: Answer from the notes., tools: ["mcp:notes"]}
        prompt: "{{ inputs.question }}"

A workflow run starts a server when a step first needs it and keeps that
one session for all its steps: each agent offers the server's tools as a
toolset of its own (`Shared`), a tool step calls one of them. Every session
is closed when the run ends, however it ends (`Sessions`). `${VAR}` in a
server's command, env, cwd, url and headers reads the environment when the
run starts, so secrets stay out of the file and out of the store;
`${VAR:-default}` gives a default, `$$` is a `$`. A value so read is
declared a secret (`agentkit.secrets`) when it goes into a header, or when
the variable's name, or the `env` key it sets, is a credential's
(`NOTES_TOKEN`, `API_KEY`...: `sensitive_name`).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import fnmatch
import importlib.util
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from agentkit.errors import ToolsetError
from agentkit.secrets import declare_credential, sensitive_name
from agentkit.tool import BoundTool
from agentkit.toolset import Offered, Toolset
from agentkit.workflow.source import DocPath, Problem, Source
from agentkit.workflow.spec import HttpServerSpec, StdioServerSpec

if TYPE_CHECKING:
    from agentkit.mcp import MCPToolset

__all__ = [
    "PREFIX",
    "ServerUse",
    "Sessions",
    "Shared",
    "connect",
    "declaration_problems",
    "joined",
    "sdk_missing",
    "toolsets",
    "use_of",
    "variables",
]

PREFIX = "mcp:"
"""How a step's tool names a server of `mcp_servers`: `mcp:NAME`, `mcp:NAME/TOOL`."""

_VARIABLE = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})")

ServerSpec = StdioServerSpec | HttpServerSpec


@dataclass(frozen=True, kw_only=True)
class ServerUse:
    """Which tools of a server a step uses."""

    server: str
    """The server's name in `mcp_servers`."""
    tools: tuple[str, ...] | None = None
    """These tools (names as the server lists them), or all it offers (None)."""


def use_of(ref: str, declared: Mapping[str, ServerSpec], *, one_tool: bool = False) -> ServerUse:
    """What a step's `mcp:NAME` or `mcp:NAME/TOOL` uses (`one_tool`: a tool step's, which calls one tool).

    Raises:
        ValueError: it names no declared server, a tool the server's filters
            leave out, or (a tool step's) not one tool it may call; the
            message says what to write.
    """
    name, slash, tool = ref.removeprefix(PREFIX).partition("/")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or (slash and not tool):
        raise ValueError(f"{ref!r} names no MCP server's tools; write mcp:NAME or mcp:NAME/TOOL")
    if name not in declared:
        close = difflib.get_close_matches(name, list(declared), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        known = f"the workflow declares {', '.join(declared)}" if declared else "the workflow declares none"
        raise ValueError(f"no MCP server {name!r}; {hint}{known} (under mcp_servers)")
    spec = declared[name]
    if not slash:
        if one_tool:
            raise ValueError(f"a tool step calls one tool: write mcp:{name}/TOOL")
        return ServerUse(server=name)
    if spec.include is not None and not any(fnmatch.fnmatchcase(tool, p) for p in spec.include):
        raise ValueError(f"{ref} is left out by the server's include: {', '.join(spec.include)}")
    if excluded := [p for p in spec.exclude if fnmatch.fnmatchcase(tool, p)]:
        raise ValueError(f"{ref} is left out by the server's exclude: {excluded[0]}")
    approval = spec.requires_approval
    if one_tool and (approval if isinstance(approval, bool) else tool in approval):
        raise ValueError(
            f"{ref} requires approval (the server's requires_approval) and a tool step has no one to ask; "
            "call it from an agent step"
        )
    return ServerUse(server=name, tools=(tool,))


def joined(uses: list[ServerUse], use: ServerUse, ref: str) -> list[ServerUse]:
    """`uses` (one per server) with `use` added to its server's.

    Raises:
        ValueError: `use` repeats tools of its server `uses` already have.
    """
    index = next((i for i, other in enumerate(uses) if other.server == use.server), None)
    if index is None:
        return [*uses, use]
    tools = uses[index].tools
    if tools is None or use.tools is None or set(use.tools) & set(tools):
        raise ValueError(f"{ref} repeats tools of mcp:{use.server} this agent already has; give each once")
    return [*uses[:index], ServerUse(server=use.server, tools=(*tools, *use.tools)), *uses[index + 1 :]]


# --- the declarations ---------------------------------------------------------------------------


def variables(spec: ServerSpec) -> Iterator[tuple[DocPath, str]]:
    """The values of a server that may hold `${VAR}`, with their paths under the server."""
    if isinstance(spec, StdioServerSpec):
        yield from ((("command", i), arg) for i, arg in enumerate(spec.command))
        yield from ((("env", key), value) for key, value in spec.env.items())
        if spec.cwd is not None:
            yield ("cwd",), spec.cwd
    else:
        yield ("url",), spec.url
        yield from ((("headers", key), value) for key, value in spec.headers.items())


def declaration_problems(name: str, spec: ServerSpec, directory: Path | None) -> Iterator[tuple[DocPath, str]]:
    """What is wrong with a server's declaration that can be known offline, by path under the server."""
    for path, value in variables(spec):
        if "${" in _VARIABLE.sub("", value):
            yield path, f"{value!r} has a malformed ${{...}}: write ${{VAR}} or ${{VAR:-default}} ($$ for a $)"
    if isinstance(spec, StdioServerSpec) and spec.cwd is not None and not _VARIABLE.search(spec.cwd):
        cwd = _directory(spec.cwd, directory)
        if not cwd.is_dir():
            yield ("cwd",), f"no directory {cwd}"
    if isinstance(spec, HttpServerSpec) and not _VARIABLE.search(spec.url):
        try:
            _check_url(spec.url)
        except ValueError as exc:
            yield ("url",), str(exc)


def sdk_missing() -> bool:
    return importlib.util.find_spec("mcp") is None


def _holds_secret(path: DocPath, variable: str) -> bool:
    """Whether the value of `${variable}` at `path` (under a server) is a secret: in a header,
    in an `env` entry named as a credential, or read from a variable named as one."""
    if path[0] == "headers" or sensitive_name(variable):
        return True
    return path[0] == "env" and sensitive_name(str(path[1]))


def _directory(cwd: str, directory: Path | None) -> Path:
    return directory / cwd if directory is not None else Path(cwd).resolve()


def _check_url(url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL (the server's endpoint, e.g. http://127.0.0.1:8000/mcp)")


def toolsets(source: Source, servers: Mapping[str, ServerSpec], environ: Mapping[str, str]) -> dict[str, MCPToolset]:
    """Each server as an `MCPToolset`, its `${VAR}` read from `environ` (nothing is started).

    Raises:
        ToolsetError: a variable is not set (naming it, at its place in the file).
    """
    return {name: _toolset(source, name, spec, environ) for name, spec in servers.items()}


def _toolset(source: Source, name: str, spec: ServerSpec, environ: Mapping[str, str]) -> MCPToolset:
    from agentkit import mcp

    unset: list[Problem] = []

    def expand(path: DocPath, value: str) -> str:
        def one(match: re.Match[str]) -> str:
            if match["dollar"]:
                return "$"
            found = environ.get(match["name"])
            if found:
                if _holds_secret(path, match["name"]):
                    declare_credential(found)
                return found
            if match["default"] is not None:
                return match["default"]
            if found is None:
                unset.append(
                    source.problem(
                        f"the environment variable {match['name']} is not set; set it, "
                        f"or give a default: ${{{match['name']}:-default}}",
                        ("mcp_servers", name, *path),
                    )
                )
            return ""

        return _VARIABLE.sub(one, value)

    values = {path: expand(path, value) for path, value in variables(spec)}
    if unset:
        lines = [p.render(source.file) for p in unset]
        many = f"{len(lines)} environment variables are not set\n" if len(lines) > 1 else ""
        raise ToolsetError(f"MCP server {name!r}", many + "\n".join(lines))
    options = mcp.ServerOptions(
        include=spec.include,
        exclude=spec.exclude,
        requires_approval=spec.requires_approval,
        examples=spec.examples,
        timeout=spec.timeout,
        connect_timeout=spec.connect_timeout,
    )
    if isinstance(spec, StdioServerSpec):
        cwd = values.get(("cwd",))
        program, *args = (values[("command", i)] for i in range(len(spec.command)))
        return mcp.stdio(
            program,
            *args,
            env={key: values[("env", key)] for key in spec.env},
            cwd=_directory(cwd, source.directory) if cwd is not None else source.directory,
            name=name,
            **options,
        )
    url = values[("url",)]
    try:
        _check_url(url)
    except ValueError as exc:
        where = source.problem(str(exc), ("mcp_servers", name, "url")).render(source.file)
        raise ToolsetError(f"MCP server {name!r}", where) from None
    return mcp.http(
        url,
        headers={key: values[("headers", key)] for key in spec.headers},
        name=name,
        **options,
    )


# --- a run's sessions ---------------------------------------------------------------------------


class Sessions:
    """The MCP sessions of one workflow run: each server opened when a step first needs it, all closed at the end.

        async with Sessions(toolsets) as sessions:
            agent = Agent(tools=[sessions.toolset(use)], ...)   # an agent step
            tool = await sessions.tool(use)                     # a tool step

    A server that fails to open fails the step that needed it, and any
    other step that needs it after, without being started again.
    """

    def __init__(self, toolsets: Mapping[str, MCPToolset]) -> None:
        self.toolsets = dict(toolsets)
        self._stack = contextlib.AsyncExitStack()
        self._locks = {name: asyncio.Lock() for name in self.toolsets}
        self._opened: dict[str, list[Offered]] = {}
        self._failed: dict[str, ToolsetError] = {}

    async def __aenter__(self) -> Sessions:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    def toolset(self, use: ServerUse) -> Toolset:
        """The tools `use` names, as a toolset for one agent (opening it joins the run's session)."""
        return Shared(name=use.server, sessions=self, use=use)

    async def tool(self, use: ServerUse) -> BoundTool:
        """The one tool `use` names (a tool step's)."""
        (offer,) = await self.offers(use)
        return offer.build(offer.name)

    async def offers(self, use: ServerUse) -> list[Offered]:
        """The tools `use` names, from the server's session (opened now if no step opened it yet).

        Raises:
            ToolsetError: the server could not be opened, or offers no tool `use` names.
        """
        offered = await self._open(use.server)
        if use.tools is None:
            return offered
        by_name = {offer.listed or offer.name: offer for offer in offered}
        chosen = []
        for tool in use.tools:
            offer = by_name.get(tool)  # by the name the server lists it under
            if offer is None:
                raise ToolsetError(
                    f"MCP server {use.server!r}",
                    f"offers no tool {tool!r} (it offers {', '.join(by_name) or 'none'}, after include and exclude)",
                )
            chosen.append(offer)
        return chosen

    async def _open(self, name: str) -> list[Offered]:
        async with self._locks[name]:
            if name in self._failed:
                failed = self._failed[name]
                raise ToolsetError(failed.source, failed.problem)
            if name not in self._opened:
                try:
                    self._opened[name] = list(await self._stack.enter_async_context(self.toolsets[name].session()))
                except ToolsetError as exc:
                    self._failed[name] = exc
                    raise
        return self._opened[name]


@dataclass(kw_only=True, eq=False)
class Shared(Toolset):
    """A server's tools for one agent, from the session its workflow run holds (so opening it starts nothing)."""

    name: str
    """The server's name (the prefix of its tools' names when they collide with the agent's others)."""
    sessions: Sessions
    use: ServerUse

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[list[Offered]]:
        yield await self.sessions.offers(self.use)


async def connect(
    source: Source, declared: Mapping[str, ServerSpec], environ: Mapping[str, str]
) -> dict[str, list[str] | ToolsetError]:
    """Start each server (all at once) and stop it again once it has listed its tools.

    Returns:
        By server: the tools it offers (after its include and exclude), by
        the names a model calls them, or the `ToolsetError` that says why it
        could not be started.
    """

    async def one(name: str, spec: ServerSpec) -> list[str] | ToolsetError:
        try:
            async with _toolset(source, name, spec, environ).session() as offered:
                return [offer.name for offer in offered]
        except ToolsetError as exc:
            return exc

    found = await asyncio.gather(*(one(name, spec) for name, spec in declared.items()))
    return dict(zip(declared, found, strict=True))
