"""A workflow's inputs: checked against their declared types before any step runs.

Values come typed (from `--inputs file.json` or Python) or as text from the
command line (`-i count=3`), which is read by the input's type: a number for
`integer`/`number`, true/false for `boolean`, JSON for `list`/`object`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonschema

from agentkit.workflow.source import Problem, Source
from agentkit.workflow.spec import InputSpec

__all__ = ["input_problem", "input_schema", "resolve_inputs"]

_SCALARS = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean", "object": "object"}
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def input_schema(spec: InputSpec) -> dict[str, Any]:
    """The JSON Schema of an input's values."""
    if spec.type == "enum":
        return {"enum": list(spec.values or ())}
    if spec.type == "list":
        return {"type": "array", "items": {"type": _SCALARS[spec.items]} if spec.items else {}}
    return {"type": _SCALARS[spec.type]}


def input_problem(name: str, spec: InputSpec, value: Any) -> str | None:
    """Why `value` does not fit the input (None: it fits)."""
    if spec.type == "enum" and spec.values is None:
        return None  # reported where the input is declared
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(input_schema(spec)).iter_errors(value))
    if error is None:
        return None
    where = "".join(f"[{p!r}]" for p in error.absolute_path)
    return f"{name!r}{where}: {error.message}"


def _from_text(spec: InputSpec, text: str) -> Any:
    if spec.type == "string":
        return text
    if spec.type == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
    if spec.type == "number":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if spec.type == "boolean":
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"{text!r} is not a boolean; write true or false")
    if spec.type == "enum":
        for value in spec.values or ():
            if text == (json.dumps(value) if isinstance(value, bool) else str(value)):
                return value
        return text  # reported as not one of the values
    try:
        return json.loads(text)
    except ValueError:
        example = '["a", "b"]' if spec.type == "list" else '{"key": 1}'
        raise ValueError(f"a {spec.type} is given as JSON, e.g. {example}; got {text!r}") from None


def resolve_inputs(
    source: Source,
    declared: Mapping[str, InputSpec],
    given: Mapping[str, Any],
    *,
    as_text: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The workflow's inputs: the given values, read and checked, and the defaults of the rest.

    Args:
        source: The workflow file (problems point at the inputs' declarations).
        declared: The workflow's `inputs`.
        given: Values by name.
        as_text: Names in `given` whose values are command-line text to read by the input's type.

    Raises:
        WorkflowSpecError: an input is unknown, missing, or does not fit its type.
    """
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for name in given:
        if name not in declared:
            listing = ", ".join(declared) or "none"
            problems.append(
                source.problem(f"no input {name!r} in this workflow (its inputs: {listing})", ("inputs",), key=True)
            )
    for name, spec in declared.items():
        path = ("inputs", name)
        if name not in given:
            if spec.required:
                problems.append(
                    source.problem(
                        f"the input {name!r} is required and was not given; pass -i {name}=VALUE "
                        f"(or give it a default)",
                        path,
                        key=True,
                    )
                )
            else:
                values[name] = spec.default
            continue
        value = given[name]
        if name in as_text and isinstance(value, str):
            try:
                value = _from_text(spec, value)
            except ValueError as exc:
                problems.append(source.problem(f"the input {name!r}: {exc}", path, key=True))
                continue
        problem = input_problem(name, spec, value)
        if problem is not None:
            problems.append(source.problem(f"the input {problem}", path, key=True))
        values[name] = value
    if problems:
        raise source.error(problems)
    return values
