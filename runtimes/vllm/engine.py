"""`VLLMEngine`: vLLM in this process, decoding under agentkit's constraints.

    engine = VLLMEngine("default")          # the embedded model, runs on a CPU
    engine = VLLMEngine("gemma-4-26b-a4b")  # a preset (HF id + engine args)
    engine = VLLMEngine("tiny-gemma4")      # for tests: Gemma 4's architecture, random weights
    engine = VLLMEngine("/models/my-gemma", dialect="json")  # the JSON action dialect

The engine starts on first use (about a minute on a CPU) and is shared by every
agent that uses this object; concurrent requests are batched by vLLM. It lives
on a private event loop in a background thread, so it serves `Agent.run()`
(which makes a fresh loop per call), `await agent.arun()` and several threads
alike. Call `close()` (or use it as a context manager, `with` or `async
with`) to stop it; `await engine.astart()` starts it without blocking the event loop.

It is a `DialectRuntime`: the decoding pipeline (`agentkit.decoding`) renders,
constrains and reads the turn; this module is the transport, `complete`.
`stream(request)` yields the turn as the engine decodes it (text and thinking
as they come, each call once complete, read by the dialect's `stream_parser`),
then the response `generate` returns: both read the same decoding.

vLLM scripts start the engine core in a subprocess: keep the code that builds
an agent under `if __name__ == "__main__":` in scripts.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import copy
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from agentkit.decoding import Completion, DialectRuntime
from agentkit.dialect import Constraint, Dialect, get_dialect
from agentkit.errors import ContextLengthExceeded, RuntimeUnavailable
from agentkit.runtime import ModelRequest, RuntimeInfo, Sampling, Usage
from agentkit.runtimes.vllm.presets import (
    _JSON_GEMMA4,
    LOCAL_MODELS,
    PRESETS,
    Preset,
    engine_settings,
    grammar_engine_of,
    local_model_path,
    on_cpu,
    with_grammar_engine,
)

__all__ = ["VLLMEngine"]

log = logging.getLogger("agentkit.vllm")


def _import_vllm() -> Any:
    # vLLM logs a great deal at INFO; agentkit users see its warnings unless they ask.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as exc:
        raise RuntimeUnavailable(
            "vLLM is not installed. On a CPU machine install agentkit's cpu extra "
            "(`pip install 'agentkit[cpu]'`, or `make install` in a checkout); on an NVIDIA "
            "GPU install the vllm extra (`pip install 'agentkit[vllm]'`)"
        ) from exc
    return vllm


class _Engine:
    """One running vLLM engine on its own event loop thread; shared by variants."""

    def __init__(self, model: str, args: Mapping[str, Any]) -> None:
        self.model = model  # one of LOCAL_MODELS is prepared on start
        self.args = dict(args)
        self.engine: Any = None
        self.tokenizer: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.start_error: Exception | None = None
        self.context_length: int | None = None
        self.closed = False
        self._exit_hook = False

    def start(self) -> None:
        with self.lock:
            if self.engine is not None:
                return
            if self.closed:
                raise RuntimeUnavailable("this vLLM engine was closed; build a new VLLMEngine to start another")
            if self.start_error is not None:
                raise RuntimeUnavailable(f"the vLLM engine failed to start earlier: {self.start_error}")
            vllm = _import_vllm()
            model_path = local_model_path(self.model) or self.model
            args = engine_settings(self.args, cpu=on_cpu())
            args.setdefault("disable_log_stats", True)
            started = time.monotonic()
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="agentkit-vllm", daemon=True)
            thread.start()

            async def build() -> Any:
                return vllm.AsyncLLMEngine.from_engine_args(vllm.AsyncEngineArgs(model=str(model_path), **args))

            engine = None
            try:
                engine = asyncio.run_coroutine_threadsafe(build(), loop).result()
                tokenizer = engine.get_tokenizer()
                context_length = int(engine.model_config.max_model_len)
            except BaseException as exc:
                if engine is not None:  # started, then failed: do not leak its engine-core process
                    engine.shutdown()
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=5)
                loop.close()
                if not isinstance(exc, Exception):  # Ctrl-C: not a reason to refuse later starts
                    raise
                self.start_error = exc
                raise RuntimeUnavailable(f"the vLLM engine could not start for {model_path}: {exc}") from exc
            self.engine, self.tokenizer, self.context_length = engine, tokenizer, context_length
            self.loop, self.thread = loop, thread
            if not self._exit_hook:
                atexit.register(self.close)
                self._exit_hook = True
            log.info("vLLM engine for %s ready in %.0f s", model_path, time.monotonic() - started)

    def close(self) -> None:
        self.closed = True
        engine, loop, thread = self.engine, self.loop, self.thread
        self.engine = self.loop = self.thread = None
        if engine is None or loop is None or thread is None:
            return

        async def shutdown() -> None:
            engine.shutdown()
            # vLLM's output handler tasks live on this loop: end them before it stops.
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=60)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            if not thread.is_alive():
                loop.close()

    async def outputs(self, prompt: Any, params: Any) -> AsyncIterator[tuple[Any, float]]:
        """Run one request on the engine's loop, from any loop: each output vLLM yields
        (the cumulative one, after every engine step) and the `time.monotonic()` it came at.

        Leaving the iteration early aborts the request.
        """
        engine, loop = self.engine, self.loop
        if engine is None or loop is None:
            raise RuntimeUnavailable("the vLLM engine is closed")
        caller = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Any, float] | BaseException | None] = asyncio.Queue()

        def put(item: tuple[Any, float] | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop has closed: nobody is listening
                caller.call_soon_threadsafe(queue.put_nowait, item)

        async def run() -> None:
            try:
                async for out in engine.generate(prompt, params, request_id=uuid.uuid4().hex):
                    put((out, time.monotonic()))
            except asyncio.CancelledError:  # left early (no one listens), or the engine is closing
                put(RuntimeUnavailable("the vLLM engine was closed while it answered"))
                raise
            except Exception as exc:
                put(exc)
            else:
                put(None)

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            future.cancel()  # vLLM aborts a request whose generator is cancelled


def _token_prompt(token_ids: list[int]) -> Any:
    """The engine input for a tokenised prompt (vLLM 0.32 deprecates the older form)."""
    try:
        from vllm.inputs.engine import tokens_input
    except ImportError:  # vLLM before the engine-input API
        from vllm import TokensPrompt

        return TokensPrompt(prompt_token_ids=token_ids)
    return tokens_input(token_ids)


class VLLMEngine(DialectRuntime):
    """The in-process vLLM runtime.

    Args:
        model: A preset name (`default`, `gemma-4-e2b`, `gemma-4-e4b`,
            `gemma-4-12b`, `gemma-4-26b-a4b`, `gemma-4-31b`; `tiny-gemma4`
            for tests), a Hugging Face id or a local path.
        dialect: Overrides the preset's dialect: a name (built with the preset's
            options for that dialect, e.g. `"json"`) or a `Dialect`.
        constrained: Enforce the dialect's constraint while decoding (default on).
        engine_args: Extra `vllm.AsyncEngineArgs`, over the preset's.
        grammar_engine: vLLM's structured-outputs backend: `guidance` (llguidance,
            the default) or `xgrammar`.
    """

    def __init__(
        self,
        model: str = "default",
        *,
        dialect: str | Dialect | None = None,
        constrained: bool = True,
        engine_args: Mapping[str, Any] | None = None,
        grammar_engine: str | None = None,
    ) -> None:
        name = model.removeprefix("vllm:")
        preset = PRESETS.get(name) or Preset(model=name, dialect="gemma4", dialect_options=_JSON_GEMMA4)
        self.preset = preset
        self.engine_args = with_grammar_engine({**preset.engine_args, **(engine_args or {})}, grammar_engine)
        self.grammar_engine = grammar_engine_of(self.engine_args)
        """The structured-outputs backend the engine runs; the constraint is written for it."""
        self._core = _Engine(preset.model, self.engine_args)
        self._uri = f"vllm:{name}"
        self._configure(dialect, constrained)

    def _configure(self, dialect: str | Dialect | None, constrained: bool) -> None:
        preset = self.preset
        if dialect is None or isinstance(dialect, str):
            name = dialect or preset.dialect
            self.dialect = get_dialect(name, **preset.options(name))
        else:
            self.dialect = dialect
        self.constrained = constrained
        self._info = RuntimeInfo(
            name="vllm",
            model=local.label if (local := LOCAL_MODELS.get(preset.model)) else preset.model,
            dialect=self.dialect.name,
            constrained=constrained,
            context_length=self.engine_args.get("max_model_len"),
            uri=self._uri,
            provider="vllm",
        )

    def variant(self, *, dialect: str | Dialect | None = None, constrained: bool | None = None) -> VLLMEngine:
        """This runtime with another dialect or constraint setting, on the same engine.

        No second engine starts: both runtimes share one model and one KV
        cache, so comparing, say, constrained and free decoding costs nothing.
        """
        twin = copy.copy(self)
        twin._configure(dialect or self.dialect, self.constrained if constrained is None else constrained)
        return twin

    @property
    def info(self) -> RuntimeInfo:
        return self._info

    @property
    def tokenizer(self) -> Any:
        """The engine's tokenizer (starts the engine if needed)."""
        self.start()
        return self._core.tokenizer

    def count_tokens(self, request: ModelRequest) -> int:
        """The prompt's tokens for `request`, as the engine would read it (the loop's context policy asks)."""
        return len(self.tokenizer.encode(self.dialect.render(request), add_special_tokens=False))

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the engine now (it otherwise starts on the first request). Blocking."""
        self._core.start()

    def close(self) -> None:
        """Stop the engine (for every variant of it). Safe to call twice; a
        closed engine refuses further requests."""
        self._core.close()

    def __enter__(self) -> VLLMEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def astart(self) -> None:
        """Start the engine now (if it has not started), off the event loop."""
        if self._core.engine is None:
            await asyncio.to_thread(self.start)

    async def aclose(self) -> None:
        """Stop the engine (as `close`), off the event loop."""
        await asyncio.to_thread(self.close)

    # --- the transport -------------------------------------------------------------

    async def complete(
        self, prompt: str, constraint: Constraint | None, sampling: Sampling, stop: Sequence[str], *, live: bool
    ) -> AsyncIterator[str | Completion]:
        """The text as the engine decodes it, then the `Completion` (`live` changes nothing here)."""
        await self.astart()
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        # The dialect writes <bos> itself: adding special tokens would double it.
        token_ids = self._core.tokenizer.encode(prompt, add_special_tokens=False)
        limit = self._core.context_length
        if limit is not None and len(token_ids) >= limit:
            raise ContextLengthExceeded(
                f"the prompt has {len(token_ids)} tokens but {self.info.model} takes {limit}: shorten the "
                "conversation, or raise max_model_len in engine_args if the model allows it"
            )
        structured = (
            StructuredOutputsParams(**constraint.structured_outputs(self.grammar_engine)) if constraint else None
        )
        params = SamplingParams(
            temperature=sampling.temperature,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
            stop=list(stop),
            structured_outputs=structured,
            # Gemma 4's markers (`<|tool_call>`, `<|"|>`, ...) are special tokens:
            # the dialect must see them in the text it parses.
            skip_special_tokens=False,
        )
        output: Any = None
        first_token: float | None = None
        last_token: float | None = None
        text = ""
        async for output, arrived in self._core.outputs(_token_prompt(token_ids), params):
            completion = output.outputs[0]
            if completion.token_ids:
                last_token = arrived
                first_token = first_token or arrived
            # Each output holds all the text so far; vLLM holds back what may begin a
            # stop string until it knows, so the text only grows.
            if len(completion.text) > len(text):
                yield completion.text[len(text) :]
                text = completion.text
        completion = output.outputs[0]
        yield Completion(
            text=completion.text,
            cut=completion.finish_reason == "length",
            usage=Usage(
                prompt_tokens=len(token_ids),
                completion_tokens=len(completion.token_ids),
                cached_tokens=int(output.num_cached_tokens or 0),
                requests=1,
            ),
            first_token_at=first_token,
            last_token_at=last_token,
        )
