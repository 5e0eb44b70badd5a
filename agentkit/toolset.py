"""`Toolset`: tools an agent learns of only when it connects to something.

An MCP server is the example (`agentkit.mcp`): its tools are listed when a
session opens, and each call goes through that session. An agent given a
toolset opens one session per run (or one for its whole life inside
`async with agent:`), offers the session's tools with its own, and closes
the session on every way out of the run.

Writing one means implementing `session()`:

    class Clock(Toolset):
        name = "clock"

        @contextlib.asynccontextmanager
        async def session(self):
            yield [Offered(name="tick", build=lambda name: Tool.from_schema(
                name, "The time.", {"type": "object"}, time.time))]
"""

from __future__ import annotations

import asyncio
import re
import zlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from agentkit.errors import ToolsetError
from agentkit.tool import BoundTool

__all__ = ["Offered", "Toolset", "open_toolsets", "valid_name"]

_INVALID = re.compile(r"[^A-Za-z0-9_]+")
_MAX_NAME = 64


@dataclass(frozen=True, kw_only=True)
class Offered:
    """A tool a session offers, before its name among the agent's tools is settled."""

    name: str
    """The name it asks for (already a valid tool name: see `valid_name`)."""
    build: Callable[[str], BoundTool]
    """The tool, under the name it is given (its own, or prefixed with the toolset's name)."""
    listed: str = ""
    """The name the source itself knows it by (an MCP server's `notes.search`), when it differs."""


class Toolset(ABC):
    """A source of tools known only at run time. Give it to an agent like a tool."""

    name: str
    """Which source this is: in errors, and the prefix of its tools' names when they collide."""

    @abstractmethod
    def session(self) -> AbstractAsyncContextManager[Sequence[Offered]]:
        """Open a session: its tools while it is open.

        Leaving the context closes the session, on every exit path
        (an error, a cancelled run). Opening it may raise `ToolsetError`.
        """


def valid_name(raw: str) -> str:
    """`raw` as a tool name the model can call: letters, digits and `_`, at most 64 characters.

    Other characters become `_`; a leading digit gets a `t_` in front; a
    longer name is cut and given a checksum of the whole, so two long names
    that share a beginning stay apart.
    """
    name = _INVALID.sub("_", raw).strip("_") or "tool"
    if name[0].isdigit():
        name = f"t_{name}"
    if len(name) > _MAX_NAME:
        name = f"{name[: _MAX_NAME - 9]}_{zlib.crc32(raw.encode()):08x}"
    return name


@asynccontextmanager
async def open_toolsets(toolsets: Sequence[Toolset], taken: Collection[str]) -> AsyncIterator[list[BoundTool]]:
    """Open every toolset's session (at once) and yield their tools, named apart.

    A tool keeps the name it asks for unless another tool has it (one of
    `taken`, the agent's own, or another toolset's): then it is
    `TOOLSET_NAME`. Every session is closed on leaving, whatever happened.

    Raises:
        ToolsetError: a toolset could not be opened (the others opened are
            closed again), or two tools would still share a name.
    """
    async with AsyncExitStack() as stack:
        managers = [toolset.session() for toolset in toolsets]
        opened = await asyncio.gather(*(manager.__aenter__() for manager in managers), return_exceptions=True)
        for manager, listing in zip(managers, opened, strict=True):
            if not isinstance(listing, BaseException):
                stack.push_async_exit(manager)
        for listing in opened:
            if isinstance(listing, BaseException):
                raise listing
        yield _named([(toolset, list(listing)) for toolset, listing in zip(toolsets, opened, strict=True)], taken)  # type: ignore[arg-type]


def _named(listings: list[tuple[Toolset, list[Offered]]], taken: Collection[str]) -> list[BoundTool]:
    wanted = Counter([*taken, *(offer.name for _, offers in listings for offer in offers)])
    names: set[str] = set(taken)
    tools = []
    for toolset, offers in listings:
        for offer in offers:
            name = offer.name if wanted[offer.name] == 1 else valid_name(f"{toolset.name}_{offer.name}")
            if name in names:
                raise ToolsetError(
                    toolset.name,
                    f"its tool {offer.name!r} would be called {name!r}, which another tool has; "
                    "leave one out (exclude=...) or rename the toolset (name=...)",
                )
            names.add(name)
            tools.append(offer.build(name))
    return tools
