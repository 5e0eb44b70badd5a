"""The decoding grammar for Gemma 4's native tool calls, as an xgrammar structural tag.

    build_constraint(tools, "auto")  # free text, in which every call is valid

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

String lengths are counted in the grammar; numeric bounds and a few string
formats use xgrammar's own range and format grammars (JSON's numbers are
Gemma 4's). Keywords the grammar cannot express cheaply (`pattern`, other
formats, `multipleOf`, `uniqueItems`, ...) are relaxed: the grammar accepts
more, and the tool's Pydantic validation still checks the parsed arguments.
They are logged once per tool on the `agentkit.grammar` logger.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from agentkit.dialect import Constraint

# The grammar must accept exactly what the renderer writes: its markers, its
# keys and its values come from there (gemma4 imports this module only lazily).
from agentkit.dialects.gemma4 import (
    CALL_CLOSE,
    CALL_OPEN,
    CHANNEL_CLOSE,
    CHANNEL_OPEN,
    DECLARATION_CLOSE,
    DECLARATION_OPEN,
    MARKER_TOKENS,
    QUOTE,
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    TURN_END,
    TURN_OPEN,
    GrammarOptions,
    _format_key,
    format_value,
)
from agentkit.tool import ToolSpec

__all__ = [
    "GrammarOptions",
    "arguments_grammar",
    "build_constraint",
    "structural_tag",
    "text_excludes",
    "token_structural_tag",
]

logger = logging.getLogger("agentkit.grammar")


# Keywords that say nothing about which values are valid.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "$schema", "$id"}
    | {"$comment", "discriminator"}
)
# Keywords the grammar enforces (or, for `$defs`, reads).
_HANDLED = frozenset(
    {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "properties", "required"}
    | {"additionalProperties", "items", "prefixItems", "minItems", "maxItems", "minLength", "maxLength"}
)
# Numeric bounds: enforced with xgrammar's own range grammars when it is importable.
_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
# String formats whose xgrammar grammar holds no escapes and no `<` or `|`, so it
# reads the same between `<|"|>` delimiters as between JSON quotes.
_FORMATS = frozenset({"date", "time", "date-time", "uuid", "ipv4", "ipv6", "hostname"})

# The terminals: a string between `<|"|>` delimiters holding neither `<|` nor
# `|>` (states: after an ordinary character, after `<`, after `|`). Stop
# strings end generation whatever the grammar's state, so a string must not be
# able to hold `<|tool_response>` or `<turn|>` (seen: the embedded model wrote
# `<|tool_response>` inside an address and was cut off mid-call); every Gemma 4
# marker, the delimiter included, has one of the two pairs. Numbers as `repr` and
# `str` write them, with digit counts capped so a model cannot run on forever,
# and below 1e308, so that every number a model writes is a finite float: a
# three-digit exponent (which `repr` writes after one digit) stops at 307.
# (The renderer writes larger floats, up to 1.79e308; a model cannot.)
_BASE_RULES = r"""
str ::= "<|\"|>" str_n "<|\"|>"
str_n ::= "" | [^<|] str_n | "<" str_lt | "|" str_bar
str_lt ::= "" | [^<|] str_n | "<" str_lt
str_bar ::= "" | [^<|>] str_n | "<" str_lt | "|" str_bar
nat ::= "0" | [1-9] [0-9]{0,24}
int ::= "-"? nat
num ::= "-"? (nat frac? exp2? | [0-9] frac? exp3)
frac ::= "." [0-9]{1,24}
exp2 ::= [eE] [+-]? [0-9]{1,2}
exp3 ::= [eE] ("-" [0-9]{3} | "+"? ([12] [0-9]{2} | "30" [0-7]))
bool ::= "true" | "false"
any ::= str | num | bool | "null" | "[" (any ("," any)*)? "]" | "{" (any_key ":" any ("," any_key ":" any)*)? "}"
any_key ::= [A-Za-z_] [A-Za-z0-9_.\-]* | str
"""


def build_constraint(
    tools: Sequence[ToolSpec],
    tool_choice: str,
    options: GrammarOptions | None = None,
    *,
    in_thought: bool = False,
    output_schema: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Constraint | None:
    """What vLLM must enforce for `tool_choice` over `tools`, or None (nothing to enforce).

        build_constraint(tools, "auto", GrammarOptions(max_string=60))
        build_constraint(tools, "auto", max_string=60)  # the same: fields as keywords

    - `auto`: free text, or calls (each a real tool with valid arguments);
    - `required`: at least one call (with `thinking`, text may come first);
    - a tool's name: as `required`, calling only that tool;
    - `none`: text only.

    Free text may not hold Gemma 4's turn and declaration markers, nor (with
    `thinking` off) its channel markers: a model that writes them has left
    its turn. With an `output_schema`, the text is instead a JSON value valid
    under it (a typed final answer); `max_text` caps free text at that many
    characters. With either, an `auto` turn is calls *or* the answer, never
    text then calls; with `thinking`, an optional thought comes first.
    `max_string` and `max_items` cap strings and arrays in calls.
    `parallel_calls=False` ends the turn after its first call (xgrammar's
    `stop_after_first`), as OpenAI's `parallel_tool_calls=false` does.
    `in_thought`: the prompt ends inside an open thought (thinking on, after
    tool results): the turn first finishes it with `<channel|>`, then goes on
    as a turn whose thought is behind it.
    `marker_tokens` (`tokens` as a keyword): each marker must be written as its
    one token (`MARKER_TOKENS`), for tokenizers that have them (Gemma 4's); see
    `token_structural_tag`.

    `overrides` are `GrammarOptions` fields over `options`'. The value is the
    JSON string for `StructuredOutputsParams(structural_tag=...)`.

    Raises:
        ValueError: `tool_choice` names no tool in `tools`, or is `required` with no tools.
    """
    if "tokens" in overrides:
        overrides["marker_tokens"] = overrides.pop("tokens")
    options = dataclasses.replace(options or GrammarOptions(), **overrides)
    if tool_choice not in ("auto", "required", "none"):
        tools = [spec for spec in tools if spec.name == tool_choice]
        if not tools:
            raise ValueError(f"tool_choice {tool_choice!r} is not among the tools offered")
    callable_tools = [] if tool_choice == "none" else list(tools)
    required = tool_choice not in ("auto", "none")
    if required and not callable_tools:
        raise ValueError(f"tool_choice {tool_choice!r} needs at least one tool")
    if not callable_tools and output_schema is None and options.max_text is None and not in_thought:
        return None
    tag = structural_tag(
        callable_tools, required=required, options=options, in_thought=in_thought, output_schema=output_schema
    )
    return Constraint(kind="structural_tag", value=json.dumps(tag))


def text_excludes(*, thinking: bool) -> list[str]:
    """The markers free text may not hold: they open another turn, a
    declaration, or close what is not open (`<turn|>` and `<|tool_response>`
    stay allowed: they are the stop strings that end the model's turn)."""
    markers = [TURN_OPEN, DECLARATION_OPEN, DECLARATION_CLOSE, CALL_CLOSE, RESPONSE_CLOSE]
    return markers if thinking else [*markers, CHANNEL_OPEN, CHANNEL_CLOSE]


def structural_tag(
    tools: Sequence[ToolSpec],
    *,
    required: bool,
    options: GrammarOptions | None = None,
    in_thought: bool = False,
    output_schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The structural tag (xgrammar's `StructuralTag` format); see `build_constraint`.

    With `options.marker_tokens`, every marker is named by its token id (see
    `token_structural_tag`); else it is written as text.
    """
    options = options or GrammarOptions()
    turn = _token_turn if options.marker_tokens else _text_turn
    if not in_thought:
        return _format(turn(tools, required, options, output_schema))
    # The rest of the open thought (its end is the one marker that closes it), then
    # the turn as one with its thought behind it: no second thought.
    if options.marker_tokens:
        thought_end = {
            "type": "tag",
            "begin": "",
            "content": _token_text(options.max_text),
            "end": _token(CHANNEL_CLOSE),
        }
    else:
        thought_end = {"type": "tag", "begin": "", "content": {"type": "any_text"}, "end": CHANNEL_CLOSE}
    behind = turn(tools, required, dataclasses.replace(options, thinking=False), output_schema)
    return _format(_sequence(thought_end, behind))


def token_structural_tag(
    tools: Sequence[ToolSpec], *, options: GrammarOptions | None = None, **turn: Any
) -> dict[str, Any]:
    """`structural_tag` with every marker named by its token id (`options.marker_tokens` on).

    Gemma 4's tokenizer holds each marker as one special token, and a Gemma 4
    model reads and writes them so; but a grammar that names a marker as text
    also accepts any ordinary tokens that spell it (`<`, `|`, `tool`, ...),
    and a model that wanders (or random weights) takes that path. Here a call
    opens with token 48 and closes with token 49, a string sits between
    tokens 52, a thought opens with 100 and closes with 101; free text may
    hold no marker at all, spelled or not, but the two that end the turn.

    Free text is xgrammar's `any_text` with the markers excluded as strings,
    which also keeps out their tokens (a token is excluded by the text it
    decodes to); the call that follows opens with its token. xgrammar's
    `token_triggered_tags` would exclude only the tokens, so a spelled
    `<|tool_call>` could pass as text, and the parser would read it as a call.
    """
    return structural_tag(tools, options=dataclasses.replace(options or GrammarOptions(), marker_tokens=True), **turn)


def _text_turn(
    tools: Sequence[ToolSpec], required: bool, options: GrammarOptions, output_schema: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The turn's format, its markers written as text."""
    thinking, max_text = options.thinking, options.max_text
    excludes = text_excludes(thinking=thinking)
    if not tools and output_schema is None and max_text is None:  # no calls, no answer's form: free text
        return {"type": "any_text", "excludes": excludes}
    tags = [
        {
            "type": "tag",
            "begin": f"{CALL_OPEN}call:{spec.name}{{",
            "content": {"type": "grammar", "grammar": arguments_grammar(spec, options)},
            "end": f"}}{CALL_CLOSE}",
        }
        for spec in tools
    ]
    # Free text, in which every `<|tool_call>` must complete as a valid call.
    calls: dict[str, Any] = {"type": "triggered_tags", "triggers": [CALL_OPEN], "tags": tags, "excludes": excludes}
    if not options.parallel_calls:
        calls["stop_after_first"] = True
    if required:
        if not thinking:  # a model not asked to think has nothing to say before the call
            return calls | {"at_least_one": True}
        # `at_least_one` alone would forbid a thought before the first call; `<turn|>` would end the turn.
        first = {"type": "any_text", "excludes": [*excludes, TURN_END]}
        return _sequence(first, calls | {"at_least_one": True})
    if output_schema is None and max_text is None:
        return calls
    answer = _answer(output_schema, max_text)
    body = {"type": "or", "elements": [calls | {"at_least_one": True}, answer]} if tools else answer
    if not thinking:
        return body
    thought = {"type": "tag", "begin": CHANNEL_OPEN, "content": {"type": "any_text"}, "end": CHANNEL_CLOSE}
    return _sequence({"type": "optional", "content": thought}, body)


_TOKEN_MARKERS = [m for m in MARKER_TOKENS if m not in (TURN_END, RESPONSE_OPEN)]
"""The markers free text may not hold when they are tokens: all but the two that end the turn."""


def _token(marker: str) -> dict[str, Any]:
    return {"type": "token", "token": MARKER_TOKENS[marker]}


def _token_text(max_text: int | None = None) -> dict[str, Any]:
    """Free text without a marker, spelled or not; at most `max_text` characters."""
    return {"type": "any_text", "excludes": _TOKEN_MARKERS} | ({"max_chars": max_text} if max_text is not None else {})


def _sequence(*elements: dict[str, Any]) -> dict[str, Any]:
    return elements[0] if len(elements) == 1 else {"type": "sequence", "elements": list(elements)}


def _token_turn(
    tools: Sequence[ToolSpec], required: bool, options: GrammarOptions, output_schema: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The turn's format, every marker by its token id (see `token_structural_tag`)."""
    thinking, max_text = options.thinking, options.max_text
    text, capped = _token_text(), _token_text(max_text)
    body: dict[str, Any]
    if tools:
        call = _token_call(tools, options)
        # After a call: text and more calls, or (parallel_calls=False) nothing.
        after = [text, {"type": "star", "content": _sequence(call, text)}] if options.parallel_calls else []
        calls_first = _sequence(call, *after)
        if required:
            # A model asked to think may say something first (capped: a wandering model must reach the call).
            body = (
                _sequence(capped | {"excludes": [*_TOKEN_MARKERS, TURN_END]}, calls_first) if thinking else calls_first
            )
        elif output_schema is None and max_text is None:
            body = _sequence(text, {"type": "optional", "content": calls_first})
        else:
            body = {"type": "or", "elements": [calls_first, _answer(output_schema, max_text)]}
    else:
        body = _answer(output_schema, max_text) if output_schema is not None or max_text is not None else text
    if not thinking:
        return body
    thought = {"type": "tag", "begin": _token(CHANNEL_OPEN), "content": capped, "end": _token(CHANNEL_CLOSE)}
    return _sequence({"type": "optional", "content": thought}, body)


def _token_call(tools: Sequence[ToolSpec], options: GrammarOptions) -> dict[str, Any]:
    """One call to any of `tools`, between the call markers' tokens."""
    forms = [
        {
            "type": "sequence",
            "elements": [
                {"type": "const_string", "value": f"call:{spec.name}{{"},
                {"type": "grammar", "grammar": arguments_grammar(spec, options)},
                {"type": "const_string", "value": "}"},
            ],
        }
        for spec in tools
    ]
    content = forms[0] if len(forms) == 1 else {"type": "or", "elements": forms}
    return {"type": "tag", "begin": _token(CALL_OPEN), "content": content, "end": _token(CALL_CLOSE)}


def _answer(output_schema: Mapping[str, Any] | None, max_text: int | None) -> dict[str, Any]:
    """A turn's final answer: JSON under `output_schema`, else plain text of at most `max_text` characters."""
    if output_schema is not None:
        # Whitespace runs capped (a small model could pad forever); strings may not
        # hold a stop string, which would cut the answer short.
        return {
            "type": "json_schema",
            "json_schema": dict(output_schema),
            "max_whitespace_cnt": 1,
            "excludes": [TURN_END, RESPONSE_OPEN],
        }
    return {"type": "grammar", "grammar": plain_text_grammar(max_text or 0)}


def plain_text_grammar(max_chars: int) -> str:
    """Plain text, for a small model's answer: it starts with a visible character,
    holds no `<` or `|` (so no marker but the `<turn|>` that may end it), and ends
    within `max_chars` characters.

    A bounded run of one character class is what xgrammar handles well: each
    repetition state's token mask is computed when the grammar compiles (about
    6 s for 100 characters over Gemma 3's 262k-token vocabulary on a 2-core
    CPU, once per grammar) and then looked up (~0.1 ms a token). The earlier
    form, which allowed `<` and `|` when no marker followed, left every token to
    be checked while decoding: ~150 ms a token, for each sequence in a batch."""
    return f"root ::= [^ \\t\\r\\n<|] [^<|]{{0,{max(max_chars - 1, 0)}}} {literal(TURN_END)}?\n"


def _format(content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "structural_tag", "format": content}


def arguments_grammar(spec: ToolSpec, options: GrammarOptions | None = None) -> str:
    """The EBNF for the inside of a call's braces: `k:v,…` under `spec.parameters`.

    `options.max_string` caps every string and `max_items` every array, for small
    models that may otherwise write on inside one until `max_tokens` (an
    array's `minItems` wins over `max_items`). A capped string is a run of units: a
    character other than `<` and `|`, or one of them followed by such a
    character (so `<<`, `||` and a trailing `<` or `|` are not available).
    `marker_tokens`: the string delimiter is Gemma 4's one token for it (id 52),
    not any tokens that spell it.
    """
    options = options or GrammarOptions()
    max_string = options.max_string
    builder = _Builder(spec.parameters.get("$defs", {}), options)
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
    if options.marker_tokens:
        base = base.replace(literal(QUOTE), builder.quote)
    return f"root ::= {root}\n{rules}{base}"


@functools.cache
def _log_relaxed(tool: str, keywords: tuple[str, ...]) -> None:
    # Cached: a step asks for the constraint every time; say it once per tool.
    logger.warning(
        "tool %s: the decoding grammar does not enforce %s; the tool's validation still checks them",
        tool,
        ", ".join(keywords),
    )


def _split_quotes(text: str) -> list[str]:
    """`text` split around its string delimiters, each delimiter kept as an item at an odd index."""
    out: list[str] = []
    for i, part in enumerate(text.split(QUOTE)):
        out += [QUOTE, part] if i else [part]
    return out


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

    def __init__(self, defs: Mapping[str, Any], options: GrammarOptions) -> None:
        self.defs = defs
        self.max_string, self.max_items = options.max_string, options.max_items
        self.tokens = options.marker_tokens
        self.quote = f"Token({MARKER_TOKENS[QUOTE]})" if self.tokens else literal(QUOTE)
        """The string delimiter: by token id, or as text (any tokens that spell it)."""
        self.rules: dict[str, str] = {}
        self.relaxed: set[str] = set()
        self._refs: dict[str, str] = {}

    def literal(self, text: str) -> str:
        """`text` as EBNF, each string delimiter in it as `self.quote`."""
        if not self.tokens:
            return literal(text)
        return " ".join(self.quote if i % 2 else literal(part) for i, part in enumerate(_split_quotes(text)) if part)

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
        self.relaxed.update(k for k in schema if k not in _HANDLED | _ANNOTATIONS | _BOUNDS | {"format"})
        if isinstance(ref := schema.get("$ref"), str):
            rest = {k: v for k, v in schema.items() if k != "$ref" and k not in _ANNOTATIONS}
            if rest:  # a $ref with siblings: the siblings are not enforced
                self.relaxed.update(rest)
            return self.ref(ref)
        if "const" in schema or "enum" in schema:
            options = [schema["const"]] if "const" in schema else list(schema["enum"])
            return self.alternatives([self.literal(format_value(v)) for v in options])
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
            return self.string(schema, hint)
        if kind in ("integer", "number"):
            bounds = {k: v for k, v in schema.items() if k in _BOUNDS and isinstance(v, int | float)}
            if bounds:
                borrowed = self.borrow({"type": kind, **bounds}, hint)
                if borrowed is not None:
                    return borrowed
                self.relaxed.update(bounds)
            return "int" if kind == "integer" else "num"
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

    def string(self, schema: Mapping[str, Any], hint: str) -> str:
        """A string: free, of bounded length, or in a cheap format."""
        fmt = schema.get("format")
        if fmt is not None:
            borrowed = self.borrow({"type": "string", "format": fmt}, hint) if fmt in _FORMATS else None
            if borrowed is not None:
                if "minLength" in schema or "maxLength" in schema:
                    self.relaxed.add("minLength/maxLength with format")
                return borrowed
            self.relaxed.add(f"format {fmt}")
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if not isinstance(low, int) or not (high is None or isinstance(high, int)):
            self.relaxed.update({"minLength", "maxLength"})
            return "str"
        if self.max_string is not None:
            high = self.max_string if high is None else min(high, self.max_string)
        if low == 0 and high is None:
            return "str"
        # Counted exactly: a bounded string holds no `<` or `|` (one character, one unit).
        high = max(low, high) if high is not None else None
        count = f"{{{low},{high}}}" if high is not None else f"{{{low},}}" if low else "*"
        return f"({self.quote} [^<|]{count} {self.quote})"

    def borrow(self, schema: Mapping[str, Any], hint: str) -> str | None:
        """xgrammar's own grammar for a JSON scalar (a number range, a string
        format) as a rule of this grammar; None without xgrammar.

        JSON's numbers are Gemma 4's; a string format's inside (between the
        JSON quotes) is put between `<|"|>` delimiters.
        """
        try:
            import xgrammar
        except ImportError:
            return None
        text = str(xgrammar.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False))
        rules = dict(line.split(" ::= ", 1) for line in text.splitlines() if " ::= " in line)
        start, body = "root", "{root}"
        if schema.get("type") == "string":  # `"\"" inner "\""`: keep the inside
            inside = re.fullmatch(r'\(\("\\"" (\w+) "\\""\)\)', rules["root"])
            if inside is None:  # not the shape this code knows: stay free
                return None
            start, body = inside.group(1), f"{self.quote} {{root}} {self.quote}"
        while True:  # a prefix none of whose names is taken
            name = self.fresh(f"{hint}_x")
            renamed = {rule: f"{name}_{rule}" for rule in rules}
            if not set(renamed.values()) & self.rules.keys():
                break
        for rule in _reachable(rules, start):
            self.rules[renamed[rule]] = _rename(rules[rule], renamed)
        self.rules[name] = body.format(root=renamed[start])
        return name

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
        if self.max_items is not None:
            high = max(low, self.max_items if high is None else min(high, self.max_items))
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
        pairs = [
            f'{self.literal(_format_key(key))} ":" ' + self.value(properties[key], f"{hint}_{key}") for key in keys
        ]
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


# EBNF outside string literals and character classes, where rule names are.
_LITERALS = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]')


def _names(body: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", _LITERALS.sub(" ", body)))


def _reachable(rules: Mapping[str, str], start: str) -> list[str]:
    seen, todo = [start], [start]
    while todo:
        for name in sorted(_names(rules[todo.pop()]) & rules.keys()):
            if name not in seen:
                seen.append(name)
                todo.append(name)
    return seen


def _rename(body: str, names: Mapping[str, str]) -> str:
    """`body` with its rule names replaced (literals and classes untouched)."""
    out, at = [], 0
    for literal_match in _LITERALS.finditer(body):
        code = body[at : literal_match.start()]
        out.append(re.sub(r"[A-Za-z_][A-Za-z0-9_]*", lambda m: names.get(m.group(), m.group()), code))
        out.append(literal_match.group())
        at = literal_match.end()
    out.append(re.sub(r"[A-Za-z_][A-Za-z0-9_]*", lambda m: names.get(m.group(), m.group()), body[at:]))
    return "".join(out)


_RESERVED = frozenset(re.findall(r"^(\w+) ::=", _BASE_RULES, re.MULTILINE)) | {"root"}
