"""`agentkit batch`: an agent or a workflow over every row of a file, resumable, locally or on Ray.

agentkit batch myagents:Summarize --input docs.jsonl --output summaries.jsonl --concurrency 16
agentkit batch myagents:Summarize --input docs.jsonl --output summaries.jsonl --resume
agentkit batch flows/triage.yaml --input tickets.parquet --output triaged.parquet --ray --ray-address auto
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import os
import shlex
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from agentkit.batch import AgentJob, Batch, BatchOutcome, Item, ItemResult, Job, WorkflowJob
from agentkit.batch.files import OutputFile, read_items
from agentkit.batch.ray import RayOptions, WorkerSpec, run_on_ray, shard_files
from agentkit.cli import printing
from agentkit.cli.options import AllowModule, CommandError, Db, RerunStarted, Trace, open_store, tracing
from agentkit.cli.run import agent_class, build, is_workflow
from agentkit.errors import BatchInputError, WorkflowSpecError
from agentkit.store import BatchRecord, BatchStatus, Store
from agentkit.store.merge import merge

__all__ = ["INTERRUPTED", "SOME_FAILED", "batch"]

SOME_FAILED = 1
"""Exit code: the batch ended, but some items failed (their rows say why) or --max-failures stopped it."""
INTERRUPTED = 130
"""Exit code: Ctrl-C (or SIGTERM) stopped the batch; --resume goes on."""


_Target = Annotated[
    str,
    typer.Argument(
        metavar="TARGET",
        help="An agent class (MODULE:CLASS) or a workflow file (.yaml).",
        show_default=False,
    ),
]
_Input = Annotated[
    Path,
    typer.Option(
        "--input",
        metavar="FILE",
        help="The items: JSON Lines (.jsonl) or Parquet (.parquet). An agent's row has a prompt "
        "(see --prompt-key) or is a JSON string; a workflow's row is its inputs.",
        show_default=False,
    ),
]
_Output = Annotated[
    Path,
    typer.Option(
        "--output",
        metavar="FILE",
        help="One row per item (id, status, output, run_id, tokens, seconds, error), "
        "JSON Lines or Parquet by its extension.",
        show_default=False,
    ),
]
_Runtime = Annotated[
    list[str] | None,
    typer.Option(
        "--runtime",
        metavar="URI",
        help="A runtime URI (default: the agent's or the workflow's); repeat it to share the items "
        "among several servers.",
        show_default=False,
    ),
]
_Concurrency = Annotated[
    int | None,
    typer.Option(
        min=1, metavar="N", help="Items running at once (with --ray: per worker); default 8.", show_default=False
    ),
]
_Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Go on with the batch that wrote --output: skip finished items, resume interrupted runs.",
    ),
]
_Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Start a new batch even though --output exists (it is replaced).")
]
_RetryFailed = Annotated[bool, typer.Option("--retry-failed", help="With --resume, run the failed items again too.")]
_MaxFailures = Annotated[
    int | None,
    typer.Option(
        min=1, metavar="N", help="Start no new item once N items failed (default: never stop).", show_default=False
    ),
]
_IdKey = Annotated[
    str | None,
    typer.Option(
        metavar="NAME",
        help="The column with each item's id (default: id; else a digest of the row).",
        show_default=False,
    ),
]
_PromptKey = Annotated[
    str | None,
    typer.Option(metavar="NAME", help="The column with an agent's prompt (default: prompt).", show_default=False),
]
_Ray = Annotated[
    bool,
    typer.Option("--ray", help="Run on a Ray cluster (Ray Data, an actor pool of workers); needs the ray extra."),
]
_RayAddress = Annotated[
    str | None,
    typer.Option(
        metavar="ADDRESS",
        help="With --ray: `local` (default) starts a cluster on this machine; `auto` joins the one running "
        "here (ray start); or ray://HOST:10001.",
        show_default=False,
    ),
]
_RayWorkers = Annotated[
    int | None,
    typer.Option(min=1, metavar="N", help="With --ray: workers (actors) in the pool; default 2.", show_default=False),
]
_Shards = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR",
        help="With --ray: where each worker writes its SQLite file (default: DB.shards next to --db).",
        show_default=False,
    ),
]


def batch(
    target: _Target,
    input: _Input,
    output: _Output,
    runtime: _Runtime = None,
    concurrency: _Concurrency = None,
    resume: _Resume = False,
    overwrite: _Overwrite = False,
    retry_failed: _RetryFailed = False,
    max_failures: _MaxFailures = None,
    id_key: _IdKey = None,
    prompt_key: _PromptKey = None,
    rerun_started: RerunStarted = False,
    allow_module: AllowModule = None,
    ray: _Ray = False,
    ray_address: _RayAddress = None,
    ray_workers: _RayWorkers = None,
    shards: _Shards = None,
    db: Db = None,
    trace: Trace = False,
) -> None:
    """Run an agent on every prompt of a file, or a workflow on every row of inputs, several at once.

    Each item is a stored run, a child of the batch. A batch killed at any point goes on with --resume
    (the options it started with are kept): finished items are not run again, interrupted runs resume
    from the store. A failed item is a row with its error. Exit code 0: every item done; 1: some failed,
    wait for approval, or --max-failures stopped the batch; 130: interrupted (Ctrl-C or SIGTERM).
    """
    kind: Literal["agent", "workflow"] = "workflow" if is_workflow(target) else "agent"
    ray_details = ray_address is not None or ray_workers is not None or shards is not None
    _check_options(
        kind,
        resume=resume,
        overwrite=overwrite,
        retry_failed=retry_failed,
        ray=ray,
        ray_details=ray_details,
        allow_module=bool(allow_module),
    )
    target_name = str(Path(target).resolve()) if kind == "workflow" else target
    with closing(open_store(db, create=True)) as store, tracing(trace), _only_one(output):
        record = _the_batch(store, target_name, output, resume=resume, overwrite=overwrite)
        settings = _Settings.resolve(
            record.options if record is not None else {},
            runtimes=runtime,
            concurrency=concurrency,
            id_key=id_key,
            prompt_key=prompt_key,
            allow_modules=allow_module,
            ray=ray,
            ray_address=ray_address,
            ray_workers=ray_workers,
            shards=shards,
        )
        job, items = _load(kind, target, input, store, settings, rerun_started=rerun_started)
        if record is None:
            options = dataclasses.asdict(settings)
            record = store.begin_batch(
                target=target_name, items=len(items), input=input, output=output, options=options
            )
        else:
            _check_same_items(store, record, items, input)
            store.batch_status(record.id, "running", items=len(items))
        runner = Batch(
            job,
            items,
            batch_id=record.id,
            concurrency=settings.concurrency,
            max_failures=max_failures,
            retry_failed=retry_failed,
        )
        again = _again(target, input, output, db)
        outcome, progress = _drive(runner, settings, target_name, store, output, again)
    _summary(outcome, output, progress, again)
    if outcome.failed or outcome.left:
        raise typer.Exit(SOME_FAILED)


def _check_options(
    kind: Literal["agent", "workflow"],
    *,
    resume: bool,
    overwrite: bool,
    retry_failed: bool,
    ray: bool,
    ray_details: bool,
    allow_module: bool,
) -> None:
    """Refuse options that do not go together, before anything is opened."""
    if resume and overwrite:
        raise CommandError("--resume continues the batch that wrote --output, --overwrite starts a new one: pick one")
    if retry_failed and not resume:
        raise CommandError("--retry-failed goes with --resume (a new batch runs every item anyway)")
    if ray_details and not ray and not resume:  # a resumed batch keeps its own --ray
        raise CommandError("--ray-address, --ray-workers and --shards are for --ray")
    if kind == "agent" and allow_module:
        raise CommandError("--allow-module is for workflows (a .yaml file), not agents")


def _load(
    kind: Literal["agent", "workflow"],
    target: str,
    input: Path,
    store: Store,
    settings: _Settings,
    *,
    rerun_started: bool,
) -> tuple[Job, list[Item]]:
    """The job that runs an item (the agent built per runtime, or the workflow loaded) and the checked items."""
    flow = _load_workflow(target, list(settings.allow_modules)) if kind == "workflow" else None
    cls = agent_class(target) if flow is None else None
    items = read_items(input, kind=kind, id_key=settings.id_key, prompt_key=settings.prompt_key)
    if flow is not None:
        _check_inputs(flow, items, input)
        return WorkflowJob(flow, store=store, runtimes=settings.runtimes), items
    assert cls is not None
    # Many items at once: no terminal questions; a call that needs approval pauses its item.
    agents = [build(cls, target, store, r, ask=False) for r in settings.runtimes]
    return AgentJob(agents, rerun_started=rerun_started), items


def _drive(
    runner: Batch, settings: _Settings, target: str, store: Store, output: Path, again: str
) -> tuple[BatchOutcome, _Progress]:
    """Run the batch here or on Ray; however it ends, the output is rewritten in order and the batch's
    status recorded (`stopped` unless every item has a result)."""
    out, progress = OutputFile(output), _Progress(len(runner.items), output)
    status: BatchStatus = "stopped"
    try:
        with _sigterm_interrupts():
            if settings.ray is None:
                outcome = _run_local(runner, out, progress)
            else:
                spec, options = settings.on_ray(target, runner, store)
                outcome = _run_ray(runner, spec, options, store, out, progress)
        status = "done" if outcome.left == 0 else "stopped"
    except KeyboardInterrupt:
        progress.stop()
        in_flight = (
            "runs in flight were recorded as cancelled"
            if settings.ray is None
            else "the workers' runs in flight stay in their shards"
        )
        printing.say(
            f"interrupted: {progress.done} items finished this time, {len(out.rows)} of {len(runner.items)} in all; "
            f"{in_flight} and go on with: {again}"
        )
        raise typer.Exit(INTERRUPTED) from None
    finally:
        progress.stop()
        out.close([i.id for i in runner.items])  # what finished stays, in order
        store.batch_status(runner.batch_id, status)
    return outcome, progress


@dataclass(frozen=True)
class _Settings:
    """What a batch runs with: given on the command line, else the resumed batch's, else the defaults."""

    runtimes: tuple[str | None, ...]
    concurrency: int
    id_key: str
    prompt_key: str
    allow_modules: tuple[str, ...]
    ray: str | None
    """The Ray address, or None: a local batch."""
    ray_workers: int
    shards: str | None

    @classmethod
    def resolve(
        cls,
        kept: Mapping[str, Any],
        *,
        runtimes: list[str] | None,
        concurrency: int | None,
        id_key: str | None,
        prompt_key: str | None,
        allow_modules: list[str] | None,
        ray: bool,
        ray_address: str | None,
        ray_workers: int | None,
        shards: Path | None,
    ) -> _Settings:
        """What was given, else what the resumed batch `kept`, else the defaults."""
        on_ray = ray or kept.get("ray") is not None
        return cls(
            runtimes=tuple(runtimes or kept.get("runtimes") or [None]),
            concurrency=concurrency or kept.get("concurrency") or 8,
            id_key=id_key or kept.get("id_key") or "id",
            prompt_key=prompt_key or kept.get("prompt_key") or "prompt",
            allow_modules=tuple(allow_modules or kept.get("allow_modules") or ()),
            ray=(ray_address or kept.get("ray") or "local") if on_ray else None,
            ray_workers=ray_workers or kept.get("ray_workers") or 2,
            shards=str(shards.resolve()) if shards is not None else kept.get("shards"),
        )

    def on_ray(self, target: str, runner: Batch, store: Store) -> tuple[WorkerSpec, RayOptions]:
        """What each Ray worker builds, and the cluster's settings."""
        assert self.ray is not None
        spec = WorkerSpec(
            target=target,
            kind=runner.job.kind,
            batch_id=runner.batch_id,
            shards=self.shards or str(store.path.resolve()) + ".shards",
            runtimes=self.runtimes,
            allow_modules=self.allow_modules,
        )
        options = RayOptions(
            address=self.ray, workers=self.ray_workers, concurrency=self.concurrency, env=_agentkit_env()
        )
        return spec, options


def _run_local(runner: Batch, out: OutputFile, progress: _Progress) -> BatchOutcome:
    plan = runner.plan()
    out.open(plan[0])
    progress.start(plan[0])

    def finished(result: ItemResult) -> None:
        out.add(result)
        progress.add(result)

    return asyncio.run(runner.run(finished, plan=plan))


def _run_ray(
    runner: Batch, spec: WorkerSpec, options: RayOptions, store: Store, out: OutputFile, progress: _Progress
) -> BatchOutcome:
    """The batch on Ray; the items whose run stopped midway go on here, from the store (see docs/batch.md)."""
    where = Path(spec.shards)
    merge(store, shard_files(where, spec.batch_id))  # what earlier attempts' workers recorded
    finished, todo = runner.plan()
    out.open(finished)
    progress.start(finished)
    # A worker's SQLite file is new and has none of the stopped runs: the driver goes on with
    # them itself (agents only: a workflow item starts over anyway), the workers take the rest.
    agents = runner.job.kind == "agent"
    here = [(item, run) for item, run in todo if run is not None and agents]
    there = [item for item, run in todo if not (run is not None and agents)]
    results = {r.id: r for r in finished}
    failures = 0
    stopped: str | None = None

    def arrived(result: ItemResult) -> bool:
        nonlocal failures, stopped
        results[result.id] = result
        out.add(result)
        progress.add(result)
        if result.failed:
            failures += 1
            if runner.max_failures is not None and failures >= runner.max_failures:
                stopped = f"{failures} items failed (--max-failures {runner.max_failures})"
                return False
        return True

    if here:
        asyncio.run(runner.run(arrived, plan=([], here)))
    try:
        if there and stopped is None:
            run_on_ray(spec, there, options, arrived)
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    finally:
        report = merge(store, shard_files(where, spec.batch_id))
        progress.note(f"merged {report.total.runs_added} new runs from {len(report.sources)} worker stores in {where}")
    ordered = tuple(results[i.id] for i in runner.items if i.id in results)
    left = len(runner.items) - len(ordered)
    return BatchOutcome(results=ordered, stopped=stopped if left else None, left=left)


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


def _the_batch(store: Store, target: str, output: Path, *, resume: bool, overwrite: bool) -> BatchRecord | None:
    """The batch to go on with (--resume), or None for a new one; refuses to start over one by accident."""
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
    if overwrite:
        return None
    if earlier and earlier[0].status != "done":
        raise CommandError(
            f"batch {earlier[0].id}, writing {output}, did not finish ({earlier[0].status}): "
            "--resume goes on with it, --overwrite starts anew"
        )
    if output.exists() and output.stat().st_size > 0:
        raise CommandError(f"{output} exists: --resume goes on with the batch that wrote it, --overwrite starts anew")
    return None


def _check_same_items(store: Store, record: BatchRecord, items: list[Item], path: Path) -> None:
    """Refuse to resume with items none of which the batch knows (ids made another way)."""
    stored = store.batch_items(record.id)
    if stored and not any(item.id in stored for item in items):
        raise CommandError(
            f"none of the {len(items)} items of {path} is one of batch {record.id}'s {len(stored)} items: "
            "were their ids made another way (--id-key)?"
        )


@contextmanager
def _only_one(output: Path) -> Iterator[None]:
    """Hold a lock beside the output while the batch runs: a second batch on it is refused."""
    output.parent.mkdir(parents=True, exist_ok=True)
    lock = output.with_name(f".{output.name}.lock")
    with lock.open("a+", encoding="utf-8") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "?"
            raise CommandError(
                f"another agentkit batch (pid {holder}) is writing {output}; wait for it or stop it"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(str(os.getpid()))
        file.flush()
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (kill, a CI timeout, systemd) stops the batch as Ctrl-C does; Ctrl-C works even in a
    process started with SIGINT ignored (a shell's background job)."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])


def _again(target: str, input: Path, output: Path, db: Path | None) -> str:
    """The command line that goes on with this batch (its options are stored with it)."""
    args = ["agentkit", "batch", target, "--input", str(input), "--output", str(output)]
    args += ["--db", str(db)] if db is not None else []
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
