"""Tool sets for benchmarks, in the two shapes real ones take, and valid arguments for them.

    toolset("bfcl", 20, seed=3)  # 20 functions shaped like the Berkeley Function-Calling Leaderboard's
    toolset("mcp", 5, seed=0)    # 5 tools shaped like MCP servers' (GitHub, Slack, Notion, ...)
    sample_arguments(spec.parameters, random.Random(1), max_string=60, max_items=4)

A tool set is a function of `(kind, n, seed)` alone: the same three give the
same set, another seed another set (other names, other schemas), so that a
benchmark can hand every request a set no grammar cache has seen.

- `bfcl`: flat-ish functions: snake_case names and keys, 1-6 parameters,
  strings with descriptions, enums, integers and numbers with and without
  bounds, booleans, arrays of strings or numbers, now and then a nested
  object; a `required` list; optional parameters sometimes with a `default`.
- `mcp`: MCP servers' tools: camelCase keys, 2-8 parameters, optional ones
  as `anyOf [T, null]` with `default: null` (as Pydantic writes them),
  defaults, string formats (`date`, `date-time`, `uri`, `email`), arrays of
  objects, objects nested up to three deep (some as `$defs` behind a `$ref`,
  as FastMCP writes them), `additionalProperties: false` throughout.

`sample_arguments` writes arguments valid under a schema these generators
produce, within a grammar's caps on strings and arrays; strings hold words,
digits and plain punctuation only (never a Gemma 4 marker's `<|` or `|>`).
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from typing import Any, Literal

from agentkit.tool import ToolSpec

__all__ = ["KINDS", "Kind", "sample_arguments", "toolset"]

Kind = Literal["bfcl", "mcp"]
KINDS: tuple[Kind, ...] = ("bfcl", "mcp")

Schema = dict[str, Any]

# --- words ------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_BFCL_VERBS = _words(
    "get calculate find search convert create update delete list book send fetch estimate predict check "
    "schedule translate analyze compare order cancel recommend generate validate lookup"
)
_BFCL_NOUNS = _words(
    "weather stock_price flight hotel recipe movie restaurant invoice loan_payment triangle_area distance "
    "currency calendar_event email population exchange_rate sales_tax bmi route song library_book "
    "patient_record traffic earthquake carbon_footprint mortgage_rate nutrition_facts exam_score "
    "parking_spot train_ticket concert insurance_quote shipping_cost crop_yield air_quality"
)
_BFCL_SUFFIXES = ("", "", "", "_details", "_history", "_by_city", "_summary")
_BFCL_KEYS = _words(
    "city country date start_date end_date amount currency from_currency to_currency limit radius latitude "
    "longitude units language query category max_results include_details sort_by order user_id name email "
    "price quantity year month duration genre rating interest_rate principal term_years base height width "
    "weight_kg age symbol exchange tags location notes priority time_zone output_format"
)

_MCP_SERVERS = _words("github slack jira notion gdrive postgres linear calendar stripe filesystem sentry hubspot")
_MCP_ACTIONS = _words(
    "create_issue list_issues search_code get_file_contents post_message list_channels update_page "
    "query_database create_event list_events create_invoice refund_payment read_file write_file search_files "
    "get_issue add_comment list_pull_requests merge_pull_request create_branch list_users get_user "
    "archive_record export_report"
)
_MCP_KEYS = _words(
    "owner repo title body labels assignees milestone state sort direction since perPage page path branch "
    "query channelId text threadTs pageId filter startTime endTime attendees description location timeZone "
    "amount currency customerId metadata includeArchived dryRun url dueDate priority reviewers message "
    "authorEmail parentId"
)
_MCP_MODELS = _words("Person Attachment Filter Range Address Reminder Reviewer Field Period Author")

_WORDS = _words(
    "the report for office quarterly meeting notes Lisbon Paris Tokyo budget draft review team release plan "
    "customer order payment invoice weekly summary update fix login page error timeout north south "
    "project alpha beta version March April data export backup server green blue large small"
)
_ENUMS = (
    ("celsius", "fahrenheit"),
    ("asc", "desc"),
    ("low", "medium", "high", "urgent"),
    ("open", "closed", "all"),
    ("json", "csv", "xml"),
    ("economy", "business", "first"),
    ("daily", "weekly", "monthly", "yearly"),
    ("created", "updated", "comments"),
    ("metric", "imperial"),
)
_FORMATS = ("date", "date-time", "uri", "email")


def toolset(kind: Kind, n: int, seed: int) -> list[ToolSpec]:
    """`n` tools of the `kind` shape, the same for the same `seed`; names unique within the set.

    Raises:
        ValueError: `kind` is neither `bfcl` nor `mcp`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: choose one of {', '.join(KINDS)}")
    rng = random.Random(f"{kind}:{n}:{seed}")
    make = _bfcl_tool if kind == "bfcl" else _mcp_tool
    names: set[str] = set()
    tools: list[ToolSpec] = []
    while len(tools) < n:
        spec = make(rng)
        if spec.name not in names:
            names.add(spec.name)
            tools.append(spec)
    return tools


# --- BFCL-shaped ----------------------------------------------------------------------------


def _bfcl_tool(rng: random.Random) -> ToolSpec:
    verb, noun = rng.choice(_BFCL_VERBS), rng.choice(_BFCL_NOUNS)
    name = f"{verb}_{noun}{rng.choice(_BFCL_SUFFIXES)}"
    keys = rng.sample(_BFCL_KEYS, rng.randint(1, 6))
    properties = {key: _bfcl_value(rng, key, nested=rng.random() < 0.08) for key in keys}
    required = [key for key in keys if rng.random() < 0.6] or [keys[0]]
    for key in keys:
        if key not in required and rng.random() < 0.4 and "enum" in properties[key]:
            properties[key]["default"] = properties[key]["enum"][0]
    parameters = {"type": "object", "properties": properties, "required": required}
    description = f"{verb.capitalize()} the {noun.replace('_', ' ')} for the given {keys[0].replace('_', ' ')}."
    return ToolSpec(name=name, description=description, parameters=parameters)


def _bfcl_value(rng: random.Random, key: str, *, nested: bool) -> Schema:
    about = f"The {key.replace('_', ' ')}."
    if nested:
        inner = rng.sample([k for k in _BFCL_KEYS if k != key], rng.randint(2, 3))
        properties = {k: _bfcl_value(rng, k, nested=False) for k in inner}
        return {"type": "object", "description": about, "properties": properties, "required": inner[:1]}
    kind = rng.choices(["string", "enum", "integer", "number", "boolean", "array"], weights=[35, 12, 17, 12, 10, 14])[0]
    if kind == "string":
        return {"type": "string", "description": about + " e.g. " + rng.choice(_WORDS)}
    if kind == "enum":
        return {"type": "string", "enum": list(rng.choice(_ENUMS)), "description": about}
    if kind == "array":
        item = rng.choice(["string", "number", "integer"])
        return {"type": "array", "items": {"type": item}, "description": f"A list of {key.replace('_', ' ')}."}
    node: Schema = {"type": kind, "description": about}
    if kind in ("integer", "number") and rng.random() < 0.5:
        low = rng.choice([0, 1, -90, 10])
        node |= {"minimum": low, "maximum": low + rng.choice([10, 100, 180, 1000])}
    return node


# --- MCP-shaped -----------------------------------------------------------------------------


def _mcp_tool(rng: random.Random) -> ToolSpec:
    server, action = rng.choice(_MCP_SERVERS), rng.choice(_MCP_ACTIONS)
    defs: dict[str, Schema] = {}
    parameters = _mcp_object(rng, rng.randint(2, 8), depth=0, defs=defs)
    if defs:
        parameters["$defs"] = defs
    if rng.random() < 0.3:  # zod-to-json-schema writes it; a TypeScript server's tools carry it
        parameters["$schema"] = "http://json-schema.org/draft-07/schema#"
    description = f"{action.replace('_', ' ').capitalize()} in {server.capitalize()}."
    return ToolSpec(name=f"{server}_{action}", description=description, parameters=parameters)


def _mcp_object(rng: random.Random, size: int, *, depth: int, defs: dict[str, Schema]) -> Schema:
    keys = rng.sample(_MCP_KEYS, size)
    properties: dict[str, Schema] = {}
    required = []
    for key in keys:
        value = _mcp_value(rng, key, depth=depth, defs=defs)
        if rng.random() < 0.5:
            required.append(key)
        elif rng.random() < 0.5:  # optional, the Pydantic way
            value = {"anyOf": [value, {"type": "null"}], "default": None, "title": key[:1].upper() + key[1:]}
        elif value.get("type") in ("boolean", "integer"):
            value["default"] = value.get("minimum", False)  # an integer's least value, a boolean's False
        properties[key] = value
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _mcp_value(rng: random.Random, key: str, *, depth: int, defs: dict[str, Schema]) -> Schema:
    kinds = ["string", "format", "enum", "integer", "boolean", "array"]
    weights = [30, 12, 12, 12, 10, 10]
    if depth < 3:
        kinds += ["objects", "object"]
        weights += [7, 7]
    kind = rng.choices(kinds, weights=weights)[0]
    about = {"description": f"The {key}."}
    if kind == "string":
        return {"type": "string", **about} | ({"minLength": 1} if rng.random() < 0.3 else {})
    if kind == "format":
        return {"type": "string", "format": rng.choice(_FORMATS), **about}
    if kind == "enum":
        return {"type": "string", "enum": list(rng.choice(_ENUMS)), **about}
    if kind == "integer":
        return {"type": "integer", "minimum": 1, "maximum": rng.choice([10, 50, 100]), **about}
    if kind == "boolean":
        return {"type": "boolean", **about}
    if kind == "array":
        return {"type": "array", "items": {"type": "string"}, **about} | (
            {"maxItems": 10} if rng.random() < 0.5 else {}
        )
    inner = _mcp_object(rng, rng.randint(2, 4), depth=depth + 1, defs=defs)
    if rng.random() < 0.4:  # a named model: FastMCP puts it in $defs
        name = rng.choice(_MCP_MODELS) + str(len(defs))
        defs[name] = inner
        inner = {"$ref": f"#/$defs/{name}"}
    if kind == "objects":
        return {"type": "array", "items": inner, **about}
    return inner if "$ref" in inner else inner | about


# --- valid arguments ------------------------------------------------------------------------


def sample_arguments(
    schema: Mapping[str, Any], rng: random.Random, *, max_string: int = 60, max_items: int = 4
) -> dict[str, Any]:
    """Arguments valid under `schema` (an object schema these generators write),
    strings at most `max_string` characters and arrays at most `max_items` long
    (an array's `minItems` wins), so that a capped grammar accepts them too."""
    value = _Sampler(schema.get("$defs", {}), rng, max_string, max_items).value(schema)
    assert isinstance(value, dict)
    return value


class _Sampler:
    def __init__(self, defs: Mapping[str, Any], rng: random.Random, max_string: int, max_items: int) -> None:
        self.defs, self.rng = defs, rng
        self.max_string, self.max_items = max_string, max_items

    def value(self, schema: Mapping[str, Any]) -> Any:
        rng = self.rng
        if "$ref" in schema:
            return self.value(self.defs[schema["$ref"].removeprefix("#/$defs/")])
        if "enum" in schema:
            return rng.choice(schema["enum"])
        if "anyOf" in schema:
            branches = schema["anyOf"]
            real = [b for b in branches if b.get("type") != "null"]
            return self.value(rng.choice(real) if real and rng.random() < 0.8 else rng.choice(branches))
        kind = schema.get("type")
        if kind == "object":
            return self.object(schema)
        if kind == "array":
            low = schema.get("minItems", 0)
            high = max(low, min(schema.get("maxItems", self.max_items), self.max_items))
            return [self.value(schema.get("items", {"type": "string"})) for _ in range(rng.randint(low, high))]
        if kind == "string":
            return self.string(schema)
        if kind == "integer":
            return rng.randint(schema.get("minimum", 0), schema.get("maximum", 500))
        if kind == "number":
            # Quarters within the bounds: short decimals every number grammar writes.
            low, high = schema.get("minimum", 0), schema.get("maximum", 1000)
            return rng.randint(int(low * 4), int(high * 4)) / 4
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "null":
            return None
        raise ValueError(f"no sampler for {dict(schema)!r}")

    def object(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        required = set(schema.get("required", ()))
        properties = schema.get("properties", {})
        return {key: self.value(sub) for key, sub in properties.items() if key in required or self.rng.random() < 0.5}

    def string(self, schema: Mapping[str, Any]) -> str:
        rng = self.rng
        fmt = schema.get("format")
        if fmt == "date":
            return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        if fmt == "date-time":
            return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:30:00Z"
        if fmt == "uri":
            return f"https://example.com/{rng.choice(_WORDS).lower()}/{rng.randint(1, 999)}"
        if fmt == "email":
            return f"{rng.choice(_WORDS).lower()}.{rng.choice(string.ascii_lowercase)}@example.com"
        low = schema.get("minLength", 0)
        high = min(schema.get("maxLength", self.max_string), self.max_string)
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 6)))
        text = text[: rng.randint(max(low, 1), high)].strip() if high else ""
        return text if len(text) >= low else text + "x" * (low - len(text))
