"""Random strings a grammar accepts: a walk down an `agentkit.grammar.Grammar`, driven by hypothesis.

    text = data.draw(walks(grammar))

Each alternative, repetition count and character is drawn, so hypothesis
explores the grammar and shrinks a failure to a short string. Deep in a
recursive rule the walk takes the first alternative and the fewest
repetitions, so it ends. The borrowed leaves are drawn from what both engines
write for them: a number range as an integer or an eighth in range (no
exponent), a pattern with hypothesis's regex strategy.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from typing import Any

from hypothesis import strategies as st

from agentkit.grammar import Alt, Chars, Grammar, Lit, Node, Pattern, Ref, Rep, Schema, Seq, Tok

# Characters a class is drawn from: the grammar's own specials, whitespace, and a few beyond ASCII.
_ALPHABET = "abcxyzABCXYZ_019 .,:;-+eE\"'{}[]()<|>/\\\n\t\r\x7féÜ😀"
MAX_DEPTH = 8
"""Past this many rules deep, the walk takes the way out."""


@cache
def _members(spec: str) -> tuple[str, ...]:
    pattern = re.compile(f"[{spec}]")
    members = tuple(char for char in _ALPHABET if pattern.fullmatch(char))
    assert members, f"no test character fits [{spec}]"
    return members


def walks(grammar: Grammar) -> st.SearchStrategy[str]:
    """Strings `grammar` accepts (special tokens written as their text)."""

    @st.composite
    def walk(draw: st.DrawFn) -> str:
        return "".join(_Walk(grammar, draw).node(grammar.rules[grammar.root], 0))

    return walk()


class _Walk:
    def __init__(self, grammar: Grammar, draw: st.DrawFn) -> None:
        self.grammar, self.draw = grammar, draw

    def node(self, node: Node, depth: int) -> list[str]:
        if isinstance(node, Lit):
            return [node.text]
        if isinstance(node, Tok):
            return [node.text]
        if isinstance(node, Chars):
            return [self.draw(st.sampled_from(_members(node.spec)))]
        if isinstance(node, Seq):
            return [piece for item in node.items for piece in self.node(item, depth)]
        if isinstance(node, Alt):
            index = 0 if depth > MAX_DEPTH else self.draw(st.integers(0, len(node.items) - 1))
            return self.node(node.items[index], depth)
        if isinstance(node, Rep):
            return [piece for _ in range(self.count(node, depth)) for piece in self.node(node.item, depth)]
        if isinstance(node, Ref):
            return self.node(self.grammar.rules[node.name], depth + 1)
        if isinstance(node, Schema):
            return [self.draw(_in_range(json.loads(node.schema)))]
        if isinstance(node, Pattern):
            return [self.draw(st.from_regex(node.pattern, fullmatch=True))]
        raise AssertionError(f"unknown node {node!r}")

    def count(self, node: Rep, depth: int) -> int:
        if depth > MAX_DEPTH:
            return node.low
        high = node.low + 3 if node.high is None else node.high
        # Mostly few, sometimes the most the grammar allows (caps are where grammars go wrong).
        return self.draw(st.integers(node.low, min(high, node.low + 3)) | st.just(high))


def _in_range(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    """A number in a JSON Schema range, as a model writes one both engines accept."""
    low = schema.get("minimum", schema.get("exclusiveMinimum", -(10**6)))
    high = schema.get("maximum", schema.get("exclusiveMaximum", 10**6))
    step = 1 if schema["type"] == "integer" else 8
    first, last = math.ceil(low * step), math.floor(high * step)
    if "exclusiveMinimum" in schema and first == low * step:
        first += 1
    if "exclusiveMaximum" in schema and last == high * step:
        last -= 1
    assert first <= last, f"an empty range: {schema}"
    return st.integers(first, last).map(lambda n: str(n) if step == 1 else _decimal(n / step))


def _decimal(number: float) -> str:
    """An eighth as a plain decimal, never an exponent (llguidance's ranges write none: not `1e+16`)."""
    text = f"{number:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text
