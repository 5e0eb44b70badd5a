"""Templates in workflow values: sandboxed Jinja2 where anything undefined is an error.

A string that is one expression, `"{{ inputs.cities }}"`, is that expression's
value (a list stays a list); any other string with templates renders to text,
lists and mappings in it written as JSON. Conditions (`when`, `until`) are
expressions, with or without the braces.

Before a workflow runs, `references` reads each template for the names it
uses, so a misspelt input or a step that does not exist yet is refused at its
line instead of failing halfway through a run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateRuntimeError, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["Reference", "TemplateUse", "condition", "has_template", "references", "render"]

_ONE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)
_MARKERS = ("{{", "{%", "{#")


def _finalize(value: Any) -> Any:
    # A list or mapping written into text reads as JSON, which is what a model expects.
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


_MOST_BITS = 1_000_000
"""The largest number a template may raise to a power (about 300,000 digits): a bigger one takes minutes."""
_MOST_REPEATED = 1_000_000
"""The longest string or list a template may make by repetition (`"ab" * n`)."""


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, where `**` and `*` refuse results too large to compute or hold.

    (Intercepted operators are also not folded while a template compiles, so a huge power in the text
    cannot stall its compilation either.)
    """

    intercepted_binops = frozenset({"**", "*"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _huge_power(left, right):
            raise SecurityError(f"{left!r} ** {right!r} is too large a number for a template")
        if operator == "*" and _huge_repetition(left, right):
            raise SecurityError(f"a repetition of more than {_MOST_REPEATED} items makes too large a value")
        return super().call_binop(context, operator, left, right)


def _huge_power(base: Any, exponent: Any) -> bool:
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0 or abs(base) <= 1:
        return False
    return exponent * abs(base).bit_length() > _MOST_BITS


def _huge_repetition(left: Any, right: Any) -> bool:
    sequence, times = (left, right) if isinstance(left, str | list | tuple) else (right, left)
    if not (isinstance(sequence, str | list | tuple) and isinstance(times, int)):
        return False
    return len(sequence) * times > _MOST_REPEATED


_ENV = _Sandbox(undefined=StrictUndefined, autoescape=False, finalize=_finalize)


@dataclass(frozen=True)
class Reference:
    """A name a template reads: `steps.research.output.title` is `("steps", ["research", "output", "title"])`."""

    root: str
    chain: tuple[str | int, ...]
    """The constant attributes and keys after the root, as far as they are constant."""


@dataclass(frozen=True)
class TemplateUse:
    """What a template reads."""

    names: frozenset[str]
    """The free names it uses (`inputs`, `steps`, a loop's item...)."""
    references: tuple[Reference, ...]


def has_template(text: str) -> bool:
    return any(marker in text for marker in _MARKERS)


def _expression(text: str) -> str | None:
    """The expression of a string that is exactly one `{{ ... }}`."""
    match = _ONE_EXPRESSION.match(text)
    return match["expr"] if match else None


def _condition_source(text: str) -> str:
    inner = _expression(text)
    return inner if inner is not None else text


def references(text: str, *, condition: bool = False) -> TemplateUse:
    """The names a template (or, with `condition`, an expression) reads.

    Raises:
        jinja2.TemplateSyntaxError: it is not a valid template.
    """
    source = "{{ " + _condition_source(text) + " }}" if condition else text
    try:
        tree = _ENV.parse(source)
        return TemplateUse(frozenset(meta.find_undeclared_variables(tree)), tuple(_chains(tree)))
    except RecursionError:  # Jinja's parser recurses once or more per nested bracket or operator
        raise TemplateSyntaxError(_TOO_DEEP, 1) from None


_TOO_DEEP = "the template nests brackets or operators too deeply; split it up"


def _chains(node: nodes.Node) -> Iterator[Reference]:
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        parts: list[str | int] = []
        inner: nodes.Node = node
        while isinstance(inner, nodes.Getattr | nodes.Getitem):
            if isinstance(inner, nodes.Getattr):
                parts.insert(0, inner.attr)
            elif isinstance(inner.arg, nodes.Const) and isinstance(inner.arg.value, str | int):
                parts.insert(0, inner.arg.value)
            else:  # a computed key: what follows is not known, what precedes is
                yield from _chains(inner.arg)
                parts.clear()
            inner = inner.node
        if isinstance(inner, nodes.Name):
            yield Reference(inner.name, tuple(parts))
        else:
            yield from _chains(inner)
        return
    for child in node.iter_child_nodes():
        yield from _chains(child)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """`value` with its templates filled in: a string that is one `{{ expression }}` gives the
    expression's value (of any type), other text the rendered text; anything else is returned as it is
    (the runner walks lists and mappings itself, to report a failure at its own place in the file).

    Raises:
        jinja2.TemplateError: a name is undefined or an expression fails.
    """
    if not isinstance(value, str) or not has_template(value):
        return value
    expr = _expression(value)
    if expr is not None:
        return _failing_as_template_error(
            lambda: _defined(_ENV.compile_expression(expr, undefined_to_none=False)(**context))
        )
    return _failing_as_template_error(lambda: _ENV.from_string(value).render(**context))


def condition(text: str, context: Mapping[str, Any]) -> bool:
    """Whether the expression `text` holds.

    Raises:
        jinja2.TemplateError: a name is undefined or the expression fails.
    """
    expression = _condition_source(text)
    return bool(
        _failing_as_template_error(
            lambda: _defined(_ENV.compile_expression(expression, undefined_to_none=False)(**context))
        )
    )


def _failing_as_template_error(evaluate: Callable[[], Any]) -> Any:
    """`evaluate()`, any failure raised as a `TemplateError`: an expression on the run's data can fail in
    any way (`1 / 0`, `"a" + 1`), and the runner reports a `TemplateError` at the template's place."""
    try:
        return evaluate()
    except TemplateError:
        raise
    except RecursionError:
        raise TemplateRuntimeError(_TOO_DEEP) from None
    except Exception as exc:
        raise TemplateRuntimeError(f"{type(exc).__name__}: {exc}") from exc


def _defined(value: Any) -> Any:
    """`value`, having raised if it is (or holds) an undefined name: an expression's value is not
    printed, so `StrictUndefined` would otherwise pass through silently."""
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError, naming what is missing
    elif isinstance(value, list | tuple):
        for item in value:
            _defined(item)
    elif isinstance(value, dict):
        for item in value.values():
            _defined(item)
    return value
