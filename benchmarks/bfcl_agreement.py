"""BFCL's own checker on an `agentkit eval bfcl` run: how many verdicts agentkit's scorer shares with it.

    .venv/bin/python benchmarks/bfcl_agreement.py docs/evaluation/results.json

Reads the run's `results.json`, puts every scored outcome's calls to BFCL's
`ast_checker` (from the bfcl-eval wheel, in a subprocess: see
tests/support/bfcl_oracle.py) and prints the count of equal verdicts per arm,
and each outcome where they differ. Exits 1 if any does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentkit.eval import load
from agentkit.eval.bfcl import data_dir
from tests.support.bfcl_oracle import bfcl_verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="an eval run's results.json")
    args = parser.parse_args()
    results = json.loads(args.results.read_text(encoding="utf-8"))
    entries = {e.id: e for e in load(results["categories"])}
    # A turn the runtime failed on (reason "error") was never scored as calls: no verdict to compare.
    outcomes = [o for o in results["outcomes"] if o["reason"] != "error"]
    failed = len(results["outcomes"]) - len(outcomes)
    theirs = bfcl_verdicts(data_dir(), [(entries[o["id"]], o["calls"]) for o in outcomes])
    same: Counter[str] = Counter()
    differ = []
    for outcome, verdict in zip(outcomes, theirs, strict=True):
        if outcome["correct"] == verdict:
            same[outcome["arm"]] += 1
        else:
            differ.append((outcome["arm"], outcome["id"], outcome["correct"], verdict))
    for arm in results["arms"]:
        total = sum(o["arm"] == arm for o in outcomes)
        print(f"{arm}: {same[arm]}/{total} verdicts equal to BFCL's checker")
    for arm, entry, ours, bfcl in differ:
        print(f"differs: {arm} {entry}: agentkit {ours}, BFCL {bfcl}")
    print(f"in all: {sum(same.values())}/{len(outcomes)} (and {failed} turns the runtime failed on, not scored)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
