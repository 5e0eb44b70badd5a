"""Batches: one agent or workflow over many inputs, several at a time, resumable.

    results = SummaryAgent(store="runs.db").batch(["first text", "second text"], concurrency=8)
    for result in results:              # in input order
        print(result.id, result.status, result.output)

`agentkit batch TARGET --input FILE --output FILE` does the same over a JSON
Lines or Parquet file (`agentkit.batch.files`), and `--ray` over a Ray
cluster (`agentkit.batch.ray`).

Each item is a run of its own, stored as a child of the batch (`parent_kind`
'batch', `parent_part` the item's id). That link is the batch's memory: run
again with the same batch id, a batch skips the items whose run is done,
resumes (through the store) those whose run was interrupted or paused, and
starts the rest, so a batch killed at any moment loses nothing it committed:
a finished item, or a finished tool call of an interrupted agent run, is never
run again (the model turn that was being decoded is; a workflow item starts
over). A failure is a result with its error, never the end of the batch;
`max_failures` stops starting new items once that many failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pydantic_core

from agentkit.errors import AwaitingApproval, BatchInputError, BudgetExceeded, WorkflowFailed
from agentkit.events import RunParent
from agentkit.store import BatchItemRecord, Store

if TYPE_CHECKING:
    from agentkit.agent import Agent
    from agentkit.runtime import Runtime
    from agentkit.workflow import Workflow

__all__ = [
    "RESUMABLE",
    "AgentJob",
    "Batch",
    "BatchOutcome",
    "Busy",
    "Item",
    "ItemResult",
    "ItemStatus",
    "Job",
    "WorkflowJob",
    "as_items",
]

ItemStatus = Literal["done", "failed", "budget_exhausted", "awaiting_approval"]
"""How an item ended: its run's status (`awaiting_approval`: a call waits for
someone's decision; `agentkit runs approve`, then resume the batch)."""

RESUMABLE = frozenset({"running", "cancelled", "awaiting_approval"})
"""Run statuses a resumed batch goes on with (`running` for ever means its process was killed)."""


@dataclass(frozen=True)
class Item:
    """One input of a batch: an agent's prompt, or a workflow's inputs."""

    id: str
    """Stable across reruns: what a resumed batch knows the item by."""
    value: Any
    index: int = 0
    """Its place in the input (results come back in this order)."""


@dataclass(frozen=True, kw_only=True)
class ItemResult:
    """What one item came to."""

    id: str
    index: int
    status: ItemStatus
    output: Any = None
    """The final answer as JSON-ready data (a typed answer as its fields)."""
    run_id: str | None = None
    """The item's run (a workflow's: its workflow run), when it was recorded."""
    tokens: int = 0
    """Prompt plus completion tokens over the run's model turns."""
    seconds: float = 0.0
    error: str | None = None
    resumed: bool = False
    """The item's run had been interrupted (or paused) and went on from the store."""
    earlier: bool = False
    """Finished by an earlier attempt of this batch: nothing ran this time."""

    @property
    def ok(self) -> bool:
        return self.status == "done"

    @property
    def failed(self) -> bool:
        """Failed or ran out of budget: what `max_failures` counts (a wait for approval is not)."""
        return self.status in ("failed", "budget_exhausted")

    def row(self) -> dict[str, Any]:
        """The item's line in the output file."""
        return {
            "id": self.id,
            "status": self.status,
            "output": self.output,
            "run_id": self.run_id,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any], index: int, **extra: Any) -> ItemResult:
        """The result a `row()` was made from (Ray workers send rows back)."""
        return cls(
            id=row["id"],
            index=index,
            status=row["status"],
            output=row.get("output"),
            run_id=row.get("run_id"),
            tokens=int(row.get("tokens") or 0),
            seconds=float(row.get("seconds") or 0.0),
            error=row.get("error"),
            **extra,
        )


@dataclass(frozen=True, kw_only=True)
class BatchOutcome:
    """A batch's results in input order, and whether it stopped before the end."""

    results: tuple[ItemResult, ...]
    """Every item with a result: finished now or by an earlier attempt."""
    stopped: str | None = None
    """Why items were left unstarted (`max_failures`), or None: every item has a result."""
    left: int = 0
    """Items with no result (not started after a stop)."""

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.results)


class Job(Protocol):
    """Runs one item: an agent's run or a workflow's (`AgentJob`, `WorkflowJob`)."""

    kind: Literal["agent", "workflow"]

    @property
    def store(self) -> Store | None:
        """Where the items' runs are recorded (None: nowhere; nothing resumes)."""

    async def run(self, item: Item, *, parent: RunParent, previous: BatchItemRecord | None) -> ItemResult: ...


@dataclass
class AgentJob:
    """An agent run per item, by whichever of `agents` (one per runtime, for several servers) is least busy."""

    agents: Sequence[Agent[Any]]
    rerun_started: bool = False
    """Resume runs whose non-idempotent call had started when they stopped, running it again
    (default: such an item fails, saying so; see `Agent.resume`)."""
    kind: Literal["agent", "workflow"] = field(default="agent", init=False)

    @property
    def store(self) -> Store | None:
        return self.agents[0].store

    def __post_init__(self) -> None:
        if not self.agents:
            raise ValueError("AgentJob needs at least one agent")
        if len({id(a.store) for a in self.agents}) > 1:
            raise ValueError("a batch's agents must share one store")
        self._busy = Busy(len(self.agents))

    async def run(self, item: Item, *, parent: RunParent, previous: BatchItemRecord | None) -> ItemResult:
        with self._busy.least() as which:
            return await self._run(self.agents[which], item, parent, previous)

    async def _run(
        self, agent: Agent[Any], item: Item, parent: RunParent, previous: BatchItemRecord | None
    ) -> ItemResult:
        started = time.perf_counter()
        resumed = previous is not None and previous.kind == "agent" and previous.status in RESUMABLE
        try:
            if previous is not None and resumed:
                result = await agent.aresume(previous.run_id, rerun_started=self.rerun_started)
            else:
                result = await agent.arun(item.value, parent=parent)
        except Exception as exc:
            return _failure(self.store, item, parent, exc, time.perf_counter() - started, resumed=resumed)
        return ItemResult(
            id=item.id,
            index=item.index,
            status="done",
            output=pydantic_core.to_jsonable_python(result.output),
            run_id=result.run_id,
            tokens=result.usage.prompt_tokens + result.usage.completion_tokens,
            seconds=time.perf_counter() - started,
            resumed=resumed,
        )


@dataclass
class WorkflowJob:
    """A workflow run per item, on whichever of `runtimes` is least busy (None: the file's own)."""

    workflow: Workflow
    store: Store | None = None
    runtimes: Sequence[Runtime | str | None] = (None,)
    kind: Literal["agent", "workflow"] = field(default="workflow", init=False)

    def __post_init__(self) -> None:
        if not self.runtimes:
            raise ValueError("WorkflowJob needs at least one runtime (None: the file's own)")
        self._busy = Busy(len(self.runtimes))

    async def run(self, item: Item, *, parent: RunParent, previous: BatchItemRecord | None) -> ItemResult:
        # A workflow cannot go on from the middle: an interrupted item starts over
        # (its finished agent steps stay in the store under the earlier workflow run).
        started = time.perf_counter()
        try:
            with self._busy.least() as which:
                runtime = self.runtimes[which]
                result = await self.workflow.arun(item.value, runtime=runtime, store=self.store, parent=parent)
        except Exception as exc:
            return _failure(self.store, item, parent, exc, time.perf_counter() - started)
        tokens = 0
        if self.store is not None:
            record = self.store.batch_items(parent.id, [item.id]).get(item.id)
            tokens = record.tokens if record is not None else 0
        return ItemResult(
            id=item.id,
            index=item.index,
            status="done",
            output=result.output,
            run_id=result.workflow_run,
            tokens=tokens,
            seconds=time.perf_counter() - started,
        )


class Busy:
    """Which of `n` runtimes has the fewest items in flight (ties: the one used least lately)."""

    def __init__(self, n: int) -> None:
        self.in_flight = [0] * n
        self.turn = 0

    @contextlib.contextmanager
    def least(self) -> Iterator[int]:
        n = len(self.in_flight)
        order = [(self.turn + k) % n for k in range(n)]
        which = min(order, key=lambda i: self.in_flight[i])
        self.turn = (which + 1) % n
        self.in_flight[which] += 1
        try:
            yield which
        finally:
            self.in_flight[which] -= 1


def _failure(
    store: Store | None, item: Item, parent: RunParent, exc: Exception, seconds: float, *, resumed: bool = False
) -> ItemResult:
    """An item that did not finish: its error, and its run as far as the store has it."""
    status: ItemStatus = (
        "awaiting_approval"
        if isinstance(exc, AwaitingApproval)
        else "budget_exhausted"
        if isinstance(exc, BudgetExceeded)
        else "failed"
    )
    run_id: str | None = None
    partial = getattr(exc, "partial", None)
    if partial is not None:
        run_id = partial.run_id
    if isinstance(exc, WorkflowFailed):
        run_id = exc.workflow_run
    tokens = partial.usage.prompt_tokens + partial.usage.completion_tokens if partial is not None else 0
    if store is not None:
        record = store.batch_items(parent.id, [item.id]).get(item.id)
        if record is not None and (run_id is None or record.run_id == run_id):
            run_id, tokens = record.run_id, record.tokens
    return ItemResult(
        id=item.id,
        index=item.index,
        status=status,
        run_id=run_id,
        tokens=tokens,
        seconds=seconds,
        error=f"{type(exc).__name__}: {exc}",
        resumed=resumed,
    )


def earlier_result(item: Item, record: BatchItemRecord) -> ItemResult:
    """An item an earlier attempt finished, from its stored run."""
    status: ItemStatus = "budget_exhausted" if record.status == "budget_exhausted" else "failed"
    if record.status == "done":
        status = "done"
    return ItemResult(
        id=item.id,
        index=item.index,
        status=status,
        output=record.output if status == "done" else None,
        run_id=record.run_id,
        tokens=record.tokens,
        seconds=record.seconds,
        error=record.error,
        earlier=True,
    )


class Batch:
    """One batch: the items, the job that runs each, and where it records.

    Args:
        job: What runs an item (`AgentJob`, `WorkflowJob`).
        items: The inputs, with stable ids (`as_items`).
        batch_id: The batch's id in the job's store (`Store.begin_batch`): its
            items' runs are linked to it, and an id used before resumes that batch.
            Without a store, any id (nothing is recorded, nothing resumes).
        concurrency: Items running at once, on one event loop.
        max_failures: Start no new item once this many failed in this attempt
            (the running ones finish); None: never stop.
        retry_failed: Run again the items whose earlier run failed or ran out of
            budget (default: keep their result).
    """

    def __init__(
        self,
        job: Job,
        items: Sequence[Item],
        *,
        batch_id: str,
        concurrency: int = 8,
        max_failures: int | None = None,
        retry_failed: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_failures is not None and max_failures < 1:
            raise ValueError(f"max_failures must be at least 1, got {max_failures}")
        check_ids(items)
        self.job = job
        self.items = list(items)
        self.batch_id = batch_id
        self.concurrency = concurrency
        self.max_failures = max_failures
        self.retry_failed = retry_failed

    def plan(self) -> tuple[list[ItemResult], list[tuple[Item, BatchItemRecord | None]]]:
        """What earlier attempts finished, and what is left to run (with the item's stored run, if any)."""
        store = self.job.store
        stored = store.batch_items(self.batch_id) if store is not None else {}
        finished: list[ItemResult] = []
        todo: list[tuple[Item, BatchItemRecord | None]] = []
        for item in self.items:
            record = stored.get(item.id)
            if record is None:
                todo.append((item, None))
            elif record.status == "done" or (record.status in ("failed", "budget_exhausted") and not self.retry_failed):
                finished.append(earlier_result(item, record))
            elif record.status in ("failed", "budget_exhausted"):
                todo.append((item, None))  # --retry-failed: a new run
            else:
                todo.append((item, record))
        return finished, todo

    async def run(
        self,
        on_result: Callable[[ItemResult], object] | None = None,
        *,
        plan: tuple[Sequence[ItemResult], Sequence[tuple[Item, BatchItemRecord | None]]] | None = None,
    ) -> BatchOutcome:
        """Run what is left; `on_result` hears of each item as it finishes (earlier ones are not repeated).

        A Ctrl-C or cancellation stops every running item (their runs are
        recorded as cancelled, and resume with the batch) and propagates.
        """
        finished, todo = plan if plan is not None else self.plan()
        results = {r.id: r for r in finished}
        pending = iter(todo)
        failures = 0
        stopped: str | None = None

        async def worker() -> None:
            nonlocal failures, stopped
            while stopped is None:
                try:
                    item, previous = next(pending)
                except StopIteration:
                    return
                parent = RunParent(kind="batch", id=self.batch_id, part=item.id)
                result = await self.job.run(item, parent=parent, previous=previous)
                results[item.id] = result
                if result.failed:
                    failures += 1
                    if self.max_failures is not None and failures >= self.max_failures and stopped is None:
                        stopped = f"{failures} items failed (--max-failures {self.max_failures})"
                if on_result is not None:
                    on_result(result)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.concurrency, max(1, len(todo)))):
                group.create_task(worker())
        ordered = tuple(results[i.id] for i in self.items if i.id in results)
        left = len(self.items) - len(ordered)
        return BatchOutcome(results=ordered, stopped=stopped if left else None, left=left)


def check_ids(items: Sequence[Item]) -> None:
    """Refuse two items with one id (a resumed batch could not tell them apart)."""
    seen: dict[str, int] = {}
    for item in items:
        if item.id in seen:
            raise BatchInputError(
                f"items {seen[item.id] + 1} and {item.index + 1} have the same id {item.id!r}; "
                "ids must be unique (give each item its own id)"
            )
        seen[item.id] = item.index


def as_items(values: Iterable[Any]) -> list[Item]:
    """Items from what `Agent.batch` was given: `Item`s as they are, anything else with its position as id."""
    return [v if isinstance(v, Item) else Item(id=str(i), value=v, index=i) for i, v in enumerate(values)]


def reindexed(items: Sequence[Item]) -> list[Item]:
    """`items` with `index` set to their position."""
    return [Item(id=i.id, value=i.value, index=n) for n, i in enumerate(items)]


async def abatch(
    agent: Agent[Any],
    items: Iterable[Any],
    *,
    concurrency: int = 8,
    max_failures: int | None = None,
    batch_id: str | None = None,
) -> list[ItemResult]:
    """`Agent.abatch`: the results in input order (see there)."""
    given = reindexed(as_items(items))
    store = agent.store
    if store is None:
        if batch_id is not None:
            raise ValueError(f"{agent.name} has no store to resume batch {batch_id} from; pass store=... to the agent")
        from agentkit.store import new_id

        batch_id = new_id()
    elif batch_id is None:
        batch_id = store.begin_batch(
            target=f"{type(agent).__module__}:{type(agent).__qualname__}",
            items=len(given),
            options={"concurrency": concurrency},
        ).id
    else:
        store.batch(batch_id)  # raises if there is none
    batch = Batch(AgentJob([agent]), given, batch_id=batch_id, concurrency=concurrency, max_failures=max_failures)
    outcome = await batch.run()
    if store is not None:
        store.batch_status(batch_id, "done" if outcome.left == 0 else "stopped")
    return list(outcome.results)
