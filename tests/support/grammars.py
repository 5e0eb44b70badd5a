"""Checking text against a constraint under both grammar engines, with no model.

    accepts(constraint, '<|tool_call>call:f{}<tool_call|>')  # True/False, the same under both

llguidance reads the Lark serialisation over a byte tokenizer; xgrammar compiles
the EBNF over an empty vocabulary and matches the string; llama.cpp reads the
GBNF and is fed the string as the embedded model's tokens (its grammar sampler
needs a vocabulary). `accepts` asserts that the three engines agree, so every
grammar test is also a test of the three serialisations. `accepts_tokens` does the same for token ids, with a real
tokenizer (Gemma 4's marker tokens).
"""

from __future__ import annotations

import atexit
import ctypes
import math
from functools import cache
from typing import Any

import llguidance
import llguidance.hf
import xgrammar as xgr

from agentkit.dialect import Constraint
from agentkit.grammar import Grammar

ENGINES = ("guidance", "xgrammar", "gbnf")


@cache
def _bytes() -> llguidance.LLTokenizer:
    return llguidance.LLTokenizer("byte")


@cache
def _text_compiler() -> xgr.GrammarCompiler:
    return xgr.GrammarCompiler(xgr.TokenizerInfo([]))


def accepted_by(engine: str, constraint: Constraint, text: str) -> bool:
    """Whether `engine` accepts `text` as a whole turn under `constraint`."""
    if engine == "gbnf":
        return gbnf_accepts(constraint.value.gbnf(), text)
    grammar = constraint.structured_outputs(engine)["grammar"]
    if engine == "guidance":
        matcher = llguidance.LLMatcher(_bytes(), grammar, log_level=0)
        assert not matcher.is_error(), matcher.get_error()
        return bool(matcher.consume_tokens(_bytes().tokenize_str(text)) and matcher.is_accepting())
    compiled = _text_compiler().compile_grammar(grammar)
    xmatcher = xgr.GrammarMatcher(compiled, terminate_without_stop_token=True)
    return bool(xmatcher.accept_string(text) and xmatcher.is_terminated())


@cache
def _vocabulary() -> Any:
    import llama_cpp

    from agentkit.runtimes.llama import default_gguf

    vocabulary = llama_cpp.Llama(model_path=str(default_gguf()), vocab_only=True, verbose=False)
    atexit.register(vocabulary.close)  # before shutdown, when its __del__ would find llama.cpp's bindings gone
    return vocabulary


def gbnf_accepts(gbnf: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the embedded model write `text`, then end."""
    import llama_cpp

    llm = _vocabulary()
    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, gbnf.encode(), b"root")
    assert sampler, f"llama.cpp refused the grammar:\n{gbnf}"
    try:
        for token in [*llm.tokenize(text.encode(), add_bos=False, special=False), llm.token_eos()]:
            data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
            candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
            if data[0].logit == -math.inf:
                return False
            if token != llm.token_eos():  # accepting a refused token would abort the process
                llama_cpp.llama_sampler_accept(sampler, token)
        return True
    finally:
        llama_cpp.llama_sampler_free(sampler)


def accepts(constraint: Constraint | None, text: str) -> bool:
    """Whether the engines accept `text` (they must agree)."""
    assert constraint is not None
    # GBNF is written from grammar values only; and llama.cpp's grammar sampler reads a
    # token's text as a C string, so no grammar there lets a model write U+0000.
    gbnf = isinstance(constraint.value, Grammar) and "\x00" not in text
    engines = ENGINES if gbnf else ENGINES[:2]
    verdicts = {engine: accepted_by(engine, constraint, text) for engine in engines}
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
        verdicts = {
            engine: self.accepted_by(engine, constraint, ids) for engine in ENGINES[:2]
        }  # ids of Gemma 4 tokens
        assert len(set(verdicts.values())) == 1, f"the engines disagree on {ids!r}: {verdicts}"
        return verdicts["guidance"]
