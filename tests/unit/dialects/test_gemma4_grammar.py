"""Unit tests for `gemma4_grammar`: the grammar enforced while Gemma 4 decodes.

Both grammar engines check strings against the constraint on the CPU, with no
model (tests/support/grammars.py): llguidance reads its Lark serialisation,
xgrammar its EBNF, and every check asserts that they agree. The calls checked
are written by `gemma4.render_call`, so the grammar and the renderer are held
to the same syntax.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Literal

import pydantic
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agentkit.dialects.gemma4 import TURN_END, parse_calls, render_call
from agentkit.dialects.gemma4_grammar import build_constraint
from agentkit.messages import ToolCall
from agentkit.tool import ToolSpec, tool
from tests.support.grammars import accepts as accepts_both


def accepts(tools: list[ToolSpec], tool_choice: str, text: str, **options: Any) -> bool:
    """Both engines accept `text` under the constraint (and agree: see tests/support/grammars.py)."""
    return accepts_both(build_constraint(tools, tool_choice, **options), text)


def call(name: str, **arguments: Any) -> str:
    return render_call(ToolCall(name=name, arguments=arguments))


# --- random schemas and values ------------------------------------------------------------

_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
# Keys `render_call` writes bare, and a few it must delimit (a space, a colon).
_KEYS = _NAMES | st.sampled_from(["a b", "x:y", "Ünï", "9lives", "k.v-w"])
# Strings heavy in the delimiter's characters: the grammar's hardest case.
# A string in a constrained call holds neither `<|` nor `|>` (see the grammar:
# the stop markers `<|tool_response>` and `<turn|>` cannot hide in one).
_STRINGS = (st.text(alphabet='<|">ab \n\té😀', max_size=30) | st.text(max_size=20)).filter(
    lambda s: "<|" not in s and "|>" not in s
)
# Below 1e308: the grammar stops numbers there, short of a float's overflow (see its `num`).
_FLOATS = st.floats(min_value=-1e308, max_value=1e308, exclude_min=True, exclude_max=True)

Schema = dict[str, Any]


@st.composite
def schemas(draw: st.DrawFn, depth: int = 0) -> Schema:
    leaves = st.sampled_from(["string", "enum", "integer", "number", "boolean", "free"])
    kinds = leaves if depth >= 2 else leaves | st.sampled_from(["nullable", "array", "object", "ref"])
    kind = draw(kinds | st.sampled_from(["bounded integer", "bounded number", "sized string", "date"]))
    if kind == "bounded integer":
        low = draw(st.integers(-(10**6), 10**6))
        return {"type": "integer", "minimum": low, "maximum": low + draw(st.integers(0, 10**4))}
    if kind == "bounded number":
        low = draw(st.integers(-1000, 1000)) / 8
        return {"type": "number", "exclusiveMinimum": low, "maximum": low + draw(st.integers(1, 400)) / 4}
    if kind == "sized string":
        low = draw(st.integers(0, 5))
        return {"type": "string", "minLength": low, "maxLength": low + draw(st.integers(0, 8))}
    if kind == "date":
        return {"type": "string", "format": "date"}
    if kind == "enum":
        return {"enum": draw(st.lists(_STRINGS, min_size=1, max_size=4, unique=True)), "type": "string"}
    if kind == "free":  # Pydantic's `Any`
        return {}
    if kind == "nullable":
        return {"anyOf": [draw(schemas(depth + 1)), {"type": "null"}], "default": None}
    if kind == "array":
        return {"type": "array", "items": draw(schemas(depth + 1))}
    if kind in ("object", "ref"):
        keys = draw(st.lists(_KEYS, min_size=0 if kind == "object" else 1, max_size=5, unique=True))
        properties = {key: draw(schemas(depth + 1)) for key in keys}
        required = [key for key in keys if draw(st.booleans())]
        node = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
        return {"$ref": "#/$defs/Nested", "$defs": {"Nested": node}} if kind == "ref" else node
    return {"type": kind}


def hoist(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """Moves the `$defs` of nested references to the top, as Pydantic writes them."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "$defs":
            continue
        if key == "$ref":
            name = f"M{len(defs)}"
            defs[name] = {}
            defs[name] = hoist(schema["$defs"]["Nested"], defs)
            value = f"#/$defs/{name}"
        elif isinstance(value, dict):
            value = {k: hoist(v, defs) for k, v in value.items()} if key == "properties" else hoist(value, defs)
        elif isinstance(value, list):
            value = [hoist(v, defs) for v in value]
        out[key] = value
    return out


# The grammar caps an integer at 25 digits (a model must not write digits forever).
_INTEGERS = st.integers(-(10**25) + 1, 10**25 - 1)
_ANY = st.recursive(
    st.none() | st.booleans() | _INTEGERS | _FLOATS | _STRINGS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=6,
)


def values(schema: Schema, defs: dict[str, Schema]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return values(defs[schema["$ref"].removeprefix("#/$defs/")], defs)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([values(branch, defs) for branch in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "integer" and "minimum" in schema:
        return st.integers(schema["minimum"], schema["maximum"])
    if kind == "number" and "maximum" in schema:
        # Bounded numbers are written as xgrammar's range grammar allows: at most
        # six decimals, no exponent; quarters and eighths print exactly.
        low, high = schema["exclusiveMinimum"], schema["maximum"]
        return st.integers(int(low * 8) + 1, int(high * 8)).map(lambda n: n / 8)
    if kind == "string" and "maxLength" in schema:
        # A string with length bounds holds no `<` or `|` (see the grammar).
        return st.text(
            alphabet=st.characters(codec="utf-8", exclude_characters="<|"),
            min_size=schema["minLength"],
            max_size=schema["maxLength"],
        )
    if kind == "string" and schema.get("format") == "date":
        return st.dates().map(lambda d: d.isoformat())
    simple: dict[Any, st.SearchStrategy[Any]] = {
        "string": _STRINGS,
        "integer": st.integers(-(10**20), 10**20),
        "number": _FLOATS | st.integers(-1000, 1000),
        "boolean": st.booleans(),
        "null": st.none(),
        None: _ANY,
    }
    if kind in simple:
        return simple[kind]
    if kind == "array":
        return st.lists(values(schema["items"], defs), max_size=3)
    required = set(schema["required"])
    return st.fixed_dictionaries(
        {k: values(v, defs) for k, v in schema["properties"].items() if k in required},
        optional={k: values(v, defs) for k, v in schema["properties"].items() if k not in required},
    )


@st.composite
def toolboxes(draw: st.DrawFn) -> tuple[list[ToolSpec], list[ToolCall]]:
    """One to three tools with random schemas, and a call to each with valid arguments."""
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), min_size=1, max_size=3, unique=True))
    specs, calls = [], []
    for name in names:
        keys = draw(st.lists(_KEYS, max_size=6, unique=True))
        defs: dict[str, Schema] = {}
        properties = {key: hoist(draw(schemas()), defs) for key in keys}
        required = [key for key in keys if draw(st.booleans())]
        parameters: Schema = {"type": "object", "properties": properties, "required": required}
        parameters |= {"additionalProperties": False} | ({"$defs": defs} if defs else {})
        specs.append(ToolSpec(name=name, description="", parameters=parameters))
        calls.append(ToolCall(name=name, arguments=draw(values(parameters, defs))))
    return specs, calls


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toolboxes(), _STRINGS.filter(lambda s: "<|tool_call>" not in s))
def test_rendered_calls_are_accepted(box: tuple[list[ToolSpec], list[ToolCall]], text: str) -> None:
    specs, calls = box
    first, last = render_call(calls[0]), render_call(calls[-1])
    assert parse_calls(first)[0].arguments == calls[0].arguments  # the renderer reads back
    assert accepts(specs, "auto", first)
    assert accepts(specs, "auto", text + first)
    assert accepts(specs, "auto", text + first + last + text)
    assert accepts(specs, "required", first + last)
    assert accepts(specs, "required", text + first + last, thinking=True)
    assert accepts(specs, calls[0].name, first)
    assert accepts(specs, calls[0].name, text + first, thinking=True)
    # Resumed inside a thought (thinking on, after tool results): the rest of it, then the calls.
    thought = text.replace("<channel|>", "") + "\n<channel|>"
    for choice in ("auto", "required", calls[0].name):
        assert accepts(specs, choice, thought + first, thinking=True, in_thought=True)
        assert not accepts(specs, choice, first, thinking=True, in_thought=True)


# A value of another type than each simple kind accepts.
_WRONG: dict[str, Any] = {
    "string": 7,
    "integer": "7",
    "number": "7",
    "boolean": "true",
    "array": {"a": 1},
    "object": [1],
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toolboxes(), st.sampled_from(["unknown tool", "missing argument", "unknown key", "wrong type"]), st.data())
def test_broken_calls_are_refused(
    box: tuple[list[ToolSpec], list[ToolCall]], breakage: str, data: st.DataObject
) -> None:
    specs, calls = box
    spec, call = specs[0], calls[0]
    properties, required = spec.parameters["properties"], spec.parameters["required"]
    name, arguments = call.name, dict(call.arguments)
    if breakage == "unknown tool":
        name = data.draw(_NAMES.filter(lambda n: n not in {s.name for s in specs}))
    elif breakage == "missing argument":
        assume(required)
        del arguments[data.draw(st.sampled_from(required))]
    elif breakage == "unknown key":
        arguments[data.draw(_NAMES.filter(lambda k: k not in properties))] = 1
    else:
        typed = [k for k in arguments if properties[k].get("type") in _WRONG]
        assume(typed)
        key = data.draw(st.sampled_from(typed))
        arguments[key] = _WRONG[properties[key]["type"]]
    broken = render_call(ToolCall(name=name, arguments=arguments))
    assert not accepts(specs, "auto", broken)
    assert not accepts(specs, "required", broken)


# --- what is refused ----------------------------------------------------------------------


class Address(pydantic.BaseModel):
    street: str
    zip_code: int | None = None


@tool
def get_weather(
    city: str,
    unit: Literal["celsius", "fahrenheit"] = "celsius",
    days: int = 1,
    address: Address | None = None,
    tags: list[str] | None = None,
) -> str:
    """Get the weather.

    Args:
        city: The city.
        unit: The unit.
        days: How many days.
        address: Where exactly.
        tags: Labels.
    """
    return city


@tool
def stop() -> str:
    """Stop."""
    return "stopped"


TOOLS = [get_weather.spec, stop.spec]
GOOD = call("get_weather", address={"street": "Main", "zip_code": 7}, city="Paris", days=3, unit="celsius")


def test_a_good_call_and_free_text_are_accepted() -> None:
    assert accepts(TOOLS, "auto", GOOD)
    assert accepts(TOOLS, "auto", "Just text, no call.")
    assert accepts(TOOLS, "auto", "<|channel>thought\nhmm<channel|>" + GOOD + call("stop"), thinking=True)
    assert accepts(TOOLS, "required", "Let me check. " + GOOD, thinking=True)
    assert accepts(TOOLS, "required", GOOD + "<|tool_response>")  # the stop string after a call
    assert accepts(TOOLS, "get_weather", GOOD + GOOD)


@pytest.mark.parametrize(
    "text",
    [
        call("get_weather", city=3),  # wrong type
        call("get_weather", city="Paris", days="3"),  # a string for an int
        call("get_weather", city="Paris", days=1.5),  # a float for an int
        call("get_weather", city="Paris", unit="kelvin"),  # not in the enum
        call("get_weather", city="Paris", address={"zip_code": 1}),  # nested: required key missing
        call("get_weather", days=2),  # required argument missing
        call("get_weather", city="Paris", country="FR"),  # unknown key
        GOOD.replace('city:<|"|>Paris<|"|>,days:3', 'days:3,city:<|"|>Paris<|"|>'),  # unsorted keys
        GOOD.replace("city:", "city: "),  # whitespace the renderer never writes
        call("get_wether", city="Paris"),  # unknown tool
        call("stop", now=True),  # a tool with no arguments given one
        'text <|tool_call>call:get_weather{city:<|"|>Paris<|"|>',  # a call left open
    ],
)
def test_invalid_calls_are_refused(text: str) -> None:
    assert not accepts(TOOLS, "auto", text)


def test_required_and_named_choices() -> None:
    assert not accepts(TOOLS, "required", "Only text.")
    assert not accepts(TOOLS, "required", "Done.<turn|>", thinking=True)
    assert not accepts(TOOLS, "required", "Let me check. " + GOOD)  # not thinking: the call comes first
    assert not accepts(TOOLS, "stop", GOOD)  # another tool than the one named
    assert not accepts(TOOLS, "stop", "No call.")
    assert accepts(TOOLS, "stop", call("stop"))
    assert build_constraint(TOOLS, "none") is None
    assert build_constraint([], "auto") is None
    with pytest.raises(ValueError, match="needs at least one tool"):
        build_constraint([], "required")
    with pytest.raises(ValueError, match="not among the tools"):
        build_constraint(TOOLS, "nope")


@pytest.mark.parametrize("choice", ["auto", "required", "get_weather"])
def test_without_parallel_calls_the_turn_ends_after_its_first_call(choice: str) -> None:
    assert accepts(TOOLS, choice, GOOD, parallel_calls=False)
    assert accepts(TOOLS, choice, GOOD + GOOD)  # the default allows several
    assert not accepts(TOOLS, choice, GOOD + GOOD, parallel_calls=False)
    assert not accepts(TOOLS, choice, GOOD + " and more text", parallel_calls=False)


def test_any_subset_of_optional_properties_in_sorted_order() -> None:
    keys = ["a", "b", "c", "d", "e"]
    schema = {
        "type": "object",
        "properties": {key: {"type": "integer"} for key in keys},
        "required": ["c"],
        "additionalProperties": False,
    }
    spec = ToolSpec(name="f", description="", parameters=schema)
    for size in range(len(keys) + 1):
        for subset in itertools.combinations(keys, size):
            assert accepts([spec], "auto", call("f", **dict.fromkeys(subset, 1))) == ("c" in subset)
    assert not accepts([spec], "auto", "<|tool_call>call:f{c:1,a:1}<tool_call|>")
    assert not accepts([spec], "auto", "<|tool_call>call:f{c:1,c:1}<tool_call|>")
    assert not accepts([spec], "auto", "<|tool_call>call:f{,c:1}<tool_call|>")


def test_arrays_tuples_and_free_dicts() -> None:
    class Args(pydantic.BaseModel):
        pair: tuple[int, str]
        few: list[int] = pydantic.Field(default=[], max_length=2)
        some: list[bool] = pydantic.Field(default=[True], min_length=1)
        many: list[int] = pydantic.Field(default=[1, 2, 3], min_length=3)
        scores: dict[str, float] = {}

    spec = ToolSpec(name="g", description="", parameters=Args.model_json_schema())
    assert accepts([spec], "auto", call("g", pair=[1, "x"], few=[1, 2], some=[False], scores={"a b": 1.5, "z": 2}))
    assert not accepts([spec], "auto", call("g", pair=[1, "x", 2]))
    assert not accepts([spec], "auto", call("g", pair=[1, "x"], few=[1, 2, 3]))
    assert not accepts([spec], "auto", call("g", pair=[1, "x"], some=[]))
    assert accepts([spec], "auto", call("g", many=[1, 2, 3, 4], pair=[1, "x"]))
    assert not accepts([spec], "auto", call("g", many=[1, 2], pair=[1, "x"]))
    assert not accepts([spec], "auto", call("g", pair=[1, "x"], scores={"a": "high"}))


def test_recursive_models() -> None:
    class Node(pydantic.BaseModel):
        label: str
        children: list[Node] = []

    spec = ToolSpec(name="tree", description="", parameters={"type": "object", **_wrap(Node)})
    tree = {"children": [{"children": [{"label": "c"}], "label": "b"}], "label": "a"}
    assert accepts([spec], "auto", call("tree", root=tree))
    assert not accepts([spec], "auto", call("tree", root={"children": [{}], "label": "a"}))


def _wrap(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    inner = model.model_json_schema()  # a recursive model's is a `$ref` into its `$defs`
    defs = inner.pop("$defs")
    return {"properties": {"root": inner}, "required": ["root"], "$defs": defs}


def test_relaxed_keywords_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$", "maxLength": 3}},
        "required": ["code"],
    }
    spec = ToolSpec(name="relaxed_tool", description="", parameters=schema)
    with caplog.at_level(logging.WARNING, logger="agentkit.grammar"):
        build_constraint([spec], "auto")
        build_constraint([spec], "required")
    messages = [r.getMessage() for r in caplog.records if r.name == "agentkit.grammar"]
    assert len(messages) == 1
    assert "enforce pattern;" in messages[0]
    assert accepts([spec], "auto", call("relaxed_tool", code="low"))  # the pattern is relaxed: Pydantic checks it
    assert not accepts([spec], "auto", call("relaxed_tool", code="LONG"))  # the length is not


# --- vLLM's own checks ----------------------------------------------------------------------


def test_vllm_accepts_the_constraint() -> None:
    """vLLM's request validation for each structured-outputs backend, on what the engine would send."""
    sampling = pytest.importorskip("vllm.sampling_params")
    guidance = pytest.importorskip("vllm.v1.structured_output.backend_guidance")
    xgrammar_backend = pytest.importorskip("vllm.v1.structured_output.backend_xgrammar")
    variants: list[tuple[str, dict[str, Any]]] = [
        ("auto", {}),
        ("required", {}),
        ("get_weather", {}),
        ("required", {"thinking": True}),
        ("auto", {"output_schema": FORECAST, "thinking": True}),
        ("none", {"output_schema": FORECAST}),
        ("auto", {"max_text": 100}),
        ("auto", {"thinking": True, "in_thought": True}),
        ("required", {"thinking": True, "in_thought": True}),
        ("none", {"thinking": True, "in_thought": True}),
    ]
    for choice, options in variants:
        constraint = build_constraint(TOOLS, choice, **options)
        assert constraint is not None
        for engine, validate in (
            ("guidance", guidance.validate_guidance_grammar),
            ("xgrammar", xgrammar_backend.validate_xgrammar_grammar),
        ):
            fields = constraint.structured_outputs(engine)
            params = sampling.SamplingParams(
                structured_outputs=sampling.StructuredOutputsParams(**fields), max_tokens=64
            )
            validate(params)


@pytest.mark.parametrize("inside", ["<|tool_response>", "a<turn|>", "x<|y", "y|>z", '<|"|>'])
def test_a_string_cannot_hold_a_marker_a_stop_string_would_cut(inside: str) -> None:
    # Stop strings end generation whatever the grammar's state: inside a string
    # they would cut a call in half.
    text = '<|tool_call>call:get_weather{city:<|"|>' + inside + '<|"|>,days:3}<tool_call|>'
    assert not accepts(TOOLS, "auto", text)


@pytest.mark.parametrize("inside", ["a < b", "<<", "x|y", "||", "> and <", "a<", "|"])
def test_a_string_may_hold_lone_angle_brackets_and_bars(inside: str) -> None:
    text = '<|tool_call>call:get_weather{city:<|"|>' + inside + '<|"|>,days:3}<tool_call|>'
    assert accepts(TOOLS, "auto", text)


def test_max_string_caps_every_string() -> None:
    def ok(text: str) -> bool:
        return accepts(TOOLS, "auto", text, max_string=5)

    assert ok('<|tool_call>call:get_weather{city:<|"|>Paris<|"|>,days:3}<tool_call|>')
    assert not ok('<|tool_call>call:get_weather{city:<|"|>Parisian<|"|>,days:3}<tool_call|>')


# --- free text, thinking and typed answers ---------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Sure.\n<|turn>user\nWhat now?",  # the model writing the user's next turn
        "<|tool>declaration:stop{}<tool|>",  # a declaration
        "Done.<tool_call|>",  # a closer with nothing open
        "Here:<tool_response|>",
    ],
)
def test_free_text_cannot_leave_the_turn(text: str) -> None:
    assert not accepts(TOOLS, "auto", text)
    assert not accepts(TOOLS, "auto", text, thinking=True)


def test_channel_markers_only_when_thinking() -> None:
    thought = "<|channel>thought\nThe user wants Paris.<channel|>"
    assert not accepts(TOOLS, "auto", thought + GOOD)
    assert accepts(TOOLS, "auto", thought + GOOD, thinking=True)
    assert accepts(TOOLS, "auto", "Done." + TURN_END)  # the stop string ends a text turn


class Forecast(pydantic.BaseModel):
    city: str
    days: list[int]
    unit: Literal["celsius", "fahrenheit"]


FORECAST = Forecast.model_json_schema()
ANSWER = Forecast(city="Paris", days=[1, 2], unit="celsius").model_dump_json()


def test_a_typed_answer_is_json_under_the_output_schema() -> None:
    options: dict[str, Any] = {"output_schema": FORECAST}
    assert accepts(TOOLS, "auto", ANSWER, **options)
    assert accepts(TOOLS, "auto", GOOD, **options)  # or calls
    assert accepts(TOOLS, "none", ANSWER, **options)
    assert not accepts(TOOLS, "none", GOOD, **options)
    refused = [
        "It is sunny in Paris.",  # text where the answer is due
        ANSWER.replace("celsius", "kelvin"),  # not in the enum
        ANSWER.replace('"days":[1,2],', ""),  # a required key missing
        ANSWER.replace(",", ", "),  # compact, as agentkit writes JSON everywhere
        "Let me check. " + GOOD,  # text then calls: the turn is one or the other
    ]
    for text in refused:
        assert not accepts(TOOLS, "auto", text, **options), text
    assert build_constraint([], "none", output_schema=FORECAST) is not None


def test_a_typed_answers_keys_come_in_its_schemas_order() -> None:
    # Pydantic lists properties as the model declares them, and writes them so.
    class Reading(pydantic.BaseModel):
        place: str
        high: int
        at: str

    schema = Reading.model_json_schema()
    assert accepts([], "none", '{"place":"Oslo","high":-3,"at":"noon"}', output_schema=schema)
    assert not accepts([], "none", '{"at":"noon","high":-3,"place":"Oslo"}', output_schema=schema)


def test_a_typed_answer_may_follow_a_thought() -> None:
    thought = "<|channel>thought\nI know this.<channel|>"
    assert accepts(TOOLS, "auto", thought + ANSWER, output_schema=FORECAST, thinking=True)
    assert accepts(TOOLS, "auto", thought + GOOD, output_schema=FORECAST, thinking=True)
    assert accepts(TOOLS, "auto", ANSWER, output_schema=FORECAST, thinking=True)
    assert not accepts(TOOLS, "auto", thought + ANSWER, output_schema=FORECAST)


def test_max_text_caps_free_text() -> None:
    assert accepts(TOOLS, "auto", "x" * 12, max_text=12)
    assert not accepts(TOOLS, "auto", "x" * 13, max_text=12)
    assert accepts(TOOLS, "auto", GOOD, max_text=12)  # calls are not text
    assert not accepts(TOOLS, "auto", "Wait." + GOOD, max_text=12)
    assert accepts(TOOLS, "none", "y" * 12, max_text=12)
    assert accepts(TOOLS, "auto", "Done." + TURN_END, max_text=12)  # the stop string may end it
    for text in [" Lead", "<b>", "a<|b", "a|>b", "a < b", "a|b", "Done.<turn|>more"]:  # no < or |, no blank start
        assert not accepts(TOOLS, "auto", text, max_text=12), text


# --- bounds, lengths and formats ---------------------------------------------------------------


BOOK = ToolSpec(
    name="book",
    description="Book.",
    parameters={
        "type": "object",
        "properties": {
            "people": {"type": "integer", "minimum": 1, "maximum": 20},
            "budget": {"type": "number", "exclusiveMinimum": 0, "maximum": 99.5},
            "code": {"type": "string", "minLength": 2, "maxLength": 4},
            "day": {"type": "string", "format": "date"},
            "note": {"type": "string", "format": "email"},
            "step": {"type": "integer", "multipleOf": 5},
        },
        "required": ["budget", "code", "day", "people"],
        "additionalProperties": False,
    },
)


def booking(**changes: Any) -> str:
    arguments = {"people": 2, "budget": 12.5, "code": "AB1", "day": "2026-11-23"} | changes
    return render_call(ToolCall(name="book", arguments=arguments))


@pytest.mark.parametrize(
    ("changes", "ok"),
    [
        ({}, True),
        ({"people": 20, "budget": 99.5, "code": "ab"}, True),
        ({"people": 0}, False),
        ({"people": 21}, False),
        ({"people": -3}, False),
        ({"budget": 0}, False),  # exclusive
        ({"budget": 99.75}, False),
        ({"budget": 0.25}, True),
        ({"code": "A"}, False),
        ({"code": "ABCDE"}, False),
        ({"code": "A<B"}, False),  # a bounded string holds no < or |
        ({"day": "2026-13-01"}, False),
        ({"day": "23/11/2026"}, False),
        ({"note": "anything at all"}, True),  # email: relaxed, Pydantic checks
        ({"step": 7}, True),  # multipleOf: relaxed
    ],
)
def test_numeric_bounds_string_lengths_and_formats(changes: dict[str, Any], ok: bool) -> None:
    assert accepts([BOOK], "auto", booking(**changes)) is ok


def test_max_string_caps_a_bounded_string_too() -> None:
    assert accepts([BOOK], "auto", booking(code="ABC"), max_string=3)
    assert not accepts([BOOK], "auto", booking(code="ABCD"), max_string=3)


def test_max_items_caps_every_array_but_not_below_min_items() -> None:
    ok = call("get_weather", city="Oslo", tags=["a", "b"])
    assert accepts(TOOLS, "auto", ok, max_items=2)
    assert not accepts(TOOLS, "auto", call("get_weather", city="Oslo", tags=["a", "b", "c"]), max_items=2)
    pair = ToolSpec(
        name="pair",
        description="",
        parameters={
            "type": "object",
            "properties": {"xs": {"type": "array", "items": {"type": "integer"}, "minItems": 3}},
            "required": ["xs"],
        },
    )
    assert accepts([pair], "auto", call("pair", xs=[1, 2, 3]), max_items=2)
    assert not accepts([pair], "auto", call("pair", xs=[1, 2, 3, 4]), max_items=2)


@pytest.mark.parametrize(
    ("number", "ok"),
    [("92e66", True), ("9.5e+307", True), ("1e-400", True), ("92E661", False), ("1e308", False), ("12e+300", False)],
)
def test_numbers_stay_finite_floats(number: str, ok: bool) -> None:
    # Random weights wrote `92E661` (infinite as a float, so no JSON value) when exponents had three free digits.
    number_tool = ToolSpec(
        name="f", description="", parameters={"type": "object", "properties": {"x": {"type": "number"}}}
    )
    assert accepts([number_tool], "required", f"<|tool_call>call:f{{x:{number}}}<tool_call|>") == ok
    if ok:
        assert isinstance(parse_calls(f"<|tool_call>call:f{{x:{number}}}<tool_call|>")[0].arguments["x"], float)


def test_a_key_required_but_not_declared_must_still_be_written() -> None:
    # BFCL's parallel_29: `population` is a dict whose keys are only named in `required`.
    household = ToolSpec(
        name="waste",
        description="",
        parameters={
            "type": "object",
            "properties": {"population": {"type": "object", "required": ["adults", "children"]}},
            "required": ["population"],
        },
    )
    assert accepts([household], "auto", call("waste", population={"adults": 2, "children": "one"}))
    assert not accepts([household], "auto", call("waste", population={}))
    assert not accepts([household], "auto", call("waste", population={"adults": 2}))
