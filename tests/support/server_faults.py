"""The fault tests every server runtime gets against its real server (vLLM's and llama.cpp's).

    kill_then_resume(served, VLLMServer, tmp_path)   # the server dies mid-run; resume once it is back
    ctrl_c_stops_it(served)                           # Ctrl-C leaves no process of the server's group

`served` is a `tests.conftest.ServeCommand`: `agentkit serve URI` in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest

from agentkit import MaxStepsExceeded, ServerError, tool
from agentkit.runtimes import RetryPolicy, VLLMServer
from agentkit.store import Store
from tests.support.weather import WeatherAgent

if TYPE_CHECKING:
    from tests.conftest import ServeCommand

__all__ = ["ctrl_c_stops_it", "kill_then_resume"]


def kill_then_resume(served: ServeCommand, runtime: type[VLLMServer], tmp_path: Path) -> None:
    """A run whose server is killed between two turns fails naming the URL and, once the
    server is back, resumes without running its finished tool again."""
    ran: list[str] = []

    @tool
    def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
        """Get the current weather in a city.

        Args:
            city: The city's name.
            unit: The temperature unit.
        """
        ran.append(city)
        if len(ran) == 1:
            served.kill_server()  # the server dies while the run is between two model turns
        return f"21 degrees {unit}, clear, in {city}"

    class Fragile(WeatherAgent):
        tools = [get_weather]

    store = Store(tmp_path / "runs.db")
    policy = RetryPolicy(attempts=3, backoff=0.2, max_backoff=1.0, timeout=60.0)
    agent = Fragile(runtime=runtime(served.url, retry=policy), store=store)
    with pytest.raises(ServerError, match=f"{served.url}/completions failed after 3 attempts") as info:
        agent.run("What is the weather in Oslo?")
    assert info.value.partial is not None
    run_id = info.value.partial.run_id
    assert store.load(run_id).record.status == "failed"
    assert len(ran) == 1

    served.start()  # the server is back (same port)
    with contextlib.suppress(MaxStepsExceeded):  # the small model may ramble: what matters is what ran
        asyncio.run(agent.aresume(run_id))
    stored = store.load(run_id)
    assert stored.record.status in ("done", "budget_exhausted")
    assert len(stored.steps) >= 2
    # Every call ran exactly once: the one finished before the crash was not repeated.
    assert len(ran) == sum(len(s.response.message.tool_calls) for s in stored.steps)
    store.close()


def ctrl_c_stops_it(served: ServeCommand) -> None:
    """Ctrl-C on `agentkit serve` ends it cleanly, and nothing of the server's process group is left."""
    pid = served.server_pid
    assert pid is not None
    assert served.interrupt() == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)  # anything left in the server's process group?
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"processes of the server's group {pid} outlived Ctrl-C")
    assert "stopping the server" in served.log.read_text()
