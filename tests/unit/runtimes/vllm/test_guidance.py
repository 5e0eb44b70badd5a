"""llguidance's slices for agentkit's grammars, and the vLLM plugin that installs them.

Masks are computed over the embedded model's tokenizer (Gemma's 262k tokens):
with `SLICES` they are byte for byte the masks of llguidance's default slices.
The plugin is checked on vLLM's own `GuidanceBackend`, with no engine: after
`register`, its `_build_ll_tokenizer` makes the call vLLM makes, plus `SLICES`.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import subprocess
import sys
import warnings
from typing import Any

import llguidance
import llguidance.hf
import pytest

from agentkit.runtimes.vllm import embedded, guidance

# A unit of free text or of a Gemma 4 string: no `<|` and no `|>` inside.
UNIT = r"([^<|]|<[^<|]|\|[^<|>])"

SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"type": "string"},
        "city": {"type": "string", "maxLength": 20},
        "days": {"type": "integer"},
    },
    "required": ["query", "city", "days"],
    "additionalProperties": False,
}

GRAMMARS = {
    "free text": (
        llguidance.grammar_from("lark", f"start: TEXT\nTEXT: /{UNIT}*/"),
        ["", "The capital of France", "a <", "a < b |", "Paris | Lyon\n\n", 'He said "hi" \\o/'],
    ),
    # The closing delimiter is part of the terminal: a lexer that has read `<` as text cannot take it back.
    "Gemma 4 string": (
        llguidance.grammar_from("lark", f'start: "call:search{{query:<|\\"|>" STR "}}"\nSTR: /{UNIT}*<\\|"\\|>/'),
        [
            "",
            "call:search{query:",
            'call:search{query:<|"|>',
            'call:search{query:<|"|>weather in',
            'call:search{query:<|"|>x <',
        ],
    ),
    "JSON schema": (
        llguidance.LLMatcher.grammar_from_json_schema(json.dumps(SCHEMA)),
        ["", '{"query": "', '{"query":"weather in', '{"query":"x", "city":"Par', '{"query":"x","city":"y","days":'],
    ),
    "number": (
        llguidance.grammar_from("regex", r"-?(0|[1-9][0-9]*)(\.[0-9]+)?"),
        ["", "-", "12", "3."],
    ),
}


@pytest.fixture(scope="module")
def hf() -> Any:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(embedded.prepare(quiet=True)))


@pytest.fixture(scope="module")
def default(hf: Any) -> llguidance.LLTokenizer:
    """The tokenizer vLLM builds without the plugin: llguidance's default slices."""
    return llguidance.hf.from_tokenizer(hf)


@pytest.fixture(scope="module")
def sliced(hf: Any) -> llguidance.LLTokenizer:
    return guidance.tokenizer(hf)


def mask(tokenizer: llguidance.LLTokenizer, grammar: str, ids: list[int]) -> bytes:
    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    assert matcher.consume_tokens(ids), matcher.get_error()
    return matcher.compute_bitmask()


@pytest.mark.parametrize("name", GRAMMARS)
def test_slices_leave_every_mask_as_it_was(
    name: str, hf: Any, default: llguidance.LLTokenizer, sliced: llguidance.LLTokenizer
) -> None:
    grammar, prefixes = GRAMMARS[name]
    for prefix in prefixes:
        ids = hf.encode(prefix, add_special_tokens=False)
        assert mask(sliced, grammar, ids) == mask(default, grammar, ids), f"{name} after {prefix!r}"


def test_llguidances_own_slices_are_kept_in_their_order() -> None:
    general = llguidance.LLTokenizer.general_slices()
    assert [s for s in guidance.SLICES if s in general] == general


# --- the plugin ------------------------------------------------------------------------------


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Any:
    """vLLM's `GuidanceBackend`, its `_build_ll_tokenizer` restored after the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vLLM and torch warn about their own internals on import
        module = pytest.importorskip("vllm.v1.structured_output.backend_guidance")
    cls = module.GuidanceBackend
    monkeypatch.setattr(cls, "_build_ll_tokenizer", cls.__dict__["_build_ll_tokenizer"])
    return cls


Calls = list[tuple[tuple[Any, ...], dict[str, Any]]]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """The calls to `llguidance.hf.from_tokenizer` (each returns at once, with no tokenizer)."""
    made: Calls = []

    def from_tokenizer(*args: Any, **kwargs: Any) -> None:
        made.append((args, kwargs))

    monkeypatch.setattr(llguidance.hf, "from_tokenizer", from_tokenizer)
    return made


def test_register_makes_vllm_build_its_tokenizer_with_the_slices(backend: Any, hf: Any, calls: Calls) -> None:
    vocab_size = len(hf) + 64  # a model's embedding padded beyond its tokenizer
    backend._build_ll_tokenizer(hf, vocab_size)
    guidance.register()
    backend._build_ll_tokenizer(hf, vocab_size)
    vllms, ours = calls
    assert vllms[0][1] == vocab_size
    assert ours == (vllms[0], {**vllms[1], "slices": guidance.SLICES})


def test_register_twice_patches_once(
    backend: Any, hf: Any, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]
) -> None:
    guidance.register()
    patched = backend.__dict__["_build_ll_tokenizer"]
    guidance.register()
    assert backend.__dict__["_build_ll_tokenizer"] is patched
    backend._build_ll_tokenizer(hf, len(hf))
    assert calls == [((hf, len(hf)), {"slices": guidance.SLICES})]


def test_other_tokenizers_are_left_to_vllm(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, int]] = []

    def vllms(tokenizer: Any, vocab_size: int) -> str:
        seen.append((tokenizer, vocab_size))
        return "vLLM's own"

    monkeypatch.setattr(backend, "_build_ll_tokenizer", staticmethod(vllms))
    guidance.register()
    mistral = object()  # not a Hugging Face fast tokenizer
    assert backend._build_ll_tokenizer(mistral, 100) == "vLLM's own"
    assert seen == [(mistral, 100)]


def test_a_vllm_without_the_patch_point_gets_one_warning(
    backend: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(backend, "_build_ll_tokenizer")
    with caplog.at_level(logging.WARNING, logger="agentkit.grammar"):
        guidance.register()
    assert [r.levelno for r in caplog.records if r.name == "agentkit.grammar"] == [logging.WARNING]
    assert "_build_ll_tokenizer" not in backend.__dict__


def test_a_vllm_without_the_guidance_backend_gets_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "vllm.v1.structured_output.backend_guidance", None)
    with caplog.at_level(logging.WARNING, logger="agentkit.grammar"):
        guidance.register()
    assert [r.levelno for r in caplog.records if r.name == "agentkit.grammar"] == [logging.WARNING]


def test_the_plugin_is_registered_for_vllm() -> None:
    plugins = {e.name: e for e in importlib.metadata.entry_points(group="vllm.general_plugins")}
    assert "agentkit_guidance_slices" in plugins, (
        "agentkit's vllm.general_plugins entry point is not installed: run `make install` "
        "(a stale agentkit.egg-info in the working directory hides the installed one)"
    )
    assert plugins["agentkit_guidance_slices"].load() is guidance.register


def test_importing_it_imports_neither_vllm_nor_llguidance() -> None:
    code = "import json, sys, agentkit.runtimes.vllm.guidance; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(done.stdout)
    assert not [m for m in loaded if m.split(".")[0] in ("vllm", "llguidance")]
