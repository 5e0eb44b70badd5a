"""The `gemma4` dialect: Gemma 4's native prompt format and tool-call syntax.

    <|tool_call>call:get_weather{city:<|"|>Paris<|"|>,days:3}<tool_call|>

Values use Gemma 4's argument syntax (`format_value`): strings between `<|"|>`
delimiters, never escaped; object keys bare and sorted. Tools are declared in
the system turn, calls and their results stay in the model's turn, and the
model's text is read back whole (`parse_turn`) or as it streams (`StreamParser`;
`TurnDeltas` gives a streaming runtime's deltas).

Choices the reference template leaves open:

- null is written `null` (the reference template prints Python's `None`, an
  accident next to its `true`/`false`); both are read.
- floats are written as Python's `repr` (`1.0`, `1e+16`): valid JSON that reads
  back as the same float; ints never carry a `.`.
- a result that is not an object is written `{value:…}`, an error `{error:…}`.
- in a plan (`agentkit.planning`) an argument may be a reference to an earlier
  call's result, written bare: `city:$2.city` (held as `{"$ref": "$2.city"}`).
- schema keywords without a slot in a declaration (`default`, `minimum`,
  `pattern`, `additionalProperties`, ...) are dropped: the model was never
  shown them, and the decoding grammar is what enforces them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentkit.dialect import Constraint
from agentkit.dialects.worked_examples import worked_examples
from agentkit.errors import ModelOutputError
from agentkit.grammar import Chars, Lit, Rep, alt, opt, regex, seq
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResult, UserMessage
from agentkit.planning import plan_instructions, reference, reference_of
from agentkit.runtime import ModelDelta, ModelRequest, TextDelta, ThinkingDelta, ToolCallReady
from agentkit.tool import NAME, ToolSpec

__all__ = [
    "Gemma4Dialect",
    "GrammarOptions",
    "StreamEvent",
    "StreamParser",
    "TurnDeltas",
    "format_value",
    "parse_calls",
    "parse_turn",
    "render_call",
    "render_declaration",
    "render_result",
]

QUOTE = '<|"|>'
BOS = "<bos>"
TURN_OPEN, TURN_END = "<|turn>", "<turn|>"
DECLARATION_OPEN, DECLARATION_CLOSE = "<|tool>", "<tool|>"
CALL_OPEN, CALL_CLOSE = "<|tool_call>", "<tool_call|>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<|tool_response>", "<tool_response|>"
CHANNEL_OPEN, CHANNEL_CLOSE = "<|channel>", "<channel|>"
THOUGHT = "thought\n"
THINK = "<|think|>"

MARKER_TOKENS: dict[str, int] = {
    DECLARATION_OPEN: 46,
    DECLARATION_CLOSE: 47,
    CALL_OPEN: 48,
    CALL_CLOSE: 49,
    RESPONSE_OPEN: 50,
    RESPONSE_CLOSE: 51,
    QUOTE: 52,
    THINK: 98,
    CHANNEL_OPEN: 100,
    CHANNEL_CLOSE: 101,
    TURN_OPEN: 105,
    TURN_END: 106,
}
"""Each marker's one token in Gemma 4's 262,144-token vocabulary (Gemma 3's holds
`<unusedN>` or its own turn markers at these ids). `Gemma4Dialect(marker_tokens=True)`
has the grammar name the markers by these ids."""

# --- the lexicon: one definition each, for the parser and the decoding grammar -----------

BARE_KEY = seq(Chars("A-Za-z_"), Rep(Chars("A-Za-z0-9_.\\-")))
"""A key written without delimiters (any other key is written as a string)."""
_POSITIVE = seq(Chars("1-9"), Rep(Chars("0-9"), 0, 24))
_FRACTION = seq(Lit("."), Rep(Chars("0-9"), 1, 24))
_EXPONENT = seq(Chars("eE"), opt(Chars("+-")), Rep(Chars("0-9"), 1, 2))
# A three-digit exponent after one digit, as `repr` writes one, below 1e308:
# every number a model writes is a finite float.
_EXPONENT_3 = seq(
    Chars("eE"),
    alt(
        seq(Lit("-"), Rep(Chars("0-9"), 3, 3)),
        seq(opt(Lit("+")), alt(seq(Chars("12"), Rep(Chars("0-9"), 2, 2)), seq(Lit("30"), Chars("0-7")))),
    ),
)
INTEGER = alt(Lit("0"), seq(opt(Lit("-")), _POSITIVE))
"""An integer as a model may write one: as `format_value` writes it (`0`, never
`-0`), at most 25 digits (it cannot write digits forever)."""
NUMBER = alt(
    INTEGER,
    seq(opt(Lit("-")), alt(Lit("0"), _POSITIVE), alt(seq(_FRACTION, opt(_EXPONENT)), _EXPONENT)),
    seq(opt(Lit("-")), Chars("0-9"), opt(_FRACTION), _EXPONENT_3),
)
"""A number as a model may write one (the grammar's): JSON's syntax, digits
capped, and below 1e308. The parser reads any JSON number (the renderer writes
floats up to 1.79e308) and refuses one that is not a finite float."""

_BARE_KEY = re.compile(regex(BARE_KEY))
_NAME = re.compile(regex(NAME))
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None, "None": None}
_SPACE = " \t\r\n"


# --- writing values -------------------------------------------------------------------


def format_value(value: Any) -> str:
    """A JSON value in Gemma 4's argument syntax.

    Raises:
        ValueError: a string holds `<|"|>`, or a float is not finite (TypeError: not JSON).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no form in Gemma 4's syntax (nor in JSON)")
        return repr(value)
    if isinstance(value, str):
        if QUOTE in value:
            raise ValueError(f"a string cannot contain the {QUOTE} delimiter: {value[:80]!r}")
        return QUOTE + value + QUOTE
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        if (ref := reference(value)) is not None:
            return ref.text  # a plan's reference to an earlier call's result
        if not all(isinstance(key, str) for key in value):
            raise TypeError(f"object keys must be strings, got {list(value)!r}")
        return "{" + ",".join(f"{_format_key(k)}:{format_value(value[k])}" for k in sorted(value)) + "}"
    raise TypeError(f"a {type(value).__name__} is not a JSON value")


def _format_key(key: str) -> str:
    # Keys are bare like the reference template writes them; a key that bare
    # would be ambiguous (spaces, colons, braces) is delimited like a string.
    return key if _BARE_KEY.fullmatch(key) else format_value(key)


def render_call(call: ToolCall) -> str:
    """`<|tool_call>call:NAME{k:v,…}<tool_call|>`, keys sorted."""
    return f"{CALL_OPEN}call:{call.name}{format_value(call.arguments)}{CALL_CLOSE}"


def render_result(result: ToolResult) -> str:
    """`<|tool_response>response:NAME{…}<tool_response|>`: an object, `{value:…}` or `{error:…}`."""
    content = result.content
    body = {"error": content} if result.is_error else content if isinstance(content, Mapping) else {"value": content}
    return f"{RESPONSE_OPEN}response:{result.name}{format_value(body)}{RESPONSE_CLOSE}"


# --- declarations -----------------------------------------------------------------------


def render_declaration(spec: ToolSpec) -> str:
    """`<|tool>declaration:NAME{description:…,parameters:{…}}<tool|>`, as Google's template writes it.

    The JSON Schema in the declaration's vocabulary: `$ref`s inlined (a recursive
    one as a bare `OBJECT`), `Optional` as `nullable:true`, `const` as an `enum`,
    an `enum` only on strings, a nested object's `properties` always written
    (`{}` when it has none), an array's `items` passed through whole. The
    description is written even when empty. A tool whose result is an object
    (a Pydantic model, a TypedDict) declares it in a `response` block.
    """
    defs = spec.parameters.get("$defs", {})
    declaration: dict[str, Any] = {
        "description": spec.description.strip(),
        "parameters": _declare(spec.parameters, defs, frozenset(), top=True),
    }
    if spec.result is not None and spec.result.get("type") == "object":
        declaration["response"] = _declare(spec.result, spec.result.get("$defs", {}), frozenset(), top=True)
    return f"{DECLARATION_OPEN}declaration:{spec.name}{format_value(declaration)}{DECLARATION_CLOSE}"


def _resolve(
    schema: Mapping[str, Any], defs: Mapping[str, Any], expanding: frozenset[str]
) -> tuple[dict[str, Any], frozenset[str]]:
    """`schema` with its `$ref` to `#/$defs/...` and a one-item `allOf` merged in
    (a recursive reference: a bare object); the referring node's own keywords win."""
    node = dict(schema)
    ref = node.pop("$ref", None)
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in expanding or name not in defs:  # recursion: stop at a bare object
            bare = {"type": "object", "description": node.get("description")}
            return {k: v for k, v in bare.items() if v is not None}, expanding
        return _resolve({**defs[name], **node}, defs, expanding | {name})
    all_of = node.pop("allOf", None)
    if isinstance(all_of, list) and len(all_of) == 1:
        return _resolve({**all_of[0], **node}, defs, expanding)
    return node, expanding


def _declare(
    schema: Mapping[str, Any], defs: Mapping[str, Any], expanding: frozenset[str], *, top: bool = False
) -> dict[str, Any]:
    """One schema node in the declaration's vocabulary; `expanding` guards recursion.

    `top`: the parameters (or response) themselves, whose `properties` are
    written only when there are some; a nested object always has them.
    """
    node, expanding = _resolve(schema, defs, expanding)

    if isinstance(node.get("type"), list):  # ["string", "null"] is an anyOf
        node["anyOf"] = [{"type": kind} for kind in node.pop("type")]
    branches = node.pop("anyOf", None) or node.pop("oneOf", None) or []
    others = [branch for branch in branches if branch.get("type") != "null"]
    nullable = {"nullable": True} if len(others) < len(branches) or node.get("nullable") is True else {}
    if len(others) == 1:  # Optional[X]: X, nullable
        return _declare({**others[0], **node}, defs, expanding, top=top) | nullable
    out: dict[str, Any] = {"anyOf": [_declare(b, defs, expanding) for b in others]} if others else {}
    if isinstance(node.get("description"), str) and node["description"]:
        out["description"] = node["description"].strip()
    kind = node.get("type")
    if isinstance(kind, str):
        out["type"] = kind.upper()
    if (isinstance(node.get("enum"), list) or "const" in node) and kind == "string":
        out["enum"] = list(node.get("enum", [node.get("const")]))
    if isinstance(node.get("items"), Mapping):
        out["items"] = _pass_through(_resolve(node["items"], defs, expanding)[0], defs, expanding)
    properties = node.get("properties")
    if isinstance(properties, Mapping) and properties:
        out["properties"] = {k: _declare(v, defs, expanding) for k, v in properties.items()}
    elif kind == "object" and not top:
        out["properties"] = {}
    if isinstance(node.get("required"), list) and node["required"]:
        out["required"] = list(node["required"])
    return out | nullable


def _pass_through(items: Mapping[str, Any], defs: Mapping[str, Any], expanding: frozenset[str]) -> dict[str, Any]:
    """An array's `items` as Google's template writes them: every keyword kept
    (`maxLength`, `format`, ...), types upper-cased, references inlined."""
    out: dict[str, Any] = {}
    for key, value in items.items():
        if key == "$defs":
            continue
        if key == "type":
            out[key] = value.upper() if isinstance(value, str) else [str(v).upper() for v in value]
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {k: _declare(v, defs, expanding) for k, v in value.items()}
        elif key == "items" and isinstance(value, Mapping):
            out[key] = _pass_through(_resolve(value, defs, expanding)[0], defs, expanding)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            out[key] = [_pass_through(_resolve(v, defs, expanding)[0], defs, expanding) for v in value]
        elif value is not None:
            out[key] = value
    return out


# --- reading values ---------------------------------------------------------------------

MAX_DEPTH = 100
"""Values nest at most this deep in a call the parsers read (deeper: `ModelOutputError`,
never Python's `RecursionError`); no tool's arguments need more."""
_TOLERANT_LITERALS: dict[str, Any] = {**_LITERALS, "True": True, "False": False}
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_STRING_END = re.compile(r'<\|"\|>|<\|"\|?(?=[ \t\r\n]*[,}\])])')
"""Where a string ends when the plain reading failed: its `<|"|>`, or that
delimiter cut short (`<|"|`, `<|"`) right before what may follow a value."""


class _Incomplete(Exception):
    """The text ended where more was needed (a stream may still bring it)."""


class _Malformed(Exception):
    """The text cannot be read, however it continues."""


class _Reader:
    """A cursor over call text: values in Gemma 4's argument syntax.

    Tolerant (`strict=False`), it also reads what unconstrained models write
    instead, where the meaning is not in doubt: `:NAME` or a bare `NAME` for
    `call:NAME`, arguments in parentheses (`key:value` or `key=value`), no
    arguments at all before the call's end, JSON's double-quoted strings, bare
    words as strings, Python's `True`/`False`. `repair` (tolerant only, tried
    once the plain reading failed) also ends a string at its delimiter cut
    short (`<|"|}`); a string then cannot run past the call's end. `final`: the
    text has ended (no more will come).
    """

    def __init__(self, text: str, *, strict: bool, repair: bool = False, final: bool = False) -> None:
        self.text, self.pos, self.strict = text, 0, strict
        self.repair, self.final = repair and not strict, final
        self.depth = 0
        self.stops = ",}]"
        """The characters that end a bare word."""

    def expect(self, token: str) -> None:
        rest = self.text[self.pos :]
        if rest.startswith(token):
            self.pos += len(token)
            return
        raise _Incomplete if token.startswith(rest) else _Malformed(f"expected {token!r} at {rest[:30]!r}")

    def space(self) -> None:
        self.pos = len(self.text) - len(self.text[self.pos :].lstrip(_SPACE))

    def peek(self) -> str:
        self.space()
        if self.pos >= len(self.text):
            raise _Incomplete
        return self.text[self.pos]

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        found = pattern.match(self.text, self.pos)
        if found is None or found.end() == len(self.text):  # at the end, it may go on
            if self.pos == len(self.text) or found is not None:
                raise _Incomplete
            raise _Malformed(f"expected {what} at {self.text[self.pos : self.pos + 30]!r}")
        self.pos = found.end()
        return found.group()

    # --- a call: its name, then its arguments ---------------------------------------------

    def call_name(self) -> str:
        """`call:NAME`; tolerant, also `:NAME` and a bare `NAME`."""
        if self.strict:
            self.expect("call:")
            return self.match(_NAME, "a tool name")
        self.space()
        rest = self.text[self.pos :]
        if rest.startswith("call:"):
            self.pos += len("call:")
        elif "call:".startswith(rest):
            raise _Incomplete  # `call:` may be on its way, or a name beginning with `ca`
        elif rest.startswith(":"):
            self.pos += 1
        return self.match(_NAME, "a tool name")

    def arguments(self, name: str) -> dict[str, Any]:
        """The call's `{…}`; tolerant, also `(…)`, or none at all right before the call's end."""
        opener = self.peek()
        if opener == "{":
            return self.object()
        if not self.strict:
            if opener == "(":
                self.stops = ",)}]"
                return self.object("(", ")")
            if self._at_call_end():
                return {}
        raise _Malformed(f"expected '{{' after the tool name {name!r}")

    def _at_call_end(self) -> bool:
        rest = self.text[self.pos :]
        if rest.startswith((CALL_CLOSE, TURN_END)):
            return True
        if _begins(rest, (CALL_CLOSE, TURN_END)):
            raise _Incomplete
        return False

    # --- values ---------------------------------------------------------------------------

    def value(self) -> Any:
        char = self.peek()
        if char == "{":
            return self.object()
        if char == "[":
            items: list[Any] = []
            self.sequence("[", "]", lambda: items.append(self.value()))
            return items
        if char == "<":
            return self.string()
        if char == '"' and not self.strict:
            return self.json_string()
        return self.scalar()

    def object(self, opener: str = "{", closer: str = "}") -> dict[str, Any]:
        out: dict[str, Any] = {}
        separators = (":", "=") if closer == ")" else (":",)

        def entry() -> None:
            key = self.key()
            self.space()
            self.separator(separators, key)
            # A key written twice keeps its last value, as JSON readers do: no grammar
            # can keep a free-form object's keys distinct, so the parser must read it.
            out[key] = self.value()

        self.sequence(opener, closer, entry)
        return out

    def key(self) -> str:
        char = self.peek()
        if char == "<":
            return self.string()
        if char == '"' and not self.strict:
            return self.json_string()
        return self.match(_BARE_KEY, "a key")

    def separator(self, allowed: tuple[str, ...], key: str) -> None:
        if self.pos < len(self.text) and self.text[self.pos] in allowed:
            self.pos += 1
            return
        if self.pos == len(self.text):
            raise _Incomplete
        raise _Malformed(f"expected {' or '.join(map(repr, allowed))} after the key {key!r}")

    def sequence(self, opener: str, closer: str, read: Callable[[], None]) -> None:
        self.expect(opener)
        self.depth += 1  # the reader is recursive: deep nesting must stop well before Python's stack does
        if self.depth > MAX_DEPTH:
            raise _Malformed(f"values nested more than {MAX_DEPTH} deep")
        if self.peek() != closer:
            read()
            while self.peek() != closer:
                self.expect(",")
                read()
        self.pos += 1
        self.depth -= 1

    def string(self) -> str:
        self.expect(QUOTE)
        if self.repair:
            return self._repaired_string()
        end = self.text.find(QUOTE, self.pos)
        if end < 0:
            raise _Incomplete
        value, self.pos = self.text[self.pos : end], end + len(QUOTE)
        return value

    def _repaired_string(self) -> str:
        """A string up to its delimiter, or that delimiter cut short, before the call's end."""
        ends = [i for marker in (CALL_CLOSE, TURN_END) if (i := self.text.find(marker, self.pos)) >= 0]
        bound = min(ends, default=len(self.text))
        found = _STRING_END.search(self.text, self.pos, bound)
        if found is None:
            if not ends and not self.final:
                raise _Incomplete
            raise _Malformed(f"a string is not closed by {QUOTE} before the call ends")
        value, self.pos = self.text[self.pos : found.start()], found.end()
        return value

    def json_string(self) -> str:
        """Tolerant: a string in JSON's double quotes, with JSON's escapes."""
        found = _JSON_STRING.match(self.text, self.pos)
        if found is None:
            raise _Incomplete  # no closing quote yet
        try:
            value = json.loads(found.group(), strict=False)  # a raw newline inside is kept
        except json.JSONDecodeError as exc:
            raise _Malformed(f"the string {found.group()[:30]!r} has a bad escape: {exc.msg}") from None
        self.pos = found.end()
        return str(value)

    def scalar(self) -> Any:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in self.stops:
            self.pos += 1
        if self.pos == len(self.text):
            raise _Incomplete  # more digits may come
        token = self.text[start : self.pos].strip()
        literals = _LITERALS if self.strict else _TOLERANT_LITERALS
        if token in literals:
            return literals[token]
        if token.startswith("$") and (ref := reference_of(token)) is not None:
            return ref.value()  # a plan's reference (the grammar allows one only there)
        if _NUMBER.fullmatch(token):
            return _number(token)
        if self.strict or not token:
            raise _Malformed(f"unexpected {token!r}: strings are written between {QUOTE} delimiters")
        if token.startswith("'"):
            raise _Malformed(f"unexpected {token[:30]!r}: single-quoted strings are not read, write {QUOTE}…{QUOTE}")
        return token  # tolerant: a bare word is a string, as vLLM reads it


def _number(token: str) -> int | float:
    """A JSON number as an int or a finite float."""
    if token.lstrip("-").isdigit():
        try:
            return int(token)
        except ValueError:  # more digits than Python converts (4300): no tool needs such an int
            raise _Malformed(f"the number {token[:30]}… has {len(token)} digits") from None
    if math.isinf(number := float(token)):
        raise _Malformed(f"number {token} is out of range")
    return number


def _read_call(text: str, *, strict: bool, repair: bool, final: bool) -> tuple[str, dict[str, Any], int]:
    """The call at the start of `text` (after `<|tool_call>`): its name, its arguments and where they end."""
    reader = _Reader(text, strict=strict, repair=repair, final=final)
    name = reader.call_name()
    arguments = reader.arguments(name)
    reader.space()
    return name, arguments, reader.pos


# --- reading a turn ---------------------------------------------------------------------


@dataclass(frozen=True)
class StreamEvent:
    """What a stream brought: more `text` or `thinking` (in `text`), or a complete `call`."""

    kind: Literal["text", "thinking", "call"]
    text: str = ""
    call: ToolCall | None = None


_TEXT_MARKERS = (CHANNEL_OPEN, CALL_OPEN, TURN_END, RESPONSE_OPEN, CHANNEL_CLOSE, CALL_CLOSE)
_ENDS = (TURN_END, RESPONSE_OPEN)
_LONGEST = max(map(len, _TEXT_MARKERS))
_NEXT_STATE = {CHANNEL_OPEN: "thought", CHANNEL_CLOSE: "text", CALL_OPEN: "call", CALL_CLOSE: "text"}


class StreamParser:
    """Reads the model's text as it streams: text, thinking and calls as they complete.

    `feed(chunk)` returns the events a chunk completes, `close()` the last ones.
    The turn ends at `<turn|>` or `<|tool_response>` (the model asking for
    its calls' results); what follows is ignored (strict: whitespace only).

    Args:
        strict: Raise `ModelOutputError` on anything off-format. Tolerant
            (False) also accepts variants seen from real checkpoints: a call
            closed by `<turn|>`, a last call left open at the end of the
            text, an unclosed thought, stray closing markers, bare words.
        in_thought: The text starts inside a thought, its `<|channel>thought\n`
            already in the prompt (thinking on, after tool results).
    """

    def __init__(self, *, strict: bool = True, in_thought: bool = False) -> None:
        self.strict, self._state = strict, "thinking" if in_thought else "text"
        self._buffer = self._raw = ""

    def feed(self, chunk: str) -> list[StreamEvent]:
        """The events `chunk` completes."""
        self._raw, self._buffer = self._raw + chunk, self._buffer + chunk
        return self._drain(final=False)

    def close(self) -> list[StreamEvent]:
        """The last events, once the text has ended."""
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        while True:
            if self._state == "call":
                progressed = self._call(events, final=final)
            elif self._state == "done":
                if self.strict and self._buffer.strip():
                    raise ModelOutputError("text after the end of the turn", self._raw)
                self._buffer, progressed = "", False
            else:
                progressed = self._scan(events, final=final)
            if not progressed:
                return events

    def _scan(self, events: list[StreamEvent], *, final: bool) -> bool:
        """Text or thought up to the next marker, holding back what may begin one."""
        thought = self._state == "thought"
        if thought:
            # The channel's name, `thought`, is not part of the thought.
            heads = (THOUGHT, "thought" + CHANNEL_CLOSE)
            if not final and any(h.startswith(self._buffer) and h != self._buffer for h in heads):
                return False
            self._buffer = self._buffer.removeprefix(THOUGHT)
            if self._buffer.startswith(heads[1]):
                self._buffer = self._buffer.removeprefix("thought")
            self._state = "thinking"
        thinking = self._state == "thinking"
        markers: tuple[str, ...] = _TEXT_MARKERS
        if thinking:
            markers = (CHANNEL_CLOSE,) if self.strict else (CHANNEL_CLOSE, CALL_OPEN, *_ENDS)
        found = min(((i, m) for m in markers if (i := self._buffer.find(m)) >= 0), default=None)
        if found is None:
            index, marker = len(self._buffer), ""
            if not final:  # hold back what may begin a marker
                index -= next(
                    (n for n in range(min(len(self._buffer), _LONGEST), 0, -1) if _begins(self._buffer[-n:], markers)),
                    0,
                )
        else:
            index, marker = found
        if index:
            events.append(StreamEvent("thinking" if thinking else "text", self._buffer[:index]))
        self._buffer = self._buffer[index + len(marker) :]
        if not marker:
            if final and thinking:
                if self.strict:
                    raise ModelOutputError(f"the thought was not closed with {CHANNEL_CLOSE}", self._raw)
                self._state = "done"
            return False
        if self.strict and not thinking and marker in (CHANNEL_CLOSE, CALL_CLOSE):
            raise ModelOutputError(f"{marker} closes nothing", self._raw)
        self._state = _NEXT_STATE.get(marker, "done")
        return True

    def _call(self, events: list[StreamEvent], *, final: bool) -> bool:
        read = self._read_call(final=final)
        if read is None:
            return False
        name, arguments, end = read
        rest = self._buffer[end:]
        closer = next((c for c in (CALL_CLOSE, TURN_END) if rest.startswith(c)), None)
        if closer is None:
            could_close = _begins(rest, (CALL_CLOSE, TURN_END))
            if not final and could_close:
                return False
            if not (final and could_close and not self.strict):
                raise ModelOutputError(f"the call to {name!r} is not closed by {CALL_CLOSE}", self._raw)
            closer, rest = TURN_END, ""  # tolerant: a last call left open
        elif closer == TURN_END and self.strict:
            raise ModelOutputError(f"the call to {name!r} is closed by {TURN_END} instead of {CALL_CLOSE}", self._raw)
        events.append(StreamEvent("call", call=ToolCall(name=name, arguments=arguments)))
        self._buffer = rest.removeprefix(closer)
        self._state = "text" if closer == CALL_CLOSE else "done"
        return True

    def _read_call(self, *, final: bool) -> tuple[str, dict[str, Any], int] | None:
        """The call at the head of the buffer (name, arguments, where they end); None while more may come.

        Tolerant, a call the plain reading cannot read is read again with the
        repairs (`_Reader`'s `repair`) before it is reported.
        """
        try:
            return _read_call(self._buffer, strict=self.strict, repair=False, final=final)
        except _Incomplete:
            if not final:
                return None
            problem = "the text ended inside a tool call"
        except _Malformed as exc:
            problem = f"malformed tool call: {exc}"
        if not self.strict:
            try:
                return _read_call(self._buffer, strict=False, repair=True, final=final)
            except _Incomplete:
                if not final:
                    return None
            except _Malformed as exc:
                if problem.startswith("the text ended"):
                    problem = f"malformed tool call: {exc}"
        raise ModelOutputError(problem, self._raw)


def _begins(text: str, markers: Sequence[str]) -> bool:
    return any(marker.startswith(text) for marker in markers)


def parse_turn(text: str, *, strict: bool = True, in_thought: bool = False) -> AssistantMessage:
    """The model's turn: thinking, free text and calls, trimmed. Raises `ModelOutputError`.

    `in_thought`: the text starts inside a thought (see `StreamParser`). The
    thought is trimmed as the text is: the renderer writes it back with the
    newline before `<channel|>` that the template writes.
    """
    parser = StreamParser(strict=strict, in_thought=in_thought)
    events = [*parser.feed(text), *parser.close()]
    return AssistantMessage(
        text="".join(e.text for e in events if e.kind == "text").strip(),
        tool_calls=tuple(e.call for e in events if e.call is not None),
        thinking="".join(e.text for e in events if e.kind == "thinking").strip() or None,
    )


class _Trimmed:
    """One kind of text as `parse_turn` trims it, in pieces: no leading
    whitespace, and trailing whitespace held back until more text follows."""

    def __init__(self) -> None:
        self.started, self.held = False, ""

    def add(self, text: str) -> str:
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        text = self.held + text
        kept = text.rstrip()
        self.held = text[len(kept) :]
        return kept


class TurnDeltas:
    """A `StreamParser` whose events are the deltas of a streamed turn, trimmed as
    `parse_turn` trims: together they are the turn `parse_turn` reads (a
    `DeltaParser`, what `Gemma4Dialect.stream_parser` returns)."""

    def __init__(self, *, strict: bool = True, in_thought: bool = False) -> None:
        self._parser = StreamParser(strict=strict, in_thought=in_thought)
        self._text, self._thinking = _Trimmed(), _Trimmed()

    def feed(self, chunk: str) -> list[ModelDelta]:
        return self._deltas(self._parser.feed(chunk))

    def close(self) -> list[ModelDelta]:
        return self._deltas(self._parser.close())

    def _deltas(self, events: list[StreamEvent]) -> list[ModelDelta]:
        deltas: list[ModelDelta] = []
        for event in events:
            if event.call is not None:
                deltas.append(ToolCallReady(call=event.call))
            elif event.kind == "thinking":
                if text := self._thinking.add(event.text):
                    deltas.append(ThinkingDelta(text=text))
            elif text := self._text.add(event.text):
                deltas.append(TextDelta(text=text))
        return deltas


def parse_calls(text: str, *, strict: bool = True) -> list[ToolCall]:
    """The tool calls in the model's text, in order."""
    return list(parse_turn(text, strict=strict).tool_calls)


# --- the dialect ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GrammarOptions:
    """What the decoding grammar allows, beyond the format itself: one value that
    `Gemma4Dialect` holds (`dialect.grammar`) and `build_constraint` takes whole.

        Gemma4Dialect(max_string=60, parallel_calls=False).grammar
        # GrammarOptions(thinking=False, max_string=60, ..., parallel_calls=False, ...)
    """

    thinking: bool = False
    """The model is asked to think first (`<|think|>`): an optional thought opens the turn."""
    max_string: int | None = None
    """Cap strings in calls at this many characters (about), for small models
    that may write on inside one (see `arguments_grammar`)."""
    max_items: int | None = None
    """Cap arrays in calls at this many items (an array's own `minItems` wins)."""
    max_text: int | None = None
    """Cap free text at this many characters, for small models that may write on
    until `max_tokens`; a turn is then calls or text."""
    parallel_calls: bool = True
    """Allow several calls in one turn; False ends the turn after its first call
    (for small models that repeat calls)."""
    marker_tokens: bool = False
    """Name each marker by its one token (`MARKER_TOKENS`), so that the model cannot
    spell one out in ordinary tokens: for tokenizers that hold Gemma 4's markers at
    Gemma 4's ids (every Gemma 4, `vllm:tiny-gemma4`), never for the embedded
    Gemma 3, whose ids there are other tokens."""


class Gemma4Dialect:
    """Gemma 4's native format: declarations, `<|tool_call>` calls, in-turn results.

    Args:
        strict: Parse strictly (the default: a constrained model writes the
            exact format); False accepts known off-format variants.
        examples: Worked examples to write before the conversation, for
            small models that were never trained on this format.
        family: Which of Google's two chat templates to write: `big` (12B,
            26B-A4B, 31B) or `small` (E2B, E4B, which never write the empty
            thought in the generation prompt).
        preserve_thinking: Keep the thoughts of every earlier turn with tool
            calls, not only of the turns after the last user message (the
            template's `preserve_thinking`).
        grammar: The grammar's options (`GrammarOptions`), whole.
        **options: `GrammarOptions` fields over `grammar`'s, as keywords:
            `thinking` (ask the model to think first: `<|think|>` in the system
            turn), `max_string`, `max_items`, `max_text`, `parallel_calls`,
            `marker_tokens`.
    """

    name = "gemma4"

    def __init__(
        self,
        *,
        strict: bool = True,
        examples: int = 0,
        family: Literal["big", "small"] = "big",
        preserve_thinking: bool = False,
        grammar: GrammarOptions | None = None,
        **options: Any,
    ) -> None:
        if family not in ("big", "small"):
            raise ValueError(f"family must be 'big' or 'small', not {family!r}")
        self.family, self.preserve_thinking = family, preserve_thinking
        self.strict, self.examples = strict, examples
        self.grammar = dataclasses.replace(grammar or GrammarOptions(), **options)

    @property
    def thinking(self) -> bool:
        """Whether the model is asked to think first (the grammar's `thinking`)."""
        return self.grammar.thinking

    def stop(self) -> tuple[str, ...]:
        # After its calls the model writes `<|tool_response>`, then would invent the results.
        return (TURN_END, RESPONSE_OPEN)

    def constraint(self, request: ModelRequest) -> Constraint | None:
        """The grammar that makes every call valid, and a typed answer fit its schema.

        Free text and thinking stay free (but for markers that would leave the
        turn); each `<|tool_call>` must complete as a call to an allowed tool
        with arguments in Gemma 4 syntax that fit its schema. With an output
        schema, a turn without calls is a JSON value valid under it.
        """
        from agentkit.dialects.gemma4_grammar import build_constraint

        return build_constraint(
            request.tools,
            request.tool_choice,
            self.grammar,
            in_thought=self.opens_in_thought(request),
            output_schema=request.output_schema if request.allows_text else None,
            plan=request.plan,
        )

    def stream_parser(self, request: ModelRequest) -> TurnDeltas:
        """Reads the turn for `request` as it streams, as `parse` reads it whole
        (but for the checks of the whole turn against `tool_choice`)."""
        return TurnDeltas(strict=self.strict, in_thought=self.opens_in_thought(request))

    def opens_in_thought(self, request: ModelRequest) -> bool:
        """Whether the prompt leaves the model inside a thought: with thinking on,
        after tool results it resumes with `<|channel>thought\n` already written."""
        return self.thinking and bool(request.messages) and isinstance(request.messages[-1], ToolResult)

    def render(self, request: ModelRequest) -> str:
        messages = list(request.messages)
        # The first system message frames the system turn; any other is a system turn of its own.
        first = messages[0] if messages and isinstance(messages[0], SystemMessage) else None
        if first is not None:
            messages.pop(0)
        tools = request.allowed_tools
        out = [BOS]
        if self.thinking or tools or first is not None:
            think = f"{THINK}\n" if self.thinking else ""
            declarations = "".join(render_declaration(spec) for spec in tools)
            instructions = first.text.strip() if first is not None else ""
            if request.plan and tools:
                instructions = "\n\n".join(p for p in (instructions, plan_instructions()) if p)
            out.append(f"{TURN_OPEN}system\n{think}{instructions}{declarations}{TURN_END}\n")
        for example in worked_examples(request, self.examples):
            out.append(self._turns(example, complete=True))
        out.append(self._turns(messages, complete=False))
        return "".join(out)

    def _turns(self, messages: Sequence[Message], *, complete: bool) -> str:
        """User and model turns; `complete` closes the last one (a worked example),
        else the text ends where the model writes next."""
        out: list[str] = []
        last_user = max((i for i, m in enumerate(messages) if isinstance(m, UserMessage)), default=-1)
        in_model_turn = False
        for index, message in enumerate(messages):
            if isinstance(message, UserMessage | SystemMessage):
                if in_model_turn:  # a turn left on results, closed by the user speaking
                    out.append(f"{TURN_END}\n")
                    in_model_turn = False
                role = "system" if isinstance(message, SystemMessage) else message.role  # developer too
                out.append(f"{TURN_OPEN}{role}\n{message.text.strip()}{TURN_END}\n")
                continue
            if not in_model_turn:
                # A worked example opens its model turns as the model's own turn
                # will open: a small model copies what it sees right before it.
                out.append(self._generation_prompt() if complete else f"{TURN_OPEN}model\n")
                in_model_turn = True
            if isinstance(message, ToolResult):
                out.append(render_result(message))
                continue
            # Thoughts since the last user message are kept; earlier ones only with preserve_thinking.
            if message.thinking and (index > last_user or (self.preserve_thinking and message.tool_calls)):
                out.append(f"{CHANNEL_OPEN}{THOUGHT}{message.thinking}\n{CHANNEL_CLOSE}")
            out.append(message.text.strip())
            out.extend(render_call(call) for call in message.tool_calls)
            if message.tool_calls:
                if not any(isinstance(m, ToolResult) for m in messages[index + 1 : index + 2]):
                    out.append(RESPONSE_OPEN)  # a call awaiting its result
            else:
                out.append(f"{TURN_END}\n")
                in_model_turn = False
        if complete:
            if in_model_turn:
                out.append(f"{TURN_END}\n")
        elif not in_model_turn:
            out.append(self._generation_prompt())
        elif self.thinking and messages and isinstance(messages[-1], ToolResult):
            out.append(f"{CHANNEL_OPEN}{THOUGHT}")  # the model goes on inside a new thought
        return "".join(out)

    def _generation_prompt(self) -> str:
        """What opens the model's turn: with thinking off, the big family's
        template writes an empty thought; the small family's never does."""
        opening = f"{TURN_OPEN}model\n"
        if self.thinking or self.family == "small":
            return opening
        return f"{opening}{CHANNEL_OPEN}{THOUGHT}{CHANNEL_CLOSE}"

    def parse(self, text: str, request: ModelRequest) -> AssistantMessage:
        """Raises `ModelOutputError` on off-format text, no decision, or text where a call is due."""
        message = parse_turn(text, strict=self.strict, in_thought=self.opens_in_thought(request))
        if not message.tool_calls:
            if not request.allows_text:
                raise ModelOutputError(f"tool_choice {request.tool_choice!r} needs a tool call, got none", text)
            if not message.text:
                raise ModelOutputError("the model wrote neither text nor a tool call", text)
        return message
