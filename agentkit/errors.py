"""The exceptions agentkit raises. Each says what went wrong and what to do.

The tree (builtin bases in parentheses); catch `AgentkitError` for all of them:

    Exception
    └── AgentkitError
        ├── ToolDefinitionError (TypeError)        a function or class cannot be a tool
        ├── ToolArgumentsError (ValueError)        the model's arguments do not fit the schema
        ├── UnknownToolError (LookupError)         the model called a tool not offered
        ├── ToolExecutionError (RuntimeError)      a tool raised
        │   └── ToolTimeoutError                   a tool ran past its timeout
        ├── ModelOutputError (ValueError)          the model's reply is no usable decision; carries `usage`
        ├── OutputValidationError (ValueError)     the answer does not fit `output_type`
        ├── OutputTruncated                        the reply was cut off at max_tokens
        ├── ContextLengthExceeded (ValueError)     the conversation no longer fits
        ├── BudgetExceeded                         a budget ran out; carries `partial`
        │   └── MaxStepsExceeded                   the steps budget
        ├── AwaitingApproval                       a run paused for decisions; carries `partial`
        ├── RunFailed (RuntimeError)               an unexpected error in a run; carries `partial`
        ├── RuntimeUnavailable (RuntimeError)      a runtime cannot be used here
        │   └── ServerError                        a model server could not answer
        ├── UnknownName (LookupError)              no registry entry has that name
        ├── StoreError (RuntimeError)              the run store cannot do what was asked
        ├── ScriptError (AssertionError)           a ScriptedRuntime's script does not fit
        ├── TracingError (ValueError)              tracing cannot be set up as asked
        ├── SecretError (ValueError)               a value cannot be declared a secret
        ├── WorkflowSpecError (ValueError)         a workflow file is wrong (its `Problem`s)
        ├── WorkflowFailed (RuntimeError)          a workflow step failed
        └── BatchInputError (ValueError)           a batch's input file cannot be used

Any of them raised out of a run carries the trajectory so far on `partial`:
the error is given it when it is made in the run, and the run adds it to
one raised below it (a runtime, the context policy, the store).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentkit.events import RunResult
    from agentkit.messages import ToolCall
    from agentkit.runtime import Usage

__all__ = [
    "AgentkitError",
    "AwaitingApproval",
    "BatchInputError",
    "BudgetExceeded",
    "ContextLengthExceeded",
    "MaxStepsExceeded",
    "ModelOutputError",
    "OutputTruncated",
    "OutputValidationError",
    "Problem",
    "RunFailed",
    "RuntimeUnavailable",
    "ScriptError",
    "SecretError",
    "ServerError",
    "StoreError",
    "ToolArgumentsError",
    "ToolDefinitionError",
    "ToolExecutionError",
    "ToolTimeoutError",
    "ToolsetError",
    "TracingError",
    "UnknownName",
    "UnknownToolError",
    "WorkflowFailed",
    "WorkflowSpecError",
]

DocPath = tuple[str | int, ...]
"""A place in a document (a workflow file): keys and list indices from the top."""


def format_path(path: Sequence[str | int]) -> str:
    """`("steps", 1, "agent")` as `steps[1].agent`; the top of the document as `(top)`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow, where it is (what `WorkflowSpecError` lists)."""

    message: str
    path: DocPath = ()
    line: int = 1
    """1-based."""
    column: int = 1
    """1-based."""

    def render(self, file: str) -> str:
        where = f"{format_path(self.path)}: " if self.path else ""
        return f"{file}:{self.line}:{self.column}: {where}{self.message}"


class AgentkitError(Exception):
    """Base class of every error agentkit raises on purpose.

    Raised out of a run (the runtime failed, the context overflowed, the
    budget ran out), it carries the trajectory so far on `partial`, so nothing
    the run did is lost.

    Args:
        *args: The message (as for any exception).
        partial: The run so far, when the error is made inside a run.
    """

    partial: RunResult[Any] | None = None
    """The trajectory up to the error (None: not raised out of a run)."""

    def __init__(self, *args: object, partial: RunResult[Any] | None = None) -> None:
        super().__init__(*args)
        self.partial = partial


class ToolDefinitionError(AgentkitError, TypeError):
    """A function or class cannot be turned into a tool (raised at definition time)."""


class ToolArgumentsError(AgentkitError, ValueError):
    """The model called a tool with arguments that do not fit its schema."""

    def __init__(self, tool: str, details: str) -> None:
        super().__init__(f"invalid arguments for tool {tool!r}: {details}")
        self.tool = tool
        self.details = details


class UnknownName(AgentkitError, LookupError):
    """A name that no registry entry has: a runtime URI's scheme, a dialect.

    Args:
        kind: What was looked up, e.g. `runtime scheme`, `dialect`.
        name: The name asked for.
        known: The names there are.
    """

    def __init__(self, kind: str, name: str, known: Sequence[str], *, context: str = "") -> None:
        where = f" in {context}" if context else ""
        super().__init__(f"unknown {kind} {name!r}{where}; known: {', '.join(known) or 'none'}")
        self.kind = kind
        self.name = name
        self.known = tuple(known)


class UnknownToolError(AgentkitError, LookupError):
    """The model called a tool that was not offered."""

    def __init__(self, name: str, offered: list[str]) -> None:
        listing = ", ".join(sorted(offered)) or "none"
        super().__init__(f"unknown tool {name!r}; the offered tools are: {listing}")
        self.name = name
        self.offered = offered


class ToolExecutionError(AgentkitError, RuntimeError):
    """A tool raised. The loop turns this into an error result for the model."""

    def __init__(self, tool: str, error: BaseException) -> None:
        super().__init__(f"tool {tool!r} raised {type(error).__name__}: {error}")
        self.tool = tool
        self.error = error


class ToolTimeoutError(ToolExecutionError):
    """A tool ran past its `timeout`."""

    def __init__(self, tool: str, timeout: float) -> None:
        AgentkitError.__init__(self, f"tool {tool!r} did not finish within {timeout:g} s")
        self.tool = tool
        self.error = TimeoutError(f"{timeout:g} s")
        self.timeout = timeout


class ToolsetError(AgentkitError, RuntimeError):
    """A source of tools (an MCP server) could not be opened or listed, or stopped.

    Raised before a run starts, naming the source; once a run is under way, a
    source that fails gives error results to the calls of its tools instead.

    Args:
        source: The toolset's name (an MCP server's).
        problem: What went wrong.
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class ModelOutputError(AgentkitError, ValueError):
    """The model's reply is no decision the run can use (unconstrained runtimes):
    its text could not be read, or its calls do not fit the request.

    A runtime that decoded the reply gives its `usage`, so the tokens still
    count; `reason` is what was wrong, without the model's text. `problems`
    lists each thing wrong with the calls, when the runtime checked them (an
    unknown tool, arguments that do not fit the schema). The agent's loop
    keeps the reply as a step, tells the model what was wrong and asks again.
    """

    def __init__(self, reason: str, raw_text: str, *, usage: Usage | None = None, problems: Sequence[str] = ()) -> None:
        super().__init__(f"{reason}; the model said: {raw_text[:300]!r}")
        self.reason = reason
        self.raw_text = raw_text
        self.usage = usage
        self.problems = tuple(problems)


class OutputValidationError(AgentkitError, ValueError):
    """The final answer does not fit the agent's `output_type`."""

    def __init__(self, message: str, raw: Any) -> None:
        super().__init__(message)
        self.raw = raw


class BudgetExceeded(AgentkitError):
    """A run spent one of its budgets (`Budget`) without a final answer.

    `budget` names which: `steps`, `tokens`, `seconds` or `tool_calls`;
    `limit` is its value. The loop asks the last turn it can afford for an
    answer (`tool_choice="none"`); this is raised when even that was not
    possible. `partial` carries the trajectory so far, so nothing is lost.
    """

    def __init__(self, budget: str, limit: float, partial: RunResult[Any] | None, detail: str = "") -> None:
        super().__init__(
            detail
            or (
                f"the run spent its {budget} budget ({limit:g}) without a final answer; raise it "
                "(Budget on the agent or the run) or simplify the task (the partial trajectory is on `.partial`)"
            ),
            partial=partial,
        )
        self.budget = budget
        self.limit = limit


class MaxStepsExceeded(BudgetExceeded):
    """A run used all of its `max_steps` without a final answer (the `steps` budget).

    `partial` carries the trajectory so far (messages, steps, usage), so nothing
    the run did is lost.
    """

    def __init__(self, max_steps: int, partial: RunResult[Any] | None) -> None:
        super().__init__(
            "steps",
            max_steps,
            partial,
            f"the run took {max_steps} model steps without a final answer; raise "
            "`max_steps` on the agent or simplify the task (the partial trajectory "
            "is on this exception's `.partial`)",
        )
        self.max_steps = max_steps


class AwaitingApproval(AgentkitError):
    """A run paused: calls of `requires_approval` tools wait for someone's decision.

    The run is stored with status `awaiting_approval`; nothing is lost when the
    process exits. Decide and go on, in any process, with
    `agent.resume(run_id, approvals={call_id: True | False | "reason"})` or
    `agentkit runs approve RUN` / `agentkit runs deny RUN CALL --reason ...`.
    `calls` are the waiting calls (name, arguments, id).
    """

    def __init__(self, run_id: str, calls: Sequence[ToolCall], partial: RunResult[Any] | None) -> None:
        listed = ", ".join(f"{c.name} ({c.id})" for c in calls)
        super().__init__(
            f"run {run_id} is awaiting approval of {listed}; decide with agent.resume({run_id!r}, "
            f"approvals={{call_id: True | False | 'reason'}}) or `agentkit runs approve {run_id}`",
            partial=partial,
        )
        self.run_id = run_id
        self.calls = tuple(calls)


class RuntimeUnavailable(AgentkitError, RuntimeError):
    """A runtime cannot be used here: a missing extra, a missing model, a bad URI."""


class ServerError(RuntimeUnavailable):
    """A model server could not answer: unreachable, timing out, failing after
    every retry, or refusing the request outright (a 4xx other than 429).

    `status` is the last HTTP status (None when no response came at all),
    `url` the endpoint, and `retries` what was retried before giving up
    (one entry per failed attempt, as recorded in a step's metadata).
    """

    def __init__(
        self, message: str, *, url: str, status: int | None = None, retries: tuple[dict[str, Any], ...] = ()
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.retries = retries


class RunFailed(AgentkitError, RuntimeError):
    """A run stopped on an error agentkit did not expect (its `__cause__`).

    The trajectory up to the failure is on `partial`.
    """

    def __init__(self, message: str, *, partial: RunResult[Any] | None = None) -> None:
        super().__init__(message, partial=partial)


class OutputTruncated(AgentkitError):
    """The model's reply was cut off at `max_tokens` before it formed a decision.

    Raise `Sampling.max_tokens` (on the agent's `sampling`); retrying the same
    request would be cut off at the same place.
    """

    def __init__(self, max_tokens: int, raw_text: str, *, usage: Usage | None = None) -> None:
        super().__init__(
            f"the model's reply reached max_tokens={max_tokens} before it was complete; raise "
            f"Sampling.max_tokens. It began: {raw_text[:200]!r}"
        )
        self.max_tokens = max_tokens
        self.raw_text = raw_text
        self.usage = usage
        """What the cut-off turn cost, when the runtime knows."""


class ContextLengthExceeded(AgentkitError, ValueError):
    """The conversation no longer fits the model's context window."""


class StoreError(AgentkitError, RuntimeError):
    """The run store cannot do what was asked: not an SQLite file, a newer
    schema, no such run, a resume that needs the user's word."""


class ScriptError(AgentkitError, AssertionError):
    """A `ScriptedRuntime` received a request its script does not fit."""


class TracingError(AgentkitError, ValueError):
    """Tracing cannot be set up as asked (an unknown exporter or OTLP protocol)."""


class SecretError(AgentkitError, ValueError):
    """A value cannot be declared a secret (`agentkit.secret`): not a string, or too short to mask."""


class WorkflowSpecError(AgentkitError, ValueError):
    """A workflow file is wrong: each problem with its line, column and place in the document.

    Raised before any step runs. `problems` are the `Problem`s found, in file
    order.
    """

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        self.file = file
        self.problems = tuple(sorted(problems, key=lambda p: (p.line, p.column)))
        lines = [p.render(file) for p in self.problems]
        if len(lines) == 1:
            super().__init__(lines[0])
        else:
            super().__init__(f"{file}: {len(lines)} problems\n" + "\n".join(lines))


class WorkflowFailed(AgentkitError, RuntimeError):
    """A workflow step failed while the workflow ran.

    `workflow_run` is the stored workflow run's id (None when not recorded),
    `step` the failing step's place (`forecasts[2].forecast`), and the step's
    own error is the `__cause__`. Steps that finished keep their outputs in
    the store.
    """

    def __init__(self, message: str, *, step: str, workflow_run: str | None) -> None:
        super().__init__(message)
        self.step = step
        self.workflow_run = workflow_run


class BatchInputError(AgentkitError, ValueError):
    """A batch's input cannot be used: the file and line, and what is wrong
    (unreadable JSON, no prompt, two items with one id, inputs a workflow refuses)."""
