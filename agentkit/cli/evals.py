"""`agentkit eval`: the Berkeley Function Calling Leaderboard on a runtime, and stored runs as a regression gate.

agentkit eval bfcl --runtime vllm:default --limit 20 --out bfcl-results
agentkit eval replay --db runs.db --runs status=done --runtime llama:default --min-same 0.9
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from agentkit.cli import printing
from agentkit.cli.options import CommandError, Db, open_store
from agentkit.eval import ARMS, CATEGORIES, LIVE_CATEGORIES, Entry, EvalResults, Outcome, evaluate, load, write
from agentkit.eval.regression import ReplaySuite, replay_runs, select_runs
from agentkit.eval.report import table
from agentkit.replay import ReplayReport
from agentkit.runtime import Runtime, close_runtime, start_runtime
from agentkit.runtimes import resolve

__all__ = ["GATE_MISSED", "group"]

GATE_MISSED = 4
"""`eval replay`'s exit code when the runtime misses a threshold (1 stays for errors)."""

group = typer.Typer(
    name="eval",
    help="Evaluate a runtime: BFCL's function-calling benchmark, or stored runs replayed on it.",
    no_args_is_help=True,
)


@group.callback()
def _eval() -> None:
    printing.announce_logs()  # both commands start a model


def _listed(given: str, known: tuple[str, ...], what: str) -> list[str]:
    chosen = list(dict.fromkeys(c.strip() for c in given.split(",") if c.strip()))
    unknown = [c for c in chosen if c not in known]
    if unknown or not chosen:
        among = ", ".join(known) if len(known) <= 12 else f"BFCL's ids, e.g. {known[0]}"
        raise CommandError(f"unknown {what} {', '.join(unknown) or '(none given)'}; choose among {among}")
    return chosen


@group.command("bfcl")
def bfcl(
    runtime: Annotated[
        str, typer.Option("--runtime", metavar="URI", help="The runtime to evaluate, e.g. vllm:default.")
    ],
    categories: Annotated[
        str | None,
        typer.Option(
            metavar="LIST",
            help=f"Comma-separated BFCL categories (default: {','.join(CATEGORIES)}; with --live, the live ones too).",
            show_default=False,
        ),
    ] = None,
    ids: Annotated[
        str | None,
        typer.Option(
            metavar="LIST", help="Only these entries (comma-separated BFCL ids, e.g. parallel_29).", show_default=False
        ),
    ] = None,
    live: Annotated[
        bool, typer.Option("--live", help="Add BFCL's live categories (to --categories, or the default ones).")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N entries of each category.", show_default=False)
    ] = None,
    arms: Annotated[
        str, typer.Option(metavar="LIST", help="constrained (the dialect's grammar), free (none), or both.")
    ] = "constrained,free",
    concurrency: Annotated[int, typer.Option(min=1, help="Entries in flight at once.")] = 8,
    max_tokens: Annotated[int, typer.Option(min=16, help="The most tokens a turn may take.")] = 256,
    out: Annotated[Path, typer.Option(metavar="DIR", help="Where results.json, results.md and results.png go.")] = Path(
        "bfcl-results"
    ),
    data: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="A bfcl-eval wheel or unpacked copy (default: downloaded with pip into the cache).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run BFCL's single-turn categories on a runtime, with and without the grammar; write JSON, Markdown, a chart."""
    chosen_arms = _listed(arms, ARMS, "arm")
    entries = _entries(categories, ids, live=live, limit=limit, data=data)
    try:  # found out now, not after an hour of decoding
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot write the results into {out}: {exc.strerror or exc}") from None
    results = _evaluate_with_a_bar(
        resolve(runtime), entries, chosen_arms, concurrency=concurrency, max_tokens=max_tokens, limit=limit
    )
    if data is not None:
        results = dataclasses.replace(results, bfcl_version=f"the data at {data}")
    paths = write(results, out)
    printing.console().print(table(results))
    for kind, path in paths.items():
        printing.say(f"{kind}: {path}")


def _entries(
    categories: str | None, ids: str | None, *, live: bool, limit: int | None, data: Path | None
) -> list[Entry]:
    """The entries `--categories`, `--live`, `--ids` and `--limit` name."""
    known = CATEGORIES + LIVE_CATEGORIES + ("simple",)
    everything = ids is not None and categories is None  # ids alone: look for them in every category
    chosen = _listed(categories, known, "category") if categories else list(CATEGORIES)
    if live or everything:
        chosen += [c for c in LIVE_CATEGORIES if c not in chosen]
    chosen = list(dict.fromkeys("simple_python" if c == "simple" else c for c in chosen))
    entries = load(chosen, limit=limit, data=data)
    if ids:
        wanted = set(_listed(ids, tuple(e.id for e in entries), "entry"))
        entries = [e for e in entries if e.id in wanted]
    return entries


def _evaluate_with_a_bar(
    model: Runtime, entries: list[Entry], arms: list[str], *, concurrency: int, max_tokens: int, limit: int | None
) -> EvalResults:
    """`evaluate` with the runtime started and closed, and a progress bar (a line a category off a terminal)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tally]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=printing.console(),
        transient=False,
    ) as bar:
        task = bar.add_task("starting the model", total=len(entries) * len(arms), tally="")
        tally = {"valid": 0, "calls": 0, "right": 0, "errors": 0}
        sizes = Counter(e.category for e in entries)
        left = {(arm, category): n for arm in arms for category, n in sizes.items()}

        def advance(outcome: Outcome) -> None:
            left[(outcome.arm, outcome.category)] -= 1
            if not bar.console.is_terminal and not left[(outcome.arm, outcome.category)]:
                bar.console.print(f"done: {outcome.arm} · {outcome.category}")  # a log's progress, one line a category
            tally["valid"] += outcome.valid_calls
            tally["calls"] += outcome.attempted
            tally["right"] += outcome.correct
            tally["errors"] += outcome.error_type is not None
            bar.update(
                task,
                advance=1,
                description=f"{outcome.arm} · {outcome.category}",
                tally=f"valid {tally['valid']}/{tally['calls']} · right {tally['right']} · errors {tally['errors']}",
            )

        async def main() -> EvalResults:
            try:
                await start_runtime(model)
                return await evaluate(
                    model,
                    entries,
                    arms=arms,
                    concurrency=concurrency,
                    max_tokens=max_tokens,
                    limit=limit,
                    progress=advance,
                )
            finally:
                await close_runtime(model)

        return asyncio.run(main())


@group.command("replay")
def replay_suite(
    runtime: Annotated[str, typer.Option("--runtime", metavar="URI", help="The runtime to put the runs' steps to.")],
    runs: Annotated[
        str | None,
        typer.Option(
            metavar="QUERY",
            help="Comma-separated run ids, or filters: status=done, name=AgentName, agent=module:Class "
            "(default: the newest runs).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs (newest first) from filters.")] = 50,
    min_same: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Exit 4 if fewer steps than this (0-1) decide as stored.", show_default=False
        ),
    ] = None,
    min_valid: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Exit 4 if fewer calls than this (0-1) are valid.", show_default=False),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", metavar="FILE", help="Also write the per-run figures as JSON.", show_default=False),
    ] = None,
    db: Db = None,
) -> None:
    """Replay stored runs on another runtime: same-decision and valid-call rates per run and in total, as a CI gate."""
    with closing(open_store(db)) as store:
        records = select_runs(store, runs, limit=limit)
        if not records:
            raise CommandError(f"no stored run with steps matches {runs or 'the store'} in {store.path}")
        model: Runtime = resolve(runtime)
        console = printing.console()

        def shown(report: ReplayReport) -> None:
            same = sum(s.matches for s in report.steps)
            console.print(f"{report.run_id}: {same}/{len(report.steps)} same", soft_wrap=True)

        async def main() -> ReplaySuite:
            try:
                await start_runtime(model)
                return await replay_runs(store, [r.id for r in records], model, progress=shown)
            finally:
                await close_runtime(model)

        suite = asyncio.run(main())
    _show(suite)
    if json_out is not None:
        json_out.write_text(json.dumps(_as_json(suite), indent=1) + "\n", encoding="utf-8")
    misses = suite.missed(min_same=min_same, min_valid=min_valid)
    for miss in misses:
        printing.say(f"gate missed: {miss}")
    if misses:
        raise typer.Exit(GATE_MISSED)


def _rate(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.0%}"


def _show(suite: ReplaySuite) -> None:
    table = Table("run", "steps", "same", "valid calls", "first divergence", title=f"replayed on {suite.runtime}")
    for column in table.columns[1:]:
        column.justify = "right"
    for report in suite.reports:
        same = sum(s.matches for s in report.steps)
        calls = sum(s.calls for s in report.steps)
        valid = f"{sum(s.valid_calls for s in report.steps)}/{calls}" if calls else "–"
        divergence = report.first_divergence
        table.add_row(
            report.run_id, str(len(report.steps)), str(same), valid, "–" if divergence is None else f"step {divergence}"
        )
    console = printing.console()
    console.print(table)
    console.print(
        Text(
            f"same decisions: {_rate(suite.same_decision_rate)} ({suite.same_decisions}/{suite.steps} steps) · "
            f"valid calls: {_rate(suite.valid_call_rate)} ({suite.valid_calls}/{suite.calls}) · "
            f"failed steps: {suite.failed_steps}"
        )
    )


def _as_json(suite: ReplaySuite) -> dict[str, object]:
    return {
        "runtime": suite.runtime,
        "steps": suite.steps,
        "same_decisions": suite.same_decisions,
        "same_decision_rate": suite.same_decision_rate,
        "calls": suite.calls,
        "valid_calls": suite.valid_calls,
        "valid_call_rate": suite.valid_call_rate,
        "failed_steps": suite.failed_steps,
        "runs": [
            {
                "run_id": r.run_id,
                "steps": len(r.steps),
                "same": sum(s.matches for s in r.steps),
                "calls": sum(s.calls for s in r.steps),
                "valid_calls": sum(s.valid_calls for s in r.steps),
                "first_divergence": r.first_divergence,
                "errors": [s.error for s in r.steps if s.error],
            }
            for r in suite.reports
        ],
    }
