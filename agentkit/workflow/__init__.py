"""YAML workflows: agents and tools in a pipeline described in a file, checked before anything runs.

    from agentkit.workflow import Workflow

    flow = Workflow.load("examples/workflows/research.yaml")
    result = flow.run({"topic": "tidal power"}, store="runs.db")
    print(result.output)

`Workflow.load` reads the file and checks all of it (see
`agentkit.workflow.check`); every mistake is one `WorkflowSpecError` line
with the file, line, column and the place in the document. The spec is in
`agentkit.workflow.spec`; its JSON Schema is `docs/workflow.schema.json`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict, Unpack

from agentkit.events import RunParent
from agentkit.runtime import Runtime
from agentkit.store import Store
from agentkit.sync import run_sync
from agentkit.workflow.check import Plan, check
from agentkit.workflow.imports import Importer
from agentkit.workflow.inputs import resolve_inputs
from agentkit.workflow.runner import StepEvent, WorkflowResult, execute
from agentkit.workflow.source import Problem, Source
from agentkit.workflow.spec import WorkflowSpec, json_schema, schema_text

__all__ = [
    "Problem",
    "RunOptions",
    "StepEvent",
    "Workflow",
    "WorkflowResult",
    "WorkflowSpec",
    "json_schema",
    "schema_text",
]


class RunOptions(TypedDict, total=False):
    """How `Workflow.run` (and `arun`) runs."""

    runtime: Runtime | str | None
    """The runtime for agent steps that do not name their own; replaces the file's `runtime`."""
    store: Store | str | Path | None
    """Record the workflow run and its agent runs here."""
    on_event: Callable[[StepEvent], None] | None
    """Called as each step starts, ends or is skipped."""
    parent: RunParent | None
    """What the workflow run is part of (a batch's item), stored with it."""


class Workflow:
    """A checked workflow, ready to run any number of times.

    Build it with `Workflow.load(path)` or `Workflow.parse(text)`.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    @classmethod
    def load(cls, path: str | Path, *, allow_modules: Sequence[str] = ()) -> Workflow:
        """Read and check a workflow file.

        Args:
            path: The YAML file.
            allow_modules: Modules (with their submodules) the workflow may
                import agents and tools from, beyond `agentkit.tools` and
                the file's own directory.

        Raises:
            WorkflowSpecError: what is wrong with the file, every problem at its line.
        """
        source = Source.read(path)
        return cls(check(source, Importer(source.directory, allow_modules)))

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        file: str = "<workflow>",
        directory: str | Path | None = None,
        allow_modules: Sequence[str] = (),
    ) -> Workflow:
        """Check a workflow given as text; `directory` is where its own modules are (default: none)."""
        where = Path(directory).resolve() if directory is not None else None
        source = Source.parse(text, file=file, directory=where)
        return cls(check(source, Importer(where, allow_modules)))

    @property
    def spec(self) -> WorkflowSpec:
        return self.plan.spec

    @property
    def name(self) -> str:
        return self.plan.spec.name

    def inputs(self, given: Mapping[str, Any] | None = None, *, as_text: Sequence[str] = ()) -> dict[str, Any]:
        """The inputs a run would get: `given` checked against the declared types, plus defaults.

        Args:
            given: Values by name.
            as_text: Names whose values are command-line text, read by the input's type.

        Raises:
            WorkflowSpecError: an input is unknown, missing or of the wrong type.
        """
        return resolve_inputs(self.plan.source, self.spec.inputs, given or {}, as_text=frozenset(as_text))

    async def arun(self, inputs: Mapping[str, Any] | None = None, **options: Unpack[RunOptions]) -> WorkflowResult:
        """Run the workflow.

        Args:
            inputs: The inputs by name (checked before any step runs).
            options: `RunOptions`: the `runtime`, a `store`, an `on_event` callback.

        Raises:
            WorkflowSpecError: the inputs do not fit (nothing ran).
            WorkflowFailed: a step failed; its error is the `__cause__`.
        """
        values = self.inputs(inputs)
        store = options.get("store")
        if isinstance(store, str | Path):
            store = Store(store)
        return await execute(
            self.plan,
            values,
            runtime=options.get("runtime"),
            store=store,
            on_event=options.get("on_event"),
            parent=options.get("parent"),
        )

    def run(self, inputs: Mapping[str, Any] | None = None, **options: Unpack[RunOptions]) -> WorkflowResult:
        """`arun` for code that is not async."""
        return run_sync(
            lambda: self.arun(inputs, **options),
            f"workflow {self.name!r}: run() was called inside an event loop; use `await flow.arun(...)`",
        )

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} from {self.plan.source.file} steps={[n.id for n in self.plan.steps]}>"
