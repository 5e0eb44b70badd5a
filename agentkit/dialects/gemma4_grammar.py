"""The decoding grammar for Gemma 4's turns: free text, native tool calls, typed answers.

    build_constraint(tools, "auto")  # free text, in which every call is valid

The grammar is one `agentkit.grammar.Grammar` value; the engine writes it as
llguidance's Lark or xgrammar's EBNF (`Constraint.structured_outputs`). From
`<|tool_call>` on it holds the model to `call:NAME{…}<tool_call|>` for a real
tool, with arguments in exactly the form `render_call` writes: keys bare and
sorted, strings between `<|"|>` delimiters, numbers as `format_value` writes
them, no whitespace. Each tool's arguments are rules generated from its JSON
Schema.

Text (free text, thoughts, strings) holds no `<|` and no `|>`: every Gemma 4
marker has one of the two, so a model cannot spell one out where it does not
belong, and a stop string (`<turn|>`, `<|tool_response>`) cannot cut a call in
the middle of a string (seen: the embedded model wrote `<|tool_response>`
inside an address). The two stop markers end the turn where it may end.

Numeric bounds (`minimum`, ...) are enforced as each engine writes a JSON
number range, a few string formats as regular expressions. Keywords the grammar
cannot express cheaply (`pattern`, other formats, `multipleOf`,
`uniqueItems`, ...) are relaxed: the grammar accepts more, and the tool's
Pydantic validation still checks the parsed arguments. They are logged once per
tool on the `agentkit.grammar` logger.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agentkit.dialect import Constraint

# The grammar must accept exactly what the renderer writes: its markers, its
# keys and its values come from there (gemma4 imports this module only lazily).
from agentkit.dialects.gemma4 import (
    BARE_KEY,
    CALL_CLOSE,
    CALL_OPEN,
    CHANNEL_CLOSE,
    CHANNEL_OPEN,
    INTEGER,
    MARKER_TOKENS,
    NUMBER,
    QUOTE,
    RESPONSE_OPEN,
    TURN_END,
    GrammarOptions,
    _format_key,
    format_value,
)
from agentkit.grammar import Chars, Grammar, Lit, Node, Pattern, Ref, Rep, Schema, Tok, alt, opt, schema_text, seq
from agentkit.planning import MAX_PATH, MAX_PLAN_CALLS
from agentkit.schema import closed
from agentkit.tool import ToolSpec

__all__ = ["FREE_TEXT", "MAX_DEPTH", "GrammarOptions", "build_constraint", "text", "turn_grammar"]

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
_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CLOCK = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
_DATE = r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
_FORMATS = {
    "date": _DATE,
    "time": _CLOCK,
    "date-time": _DATE + "T" + _CLOCK,
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "ipv4": rf"{_OCTET}(?:\.{_OCTET}){{3}}",
}
"""String formats written as regular expressions (what Pydantic accepts for each, or less)."""
LARGEST = {"integer": 10**18, "number": 1e18}
"""Where a one-sided numeric range is closed: llguidance writes no range past
1e18, and xgrammar no integer past 64 bits."""
MAX_DEPTH = 3
"""With `max_items`, free-form values (an `Any`, a `dict`) nest at most this deep."""

# Text without `<|` or `|>`, exactly: a run of `<` and `|` holds no `|` after a `<`,
# and a `|` is not followed by `>`.
_NORMAL = Chars("^<|")
_TEXT_CHUNK = alt(
    _NORMAL,
    seq(Rep(Lit("|"), 1), Chars("^<|>")),
    seq(Rep(Lit("|")), Rep(Lit("<"), 1), _NORMAL),
)
FREE_TEXT = seq(Rep(_TEXT_CHUNK), Rep(Lit("|")), Rep(Lit("<")))
# A capped text is a run of units, each one character or `<`/`|` and the one
# after it (so `<<`, `||` and a trailing `<` or `|` are not available).
_UNIT = alt(_NORMAL, seq(Lit("<"), _NORMAL), seq(Lit("|"), Chars("^<|>")))


def text(max_chars: int | None = None) -> Node:
    """Text without a marker: free, or at most `max_chars` units."""
    return FREE_TEXT if max_chars is None else Rep(_UNIT, 0, max_chars)


_SPACE = " \\t\\r\\n"
VISIBLE_TEXT = seq(Rep(Chars(_SPACE)), Chars("^" + _SPACE + "<|"), FREE_TEXT)
"""Free text that says something: a turn of only spaces is no answer (the parser refuses it)."""


_GRAMMARS: OrderedDict[str, Grammar] = OrderedDict()
_GRAMMARS_LOCK = threading.Lock()
GRAMMAR_CACHE_SIZE = 256
"""Turn grammars kept per process (least recently used go first)."""


def build_constraint(
    tools: Sequence[ToolSpec],
    tool_choice: str,
    options: GrammarOptions | None = None,
    *,
    in_thought: bool = False,
    output_schema: Mapping[str, Any] | None = None,
    plan: bool = False,
    **overrides: Any,
) -> Constraint | None:
    """What the engine must enforce for `tool_choice` over `tools`, or None (nothing to enforce).

        build_constraint(tools, "auto", GrammarOptions(max_string=60))
        build_constraint(tools, "auto", max_string=60)  # the same: fields as keywords

    - `auto`: free text, or calls (each a real tool with valid arguments);
    - `required`: at least one call (with `thinking`, text may come first);
    - a tool's name: as `required`, calling only that tool;
    - `none`: text only.

    With an `output_schema`, the text is instead a JSON value valid under it (a
    typed final answer); `max_text` caps free text at that many characters.
    With either, an `auto` turn is calls *or* the answer, never text then
    calls; with `thinking`, an optional thought comes first. `max_string` and
    `max_items` cap strings and arrays in calls (and `max_items` the depth of
    free-form values). `parallel_calls=False` ends the turn after its first
    call, as OpenAI's `parallel_tool_calls=false` does. `plan`: the turn is a
    plan (`agentkit.planning`): up to `MAX_PLAN_CALLS` calls, in which a
    top-level argument may instead be a reference to an earlier call's result
    (`$2`, `$2.city`; never to itself or a later call); `parallel_calls` does
    not apply. `in_thought`: the prompt
    ends inside an open thought (thinking on, after tool results): the turn
    first finishes it with `<channel|>`, then goes on as a turn whose thought
    is behind it. `marker_tokens` (`tokens` as a keyword): each marker must be
    written as its one token (`MARKER_TOKENS`), for tokenizers that have them
    (Gemma 4's), so that ordinary tokens cannot spell one.

    The grammar for the same tools, choice and options is built once per
    process (a new agent with the same tools reuses it, and each engine caches
    its serialisation on it).

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
    callable_tools = () if tool_choice == "none" else tuple(tools)
    required = tool_choice not in ("auto", "none")
    if required and not callable_tools:
        raise ValueError(f"tool_choice {tool_choice!r} needs at least one tool")
    if not callable_tools and output_schema is None and options.max_text is None and not in_thought:
        return None
    tool_part = [[spec.name, spec.parameters] for spec in callable_tools]
    plan = plan and bool(callable_tools)
    parts = [tool_part, required, dataclasses.asdict(options), in_thought, output_schema, plan]
    key = json.dumps(parts, default=str)  # in order: a typed answer's properties are written in its schema's
    with _GRAMMARS_LOCK:
        grammar = _GRAMMARS.get(key)
        if grammar is not None:
            _GRAMMARS.move_to_end(key)
    if grammar is None:
        grammar = turn_grammar(
            callable_tools,
            required=required,
            options=options,
            in_thought=in_thought,
            output_schema=output_schema,
            plan=plan,
        )
        with _GRAMMARS_LOCK:
            _GRAMMARS[key] = grammar
            while len(_GRAMMARS) > GRAMMAR_CACHE_SIZE:
                _GRAMMARS.popitem(last=False)
    return Constraint(kind="grammar", value=grammar)


def turn_grammar(
    tools: Sequence[ToolSpec],
    *,
    required: bool,
    options: GrammarOptions | None = None,
    in_thought: bool = False,
    output_schema: Mapping[str, Any] | None = None,
    plan: bool = False,
) -> Grammar:
    """The grammar of one model turn; see `build_constraint`."""
    return _Turn(tools, options or GrammarOptions(), plan=plan).grammar(required, in_thought, output_schema)


class _Turn:
    """Builds one turn's grammar: markers, text, calls, answers, and each tool's arguments.

    It also says which rules are lexemes (`Grammar.lexemes`): strings, numbers,
    keys, and each run of text with what ends it. A marker written as text is
    one lexeme with the text before it: a lexer that has read `<` as text
    cannot take it back when `|tool_call>` follows. Small lexemes keep masks
    cheap (llguidance's slices apply to them).
    """

    def __init__(self, tools: Sequence[ToolSpec], options: GrammarOptions, *, plan: bool = False) -> None:
        self.tools, self.options, self.plan = tools, options, plan
        self.rules: dict[str, Node] = {}
        self.lexemes: set[str] = set()
        self.shared: dict[str, Node] = {}
        self.tools_by_name = {spec.name: spec for spec in tools}

    def fresh(self, hint: str) -> str:
        """A new rule's name (claimed: the caller fills in its body)."""
        base = re.sub(r"[^A-Za-z0-9_]", "_", hint) or "r"
        name, n = base, 1
        while name in self.rules:
            n += 1
            name = f"{base}_{n}"
        self.rules[name] = Lit("")
        return name

    def lexeme(self, hint: str, node: Node) -> Ref:
        name = self.fresh(hint)
        self.rules[name] = node
        self.lexemes.add(name)
        return Ref(name)

    def marker(self, marker: str) -> Node:
        return Tok(MARKER_TOKENS[marker], marker) if self.options.marker_tokens else Lit(marker)

    def then(self, hint: str, text_node: Node, after: Node) -> Node:
        """`text_node`, then `after` (a marker, or the turn's end): one lexeme when the markers are text."""
        if self.options.marker_tokens:
            return seq(self.lexeme(hint, text_node), after)
        return self.lexeme(hint, seq(text_node, after))

    def literal(self, text: str) -> Node:
        """`text`, each string delimiter in it as the marker."""
        parts = text.split(QUOTE)
        out: list[Node] = []
        for index, part in enumerate(parts):
            if index:
                out.append(self.marker(QUOTE))
            out.append(Lit(part))
        return seq(*out)

    def grammar(self, required: bool, in_thought: bool, output_schema: Mapping[str, Any] | None) -> Grammar:
        options = self.options
        root = self.fresh("root")
        if in_thought:
            # The rest of the open thought (the one marker that closes it), then a turn with its thought behind it.
            self.options = dataclasses.replace(options, thinking=False)
            rest = self.then("thought_rest", text(options.max_text), self.marker(CHANNEL_CLOSE))
            body = seq(rest, self.body(required, output_schema))
        else:
            body = self.body(required, output_schema)
        self.rules[root] = body
        return Grammar(dict(self.rules), root=root, lexemes=frozenset(self.lexemes))

    def end(self) -> Node:
        """Where the turn may end: the model writes one of its stop markers (or nothing more)."""
        return opt(alt(self.marker(TURN_END), self.marker(RESPONSE_OPEN)))

    def body(self, required: bool, output_schema: Mapping[str, Any] | None) -> Node:
        options = self.options
        max_text = options.max_text
        if self.tools and not self.plan:
            self.rules["call"] = alt(*(self.call_form(spec) for spec in self.tools))
        if self.tools and required:
            # A model asked to think may say something first (capped: a wandering model must reach the call).
            turn = self.calls(text(max_text) if options.thinking else None)
        elif output_schema is not None or max_text is not None:
            answer = self.answer(output_schema, max_text)
            turn = alt(self.calls(None), answer) if self.tools else answer
        elif self.tools:
            # Free text (something, or the turn is empty), or text then calls.
            turn = alt(self.then("text_end", VISIBLE_TEXT, self.end()), self.calls(text()))
        else:
            turn = self.then("text_end", VISIBLE_TEXT, self.end())
        if not options.thinking:
            return turn
        thought = seq(self.marker(CHANNEL_OPEN), text(max_text), self.marker(CHANNEL_CLOSE))
        if not options.marker_tokens:
            thought = self.lexeme("thought", thought)
        else:
            thought = seq(self.marker(CHANNEL_OPEN), self.lexeme("thought", text(max_text)), self.marker(CHANNEL_CLOSE))
        return seq(opt(thought), turn)

    def calls(self, lead: Node | None) -> Node:
        """One call or more, after `lead` text (None: none), text between and after them, then the turn's end."""
        open_, close = self.marker(CALL_OPEN), self.marker(CALL_CLOSE)
        first = self.then("text_call", lead, open_) if lead is not None else open_
        if self.plan:
            return seq(first, self.plan_calls())
        call = seq(first, Ref("call"), close)
        if not self.options.parallel_calls:
            return seq(call, self.end())
        more = Rep(seq(self.then("text_call", text(), open_), Ref("call"), close))
        return seq(call, more, self.then("text_end", text(), self.end()))

    def call_form(self, spec: ToolSpec) -> Node:
        name = self.fresh(f"args_{spec.name}")
        builder = _Arguments(self, spec, name)
        self.rules[name] = builder.members(spec.parameters, name)
        if builder.relaxed:
            _log_relaxed(spec.name, tuple(sorted(builder.relaxed)))
        return seq(Lit(f"call:{spec.name}{{"), Ref(name), Lit("}"))

    def plan_calls(self) -> Node:
        """A plan's calls, from the first (its `<|tool_call>` written), each closed, then the turn's end.

        Call k is `call_k`: any tool, with each top-level argument a value or
        a reference `$1` … `$k-1` (call 1 has none), so a reference can only
        point backwards. The turn holds at most `MAX_PLAN_CALLS` calls.
        """
        open_, close = self.marker(CALL_OPEN), self.marker(CALL_CLOSE)
        builders = {spec.name: _Arguments(self, spec, f"args_{spec.name}") for spec in self.tools}
        # Text between and after the calls is capped with `max_text` (a small model may wander there).
        cap = self.options.max_text
        ending, between = self.then("text_end", text(cap), self.end()), self.then("text_call", text(cap), open_)
        after: Node = ending
        for position in range(MAX_PLAN_CALLS, 0, -1):
            ref = None if position == 1 else self.lexeme(f"ref_{position}", _reference(position))
            forms = []
            for spec in self.tools:
                args = self.fresh(f"args_{spec.name}_{position}")
                self.rules[args] = builders[spec.name].top(ref, args)
                forms.append(seq(Lit(f"call:{spec.name}{{"), Ref(args), Lit("}")))
            call = self.fresh(f"call_{position}")
            self.rules[call] = alt(*forms)
            rest = self.fresh(f"after_{position}")
            self.rules[rest] = seq(Ref(call), close, after)
            after = alt(seq(between, Ref(rest)), ending) if position > 1 else Ref(rest)
        for spec in self.tools:
            if builders[spec.name].relaxed:
                _log_relaxed(spec.name, tuple(sorted(builders[spec.name].relaxed)))
        return after

    def answer(self, output_schema: Mapping[str, Any] | None, max_text: int | None) -> Node:
        """A turn's final answer, then its end: JSON under `output_schema`, else
        plain text of at most `max_text` characters.

        Plain text starts with a visible character and holds no `<` or `|` at all:
        a bounded run of one character class keeps each step's mask cheap.
        """
        if output_schema is not None:
            return seq(Schema(schema_text(closed(output_schema))), self.end())
        cap = max(max_text or 0, 1)
        return self.then("answer", seq(Chars("^" + _SPACE + "<|"), Rep(_NORMAL, 0, cap - 1)), self.end())


@functools.cache
def _log_relaxed(tool: str, keywords: tuple[str, ...]) -> None:
    # Cached: a step asks for the constraint every time; say it once per tool.
    logger.warning(
        "tool %s: the decoding grammar does not enforce %s; the tool's validation still checks them",
        tool,
        ", ".join(keywords),
    )


class _Arguments:
    """Turns one tool's JSON Schema into rules of the turn's grammar."""

    def __init__(self, turn: _Turn, spec: ToolSpec, prefix: str) -> None:
        self.turn, self.prefix = turn, prefix
        self.rules = turn.rules
        self.defs: Mapping[str, Any] = spec.parameters.get("$defs", {})
        self.max_string, self.max_items = turn.options.max_string, turn.options.max_items
        self.relaxed: set[str] = set()
        self._refs: dict[str, str] = {}
        self.quote = turn.marker(QUOTE)
        self.name = spec.name
        self._top: dict[str, Node] | None = None
        self._plain: Node | None = None

    def fresh(self, hint: str) -> str:
        return self.turn.fresh(hint)

    def shared(self, name: str, make: Callable[[], Node]) -> Node:
        """What every tool shares (strings, numbers, keys), made once per grammar."""
        if name not in self.turn.shared:
            self.turn.shared[name] = make()
        return self.turn.shared[name]

    def quoted(self, hint: str, inside: Node) -> Node:
        """A string: `inside` between delimiters, one lexeme (its inside one, between delimiter tokens)."""
        if self.turn.options.marker_tokens:
            return seq(self.quote, self.turn.lexeme(hint, inside), self.quote)
        return self.turn.lexeme(hint, seq(self.quote, inside, self.quote))

    def string(self) -> Node:
        return self.shared("str", lambda: self.quoted("str", text(self.max_string)))

    def key(self) -> Node:
        """A free-form object's key: bare, or a string."""
        return self.shared("key", lambda: alt(self.turn.lexeme("key", BARE_KEY), self.string()))

    def value(self, schema: Any, hint: str) -> Node:
        """One value valid under `schema`."""
        if schema is True or schema == {}:
            return self.free()
        if not isinstance(schema, Mapping):
            self.relaxed.add("false schema" if schema is False else repr(schema))
            return self.free()
        self.relaxed.update(k for k in schema if k not in _HANDLED | _ANNOTATIONS | _BOUNDS | {"format"})
        if isinstance(ref := schema.get("$ref"), str):
            rest = {k: v for k, v in schema.items() if k != "$ref" and k not in _ANNOTATIONS}
            if rest:  # a $ref with siblings: the siblings are not enforced
                self.relaxed.update(rest)
            return self.ref(ref)
        if "const" in schema or "enum" in schema:
            options = [schema["const"]] if "const" in schema else list(schema["enum"])
            return alt(*(self.turn.literal(format_value(v)) for v in options))
        for keyword in ("anyOf", "oneOf"):
            if isinstance(schema.get(keyword), list):
                base = {k: v for k, v in schema.items() if k not in (keyword, *_ANNOTATIONS)}
                branches = [{**base, **branch} if isinstance(branch, Mapping) else branch for branch in schema[keyword]]
                return alt(*(self.value(b, f"{hint}_{i}") for i, b in enumerate(branches)))
        if isinstance(all_of := schema.get("allOf"), list):
            base = {k: v for k, v in schema.items() if k != "allOf"}
            if len(all_of) == 1 and isinstance(all_of[0], Mapping):
                return self.value({**all_of[0], **base}, hint)
            self.relaxed.add("allOf")
            return self.free()
        kind = schema.get("type")
        if isinstance(kind, list):
            return alt(*(self.value({**schema, "type": k}, f"{hint}_{k}") for k in kind))
        return self.typed(schema, kind, hint)

    def typed(self, schema: Mapping[str, Any], kind: Any, hint: str) -> Node:
        if kind == "string":
            return self.text_value(schema)
        if kind in ("integer", "number"):
            bounds = {k: v for k, v in schema.items() if k in _BOUNDS and isinstance(v, int | float)}
            if bounds:
                return self.bounded(kind, bounds)
            if kind == "integer":
                return self.shared("int", lambda: self.turn.lexeme("int", INTEGER))
            return self.number()
        if kind == "boolean":
            return alt(Lit("true"), Lit("false"))
        if kind == "null":
            return Lit("null")
        if kind == "array":
            return self.array(schema, hint)
        if kind == "object" or "properties" in schema:
            name = self.fresh(hint)
            self.rules[name] = seq(Lit("{"), self.members(schema, hint), Lit("}"))
            return Ref(name)
        if kind is not None:
            self.relaxed.add(f"type {kind}")
        return self.free()

    def bounded(self, kind: str, bounds: Mapping[str, float]) -> Node:
        """A number in range, as the engine writes a JSON number range (see `Schema`).

        An open side is closed at `LARGEST`: every number written is then a
        finite float (else a model could write `1e999` as a number above 0, or
        400 digits and a fraction), and each engine can write the range.
        """
        closed = dict(bounds)
        largest = LARGEST[kind]
        if not {"minimum", "exclusiveMinimum"} & closed.keys():
            closed["minimum"] = -largest
        if not {"maximum", "exclusiveMaximum"} & closed.keys():
            closed["maximum"] = largest
        return Schema(schema_text({"type": kind, **closed}))

    def text_value(self, schema: Mapping[str, Any]) -> Node:
        """A string: free, of bounded length, or in a format written as a regular expression."""
        fmt = schema.get("format")
        if fmt is not None:
            if fmt in _FORMATS:
                if "minLength" in schema or "maxLength" in schema:
                    self.relaxed.add("minLength/maxLength with format")
                return self.shared(f"format {fmt}", lambda: self.quoted(f"str_{fmt}", Pattern(_FORMATS[fmt])))
            self.relaxed.add(f"format {fmt}")
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if not isinstance(low, int) or not (high is None or isinstance(high, int)):
            self.relaxed.update({"minLength", "maxLength"})
            return self.string()
        if self.max_string is not None:
            high = self.max_string if high is None else min(high, self.max_string)
        if low == 0 and high is None:
            return self.string()
        # Counted exactly: a bounded string holds no `<` or `|` (one character, one unit).
        high = max(low, high) if high is not None else None
        return self.shared(f"str {low} {high}", lambda: self.quoted(f"str_{low}_{high}", Rep(_NORMAL, low, high)))

    def number(self) -> Node:
        return self.shared("num", lambda: self.turn.lexeme("num", NUMBER))

    def ref(self, ref: str) -> Node:
        if ref in self._refs:
            return Ref(self._refs[ref])
        target = ref.removeprefix("#/$defs/")
        if not ref.startswith("#/$defs/") or target not in self.defs:
            self.relaxed.add(f"$ref {ref}")
            return self.free()
        name = self._refs[ref] = self.fresh(f"{self.prefix}_def_{target}")
        self.rules[name] = self.value(self.defs[target], f"{name}_v")  # a rule: refs may recurse
        return Ref(name)

    def array(self, schema: Mapping[str, Any], hint: str) -> Node:
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            if low == high == len(prefix) or schema.get("items") is False:
                items = [self.value(s, f"{hint}_{i}") for i, s in enumerate(prefix)]
                inner: list[Node] = []
                for index, item in enumerate(items):
                    inner += [Lit(","), item] if index else [item]
                return seq(Lit("["), *inner, Lit("]"))
            self.relaxed.add("prefixItems")
            item = self.free()
        else:
            item = self.value(schema.get("items", True), f"{hint}_item")
        if not isinstance(low, int) or not (high is None or isinstance(high, int)):
            low, high = 0, None
        if self.max_items is not None:
            high = max(low, self.max_items if high is None else min(high, self.max_items))
        return _list(item, low, high)

    def free(self, depth: int = 0) -> Ref:
        """Any JSON value (Pydantic's `Any`); with `max_items`, each array and
        object holds at most that many items, nested at most `MAX_DEPTH` deep."""
        capped = self.max_items is not None
        name = f"any_{depth}" if capped else "any"
        if name in self.rules:
            return Ref(name)
        self.rules[name] = Lit("")
        scalars: list[Node] = [
            self.string(),
            self.number(),
            Lit("true"),
            Lit("false"),
            Lit("null"),
        ]
        if capped and depth >= MAX_DEPTH:
            self.rules[name] = alt(*scalars)
            return Ref(name)
        inner = self.free(depth + 1) if capped else Ref(name)
        high = self.max_items
        key = self.key()
        self.rules[name] = alt(
            *scalars,
            _list(inner, 0, high),
            seq(Lit("{"), _separated(seq(key, Lit(":"), inner), 0, high), Lit("}")),
        )
        return Ref(name)

    def top(self, ref: Node | None, hint: str) -> Node:
        """The tool's arguments (the inside of its braces), each top-level value
        also possibly `ref` (a plan's reference); the values' rules are shared."""
        schema = self.turn.tools_by_name[self.name].parameters
        if self._top is None:
            properties = schema.get("properties")
            self._top = (
                {key: self.value(properties[key], f"{self.prefix}_{key}") for key in sorted(properties)}
                if isinstance(properties, Mapping)
                else {}
            )
        if ref is None and self._plain is not None:
            return self._plain
        values = {key: alt(value, ref) if ref is not None else value for key, value in self._top.items()}
        node = self.members(schema, hint, values)
        if ref is None:
            self._plain = node
        return node

    def members(self, schema: Mapping[str, Any], hint: str, values: Mapping[str, Node] | None = None) -> Node:
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
        declared = properties if isinstance(properties, Mapping) else {}
        undeclared = [k for k in schema.get("required", ()) if isinstance(k, str) and k not in declared]
        if undeclared and extra is not False:
            # A key required but not among the properties (`{"type": "object", "required": ["a"]}`) must
            # still be written: it is declared here with the schema any other key's value would have.
            fill = extra if isinstance(extra, Mapping) else {}
            properties = {**declared, **dict.fromkeys(undeclared, fill)}
        if not isinstance(properties, Mapping) or not properties:
            if extra is False:
                return Lit("")
            value = self.free() if extra is True else self.value(extra, f"{hint}_extra")
            # A free-form dict: any keys, any order (capped like a free-form value).
            return _separated(seq(self.key(), Lit(":"), value), 0, self.max_items)
        if extra is not False and extra != {} and "additionalProperties" in schema:
            self.relaxed.add("additionalProperties")  # only the declared keys are written
        required = set(schema.get("required", ()))
        keys = sorted(properties)
        pairs = [
            seq(
                self.turn.literal(_format_key(key)),
                Lit(":"),
                values[key] if values is not None else self.value(properties[key], f"{hint}_{key}"),
            )
            for key in keys
        ]
        rest_next: Node = Lit("")
        first_next: Node = Lit("")
        for index in range(len(keys) - 1, -1, -1):
            pair, key = pairs[index], keys[index]
            rest, first = self.fresh(f"{hint}_rest{index}"), self.fresh(f"{hint}_first{index}")
            if key in required:
                self.rules[rest] = seq(Lit(","), pair, rest_next)
                self.rules[first] = seq(pair, rest_next)
            else:
                self.rules[rest] = seq(opt(seq(Lit(","), pair)), rest_next)
                self.rules[first] = alt(seq(pair, rest_next), first_next)
            rest_next, first_next = Ref(rest), Ref(first)
        return first_next


_FIELD = seq(Chars("A-Za-z_"), Rep(Chars("A-Za-z0-9_")))
_INDEX = alt(Lit("0"), seq(Chars("1-9"), Rep(Chars("0-9"), 0, 5)))


def _reference(position: int) -> Node:
    """A reference the plan's call `position` may make: `$1` … `$position-1`, then up to `MAX_PATH` steps."""
    numbers = alt(*(Lit(str(n)) for n in range(1, position)))
    return seq(Lit("$"), numbers, Rep(seq(Lit("."), alt(_FIELD, _INDEX)), 0, MAX_PATH))


def _separated(item: Node, low: int, high: int | None) -> Node:
    """`item`s separated by commas: `low` to `high` of them."""
    if high is not None and high < max(low, 1):
        return Lit("")
    more = Rep(seq(Lit(","), item), max(low - 1, 0), None if high is None else high - 1)
    body = seq(item, more)
    return body if low >= 1 else opt(body)


def _list(item: Node, low: int, high: int | None) -> Node:
    return seq(Lit("["), _separated(item, low, high), Lit("]"))
