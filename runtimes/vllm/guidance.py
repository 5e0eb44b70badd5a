"""llguidance's slices for agentkit's grammars, and the vLLM plugin that installs them.

llguidance computes a token mask by walking the tokenizer's trie (262k tokens
for Gemma: about 2.5 ms on a small CPU) wherever the lexer's state changes, at
the start of a text or a string for one; while it holds, the last mask is
reused. Its slicer skips the walk for a whole group of tokens, a *slice*, when
the lexer accepts every string of the slice's regex, and adds the group's mask
at once. llguidance's default slices are JSON-string shaped (no `"`, no `\\`);
agentkit's free text and Gemma 4 strings leave out `<` and `|` instead, so no
default slice fits them and their masks walk the whole trie. `SLICES` adds a
family of slices that fits both.

vLLM loads `register` in each of its processes (the `vllm.general_plugins`
entry point in pyproject.toml); benchmarks and tests build a tokenizer directly:

    import transformers
    from agentkit.runtimes.vllm import guidance

    hf = transformers.AutoTokenizer.from_pretrained(folder)
    ll = guidance.tokenizer(hf)   # llguidance.LLMatcher(ll, grammar) as usual

Slices never change which tokens a mask allows, only how fast it is computed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import llguidance

__all__ = ["SLICES", "register", "tokenizer"]

log = logging.getLogger("agentkit.grammar")

# A character of both a JSON string and agentkit's free text (no quote, backslash,
# `<`, `|` or control character), and a character of a JSON string.
_TEXT_AND_JSON = r'[^"\\<|\x00-\x1F\x7F]'
_JSON = r'[^"\\\x00-\x1F\x7F]'

SLICES: list[str] = [
    r"[\x20\x0A\x0D\x09]+",
    _TEXT_AND_JSON + "{1,10}",
    _TEXT_AND_JSON + "{1,30}",
    _TEXT_AND_JSON + "+",
    _JSON + "{1,10}",
    _JSON + "{1,30}",
    _JSON + "+",
]
"""The slices agentkit gives llguidance: its general ones (whitespace, then the
JSON-string family), with a family of the characters both JSON strings and
agentkit's text allow listed before the JSON one.

llguidance's docs/optimizations.md has the slices split the vocabulary in
list order; its slicer (parser/src/earley/slicer.rs) instead nests each slice
under one that contains it (the list order breaks ties) and, for a slice the
lexer does not accept, walks its whole trie but for the children it could
apply. Listed before the JSON family, the shared one nests level by level
under it (`{1,10}` under `{1,10}`, and so on): JSON strings apply the JSON
family, agentkit's text the shared one, and each walks only the few thousand
tokens outside it. A family for agentkit's text alone
(`[^<|\\x00-\\x1F\\x7F]`) would sit beside the JSON one, and whichever of the
two the lexer does not accept would be walked whole.
"""


def tokenizer(hf_tokenizer: Any, n_vocab: int | None = None) -> llguidance.LLTokenizer:
    """llguidance's tokenizer for a Hugging Face fast tokenizer, with `SLICES`.

    Args:
        hf_tokenizer: A `transformers.PreTrainedTokenizerFast`.
        n_vocab: The vocabulary size, when the model's is larger than the tokenizer's.
    """
    import llguidance.hf

    return llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab, slices=SLICES)


def register() -> None:
    """Make vLLM's `guidance` structured-outputs backend build its tokenizer with `SLICES`.

    A vLLM general plugin: vLLM calls it in each of its processes, before any
    grammar is compiled. Hugging Face fast tokenizers get `SLICES`; any other
    tokenizer (Mistral's) is left to vLLM. Calling it again changes nothing.
    Slices never change which tokens a mask allows, only how fast it is
    computed: a vLLM that moved the patch point gets one warning, and slower
    masks.
    """
    try:
        from vllm.v1.structured_output.backend_guidance import GuidanceBackend
    except ImportError as error:
        log.warning("vLLM's guidance backend is not importable (%s): its token masks keep the default slices", error)
        return
    build = getattr(GuidanceBackend, "_build_ll_tokenizer", None)
    if build is None:
        log.warning("vLLM's GuidanceBackend has no _build_ll_tokenizer: its token masks keep the default slices")
        return
    if getattr(build, "__module__", None) == __name__:
        return  # registered already

    def build_ll_tokenizer(hf_tokenizer: Any, vocab_size: int) -> Any:
        import transformers

        if isinstance(hf_tokenizer, transformers.PreTrainedTokenizerFast):
            # The vocabulary size as vLLM's own _build_ll_tokenizer computes it.
            return tokenizer(hf_tokenizer, max(vocab_size, len(hf_tokenizer)))
        return build(hf_tokenizer, vocab_size)

    setattr(GuidanceBackend, "_build_ll_tokenizer", staticmethod(build_ll_tokenizer))  # noqa: B010 - vLLM types it as its own method
