"""Stored runs as a regression suite: every step of the selected runs put to another runtime.

    records = select_runs(store, "status=done,name=WeatherAgent", limit=50)
    suite = await replay_runs(store, [r.id for r in records], resolve("llama:default"))
    suite.same_decision_rate, suite.valid_call_rate, suite.missed(min_same=0.9)

Each run is replayed by `agentkit.replay.replay` (the stored history up to each
step, the run's tools and sampling); the suite adds up its steps. A step the
new runtime failed on counts as a different decision, and is listed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agentkit.errors import AgentkitError
from agentkit.replay import ReplayReport, replay
from agentkit.runtime import Runtime
from agentkit.store import STATUSES, RunRecord, Store

__all__ = ["QueryError", "ReplaySuite", "replay_runs", "select_runs"]

_FIELDS = ("status", "name", "agent")


class QueryError(AgentkitError, ValueError):
    """A `--runs` query that cannot be read."""


def select_runs(store: Store, query: str | None, *, limit: int = 50) -> list[RunRecord]:
    """The runs a query names, newest first, at most `limit` (ids given are all kept).

    The query is comma-separated terms: run ids, and `status=S`, `name=N`
    (the agent's name) or `agent=module:Class` filters, which all hold.
    Without a query: the newest runs. Runs without steps are left out.

    Raises:
        QueryError: a term with an unknown field or status.
        StoreError: a run id with no run.
    """
    ids: list[str] = []
    filters: dict[str, str] = {}
    for term in filter(None, (t.strip() for t in (query or "").split(","))):
        key, equals, value = term.partition("=")
        if not equals:
            ids.append(term)
        elif key.strip() not in _FIELDS:
            fields = ", ".join(f"{f}=" for f in _FIELDS)
            raise QueryError(f"unknown field {key.strip()!r} in {term!r}; a term is a run id or {fields}")
        else:
            filters[key.strip()] = value.strip()
    status = filters.get("status")
    if status is not None and status not in STATUSES:
        raise QueryError(f"unknown status {status!r}; the statuses are {', '.join(STATUSES)}")
    if ids:
        records = [store.run(run_id) for run_id in ids]
    else:
        records = store.runs(limit=limit if not filters else max(limit, 10_000), status=status)
    chosen = [
        r
        for r in records
        if (status is None or r.status == status)
        and ("name" not in filters or r.name == filters["name"])
        and ("agent" not in filters or r.agent == filters["agent"])
        and r.steps > 0
    ]
    return chosen if ids else chosen[:limit]


@dataclass(frozen=True, kw_only=True)
class ReplaySuite:
    """Runs replayed on one runtime, and their totals."""

    runtime: str
    reports: tuple[ReplayReport, ...]

    @property
    def steps(self) -> int:
        return sum(len(r.steps) for r in self.reports)

    @property
    def same_decisions(self) -> int:
        return sum(s.matches for r in self.reports for s in r.steps)

    @property
    def same_decision_rate(self) -> float | None:
        """Steps decided as stored over all replayed steps (None: no step)."""
        return self.same_decisions / self.steps if self.steps else None

    @property
    def calls(self) -> int:
        return sum(s.calls for r in self.reports for s in r.steps)

    @property
    def valid_calls(self) -> int:
        return sum(s.valid_calls for r in self.reports for s in r.steps)

    @property
    def valid_call_rate(self) -> float | None:
        """Valid calls over all replayed calls (None: no call)."""
        return self.valid_calls / self.calls if self.calls else None

    @property
    def failed_steps(self) -> int:
        """Steps the runtime raised on."""
        return sum(s.replayed is None for r in self.reports for s in r.steps)

    def missed(self, *, min_same: float | None = None, min_valid: float | None = None) -> list[str]:
        """The thresholds the suite misses, each said in words (empty: it meets them all).

        No step (or no call, when no step failed) misses no threshold: there is nothing to gate on.
        """
        misses = []
        same, valid = self.same_decision_rate, self.valid_call_rate
        if min_same is not None and same is not None and same < min_same:
            misses.append(f"same-decision rate {same:.1%} is below {min_same:.1%}")
        if min_valid is not None and valid is not None and valid < min_valid:
            misses.append(f"valid-call rate {valid:.1%} is below {min_valid:.1%}")
        if min_valid is not None and valid is None and self.failed_steps:
            misses.append(f"no call was made to check: {self.failed_steps} step(s) failed")
        return misses


async def replay_runs(
    store: Store,
    run_ids: Sequence[str],
    runtime: Runtime,
    *,
    progress: Callable[[ReplayReport], None] | None = None,
) -> ReplaySuite:
    """Replay each run in turn on `runtime` (steps that fail are recorded in the reports)."""
    reports = []
    for run_id in run_ids:
        report = await replay(store, run_id, runtime)
        reports.append(report)
        if progress is not None:
            progress(report)
    return ReplaySuite(runtime=runtime.info.uri or runtime.info.name, reports=tuple(reports))
