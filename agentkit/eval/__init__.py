"""Evaluation built in: the Berkeley Function Calling Leaderboard, and stored runs as regression suites.

    agentkit eval bfcl --runtime vllm:default --limit 20 --out bfcl-results
    agentkit eval replay --db runs.db --runs status=done --runtime llama:default --min-same 0.9

From Python:

    from agentkit.eval import CATEGORIES, evaluate, load, write
    results = await evaluate(runtime, load(CATEGORIES, limit=20))
    write(results, Path("bfcl-results"))

Modules: `bfcl` (the data, as tools and requests), `scoring` (BFCL's AST rules),
`run` (the arms and the counting), `report` (JSON, Markdown, chart),
`regression` (stored runs replayed on another runtime).
"""

from agentkit.eval.bfcl import BFCL_VERSION, CATEGORIES, LIVE_CATEGORIES, Entry, EvalDataError, Tools, load
from agentkit.eval.regression import QueryError, ReplaySuite, replay_runs, select_runs
from agentkit.eval.report import markdown, write
from agentkit.eval.run import ARMS, ArmUnavailable, EvalResults, Outcome, Summary, arm_runtime, evaluate
from agentkit.eval.scoring import Verdict, score

__all__ = [
    "ARMS",
    "BFCL_VERSION",
    "CATEGORIES",
    "LIVE_CATEGORIES",
    "ArmUnavailable",
    "Entry",
    "EvalDataError",
    "EvalResults",
    "Outcome",
    "QueryError",
    "ReplaySuite",
    "Summary",
    "Tools",
    "Verdict",
    "arm_runtime",
    "evaluate",
    "load",
    "markdown",
    "replay_runs",
    "score",
    "select_runs",
    "write",
]
