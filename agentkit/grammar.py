"""A grammar as a value: one description of what a model may write, and its serialisations.

    g = Grammar({"root": Seq(Lit("call:f{x:"), Ref("num"), Lit("}")), "num": Rep(Chars("0-9"), 1, 3)})
    g.lark()    # llguidance's Lark (vLLM's `guidance` backend)
    g.ebnf()    # xgrammar's EBNF (vLLM's `xgrammar` backend)
    g.gbnf()    # llama.cpp's GBNF (a llama.cpp server's `grammar` field)
    regex(g.rules["num"])   # a regular part as a regular expression (Python's `re` and Rust's `regex`)

A dialect builds the grammar once, from its own definitions; each engine
serialises it the way its grammar engine reads it. The nodes are the few every
grammar engine has: literals, special tokens by id, character classes,
sequences, alternatives, bounded repetitions and references to named rules,
plus two borrowed leaves each engine writes natively (`Schema`: a JSON scalar
under a JSON Schema, for numeric ranges; `Pattern`: a regular expression, for
string formats).

Regular parts serialise to Lark terminals: llguidance lexes a terminal with a
lazily built automaton (cheap to compile, cheap masks), while its rules go to
an Earley parser. Consecutive regular items of a sequence become one terminal,
so free text and the marker that ends it are lexed together: a lexer that has
read `<` in free text cannot take it back when `|tool_call>` follows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = [
    "Alt",
    "Chars",
    "Grammar",
    "Lit",
    "Node",
    "Pattern",
    "Ref",
    "Rep",
    "Schema",
    "Seq",
    "Tok",
    "gbnf_from_ebnf",
    "opt",
    "regex",
    "seq",
]


@dataclass(frozen=True)
class Lit:
    """A literal string."""

    text: str


@dataclass(frozen=True)
class Tok:
    """One special token, by id (`text` is what it decodes to)."""

    id: int
    text: str


@dataclass(frozen=True)
class Chars:
    """One character of a class, written as the inside of `[...]` (`^<|`, `0-9`, `eE`).

    The same text reads the same in EBNF, Lark's regexes and Python's `re`: keep
    to ranges, literal characters, `^` first and the escapes `\\t \\n \\r \\\\ \\- \\]`.
    """

    spec: str


@dataclass(frozen=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Rep:
    """`item` repeated `low` to `high` times (`high` None: no bound)."""

    item: Node
    low: int = 0
    high: int | None = None


@dataclass(frozen=True)
class Ref:
    """The rule named `name` of the grammar."""

    name: str


@dataclass(frozen=True)
class Schema:
    """A JSON value valid under `schema` (a JSON string), as the engine writes its grammar.

    The two engines' grammars agree on what a model writes in practice, not at
    the edges: for a number range, llguidance takes plain decimals only, and
    xgrammar exponents too.
    """

    schema: str


@dataclass(frozen=True)
class Pattern:
    """A string matching the regular expression `pattern` (Rust `regex` syntax, no anchors)."""

    pattern: str


Node: TypeAlias = "Lit | Tok | Chars | Seq | Alt | Rep | Ref | Schema | Pattern"


def seq(*items: Node) -> Node:
    """A sequence, flattened; one item is itself, none the empty string."""
    flat: list[Node] = []
    for item in items:
        if isinstance(item, Seq):
            flat.extend(item.items)
        elif item != Lit(""):
            flat.append(item)
    merged: list[Node] = []
    for item in flat:  # adjacent literals as one
        if merged and isinstance(item, Lit) and isinstance(merged[-1], Lit):
            merged[-1] = Lit(merged[-1].text + item.text)
        else:
            merged.append(item)
    if not merged:
        return Lit("")
    return merged[0] if len(merged) == 1 else Seq(tuple(merged))


def alt(*items: Node) -> Node:
    """Alternatives, without repeats; one is itself."""
    unique = tuple(dict.fromkeys(items))
    return unique[0] if len(unique) == 1 else Alt(unique)


def opt(item: Node) -> Node:
    return Rep(item, 0, 1)


@dataclass(frozen=True, eq=False)
class Grammar:
    """Named rules; `root` is where a match starts."""

    rules: Mapping[str, Node]
    root: str = "root"
    lexemes: frozenset[str] = frozenset()
    """Rules that are one lexeme each (regular ones): Lark's terminals. Which
    they are is the grammar's to say: a run of text with the marker that ends
    it must be one (a lexer that has read `<` as text cannot take it back when
    `|tool_call>` follows), and small lexemes keep masks cheap. Other rules go
    to llguidance's Earley parser, each literal and class in them a lexeme of
    its own. EBNF has no lexemes: xgrammar reads characters."""
    _cache: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def lark(self) -> str:
        """llguidance's Lark syntax (cached: a grammar is a value)."""
        if "lark" not in self._cache:
            self._cache["lark"] = _Lark(self).text()
        return self._cache["lark"]

    def ebnf(self) -> str:
        """xgrammar's EBNF syntax (cached)."""
        if "ebnf" not in self._cache:
            self._cache["ebnf"] = _Ebnf(self).text()
        return self._cache["ebnf"]

    def gbnf(self) -> str:
        """llama.cpp's GBNF (cached): the EBNF, rewritten into GBNF's subset (see `gbnf_from_ebnf`)."""
        if "gbnf" not in self._cache:
            self._cache["gbnf"] = gbnf_from_ebnf(self.ebnf())
        return self._cache["gbnf"]


def _distinct(rules: Iterable[str], style: Callable[[str, str], str]) -> dict[str, str]:
    """Each rule's name in a serialisation: `style(rule, base)`, `base` being the
    rule's name with `_` for characters other than letters, digits and `_`;
    distinct however the names fold together."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for rule in rules:
        base = style(rule, re.sub(r"[^A-Za-z0-9_]", "_", rule))
        name, n = base, 1
        while name.lower() in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name.lower())
        names[rule] = name
    return names


def _refs(node: Node) -> Iterator[str]:
    if isinstance(node, Ref):
        yield node.name
    elif isinstance(node, Seq | Alt):
        for item in node.items:
            yield from _refs(item)
    elif isinstance(node, Rep):
        yield from _refs(node.item)


def _plain(node: Node) -> bool:
    """No token and no borrowed JSON anywhere in `node` itself (refs not followed)."""
    if isinstance(node, Tok | Schema):
        return False
    if isinstance(node, Seq | Alt):
        return all(_plain(item) for item in node.items)
    if isinstance(node, Rep):
        return _plain(node.item)
    return True


def _regular_rules(grammar: Grammar) -> frozenset[str]:
    """The rules that are regular (no recursion, no borrowed leaves); called once
    per Lark serialisation, which the grammar caches."""
    regular: set[str] = set()
    changed = True
    while changed:  # a rule is regular once everything it refers to is (so recursion never is)
        changed = False
        for name, body in grammar.rules.items():
            if name not in regular and _plain(body) and regular.issuperset(_refs(body)):
                regular.add(name)
                changed = True
    return frozenset(regular)


# --- regular expressions ----------------------------------------------------------------

_REGEX_SPECIAL = set(r"\.+*?()|[]{}^$#&-~/")


def _regex_literal(text: str) -> str:
    out = []
    for char in text:
        if char in _REGEX_SPECIAL:
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{{{ord(char):x}}}")
        else:
            out.append(char)
    return "".join(out)


def regex(node: Node, rules: Mapping[str, Node] | None = None) -> str:
    """`node` as a regular expression (Python `re`, Rust `regex`), rules inlined.

    Raises:
        ValueError: `node` holds a token, a borrowed JSON leaf, or a recursive rule.
    """
    return _to_regex(node, rules or {}, ())


def _to_regex(node: Node, rules: Mapping[str, Node], stack: tuple[str, ...]) -> str:
    if isinstance(node, Lit):
        return _regex_literal(node.text)
    if isinstance(node, Chars):
        return f"[{node.spec}]"
    if isinstance(node, Pattern):
        return f"(?:{node.pattern})"
    if isinstance(node, Seq):
        return "".join(_group(_to_regex(item, rules, stack), item) for item in node.items)
    if isinstance(node, Alt):
        return "(?:" + "|".join(_to_regex(item, rules, stack) for item in node.items) + ")"
    if isinstance(node, Rep):
        if node.high == 0:
            return ""
        inner = _to_regex(node.item, rules, stack)
        inner = inner if _atomic(node.item, inner) else f"(?:{inner})"
        return inner + _count(node.low, node.high)
    if isinstance(node, Ref):
        if node.name in stack or node.name not in rules:
            raise ValueError(f"rule {node.name!r} is recursive or missing: not a regular expression")
        return "(?:" + _to_regex(rules[node.name], rules, (*stack, node.name)) + ")"
    raise ValueError(f"{type(node).__name__} is not regular")


def _group(text: str, item: Node) -> str:
    return f"(?:{text})" if isinstance(item, Alt) and not text.startswith("(?:") else text


def _atomic(node: Node, text: str) -> bool:
    return isinstance(node, Chars | Alt | Ref | Pattern) or (isinstance(node, Lit) and len(node.text) == 1)


def _count(low: int, high: int | None) -> str:
    if (low, high) == (0, None):
        return "*"
    if (low, high) == (1, None):
        return "+"
    if (low, high) == (0, 1):
        return "?"
    if high is None:
        return f"{{{low},}}"
    return f"{{{low}}}" if low == high else f"{{{low},{high}}}"


# --- the writers -------------------------------------------------------------------------


class _Writer:
    """Writes nodes in a grammar syntax. Sequences, alternatives and repetitions
    read the same in Lark and EBNF; each syntax writes its own leaves (`leaf`)."""

    def write(self, node: Node) -> str:
        if isinstance(node, Seq):
            return " ".join(self.group(item) for item in node.items)
        if isinstance(node, Alt):
            return "(" + " | ".join(self.write(item) for item in node.items) + ")"
        if isinstance(node, Rep):
            if node.high == 0:
                return '""'
            return self.group(node.item) + _count(node.low, node.high)
        return self.leaf(node)

    def group(self, node: Node) -> str:
        text = self.write(node)
        return f"({text})" if isinstance(node, Seq | Rep) else text

    def leaf(self, node: Node) -> str:
        raise NotImplementedError


# --- llguidance's Lark --------------------------------------------------------------------


class _Lark:
    """Lexeme rules become terminals (UPPERCASE), the others rules (lowercase)."""

    def __init__(self, grammar: Grammar) -> None:
        self.grammar = grammar
        regular = _regular_rules(grammar)
        if irregular := sorted(grammar.lexemes - regular):
            raise ValueError(f"lexemes must be regular (no token, JSON or recursion): {', '.join(irregular)}")
        # Lark's case says what a name is (a terminal or a rule).
        self.names = _distinct(
            grammar.rules, lambda rule, base: "T_" + base.upper() if rule in grammar.lexemes else "r_" + base.lower()
        )
        self.terminal, self.rule = _LarkTerminal(self), _LarkRule(self)

    def text(self) -> str:
        lines = ["%llguidance {}", f"start: {self.names[self.grammar.root]}"]
        for rule, body in self.grammar.rules.items():
            writer = self.terminal if rule in self.grammar.lexemes else self.rule
            lines.append(f"{self.names[rule]}: {writer.write(body)}")
        return "\n".join(lines) + "\n"


class _LarkTerminal(_Writer):
    """A terminal: Lark's operators over literals, regexes and other terminals."""

    def __init__(self, lark: _Lark) -> None:
        self.lark = lark

    def leaf(self, node: Node) -> str:
        if isinstance(node, Lit):
            return _lark_string(node.text)
        if isinstance(node, Chars | Pattern):
            return f"/{regex(node)}/"
        if isinstance(node, Ref):
            if node.name in self.lark.grammar.lexemes:
                return self.lark.names[node.name]
            return f"({self.write(self.lark.grammar.rules[node.name])})"  # a regular rule, inlined
        raise ValueError(f"{type(node).__name__} in a terminal")


class _LarkRule(_Writer):
    """A rule for the Earley parser; a character-level part with no rule in it is one lexeme."""

    def __init__(self, lark: _Lark) -> None:
        self.lark = lark

    def write(self, node: Node) -> str:
        if isinstance(node, Chars | Rep | Seq | Alt) and _plain(node) and not any(_refs(node)) and _has_chars(node):
            return f"/{regex(node)}/"
        return super().write(node)

    def leaf(self, node: Node) -> str:
        if isinstance(node, Lit):
            return _lark_string(node.text)
        if isinstance(node, Tok):
            return f"<[{node.id}]>"
        if isinstance(node, Pattern):
            return f"/{regex(node)}/"
        if isinstance(node, Schema):
            # Compact, as the dialects write JSON (llguidance's default allows whitespace).
            compact = {"x-guidance": {"whitespace_flexible": False}, **json.loads(node.schema)}
            return f"%json {json.dumps(compact, ensure_ascii=False)}"
        if isinstance(node, Ref):
            return self.lark.names[node.name]
        raise ValueError(f"cannot write {node!r} in Lark")


def _has_chars(node: Node) -> bool:
    if isinstance(node, Chars | Pattern):
        return True
    if isinstance(node, Seq | Alt):
        return any(_has_chars(item) for item in node.items)
    return isinstance(node, Rep) and _has_chars(node.item)


def _lark_string(text: str) -> str:
    # JSON's escapes, and DEL escaped too (Lark's lexer refuses it raw).
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


# --- xgrammar's EBNF ----------------------------------------------------------------------


def ebnf_literal(text: str) -> str:
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


class _Ebnf(_Writer):
    def __init__(self, grammar: Grammar) -> None:
        self.grammar = grammar
        self.names = _distinct(grammar.rules, lambda rule, base: "r_" + base)
        self.borrowed: dict[str, str] = {}

    def text(self) -> str:
        lines = [f"root ::= {self.names[self.grammar.root]}"]
        lines += [f"{self.names[rule]} ::= {self.write(body)}" for rule, body in self.grammar.rules.items()]
        lines += [f"{name} ::= {body}" for name, body in self.borrowed.items()]
        return "\n".join(lines) + "\n"

    def leaf(self, node: Node) -> str:
        if isinstance(node, Lit):
            return ebnf_literal(node.text)
        if isinstance(node, Tok):
            return f"Token({node.id})"
        if isinstance(node, Chars):
            return f"[{node.spec}]"
        if isinstance(node, Ref):
            return self.names[node.name]
        if isinstance(node, Schema):
            return self.borrow(node.schema, "schema")
        if isinstance(node, Pattern):
            return self.borrow(node.pattern, "regex")
        raise ValueError(f"cannot write {node!r} in EBNF")

    def borrow(self, source: str, kind: str) -> str:
        """xgrammar's own grammar for a JSON Schema scalar or a regex, its rules renamed into this one."""
        import xgrammar

        made = (
            xgrammar.Grammar.from_json_schema(source, any_whitespace=False, separators=(",", ":"), strict_mode=False)
            if kind == "schema"
            else None
        )
        made = made if made is not None else xgrammar.Grammar.from_regex(source)
        rules = dict(line.split(" ::= ", 1) for line in str(made).splitlines() if " ::= " in line)
        prefix = f"b{len(self.borrowed)}_"
        renamed = {rule: prefix + rule for rule in rules}
        for rule, body in rules.items():
            self.borrowed[renamed[rule]] = _rename(body, renamed)
        return renamed["root"]


# EBNF outside string literals and character classes, where rule names are.
_EBNF_LITERALS = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]')


def _rename(body: str, names: Mapping[str, str]) -> str:
    """`body` with its rule names replaced (literals and classes untouched)."""

    def swap(code: str) -> str:
        return re.sub(r"[A-Za-z_][A-Za-z0-9_]*", lambda m: names.get(m.group(), m.group()), code)

    out, at = [], 0
    for match in _EBNF_LITERALS.finditer(body):
        out += [swap(body[at : match.start()]), match.group()]
        at = match.end()
    return "".join([*out, swap(body[at:])])


def schema_text(schema: Mapping[str, Any]) -> str:
    """A JSON Schema as the text `Schema` holds: compact, in its own order (an
    object's properties are written in the order its schema lists them)."""
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


# --- llama.cpp's GBNF -----------------------------------------------------------------------

# xgrammar's repetition with a space or its `-1` for no bound: `{0, -1}`, `{2, 5}`.
_XGRAMMAR_COUNT = re.compile(r"\{(\d+),\s*(-1|\d+)\}")


def gbnf_from_ebnf(ebnf: str) -> str:
    """xgrammar's EBNF (what `Grammar.ebnf` writes) as llama.cpp's GBNF, its ancestor.

    The rewrite is mechanical, so the constraint keeps one source: rule names
    take `-` for `_` (GBNF's names are letters, digits and dashes), `Token(N)`
    becomes `<[N]>`, xgrammar's lookahead assertions `(= ...)` are dropped
    (they only speed xgrammar up: the language is the same without them),
    `{m, -1}` becomes `{m,}`, and `\\0` becomes `\\x00`.
    """
    lines = []
    for line in ebnf.split("\n"):  # not splitlines(): literals may hold U+2028 and the like
        name, sep, body = line.partition(" ::= ")
        if not sep:
            continue
        lines.append(f"{name.replace('_', '-')} ::= {_gbnf_body(body)}")
    return "\n".join(lines) + "\n"


def _gbnf_body(body: str) -> str:
    out: list[str] = []
    at, depth = 0, 0  # depth > 0: inside a lookahead, dropped
    for match in [*_EBNF_LITERALS.finditer(body), None]:
        code = body[at : match.start() if match else len(body)]
        kept = []
        for index, char in enumerate(code):
            if depth:
                depth += {"(": 1, ")": -1}.get(char, 0)
            elif char == "(" and code[index + 1 : index + 2] == "=":
                depth = 1
            else:
                kept.append(char)
        out.append(_gbnf_code("".join(kept)))
        if match is None:
            break
        if not depth:
            out.append(re.sub(r"\\(.)", lambda m: "\\x00" if m.group(1) == "0" else m.group(), match.group()))
        at = match.end()
    return "".join(out)


def _gbnf_code(code: str) -> str:
    """Rule names, tokens and counts outside literals and classes."""
    code = re.sub(r"\bToken\((\d+)\)", r"<[\1]>", code)
    code = re.sub(r"[A-Za-z_][A-Za-z0-9_]*", lambda m: m.group().replace("_", "-"), code)
    return _XGRAMMAR_COUNT.sub(lambda m: f"{{{m.group(1)},{'' if m.group(2) == '-1' else m.group(2)}}}", code)
