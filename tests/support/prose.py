"""A Gemma 4 dialect whose free text is held to plain prose, for tests and benchmarks of text answers.

The embedded model is a tiny base model: asked a question in Gemma 4's format,
it writes a marker or two and stops. Held by a regex to a sentence of words,
it writes one (greedy, and the words are its own), so a text answer runs to
as many tokens as a test needs.
"""

from __future__ import annotations

from typing import Any

from agentkit.dialect import Constraint
from agentkit.dialects.gemma4 import Gemma4Dialect
from agentkit.runtime import ModelRequest
from agentkit.runtimes.vllm import PRESETS

__all__ = ["Prose"]


class Prose(Gemma4Dialect):
    """The `vllm:default` preset's `gemma4` dialect, its answers one sentence of `words` words (min, max)."""

    def __init__(self, words: tuple[int, int] = (12, 40), **options: Any) -> None:
        super().__init__(**{**PRESETS["default"].options("gemma4"), **options})
        self.words = words

    def constraint(self, request: ModelRequest) -> Constraint:
        low, high = self.words
        # Words of at most 12 letters: unbounded, a word is where the model pads once the count is reached.
        return Constraint(kind="regex", value=rf"[A-Z][a-z]{{0,11}}(,? [a-z]{{1,12}}){{{low - 1},{high - 1}}}\.")
