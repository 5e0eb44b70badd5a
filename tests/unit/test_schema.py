"""Unit tests for agentkit.schema: hoisting $defs, bounding, example values, titles."""

from __future__ import annotations

import copy
import datetime
from typing import Annotated, Any

import jsonschema
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkit.schema import bound, example_value, hoist_defs, strip_titles

# Deterministic: no example database, a fixed seed, no flaky deadlines.
DETERMINISTIC = settings(derandomize=True, database=None, deadline=None, max_examples=40)


def is_valid(instance: Any, schema: dict[str, Any]) -> bool:
    validator = jsonschema.Draft202012Validator(schema)
    return not list(validator.iter_errors(instance))


def refs(node: Any) -> list[str]:
    """Every `$ref` string in a schema (schema positions only, not data)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append(value)
            elif key not in ("const", "enum", "default", "examples"):
                found.extend(refs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(refs(item))
    return found


class Address(pydantic.BaseModel):
    street: str
    city: str


class Person(pydantic.BaseModel):
    name: str
    home: Address
    previous: list[Address] = []
    work: Address | None = None


# --- hoist_defs ---------------------------------------------------------------------


def test_hoist_defs_moves_defs_under_prefix_and_rewrites_refs() -> None:
    schema = strip_titles(Person.model_json_schema())
    defs: dict[str, Any] = {}

    hoisted = hoist_defs(schema, "person__", defs)

    assert "$defs" not in hoisted
    assert set(defs) == {"person__Address"}
    assert hoisted["properties"]["home"] == {"$ref": "#/$defs/person__Address"}
    assert hoisted["properties"]["previous"]["items"] == {"$ref": "#/$defs/person__Address"}
    assert hoisted["properties"]["work"]["anyOf"] == [{"$ref": "#/$defs/person__Address"}, {"type": "null"}]
    assert defs["person__Address"] == schema["$defs"]["Address"]


def test_hoisted_schema_validates_like_the_original() -> None:
    schema = strip_titles(Person.model_json_schema())
    defs: dict[str, Any] = {}
    hoisted = {"type": "object", "properties": {"p": hoist_defs(schema, "x__", defs)}, "$defs": defs}
    good = {"name": "Ada", "home": {"street": "1 Main", "city": "Paris"}, "previous": [{"street": "a", "city": "b"}]}
    bad = {"name": "Ada", "home": {"street": "1 Main"}}

    assert is_valid(good, schema)
    assert is_valid({"p": good}, hoisted)
    assert not is_valid(bad, schema)
    assert not is_valid({"p": bad}, hoisted)
    for ref in refs(hoisted):
        assert ref.removeprefix("#/$defs/") in defs


def test_hoist_defs_rewrites_refs_inside_defs_themselves() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A"}},
        "$defs": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
            "B": {"type": "array", "items": [{"$ref": "#/$defs/A"}, {"type": "integer"}]},
        },
    }
    defs: dict[str, Any] = {}

    hoist_defs(schema, "t__", defs)

    assert defs == {
        "t__A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/t__B"}}},
        "t__B": {"type": "array", "items": [{"$ref": "#/$defs/t__A"}, {"type": "integer"}]},
    }


def test_hoist_defs_keeps_properties_named_like_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {
            "$defs": {"type": "string"},
            "$ref": {"$ref": "#/$defs/R"},
            "items": {"type": "integer"},
        },
        "patternProperties": {"^\\$defs$": {"$ref": "#/$defs/R"}},
        "$defs": {"R": {"type": "boolean"}},
    }
    defs: dict[str, Any] = {}

    hoisted = hoist_defs(schema, "k__", defs)

    assert hoisted["properties"] == {
        "$defs": {"type": "string"},
        "$ref": {"$ref": "#/$defs/k__R"},
        "items": {"type": "integer"},
    }
    assert hoisted["patternProperties"] == {"^\\$defs$": {"$ref": "#/$defs/k__R"}}
    assert defs == {"k__R": {"type": "boolean"}}


def test_hoist_defs_leaves_other_refs_alone() -> None:
    schema = {"anyOf": [{"$ref": "https://example.com/s.json"}, {"$ref": "#/properties/x"}]}

    assert hoist_defs(schema, "p__", {}) == schema


def test_hoist_defs_accumulates_and_does_not_mutate() -> None:
    first = strip_titles(Person.model_json_schema())
    second = {"$ref": "#/$defs/Address", "$defs": {"Address": {"type": "string"}}}
    originals = copy.deepcopy((first, second))
    defs: dict[str, Any] = {}

    hoist_defs(first, "a__", defs)
    hoisted = hoist_defs(second, "b__", defs)

    assert set(defs) == {"a__Address", "b__Address"}
    assert hoisted == {"$ref": "#/$defs/b__Address"}
    assert (first, second) == originals


def test_hoist_defs_without_defs_is_a_plain_copy() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    defs: dict[str, Any] = {}

    hoisted = hoist_defs(schema, "p__", defs)

    assert hoisted == schema
    assert hoisted is not schema
    assert defs == {}


def test_hoist_defs_leaves_data_values_alone() -> None:
    data = {"$defs": {"Item": {"type": "string"}}, "$ref": "#/$defs/Item"}
    schema = {
        "type": "object",
        "properties": {
            "template": {"type": "object", "default": data, "examples": [data]},
            "fixed": {"const": data},
            "choice": {"enum": [data]},
        },
    }

    assert hoist_defs(schema, "p__", {}) == schema


def test_hoist_defs_rewrites_a_ref_next_to_data_but_not_the_data() -> None:
    data = {"$ref": "#/$defs/Item"}
    schema = {
        "type": "object",
        "properties": {"item": {"$ref": "#/$defs/Item", "default": data, "examples": [data]}},
        "$defs": {"Item": {"type": "object", "const": data}},
    }
    defs: dict[str, Any] = {}

    hoisted = hoist_defs(schema, "p__", defs)

    assert hoisted["properties"]["item"] == {"$ref": "#/$defs/p__Item", "default": data, "examples": [data]}
    assert defs == {"p__Item": {"type": "object", "const": data}}


# --- bound --------------------------------------------------------------------------


def test_bound_adds_max_length_to_free_strings() -> None:
    assert bound({"type": "string"}, max_string=50, max_items=4) == {"type": "string", "maxLength": 50}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "enum": ["a", "b"]},
        {"type": "string", "const": "a"},
        {"type": "string", "pattern": "^[a-z]{1,3}$"},
        {"type": "string", "format": "date"},
        {"type": "string", "maxLength": 1000},
        {"type": "string", "maxLength": 3},
        {"type": "integer"},
        {"type": "array", "items": {"type": "integer"}, "maxItems": 100},
    ],
    ids=["enum", "const", "pattern", "format", "long-max", "short-max", "integer", "bounded-array"],
)
def test_bound_leaves_pinned_or_bounded_schemas_alone(schema: dict[str, Any]) -> None:
    assert bound(schema, max_string=50, max_items=4) == schema


def test_bound_adds_max_items_to_arrays_and_recurses_into_items() -> None:
    schema = {"type": "array", "items": {"type": "string"}}

    assert bound(schema, max_string=50, max_items=4) == {
        "type": "array",
        "items": {"type": "string", "maxLength": 50},
        "maxItems": 4,
    }


def test_bound_respects_minimums_above_the_ceiling() -> None:
    schema = {
        "type": "object",
        "properties": {
            "s": {"type": "string", "minLength": 80},
            "a": {"type": "array", "minItems": 9, "items": {"type": "integer"}},
        },
    }

    bounded = bound(schema, max_string=50, max_items=4)

    assert bounded["properties"]["s"]["maxLength"] == 80
    assert bounded["properties"]["a"]["maxItems"] == 9


def test_bound_handles_nullable_type_lists() -> None:
    bounded = bound({"type": ["string", "null"]}, max_string=7, max_items=2)
    assert bounded == {"type": ["string", "null"], "maxLength": 7}
    bounded = bound({"type": ["array", "null"], "items": {"type": "string"}}, max_string=7, max_items=2)
    assert bounded["maxItems"] == 2
    assert bounded["items"]["maxLength"] == 7


def test_bound_reaches_everywhere_a_schema_can_nest() -> None:
    schema = {
        "type": "object",
        "properties": {
            "one": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "tuple": {"type": "array", "prefixItems": [{"type": "string"}], "items": False},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "patternProperties": {"^x-": {"type": "string"}},
        "$defs": {"D": {"type": "string"}},
    }

    bounded = bound(schema, max_string=9, max_items=3)

    props = bounded["properties"]
    assert props["one"]["anyOf"][0]["maxLength"] == 9
    assert props["tuple"]["prefixItems"][0]["maxLength"] == 9
    assert props["tuple"]["maxItems"] == 3
    assert props["map"]["additionalProperties"]["maxLength"] == 9
    assert bounded["patternProperties"]["^x-"]["maxLength"] == 9
    assert bounded["$defs"]["D"]["maxLength"] == 9


def test_bound_treats_keyword_named_properties_as_schemas_and_data_as_data() -> None:
    schema = {
        "type": "object",
        "properties": {
            "enum": {"type": "string"},
            "default": {"type": "array", "items": {"type": "integer"}},
        },
        "default": {"type": "string"},
        "examples": [{"type": "array"}],
    }

    bounded = bound(schema, max_string=5, max_items=2)

    assert bounded["properties"]["enum"] == {"type": "string", "maxLength": 5}
    assert bounded["properties"]["default"]["maxItems"] == 2
    assert bounded["default"] == {"type": "string"}
    assert bounded["examples"] == [{"type": "array"}]


def test_bound_does_not_mutate_its_input() -> None:
    schema = strip_titles(Person.model_json_schema())
    before = copy.deepcopy(schema)

    bounded = bound(schema, max_string=10, max_items=2)

    assert schema == before
    assert bounded != schema


def json_schemas(depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    """Small schemas mixing strings, arrays, objects, enums and combinators."""
    leaves = st.one_of(
        st.builds(dict, type=st.just("string")),
        st.fixed_dictionaries({"type": st.just("string"), "minLength": st.integers(0, 300)}),
        st.fixed_dictionaries({"type": st.just("string"), "maxLength": st.integers(1, 300)}),
        st.fixed_dictionaries({"type": st.just("string"), "enum": st.lists(st.text(max_size=3), min_size=1)}),
        st.fixed_dictionaries({"type": st.just(["string", "null"])}),
        st.sampled_from([{"type": "integer"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.fixed_dictionaries(
                {"type": st.just("array"), "items": inner},
                optional={"minItems": st.integers(0, 30)},
            ),
            st.fixed_dictionaries(
                {"type": st.just("object"), "properties": st.dictionaries(st.sampled_from("abcde"), inner, max_size=3)}
            ),
            st.fixed_dictionaries({"anyOf": st.lists(inner, min_size=1, max_size=3)}),
        ),
        max_leaves=8,
    )


def walk(node: Any) -> list[dict[str, Any]]:
    """Every subschema of the schemas built by `json_schemas`."""
    if not isinstance(node, dict):
        return []
    found = [node]
    for sub in node.get("properties", {}).values():
        found.extend(walk(sub))
    for sub in node.get("anyOf", []):
        found.extend(walk(sub))
    if "items" in node:
        found.extend(walk(node["items"]))
    return found


@DETERMINISTIC
@given(json_schemas())
def test_bound_caps_every_free_string_and_array(schema: dict[str, Any]) -> None:
    before = copy.deepcopy(schema)

    bounded = bound(schema, max_string=20, max_items=5)

    assert schema == before
    jsonschema.Draft202012Validator.check_schema(bounded)
    for original, node in zip(walk(schema), walk(bounded), strict=True):
        types = node.get("type")
        type_set = set(types) if isinstance(types, list) else {types}
        if "string" in type_set and "enum" not in node:
            expected = original.get("maxLength", max(20, original.get("minLength", 0)))
            assert node["maxLength"] == expected
        if "array" in type_set:
            assert node["maxItems"] == max(5, original.get("minItems", 0))
        assert {k: v for k, v in node.items() if k not in ("maxLength", "maxItems")}.keys() <= original.keys()


# --- example_value ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "examples": ["Paris", "Rome"], "default": "Oslo"}, "Paris"),
        ({"type": "string", "default": "Oslo"}, "Oslo"),
        ({"const": 7}, 7),
        ({"type": "string", "enum": ["celsius", "fahrenheit"], "default": "fahrenheit"}, "celsius"),
        ({"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 10}]}, 10),
        ({"anyOf": [{"type": "null"}]}, None),
        ({"oneOf": [{"type": "boolean"}, {"type": "string"}]}, True),
        ({"allOf": [{"type": "integer", "minimum": 4}]}, 4),
        ({"type": ["null", "integer"]}, 3),
        ({"type": "null"}, None),
        ({"type": "boolean"}, True),
        ({"type": "integer"}, 3),
        ({"type": "number"}, 3.0),
        ({"type": "integer", "minimum": -5}, -5),
        ({"type": "integer", "exclusiveMinimum": 10}, 11),
        ({"type": "integer", "maximum": 1}, 1),
        ({"type": "integer", "exclusiveMaximum": 3}, 2),
        ({"type": "integer", "multipleOf": 5}, 5),
        ({"type": "integer", "minimum": 1, "maximum": 10, "multipleOf": 3}, 3),
        ({"type": "integer", "exclusiveMinimum": 0, "multipleOf": 5}, 5),
        ({"type": "number", "exclusiveMinimum": 0.5}, 1.5),
        ({"type": "number", "minimum": 1.5}, 1.5),
        ({"type": "number", "minimum": 0.1}, 0.1),
        ({"type": "number", "maximum": -0.3}, -0.3),
        ({"type": "number", "exclusiveMaximum": 0}, -1.0),
        ({"type": "number", "multipleOf": 0.25, "minimum": 1.1}, 1.25),
        ({"type": "string", "minLength": 8}, "textxxxx"),
        ({"type": "string", "maxLength": 2}, "te"),
        ({"type": "string", "minLength": 6, "maxLength": 6}, "textxx"),
        ({"type": "array"}, ["text"]),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 3}, [3, 3, 3]),
        ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "items": False}, [3, True]),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "null"}, "minItems": 3},
            [3, None, None],
        ),
        ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "null"}}}, {"a": 3, "b": None}),
        ({"type": "object", "properties": {"a": {"type": "integer"}}, "required": []}, {}),
        ({}, {}),
    ],
)
def test_example_value_picks_the_expected_value(schema: dict[str, Any], expected: Any) -> None:
    value = example_value(schema)

    assert value == expected
    assert type(value) is type(expected)
    assert is_valid(value, schema)


def test_example_value_names_strings_after_their_property() -> None:
    schema = {
        "type": "object",
        "properties": {"city_name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["city_name", "tags"],
    }

    assert example_value(schema) == {"city_name": "city name", "tags": ["tags"]}


def test_example_value_fills_required_properties_only() -> None:
    schema = strip_titles(Person.model_json_schema())

    value = example_value(schema)

    assert value == {"name": "name", "home": {"street": "street", "city": "city"}}
    assert is_valid(value, schema)


def test_example_value_resolves_refs_and_merges_siblings() -> None:
    schema = {
        "type": "object",
        "properties": {"unit": {"$ref": "#/$defs/Unit", "description": "The unit."}},
        "required": ["unit"],
        "$defs": {"Unit": {"type": "string", "enum": ["kelvin", "celsius"]}},
    }

    assert example_value(schema) == {"unit": "kelvin"}


def test_example_value_of_a_pydantic_model_with_constraints_is_valid() -> None:
    class Order(pydantic.BaseModel):
        sku: Annotated[str, pydantic.Field(min_length=12)]
        quantity: Annotated[int, pydantic.Field(ge=1, le=99)]
        discount: Annotated[float, pydantic.Field(gt=0)]
        lines: Annotated[list[Address], pydantic.Field(min_length=2)]
        note: str | None = None

    schema = strip_titles(Order.model_json_schema())

    value = example_value(schema)

    assert is_valid(value, schema)
    assert set(value) == {"sku", "quantity", "discount", "lines"}
    assert len(value["lines"]) == 2
    Order.model_validate(value)


@st.composite
def value_schemas(draw: st.DrawFn, name: str = "") -> dict[str, Any]:
    kind = draw(st.sampled_from(["string", "integer", "number", "boolean", "enum", "array"]))
    schema: dict[str, Any]
    if kind == "string":
        schema = {"type": "string"}
        if draw(st.booleans()):
            schema["minLength"] = draw(st.integers(0, 40))
        if draw(st.booleans()):
            schema["maxLength"] = draw(st.integers(schema.get("minLength", 0), 40))
    elif kind in ("integer", "number"):
        schema = {"type": kind}
        low = draw(st.integers(-50, 50))
        bound_kind = draw(
            st.sampled_from(["none", "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "range"])
        )
        if bound_kind == "range":
            schema["minimum"] = low
            schema["maximum"] = low + draw(st.integers(0, 10))
        else:
            if bound_kind != "none":
                schema[bound_kind] = low
            if draw(st.booleans()):  # a one-sided bound always leaves room for a multiple
                schema["multipleOf"] = draw(st.integers(1, 7))
    elif kind == "boolean":
        schema = {"type": "boolean"}
    elif kind == "enum":
        schema = {"type": "string", "enum": draw(st.lists(st.text(max_size=5), min_size=1, max_size=4, unique=True))}
    else:
        schema = {"type": "array", "items": draw(value_schemas())}
        if draw(st.booleans()):
            schema["minItems"] = draw(st.integers(0, 5))
    if draw(st.booleans()) and kind != "array":
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


@st.composite
def object_schemas(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(
        st.lists(st.sampled_from(["city", "unit", "max_results", "q", "tags", "x_y_z"]), max_size=5, unique=True)
    )
    properties = {name: draw(value_schemas()) for name in names}
    if draw(st.booleans()):
        properties["nested"] = draw(st.deferred(lambda: object_schemas()))
    required = draw(st.lists(st.sampled_from(sorted(properties)), unique=True)) if properties else []
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


@DETERMINISTIC
@given(object_schemas())
def test_example_value_is_valid_under_random_schemas(schema: dict[str, Any]) -> None:
    value = example_value(schema)

    assert is_valid(value, schema)
    assert set(value) == set(schema["required"])


@DETERMINISTIC
@given(object_schemas(), st.sampled_from(["Thing", "with_underscore"]))
def test_example_value_follows_refs_in_random_schemas(schema: dict[str, Any], name: str) -> None:
    root = {
        "type": "object",
        "properties": {"item": {"$ref": f"#/$defs/{name}"}},
        "required": ["item"],
        "$defs": {name: schema},
    }

    value = example_value(root)

    assert is_valid(value, root)


def test_example_value_cuts_a_string_to_its_max_length() -> None:
    schema = {"type": "object", "properties": {"country": {"type": "string", "maxLength": 2}}, "required": ["country"]}

    value = example_value(schema)

    assert value == {"country": "co"}
    assert is_valid(value, schema)


@pytest.mark.xfail(
    reason="NOT HONOURED (documented in example_value's docstring: give such a tool `examples`): "
    "example_value ignores `pattern`, so a digits-only zip code gets 'zip'",
    raises=AssertionError,
    strict=True,
)
def test_example_value_respects_a_pattern() -> None:
    schema = {"type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["zip"]}

    assert is_valid(example_value(schema), schema)


@pytest.mark.parametrize(
    "annotation",
    [
        Annotated[int, pydantic.Field(lt=3)],
        Annotated[int, pydantic.Field(multiple_of=5)],
        Annotated[int, pydantic.Field(gt=10, lt=12)],
        Annotated[int, pydantic.Field(ge=-20, le=-10, multiple_of=4)],
        Annotated[float, pydantic.Field(gt=0, le=1)],
        Annotated[float, pydantic.Field(ge=2.5, lt=100)],
        Annotated[float, pydantic.Field(multiple_of=0.25)],
    ],
    ids=["lt", "multiple_of", "gt-lt", "range-multiple_of", "float-gt-le", "float-ge-lt", "float-multiple_of"],
)
def test_example_value_respects_number_limits(annotation: Any) -> None:
    adapter = pydantic.TypeAdapter(annotation)
    schema = adapter.json_schema()

    value = example_value(schema)

    assert is_valid(value, schema)
    adapter.validate_python(value)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "number", "minimum": 0.01, "maximum": 0.1},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
    ],
    ids=["ge-le", "gt-lt"],
)
def test_example_value_respects_a_narrow_float_range(schema: dict[str, Any]) -> None:
    assert is_valid(example_value(schema), schema)


def test_example_value_of_a_decimal_multiple_is_the_decimal() -> None:
    # 3 * 0.1 is 0.30000000000000004 in floating point; the example is rounded
    # to 0.3, which Pydantic (the validator agentkit uses) accepts. jsonschema's
    # exact float division would reject both.
    schema = {"type": "number", "multipleOf": 0.1, "minimum": 0.3}
    value = example_value(schema)
    assert value == 0.3
    assert pydantic.TypeAdapter(Annotated[float, pydantic.Field(multiple_of=0.1, ge=0.3)]).validate_python(value) == 0.3


def test_example_value_follows_prefix_items() -> None:
    schema = pydantic.TypeAdapter(tuple[int, str]).json_schema()

    value = example_value(schema)

    assert value == [3, "text"]
    assert is_valid(value, schema)


@pytest.mark.xfail(
    reason="NOT HONOURED: example_value ignores uniqueItems, so a set[str] with min_length=2 gets ['text', 'text']",
    raises=AssertionError,
    strict=True,
)
def test_example_value_respects_unique_items() -> None:
    schema = pydantic.TypeAdapter(Annotated[set[str], pydantic.Field(min_length=2)]).json_schema()

    assert is_valid(example_value(schema), schema)


def test_example_value_respects_a_date_format() -> None:
    class Meeting(pydantic.BaseModel):
        when: datetime.date

    Meeting.model_validate(example_value(strip_titles(Meeting.model_json_schema())))


class TreeNode(pydantic.BaseModel):
    label: str
    children: list[TreeNode]


def test_example_value_of_a_recursive_model_terminates() -> None:
    schema = strip_titles(TreeNode.model_json_schema())

    value = example_value(schema)

    assert value == {"label": "label", "children": [{"label": "label", "children": []}]}
    assert is_valid(value, schema)
    TreeNode.model_validate(value)


def test_example_value_leaves_deep_arrays_empty_unless_they_need_items() -> None:
    def nested(levels: int, innermost: dict[str, Any]) -> dict[str, Any]:
        schema = innermost
        for _ in range(levels):
            schema = {"type": "array", "items": schema}
        return schema

    assert example_value(nested(4, {"type": "integer"})) == [[[[]]]]
    deep = nested(3, {"type": "array", "items": {"type": "integer"}, "minItems": 2})
    assert example_value(deep) == [[[[3, 3]]]]
    assert is_valid(example_value(deep), deep)


class Employee(pydantic.BaseModel):
    name: str
    manager: Employee | None


def test_example_value_of_a_model_recursive_through_a_nullable_field_terminates() -> None:
    schema = strip_titles(Employee.model_json_schema())

    assert is_valid(example_value(schema), schema)


# --- strip_titles -------------------------------------------------------------------


def test_strip_titles_drops_generated_titles_but_keeps_a_property_named_title() -> None:
    class Book(pydantic.BaseModel):
        title: str
        author: Address

    stripped = strip_titles(Book.model_json_schema())

    assert stripped == {
        "type": "object",
        "properties": {"title": {"type": "string"}, "author": {"$ref": "#/$defs/Address"}},
        "required": ["title", "author"],
        "$defs": {
            "Address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                "required": ["street", "city"],
            }
        },
    }


def test_strip_titles_keeps_non_string_title_values_and_does_not_mutate() -> None:
    schema = {"type": "object", "title": "T", "properties": {"x": {"title": "X", "anyOf": [{"title": "A"}]}}}
    before = copy.deepcopy(schema)

    assert strip_titles(schema) == {"type": "object", "properties": {"x": {"anyOf": [{}]}}}
    assert strip_titles({"title": {"type": "string"}}) == {"title": {"type": "string"}}
    assert schema == before


def test_strip_titles_leaves_data_alone() -> None:
    class Film(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(json_schema_extra={"examples": [{"title": "Dune", "year": 1965}]})
        title: str = pydantic.Field(default="Untitled", examples=["Alien"])
        year: int
        meta: dict[str, str] = {"title": "kept"}

    schema = strip_titles(Film.model_json_schema())

    assert schema["examples"] == [{"title": "Dune", "year": 1965}]
    assert schema["properties"]["meta"]["default"] == {"title": "kept"}
    assert strip_titles({"const": {"title": "x"}, "enum": [{"title": "y"}]}) == {
        "const": {"title": "x"},
        "enum": [{"title": "y"}],
    }
    value = example_value(schema)
    assert value == {"title": "Dune", "year": 1965}
    assert is_valid(value, schema)


def test_an_offered_value_of_another_type_is_not_the_example() -> None:
    # BFCL's irrelevance_111 gives its whole arguments object `"default": "location"`.
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "default": "city"}
    assert example_value(schema) == {"city": "city"}
    assert example_value({"type": "integer", "default": 2.5, "examples": ["x"]}) == 3
    assert example_value({"type": "boolean", "enum": [1, True]}) is True
    assert example_value({"type": "object", "required": ["adults"]}) == {"adults": {}}
