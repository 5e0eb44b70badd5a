"""agentkit.logs: library and engine output to a file (descriptor 2 included) or to stderr, and back."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentkit.logs import default_path, env_level, quiet_logs, verbose_logs


def run_script(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "AGENTKIT_CACHE": str(tmp_path / "cache")},
        timeout=60,
        check=False,
    )


def test_quiet_logs_keeps_the_terminal_for_the_program(tmp_path: Path) -> None:
    ran = run_script(
        """
        import logging, multiprocessing, os, subprocess, sys, warnings
        from agentkit.logs import quiet_logs

        def child():
            print("a forked engine core", file=sys.stderr, flush=True)
            logging.getLogger("vllm").warning("a forked child's log")

        if __name__ == "__main__":
            logs = quiet_logs()
            logging.getLogger("httpx").info("an INFO log")
            warnings.warn("a warning")
            print("sys.stderr", file=sys.stderr, flush=True)
            os.write(2, b"descriptor 2\\n")
            subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('a subprocess')"], check=True)
            process = multiprocessing.get_context("fork").Process(target=child)
            process.start()
            process.join()
            print("the answer")
            print("the program's message", file=logs.stderr)
            assert os.environ["VLLM_LOGGING_STREAM"] == "ext://sys.stderr"
        """,
        tmp_path,
    )
    log = tmp_path / "cache" / "logs" / "agentkit.log"
    assert ran.returncode == 0, ran.stderr + log.read_text()
    assert ran.stdout == "the answer\n"
    assert ran.stderr == f"logs: {log}\nthe program's message\n"
    written = log.read_text(encoding="utf-8")
    for noise in ("an INFO log", "a warning", "sys.stderr", "descriptor 2", "a subprocess", "a forked engine core"):
        assert noise in written
    assert "a forked child's log" in written


def test_an_uncaught_exception_goes_to_the_terminal_with_the_log_path(tmp_path: Path) -> None:
    ran = run_script(
        "from agentkit.logs import quiet_logs\nquiet_logs(announce=False)\nraise SystemError('broke')", tmp_path
    )
    assert ran.returncode == 1
    assert ran.stderr.startswith("Traceback")
    assert ran.stderr.endswith(f"SystemError: broke\nlogs: {tmp_path / 'cache' / 'logs' / 'agentkit.log'}\n")


def test_close_puts_everything_back(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level, environ = list(root.handlers), root.level, dict(os.environ)
    with quiet_logs(tmp_path / "a.log", announce=False) as logs:
        assert not logs.written()
        os.write(2, b"to the file\n")
        assert logs.written()
    os.write(2, b"to stderr again\n")
    assert (tmp_path / "a.log").read_text() == "to the file\n"
    assert capfd.readouterr().err == "to stderr again\n"
    assert (root.handlers, root.level, dict(os.environ)) == (handlers, level, environ)


def test_verbose_logs_writes_every_librarys_log_to_stderr(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a fresh process: an earlier test's engine import may have set vLLM's level.
    monkeypatch.delenv("VLLM_LOGGING_LEVEL", raising=False)
    with verbose_logs(logging.DEBUG) as logs:
        logging.getLogger("some_library.module").debug("a detail")
        assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG"
    assert logs.path is None
    assert "DEBUG some_library.module: a detail" in capsys.readouterr().err


def test_the_log_file_is_in_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTKIT_CACHE", str(tmp_path))
    assert default_path() == tmp_path / "logs" / "agentkit.log"


@pytest.mark.parametrize(("value", "level"), [("", None), ("debug", logging.DEBUG), ("INFO", logging.INFO)])
def test_agentkit_log_names_a_level(monkeypatch: pytest.MonkeyPatch, value: str, level: int | None) -> None:
    monkeypatch.setenv("AGENTKIT_LOG", value)
    assert env_level() == level


def test_agentkit_log_refuses_what_is_no_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTKIT_LOG", "loud")
    with pytest.raises(ValueError, match="AGENTKIT_LOG='loud' names no log level"):
        env_level()
