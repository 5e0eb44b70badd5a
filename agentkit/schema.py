"""JSON Schema helpers shared by the dialects: composing, bounding, sampling.

Tool schemas are written for validation (by Pydantic, after parsing). The
schemas handed to a decoding engine are derived from them here: their `$defs`
moved to one root so several tools can live in one schema, and unbounded
strings and arrays given a ceiling so a small model cannot pad forever.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["bound", "closed", "example_value", "hoist_defs", "strip_titles"]


# Keywords whose value maps names to subschemas, and keywords whose value is
# JSON data (a "title" or "$ref" inside them is data, not schema).
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})
_DATA = frozenset({"default", "const", "enum", "examples"})


def _rebuild(node: Any, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """A copy of a schema with `edit` applied to every schema object in it, innermost first."""
    if isinstance(node, list):
        return [_rebuild(item, edit) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DATA:
            out[key] = value
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _rebuild(sub, edit) for name, sub in value.items()}
        else:
            out[key] = _rebuild(value, edit)
    return edit(out)


def hoist_defs(schema: Mapping[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` whose `$defs` are moved into `defs` under `prefix`.

    References `#/$defs/X` are rewritten to `#/$defs/{prefix}X`, so the result
    can be nested anywhere inside a schema whose root carries `defs`.
    """

    def rewrite(node: dict[str, Any]) -> dict[str, Any]:
        node.pop("$defs", None)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/$defs/" + prefix + ref.removeprefix("#/$defs/")
        return node

    for name, definition in dict(schema.get("$defs", {})).items():
        defs[prefix + name] = _rebuild(definition, rewrite)
    result: dict[str, Any] = _rebuild(dict(schema), rewrite)
    return result


def closed(schema: Any) -> Any:
    """A copy of `schema` with every object that lists its properties closed to
    others (`additionalProperties: false` where it says nothing): what
    agentkit's grammars write, on either grammar engine (xgrammar closes them by
    default, llguidance does not)."""

    def close(node: dict[str, Any]) -> dict[str, Any]:
        if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node

    return _rebuild(schema, close)


def bound(schema: Any, *, max_string: int, max_items: int) -> Any:
    """A copy of `schema` with a `maxLength` on every free string and a `maxItems` on every array.

    Strings already bounded, or pinned by `enum`, `const`, `pattern` or
    `format`, are left alone.
    """

    def cap(node: dict[str, Any]) -> dict[str, Any]:
        types = node.get("type")
        kinds = set(types) if isinstance(types, list) else {types}
        pinned = any(k in node for k in ("enum", "const", "pattern", "format"))
        if "string" in kinds and "maxLength" not in node and not pinned:
            node["maxLength"] = max(max_string, int(node.get("minLength", 0)))
        if "array" in kinds and "maxItems" not in node:
            node["maxItems"] = max(max_items, int(node.get("minItems", 0)))
        return node

    return _rebuild(schema, cap)


def example_value(
    schema: Mapping[str, Any], root: Mapping[str, Any] | None = None, key: str = "", depth: int = 0
) -> Any:
    """A small value valid under `schema`, for worked examples in prompts.

    Prefers what the schema itself offers (`examples`, `default`, `const`,
    `enum`); otherwise builds the simplest value of the type within its
    bounds. Objects get their required properties (all of them when the
    schema lists none); past a few levels of nesting, arrays that may be
    empty are, so recursive models end. A `pattern` is not honoured: give such
    a tool `examples`.
    """
    root = root if root is not None else schema
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return example_value(merged, root, key, depth)
    # What the schema offers, when it has the schema's type (a `default` may not: `"default": "city"` on an object).
    for offered in ("examples", "enum"):
        if isinstance(schema.get(offered), list) and schema[offered] and _typed(schema[offered][0], schema):
            return schema[offered][0]
    for offered in ("const", "default"):
        if offered in schema and _typed(schema[offered], schema):
            return schema[offered]
    for combo in ("anyOf", "oneOf"):
        if combo in schema:
            # Deep down, take the null branch if there is one, so recursive models end.
            options = [o for o in schema[combo] if (o.get("type") == "null") == (depth >= 3)] or schema[combo]
            return example_value(options[0], root, key, depth)
    if schema.get("allOf"):
        return example_value(schema["allOf"][0], root, key, depth)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "string":
        if schema.get("format") in _FORMAT_EXAMPLES:
            return _FORMAT_EXAMPLES[schema["format"]]
        text = key.replace("_", " ") or "text"
        text = text.ljust(int(schema.get("minLength", 0)), "x")
        return text[: int(schema["maxLength"])] if "maxLength" in schema else text
    if kind in ("integer", "number"):
        return _example_number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "array":
        prefix = [example_value(item, root, key, depth + 1) for item in schema.get("prefixItems", [])]
        minimum = int(schema.get("minItems", 0))
        count = max(minimum, 0 if depth >= 3 else 1) - len(prefix)
        if count <= 0 or schema.get("items") is False:
            return prefix
        items = schema.get("items", {"type": "string"})
        return prefix + [example_value(items, root, key, depth + 1) for _ in range(count)]
    properties = schema.get("properties", {})
    required = schema.get("required", list(properties))
    return {name: example_value(properties.get(name, {}), root, name, depth + 1) for name in required}


_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _typed(value: Any, schema: Mapping[str, Any]) -> bool:
    """Whether `value` has (one of) the schema's declared `type`s (true when it declares none)."""
    kinds = schema.get("type")
    if kinds is None:
        return True
    wanted = [kinds] if isinstance(kinds, str) else list(kinds)
    for kind in wanted:
        types = _PYTHON_TYPES.get(kind, (object,))
        # (a bool is an int to Python, not to JSON Schema)
        if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
            return True
    return False


def _example_number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    """A number within the schema's bounds: its minimum, else a small one (3)."""
    low_open = "minimum" not in schema
    low: float | None = schema.get("exclusiveMinimum") if low_open else schema["minimum"]
    high_open = "maximum" not in schema
    high: float | None = schema.get("exclusiveMaximum") if high_open else schema["maximum"]
    step: float | None = schema.get("multipleOf", 1 if integer else None)
    value: float
    if step is not None:
        k = math.ceil((3 if low is None else low) / step)
        if low is not None and low_open and k * step <= low:
            k += 1
        if low is None and high is not None and (k * step > high or (high_open and k * step >= high)):
            k = math.floor(high / step)
            if high_open and k * step >= high:
                k -= 1
        value = round(k * step, 12)
    elif low is not None:
        value = (low + high) / 2 if low_open and high is not None else (low + 1 if low_open else low)
    elif high is not None:
        value = min(3.0, high - 1 if high_open else high)
    else:
        value = 3.0
    return int(value) if integer else float(value)


# Values for string formats that validators (and xgrammar) check.
_FORMAT_EXAMPLES = {
    "date": "2026-01-31",
    "date-time": "2026-01-31T12:00:00Z",
    "time": "12:00:00",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "duration": "P1D",
    "hostname": "example.com",
}


def strip_titles(schema: Any) -> Any:
    """Drop pydantic's generated `title`s: noise to a model, never a constraint."""

    def drop(node: dict[str, Any]) -> dict[str, Any]:
        if isinstance(node.get("title"), str):
            del node["title"]
        return node

    return _rebuild(schema, drop)
