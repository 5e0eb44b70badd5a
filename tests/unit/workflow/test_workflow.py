"""Workflows that run: order and concurrency, each step kind, outputs, storage, the CLI and the examples.

Tools used here are written to a module in the workflow's own directory, as a
user's would be; agents run on ScriptedRuntime (the runner's logic is under
test, not a model). What a workflow refuses before it runs is in
test_workflow_errors.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from agentkit.cli import app
from agentkit.errors import WorkflowFailed, WorkflowSpecError
from agentkit.messages import SystemMessage, UserMessage
from agentkit.runtimes import ScriptedRuntime
from agentkit.store import Store
from agentkit.workflow import StepEvent, Workflow, json_schema, schema_text

ROOT = Path(__file__).parents[3]
EXAMPLES = ROOT / "examples" / "workflows"

TOOLS = '''
import asyncio
import time

from agentkit import tool

LOG = []
RUNNING = {"now": 0, "most": 0}
MEETING = {}


@tool
async def meet(name: str, party: int) -> str:
    """Wait until `party` callers are here at once (fails after 5 s alone).

    Args:
        name: Who arrives.
        party: How many must meet.
    """
    barrier = MEETING.setdefault(party, asyncio.Barrier(party))
    LOG.append(f"arrive {name}")
    await asyncio.wait_for(barrier.wait(), 5)
    LOG.append(f"met {name}")
    return name


@tool
async def busy(name: str, seconds: float = 0.05) -> str:
    """Work for a while, counting how many work at once.

    Args:
        name: Whose work.
        seconds: How long.
    """
    RUNNING["now"] += 1
    RUNNING["most"] = max(RUNNING["most"], RUNNING["now"])
    LOG.append(f"start {name}")
    await asyncio.sleep(seconds)
    RUNNING["now"] -= 1
    LOG.append(f"end {name}")
    return name.upper()


@tool
async def fail_once(reason: str, after: str) -> str:
    """Fails once `after` is in the log (waits up to 5 s for it).

    Args:
        reason: Why.
        after: The log entry to wait for.
    """
    for _ in range(500):
        if after in LOG:
            break
        await asyncio.sleep(0.01)
    raise RuntimeError(reason)


@tool
def fail(reason: str) -> str:
    """Always fails.

    Args:
        reason: Why.
    """
    raise RuntimeError(reason)


@tool
def echo(value: object) -> object:
    """Return the value.

    Args:
        value: Anything.
    """
    LOG.append(f"echo {value!r}")
    return value
'''


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A workflow directory with a tools module of its own (a fresh name per test)."""
    name = f"wf_tools_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TOOLS, encoding="utf-8")
    yield tmp_path
    sys.modules.pop(name, None)


def tools_module(folder: Path) -> str:
    return next(folder.glob("wf_tools_*.py")).stem


def load(folder: Path, text: str) -> Workflow:
    """Write `text` (with `T` standing for the tools module) as a workflow file and load it."""
    path = folder / "flow.yaml"
    path.write_text(textwrap.dedent(text).replace("T:", tools_module(folder) + ":"), encoding="utf-8")
    return Workflow.load(path)


def module_of(folder: Path) -> Any:
    return sys.modules[tools_module(folder)]


# --- order and concurrency ---------------------------------------------------------------------


def test_independent_steps_run_at_once_and_a_reader_waits_for_what_it_reads(folder: Path) -> None:
    flow = load(
        folder,
        """
        name: meet
        steps:
          - id: a
            tool: T:meet
            arguments: {name: a, party: 2}
          - id: b
            tool: T:meet
            arguments: {name: b, party: 2}
          - id: c
            tool: T:echo
            arguments: {value: "{{ steps.a.output }}+{{ steps.b.output }}"}
        """,
    )
    assert [[d.id for d in n.deps] for n in flow.plan.steps] == [[], [], ["a", "b"]]
    result = flow.run()  # a and b each wait for the other: run one after the other, they would time out
    assert result.output == "a+b"
    log = module_of(folder).LOG
    assert log[:2] == ["arrive a", "arrive b"]
    assert log[-1] == "echo 'a+b'"


def test_needs_orders_steps_that_read_nothing_of_each_other(folder: Path) -> None:
    flow = load(
        folder,
        """
        name: ordered
        steps:
          - id: first
            tool: T:busy
            arguments: {name: first}
          - id: second
            tool: T:busy
            arguments: {name: second}
            needs: [first]
        """,
    )
    flow.run()
    assert module_of(folder).LOG == ["start first", "end first", "start second", "end second"]


def test_foreach_keeps_the_items_order_and_its_concurrency_bound(folder: Path) -> None:
    flow = load(
        folder,
        """
        name: fan
        inputs:
          names: {type: list, items: string}
        steps:
          - id: each
            foreach: "{{ inputs.names }}"
            as: who
            concurrency: 2
            steps:
              - id: work
                tool: T:busy
                arguments: {name: "{{ who }}{{ index }}", seconds: "{{ 0.05 - index * 0.01 }}"}
        """,
    )
    events: list[StepEvent] = []
    result = flow.run({"names": ["a", "b", "c", "d", "e"]}, on_event=events.append)
    ended = [line for line in module_of(folder).LOG if line.startswith("end")]
    assert ended != sorted(ended)  # later items are shorter: they finish out of order...
    assert result.output == ["A0", "B1", "C2", "D3", "E4"]  # ...and the output keeps the items' order
    assert module_of(folder).RUNNING["most"] == 2
    done = {e.step for e in events if e.status == "done"}
    assert done == {"each", *(f"each[{i}].work" for i in range(5))}
    assert next(e for e in events if e.step == "each" and e.status == "done").detail == "5 items"


def test_parallel_branches_run_at_once_and_give_a_mapping(folder: Path) -> None:
    flow = load(
        folder,
        """
        name: branches
        steps:
          - id: both
            parallel:
              - id: left
                tool: T:meet
                arguments: {name: left, party: 2}
              - id: right
                tool: T:meet
                arguments: {name: right, party: 2}
          - id: after
            tool: T:echo
            arguments: {value: "{{ steps.both.output.left }}"}
        """,
    )
    result = flow.run()
    assert result.steps["both"] == {"left": "left", "right": "right"}
    assert result.output == "left"


# --- when, loops, templates --------------------------------------------------------------------

CONDITIONAL = """
name: conditional
inputs:
  n: {type: integer}
steps:
  - id: check
    when: "{{ inputs.n > 2 }}"
    then:
      - id: big
        tool: T:echo
        arguments: {value: big}
    else:
      - id: small
        tool: T:echo
        arguments: {value: small}
  - id: only_if
    when: inputs.n > 100
    then:
      - id: huge
        tool: T:echo
        arguments: {value: huge}
"""


@pytest.mark.parametrize(("n", "taken", "skipped"), [(3, "big", "small"), (1, "small", "big")])
def test_when_runs_one_branch_and_records_the_other_as_skipped(
    folder: Path, tmp_path: Path, n: int, taken: str, skipped: str
) -> None:
    store = Store(tmp_path / "runs.db")
    result = load(folder, CONDITIONAL).run({"n": n}, store=store)
    assert result.steps == {"check": taken, "only_if": None}
    steps = {s.step: s for s in store.workflow_run(result.workflow_run).steps}
    assert (steps[taken].status, steps[taken].output) == ("done", taken)
    assert steps[skipped].status == "skipped"
    assert steps["huge"].status == "skipped"
    assert steps["check"].status == steps["only_if"].status == "done"


def test_a_loop_stops_when_until_holds_and_passes_the_previous_output(folder: Path) -> None:
    flow = load(
        folder,
        """
        name: loop
        steps:
          - id: grow
            max_iterations: 5
            until: steps.add.output | length >= 3
            steps:
              - id: add
                tool: T:echo
                arguments: {value: "{{ (previous or []) + [iteration] }}"}
        """,
    )
    events: list[StepEvent] = []
    result = flow.run(on_event=events.append)
    assert result.output == [0, 1, 2]
    done = [e.step for e in events if e.status == "done"]
    assert done == ["grow[0].add", "grow[1].add", "grow[2].add", "grow"]
    assert events[-1].detail == "3 iterations, until held"


def test_a_loop_that_never_meets_until_stops_at_max_iterations(folder: Path) -> None:
    flow = load(
        folder,
        """
        name: loop
        steps:
          - id: spin
            max_iterations: 2
            until: "false"
            steps:
              - id: again
                tool: T:echo
                arguments: {value: "{{ iteration }}"}
        """,
    )
    events: list[StepEvent] = []
    assert flow.run(on_event=events.append).output == 1
    assert events[-1].detail == "2 iterations, the most allowed; until never held"


def test_one_expression_keeps_its_type_and_text_writes_lists_as_json(folder: Path) -> None:
    flow = load(
        folder,
        """
        name: values
        inputs:
          xs: {type: list, default: [1, "two"]}
          flag: {type: boolean, default: false}
        steps:
          - id: native
            tool: T:echo
            arguments: {value: "{{ inputs.xs }}"}
          - id: text
            tool: T:echo
            arguments: {value: "xs={{ inputs.xs }} flag={{ inputs.flag }}"}
        output:
          native: "{{ steps.native.output }}"
          text: "{{ steps.text.output }}"
          flag: "{{ not inputs.flag }}"
        """,
    )
    assert flow.run().output == {"native": [1, "two"], "text": 'xs=[1, "two"] flag=False', "flag": True}


# --- agents ----------------------------------------------------------------------------------


def test_instructions_and_prompts_that_render_to_data_reach_the_model_as_json(folder: Path) -> None:
    flow = load(
        folder,
        """
        name: data
        inputs:
          rules: {type: object, default: {tone: kind, words: 50}}
        steps:
          - id: write
            agent: {instructions: "{{ inputs.rules }}"}
            prompt: "{{ [inputs.rules.tone, 'ü'] }}"
        """,
    )
    runtime = ScriptedRuntime(["ok"])
    flow.run(runtime=runtime)
    system, user = runtime.requests[0].messages[:2]
    assert isinstance(system, SystemMessage)
    assert isinstance(user, UserMessage)
    assert json.loads(system.text) == {"tone": "kind", "words": 50}
    assert user.text == '["kind", "ü"]'


def test_an_inline_agent_answers_to_its_output_schema(folder: Path, tmp_path: Path) -> None:
    flow = load(
        folder,
        """
        name: typed
        steps:
          - id: rate
            agent:
              instructions: Rate it.
              output:
                type: object
                properties: {score: {type: integer, minimum: 1, maximum: 5}}
                required: [score]
            prompt: Rate this.
          - id: report
            tool: T:echo
            arguments: {value: "{{ steps.rate.output.score * 2 }}"}
        """,
    )
    runtime = ScriptedRuntime(['{"score": 9}', '{"score": 4}'])
    store = Store(tmp_path / "runs.db")
    result = flow.run(runtime=runtime, store=store)
    assert result.output == 8
    assert runtime.requests[0].output_schema == {
        "type": "object",
        "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["score"],
    }
    (run,) = store.runs(workflow_run=result.workflow_run)
    assert run.steps == 2  # the answer out of range was sent back, and the model corrected it
    assert run.output == {"score": 4}
    assert run.name == "rate"
    assert run.workflow_step == "rate"


def test_a_class_agent_step_runs_the_class_with_the_workflows_runtime(folder: Path, tmp_path: Path) -> None:
    (folder / "typed_agents.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel

            from agentkit import Agent


            class Verdict(BaseModel):
                ok: bool
                reason: str


            class Judge(Agent[Verdict]):
                instructions = "Judge it."
                output_type = Verdict
            """
        ),
        encoding="utf-8",
    )
    try:
        flow = load(
            folder,
            """
            name: judged
            steps:
              - id: judge
                agent: typed_agents:Judge
                prompt: Is it fine?
            output: "{{ steps.judge.output.reason }}"
            """,
        )
        store = Store(tmp_path / "runs.db")
        result = flow.run(runtime=ScriptedRuntime(['{"ok": true, "reason": "tidy"}']), store=store)
    finally:
        sys.modules.pop("typed_agents", None)
    assert result.output == "tidy"
    assert result.steps["judge"] == {"ok": True, "reason": "tidy"}
    (run,) = store.runs(workflow_run=result.workflow_run)
    assert run.agent == "typed_agents:Judge"


def test_a_steps_own_runtime_wins_over_the_one_given_to_run(folder: Path) -> None:
    script = folder / "own.json"
    script.write_text(json.dumps(["from its own script"]), encoding="utf-8")
    flow = load(
        folder,
        f"""
        name: runtimes
        runtime: scripted:{folder / "never.json"}
        steps:
          - id: own
            agent: {{instructions: Hi.}}
            prompt: Hello.
            runtime: scripted:{script}
          - id: given
            agent: {{instructions: Hi.}}
            prompt: Hello.
        """,
    )
    result = flow.run(runtime=ScriptedRuntime(["from the runtime given"]))
    assert result.steps == {"own": "from its own script", "given": "from the runtime given"}


def test_agentkit_runtime_is_one_runtime_shared_by_the_steps(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One script for the whole workflow: each step takes the next turn, as with --runtime.
    script = folder / "turns.json"
    script.write_text(json.dumps(["first answer", "second answer"]), encoding="utf-8")
    monkeypatch.setenv("AGENTKIT_RUNTIME", f"scripted:{script}")
    flow = load(
        folder,
        """
        name: env
        steps:
          - id: one
            agent: {instructions: Hi.}
            prompt: Hello.
          - id: two
            agent: {instructions: Hi.}
            prompt: "{{ steps.one.output }}"
        """,
    )
    assert flow.run().steps == {"one": "first answer", "two": "second answer"}


# --- failures -----------------------------------------------------------------------------------


def test_a_failing_step_stops_the_workflow_and_keeps_what_finished(folder: Path, tmp_path: Path) -> None:
    flow = load(
        folder,
        """
        name: breaks
        steps:
          - id: fine
            tool: T:echo
            arguments: {value: kept}
          - id: slow
            tool: T:busy
            arguments: {name: slow, seconds: 5}
          - id: broken
            tool: T:fail_once
            arguments: {reason: "disk full ({{ steps.fine.output }})", after: start slow}
          - id: never
            tool: T:echo
            arguments: {value: "{{ steps.broken.output }}"}
        """,
    )
    store = Store(tmp_path / "runs.db")
    with pytest.raises(WorkflowFailed) as caught:
        flow.run(store=store)
    assert caught.value.step == "broken"
    assert "tool 'fail_once' raised RuntimeError: disk full (kept)" in str(caught.value)
    record = store.workflow_run(caught.value.workflow_run or "")
    assert record.status == "failed"
    assert "disk full" in (record.error or "")
    steps = {s.step: (s.status, s.output) for s in record.steps}
    assert steps == {"fine": ("done", "kept"), "slow": ("cancelled", None), "broken": ("failed", None)}
    assert "start slow" in module_of(folder).LOG
    assert "end slow" not in module_of(folder).LOG  # cancelled before it ended
    chain: list[BaseException] = []
    error: BaseException | None = caught.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert not any("no running event loop" in str(e) for e in chain), chain


def test_a_failure_inside_foreach_names_the_item(folder: Path) -> None:
    flow = load(
        folder,
        """
        name: items
        inputs:
          xs: {type: list, default: [ok, bad]}
        steps:
          - id: each
            foreach: "{{ inputs.xs }}"
            steps:
              - id: check
                tool: T:fail
                arguments: {reason: "{{ item }}"}
        """,
    )
    with pytest.raises(WorkflowFailed, match=r"at step each\[\d\]\.check: .*RuntimeError") as caught:
        flow.run()
    assert re.fullmatch(r"each\[[01]\]\.check", caught.value.step)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            """
            name: sandbox
            steps:
              - id: first
                tool: T:echo
                arguments: {value: 1}
              - id: peek
                tool: T:echo
                arguments: {value: "{{ steps.first.output.__class__.__mro__ }}"}
            """,
            r"flow.yaml:9:\d+: steps\[1\].arguments.value: the template failed: .*unsafe",
            id="templates-are-sandboxed",
        ),
        pytest.param(
            """
            name: items
            inputs:
              xs: {type: object, default: {a: 1}}
            steps:
              - id: each
                foreach: "{{ inputs.xs }}"
                steps:
                  - id: show
                    tool: T:echo
                    arguments: {value: "{{ item }}"}
            """,
            "foreach needs a list, got dict",
            id="foreach-over-something-not-a-list",
        ),
    ],
)
def test_a_step_that_cannot_run_fails_the_workflow(folder: Path, text: str, match: str) -> None:
    flow = load(folder, text)
    with pytest.raises(WorkflowFailed, match=match):
        flow.run()


def test_a_template_that_fails_at_run_time_says_where_it_is(folder: Path) -> None:
    flow = load(
        folder,
        """
        name: late
        steps:
          - id: first
            tool: T:echo
            arguments: {value: {a: 1}}
          - id: second
            tool: T:echo
            arguments: {value: "{{ steps.first.output.b }}"}
        """,
    )
    with pytest.raises(WorkflowFailed) as caught:
        flow.run()
    assert caught.value.step == "second"
    assert "flow.yaml:9:24: steps[1].arguments.value: the template failed: 'dict object' has no attribute 'b'" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("{{ 1 / inputs.n }}", "ZeroDivisionError: division by zero"),
        ("{{ 'a' + inputs.n }}", "TypeError: can only concatenate str"),
        ("{{ 9 ** 99999999 }}", "too large a number for a template"),
        ("{{ 'ab' * 999999999 }}", "makes too large a value"),
    ],
)
def test_an_output_template_that_raises_fails_the_workflow_at_its_place(
    folder: Path, template: str, match: str
) -> None:
    # Found by tests/unit/fuzz/test_fuzz_workflow.py: an expression's own error (not jinja2's) escaped
    # Workflow.run as it was; a huge power or repetition ran for minutes.
    flow = load(
        folder,
        f"""
        name: late
        inputs:
          n: {{type: integer, default: 0}}
        steps:
          - id: first
            tool: T:echo
            arguments: {{value: 1}}
        output: "{template}"
        """,
    )
    with pytest.raises(WorkflowFailed, match=re.escape(match)) as caught:
        flow.run()
    assert caught.value.step == "(output)"
    assert "flow.yaml:9:9: output: the template failed: " in str(caught.value)


def test_run_refuses_bad_inputs_before_anything_runs(folder: Path, tmp_path: Path) -> None:
    flow = load(folder, CONDITIONAL)
    store = Store(tmp_path / "runs.db")
    with pytest.raises(
        WorkflowSpecError, match=r"flow.yaml:4:3: inputs.n: the input 'n': 'x' is not of type 'integer'"
    ):
        flow.run({"n": "x"}, store=store)
    assert store.workflow_runs() == []
    assert module_of(folder).LOG == []


# --- the examples -------------------------------------------------------------------------------


def example(name: str) -> tuple[Workflow, ScriptedRuntime]:
    flow = Workflow.load(EXAMPLES / f"{name}.yaml")
    return flow, ScriptedRuntime.from_file(EXAMPLES / "scripted" / f"{name}.json")


def test_the_research_example_chains_two_agents(tmp_path: Path) -> None:
    flow, runtime = example("research")
    store = Store(tmp_path / "runs.db")
    result = flow.run({"topic": "tidal power", "audience": "children"}, runtime=runtime, store=store)
    facts = ["Tidal power turns the rise and fall of the sea into electricity.", "Tides are predictable years ahead."]
    assert result.output["facts"] == facts
    assert result.output["summary"].startswith("Tidal power makes electricity")
    writer = runtime.requests[-1]
    assert writer.messages[0].text == "You write short, plain summaries for children."  # type: ignore[union-attr]
    assert "- Tides are predictable years ahead." in writer.messages[1].text  # type: ignore[union-attr]
    runs = {r.workflow_step: r for r in store.runs(workflow_run=result.workflow_run)}
    assert set(runs) == {"research", "summary"}
    assert runs["research"].name == "Researcher"
    research = store.load(runs["research"].id)
    assert research.steps[0].results[0].content[0].startswith("Tidal power turns")  # the look_up tool really ran


def test_the_forecast_example_fans_out_over_the_cities(tmp_path: Path) -> None:
    flow, runtime = example("forecast")
    store = Store(tmp_path / "runs.db")
    events: list[StepEvent] = []
    result = flow.run(runtime=runtime, store=store, on_event=events.append)
    assert result.output == {
        "forecasts": [
            "It is -3 degrees and snowing in Oslo.",
            "It is 19 degrees and cloudy in Lima.",
            "It is 24 degrees and sunny in Tokyo.",
        ],
        "warmest": "Tokyo",
    }
    runs = store.runs(workflow_run=result.workflow_run)
    assert sorted(r.workflow_step or "" for r in runs) == [f"forecasts[{i}].forecast" for i in range(3)]
    for run in runs:
        (step, _) = store.load(run.id).steps
        assert step.results[0].content.startswith(("-3 degrees", "19 degrees", "24 degrees"))
    started = [e.step for e in events if e.status == "started"]
    assert started.index("warmest") < started.index("forecasts[2].forecast")  # it did not wait for the fan-out


@pytest.mark.parametrize(
    ("message", "kind", "taken", "skipped"),
    [
        ("Checkout is down for everyone!", "outage", "escalate", "reply"),
        ("How do I export?", "question", "reply", "escalate"),
    ],
)
def test_the_triage_example_takes_one_branch(tmp_path: Path, message: str, kind: str, taken: str, skipped: str) -> None:
    flow, _ = example("triage")
    runtime = ScriptedRuntime(
        {
            "Classify this message": [json.dumps({"kind": kind, "urgent": False})],
            "Write a ticket for": ["TICKET"],
            "Answer this customer": ["ANSWER"],
        }
    )
    store = Store(tmp_path / "runs.db")
    result = flow.run({"message": message}, runtime=runtime, store=store)
    assert result.output == {
        "kind": kind,
        "escalated": kind == "outage",
        "response": "TICKET" if taken == "escalate" else "ANSWER",
    }
    steps = {s.step: s.status for s in store.workflow_run(result.workflow_run).steps}
    assert steps == {"classify": "done", "route": "done", taken: "done", skipped: "skipped"}


def test_the_examples_fit_the_published_schema() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))) == [], path
        assert path.read_text(encoding="utf-8").startswith("# yaml-language-server: $schema=../../docs/workflow.")
    wrong = {"name": "x", "steps": [{"id": "a", "tool": "calculate", "argument": {}}]}
    assert list(validator.iter_errors(wrong)) != []


# --- the command line ---------------------------------------------------------------------------


def cli(*args: str) -> Any:
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, list(args), catch_exceptions=False)


def test_the_cli_runs_a_workflow_with_progress_per_step(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    result = cli(
        "run", str(EXAMPLES / "forecast.yaml"), "-i", 'cities=["Lima", "Oslo"]', "-i", "unit=celsius",
        "--runtime", f"scripted:{EXAMPLES / 'scripted' / 'forecast.json'}", "--db", str(db),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "forecasts": ["It is 19 degrees and cloudy in Lima.", "It is -3 degrees and snowing in Oslo."],
        "warmest": "Lima",
    }
    progress = result.stderr.splitlines()
    assert "→ forecasts · foreach" in progress
    assert any(
        re.fullmatch(r"✓ forecasts\[1\]\.forecast · agent · \d+\.\d s · run \w{26} · It is -3 .*", line)
        for line in progress
    ), progress
    assert any(re.fullmatch(r"✓ forecasts · foreach · \d+\.\d s · 2 items · .*", line) for line in progress)
    run_id = re.fullmatch(r"workflow run (\w{26}) done", progress[-1])
    assert run_id is not None
    shown = cli("workflow", "show", run_id[1], "--db", str(db))
    assert shown.exit_code == 0, shown.output
    step_run = re.search(
        r"forecasts\[0\]\.forecast\s+agent\s+done\s+\d+\.\d s\s+It is 19 degrees.*\s(\w{26})", shown.stdout
    )
    assert step_run is not None, shown.stdout
    agent_run = cli("runs", "show", step_run[1], "--db", str(db))
    assert f"step forecasts[0].forecast of workflow run {run_id[1]}" in agent_run.stdout
    listed = cli("workflow", "list", "--status", "done", "--db", str(db)).stdout
    inputs = re.escape('{"cities": ["Lima", "Oslo"], "unit": "celsius"}')
    assert re.search(rf"{run_id[1]} │ city-forecasts │ done   │ {inputs} │ \d+ s ago", listed), listed


def test_the_cli_reads_inputs_from_a_file_and_text_by_type(folder: Path, tmp_path: Path) -> None:
    load(
        folder,
        """
        name: typed
        inputs:
          n: {type: integer}
          ok: {type: boolean}
          names: {type: list}
        steps:
          - id: show
            tool: T:echo
            arguments: {value: ["{{ inputs.n + 1 }}", "{{ inputs.ok }}", "{{ inputs.names }}"]}
        """,
    )
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"names": ["x"], "n": 99}), encoding="utf-8")
    db = str(tmp_path / "runs.db")
    result = cli("run", str(folder / "flow.yaml"), "--inputs", str(inputs), "-i", "n=41", "-i", "ok=yes", "--db", db)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [42, True, ["x"]]  # -i wins over the file


def test_a_failed_workflow_exits_1_and_names_its_stored_run(folder: Path, tmp_path: Path) -> None:
    load(
        folder,
        """
        name: breaks
        steps:
          - id: broken
            tool: T:fail
            arguments: {reason: no luck}
        """,
    )
    result = cli("run", str(folder / "flow.yaml"), "--db", str(tmp_path / "runs.db"))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert (
        "error: workflow 'breaks' failed at step broken: ToolExecutionError: tool 'fail' raised RuntimeError: no luck"
        in result.stderr
    )
    failed = re.search(r"workflow run (\w{26}) failed \(agentkit workflow show \w{26}\)", result.stderr)
    assert failed is not None, result.stderr
    valid = cli("workflow", "validate", str(folder / "flow.yaml"))
    assert valid.stdout.endswith("workflow 'breaks' is valid: 1 step, inputs: none\n"), valid.output
    listed = cli("workflow", "list", "--db", str(tmp_path / "runs.db"))
    assert listed.exit_code == 0, listed.output
    assert re.search(rf"{failed[1]} │ breaks +│ failed │ {{}} +│ \d+ s ago", listed.stdout), listed.stdout
    nothing = cli("workflow", "list", "--status", "done", "--db", str(tmp_path / "runs.db"))
    assert "no workflow runs with status done" in nothing.stdout
    refused = cli("workflow", "list", "--status", "budget_exhausted", "--db", str(tmp_path / "runs.db"))
    assert refused.exit_code == 1
    assert "unknown status 'budget_exhausted'; use one of running, done, failed, cancelled" in refused.stderr


def test_validate_and_schema_commands(tmp_path: Path) -> None:
    valid = cli("workflow", "validate", str(EXAMPLES / "triage.yaml"))
    assert valid.exit_code == 0
    assert valid.stdout.endswith("triage.yaml: workflow 'support-triage' is valid: 4 steps, inputs: message\n")
    schema = cli("workflow", "schema")
    assert schema.exit_code == 0
    assert schema.stdout == schema_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "examples/workflows/triage.yaml", "hello"], "a workflow takes inputs, not a prompt"),
        (["run", "agentkit.agent:Agent", "-i", "a=1", "hi"], "--input, --inputs and --allow-module are for workflows"),
        (["run", "agentkit.agent:Agent"], "give a prompt"),
        (["run", "examples/workflows/triage.yaml", "-i", "message"], "write KEY=VALUE"),
    ],
)
def test_the_cli_says_what_it_needs(args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr


# --- helpers not covered elsewhere --------------------------------------------------------------


def test_workflow_run_refuses_a_running_event_loop(folder: Path) -> None:
    flow = load(
        folder,
        """
        name: inside
        steps:
          - id: a
            tool: T:echo
            arguments: {value: 1}
        """,
    )

    async def inside() -> None:
        with pytest.raises(RuntimeError, match=r"use `await flow\.arun"):
            flow.run()
        assert (await flow.arun()).output == 1

    asyncio.run(inside())


def test_an_inline_planning_agent_runs_its_plan_as_a_graph(folder: Path, tmp_path: Path) -> None:
    flow = load(
        folder,
        """
        name: planned
        steps:
          - id: plan
            agent:
              instructions: Do it in one plan.
              tools: [T:busy, T:echo]
              planning: true
              max_replans: 0
            prompt: Work for a and b, then echo what a gave.
        """,
    )
    plan = {
        "tool_calls": [
            {"name": "busy", "arguments": {"name": "a"}},
            {"name": "busy", "arguments": {"name": "b"}},
            {"name": "echo", "arguments": {"value": {"$ref": "$1"}}},
        ]
    }
    runtime = ScriptedRuntime([plan, "A and B."])
    store = Store(tmp_path / "runs.db")
    result = flow.run(runtime=runtime, store=store)
    assert result.output == "A and B."
    assert [r.plan for r in runtime.requests] == [True, False]  # max_replans 0: the join turn must answer
    log = module_of(folder).LOG
    assert log.index("echo 'A'") > log.index("end a")  # echo ran on a's result, once a was done
    assert module_of(folder).RUNNING["most"] == 2  # a and b ran at once
    (run,) = store.runs(workflow_run=result.workflow_run)
    (step, _) = store.load(run.id).steps
    assert step.depends_on[step.response.message.tool_calls[2].id] == (step.response.message.tool_calls[0].id,)


def test_an_inline_agent_refuses_a_negative_max_replans(folder: Path) -> None:
    with pytest.raises(WorkflowSpecError, match="max_replans"):
        load(
            folder,
            """
            name: planned
            steps:
              - id: plan
                agent: {instructions: Hi., planning: true, max_replans: -1}
                prompt: Hi.
            """,
        )
