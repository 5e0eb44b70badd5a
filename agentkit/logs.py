"""Where library and engine logs go: a file, so a terminal shows the agent, or stderr when asked.

    from agentkit.logs import quiet_logs

    quiet_logs()  # prints `logs: ~/.cache/agentkit/logs/agentkit.log` once; the terminal is the program's

vLLM, transformers, torch and httpx log a great deal while an engine starts,
and vLLM's engine core is a subprocess that writes to the stderr it inherited.
`quiet_logs` points the process's file descriptor 2 at the log file, so every
writer ends up there: Python's `sys.stderr` and the handlers holding it
(vLLM's, transformers'), C++ code, and engine cores forked or spawned later.
The root logger writes INFO and above to the file too (agentkit's own, httpx's,
warnings from the `warnings` module). The program's own messages (answers go
to stdout, which is untouched) go to `Logs.stderr`, a copy of the original
stderr; an uncaught exception is printed there with the log's path.

`verbose_logs(level)` is the other choice (`agentkit -v`, `AGENTKIT_LOG=debug`):
every library's log at `level` and above on stderr. Both return a `Logs`
whose `close()` undoes what they set up; a script just lets the process end.

The log records both handle have declared secrets masked (`agentkit.secrets`),
in their messages and tracebacks; so has an uncaught exception's traceback.
What is written straight to descriptor 2 (an engine's own output, C code)
is not a log record, and goes to the file as it was written.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TextIO

from agentkit.secrets import RedactingFilter, redact_text

__all__ = ["ENV", "Logs", "default_path", "env_level", "quiet_logs", "verbose_logs"]

ENV = "AGENTKIT_LOG"
"""The environment variable that sends logs to stderr at a level: `debug`, `info`, `warning` or `error`."""

_LEVELS = ("debug", "info", "warning", "error")
_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


@dataclass(kw_only=True)
class Logs:
    """Where logs go until `close()`: made by `quiet_logs` or `verbose_logs`."""

    path: Path | None
    """The log file; None when logs go to stderr."""
    stderr: TextIO
    """Where the program's own messages go: the terminal's stderr, while the log file holds descriptor 2."""
    _undo: list[Callable[[], None]] = field(default_factory=list, init=False, repr=False)
    _size: int = field(default=0, init=False, repr=False)

    def written(self) -> bool:
        """Whether anything reached the log file since it was set up (engine output, warnings, logs)."""
        try:
            return self.path is not None and self.path.stat().st_size > self._size
        except OSError:
            return False

    def shown_path(self) -> str:
        """The log file's path, under `~` when it is in the home directory."""
        if self.path is None:
            return "stderr"
        home = Path.home()
        return f"~/{self.path.relative_to(home)}" if self.path.is_relative_to(home) else str(self.path)

    def announce(self) -> None:
        """`logs: PATH`, one line on the terminal's stderr."""
        if self.path is not None:
            print(f"logs: {self.shown_path()}", file=self.stderr, flush=True)

    def close(self) -> None:
        """Put back what was set up: descriptor 2, the root logger, warnings, the environment."""
        while self._undo:
            self._undo.pop()()

    def __enter__(self) -> Logs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_path() -> Path:
    """`logs/agentkit.log` in `AGENTKIT_CACHE`, else in the user cache dir (e.g. `~/.cache/agentkit`)."""
    cache = os.environ.get("AGENTKIT_CACHE")
    if not cache:
        import platformdirs

        cache = platformdirs.user_cache_dir("agentkit", appauthor=False)
    return Path(cache).expanduser() / "logs" / "agentkit.log"


def env_level() -> int | None:
    """The level `AGENTKIT_LOG` asks for (logs on stderr), or None when it is unset or empty.

    Raises:
        ValueError: it names no level.
    """
    value = os.environ.get(ENV, "").strip().lower()
    if not value:
        return None
    if value not in _LEVELS:
        raise ValueError(f"{ENV}={value!r} names no log level; use one of {', '.join(_LEVELS)}")
    level: int = getattr(logging, value.upper())
    return level


def quiet_logs(path: Path | None = None, *, announce: bool = True, level: int = logging.INFO) -> Logs:
    """Send library and engine logs to `path` (default: `default_path()`), keep the terminal for the program.

    Call it before the engine starts (vLLM reads its logging settings when it is
    imported). With `announce`, the log's path is printed once (`logs: PATH`).
    Python's log records of `level` and above go to the file (default INFO).
    """
    path = (path or default_path()).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    file = path.open("a", encoding="utf-8", buffering=1)
    logs = Logs(path=path, stderr=sys.stderr)
    logs._size = path.stat().st_size
    logs._undo.append(file.close)
    # vLLM logs through its own handler (to stdout by default) here and in its engine core:
    # to stderr, which is the file; at INFO, which agentkit's engine otherwise lowers to WARNING.
    _setenv(logs, "VLLM_LOGGING_STREAM", "ext://sys.stderr")
    _setenv(logs, "VLLM_LOGGING_LEVEL", os.environ.get("VLLM_LOGGING_LEVEL") or "INFO")
    _log_to(logs, logging.StreamHandler(file), level)
    logging.captureWarnings(True)  # the `warnings` module's messages go to the py.warnings logger, so to the file
    logs._undo.append(lambda: logging.captureWarnings(False))
    # Descriptor 2 becomes the file, for this process and every one it starts from now on.
    sys.stderr.flush()
    terminal = os.dup(2)
    os.dup2(file.fileno(), 2)
    logs._undo.append(lambda: _restore_fd(terminal))
    if _writes_to_fd2(sys.stderr):
        # sys.stderr now writes to the file; the program's own messages go to a copy of the old stderr.
        logs.stderr = open(  # noqa: SIM115 - closed by close()
            terminal, "w", encoding=sys.stderr.encoding, errors="backslashreplace", buffering=1, closefd=False
        )
        logs._undo.append(logs.stderr.close)
    previous_hook = sys.excepthook
    sys.excepthook = _excepthook(logs)
    logs._undo.append(lambda: setattr(sys, "excepthook", previous_hook))
    if announce:
        logs.announce()
    return logs


def verbose_logs(level: int = logging.INFO) -> Logs:
    """Every library's log at `level` and above on stderr, vLLM's (and its engine core's) too."""
    logs = Logs(path=None, stderr=sys.stderr)
    _setenv(logs, "VLLM_LOGGING_STREAM", os.environ.get("VLLM_LOGGING_STREAM") or "ext://sys.stderr")
    _setenv(logs, "VLLM_LOGGING_LEVEL", os.environ.get("VLLM_LOGGING_LEVEL") or logging.getLevelName(level))
    _log_to(logs, logging.StreamHandler(sys.stderr), level)
    return logs


def _setenv(logs: Logs, name: str, value: str) -> None:
    previous = os.environ.get(name)
    os.environ[name] = value

    def undo() -> None:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous

    logs._undo.append(undo)


def _log_to(logs: Logs, handler: logging.Handler, level: int) -> None:
    """Records of `level` and above from every logger that propagates to the root go to `handler`."""
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(level)
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(min(previous, level) if previous != logging.NOTSET else level)
    logs._undo.append(lambda: root.setLevel(previous))
    logs._undo.append(lambda: root.removeHandler(handler))


def _restore_fd(saved: int) -> None:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


def _writes_to_fd2(stream: TextIO) -> bool:
    """Whether `stream` is the process's own stderr (not a stand-in, as a test's captured output is)."""
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def _excepthook(logs: Logs) -> Callable[[type[BaseException], BaseException, TracebackType | None], None]:
    def show(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        print(redact_text("".join(traceback.format_exception(kind, exc, tb))), end="", file=logs.stderr)
        logs.announce()

    return show
