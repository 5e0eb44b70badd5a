"""`agentkit eval` on the embedded model in the real vLLM engine: BFCL's slice, and stored runs replayed.

CI runs 6 entries of each non-live category under the grammar and 2 without
it; `make eval-bfcl` runs them all (docs/evaluation.md). Every call made under
the grammar must be valid, and agentkit's scorer must give BFCL's own
checker's verdict on every one of the model's real turns, both arms.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agentkit import Agent
from agentkit.eval import CATEGORIES, EvalResults, evaluate, load, replay_runs, select_runs, write
from agentkit.eval.bfcl import data_dir
from agentkit.runtimes.vllm import VLLMEngine
from agentkit.store import Store
from tests.support.bfcl_oracle import bfcl_verdicts
from tests.support.tools import add

from ..conftest import FIGURES

SLICE, FREE_SLICE = 6, 2  # per category; `make eval-bfcl` runs every entry


@pytest.fixture(scope="module")
def constrained(engine: VLLMEngine) -> EvalResults:
    results = asyncio.run(evaluate(engine, load(CATEGORIES, limit=SLICE), arms=["constrained"], limit=SLICE))
    FIGURES["bfcl slice, constrained (s per 100 entries)"] = round(100 * results.seconds / len(results.outcomes))
    return results


@pytest.fixture(scope="module")
def free(engine: VLLMEngine) -> EvalResults:
    return asyncio.run(evaluate(engine, load(CATEGORIES, limit=FREE_SLICE), arms=["free"], limit=FREE_SLICE))


def test_every_call_under_the_grammar_is_valid_in_every_category(constrained: EvalResults) -> None:
    for category in CATEGORIES:
        summary = constrained.summary("constrained", category)
        assert summary.entries == SLICE
        assert summary.errors == {}, (category, summary.errors)
        assert summary.calls > 0
        assert summary.valid_calls == summary.calls, (
            category,
            [o for o in constrained.outcomes if o.valid_calls < o.attempted],
        )
    FIGURES["bfcl slice accuracy, constrained"] = {c: constrained.summary("constrained", c).correct for c in CATEGORIES}


def test_the_scorer_agrees_with_bfcls_checker_on_the_models_turns(constrained: EvalResults, free: EvalResults) -> None:
    entries = {e.id: e for e in load(CATEGORIES, limit=SLICE)}
    outcomes = [*constrained.outcomes, *free.outcomes]
    theirs = bfcl_verdicts(data_dir(), [(entries[o.id], o.calls) for o in outcomes])
    disagree = [(o.id, o.arm, o.calls, t) for o, t in zip(outcomes, theirs, strict=True) if o.correct != t]
    assert not disagree
    FIGURES["bfcl slice, verdicts equal to BFCL's checker"] = f"{len(outcomes)}/{len(outcomes)}"


def test_the_free_arm_decodes_without_the_grammar(constrained: EvalResults, free: EvalResults) -> None:
    assert free.runtime["constrained"] is True  # the runtime given; the arm is its free variant
    assert {o.arm for o in free.outcomes} == {"free"}
    assert all(o.grammar_digest is None for o in free.outcomes)
    assert all(o.grammar_digest is not None for o in constrained.outcomes)
    # Without the grammar the small model writes calls the parser cannot read, or invalid ones:
    # what the constrained arm never does. The turns are kept, as text, with their error.
    for outcome in free.outcomes:
        if outcome.error_type is not None:
            assert outcome.error_type == "unreadable", outcome
            assert outcome.raw, outcome


def test_the_results_files(constrained: EvalResults, tmp_path: Path) -> None:
    paths = write(constrained, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert len(data["outcomes"]) == SLICE * len(CATEGORIES)
    assert {s["category"] for s in data["summaries"]} == set(CATEGORIES)
    page = paths["markdown"].read_text()
    for category in CATEGORIES:
        assert f"| {category} | constrained | {SLICE} | 100.0% " in page
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stored_runs_replayed_on_the_engine(engine: VLLMEngine, tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.db")
    try:
        agent = Agent(tools=[add], runtime=engine, store=store, max_steps=3)
        for question in ("What is 2 + 3?", "Add 40 and 2."):
            agent.run(question)
        records = select_runs(store, "status=done", limit=10) or select_runs(store, None)
        assert records
        suite = asyncio.run(replay_runs(store, [r.id for r in records], engine.variant(constrained=False)))
    finally:
        store.close()
    assert suite.steps >= len(records)
    assert suite.failed_steps == 0
    assert suite.same_decision_rate is not None
    FIGURES["eval replay, same decisions (free vs constrained)"] = f"{suite.same_decisions}/{suite.steps}"
