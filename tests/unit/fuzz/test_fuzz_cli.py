"""Fuzz the `agentkit` command's argument parsing: any list of arguments, drawn from the real commands'
option names, a few real files and arbitrary text, gives exit code 0, 1, 2, 3 (paused) or 4 (a missed
gate) with a message, never a traceback or the "this looks like a bug" hint.

Nothing here may start a model, a server or a cluster, or write outside a temporary directory:
- `serve`, `doctor`, `mcp serve` and `eval bfcl` start servers, probe hosts or read benchmark data, so
  their arguments always end in an unknown option: only their parsing runs;
- runtimes are `scripted:` files (and `AGENTKIT_RUNTIME` names one, for anything left to the default);
- `--ray` and `-v` are never drawn (`-v` prints tracebacks on purpose);
- arbitrary text has no `:` or `/`, so it names no module to import and no absolute path; every
  command runs in a fresh temporary directory, with `--db` in it.

Each example runs a whole command in-process, so this target runs a twentieth of the examples (at least 50).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer.main
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from agentkit.cli import app
from agentkit.store import Store
from tests.support.fuzzing import EXAMPLES, fuzz_settings, time_box

PARSING_ONLY = {("serve",), ("doctor",), ("mcp", "serve"), ("eval", "bfcl")}
"""Commands that would start or reach something real: an unknown option stops them at parsing."""
NEVER = {"--ray", "--ray-address", "--ray-workers", "-v", "--verbose", "--"}
UNKNOWN = "--no-such-option-fuzz"

SCRIPT = [{"tool_calls": [{"name": "calculate", "arguments": {"expression": "1+1"}}]}, "two"]
TOOL_FLOW = """\
name: tool-flow
inputs:
  n: {type: integer, default: 1}
steps:
  - id: a
    tool: calculate
    arguments: {expression: "{{ inputs.n }} + 1"}
output: "{{ steps.a.output }}"
"""
AGENT_FLOW = """\
name: agent-flow
runtime: scripted:script.json
steps:
  - id: a
    agent: {instructions: Add., tools: [calculate]}
    prompt: What is 1 + 1?
"""
FILES = {
    "script.json": json.dumps(SCRIPT),
    "tool_flow.yaml": TOOL_FLOW,
    "agent_flow.yaml": AGENT_FLOW,
    "inputs.json": '{"n": 3}',
    "prompts.jsonl": '{"prompt": "hi"}\n{"prompt": "ho"}\n',
    "rows.jsonl": '{"n": 1}\n{"n": "x"}\n',
    "bad.yaml": "name: [\n",
}
VALUES = [
    *FILES,
    "scripted:script.json",
    "scripted:missing.json",
    "nosuchmodule_fuzz:Agent",
    "agentkit.tools:calculate",
    "missing.yaml",
    "runs.db",
    "out.jsonl",
    "n=2",
    "n=x",
    "=",
    "status=done",
    "0",
    "1",
    "-1",
    "1e9",
    "nan",
    "",
    "json",
    "jsonl",
    "done",
    "failed",
]


def _commands() -> dict[tuple[str, ...], Any]:
    """Every command and group by its path (typer's click is vendored: its classes are typed Any here)."""
    found: dict[tuple[str, ...], Any] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        found[path] = command
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


def _seeded_store() -> tuple[Path, list[str]]:
    """A run database holding one workflow run and its agent run (copied into each example's directory),
    and their ids."""
    folder = Path(tempfile.mkdtemp(prefix="agentkit-fuzz-cli-seed-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    database = folder / "runs.db"
    previous = Path.cwd()
    os.chdir(folder)
    try:
        ran = CliRunner(env={"AGENTKIT_CACHE": str(folder / "cache")}).invoke(
            app, ["run", "agent_flow.yaml", "--db", str(database)]
        )
    finally:
        os.chdir(previous)
    assert ran.exit_code == 0, ran.output
    store = Store(database)
    ids = [store.workflow_runs()[0].id, *(run.id for run in store.runs())]
    store.close()
    return database, ids


SEEDED, RUN_IDS = _seeded_store()
COMMANDS = _commands()
OPTIONS = {
    path: sorted({o for p in c.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")})
    for path, c in COMMANDS.items()
}
TEXT = st.text(st.characters(blacklist_characters=":/\\\x00", blacklist_categories=["Cs"]), max_size=12)


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[tuple[str, ...], list[str]]:
    """A command and its arguments: its options, known values and arbitrary text, in any order."""
    path = draw(st.sampled_from(sorted(COMMANDS)), label="command")
    names = [o for o in OPTIONS[path] if o not in NEVER] + ["--help", "--db", "--runtime", "-i"]
    value = st.sampled_from([*VALUES, *RUN_IDS]) | TEXT
    token = st.sampled_from(names).map(lambda name: [name]) | value.map(lambda text: [text])
    pair = st.tuples(st.sampled_from(names), value).map(list)  # an option with a value: parsing goes further
    drawn = draw(st.lists(token | pair, max_size=6), label="arguments")
    arguments = [a for part in drawn for a in part if a not in NEVER]
    if path in PARSING_ONLY:
        arguments = [a for a in arguments if a != "--help"] + [UNKNOWN]
    return path, arguments


@contextmanager
def workspace() -> Iterator[Path]:
    """A fresh directory holding the files the arguments name, as the working directory."""
    previous = Path.cwd()
    folder = Path(tempfile.mkdtemp(prefix="agentkit-fuzz-cli-"))
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(previous)
        shutil.rmtree(folder, ignore_errors=True)


@fuzz_settings(max(50, EXAMPLES // 20))
@given(command_lines())
def test_any_arguments(command: tuple[tuple[str, ...], list[str]]) -> None:
    path, arguments = command
    with workspace() as folder:
        shutil.copyfile(SEEDED, folder / "runs.db")
        runner = CliRunner(
            env={
                "COLUMNS": "200",
                "AGENTKIT_CACHE": str(folder / "cache"),
                "AGENTKIT_RUNTIME": "scripted:script.json",
                "AGENTKIT_DB": str(folder / "runs.db"),
                "AGENTKIT_LOG": None,
                "OTEL_EXPORTER_OTLP_ENDPOINT": None,
                "OTEL_TRACES_EXPORTER": None,
            }
        )
        with time_box(30.0):
            database = ["--db", str(folder / "runs.db")] if "--db" in OPTIONS[path] else []
            result = runner.invoke(app, [*path, *arguments, *database])
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (result.exception, output)
    assert result.exit_code in (0, 1, 2, 3, 4, 130), (result.exit_code, output)
    assert "Traceback" not in output, output
    assert "this looks like a bug" not in output, output
    assert result.exit_code == 0 or output.strip(), "a failure says why"
