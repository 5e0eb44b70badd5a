"""What a workflow refuses before any step runs: each mistake at its file, line, column and place in the document.

Every YAML text here is dedented with its first line as line 1, so the
expected positions can be counted in the source. Each case asserts the exact
position, the path (as `format_path` writes it) and the phrase a user acts on;
the command-line tests also check that nothing ran: a first step that would
write a marker file did not, and no workflow run was stored.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import tests.support.weather
from agentkit.cli import app
from agentkit.errors import WorkflowSpecError
from agentkit.store import Store
from agentkit.workflow import Workflow
from agentkit.workflow.source import format_path

# --- helpers ------------------------------------------------------------------------------------

MARK_TOOLS = '''
from pathlib import Path

from agentkit import tool

GREETING = "hello"


@tool
def mark(path: str) -> str:
    """Write a marker file (a step that ran leaves it behind).

    Args:
        path: The file.
    """
    Path(path).write_text("ran", encoding="utf-8")
    return "marked"


@tool
def shout(text: str, times: int = 1) -> str:
    """Shout.

    Args:
        text: What to shout.
        times: How often.
    """
    return " ".join([text.upper()] * times)


class NotAnAgent:
    """A class that is no Agent."""
'''

Modules = Callable[..., str]


def write(folder: Path, text: str, name: str = "flow.yaml") -> Path:
    """`text`, dedented and starting at line 1, as a workflow file in `folder`."""
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def refused(folder: Path, text: str, *, allow_modules: tuple[str, ...] = ()) -> WorkflowSpecError:
    """The error `Workflow.load` raises for `text` written as a file in `folder`."""
    path = write(folder, text)
    with pytest.raises(WorkflowSpecError) as caught:
        Workflow.load(path, allow_modules=allow_modules)
    assert caught.value.file == str(path)
    return caught.value


def assert_one(error: WorkflowSpecError, line: int, column: int, path: str, phrase: str) -> None:
    """One problem at `line:column` and `path` whose message holds `phrase`, rendered `FILE:L:C: PATH: MESSAGE`."""
    assert len(error.problems) == 1, str(error)
    (problem,) = error.problems
    assert (problem.line, problem.column, format_path(problem.path)) == (line, column, path), str(error)
    assert phrase in problem.message, str(error)
    where = f"{path}: " if problem.path else ""
    assert str(error) == f"{error.file}:{line}:{column}: {where}{problem.message}"
    assert "\n" not in str(error)


def at(where: str) -> tuple[int, int, str]:
    """`"LINE:COLUMN PATH"` as its three parts."""
    position, _, path = where.partition(" ")
    line, column = position.split(":")
    return int(line), int(column), path


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Modules]:
    """Write a module (into the workflow's directory unless told) under a fresh name; returns the name."""
    written: list[str] = []

    def make(source: str = MARK_TOOLS, stem: str = "helpers", folder: Path = tmp_path) -> str:
        name = f"{stem}_{uuid.uuid4().hex[:8]}"
        (folder / f"{name}.py").write_text(source, encoding="utf-8")
        written.append(name)
        return name

    yield make
    for name in written:
        sys.modules.pop(name, None)


def cli(*args: str) -> Result:
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, list(args), catch_exceptions=False)


def assert_cli_refused(result: Result, file: Path, line: int, column: int, path: str, phrase: str) -> None:
    """Exit code 1, nothing on stdout, and the one problem as `error: FILE:L:C: PATH: ...` on stderr."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    prefix = f"error: {file}:{line}:{column}: {path}: "
    assert result.stderr.startswith(prefix), result.stderr
    assert phrase in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output


def assert_nothing_ran(marker: Path, db: Path) -> None:
    assert not marker.exists(), "a step ran"
    if db.exists():
        store = Store(db)
        try:
            assert store.workflow_runs() == []
        finally:
            store.close()


# --- one mistake, one message at its place ------------------------------------------------------

CASES = [
    # YAML that does not parse
    pytest.param(
        """
        name: broken
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1 + 1"
          - id: b
            tool: calculate
        """,
        "6:3 (top)",
        "not valid YAML: expected ',' or '}', but got '-' (while parsing a flow mapping, from line 5, column 16)",
        id="yaml-unclosed-flow-mapping",
    ),
    pytest.param(
        """
        name: broken
        steps:
          - id: a
           tool: calculate
        """,
        "4:4 (top)",
        "not valid YAML: expected <block end>",
        id="yaml-bad-indentation",
    ),
    pytest.param(
        """
        name: broken
        steps:
          - id: a
            agent: {instructions: Greet.}
            prompt: "Hello
        """,
        "6:1 (top)",
        "not valid YAML: found unexpected end of stream (while scanning a quoted scalar, from line 5, column 13)",
        id="yaml-unclosed-quote",
    ),
    pytest.param(
        "name: broken\nsteps:\n\t- id: a\n",
        "3:1 (top)",
        "not valid YAML: found character '\\t' that cannot start any token",
        id="yaml-tab-indentation",
    ),
    pytest.param(
        # PyYAML's reader refuses it while the loader is made, before any parsing.
        "name: hello\x00\nsteps: []\n",
        "1:12 (top)",
        "not valid YAML: the character",
        id="yaml-control-character",
    ),
    pytest.param(
        """
        name: twice
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
            tool: calculate
        """,
        "6:5 steps[0].tool",
        "the key 'tool' is given twice (first on line 4); keep one",
        id="duplicate-key",
    ),
    pytest.param(
        """
        name: keys
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
            ? [a, b]
            : c
        """,
        "6:7 steps[0]",
        "a key must be a plain name",
        id="key-that-is-not-a-plain-name",
    ),
    # the shape: unknown keys, wrong types, step kinds
    pytest.param(
        """
        name: typo
        steps:
          - id: a
            tool: calculate
            argumnets: {expression: "1"}
        """,
        "5:5 steps[0].argumnets",
        "unknown key 'argumnets' in a tool step; did you mean 'arguments'?",
        id="unknown-key-in-a-tool-step",
    ),
    pytest.param(
        """
        name: typo
        descripton: Says hello.
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
        """,
        "2:1 descripton",
        "unknown key 'descripton'; did you mean 'description'?",
        id="unknown-top-level-key",
    ),
    pytest.param(
        """
        name: typo
        steps:
          - id: a
            agent:
              instructions: Help.
              toolz: [calculate]
            prompt: Hi.
        """,
        "6:7 steps[0].agent.toolz",
        "unknown key 'toolz' in an inline agent; did you mean 'tools'?",
        id="unknown-key-in-an-inline-agent",
    ),
    pytest.param(
        """
        name: typo
        inputs:
          n: {type: integer, defualt: 3}
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
        """,
        "3:22 inputs.n.defualt",
        "unknown key 'defualt'; did you mean 'default'?",
        id="unknown-key-in-an-input",
    ),
    pytest.param(
        """
        name: types
        steps:
          - id: a
            agent:
              instructions: Help.
              max_steps: lots
            prompt: Hi.
        """,
        "6:18 steps[0].agent.max_steps",
        "should be a valid integer, unable to parse string as an integer, got 'lots'",
        id="wrong-type-integer",
    ),
    pytest.param(
        """
        name: types
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
          - id: b
            tool: calculate
            arguments: {expression: "2"}
            needs: a
        """,
        "9:12 steps[1].needs",
        "should be a valid list, got 'a'",
        id="wrong-type-list",
    ),
    pytest.param(
        """
        name: types
        inputs:
          topic: string
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
        """,
        "3:10 inputs.topic",
        "should be a valid dictionary",
        id="wrong-type-input-not-a-mapping",
    ),
    pytest.param(
        """
        name: types
        steps:
          - id: a
            agent: {instructions: Classify, output: string}
            prompt: Hi.
        """,
        "4:45 steps[0].agent.output",
        "should be a valid dictionary, got 'string'",
        id="wrong-type-agent-output",
    ),
    pytest.param(
        """
        name: kinds
        steps:
          - id: a
            shell: ls
        """,
        "4:5 steps[0].shell",
        "unknown step kind 'shell': a step is one of agent, tool, when, foreach, parallel, max_iterations",
        id="unknown-step-kind",
    ),
    pytest.param(
        """
        name: kinds
        steps:
          - id: a
            description: Does nothing.
        """,
        "3:5 steps[0]",
        "the step has no kind: give it one of the keys agent, tool, when, foreach",
        id="step-without-a-kind",
    ),
    pytest.param(
        """
        name: kinds
        steps:
          - calculate
        """,
        "3:5 steps[0]",
        "a step is a mapping with an id and one of agent, tool, when, foreach, parallel, max_iterations, "
        "got 'calculate'",
        id="step-not-a-mapping",
    ),
    pytest.param(
        """
        name: ids
        steps:
          - tool: calculate
            arguments: {expression: "1"}
        """,
        "3:5 steps[0]",
        "missing key 'id'",
        id="step-without-an-id",
    ),
    pytest.param(
        """
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
        """,
        "1:1 (top)",
        "missing key 'name'",
        id="workflow-without-a-name",
    ),
    pytest.param(
        """
        name: empty
        steps: []
        """,
        "2:8 steps",
        "list should have at least 1 item",
        id="no-steps",
    ),
    pytest.param(
        """
        name: alone
        steps:
          - id: p
            parallel:
              - id: a
                tool: calculate
                arguments: {expression: "1"}
        """,
        "5:7 steps[0].parallel",
        "list should have at least 2 items",
        id="parallel-with-one-branch",
    ),
    # step ids
    pytest.param(
        """
        name: ids
        steps:
          - id: fetch
            tool: calculate
            arguments: {expression: "1"}
          - id: fetch
            tool: calculate
            arguments: {expression: "2"}
        """,
        "6:9 steps[1].id",
        "the step id 'fetch' is used twice (first on line 3); ids are unique in a file",
        id="duplicate-step-id",
    ),
    pytest.param(
        """
        name: ids
        steps:
          - id: fetch
            tool: calculate
            arguments: {expression: "1"}
          - id: each
            foreach: [1, 2]
            steps:
              - id: fetch
                tool: calculate
                arguments: {expression: "2"}
        """,
        "9:13 steps[1].steps[0].id",
        "the step id 'fetch' is used twice (first on line 3)",
        id="duplicate-step-id-nested",
    ),
    pytest.param(
        """
        name: ids
        steps:
          - id: get-weather
            tool: calculate
            arguments: {expression: "1"}
        """,
        "3:9 steps[0].id",
        "'get-weather' is not a valid name: use letters, digits and _",
        id="step-id-with-a-hyphen",
    ),
    # inputs
    pytest.param(
        """
        name: inputs
        inputs:
          color:
            type: colour
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
        """,
        "4:11 inputs.color.type",
        "should be 'string', 'integer', 'number', 'boolean', 'enum', 'list' or 'object', got 'colour'",
        id="unknown-input-type",
    ),
    pytest.param(
        """
        name: inputs
        inputs:
          color: {type: enum}
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
        """,
        "3:10 inputs.color",
        "an enum input needs its values: values: [a, b]",
        id="enum-without-values",
    ),
    pytest.param(
        """
        name: inputs
        inputs:
          color: {type: enum, values: []}
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
        """,
        "3:31 inputs.color.values",
        "list should have at least 1 item",
        id="enum-with-no-values",
    ),
    pytest.param(
        """
        name: inputs
        inputs:
          count:
            type: integer
            default: many
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
        """,
        "5:14 inputs.count.default",
        "the default does not fit: 'count': 'many' is not of type 'integer'",
        id="default-not-of-its-type",
    ),
    pytest.param(
        """
        name: inputs
        inputs:
          color:
            type: enum
            values: [red, green]
            default: blue
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
        """,
        "6:14 inputs.color.default",
        "the default does not fit: 'color': 'blue' is not one of ['red', 'green']",
        id="default-not-among-the-values",
    ),
    pytest.param(
        """
        name: inputs
        inputs:
          color:
            type: string
            values: [red, green]
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
        """,
        "5:5 inputs.color.values",
        "values are for enum inputs; this one is string",
        id="values-on-a-string-input",
    ),
    pytest.param(
        """
        name: inputs
        inputs:
          color:
            type: string
            items: string
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
        """,
        "5:5 inputs.color.items",
        "items is for list inputs; this one is string",
        id="items-on-a-string-input",
    ),
    # templates
    pytest.param(
        """
        name: vars
        inputs:
          topic: {type: string}
        steps:
          - id: a
            agent: {instructions: Help.}
            prompt: "Tell me about {{ input.topic }}."
        """,
        "7:13 steps[0].prompt",
        "undefined template variable 'input'; did you mean 'inputs'? templates can read inputs, steps",
        id="undefined-template-variable",
    ),
    pytest.param(
        """
        name: vars
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "{{ item }} + 1"}
        """,
        "5:29 steps[0].arguments.expression",
        "undefined template variable 'item'; templates can read inputs, steps",
        id="foreach-item-outside-a-foreach",
    ),
    pytest.param(
        """
        name: vars
        inputs:
          topic: {type: string}
        steps:
          - id: a
            agent: {instructions: Help.}
            prompt: "Tell me about {{ inputs.topik }}."
        """,
        "7:13 steps[0].prompt",
        "no input 'topik'; did you mean 'topic'? the inputs are: topic",
        id="no-such-input",
    ),
    pytest.param(
        """
        name: vars
        steps:
          - id: a
            agent: {instructions: Help.}
            prompt: "Tell me about {{ inputs.topic "
        """,
        "5:13 steps[0].prompt",
        "template error: unexpected end of template",
        id="template-syntax-error",
    ),
    pytest.param(
        """
        name: vars
        steps:
          - id: check
            when: steps..ok
            then:
              - id: a
                tool: calculate
                arguments: {expression: "1"}
        """,
        "4:11 steps[0].when",
        "template error: expected name or number",
        id="condition-syntax-error",
    ),
    # which steps a step can read
    pytest.param(
        """
        name: order
        steps:
          - id: summary
            agent: {instructions: Summarize.}
            prompt: "Summarize {{ steps.research.output }}"
          - id: research
            agent: {instructions: Research.}
            prompt: Research tides.
        """,
        "5:13 steps[0].prompt",
        "step 'research' comes later (line 6); a step reads only the steps before it",
        id="reads-a-later-step",
    ),
    pytest.param(
        """
        name: order
        steps:
          - id: research
            agent: {instructions: Research.}
            prompt: Research tides.
          - id: summary
            agent: {instructions: Summarize.}
            prompt: "Summarize {{ steps.reserch.output }}"
        """,
        "8:13 steps[1].prompt",
        "no step 'reserch'; did you mean 'research'?",
        id="reads-a-missing-step",
    ),
    pytest.param(
        """
        name: fields
        steps:
          - id: research
            agent: {instructions: Research.}
            prompt: Research tides.
          - id: summary
            agent: {instructions: Summarize.}
            prompt: "Summarize {{ steps.research.outptu }}"
        """,
        "8:13 steps[1].prompt",
        "steps.research has no 'outptu'; it has output, status, run_id",
        id="no-such-step-field",
    ),
    pytest.param(
        """
        name: fields
        steps:
          - id: classify
            agent:
              instructions: Classify.
              output:
                type: object
                properties:
                  kind: {type: string}
                  urgent: {type: boolean}
            prompt: Classify this.
          - id: route
            when: steps.classify.output.urgnt
            then:
              - id: page
                tool: calculate
                arguments: {expression: "1"}
        """,
        "13:11 steps[1].when",
        "the output of step 'classify' has no field 'urgnt'; it has: kind, urgent",
        id="no-such-output-field",
    ),
    pytest.param(
        """
        name: scope
        steps:
          - id: route
            when: "true"
            then:
              - id: page
                tool: calculate
                arguments: {expression: "1"}
          - id: after
            tool: calculate
            arguments: {expression: "{{ steps.page.output }}"}
        """,
        "11:29 steps[1].arguments.expression",
        "step 'page' (line 6) is inside step 'route' (when); read steps.route.output instead",
        id="reads-into-a-when-branch",
    ),
    pytest.param(
        """
        name: scope
        steps:
          - id: both
            parallel:
              - id: left
                tool: calculate
                arguments: {expression: "1"}
              - id: right
                tool: calculate
                arguments: {expression: "{{ steps.left.output }}"}
        """,
        "10:33 steps[0].parallel[1].arguments.expression",
        "steps 'left' and 'right' are branches of parallel step 'both', which run at once; one cannot read the other",
        id="reads-a-sibling-parallel-branch",
    ),
    pytest.param(
        """
        name: scope
        steps:
          - id: each
            foreach: [1, 2]
            steps:
              - id: add
                tool: calculate
                arguments: {expression: "{{ steps.each.output }}"}
        """,
        "8:33 steps[0].steps[0].arguments.expression",
        "step 'each' (line 3) contains this one, so it has no output yet",
        id="reads-the-step-containing-it",
    ),
    pytest.param(
        """
        name: needs
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
            needs: [setup]
        """,
        "6:13 steps[0].needs[0]",
        "no step 'setup'",
        id="needs-a-missing-step",
    ),
    pytest.param(
        """
        name: needs
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
            needs: [b]
          - id: b
            tool: calculate
            arguments: {expression: "2"}
        """,
        "6:13 steps[0].needs[0]",
        "step 'b' comes later (line 7)",
        id="needs-a-later-step",
    ),
    pytest.param(
        """
        name: out
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
        output: "{{ steps.b.output }}"
        """,
        "6:9 output",
        "no step 'b'",
        id="output-reads-a-missing-step",
    ),
    pytest.param(
        """
        name: loop
        steps:
          - id: retry
            max_iterations: 3
            until: steps.chek.output
            steps:
              - id: check
                tool: calculate
                arguments: {expression: "1"}
        """,
        "5:12 steps[0].until",
        "no step 'chek'; did you mean 'check'?",
        id="until-reads-a-missing-step",
    ),
    # runtimes
    pytest.param(
        """
        name: rt
        runtime: nope
        steps:
          - id: a
            agent: {instructions: Help.}
            prompt: Hi.
        """,
        "2:10 runtime",
        "runtime URI 'nope' must look like SCHEME:VALUE, e.g. vllm:default",
        id="runtime-without-a-scheme",
    ),
    pytest.param(
        """
        name: rt
        steps:
          - id: a
            agent: {instructions: Help.}
            prompt: Hi.
            runtime: foo:bar
        """,
        "6:14 steps[0].runtime",
        "unknown runtime scheme 'foo' in 'foo:bar'; known: vllm, ",
        id="runtime-with-an-unknown-scheme",
    ),
    # tools and agents
    pytest.param(
        """
        name: tools
        steps:
          - id: a
            tool: search
        """,
        "4:11 steps[0].tool",
        "no tool 'search' in agentkit.tools (it has: calculate, now); name your own tool as module:function",
        id="unknown-builtin-tool",
    ),
    pytest.param(
        """
        name: tools
        steps:
          - id: a
            tool: read_file
        """,
        "4:11 steps[0].tool",
        "read_file makes a tool from settings (a directory, hosts...), which a workflow cannot give it yet; "
        "name your own tool as module:function",
        id="builtin-tool-factory",
    ),
    pytest.param(
        """
        name: tools
        steps:
          - id: a
            agent:
              instructions: Research.
              tools: [calculate, mytols:search]
            prompt: Hi.
        """,
        "6:26 steps[0].agent.tools[1]",
        "no module 'mytols' (looked in ",
        id="tool-module-that-does-not-exist",
    ),
    pytest.param(
        """
        name: tools
        steps:
          - id: a
            tool: agentkit.tools:calculat
        """,
        "4:11 steps[0].tool",
        "module agentkit.tools has no 'calculat'",
        id="tool-name-not-in-its-module",
    ),
    pytest.param(
        """
        name: tools
        steps:
          - id: a
            agent: agentkit.agent:Agent
            prompt: Hi.
        """,
        "4:12 steps[0].agent",
        "module 'agentkit.agent' is outside what a workflow may import",
        id="agent-class-outside-the-allowed-modules",
    ),
    pytest.param(
        """
        name: classes
        steps:
          - id: a
            agent: tests.support.weather
            prompt: Hi.
        """,
        "4:12 steps[0].agent",
        "'tests.support.weather' is not an import path; write module:name",
        id="agent-path-that-is-no-import-path",
    ),
    pytest.param(
        """
        name: tools
        steps:
          - id: a
            tool: os:system
            arguments: {command: "touch /tmp/owned"}
        """,
        "4:11 steps[0].tool",
        "module 'os' is outside what a workflow may import (agentkit.tools, modules in {dir}, and modules given "
        "with --allow-module); allow it with --allow-module os",
        id="os-system-as-a-tool",
    ),
    pytest.param(
        """
        name: tools
        steps:
          - id: a
            agent:
              instructions: Write JSON.
              tools: [json:dumps]
            prompt: Hi.
        """,
        "6:15 steps[0].agent.tools[0]",
        "module 'json' is outside what a workflow may import (agentkit.tools, modules in {dir}, and modules given "
        "with --allow-module); allow it with --allow-module json",
        id="json-dumps-as-an-agents-tool",
    ),
    pytest.param(
        """
        name: args
        steps:
          - id: a
            tool: calculate
            arguments:
              expression: "1 + 1"
              digits: 2
        """,
        "7:7 steps[0].arguments.digits",
        "calculate has no argument 'digits'; it takes: expression",
        id="unknown-tool-argument",
    ),
    pytest.param(
        """
        name: args
        steps:
          - id: a
            tool: calculate
        """,
        "4:11 steps[0].tool",
        "calculate needs the argument(s) 'expression'",
        id="missing-tool-argument",
    ),
    pytest.param(
        """
        name: args
        steps:
          - id: a
            tool: calculate
            arguments:
              expression: 12
        """,
        "6:19 steps[0].arguments.expression",
        "not a valid 'expression' for calculate: 12 is not of type 'string'",
        id="tool-argument-of-the-wrong-type",
    ),
    pytest.param(
        """
        name: tools
        steps:
          - id: a
            agent:
              instructions: Count.
              tools: [calculate, agentkit.tools:calculate]
            prompt: Hi.
        """,
        "6:26 steps[0].agent.tools[1]",
        "two tools are named 'calculate'; an agent's tools need distinct names",
        id="two-tools-with-one-name",
    ),
    pytest.param(
        """
        name: schema
        steps:
          - id: a
            agent:
              instructions: Classify.
              output:
                type: object
                properties:
                  urgent: {type: bool}
            prompt: Hi.
        """,
        "9:26 steps[0].agent.output.properties.urgent.type",
        "not a valid JSON Schema: 'bool' is not valid under any of the given schemas",
        id="invalid-output-schema",
    ),
]


@pytest.mark.parametrize(("text", "where", "phrase"), CASES)
def test_a_mistake_is_one_line_at_its_place(tmp_path: Path, text: str, where: str, phrase: str) -> None:
    error = refused(tmp_path, text)
    assert_one(error, *at(where), phrase.replace("{dir}", str(tmp_path.resolve())))


def test_a_foreach_name_with_a_hyphen_is_not_called_a_step_id(tmp_path: Path) -> None:
    error = refused(
        tmp_path,
        """
        name: ids
        steps:
          - id: each
            foreach: [1, 2]
            as: my-item
            steps:
              - id: a
                tool: calculate
                arguments: {expression: "1"}
        """,
    )
    assert_one(error, 5, 9, "steps[0].as", "'my-item' is not a valid name: use letters, digits and _")
    # Templates read the item as {{ my_item }}, not as steps.<id>.
    assert "steps.<id>" not in str(error)


# --- tags: a workflow is plain data --------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "shown"),
    [
        pytest.param('!!python/object/apply:os.system ["touch MARKER"]', "!!python/object/apply:os.system", id="apply"),
        pytest.param('!!python/object/new:os.system ["touch MARKER"]', "!!python/object/new:os.system", id="new"),
        pytest.param(
            "!!python/object:agentkit.agent.Agent {path: MARKER}", "!!python/object:agentkit.agent.Agent", id="object"
        ),
        pytest.param("!!python/name:os.system ''", "!!python/name:os.system", id="name"),
        pytest.param("!env MARKER", "!env", id="local-tag"),
        pytest.param("!!set {MARKER}", "!!set", id="set"),
    ],
)
def test_a_tag_is_refused_and_never_constructed(tmp_path: Path, tag: str, shown: str) -> None:
    marker = tmp_path / "owned"
    text = """
        name: tags
        steps:
          - id: a
            tool: calculate
            arguments: {expression: TAG}
        """.replace("TAG", tag.replace("MARKER", str(marker)))
    error = refused(tmp_path, text)
    assert_one(
        error,
        5,
        29,
        "steps[0].arguments.expression",
        f"the tag {shown} is not allowed: a workflow is plain data; remove the tag",
    )
    assert not marker.exists()


def test_a_tag_on_the_steps_is_refused(tmp_path: Path) -> None:
    error = refused(
        tmp_path,
        """
        name: tags
        steps: !!python/object:collections.OrderedDict {}
        """,
    )
    assert_one(error, 2, 8, "steps", "the tag !!python/object:collections.OrderedDict is not allowed")


# --- files that are not a workflow ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "phrase"),
    [
        pytest.param("", 1, 1, "the file is empty; a workflow needs name and steps", id="empty"),
        pytest.param("# to do\n\n", 1, 1, "the file is empty; a workflow needs name and steps", id="only-comments"),
        pytest.param("# steps\n- id: a\n- id: b\n", 2, 1, "a workflow is a mapping with name and steps", id="a-list"),
        pytest.param("just a sentence\n", 1, 1, "a workflow is a mapping with name and steps", id="a-string"),
    ],
)
def test_a_file_that_is_no_mapping(tmp_path: Path, text: str, line: int, column: int, phrase: str) -> None:
    assert_one(refused(tmp_path, text), line, column, "(top)", phrase)


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(WorkflowSpecError) as caught:
        Workflow.load(path)
    assert caught.value.file == str(path)
    assert_one(caught.value, 1, 1, "(top)", "cannot read the file: [Errno 2] No such file or directory")


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(WorkflowSpecError) as caught:
        Workflow.load(path)
    assert_one(caught.value, 1, 1, "(top)", "cannot read the file: 'utf-8' codec can't decode byte 0xe9")


def test_a_number_as_a_key_is_at_the_key(tmp_path: Path) -> None:
    error = refused(
        tmp_path,
        """
        name: keys
        steps:
          - id: a
            tool: calculate
            arguments: {expression: "1"}
            1: one
        """,
    )
    assert len(error.problems) == 1, str(error)
    (problem,) = error.problems
    assert (problem.line, problem.column) == (6, 5), str(error)
    assert "key" in problem.message


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    error = refused(
        tmp_path,
        """
        name: loops
        steps: &steps
          - id: a
            tool: calculate
            arguments: {expression: *steps}
        """,
    )
    assert len(error.problems) == 1, str(error)
    (problem,) = error.problems
    assert format_path(problem.path) == "steps[0].arguments.expression", str(error)
    assert problem.line == 5, str(error)
    assert "alias" in problem.message


def test_aliases_that_expand_a_billion_times_are_refused_quickly(tmp_path: Path) -> None:
    # In a process of its own: walking every expansion would take hours and gigabytes.
    lines = ["name: laughs", "l0: &l0 [ha, ha, ha, ha, ha, ha, ha, ha, ha, ha]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    lines += ["steps:", "  - id: a", "    tool: calculate", "    arguments: {expression: *l8}"]
    path = tmp_path / "flow.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = [sys.executable, "-c", "from agentkit.cli import main; main()", "workflow", "validate", str(path)]
    try:
        ran = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("validating took over 5 s: the aliases were expanded")
    assert ran.returncode == 1, ran.stderr
    assert ran.stderr.startswith(f"error: {path}:"), ran.stderr
    assert "alias" in ran.stderr


def test_brackets_nested_thousands_deep_are_refused_at_the_hundred_and_first(tmp_path: Path) -> None:
    # Found by tests/unit/fuzz/test_fuzz_workflow.py: PyYAML read each "[" again for every new one (20,000
    # of them took minutes), then its composer raised RecursionError.
    error = refused(tmp_path, "name: deep\noutput: " + "[" * 20_000 + "\n")
    assert_one(error, 2, 109, "(top)", "nests lists and mappings more than 100 levels deep")


def test_block_lists_nested_hundreds_deep_are_refused_at_their_place(tmp_path: Path) -> None:
    # Found by the fuzz target: the composer's RecursionError, for block nesting the reader cannot count.
    deep = "".join(f"\n{'  ' * n}- " for n in range(400)) + "x"
    error = refused(tmp_path, f"name: deep\noutput: {deep}\n")
    assert len(error.problems) == 1, str(error)
    assert "more than 100 levels deep" in error.problems[0].message, str(error)


@pytest.mark.parametrize("escape", ["\\U00110000", "\\UFFFFFFFF"], ids=["past-unicode", "past-c-int"])
def test_an_escape_past_the_last_unicode_character_is_not_valid_yaml(tmp_path: Path, escape: str) -> None:
    # Found by tests/unit/fuzz/test_fuzz_workflow.py: PyYAML's chr() raised ValueError (OverflowError).
    error = refused(tmp_path, f'name: "ab{escape}"\nsteps: []\n')
    assert_one(error, 1, 12, "(top)", "an escape names no Unicode character")  # at its hex digits


@pytest.mark.parametrize(
    ("value", "kind"),
    [("2024-13-45", "date"), ("2024-02-30 10:00:00", "date"), ("0000-01-01", "date"), ("0x_", "number")],
)
def test_a_scalar_that_only_looks_like_a_date_or_number_is_not_valid_yaml(
    tmp_path: Path, value: str, kind: str
) -> None:
    # Found by the fuzz target: PyYAML's timestamp and int constructors raised ValueError.
    error = refused(tmp_path, f"name: dates\ndescription: {value}\nsteps: []\n")
    assert_one(error, 2, 14, "(top)", f"{value!r} looks like a {kind} but is none; quote it")


def test_a_document_just_under_the_depth_limit_loads(tmp_path: Path) -> None:
    text = "name: deep\nsteps: [{id: a, tool: calculate, arguments: {expression: '1'}}]\noutput: "
    Workflow.load(write(tmp_path, text + "[" * 98 + "]" * 98 + "\n"))


def test_a_template_nested_thousands_deep_is_a_template_error_at_its_place(tmp_path: Path) -> None:
    # Found by the fuzz target: Jinja's parser raised RecursionError.
    expression = "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"
    error = refused(
        tmp_path,
        f"""
        name: deep
        steps:
          - id: a
            tool: calculate
            arguments: {{expression: "{expression}"}}
        """,
    )
    assert_one(error, 5, 29, "steps[0].arguments.expression", "template error: the template nests brackets")


# --- several mistakes: one message, in file order ------------------------------------------------


def test_several_mistakes_are_one_message_sorted_by_line(tmp_path: Path) -> None:
    # The checker finds them in another order: needs, then the prompt, then the agent's tools.
    error = refused(
        tmp_path,
        """
        name: several
        runtime: vllm:default
        steps:
          - id: research
            agent:
              instructions: Research.
              tools: [calculate, mytols:search]
            prompt: "Research {{ inputs.topic }}"
            needs: [setup]
        """,
    )
    file = error.file
    assert str(error) == "\n".join(
        [
            f"{file}: 3 problems",
            f"{file}:7:26: steps[0].agent.tools[1]: no module 'mytols' (looked in {tmp_path.resolve()} and the "
            "Python path)",
            f"{file}:8:13: steps[0].prompt: no input 'topic'; the inputs are: none",
            f"{file}:9:13: steps[0].needs[0]: no step 'setup'",
        ]
    )
    assert [(p.line, p.column) for p in error.problems] == [(7, 26), (8, 13), (9, 13)]


def test_several_shape_mistakes_are_reported_together(tmp_path: Path) -> None:
    error = refused(
        tmp_path,
        """
        name: several
        steps:
          - id: a
            tool: calculate
            argumnets: {expression: "1"}
          - id: b
            agent:
              instructions: Help.
              max_steps: lots
          - id: c
            foreach: [1, 2]
        """,
    )
    assert str(error).splitlines()[0] == f"{error.file}: 4 problems"
    assert [(p.line, p.column, format_path(p.path)) for p in error.problems] == [
        (5, 5, "steps[0].argumnets"),
        (6, 5, "steps[1]"),
        (9, 18, "steps[1].agent.max_steps"),
        (10, 5, "steps[2]"),
    ]
    messages = [p.message for p in error.problems]
    assert messages[0].startswith("unknown key 'argumnets'")
    assert messages[1] == "missing key 'prompt'"
    assert "valid integer" in messages[2]
    assert messages[3] == "missing key 'steps'"


# --- imports: agentkit.tools, the workflow's directory, and modules the user allows --------------

WEATHER_TOOL = """
name: weather
steps:
  - id: a
    tool: tests.support.weather:get_weather
    arguments: {city: Oslo}
"""


def test_an_importable_module_outside_the_allowed_ones_is_refused(tmp_path: Path) -> None:
    assert tests.support.weather.get_weather  # importable, just not allowed
    error = refused(tmp_path, WEATHER_TOOL)
    assert_one(error, 4, 11, "steps[0].tool", "module 'tests.support.weather' is outside what a workflow may import")
    assert str(error).endswith("allow it with --allow-module tests")


@pytest.mark.parametrize("allowed", ["tests.support", "tests", "tests.support.weather"])
def test_a_module_the_user_allows_is_imported(tmp_path: Path, allowed: str) -> None:
    flow = Workflow.load(write(tmp_path, WEATHER_TOOL), allow_modules=[allowed])
    assert [t.name for t in flow.plan.steps[0].tools] == ["get_weather"]


def test_allowing_a_module_does_not_allow_one_that_only_starts_alike(tmp_path: Path) -> None:
    error = refused(tmp_path, WEATHER_TOOL, allow_modules=("tests.sup",))
    assert_one(error, 4, 11, "steps[0].tool", "module 'tests.support.weather' is outside what a workflow may import")


def test_a_module_outside_is_refused_before_it_is_imported(
    tmp_path: Path, modules: Modules, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.syspath_prepend(str(elsewhere))
    name = modules(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n", stem="evil", folder=elsewhere)
    flows = tmp_path / "flows"
    flows.mkdir()
    error = refused(
        flows,
        f"""
        name: evil
        steps:
          - id: a
            tool: {name}:run
        """,
    )
    assert_one(error, 4, 11, "steps[0].tool", f"module {name!r} is outside what a workflow may import")
    assert str(error).endswith(f"allow it with --allow-module {name}")
    assert not marker.exists()
    assert name not in sys.modules


def test_text_without_a_file_has_no_directory_to_import_from(tmp_path: Path, modules: Modules) -> None:
    name = modules()
    text = f"name: inline\nsteps:\n  - id: a\n    tool: {name}:shout\n    arguments: {{text: hi}}\n"
    with pytest.raises(WorkflowSpecError) as caught:
        Workflow.parse(text, file="inline.yaml")
    assert_one(caught.value, 4, 11, "steps[0].tool", f"no module {name!r} (looked in the Python path)")
    flow = Workflow.parse(text, file="inline.yaml", directory=tmp_path)
    assert [t.name for t in flow.plan.steps[0].tools] == ["shout"]


def test_a_module_in_the_workflows_directory_is_allowed(tmp_path: Path, modules: Modules) -> None:
    name = modules()
    flow = Workflow.load(
        write(
            tmp_path,
            f"""
            name: local
            steps:
              - id: a
                tool: {name}:shout
                arguments: {{text: hi, times: 2}}
              - id: b
                agent:
                  instructions: Shout.
                  tools: [{name}:shout, calculate]
                prompt: Hi.
            """,
        )
    )
    assert [[t.name for t in node.tools] for node in flow.plan.steps] == [["shout"], ["shout", "calculate"]]


def test_an_agent_class_given_as_a_tool(tmp_path: Path) -> None:
    error = refused(
        tmp_path,
        """
        name: classes
        steps:
          - id: a
            tool: tests.support.weather:WeatherAgent
        """,
        allow_modules=("tests.support",),
    )
    assert_one(error, 4, 11, "steps[0].tool", "tests.support.weather:WeatherAgent is an Agent")
    assert error.problems[0].message.count("not a tool") == 1, str(error)


@pytest.mark.parametrize(
    ("ref", "what"),
    [
        pytest.param("tests.support.weather:get_weather", "a FunctionTool", id="a-tool"),
        pytest.param("tests.support.weather:CITIES", "a list", id="a-constant"),
        pytest.param("tests.support.weather:WeatherAgent.run", "a function", id="a-method"),
        pytest.param("LOCAL:NotAnAgent", "a type", id="a-plain-class"),
    ],
)
def test_an_agent_path_that_is_not_an_agent_subclass(tmp_path: Path, modules: Modules, ref: str, what: str) -> None:
    ref = ref.replace("LOCAL", modules())
    error = refused(
        tmp_path,
        f"""
        name: classes
        steps:
          - id: a
            agent: {ref}
            prompt: Hi.
        """,
        allow_modules=("tests.support",),
    )
    assert_one(error, 4, 12, "steps[0].agent", f"{ref} is {what}, not an Agent subclass")


def test_an_agent_class_the_user_allows(tmp_path: Path) -> None:
    text = """
        name: classes
        steps:
          - id: a
            agent: tests.support.weather:WeatherAgent
            prompt: Weather in Oslo?
        """
    flow = Workflow.load(write(tmp_path, text), allow_modules=["tests.support"])
    assert flow.plan.steps[0].agent_class is tests.support.weather.WeatherAgent


@pytest.mark.parametrize(
    ("source", "ref", "phrase"),
    [
        pytest.param(
            MARK_TOOLS, "GREETING", "NAME:GREETING is a str, not a tool: pass a @tool function", id="a-name-not-a-tool"
        ),
        pytest.param(
            "raise RuntimeError('no config')\n",
            "shout",
            "importing NAME failed: RuntimeError: no config",
            id="a-module-that-fails-to-import",
        ),
    ],
)
def test_a_local_module_that_gives_no_tool(
    tmp_path: Path, modules: Modules, source: str, ref: str, phrase: str
) -> None:
    name = modules(source)
    error = refused(
        tmp_path,
        f"""
        name: local
        steps:
          - id: a
            tool: {name}:{ref}
        """,
    )
    assert_one(error, 4, 11, "steps[0].tool", phrase.replace("NAME", name))


def test_a_local_module_named_like_an_imported_one(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text(MARK_TOOLS, encoding="utf-8")
    error = refused(
        tmp_path,
        """
        name: local
        steps:
          - id: a
            tool: json:shout
        """,
    )
    assert_one(error, 4, 11, "steps[0].tool", "module 'json' was already imported from ")
    assert "rename the workflow's module" in str(error)
    assert not hasattr(sys.modules["json"], "shout")


def test_a_literal_argument_that_does_not_fit_a_literal_type(tmp_path: Path) -> None:
    error = refused(
        tmp_path,
        """
        name: args
        steps:
          - id: a
            tool: tests.support.weather:get_weather
            arguments: {city: Oslo, unit: kelvin}
        """,
        allow_modules=("tests.support",),
    )
    assert_one(
        error,
        5,
        35,
        "steps[0].arguments.unit",
        "not a valid 'unit' for get_weather: 'kelvin' is not one of ['celsius', 'fahrenheit']",
    )


ENUM_TOOLS = '''
from enum import Enum

from pydantic import BaseModel

from agentkit import tool


class Color(Enum):
    red = "red"
    green = "green"


class Point(BaseModel):
    x: int
    y: int


@tool
def paint(color: Color, at: Point) -> str:
    """Paint a point.

    Args:
        color: The color.
        at: Where.
    """
    return f"{color.value} at {at.x},{at.y}"
'''


def test_literal_arguments_are_checked_against_schemas_with_definitions(tmp_path: Path, modules: Modules) -> None:
    # An Enum or a model argument is a $ref into the tool's $defs.
    name = modules(ENUM_TOOLS, stem="paint")
    error = refused(
        tmp_path,
        f"""
        name: args
        steps:
          - id: a
            tool: {name}:paint
            arguments:
              color: blue
              at: {{x: 1}}
        """,
    )
    assert [(p.line, p.column, format_path(p.path)) for p in error.problems] == [
        (6, 14, "steps[0].arguments.color"),
        (7, 11, "steps[0].arguments.at"),
    ], str(error)
    assert "'blue' is not one of ['red', 'green']" in error.problems[0].message
    assert "'y' is a required property" in error.problems[1].message


# --- inputs given to a run -----------------------------------------------------------------------

TYPED = """
name: typed
inputs:
  count: {type: integer}
  names: {type: list, items: string}
  color:
    type: enum
    values: [red, green]
  flag: {type: boolean, default: false}
steps:
  - id: a
    tool: calculate
    arguments: {expression: "{{ inputs.count }}"}
"""
GIVEN = {"count": "1", "names": "[]", "color": "red"}


@pytest.mark.parametrize(
    ("given", "where", "message"),
    [
        pytest.param(
            {"count": "abc"}, "3:3 inputs.count", "the input 'count': 'abc' is not an integer", id="integer-text"
        ),
        pytest.param(
            {"count": True}, "3:3 inputs.count", "the input 'count': True is not of type 'integer'", id="integer-bool"
        ),
        pytest.param(
            {"names": "a,b"},
            "4:3 inputs.names",
            """the input 'names': a list is given as JSON, e.g. ["a", "b"]; got 'a,b'""",
            id="list-not-json",
        ),
        pytest.param(
            {"names": "[1, 2]"},
            "4:3 inputs.names",
            "the input 'names'[1]: 2 is not of type 'string'",
            id="list-item-of-the-wrong-type",
        ),
        pytest.param(
            {"color": "blue"},
            "5:3 inputs.color",
            "the input 'color': 'blue' is not one of ['red', 'green']",
            id="enum-not-among-the-values",
        ),
        pytest.param(
            {"flag": "maybe"},
            "8:3 inputs.flag",
            "the input 'flag': 'maybe' is not a boolean; write true or false",
            id="boolean-text",
        ),
        pytest.param(
            {"colour": "red"},
            "2:1 inputs",
            "no input 'colour' in this workflow (its inputs: count, names, color, flag)",
            id="unknown-input",
        ),
        pytest.param(
            {"count": None},
            "3:3 inputs.count",
            "the input 'count' is required and was not given; pass -i count=VALUE (or give it a default)",
            id="missing-required-input",
        ),
    ],
)
def test_inputs_that_do_not_fit(tmp_path: Path, given: dict[str, Any], where: str, message: str) -> None:
    flow = Workflow.load(write(tmp_path, TYPED))
    values = {**GIVEN, **given}
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(WorkflowSpecError) as caught:
        flow.inputs(values, as_text=[k for k, v in values.items() if isinstance(v, str)])
    assert_one(caught.value, *at(where), message)
    assert caught.value.problems[0].message == message


def test_all_missing_inputs_are_one_message(tmp_path: Path) -> None:
    flow = Workflow.load(write(tmp_path, TYPED))
    with pytest.raises(WorkflowSpecError) as caught:
        flow.inputs({})
    assert str(caught.value).splitlines()[0] == f"{caught.value.file}: 3 problems"
    assert [format_path(p.path) for p in caught.value.problems] == ["inputs.count", "inputs.names", "inputs.color"]


# --- the command line: refused before any step runs ----------------------------------------------

MARKED = """
name: marked
inputs:
  topic: {type: string}
  count: {type: integer}
steps:
  - id: first
    tool: MOD:mark
    arguments: {path: "MARKER"}
  - id: second
    tool: calculate
    arguments: {expression: "{{ inputs.count }} + 1"}
"""


def marked(folder: Path, modules: Modules, text: str = MARKED) -> tuple[Path, Path]:
    """The workflow `text` whose first step writes a marker file; returns the file and the marker."""
    marker = folder / "marker"
    flow = write(folder, text.replace("MOD", modules()).replace("MARKER", str(marker)))
    return flow, marker


def test_the_marker_workflow_does_run_when_nothing_is_wrong(tmp_path: Path, modules: Modules) -> None:
    # What the tests below rely on: the first step writes the marker and the run is stored.
    flow, marker = marked(tmp_path, modules)
    db = tmp_path / "runs.db"
    result = cli("run", str(flow), "-i", "topic=tides", "-i", "count=41", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert marker.read_text(encoding="utf-8") == "ran"
    store = Store(db)
    try:
        assert [r.name for r in store.workflow_runs()] == ["marked"]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("text", "args", "where", "phrase"),
    [
        pytest.param(
            MARKED.replace("inputs.count", "steps.frist.output"),
            ["-i", "topic=tides", "-i", "count=41"],
            "11:29 steps[1].arguments.expression",
            "no step 'frist'; did you mean 'first'?",
            id="a-bad-reference-after-the-first-step",
        ),
        pytest.param(
            MARKED + "  - id: third\n    agent: {instructions: Help.}\n    prompt: Hi.\n    runtime: nope\n",
            ["-i", "topic=tides", "-i", "count=41"],
            "15:14 steps[2].runtime",
            "runtime URI 'nope' must look like SCHEME:VALUE",
            id="a-bad-runtime-after-the-first-step",
        ),
        pytest.param(
            MARKED,
            ["-i", "topic=tides", "-i", "count=1", "-i", "cuont=2"],
            "2:1 inputs",
            "no input 'cuont' in this workflow (its inputs: topic, count)",
            id="an-unknown-input",
        ),
        pytest.param(
            MARKED + 'output: !!python/object/apply:os.system ["touch OWNED"]\n',
            ["-i", "topic=tides", "-i", "count=1"],
            "12:9 output",
            "the tag !!python/object/apply:os.system is not allowed",
            id="a-python-tag",
        ),
    ],
)
def test_a_mistake_refuses_the_whole_run_through_the_cli(
    tmp_path: Path, modules: Modules, text: str, args: list[str], where: str, phrase: str
) -> None:
    owned = tmp_path / "owned"  # what the python tag would touch, were it ever run
    flow, marker = marked(tmp_path, modules, text.replace("OWNED", str(owned)))
    db = tmp_path / "runs.db"
    result = cli("run", str(flow), *args, "--db", str(db))
    assert_cli_refused(result, flow, *at(where), phrase)
    assert_nothing_ran(marker, db)
    assert not owned.exists()


@pytest.mark.parametrize(
    ("args", "env", "phrase"),
    [
        pytest.param(
            ["--runtime", "nope"], {}, "step third: the runtime given to the run: runtime URI 'nope'", id="cli"
        ),
        pytest.param(
            [], {"AGENTKIT_RUNTIME": "foo:bar"}, "step third: AGENTKIT_RUNTIME: unknown runtime scheme 'foo'", id="env"
        ),
    ],
)
def test_a_bad_runtime_from_outside_the_file_refuses_the_whole_run(
    tmp_path: Path, modules: Modules, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], phrase: str
) -> None:
    # The third step is the only agent step; the first (a tool) must not run before the refusal.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    agent_step = "  - id: third\n    agent: {instructions: Help.}\n    prompt: Hi.\n"
    flow, marker = marked(tmp_path, modules, MARKED + agent_step)
    db = tmp_path / "runs.db"
    result = cli("run", str(flow), "-i", "topic=tides", "-i", "count=41", "--db", str(db), *args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert phrase in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert_nothing_ran(marker, db)


@pytest.mark.parametrize(
    ("args", "inputs", "phrase"),
    [
        pytest.param(
            ["-i", "topic=tides"],
            None,
            "the input 'count' is required and was not given; pass -i count=VALUE",
            id="missing-with-i",
        ),
        pytest.param(
            [],
            {"topic": "tides"},
            "the input 'count' is required and was not given; pass -i count=VALUE",
            id="missing-in-inputs-file",
        ),
        pytest.param(["-i", "topic=tides", "-i", "count=abc"], None, "'abc' is not an integer", id="text-not-integer"),
        pytest.param(
            [], {"topic": "tides", "count": "41"}, "'41' is not of type 'integer'", id="json-string-not-integer"
        ),
    ],
)
def test_inputs_that_do_not_fit_refuse_the_whole_run(
    tmp_path: Path, modules: Modules, args: list[str], inputs: dict[str, Any] | None, phrase: str
) -> None:
    flow, marker = marked(tmp_path, modules)
    db = tmp_path / "runs.db"
    if inputs is not None:
        file = tmp_path / "inputs.json"
        file.write_text(json.dumps(inputs), encoding="utf-8")
        args = [*args, "--inputs", str(file)]
    result = cli("run", str(flow), *args, "--db", str(db))
    assert_cli_refused(result, flow, 4, 3, "inputs.count", phrase)
    assert_nothing_ran(marker, db)


def test_a_missing_workflow_file_through_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    flow = tmp_path / "nowhere.yaml"
    result = cli("run", str(flow), "--db", str(db))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {flow}:1:1: cannot read the file: "), result.stderr
    assert not db.exists()


def test_validate_lists_every_problem_on_its_own_line(tmp_path: Path) -> None:
    flow = write(
        tmp_path,
        """
        name: several
        runtime: nope
        steps:
          - id: a
            tool: os:system
          - id: b
            agent: {instructions: Help.}
            prompt: "{{ steps.c.output }}"
        """,
    )
    result = cli("workflow", "validate", str(flow))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {flow}: 3 problems"
    assert [line.split(": ")[0:2] for line in lines[1:]] == [
        [f"{flow}:2:10", "runtime"],
        [f"{flow}:5:11", "steps[0].tool"],
        [f"{flow}:8:13", "steps[1].prompt"],
    ]
    assert "allow it with --allow-module os" in lines[2]
    assert lines[3].endswith("no step 'c'")


def test_allow_module_on_the_command_line(tmp_path: Path) -> None:
    flow = write(tmp_path, WEATHER_TOOL)
    refused_ = cli("workflow", "validate", str(flow))
    assert_cli_refused(refused_, flow, 4, 11, "steps[0].tool", "allow it with --allow-module tests")
    valid = cli("workflow", "validate", str(flow), "--allow-module", "tests.support")
    assert valid.exit_code == 0, valid.output
    assert valid.stdout == f"{flow}: workflow 'weather' is valid: 1 step, inputs: none\n"
    db = tmp_path / "runs.db"
    ran = cli("run", str(flow), "--allow-module", "tests.support", "--db", str(db))
    assert ran.exit_code == 0, ran.output
    assert ran.stdout == "21 degrees celsius, clear, in Oslo\n"
