"""Shared fixtures. The real vLLM engine starts once per test session."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from agentkit.runtimes.vllm import VLLMEngine

# Figures the integration tests measure, printed at the end of the session.
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="session")
def engine() -> Iterator[VLLMEngine]:
    """The embedded model on the real vLLM engine (about a minute to start on a CPU)."""
    from agentkit.runtimes.vllm import VLLMEngine

    runtime = VLLMEngine("default")
    # vLLM, torch and transformers warn about their own internals while they
    # import and load; agentkit's tests keep every other warning an error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runtime.start()
    yield runtime
    runtime.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.engine)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("agentkit figures")
        for key, value in FIGURES.items():
            terminalreporter.write_line(f"{key}: {value}")
