"""What the commands share: their common options, and what those set up (the store, tracing).

    def list_runs(db: Db = None) -> None:
        with closing(open_store(db)) as store:
            ...

A problem with what a command was asked to do is a `CommandError`: one
`error: ...` line, exit code 1.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager, redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import RenderableType
from rich.table import Column, Table

from agentkit.cli.printing import console, say, stderr
from agentkit.store import Store, default_path

__all__ = [
    "VERBOSE",
    "AllowModule",
    "CommandError",
    "Db",
    "DecidedBy",
    "NoResume",
    "Plan",
    "RerunStarted",
    "RunId",
    "RuntimeURI",
    "Trace",
    "Traced",
    "carried_options",
    "is_verbose",
    "open_store",
    "tracing",
]


class CommandError(Exception):
    """A problem with what the command was asked to do (a bad import path, a missing file)."""


VERBOSE = "agentkit.verbose"
"""The key in click's `Context.meta` (shared by every command of one invocation) that `-v` sets."""


def is_verbose(ctx: typer.Context) -> bool:
    """Whether `agentkit -v` was given: failures print their traceback."""
    return bool(ctx.meta.get(VERBOSE, False))


Db = Annotated[
    Path | None,
    typer.Option(
        "--db",
        metavar="PATH",
        help="The run database (default: $AGENTKIT_DB, else runs.db in the user data directory).",
        show_default=False,
    ),
]
RuntimeURI = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        metavar="URI",
        help="A runtime URI, e.g. vllm:default or scripted:turns.json (default: the agent's).",
        show_default=False,
    ),
]
RunId = Annotated[str, typer.Argument(metavar="ID", help="The run's id (see agentkit runs list).", show_default=False)]
Plan = Annotated[
    bool | None,
    typer.Option(
        "--plan/--no-plan",
        help="Plan mode: every call in one turn, later ones using earlier results (default: the agent's).",
        show_default=False,
    ),
]
Trace = Annotated[
    bool,
    typer.Option(
        "--trace",
        help="Trace the run: OTLP to $OTEL_EXPORTER_OTLP_ENDPOINT, else to the console "
        "(on without this flag when that variable is set).",
    ),
]
RerunStarted = Annotated[
    bool,
    typer.Option(
        "--rerun-started",
        help="Run again the non-idempotent calls that had started when the run stopped (they may have acted).",
    ),
]
DecidedBy = Annotated[
    str | None,
    typer.Option(
        "--by",
        metavar="NAME",
        help="Who decides, stored with the decision (default: your user name).",
        show_default=False,
    ),
]
NoResume = Annotated[
    bool,
    typer.Option("--no-resume", help="Only record the decisions; continue the run later (agentkit runs resume)."),
]
AllowModule = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-module",
        metavar="MODULE",
        help="A module (with its submodules) the workflow may import agents and tools from, beyond agentkit.tools "
        "and the workflow's own directory; repeatable.",
        show_default=False,
    ),
]


def carried_options(runtime: str | None, db: Path | None) -> list[str]:
    """The options a run was given that the commands deciding on it or resuming it need too."""
    return [*(["--runtime", runtime] if runtime else []), *(["--db", str(db)] if db is not None else [])]


def open_store(db: Path | None, *, create: bool = False) -> Store:
    """The store at `db`; reading commands refuse to create one (a mistyped path would show nothing)."""
    path = db if db is not None else default_path()
    if not create and not path.exists():
        raise CommandError(f"no run database at {path}; give its path with --db or AGENTKIT_DB")
    return Store(path)


R = TypeVar("R")


def list_stored(
    what: str,
    status: str | None,
    statuses: Sequence[str],
    db: Path | None,
    fetch: Callable[[Store], Sequence[R]],
    columns: Sequence[str | Column],
    row: Callable[[R, float], Sequence[RenderableType]],
) -> None:
    """`runs list` and `workflow list`: a table of what `fetch` reads (a `row` of each, given the time now).

    `status` must be one of `statuses`; no records is a line that says so and where it looked.
    """
    if status is not None and status not in statuses:
        raise CommandError(f"unknown status {status!r}; use one of {', '.join(statuses)}")
    with closing(open_store(db)) as store:
        records = fetch(store)
        if not records:
            console().print(f"no {what}{f' with status {status}' if status else ''} in {store.path}")
            return
    now = time.time()
    table = Table(*columns)
    table.columns[0].no_wrap = True
    for record in records:
        table.add_row(*row(record, now))
    console().print(table)


@dataclass
class Traced:
    """What `tracing` made of one command's spans."""

    on: bool = False
    """Whether this command's spans go somewhere."""
    failed: int = 0
    """Spans the exporter could not send."""


@contextmanager
def tracing(asked: bool) -> Iterator[Traced]:
    """Tracing set up for one command, when asked (`--trace`) or when the environment asks; flushed at the end.

    A set-up the environment asked for and that cannot be made warns and the
    command goes on: tracing is never why an agent did not run. Spans that
    could not be sent are one warning line (OpenTelemetry's own retry
    messages are kept off the terminal).
    """
    from agentkit.errors import TracingError
    from agentkit.tracing.exporting import ENDPOINTS, configure, shutdown, wanted

    traced = Traced()
    if not (asked or wanted()):
        yield traced
        return
    try:
        # The console exporter (no endpoint) writes to the sys.stderr it is given: the terminal's, not the log's.
        with redirect_stderr(stderr()):
            traced.on = configure() is not None
    except TracingError as exc:
        if asked:
            raise
        say(f"warning: tracing is off: {exc}")
        yield traced
        return
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    try:
        yield traced
    finally:
        delivery = shutdown()
        if delivery.failed:
            traced.failed = delivery.failed
            where = next((os.environ[name] for name in reversed(ENDPOINTS) if os.environ.get(name)), "the collector")
            say(f"warning: {delivery.failed} of {delivery.failed + delivery.sent} spans could not be sent to {where}")
