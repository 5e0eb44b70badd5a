"""MCP input schemas flattened for the grammar: what they accept stays the same, and only `#/$defs` refs remain."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from agentkit.mcp.schemas import SchemaProblem, flatten
from agentkit.tool import Tool
from agentkit.toolset import valid_name

DRAFT07 = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "definitions": {
        "point": {"type": "array", "items": [{"type": "number"}, {"type": "number"}], "additionalItems": False},
        "name": {"type": "string", "minLength": 1},
    },
    "properties": {
        "at": {"$ref": "#/definitions/point"},
        "label": {"$ref": "#/definitions/name", "description": "Its label."},
        "alias": {"$ref": "#/properties/label"},
    },
    "required": ["at"],
}

RECURSIVE_ROOT = {
    "type": "object",
    "properties": {"value": {"type": "integer"}, "next": {"$ref": "#"}},
    "required": ["value"],
}

SAMPLES: list[dict[str, Any]] = [
    {"at": [1, 2]},
    {"at": [1, 2], "label": "x", "alias": "y"},
    {"at": [1, 2, 3]},
    {"at": [1]},
    {"at": ["a", 2]},
    {"at": [1, 2], "label": ""},
    {"at": [1, 2], "alias": ""},
    {"label": "x"},
]


def refs(node: Any) -> list[str]:
    text = json.dumps(node)
    return [part.split('"')[0] for part in text.split('"$ref": "')[1:]]


def test_draft07_definitions_and_pointer_refs_are_inlined_and_accept_the_same() -> None:
    flat = flatten(DRAFT07)
    assert refs(flat) == []
    assert "definitions" not in flat
    assert "$schema" not in flat
    assert flat["properties"]["at"]["prefixItems"] == [{"type": "number"}, {"type": "number"}]
    assert flat["properties"]["label"] == {"type": "string", "minLength": 1, "description": "Its label."}
    original = jsonschema.Draft7Validator(DRAFT07)
    flattened = jsonschema.Draft202012Validator(flat)
    for sample in SAMPLES:
        assert original.is_valid(sample) == flattened.is_valid(sample), sample
    Tool.from_schema("t", "A tool.", flat, lambda **kw: kw)  # and it is a valid 2020-12 tool schema


def test_a_recursive_schema_keeps_its_recursion_through_defs() -> None:
    flat = flatten(RECURSIVE_ROOT)
    assert set(refs(flat)) == {"#/$defs/root"}
    assert flat["$defs"]["root"]["properties"]["next"] == {"$ref": "#/$defs/root"}
    validator = jsonschema.Draft202012Validator(flat)
    assert validator.is_valid({"value": 1, "next": {"value": 2, "next": {"value": 3}}})
    assert not validator.is_valid({"value": 1, "next": {"next": {"value": 3}}})


@pytest.mark.parametrize(
    ("ref", "problem"),
    [("https://example.com/schema.json", "points outside the schema"), ("#/definitions/missing", "points to nothing")],
)
def test_refs_that_cannot_be_followed_are_refused(ref: str, problem: str) -> None:
    with pytest.raises(SchemaProblem, match=problem):
        flatten({"type": "object", "properties": {"x": {"$ref": ref}}})


def test_data_keywords_are_left_alone() -> None:
    schema = {"type": "object", "properties": {"x": {"const": {"$ref": "#/nowhere"}, "default": {"$ref": "#"}}}}
    assert flatten(schema) == schema


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("notes.search", "notes_search"),
        ("get-weather", "get_weather"),
        ("9lives", "t_9lives"),
        ("a/b c", "a_b_c"),
        ("...", "tool"),
    ],
)
def test_names_become_callable(raw: str, name: str) -> None:
    assert valid_name(raw) == name


def test_long_names_stay_apart() -> None:
    a, b = valid_name("x" * 80 + "a"), valid_name("x" * 80 + "b")
    assert len(a) == len(b) == 64
    assert a != b
