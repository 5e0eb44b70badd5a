"""The decoding grammar for Gemma 4's native tool calls, as an xgrammar structural tag.

    build_constraint(tools, "auto")  # free text, or text then calls

The model writes free text until it opens a call; from `<|tool_call>` on,
xgrammar holds it to `call:NAME{…}<tool_call|>` for a real tool, with
arguments in exactly the form `render_call` writes: keys bare and sorted,
strings between `<|"|>` delimiters, numbers as `format_value` writes them, no
whitespace. Each tool's arguments are an EBNF grammar generated from its JSON
Schema, the content of one tag of a `triggered_tags` structure.

Why a structural tag rather than one EBNF: xgrammar's `any_text` and
triggered tags are its fast path for "free text until a trigger" (the masks
for free text are cheap), and vLLM passes a structural tag straight to
`GrammarCompiler.compile_structural_tag`.

Schema keywords the grammar cannot express cheaply (string lengths and
patterns, numeric bounds, ...) are relaxed: the grammar accepts more, and the
tool's Pydantic validation still checks the parsed arguments. They are logged
once per tool on the `agentkit.grammar` logger.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from agentkit.dialect import Constraint

# The grammar must accept exactly what the renderer writes: its markers, its
# keys and its values come from there (gemma4 imports this module only lazily).
from agentkit.dialects.gemma4 import CALL_CLOSE, CALL_OPEN, TURN_END, _format_key, format_value
from agentkit.tool import ToolSpec

__all__ = ["arguments_grammar", "build_constraint", "structural_tag"]

logger = logging.getLogger("agentkit.grammar")


# Keywords that say nothing about which values are valid.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "$schema", "$id"}
    | {"$comment", "discriminator"}
)
# Keywords the grammar enforces (or, for `$defs`, reads).
_HANDLED = frozenset(
    {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "properties", "required"}
    | {"additionalProperties", "items", "prefixItems", "minItems", "maxItems"}
)

# The terminals: a string between `<|"|>` delimiters holding neither `<|` nor
# `|>` (states: after an ordinary character, after `<`, after `|`). Stop
# strings end generation whatever the grammar's state, so a string must not be
# able to hold `<|tool_response>` or `<turn|>` (seen: the embedded model wrote
# `<|tool_response>` inside an address and was cut off mid-call); every Gemma 4
# marker, the delimiter included, has one of the two pairs. Numbers as `repr` and
# `str` write them, with digit counts capped so a model cannot run on forever.
_BASE_RULES = r"""
str ::= "<|\"|>" str_n "<|\"|>"
str_n ::= "" | [^<|] str_n | "<" str_lt | "|" str_bar
str_lt ::= "" | [^<|] str_n | "<" str_lt
str_bar ::= "" | [^<|>] str_n | "<" str_lt | "|" str_bar
nat ::= "0" | [1-9] [0-9]{0,24}
int ::= "-"? nat
num ::= "-"? nat ("." [0-9]{1,24})? ([eE] [+-]? [0-9]{1,3})?
bool ::= "true" | "false"
any ::= str | num | bool | "null" | "[" (any ("," any)*)? "]" | "{" (any_key ":" any ("," any_key ":" any)*)? "}"
any_key ::= [A-Za-z_] [A-Za-z0-9_.\-]* | str
"""


def build_constraint(
    tools: Sequence[ToolSpec], tool_choice: str, *, text_before_calls: bool = True, max_string: int | None = None
) -> Constraint | None:
    """What vLLM must enforce for `tool_choice` over `tools`, or None (nothing to enforce).

    - `auto`: free text, optionally followed by calls (text may go on between and after them);
    - `required`: text (only if `text_before_calls`), then at least one call;
    - a tool's name: as `required`, calling only that tool;
    - `none` (or no tool to call): None.

    `text_before_calls=False` makes a required call come first: a model that was
    not asked to think has nothing to say before it, and a small model given
    room for text may fill it until `max_tokens`.

    The value is the JSON string for `StructuredOutputsParams(structural_tag=...)`.

    Raises:
        ValueError: `tool_choice` names no tool in `tools`.
    """
    if tool_choice == "none":
        return None
    if tool_choice not in ("auto", "required"):
        tools = [spec for spec in tools if spec.name == tool_choice]
        if not tools:
            raise ValueError(f"tool_choice {tool_choice!r} is not among the tools offered")
    if not tools:
        return None
    tag = structural_tag(
        tools, required=tool_choice != "auto", text_before_calls=text_before_calls, max_string=max_string
    )
    return Constraint(kind="structural_tag", value=json.dumps(tag))


def structural_tag(
    tools: Sequence[ToolSpec], *, required: bool, text_before_calls: bool = True, max_string: int | None = None
) -> dict[str, Any]:
    """The structural tag (xgrammar's `StructuralTag` format) allowing calls to `tools`."""
    tags = [
        {
            "type": "tag",
            "begin": f"{CALL_OPEN}call:{spec.name}{{",
            "content": {"type": "grammar", "grammar": arguments_grammar(spec, max_string)},
            "end": f"}}{CALL_CLOSE}",
        }
        for spec in tools
    ]
    calls: dict[str, Any] = {"type": "triggered_tags", "triggers": [CALL_OPEN], "tags": tags}
    if not required:
        return {"type": "structural_tag", "format": calls}
    if not text_before_calls:
        return {"type": "structural_tag", "format": calls | {"at_least_one": True}}
    # `at_least_one` alone would forbid any text (a thought, too) before the first
    # call; text first, up to the first call. `<turn|>` would end the turn with no call.
    first = {"type": "any_text", "excludes": [TURN_END]}
    return {
        "type": "structural_tag",
        "format": {"type": "sequence", "elements": [first, calls | {"at_least_one": True}]},
    }


def arguments_grammar(spec: ToolSpec, max_string: int | None = None) -> str:
    """The EBNF for the inside of a call's braces: `k:v,…` under `spec.parameters`.

    `max_string` caps every string, for small models that may otherwise write
    on inside one until `max_tokens`. A capped string is a run of units: a
    character other than `<` and `|`, or one of them followed by such a
    character (so `<<`, `||` and a trailing `<` or `|` are not available).
    """
    builder = _Builder(spec.parameters.get("$defs", {}))
    root = builder.members(spec.parameters, "args")
    if builder.relaxed:
        _log_relaxed(spec.name, tuple(sorted(builder.relaxed)))
    rules = "".join(f"{name} ::= {body}\n" for name, body in builder.rules.items())
    base = _BASE_RULES
    if max_string is not None:
        free = re.search(r"^str ::= .*\nstr_n ::= .*\nstr_lt ::= .*\nstr_bar ::= .*$", base, re.MULTILINE)
        assert free is not None
        capped = f'str ::= "<|\\"|>" str_unit{{0,{max_string}}} "<|\\"|>"\nstr_unit ::= [^<|] | "<" [^<|] | "|" [^<|>]'
        base = base.replace(free.group(0), capped)
    return f"root ::= {root}\n{rules}{base}"


@functools.cache
def _log_relaxed(tool: str, keywords: tuple[str, ...]) -> None:
    # Cached: a step asks for the constraint every time; say it once per tool.
    logger.warning(
        "tool %s: the decoding grammar does not enforce %s; the tool's validation still checks them",
        tool,
        ", ".join(keywords),
    )


def literal(text: str) -> str:
    """`text` as an EBNF string literal."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


class _Builder:
    """Turns schema nodes into EBNF rules, one grammar per tool."""

    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs
        self.rules: dict[str, str] = {}
        self.relaxed: set[str] = set()
        self._refs: dict[str, str] = {}

    def fresh(self, hint: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", hint) or "r"
        name, n = base, 1
        while name in self.rules or name in _RESERVED:
            n += 1
            name = f"{base}_{n}"
        self.rules[name] = ""  # claimed; the body is filled in by the caller
        return name

    def value(self, schema: Any, hint: str) -> str:
        """An EBNF expression for one value valid under `schema`."""
        if schema is True or schema == {}:
            return "any"
        if not isinstance(schema, Mapping):
            self.relaxed.add("false schema" if schema is False else repr(schema))
            return "any"
        self.relaxed.update(k for k in schema if k not in _HANDLED and k not in _ANNOTATIONS)
        if isinstance(ref := schema.get("$ref"), str):
            rest = {k: v for k, v in schema.items() if k != "$ref" and k not in _ANNOTATIONS}
            if rest:  # a $ref with siblings: the siblings are not enforced
                self.relaxed.update(rest)
            return self.ref(ref)
        if "const" in schema or "enum" in schema:
            options = [schema["const"]] if "const" in schema else list(schema["enum"])
            return self.alternatives([literal(format_value(v)) for v in options])
        for keyword in ("anyOf", "oneOf"):
            if isinstance(schema.get(keyword), list):
                base = {k: v for k, v in schema.items() if k not in (keyword, *_ANNOTATIONS)}
                branches = [{**base, **branch} if isinstance(branch, Mapping) else branch for branch in schema[keyword]]
                return self.alternatives([self.value(b, f"{hint}_{i}") for i, b in enumerate(branches)])
        if isinstance(all_of := schema.get("allOf"), list):
            base = {k: v for k, v in schema.items() if k != "allOf"}
            if len(all_of) == 1 and isinstance(all_of[0], Mapping):
                return self.value({**all_of[0], **base}, hint)
            self.relaxed.add("allOf")
            return "any"
        kind = schema.get("type")
        if isinstance(kind, list):
            return self.alternatives([self.value({**schema, "type": k}, f"{hint}_{k}") for k in kind])
        return self.typed(schema, kind, hint)

    def typed(self, schema: Mapping[str, Any], kind: Any, hint: str) -> str:
        if kind == "string":
            return "str"
        if kind in ("integer", "number"):
            non_negative = isinstance(low := schema.get("minimum"), int | float) and low >= 0
            return ("nat" if non_negative else "int") if kind == "integer" else "num"
        if kind == "boolean":
            return "bool"
        if kind == "null":
            return '"null"'
        if kind == "array":
            return self.array(schema, hint)
        if kind == "object" or "properties" in schema:
            name = self.fresh(hint)
            self.rules[name] = '"{" ' + self.members(schema, hint) + ' "}"'
            return name
        if kind is not None:
            self.relaxed.add(f"type {kind}")
        return "any"

    def ref(self, ref: str) -> str:
        if ref in self._refs:
            return self._refs[ref]
        target = ref.removeprefix("#/$defs/")
        if not ref.startswith("#/$defs/") or target not in self.defs:
            self.relaxed.add(f"$ref {ref}")
            return "any"
        name = self._refs[ref] = self.fresh(f"def_{target}")
        self.rules[name] = self.value(self.defs[target], f"{name}_v")  # a rule: refs may recurse
        return name

    def alternatives(self, options: list[str]) -> str:
        unique = list(dict.fromkeys(options))
        return unique[0] if len(unique) == 1 else "(" + " | ".join(unique) + ")"

    def array(self, schema: Mapping[str, Any], hint: str) -> str:
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            if low == high == len(prefix) or schema.get("items") is False:
                items = [self.value(s, f"{hint}_{i}") for i, s in enumerate(prefix)]
                return '"[" ' + ' "," '.join(items) + ' "]"'
            self.relaxed.add("prefixItems")
            item = "any"
        else:
            item = self.value(schema.get("items", True), f"{hint}_item")
        if not isinstance(low, int) or not (high is None or isinstance(high, int)):
            low, high = 0, None
        if high is not None and high < max(low, 1):  # maxItems 0: only the empty list
            return '"[" "]"'
        more_low = max(low - 1, 0)  # the items after the first
        repeat = f"{{{more_low},{high - 1}}}" if high is not None else f"{{{more_low},}}" if more_low else "*"
        more = f'("," {item}){repeat}'
        body = f"{item} {more}"
        return f'"[" {body} "]"' if low >= 1 else f'"[" ({body})? "]"'

    def members(self, schema: Mapping[str, Any], hint: str) -> str:
        """The inside of an object's braces: its properties, sorted, required ones present.

        With properties p_0 … p_n-1 in sorted order, `first_i` is "what may come
        from p_i on when nothing was written yet" and `rest_i` "… when something
        was (so each one written starts with a comma)":

            rest_i  = "," kv_i rest_i+1          (p_i required)
                    | ("," kv_i)? rest_i+1       (p_i optional)
            first_i = kv_i rest_i+1              (p_i required)
                    | kv_i rest_i+1 | first_i+1  (p_i optional)

        2n rules accept every in-order subset holding the required ones.
        """
        properties = schema.get("properties")
        extra = schema.get("additionalProperties", not properties)
        if not isinstance(properties, Mapping) or not properties:
            if extra is False:
                return '""'
            value = self.value(extra, f"{hint}_extra")  # a free-form dict: any keys, any order
            return f'(any_key ":" {value} ("," any_key ":" {value})*)?'
        if extra is not False and extra != {} and "additionalProperties" in schema:
            self.relaxed.add("additionalProperties")  # only the declared keys are written
        required = set(schema.get("required", ()))
        keys = sorted(properties)
        pairs = [f'{literal(_format_key(key))} ":" ' + self.value(properties[key], f"{hint}_{key}") for key in keys]
        rest_next, first_next = "", '""'
        for index in range(len(keys) - 1, -1, -1):
            pair, key = pairs[index], keys[index]
            rest, first = self.fresh(f"{hint}_rest{index}"), self.fresh(f"{hint}_first{index}")
            if key in required:
                self.rules[rest] = f'"," {pair}{rest_next}'
                self.rules[first] = f"{pair}{rest_next}"
            else:
                self.rules[rest] = f'("," {pair})?{rest_next}'
                self.rules[first] = f"{pair}{rest_next} | {first_next}"
            rest_next, first_next = f" {rest}", first
        return first_next


_RESERVED = frozenset(re.findall(r"^(\w+) ::=", _BASE_RULES, re.MULTILINE)) | {"root"}
