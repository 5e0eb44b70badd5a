"""benchmarks/toolsets.py and benchmarks/grammar_engines.py: the tool sets are seeded and
valid, and the turns the benchmark walks through the grammar are valid turns (no engine)."""

from __future__ import annotations

import importlib.util
import json
import random
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from agentkit.dialects.gemma4 import parse_turn

ROOT = Path(__file__).resolve().parents[3]
SIZES = (1, 5, 20, 50)
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def toolsets() -> ModuleType:
    return load("toolsets")


@pytest.fixture(scope="module")
def engines() -> ModuleType:
    return load("grammar_engines")


def nodes(schema: Any) -> list[dict[str, Any]]:
    """Every subschema of `schema`, itself included."""
    if isinstance(schema, list):
        return [node for item in schema for node in nodes(item)]
    if not isinstance(schema, dict):
        return []
    found = [schema]
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            found += [node for sub in value.values() for node in nodes(sub)]
        elif key in ("items", "anyOf"):
            found += nodes(value)
    return found


@pytest.mark.parametrize("kind", ["bfcl", "mcp"])
def test_a_tool_set_is_a_function_of_its_seed(toolsets: ModuleType, kind: str) -> None:
    for n in SIZES:
        first = toolsets.toolset(kind, n, 7)
        assert len(first) == n
        assert first == toolsets.toolset(kind, n, 7)
        assert first != toolsets.toolset(kind, n, 8)
    # Another seed, other names and other schemas: every set of one tool differs.
    singles = [
        json.dumps([s.name, s.parameters], sort_keys=True)
        for seed in range(30)
        for s in toolsets.toolset(kind, 1, seed)
    ]
    assert len(set(singles)) == len(singles)
    assert {s.name for s in toolsets.toolset(kind, 20, 1)} != {s.name for s in toolsets.toolset(kind, 20, 2)}


@pytest.mark.parametrize("kind", ["bfcl", "mcp"])
def test_every_schema_is_valid_and_every_name_a_tool_name(toolsets: ModuleType, kind: str) -> None:
    for seed in range(3):
        specs = toolsets.toolset(kind, 50, seed)
        assert len({spec.name for spec in specs}) == 50
        for spec in specs:
            assert NAME.fullmatch(spec.name), spec.name
            Draft202012Validator.check_schema(spec.parameters)
            assert spec.parameters["type"] == "object"
            assert spec.description


def test_the_two_shapes(toolsets: ModuleType) -> None:
    bfcl = [node for spec in toolsets.toolset("bfcl", 50, 0) for node in nodes(spec.parameters)]
    mcp = [node for spec in toolsets.toolset("mcp", 50, 0) for node in nodes(spec.parameters)]
    assert any("enum" in node for node in bfcl)
    assert any("minimum" in node for node in bfcl)
    assert any(node.get("type") == "integer" for node in bfcl)
    assert any(node.get("type") == "array" for node in bfcl)
    assert any(node.get("type") == "object" and "description" in node for node in bfcl)  # a nested object
    assert not any("anyOf" in node or "$ref" in node for node in bfcl)
    assert any({"type": "null"} in node.get("anyOf", []) and node.get("default", 0) is None for node in mcp)
    assert {node.get("format") for node in mcp} >= {"date", "date-time", "uri", "email"}
    assert any(node.get("type") == "array" and node["items"].get("type") == "object" for node in mcp)
    assert any("$ref" in node for node in mcp)
    objects = [node for node in mcp if node.get("type") == "object"]
    assert all(node["additionalProperties"] is False for node in objects)


@pytest.mark.parametrize("kind", ["bfcl", "mcp"])
def test_sampled_arguments_are_valid_within_the_caps(toolsets: ModuleType, kind: str) -> None:
    for spec in toolsets.toolset(kind, 50, 3):
        validator = Draft202012Validator(spec.parameters, format_checker=FormatChecker())
        for seed in range(10):
            arguments = toolsets.sample_arguments(spec.parameters, random.Random(seed), max_string=60, max_items=4)
            validator.validate(arguments)
            assert arguments == toolsets.sample_arguments(spec.parameters, random.Random(seed))
            for value in values(arguments):
                if isinstance(value, str):
                    assert len(value) <= 60
                    assert "<|" not in value
                    assert "|>" not in value
                if isinstance(value, list):
                    assert len(value) <= 4


def values(value: Any) -> list[Any]:
    inner = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [value, *(v for item in inner for v in values(item))]


def test_the_walked_turns_are_valid_turns(engines: ModuleType) -> None:
    for cell in engines.grid(engines.SIZES):
        specs = engines.toolset(cell.kind, cell.tools, cell.seed(0)) if cell.kind != "answer" else []
        schemas = {spec.name: Draft202012Validator(spec.parameters) for spec in specs}
        for turn in engines.turns(cell, specs, random.Random(cell.seed(0)), 3):
            message = parse_turn(turn.text)
            assert [(c.name, c.arguments) for c in message.tool_calls] == [(c.name, c.arguments) for c in turn.calls]
            assert bool(message.thinking) == cell.thinking
            for call in turn.calls:
                schemas[call.name].validate(call.arguments)
                if cell.choice == "named":
                    assert call.name == specs[0].name
            if cell.kind == "answer":
                engines.Forecast.model_validate_json(message.text)
            elif not turn.calls:
                assert cell.choice == "auto"
                assert 0 < len(message.text) <= engines.CAPS["max_text"]


def test_the_grid_and_the_seeds(engines: ModuleType) -> None:
    cells = engines.grid(engines.SIZES)
    assert len(cells) == 2 * 4 * 3 * 2 * 2 + 4  # kinds x sizes x choices x thinking x caps, and typed answers
    assert len({cell.seed(index) for cell in cells for index in range(3)}) == 3 * len(cells)
    assert engines.CAPS == {"max_string": 60, "max_items": 4, "max_text": 100, "parallel_calls": False}


def test_goals_are_judged_on_the_worst_cell(engines: ModuleType) -> None:
    assert engines.judge([10.0, 40.0], 50.0)["verdict"] == "met"
    assert engines.judge([10.0, 60.0], 50.0) == {"worst": 60.0, "goal": 50.0, "verdict": "MISSED"}
    assert engines.judge([10.0, None], 50.0)["verdict"] == "MISSED"  # over budget: no figure
    assert engines.judge([], 50.0)["verdict"] == "not measured"
