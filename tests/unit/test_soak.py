"""The soak's CI version: 4 processes x 16 agents for one minute on one store, traced over OTLP.

`benchmarks/soak.py` (10 minutes in `make bench`) runs real worker processes,
a real SQLite file they share and a real OTLP/HTTP receiver; afterwards it
reads every finished run back from the store. Here the rule is checked: no row
lost, no lock error, no failed run, every span delivered.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_minute_of_four_processes_of_sixteen_agents_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--minutes", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["exit_codes"] == [0, 0, 0, 0]
    assert figures["runs_completed"] > 4 * 16  # every agent finished runs, not one each
    assert figures["runs_in_store"] == figures["runs_completed"]
    assert figures["rows_lost"] == 0, figures["lost"]
    assert figures["errors"] == {}
    assert figures["lock_errors"] == 0
    assert figures["spans_failed"] == 0
    assert figures["spans_sent"] == figures["spans_expected"]
    assert figures["otlp_requests_received"] > 0
    print(done.stdout)
