"""agentkit's BFCL scorer against BFCL's own checker, on every single-turn entry (live ones too) and many outputs each.

The outputs are the ground truth and perturbations of it that each rule of the
checker can see: a string written another way, a value changed, a parameter
dropped or added, an int where a float is declared (and the other way), the
wrong name, the calls reordered or repeated, no call. BFCL's checker runs in a
subprocess from the bfcl-eval wheel (`tests/support/bfcl_oracle.py`); every
verdict must be the same.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from typing import Any

import pytest

from agentkit.eval import CATEGORIES, LIVE_CATEGORIES, Entry, load, score
from agentkit.eval.bfcl import data_dir
from tests.support.bfcl_oracle import bfcl_verdicts

Decoded = list[dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    return load(CATEGORIES + LIVE_CATEGORIES)


def truth(entry: Entry, *, last: bool = False) -> Decoded:
    """The expected calls with one acceptable value per parameter (the first, or the last), optional ones left out."""
    calls = []
    for answer in entry.answers:
        name, params = next(iter(answer.items()))
        chosen = {}
        for param, values in params.items():
            given = [v for v in values if v != ""]
            if given:
                chosen[param] = concrete(given[-1] if last else given[0])
        calls.append({name: chosen})
    return calls


def concrete(value: Any) -> Any:
    """An acceptable value as a model would write it: a dictionary's keys take their first acceptable value."""
    if isinstance(value, dict):  # (a few live answers give a dictionary's values bare, not as lists)
        listed = {k: vs if isinstance(vs, list) else [vs] for k, vs in value.items()}
        return {k: concrete(next(v for v in vs if v != "")) for k, vs in listed.items() if any(v != "" for v in vs)}
    if isinstance(value, list):
        return [concrete(v) if isinstance(v, dict) else v for v in value]
    return value


def changed(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rng.choice((1, -1, 7))
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        return value + rng.choice(("x", " extra", "1"))
    if isinstance(value, list):
        return value[:-1] if value else ["x"]
    if isinstance(value, dict):
        return {}
    return "x"


def rewritten(value: Any) -> Any:
    """A string as BFCL's normalisation should still accept it; other values as they are."""
    if isinstance(value, str):
        return value.upper().replace(" ", "  ") + " ."
    if isinstance(value, list):
        return [rewritten(v) for v in value]
    return value


def outputs(entry: Entry, rng: random.Random) -> list[Decoded]:
    first_function = entry.functions[0]["name"] if entry.functions else "f"  # a live entry offers none
    if not entry.relevant:
        return [[], [{first_function: {}}], [{first_function: {"x": 1}}, {first_function: {}}]]
    right = truth(entry)
    found: list[Decoded] = [right, truth(entry, last=True), [], right + right[:1], right[::-1]]
    found.append([{name + "_x": args} for call in right for name, args in call.items()])
    nested = [
        (call, param)
        for call in right
        for args in call.values()
        for param, v in args.items()
        if v and isinstance(v, dict)
    ]
    for call_index, param in [(right.index(c), p) for c, p in nested][:2]:  # a dictionary missing one key
        output = copy.deepcopy(right)
        value = next(iter(output[call_index].values()))[param]
        del value[rng.choice(list(value))]
        found.append(output)
    for _ in range(6):
        output = copy.deepcopy(right)
        call = rng.choice(output)
        args = next(iter(call.values()))
        kind = rng.choice(("drop", "add", "change", "rewrite", "int_float", "float_int", "swap_value"))
        params = list(args)
        if kind == "add" or not params:
            args["unexpected_param"] = 1
        elif kind == "drop":
            del args[rng.choice(params)]
        elif kind == "change":
            param = rng.choice(params)
            args[param] = changed(args[param], rng)
        elif kind == "rewrite":
            param = rng.choice(params)
            args[param] = rewritten(args[param])
        elif kind == "int_float":
            for param in params:
                value = args[param]
                if isinstance(value, float) and value.is_integer():
                    args[param] = int(value)
                elif isinstance(value, int) and not isinstance(value, bool):
                    args[param] = float(value)
        else:
            a, b = rng.choice(params), rng.choice(params)
            args[a], args[b] = args[b], args[a]
        found.append(output)
    return found


def test_the_scorer_gives_bfcls_verdict_on_every_entry_and_perturbation(entries: list[Entry]) -> None:
    rng = random.Random(23)
    cases = [(entry, output) for entry in entries for output in outputs(entry, rng)]
    theirs = bfcl_verdicts(data_dir(), cases)
    crashed = [(e.id, v) for (e, _), v in zip(cases, theirs, strict=True) if isinstance(v, str)]
    assert not crashed, f"BFCL's checker raised on {len(crashed)} cases, e.g. {crashed[:3]}"
    ours = [score(entry, output).correct for entry, output in cases]
    disagree = [(e.id, o, t) for (e, o), mine, t in zip(cases, ours, theirs, strict=True) if mine != t]
    assert not disagree, f"{len(disagree)} of {len(cases)} verdicts differ, e.g. {disagree[:3]}"
    # The cases reach both verdicts in every category, or agreeing would prove little.
    by_category = Counter((e.category, v) for (e, _), v in zip(cases, theirs, strict=True))
    for category in CATEGORIES + LIVE_CATEGORIES:
        assert by_category[(category, True)] > 0, by_category
        assert by_category[(category, False)] > 0, by_category
    assert len(cases) > 30_000  # 31,626 with this seed


def test_the_ground_truth_is_right_and_no_call_is_wrong(entries: list[Entry]) -> None:
    # A few of BFCL's answers name a parameter their function does not declare (parallel_multiple_12's
    # `permeability`): BFCL's own checker refuses them too (the test above), so they are counted, not failed.
    refused = [e.id for e in entries if e.relevant and not score(e, truth(e)).correct]
    assert len(refused) <= len(entries) // 100, refused
    for entry in entries:
        assert score(entry, []).correct is (not entry.relevant), entry.id


def test_strings_compare_as_bfcl_normalises_them() -> None:
    entry = Entry(
        id="x",
        category="simple_python",
        messages=({"role": "user", "content": "?"},),
        functions=(
            {
                "name": "weather.get",
                "description": "",
                "parameters": {
                    "type": "dict",
                    "properties": {"city": {"type": "string"}, "days": {"type": "float"}},
                    "required": ["city"],
                },
            },
        ),
        answers=({"weather.get": {"city": ["New York, NY"], "days": [2.0, ""]}},),
    )
    assert score(entry, [{"weather.get": {"city": "new york ny"}}]).correct
    assert score(entry, [{"weather.get": {"city": "NEW-YORK,NY", "days": 2}}]).correct  # int taken as float
    assert score(entry, [{"weather.get": {"city": "Newark"}}]).reason == "wrong_value"
    assert score(entry, [{"weather.get": {"city": "New York NY", "days": "2"}}]).reason == "wrong_type"
    assert score(entry, [{"weather.get": {"days": 2.0}}]).reason == "missing_required"
    assert score(entry, [{"weather_get": {"city": "New York NY"}}]).reason == "wrong_name"


def _entry(properties: dict[str, Any], answer: dict[str, list[Any]], required: list[str]) -> Entry:
    function = {
        "name": "f.g",
        "description": "",
        "parameters": {"type": "dict", "properties": properties, "required": required},
    }
    return Entry(
        id="synthetic",
        category="simple_python",
        messages=({"role": "user", "content": "?"},),
        functions=(function,),
        answers=({"f.g": answer},),
    )


# Rules the real answers barely reach: dictionaries with optional keys, lists of dictionaries,
# arrays of floats, a variable's name where a number is declared, tuples and `any`.
SYNTHETIC = [
    (
        _entry(
            {"d": {"type": "dict", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}},
            {"d": [{"a": ["Big Apple"], "b": [1, ""]}, ""]},
            [],
        ),
        [
            {},
            {"d": {"a": "big apple"}},
            {"d": {"a": "big apple", "b": 1}},
            {"d": {"a": "x"}},
            {"d": {"b": 1}},
            {"d": {"a": "Big Apple", "c": 1}},
            {"d": {}},
            {"d": "Big Apple"},
        ],
    ),
    (
        _entry(
            {"rows": {"type": "array", "items": {"type": "dict"}}},
            {"rows": [[{"k": ["v"], "n": [2, ""]}, {"k": ["w"]}]]},
            ["rows"],
        ),
        [
            {"rows": [{"k": "V"}, {"k": "w"}]},
            {"rows": [{"k": "v", "n": 2}, {"k": "w"}]},
            {"rows": [{"k": "w"}, {"k": "v"}]},
            {"rows": [{"k": "v"}]},
            {"rows": []},
            {"rows": [{"k": "v"}, "w"]},
        ],
    ),
    (
        _entry({"xs": {"type": "array", "items": {"type": "float"}}}, {"xs": [[1.0, 2.5], [3.0]]}, ["xs"]),
        [
            {"xs": [1.0, 2.5]},
            {"xs": [1, 2.5]},
            {"xs": [3]},
            {"xs": [3.0]},
            {"xs": [2.5, 1.0]},
            {"xs": []},
            {"xs": "xs"},
        ],
    ),
    (
        _entry(
            {"n": {"type": "integer"}, "t": {"type": "tuple", "items": {"type": "string"}}, "v": {"type": "any"}},
            {"n": ["count", 3], "t": [["a", "b"], ""], "v": ["x", ""]},
            ["n"],
        ),
        [
            {"n": "count"},
            {"n": "Count"},
            {"n": 3},
            {"n": 3.0},
            {"n": True},
            {"n": 3, "t": ["A", "b"]},
            {"n": 3, "t": ["a"]},
            {"n": 3, "v": "X"},
            {"n": 3, "v": 1},
            {"n": 3, "t": "a,b"},
        ],
    ),
    (
        _entry({"on": {"type": "boolean"}, "x": {"type": "float"}}, {"on": [True], "x": [0.5, ""]}, ["on"]),
        [{"on": True}, {"on": 1}, {"on": "true"}, {"on": True, "x": 0.5}, {"on": True, "x": 1}, {"on": False}],
    ),
]


def test_the_scorer_gives_bfcls_verdict_on_rules_the_data_barely_reaches() -> None:
    cases = [(entry, [{"f.g": args}]) for entry, arguments in SYNTHETIC for args in arguments]
    theirs = bfcl_verdicts(data_dir(), cases)
    ours = [score(entry, output).correct for entry, output in cases]
    assert ours == theirs, [(o, t, out) for (e, out), o, t in zip(cases, ours, theirs, strict=True) if o != t]
    assert 0 < sum(ours) < len(ours)
