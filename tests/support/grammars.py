"""Checking text against a constraint under both grammar engines, with no model.

    accepts(constraint, '<|tool_call>call:f{}<tool_call|>')  # True/False, the same under both

llguidance reads the Lark serialisation over a byte tokenizer; xgrammar compiles
the EBNF over an empty vocabulary and matches the string. `accepts` asserts that
the two engines agree, so every grammar test is also a test of the two
serialisations. `accepts_tokens` does the same for token ids, with a real
tokenizer (Gemma 4's marker tokens).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import llguidance
import llguidance.hf
import xgrammar as xgr

from agentkit.dialect import Constraint

ENGINES = ("guidance", "xgrammar")


@cache
def _bytes() -> llguidance.LLTokenizer:
    return llguidance.LLTokenizer("byte")


@cache
def _text_compiler() -> xgr.GrammarCompiler:
    return xgr.GrammarCompiler(xgr.TokenizerInfo([]))


def accepted_by(engine: str, constraint: Constraint, text: str) -> bool:
    """Whether `engine` accepts `text` as a whole turn under `constraint`."""
    grammar = constraint.structured_outputs(engine)["grammar"]
    if engine == "guidance":
        matcher = llguidance.LLMatcher(_bytes(), grammar, log_level=0)
        assert not matcher.is_error(), matcher.get_error()
        return bool(matcher.consume_tokens(_bytes().tokenize_str(text)) and matcher.is_accepting())
    compiled = _text_compiler().compile_grammar(grammar)
    xmatcher = xgr.GrammarMatcher(compiled, terminate_without_stop_token=True)
    return bool(xmatcher.accept_string(text) and xmatcher.is_terminated())


def accepts(constraint: Constraint | None, text: str) -> bool:
    """Whether both engines accept `text` (they must agree)."""
    assert constraint is not None
    verdicts = {engine: accepted_by(engine, constraint, text) for engine in ENGINES}
    assert len(set(verdicts.values())) == 1, f"the engines disagree on {text!r}: {verdicts}"
    return verdicts["guidance"]


class TokenMatchers:
    """Both engines over one real tokenizer (`hf`), for grammars that name special tokens."""

    def __init__(self, hf: Any, vocab_size: int) -> None:
        self.hf = hf
        self.llg = llguidance.hf.from_tokenizer(hf, vocab_size)
        # No cache: each compiled grammar holds masks over the whole vocabulary (gigabytes over a test module).
        self.compiler = xgr.GrammarCompiler(
            xgr.TokenizerInfo.from_huggingface(hf, vocab_size=vocab_size), cache_enabled=False
        )

    def accepted_by(self, engine: str, constraint: Constraint, ids: list[int]) -> bool:
        grammar = constraint.structured_outputs(engine)["grammar"]
        if engine == "guidance":
            matcher = llguidance.LLMatcher(self.llg, grammar, log_level=0)
            assert not matcher.is_error(), matcher.get_error()
            return all(matcher.consume_token(i) for i in ids) and matcher.is_accepting()
        xmatcher = xgr.GrammarMatcher(self.compiler.compile_grammar(grammar), terminate_without_stop_token=True)
        return all(xmatcher.accept_token(i) for i in ids) and xmatcher.is_terminated()

    def accepts(self, constraint: Constraint | None, ids: list[int]) -> bool:
        assert constraint is not None
        verdicts = {engine: self.accepted_by(engine, constraint, ids) for engine in ENGINES}
        assert len(set(verdicts.values())) == 1, f"the engines disagree on {ids!r}: {verdicts}"
        return verdicts["guidance"]
