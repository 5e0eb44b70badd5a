"""`agentkit batch`: an agent or a workflow over every row of a file, resumable, locally or on Ray.

agentkit batch myagents:Summarize --input docs.jsonl --output summaries.jsonl --concurrency 16
agentkit batch myagents:Summarize --input docs.jsonl --output summaries.jsonl --resume
agentkit batch flows/triage.yaml --input tickets.parquet --output triaged.parquet --ray --ray-address auto
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from agentkit.batch import AgentJob, Batch, BatchOutcome, Item, ItemResult, Job, WorkflowJob
from agentkit.batch.files import OutputFile, read_items
from agentkit.cli import printing
from agentkit.cli.options import AllowModule, CommandError, Db, RerunStarted, Trace, open_store, tracing
from agentkit.cli.run import agent_class, build, is_workflow
from agentkit.errors import BatchInputError, WorkflowSpecError
from agentkit.store import BatchRecord, Store

__all__ = ["INTERRUPTED", "SOME_FAILED", "batch"]

SOME_FAILED = 1
"""Exit code: the batch ended, but some items failed (their rows say why) or --max-failures stopped it."""
INTERRUPTED = 130
"""Exit code: Ctrl-C (or SIGTERM) stopped the batch; --resume goes on."""


def batch(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="An agent class (MODULE:CLASS) or a workflow file (.yaml).",
            show_default=False,
        ),
    ],
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            metavar="FILE",
            help="The items: JSON Lines (.jsonl) or Parquet (.parquet). An agent's row has a prompt "
            "(see --prompt-key) or is a JSON string; a workflow's row is its inputs.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            metavar="FILE",
            help="One row per item (id, status, output, run_id, tokens, seconds, error), "
            "JSON Lines or Parquet by its extension.",
            show_default=False,
        ),
    ],
    runtime: Annotated[
        list[str] | None,
        typer.Option(
            "--runtime",
            metavar="URI",
            help="A runtime URI (default: the agent's or the workflow's); repeat it to share the items "
            "among several servers.",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, metavar="N", help="Items running at once (with --ray: per worker).")
    ] = 8,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Go on with the batch that wrote --output: skip finished items, resume interrupted runs.",
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start a new batch even though --output exists (it is replaced).")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="With --resume, run the failed items again too.")
    ] = False,
    max_failures: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="N", help="Start no new item once N items failed (default: never stop).", show_default=False
        ),
    ] = None,
    id_key: Annotated[
        str, typer.Option(metavar="NAME", help="The column with each item's id (else: a digest of the row).")
    ] = "id",
    prompt_key: Annotated[str, typer.Option(metavar="NAME", help="The column with an agent's prompt.")] = "prompt",
    rerun_started: RerunStarted = False,
    allow_module: AllowModule = None,
    ray: Annotated[
        bool,
        typer.Option("--ray", help="Run on a Ray cluster (Ray Data, an actor pool of workers); needs the ray extra."),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="With --ray: `local` (default) starts a cluster on this machine; `auto` joins the one running "
            "here (ray start); or ray://HOST:10001.",
            show_default=False,
        ),
    ] = None,
    ray_workers: Annotated[int, typer.Option(min=1, metavar="N", help="With --ray: workers (actors) in the pool.")] = 2,
    shards: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="With --ray: where each worker writes its SQLite file (default: DB.shards next to --db).",
            show_default=False,
        ),
    ] = None,
    db: Db = None,
    trace: Trace = False,
) -> None:
    """Run an agent on every prompt of a file, or a workflow on every row of inputs, several at once.

    Each item is a stored run, a child of the batch. A batch killed at any point goes on with --resume:
    finished items are not run again, interrupted runs resume from the store. A failed item is a row with
    its error. Exit code 0: every item done; 1: some failed or --max-failures stopped the batch;
    130: interrupted (Ctrl-C).
    """
    if resume and overwrite:
        raise CommandError("--resume continues the batch that wrote --output, --overwrite starts a new one: pick one")
    if retry_failed and not resume:
        raise CommandError("--retry-failed goes with --resume (a new batch runs every item anyway)")
    if not ray and (shards is not None or ray_workers != 2 or ray_address is not None):
        raise CommandError("--ray-address, --ray-workers and --shards are for --ray")
    address = (ray_address or "local") if ray else None
    kind: Literal["agent", "workflow"] = "workflow" if is_workflow(target) else "agent"
    if kind == "agent" and allow_module:
        raise CommandError("--allow-module is for workflows (a .yaml file), not agents")
    runtimes: tuple[str | None, ...] = tuple(runtime) if runtime else (None,)
    flow = _load_workflow(target, allow_module or []) if kind == "workflow" else None
    cls = agent_class(target) if kind == "agent" else None
    items = read_items(input, kind=kind, id_key=id_key, prompt_key=prompt_key)
    if flow is not None:
        _check_inputs(flow, items, input)
    target_name = str(Path(target).resolve()) if kind == "workflow" else target
    with closing(open_store(db, create=True)) as store, tracing(trace):
        record = _the_batch(store, target_name, input, output, len(items), resume=resume, overwrite=overwrite)
        options = {"runtimes": list(runtimes), "concurrency": concurrency, "ray": address}
        if record is None:
            record = store.begin_batch(
                target=target_name, items=len(items), input=input, output=output, options=options
            )
        else:
            store.batch_status(record.id, "running", items=len(items))
        out = OutputFile(output)
        job: Job | None
        if address is not None:
            job = None
        elif cls is not None:
            # Many items at once: no terminal questions; a call that needs approval pauses its item.
            job = AgentJob([build(cls, target, store, r, ask=False) for r in runtimes], rerun_started=rerun_started)
        else:
            assert flow is not None
            job = WorkflowJob(flow, store=store, runtimes=runtimes)
        progress = _Progress(len(items), output)
        again = _again(target, input, output, runtimes, db, address)
        try:
            if job is not None:
                outcome = _run_local(job, items, record, out, progress, concurrency, max_failures, retry_failed)
            else:
                assert address is not None
                outcome = _run_ray(
                    target_name, kind, items, record, store, out, progress, runtimes, allow_module or [],
                    address, ray_workers, concurrency, shards, max_failures, retry_failed,
                )  # fmt: skip
        except KeyboardInterrupt:
            progress.stop()
            out.close([i.id for i in items])
            store.batch_status(record.id, "stopped")
            printing.say(
                f"interrupted: {progress.done} items finished this time, {len(out.rows)} of {len(items)} in all; "
                f"runs in flight were recorded as cancelled and resume with: {again}"
            )
            raise typer.Exit(INTERRUPTED) from None
        except BaseException:
            progress.stop()
            out.close([i.id for i in items])  # what finished stays, in order
            store.batch_status(record.id, "stopped")
            raise
        progress.stop()
        out.close([i.id for i in items])
        store.batch_status(record.id, "done" if outcome.left == 0 else "stopped")
    _summary(outcome, output, progress, again)
    if outcome.failed or outcome.left:
        raise typer.Exit(SOME_FAILED)


def _run_local(
    job: Job,
    items: list[Item],
    record: BatchRecord,
    out: OutputFile,
    progress: _Progress,
    concurrency: int,
    max_failures: int | None,
    retry_failed: bool,
) -> BatchOutcome:
    runner = Batch(
        job, items, batch_id=record.id, concurrency=concurrency, max_failures=max_failures, retry_failed=retry_failed
    )
    plan = runner.plan()
    out.open(plan[0])
    progress.start(plan[0])

    def finished(result: ItemResult) -> None:
        out.add(result)
        progress.add(result)

    return asyncio.run(runner.run(finished, plan=plan))


def _run_ray(
    target: str,
    kind: Literal["agent", "workflow"],
    items: list[Item],
    record: BatchRecord,
    store: Store,
    out: OutputFile,
    progress: _Progress,
    runtimes: tuple[str | None, ...],
    allowed: list[str],
    address: str,
    workers: int,
    concurrency: int,
    shards: Path | None,
    max_failures: int | None,
    retry_failed: bool,
) -> BatchOutcome:
    from agentkit.batch.ray import RayOptions, WorkerSpec, run_on_ray, shard_files
    from agentkit.store.merge import merge

    where = (shards or store.path.with_name(store.path.name + ".shards")).resolve()
    merge(store, shard_files(where, record.id))  # what earlier attempts' workers recorded
    # The store's own view of the items (workers record elsewhere): a job that runs nothing.
    planner = Batch(_NoJob(store), items, batch_id=record.id, retry_failed=retry_failed)
    finished, todo = planner.plan()
    out.open(finished)
    progress.start(finished)
    results = {r.id: r for r in finished}
    failures = 0
    stopped: str | None = None

    def arrived(result: ItemResult) -> bool:
        nonlocal failures, stopped
        results[result.id] = result
        out.add(result)
        progress.add(result)
        if not result.ok:
            failures += 1
            if max_failures is not None and failures >= max_failures:
                stopped = f"{failures} items failed (--max-failures {max_failures})"
                return False
        return True

    spec = WorkerSpec(
        target=target, kind=kind, batch_id=record.id, shards=str(where), runtimes=runtimes, allow_modules=tuple(allowed)
    )
    try:
        if todo:
            run_on_ray(
                spec,
                [item for item, _ in todo],
                RayOptions(address=address, workers=workers, concurrency=concurrency, env=_agentkit_env()),
                arrived,
            )
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    finally:
        report = merge(store, shard_files(where, record.id))
        progress.note(f"merged {report.total.runs_added} new runs from {len(report.sources)} worker stores in {where}")
    ordered = tuple(results[i.id] for i in items if i.id in results)
    return BatchOutcome(results=ordered, stopped=stopped, left=len(items) - len(ordered))


class _NoJob:
    """The store's view for planning; never asked to run an item."""

    kind: Literal["agent", "workflow"] = "agent"

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def store(self) -> Store | None:
        return self._store

    async def run(self, item: Item, **_: Any) -> ItemResult:
        raise AssertionError("planning only")


def _agentkit_env() -> dict[str, str]:
    """The environment agentkit reads, for workers on other machines."""
    return {k: v for k, v in os.environ.items() if k.startswith(("AGENTKIT_", "OTEL_", "HF_"))}


def _load_workflow(target: str, allowed: list[str]) -> Any:
    from agentkit.workflow import Workflow

    return Workflow.load(target, allow_modules=allowed)


def _check_inputs(flow: Any, items: list[Item], path: Path) -> None:
    """Every row's inputs against the workflow's declaration, before anything runs."""
    problems = []
    for item in items:
        try:
            flow.inputs(item.value)
        except WorkflowSpecError as exc:
            problems.append(
                f"{path}: item {item.index + 1} (id {item.id}): {'; '.join(p.message for p in exc.problems)}"
            )
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BatchInputError("\n".join(problems[:5]) + more)


def _the_batch(
    store: Store, target: str, input: Path, output: Path, items: int, *, resume: bool, overwrite: bool
) -> BatchRecord | None:
    """The batch to go on with (--resume), or None for a new one; refuses to overwrite by accident."""
    earlier = store.batches(output=output, limit=1)
    if resume:
        if not earlier:
            raise CommandError(
                f"no batch in {store.path} wrote {output}; run without --resume to start one "
                "(or give the --db the batch used)"
            )
        if earlier[0].target != target:
            raise CommandError(
                f"the batch that wrote {output} ran {earlier[0].target}, not {target}; "
                "give another --output for a new batch"
            )
        return earlier[0]
    if output.exists() and output.stat().st_size > 0 and not overwrite:
        raise CommandError(f"{output} exists: --resume goes on with the batch that wrote it, --overwrite starts anew")
    return None


def _again(
    target: str, input: Path, output: Path, runtimes: tuple[str | None, ...], db: Path | None, ray: str | None
) -> str:
    """The command line that resumes this batch."""
    args = ["agentkit", "batch", target, "--input", str(input), "--output", str(output)]
    args += [a for r in runtimes if r for a in ("--runtime", r)]
    args += ["--db", str(db)] if db is not None else []
    args += ["--ray"] if ray is not None else []
    args += ["--ray-address", ray] if ray not in (None, "local") else []
    return shlex.join([*args, "--resume"])


class _Rate(ProgressColumn):
    """Tokens per second over the items finished in this attempt."""

    def render(self, task: Task) -> Text:
        tokens = task.fields.get("tokens", 0)
        elapsed = task.elapsed or 0.0
        return Text(f"{tokens / elapsed:,.0f} tok/s" if elapsed > 0 and tokens else "– tok/s", style="cyan")


class _Progress:
    """A rich progress bar on a terminal (done, failed, ETA, tokens/s); else a line per tenth of the batch."""

    def __init__(self, total: int, output: Path) -> None:
        self.total = total
        self.output = output
        self.done = 0
        self.resumed = 0
        self.failed = 0
        self.tokens = 0
        self.earlier = 0
        self.began = time.monotonic()
        stream = printing.stderr()
        self.live = stream.isatty()
        self.console = Console(file=stream)
        self.bar: Progress | None = None
        self.task: Any = None
        self._next_line = 0.1

    def start(self, earlier: list[ItemResult]) -> None:
        self.earlier = len(earlier)
        if earlier:
            failed = sum(not r.ok for r in earlier)
            printing.say(
                f"resuming: {len(earlier)} of {self.total} items finished earlier"
                + (f" ({failed} failed)" if failed else "")
            )
        if self.live:
            self.bar = Progress(
                TextColumn("[bold]batch"),
                BarColumn(),
                TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                TextColumn("[green]{task.fields[ok]} done"),
                TextColumn("[red]{task.fields[failed]} failed"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                _Rate(),
                console=self.console,
                transient=False,
            )
            self.bar.start()
            ok = sum(r.ok for r in earlier)
            self.task = self.bar.add_task(
                "batch", total=self.total, completed=len(earlier), ok=ok, failed=len(earlier) - ok, tokens=0
            )

    def add(self, result: ItemResult) -> None:
        self.done += 1
        self.resumed += result.resumed
        self.failed += not result.ok
        self.tokens += result.tokens
        if self.bar is not None:
            task = self.bar.tasks[0]
            self.bar.update(
                self.task,
                advance=1,
                ok=task.fields["ok"] + result.ok,
                failed=task.fields["failed"] + (not result.ok),
                tokens=self.tokens,
            )
            return
        finished = self.earlier + self.done
        if finished / self.total >= self._next_line or finished == self.total:
            while finished / self.total >= self._next_line:
                self._next_line += 0.1
            rate = self.tokens / max(time.monotonic() - self.began, 1e-9)
            printing.say(f"{finished}/{self.total} items ({self.failed} failed this time), {rate:,.0f} tok/s")

    def note(self, text: str) -> None:
        (self.bar.console.print if self.bar is not None else printing.say)(text)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _summary(outcome: BatchOutcome, output: Path, progress: _Progress, again: str) -> None:
    seconds = time.monotonic() - progress.began
    done = sum(r.ok for r in outcome.results)
    line = (
        f"{len(outcome.results)} of {progress.total} items: {done} done, {outcome.failed} failed; "
        f"this time {progress.done} in {seconds:.1f} s, {progress.tokens:,} tokens "
        f"({progress.tokens / max(seconds, 1e-9):,.0f} tok/s) -> {output}"
    )
    printing.say(line)
    if progress.resumed:
        printing.say(f"{progress.resumed} items went on from interrupted runs (no finished tool ran again)")
    if outcome.stopped:
        printing.say(f"stopped early: {outcome.stopped}; {outcome.left} items not started; go on with: {again}")
    failed = [r for r in outcome.results if not r.ok][:3]
    for result in failed:
        printing.say(f"  {result.id}: {result.status}: {printing.one_line(result.error or '')[:160]}")
