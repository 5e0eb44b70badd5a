"""A batch on a Ray cluster: Ray Data over an actor pool of agentkit workers.

    agentkit batch myagents:Summarize --input docs.jsonl --output out.jsonl \\
        --runtime vllm-server:http://gpu-box:8000/v1 --ray --ray-address auto --ray-workers 8

Each worker (a Ray actor) builds the agent, or loads the workflow, once, with
its own runtime: the model is reached through a server URI (`vllm-server:`,
`openai:` for any OpenAI-compatible endpoint such as a Ray Serve LLM app),
several URIs shared by how busy each is. It runs up to `concurrency` items at once on
its event loop, and records their runs in an SQLite file of its own
(`SHARDS/BATCH-HOST-PID.db`: SQLite is never shared over a network file
system). The driver writes the output file as rows come back, and merges the
shards it can see into its store when the batch ends (`agentkit runs merge`
does the same for shards collected from other machines).

Ray is an optional extra: `pip install 'agentkit[ray]'`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentkit.batch import Item, ItemResult, Job
from agentkit.events import RunParent

__all__ = ["INSTALL", "RayOptions", "WorkerSpec", "run_on_ray", "shard_files"]

INSTALL = "--ray needs Ray (Ray Data): pip install 'agentkit[ray]'"


@dataclass(frozen=True, kw_only=True)
class WorkerSpec:
    """What each worker builds: picklable, sent to every actor."""

    target: str
    """`module:Class`, or the workflow file (absolute)."""
    kind: Literal["agent", "workflow"]
    batch_id: str
    shards: str
    """The directory of the workers' SQLite files (absolute; on each worker's own disk)."""
    runtimes: tuple[str | None, ...] = (None,)
    allow_modules: tuple[str, ...] = ()
    concurrency: int = 8
    """Items in flight per worker."""


@dataclass(frozen=True, kw_only=True)
class RayOptions:
    """Where and how wide."""

    address: str = "local"
    """`local` starts a cluster in this process's machine; `auto` joins the one
    running here (`ray start --head`); else `ray://HOST:10001` or `HOST:6379`."""
    workers: int = 2
    """Actors in the pool (each with its own runtime and shard)."""
    concurrency: int = 8
    """Items in flight per worker."""
    num_cpus: float = 1.0
    """CPUs Ray reserves for each worker (they mostly wait on the model server)."""
    env: dict[str, str] = field(default_factory=dict)


def shard_files(shards: Path, batch_id: str) -> list[Path]:
    """The shard files of one batch in `shards`, in name order."""
    return sorted(shards.glob(f"{batch_id}-*.db"))


class _Worker:
    """One Ray actor: the job built once, each call one item (many calls at once on its loop)."""

    spec: WorkerSpec

    def __init__(self) -> None:
        from agentkit.store import Store

        spec = self.spec
        Path(spec.shards).mkdir(parents=True, exist_ok=True)
        path = Path(spec.shards) / f"{spec.batch_id}-{socket.gethostname()}-{os.getpid()}.db"
        self.store = Store(path)
        self.job = build_job(spec, self.store)
        self.slots: asyncio.Semaphore | None = None

    async def __call__(self, batch: dict[str, Any]) -> AsyncIterator[dict[str, list[Any]]]:
        # Ray Data calls this once per block, several blocks at once: the semaphore holds the
        # worker to `concurrency` items in flight whatever the blocks' sizes.
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.spec.concurrency)
        slots = self.slots

        async def one(ident: Any, index: Any, value: str) -> str:
            item = Item(id=str(ident), value=json.loads(value), index=int(index))
            async with slots:
                parent = RunParent(kind="batch", id=self.spec.batch_id, part=item.id)
                result = await self.job.run(item, parent=parent, previous=None)
            return json.dumps(result.row(), ensure_ascii=False)

        rows = await asyncio.gather(*map(one, batch["id"], batch["index"], batch["value"]))
        yield {"id": list(batch["id"]), "index": list(batch["index"]), "row": list(rows)}


def build_job(spec: WorkerSpec, store: Any) -> Job:
    """The job a worker runs items with, recording into `store`."""
    from agentkit.batch import AgentJob, WorkflowJob

    if spec.kind == "workflow":
        from agentkit.workflow import Workflow

        flow = Workflow.load(spec.target, allow_modules=spec.allow_modules)
        return WorkflowJob(flow, store=store, runtimes=spec.runtimes)
    from agentkit.cli.run import agent_class, build

    cls = agent_class(spec.target)
    return AgentJob([build(cls, spec.target, store, runtime, ask=False) for runtime in spec.runtimes])


def run_on_ray(
    spec: WorkerSpec,
    items: Sequence[Item],
    options: RayOptions,
    on_result: Callable[[ItemResult], bool],
) -> None:
    """Run `items` on the cluster; `on_result` hears of each as it comes back and returns False to stop.

    Raises:
        ImportError: Ray is not installed (the message says how to install it).
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise ImportError(INSTALL) from None
    started_here = not ray.is_initialized()
    if started_here:
        # Workers import the agent's module as this process does: from here, or from its sys.path.
        env = {"PYTHONPATH": os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p), **options.env}
        kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
        if options.address == "local":
            # A cluster started here inherits this environment (a runtime_env costs each actor seconds).
            saved = dict(os.environ)
            os.environ.update(env)
            try:
                ray.init(address="local", **kwargs)  # a new cluster, even where RAY_ADDRESS names one
            finally:
                os.environ.clear()
                os.environ.update(saved)
        else:
            ray.init(address=options.address, runtime_env={"env_vars": env}, **kwargs)
    for name in ("ray", "ray.data"):  # their INFO lines would bury the progress bar
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        rows = [{"id": i.id, "index": i.index, "value": json.dumps(i.value, ensure_ascii=False)} for i in items]
        # Small blocks keep every worker busy to the end (a block's items come back together).
        blocks = max(1, min(len(rows), options.workers * options.concurrency * 2))
        # The spec rides on the class (pickled with it): the pool's actors take no arguments.
        worker = type("Worker", (_Worker,), {"spec": dataclasses.replace(spec, concurrency=options.concurrency)})
        dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            worker,
            batch_size=None,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(
                size=options.workers, max_concurrent_calls_per_actor=options.concurrency
            ),
            num_cpus=options.num_cpus,
        )
        for row in dataset.iter_rows():
            result = ItemResult.from_row(json.loads(row["row"]), int(row["index"]))
            if not on_result(result):
                break
    finally:
        if started_here:
            ray.shutdown()
