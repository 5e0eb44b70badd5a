"""How runs, their steps and messages read on a terminal, and where a command's messages go.

    say(f"run {run_id} done")  # the terminal's stderr, even while the log file holds descriptor 2
    console().print(record_grid(record, 120, 40))

The answer and tables go to stdout; a command's other messages (ids, errors,
warnings, questions) go to `stderr()`: the terminal's stderr, which is not
`sys.stderr` while `agentkit.logs.quiet_logs` sends library logs to a file
(`logging_to`); an error then names that file when something was logged.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import fields
from pathlib import Path
from typing import Any, TextIO

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from agentkit.budget import Budget
from agentkit.logs import Logs
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResult, UserMessage
from agentkit.planning import reference
from agentkit.store import Approval, RunRecord, StoredRun, StoredStep

STATUS_STYLE = {
    "done": "green",
    "running": "yellow",
    "awaiting_approval": "yellow",
    "failed": "red",
    "cancelled": "red",
    "budget_exhausted": "red",
}


_LOGS: ContextVar[Logs | None] = ContextVar("agentkit.cli.logs", default=None)


def stderr() -> TextIO:
    """Where a command's own messages go: the terminal's stderr (`sys.stderr` unless the logs took it)."""
    logs = _LOGS.get()
    return logs.stderr if logs is not None else sys.stderr


def log_file() -> Path | None:
    """The file library and engine logs go to; None when they go to stderr (`agentkit -v`)."""
    logs = _LOGS.get()
    return logs.path if logs is not None else None


def announce_logs() -> None:
    """`logs: PATH` on a terminal, before a command that may start a model (whose logs go there)."""
    logs = _LOGS.get()
    if logs is not None and logs.stderr.isatty():
        logs.announce()


@contextmanager
def logging_to(logs: Logs) -> Iterator[None]:
    """Inside the block, messages go to `logs.stderr` and errors name the log file when it has something."""
    token = _LOGS.set(logs)
    try:
        yield
    finally:
        _LOGS.reset(token)


def say(text: str) -> None:
    """One message (a run's id, a warning, a hint) on the terminal's stderr."""
    typer.echo(text, file=stderr())


def print_error(exc: BaseException, *, traceback: bool = False, unexpected: bool = False) -> None:
    """`error: ...` on stderr; an unexpected exception is named by its type, `traceback` adds the traceback."""
    from agentkit.errors import WorkflowSpecError

    if traceback:
        import traceback as tb

        say("".join(tb.format_exception(exc)).rstrip())
    # A workflow's problems are one per line, each with its file:line:column.
    text = str(exc) if isinstance(exc, WorkflowSpecError) else one_line(str(exc))
    if unexpected:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    say(f"error: {text}")
    logs = _LOGS.get()
    if logs is not None and logs.written():
        say(f"logs: {logs.shown_path()}")


def console() -> Console:
    """A console that prints text as it is: no markup or emoji (messages are the model's and the user's text)."""
    return Console(markup=False, emoji=False, highlight=False)


def brief(value: Any, limit: int = 80) -> str:
    """A value on one line of at most `limit` characters: text as it is, anything else as JSON."""
    text = one_line(value if isinstance(value, str) else as_json(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines too) as one space."""
    return " ".join(text.split())


def as_json(value: Any, *, indent: int | None = None) -> str:
    """`value` as JSON, non-ASCII characters kept as they are."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


def call_text(call: ToolCall, *, plan: bool = False) -> str:
    """A call as it would be written in Python: `get_weather(city=\"Oslo\")`.

    In a `plan`, a reference reads as the model wrote it: `temperature(city=$1.city)`.
    """
    show = _plan_argument if plan else as_json
    arguments = ", ".join(f"{name}={show(value)}" for name, value in call.arguments.items())
    return f"{call.name}({arguments})"


def _plan_argument(value: Any) -> str:
    """An argument as JSON, with each reference (however deep) as its text, `$2.city`."""
    ref = reference(value)
    if ref is not None:
        return ref.text
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{as_json(key)}: {_plan_argument(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_plan_argument(item) for item in value) + "]"
    return as_json(value)


def decision(message: AssistantMessage) -> str:
    """A turn in a few words: its calls, or its final text quoted."""
    if message.tool_calls:
        return "; ".join(call_text(c) for c in message.tool_calls)
    return as_json(one_line(message.text))


def result_text(result: ToolResult) -> str:
    """A tool's result on one line."""
    return one_line(result.content) if isinstance(result.content, str) else as_json(result.content)


def message_line(message: Message) -> Text:
    """A message of a conversation on one line, with its calls or its result."""
    if isinstance(message, SystemMessage | UserMessage):
        return Text(one_line(message.text))
    if isinstance(message, ToolResult):
        line = Text(f"{message.name} #{message.call_id} → ")
        line.append(("error: " if message.is_error else "") + result_text(message), "red" if message.is_error else "")
        return line
    line = _said(message)
    for call in message.tool_calls:
        line.append(f"{' ' if len(line) else ''}→ {call_text(call)} #{call.id}", "bold")
    return line


def _said(message: AssistantMessage) -> Text:
    """A turn's thinking (dim) and text, on one line."""
    line = Text()
    if message.thinking:
        line.append(f"(thinking: {one_line(message.thinking)}) ", "dim italic")
    line.append(one_line(message.text))
    return line


def plan_lines(step: StoredStep, approvals: Mapping[str, Approval] | None = None) -> Group:
    """A plan step's turn as its graph: a line per call, numbered `$1…$N` as the model numbered them.

    Each line: the call (a reference as the model wrote it, `city=$1.city`), its
    id, the calls it waits on (`after $1, $2`), and its outcome: `ok`, the
    error shortened, or why it has no result yet.
    """
    message = step.response.message
    calls = message.tool_calls
    header = _said(message)
    header.append(f"{' ' if len(header) else ''}plan of {len(calls)} call{'s' if len(calls) != 1 else ''}", "bold")
    number = {c.id: n for n, c in enumerate(calls, start=1)}
    results = {r.call_id: r for r in step.results}
    started = {c.id for c in step.started}
    graph = Table.grid(padding=(0, 2))
    graph.add_column(no_wrap=True, style="bold")  # $n
    graph.add_column(no_wrap=True)  # the call
    graph.add_column(no_wrap=True, style="dim")  # its id
    graph.add_column(no_wrap=True)  # after $1, $2
    graph.add_column()  # its outcome
    for call in calls:
        after = ", ".join(f"${number[d]}" if d in number else f"#{d}" for d in step.depends_on.get(call.id, ()))
        graph.add_row(
            f"${number[call.id]}",
            call_text(call, plan=True),
            f"#{call.id}",
            f"after {after}" if after else "",
            _outcome(call, results.get(call.id), started, approvals or {}),
        )
    return Group(header, graph)


def _outcome(call: ToolCall, result: ToolResult | None, started: set[str], approvals: Mapping[str, Approval]) -> Text:
    if result is None:
        if call.id in started:
            return Text("started, no result (the run stopped while it ran)", "yellow")
        return Text("not run yet" + _why_pending(call, started, approvals), "yellow")
    if result.is_error:
        return Text("error: " + brief(result.content, 100), "red")
    return Text("ok", "green")


def step_line(step: StoredStep, approvals: Mapping[str, Approval] | None = None) -> Text:
    """A stored model step: runtime, model, dialect, finish reason, tokens, and what it still waits for.

    `approvals` (the run's, by call id) say which of the calls with no result wait for a decision.
    """
    response, usage = step.response, step.response.usage
    parts = [
        f"{step.index}",
        f"runtime {step.runtime or '?'}",
        f"model {step.model or '?'}",
        f"dialect {step.dialect or '?'}",
        response.finish_reason,
        f"tokens {usage.prompt_tokens} in, {usage.completion_tokens} out"
        + (f", {usage.cached_tokens} cached" if usage.cached_tokens else ""),
    ]
    line = Text(" · ".join(parts), style="dim")
    if step.position is None:
        line.append(f" · unreadable reply: {as_json(one_line(response.raw_text))}", "red")
    if step.pending:
        started = {c.id for c in step.started}
        waiting = ", ".join(f"{c.name} #{c.id}{_why_pending(c, started, approvals or {})}" for c in step.pending)
        line.append(f" · no result yet: {waiting}", "yellow")
    return line


def _why_pending(call: ToolCall, started: set[str], approvals: Mapping[str, Approval]) -> str:
    approval = approvals.get(call.id)
    if approval is not None:
        return {None: " (awaiting approval)", True: " (approved)", False: " (denied)"}[approval.approved]
    return " (started)" if call.id in started else ""


def approvals_table(stored: StoredRun) -> Table | None:
    """The calls that needed approval, in the order the model made them; None when none did.

    Each row: the call, its decision (or `waiting`), who decided, when, and why.
    """
    if not stored.approvals:
        return None
    calls = [c for m in stored.messages if isinstance(m, AssistantMessage) for c in m.tool_calls]
    table = Table("call", "tool call", "decision", "by", "when", "reason", box=None)
    for column in table.columns[:5]:
        column.no_wrap = True
    for call in calls:
        approval = stored.approvals.get(call.id)
        if approval is None:
            continue
        decision = (
            Text("waiting", "yellow")
            if approval.approved is None
            else Text("approved", "green")
            if approval.approved
            else Text("denied", "red")
        )
        table.add_row(
            call.id,
            f"{call.name} {as_json(dict(call.arguments))}",
            decision,
            approval.decided_by or "",
            local_time(approval.created),
            approval.reason or "",
        )
    return table


def budget_text(budget: Budget) -> str:
    """A budget's limits other than steps (a record shows those with the steps taken): `tokens 2000, tool calls 5`."""
    limits = [(f.name, getattr(budget, f.name)) for f in fields(budget) if f.name != "max_steps"]
    return ", ".join(f"{name[4:].replace('_', ' ')} {value:g}" for name, value in limits if value is not None)


def record_grid(record: RunRecord, prompt_tokens: int, completion_tokens: int) -> Table:
    """A stored run's record as a two-column grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("run", record.id)
    grid.add_row("agent", record.agent)
    if record.workflow_run is not None:
        grid.add_row("workflow", f"step {record.workflow_step} of workflow run {record.workflow_run}")
    elif record.parent is not None and record.parent.kind == "batch":
        grid.add_row("batch", f"item {record.parent.part} of batch {record.parent.id}")
    grid.add_row("status", status(record.status))
    grid.add_row("created", local_time(record.created))
    grid.add_row("updated", local_time(record.updated))
    grid.add_row("steps", f"{record.steps} of at most {record.max_steps}")
    limits = budget_text(record.budget) if record.budget is not None else ""
    if limits:
        grid.add_row("budget", limits)
    if record.exhausted:
        limit = getattr(record.budget, f"max_{record.exhausted}", None) if record.budget is not None else None
        spent = record.exhausted.replace("_", " ") + (f" (at most {limit:g})" if limit is not None else "")
        grid.add_row("exhausted", Text(spent, style="red"))
    grid.add_row("tools", ", ".join(t.name for t in record.tools) or "none")
    grid.add_row("tokens", f"{prompt_tokens} in, {completion_tokens} out")
    if record.output is not None:
        grid.add_row("output", record.output if isinstance(record.output, str) else as_json(record.output))
    if record.error:
        grid.add_row("error", Text(record.error, style="red"))
    return grid


def status(status: str) -> Text:
    """A run's or a step's status, coloured."""
    return Text(status, style=STATUS_STYLE.get(status, ""))


def local_time(seconds: float) -> str:
    """Unix seconds as a local date and time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def ago(seconds: float, now: float) -> str:
    """A recent time as how long ago; an older one as a local date and time."""
    delta = now - seconds
    if not 0 <= delta < 86_400:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))
    if delta < 60:
        return f"{int(delta)} s ago"
    if delta < 3600:
        return f"{int(delta // 60)} min ago"
    return f"{int(delta // 3600)} h ago"
