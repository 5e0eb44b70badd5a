"""Unit tests for `agentkit.grammar`: the grammar value and its serialisations.

The dialect's grammars are checked end to end in tests/unit/dialects; here, the
serialisers on small grammars: what each writes, that both engines read it as
the same language, and the regular expressions the parsers share with them.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentkit.dialect import Constraint
from agentkit.grammar import (
    Chars,
    Grammar,
    Lit,
    Node,
    Pattern,
    Ref,
    Rep,
    Schema,
    Tok,
    alt,
    gbnf_from_ebnf,
    opt,
    regex,
    seq,
)
from tests.support.grammars import accepted_by, accepts

_DIGITS = Rep(Chars("0-9"), 1, 3)


def constraint(rules: dict[str, Node]) -> Constraint:
    return Constraint(kind="grammar", value=Grammar(rules))


def test_both_engines_read_a_small_grammar_as_the_same_language() -> None:
    grammar = constraint(
        {
            "root": seq(Lit("call:f{x:"), Ref("num"), Rep(seq(Lit(","), Ref("num")), 0, 2), Lit("}")),
            "num": seq(opt(Lit("-")), _DIGITS),
        }
    )
    assert accepts(grammar, "call:f{x:1}")
    assert accepts(grammar, "call:f{x:-12,3,456}")
    for refused in ("call:f{x:}", "call:f{x:1234}", "call:f{x:1,2,3,4}", "call:f{x:1"):
        assert not accepts(grammar, refused), refused


def test_lexemes_are_terminals_and_the_other_rules_rules() -> None:
    grammar = Grammar(
        {"root": Ref("value"), "value": alt(Ref("num"), seq(Lit("["), opt(Ref("value")), Lit("]"))), "num": _DIGITS},
        lexemes=frozenset({"num"}),
    )
    lark = grammar.lark()
    assert "\nT_NUM: " in lark  # one lexeme
    assert "\nr_value: " in lark  # recursive: a rule for the Earley parser
    assert accepts(Constraint(kind="grammar", value=grammar), "[[[7]]]")
    assert not accepts(Constraint(kind="grammar", value=grammar), "[[7]")
    with pytest.raises(ValueError, match="lexemes must be regular"):
        Grammar(grammar.rules, lexemes=frozenset({"value"})).lark()


_TEXT = Rep(alt(Chars("^<|"), seq(Lit("<"), Chars("^<|"))))
_TAIL = alt(Lit("1"), seq(Lit("("), Ref("tail"), Lit(")")))


def test_text_and_the_marker_after_it_must_be_one_lexeme() -> None:
    # A lexer that has read `<` as text cannot take it back when `|x>` follows:
    # text and the marker after it are one lexeme, and the automaton decides.
    one = Grammar(
        {"root": seq(Ref("lead"), Ref("tail")), "lead": seq(_TEXT, Lit("<|x>")), "tail": _TAIL},
        lexemes=frozenset({"lead"}),
    )
    assert accepts(Constraint(kind="grammar", value=one), "a <b <|x>1")
    assert accepts(Constraint(kind="grammar", value=one), "<|x>((1))")
    assert not accepts(Constraint(kind="grammar", value=one), "a <|y>1")
    # As two lexemes, llguidance's lexer keeps the `<` as text, and refuses what xgrammar accepts.
    two = Constraint(
        kind="grammar",
        value=Grammar(
            {"root": seq(Ref("text"), Lit("<|x>"), Ref("tail")), "text": _TEXT, "tail": _TAIL},
            lexemes=frozenset({"text"}),
        ),
    )
    assert accepted_by("xgrammar", two, "a <b <|x>1")
    assert not accepted_by("guidance", two, "a <b <|x>1")


def test_tokens_are_written_by_id() -> None:
    grammar = Grammar({"root": seq(Tok(48, "<|tool_call>"), Lit("x"), Tok(49, "<tool_call|>"))})
    assert "<[48]>" in grammar.lark()
    assert "Token(48)" in grammar.ebnf()
    assert '<[48]> "x" <[49]>' in grammar.gbnf()


def test_borrowed_leaves() -> None:
    grammar = constraint(
        {
            "root": seq(Lit("n="), Ref("n"), Lit(";d="), Pattern("[0-9]{4}-[0-9]{2}")),
            "n": Schema('{"type":"integer","minimum":3,"maximum":12}'),
        }
    )
    assert accepts(grammar, "n=12;d=2024-05")
    assert not accepts(grammar, "n=13;d=2024-05")
    assert not accepts(grammar, "n=5;d=2024-5")


def test_an_empty_repetition_and_odd_literals() -> None:
    grammar = constraint({"root": seq(Lit('a"\\\n\x7fé😀'), Rep(Lit("x"), 0, 0), Lit("b"))})
    assert accepts(grammar, 'a"\\\n\x7fé😀b')
    assert not accepts(grammar, 'a"\\\n\x7fé😀xb')


def test_serialisations_are_cached_on_the_value() -> None:
    grammar = Grammar({"root": Lit("x")})
    assert grammar.lark() is grammar.lark()
    assert grammar.ebnf() is grammar.ebnf()
    assert grammar.gbnf() is grammar.gbnf()


def test_gbnf_is_the_ebnf_rewritten_into_llama_cpps_subset() -> None:
    # Names take dashes, xgrammar's lookaheads go (literals and classes untouched), counts are GBNF's.
    ebnf = 'root ::= r_a_b\nr_a_b ::= ("a_b (=x)" [_(=] b_c{0, -1} b_c{2, 5}) (= [ \\n] "x")\nb_c ::= [^\\0-\\x1f]'
    assert gbnf_from_ebnf(ebnf) == (
        'root ::= r-a-b\nr-a-b ::= ("a_b (=x)" [_(=] b-c{0,} b-c{2,5}) \nb-c ::= [^\\x00-\\x1f]\n'
    )
    # A literal holding a line separator stays on its line.
    assert gbnf_from_ebnf('root ::= "a\u2028b"') == 'root ::= "a\u2028b"\n'


def test_lark_names_stay_distinct_after_case_folding() -> None:
    grammar = Grammar(
        {"root": seq(Ref("a_b"), Ref("A_B"), Ref("a-b")), "a_b": Lit("1"), "A_B": Lit("2"), "a-b": Lit("3")}
    )
    assert accepts(Constraint(kind="grammar", value=grammar), "123")


_PIECES = st.sampled_from([Lit("ab"), Lit("."), Chars("0-9"), Chars("^<|"), Lit("|"), Lit("(")])


@given(st.lists(st.tuples(_PIECES, st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=4), st.text(max_size=8))
def test_regex_reads_a_node_as_the_grammar_does(parts: list[tuple[Node, int, int]], text: str) -> None:
    node = seq(*(Rep(piece, low, low + extra) for piece, low, extra in parts))
    pattern = re.compile(regex(node))
    assert bool(pattern.fullmatch(text)) == accepts(constraint({"root": node}), text)


def test_regex_refuses_what_is_not_regular() -> None:
    with pytest.raises(ValueError, match="recursive"):
        regex(Ref("x"), {"x": seq(Lit("("), Ref("x"), Lit(")"))})
    with pytest.raises(ValueError, match="not regular"):
        regex(Tok(1, "<s>"))


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown grammar engine 'outlines'"):
        constraint({"root": Lit("x")}).structured_outputs("outlines")
