"""BFCL's AST rules: whether a model's calls answer an entry.

    score(entry, [{"math.factorial": {"number": 5}}])    # Verdict(correct=True, reason=None)

The rules are BFCL's (its `ast_checker`), written here from their behaviour,
and checked against BFCL's own checker on the same outputs by the tests
(`tests/support/bfcl_oracle.py`):

- an irrelevance entry is right when the turn makes no call;
- a simple entry needs exactly one call, a `multiple` one exactly one call to
  the expected function among those offered, a `parallel` one as many calls as
  expected, matched in any order (each expected call takes the first unmatched
  call that fits it);
- a call fits when it names the function, gives every required parameter, no
  parameter that is not declared or not among the answer's, leaves out only
  parameters the answer marks optional (`""` among its values), and gives
  each parameter a value of the declared type (an int where a float is
  declared is taken as the float) that is among the acceptable ones;
- strings compare after BFCL's normalisation (spaces and `,./-_*^` dropped,
  lower case, `'` as `"`), in lists and in dictionaries too (one level deep);
- a value of the type the acceptable values have rather than the declared one
  is taken as a variable's name and compared as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentkit.eval.bfcl import Entry

__all__ = ["Verdict", "score"]


@dataclass(frozen=True)
class Verdict:
    """Whether the calls answer the entry, and if not, why (`reason`: a short kind, e.g. `wrong_count`)."""

    correct: bool
    reason: str | None = None
    detail: str = ""


_RIGHT = Verdict(True)

Decoded = Sequence[Mapping[str, Mapping[str, Any]]]
"""A turn's calls as BFCL reads them: `[{function: {parameter: value}}]`."""

# The Python type each BFCL type's values must have (`any`: a string, as BFCL checks it).
_PYTHON = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
}


def score(entry: Entry, calls: Decoded) -> Verdict:
    """Whether `calls` (BFCL's decoded form, BFCL's names) answer `entry`, by BFCL's AST rules.

    An entry whose own data the rules cannot read (a type BFCL does not know)
    is wrong with reason `unscorable`, never an exception.
    """
    try:
        return _score(entry, calls)
    except (KeyError, TypeError, AttributeError, IndexError, StopIteration) as exc:
        return Verdict(False, "unscorable", f"{type(exc).__name__}: {exc}")


def _score(entry: Entry, calls: Decoded) -> Verdict:
    if not entry.relevant:
        return _RIGHT if not calls else Verdict(False, "call_made", f"{len(calls)} call(s) where none was due")
    expected = entry.answers
    if "parallel" in entry.category:
        return _parallel(entry.functions, calls, expected)
    if len(calls) != len(expected) or ("multiple" not in entry.category and len(calls) != 1):
        return Verdict(False, "wrong_count", f"{len(calls)} call(s), {len(expected)} expected")
    if "multiple" in entry.category:
        return _call(_described(entry.functions, expected[0]), calls[0], expected[0])
    return _call(entry.functions[0], calls[0], expected[0])


def _described(functions: Sequence[Mapping[str, Any]], answer: Mapping[str, Any]) -> Mapping[str, Any]:
    name = next(iter(answer))
    return next((f for f in functions if f["name"] == name), functions[0])


def _parallel(functions: Sequence[Mapping[str, Any]], calls: Decoded, expected: Sequence[Mapping[str, Any]]) -> Verdict:
    if len(calls) != len(expected):
        return Verdict(False, "wrong_count", f"{len(calls)} call(s), {len(expected)} expected")
    unmatched = list(range(len(calls)))
    for answer in expected:
        description = _described(functions, answer)
        verdicts = [(index, _call(description, calls[index], answer)) for index in unmatched]
        fit = next((index for index, verdict in verdicts if verdict.correct), None)
        if fit is None:
            last = verdicts[-1][1] if verdicts else Verdict(False, "no_match")
            return Verdict(False, "no_match", f"no call fits {next(iter(answer))!r} ({last.reason})")
        unmatched.remove(fit)
    return _RIGHT


def _call(description: Mapping[str, Any], call: Mapping[str, Mapping[str, Any]], answer: Mapping[str, Any]) -> Verdict:
    name = description["name"]
    if name not in call:
        return Verdict(False, "wrong_name", f"expected {name!r}, got {list(call)}")
    arguments = call[name]
    acceptable: Mapping[str, list[Any]] = next(iter(answer.values()))
    declared: Mapping[str, Any] = description["parameters"]["properties"]
    for param in description["parameters"].get("required", ()):
        if param not in arguments:
            return Verdict(False, "missing_required", repr(param))
    for param, value in arguments.items():
        if param not in declared or param not in acceptable:
            return Verdict(False, "unexpected_param", repr(param))
        verdict = _parameter(param, value, declared[param], acceptable[param])
        if not verdict.correct:
            return verdict
    for param, values in acceptable.items():
        if param not in arguments and "" not in values:
            return Verdict(False, "missing_optional", repr(param))
    return _RIGHT


def _parameter(param: str, value: Any, spec: Mapping[str, Any], acceptable: list[Any]) -> Verdict:
    kind = spec["type"]
    expected = _PYTHON[kind]
    inner = _PYTHON[spec["items"]["type"]] if kind in ("array", "tuple") else None
    if kind == "float" and type(value) is int:
        value = float(value)
    typed, variable = _typed(value, expected, inner, acceptable)
    if not typed:
        return Verdict(False, "wrong_type", f"{param!r}: {type(value).__name__} where {kind} is declared")
    if variable:
        fits = value in acceptable
    elif expected is dict:
        fits = _dict_fits(value, acceptable)
    elif expected is list and inner is dict:
        fits = any(
            _sized(option)
            and len(option) == len(value)
            and all(_dict_fits(v, [o]) for v, o in zip(value, option, strict=True))
            for option in acceptable
        )
    elif expected is str:
        fits = normalised(value) in [normalised(o) for o in acceptable if type(o) is str]
    elif expected is list:
        fits = _each_normalised(value) in [_each_normalised(o) for o in acceptable if _sized(o)]
    else:
        fits = value in acceptable
    return _RIGHT if fits else Verdict(False, "wrong_value", f"{param!r}: {value!r}")


def _typed(value: Any, expected: type, inner: type | None, acceptable: Any) -> tuple[bool, bool]:
    """Whether `value` passes BFCL's type check, and whether it counts as a variable's name
    (the type of the acceptable values rather than the declared one)."""
    hint = next((type(o) for o in acceptable if o != ""), None)
    variable = hint is not None and hint is not expected
    items: Any = value  # (`type(value) is expected` would narrow `value` to `object`)
    if type(value) is expected:
        if inner is None:
            return True, variable
        for option in acceptable:  # one acceptable value whose items all have the inner type is enough
            if type(option) is not list or all(_typed(item, inner, None, option)[0] for item in items):
                return True, variable
        return False, False
    if hint is not None and type(value) is hint:
        return True, True
    return False, False


def _dict_fits(value: Mapping[str, Any], acceptable: Sequence[Any]) -> bool:
    for option in acceptable:
        if option == "" or not isinstance(option, Mapping):
            continue
        if all(key in option and _in(item, option[key]) for key, item in value.items()) and all(
            key in value or "" in values for key, values in option.items()
        ):
            return True
    return False


def _in(value: Any, values: Sequence[Any]) -> bool:
    if type(value) is str:
        value = normalised(value)
    return value in [normalised(v) if type(v) is str else v for v in values]


def _sized(option: Any) -> bool:
    return isinstance(option, (list, str))


def _each_normalised(items: Sequence[Any]) -> list[Any]:
    return [normalised(item) if type(item) is str else item for item in items]


_IGNORED = re.compile(r"[ ,./\-_*^]")


def normalised(text: str) -> str:
    """A string as BFCL compares it: no spaces nor `,./-_*^`, lower case, `'` as `"`."""
    return _IGNORED.sub("", text).lower().replace("'", '"')
