"""Fuzz the workflow loader (`Workflow.parse`) and its templates: a `Workflow`, or a `WorkflowSpecError`
(a run: `WorkflowFailed`), never a `RecursionError`, a hang or memory eaten by aliases.

Templates are fuzzed twice: `templates.render`/`condition` alone (whose documented error is jinja2's
`TemplateError`, which the runner reports at the template's place), and inside a workflow that runs.
"""

from __future__ import annotations

import logging
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import TemplateError

from agentkit.workflow import Workflow
from agentkit.workflow.check import _VOCABULARY
from agentkit.workflow.spec import KINDS
from agentkit.workflow.templates import condition, render
from tests.support.fuzzing import EXAMPLES, fuzz_settings, only_agentkit_errors, time_box

# --- YAML text --------------------------------------------------------------------------------

KEYS = st.sampled_from([*_VOCABULARY, *KINDS, "as", "else", "<<"]) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["calculate", "now", "agentkit.tools:calculate", "scripted:x.json", "mcp:a", "a", "{{ inputs.a }}"]
    )
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)
WORKFLOWS = st.fixed_dictionaries(
    {"name": SCALARS, "steps": st.lists(st.dictionaries(KEYS, DOCUMENTS, max_size=5), max_size=3)},
    optional={key: DOCUMENTS for key in ("description", "inputs", "runtime", "mcp_servers", "output")},
)


INSERTS = ["", "[", "{", "- ", ": ", "&a ", "*a", "!!python/name:os.system ", "\t", "'", '"', "\\U0011ffff"]
INSERTS += [" 2024-13-45", " 0000-01-01 10:00", " 1e999", " .nan", " 0x_", " <<: *a"]
"""What an edit inserts (an empty one deletes a character instead)."""


def load(text: str) -> Workflow | None:
    return only_agentkit_errors(Workflow.parse, text)


@fuzz_settings()
@given(st.text())
def test_any_text(text: str) -> None:
    load(text)


@fuzz_settings()
@given(WORKFLOWS | DOCUMENTS)
def test_any_document_under_the_real_keys(document: Any) -> None:
    load(yaml.safe_dump(document, allow_unicode=True))


@fuzz_settings()
@given(WORKFLOWS, st.data())
def test_a_document_cut_or_edited(document: Any, data: st.DataObject) -> None:
    text = yaml.safe_dump(document, allow_unicode=True)
    at = data.draw(st.integers(0, len(text)), label="at")
    inserted = data.draw(st.sampled_from(INSERTS), label="inserted")
    load(text[:at] + inserted + text[at + int(not inserted) :])


@fuzz_settings(max(10, EXAMPLES // 20))
@given(st.integers(1, 12), st.integers(1, 12), st.sampled_from(["steps", "output", "inputs", "name"]))
def test_aliases_that_expand_exponentially(width: int, levels: int, key: str) -> None:
    """A billion laughs: refused (or loaded, when small) within the time box, not expanded into memory.
    One that is refused walks 100,000 values first (about 0.3 s), so a twentieth of the examples."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * width)}]" for n in range(1, levels)]
    lines += ["name: laughs", f"{key}: *l{levels - 1}"]
    load("\n".join(lines))


@fuzz_settings()
@given(
    st.sampled_from(["[", "{a: ", "- ", "{steps: [", "- - ", "&x [", "{{ ", "{{ (", '"{{ ' + "[" * 3]),
    st.integers(1, 5_000),
    st.sampled_from(["steps", "output", "name", "inputs"]),
)
def test_deep_nesting(opener: str, depth: int, key: str) -> None:
    if opener.startswith(("-", "- -")):
        body = "".join(f"\n{'  ' * n}- " for n in range(min(depth, 200))) + "x"  # 200 levels: 40,000 spaces
    else:
        body = opener * depth
    load(f"name: deep\n{key}: {body}")


# --- templates --------------------------------------------------------------------------------

TEMPLATE_PIECES = st.sampled_from(
    [
        *["{{", "}}", "{%", "%}", "{#", "#}", " ", "inputs", "steps", "item", "x", "a", ".", "|", "(", ")", "[", "]"],
        *["'", '"', ",", "~", "+", "-", "*", "**", "/", "//", "%", "0", "1", "9", "99", "999999", "1e308", "-1"],
        *["if ", " else ", "for ", " in ", "endfor", "endif", "not ", " and ", " or ", "length", "join", "first"],
        *["list", "int", "float", "round", "range(", "upper", "tojson", "items()", "keys()", "__class__", "mro"],
        *["set ", "=", "macro ", "endmacro", "call ", "is ", "defined", "none", "true", "lipsum", "dict(", "abs"],
    ]
)
TEMPLATES = st.lists(TEMPLATE_PIECES | st.text(max_size=4), max_size=30).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=15,
)
CONTEXTS = st.fixed_dictionaries(
    {
        "inputs": st.dictionaries(st.sampled_from(["a", "x", "item"]) | st.text(max_size=4), JSON_VALUES, max_size=4),
        "steps": st.dictionaries(
            st.sampled_from(["a", "x"]), st.fixed_dictionaries({"output": JSON_VALUES, "status": st.just("done")})
        ),
        "item": JSON_VALUES,
    }
)


def template_errors_only(function: Any, *args: Any) -> Any:
    """Call a template function time-boxed: its value, or None for jinja2's `TemplateError` (its documented
    error, which the runner turns into a `WorkflowFailed` at the template's place)."""
    with time_box(5.0):
        try:
            return function(*args)
        except TemplateError:
            return None


@fuzz_settings()
@given(TEMPLATES | st.text(), CONTEXTS)
def test_any_template_rendered_against_any_inputs(template: str, context: dict[str, Any]) -> None:
    template_errors_only(render, template, context)


@fuzz_settings()
@given(TEMPLATES | st.text(), CONTEXTS)
def test_any_condition_against_any_inputs(template: str, context: dict[str, Any]) -> None:
    template_errors_only(condition, template, context)


def run_workflow(output: str, argument: str, value: Any) -> Any:
    text = yaml.safe_dump(
        {
            "name": "fuzz",
            "inputs": {"x": {"type": "object", "default": {}}},
            "steps": [{"id": "a", "tool": "calculate", "arguments": {"expression": argument}}],
            "output": output,
        },
        allow_unicode=True,
    )
    flow = Workflow.parse(text)
    # The executor logs each failed call with its traceback, and pytest keeps every record of a test:
    # over thousands of examples its garbage collections alone outlast the time box.
    logging.disable(logging.WARNING)
    try:
        return flow.run({"x": value})
    finally:
        logging.disable(logging.NOTSET)


@fuzz_settings(max(50, EXAMPLES // 4))
@given(
    TEMPLATES | st.text(), st.sampled_from(["1 + 1", "{{ inputs.x | length }}", "{{ inputs.x }}"]) | TEMPLATES, CONTEXTS
)
def test_a_workflow_run_with_any_templates(output: str, argument: str, context: dict[str, Any]) -> None:
    """A whole run (a `calculate` step, then the output template): slower, so a quarter of the examples."""
    only_agentkit_errors(run_workflow, output, argument, context["inputs"])
