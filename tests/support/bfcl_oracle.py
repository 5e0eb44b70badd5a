"""BFCL's own checker, as the oracle agentkit's scorer is compared with.

    verdicts = bfcl_verdicts(data_dir(), [(entry, decoded), ...])   # [True, False, ...]

It runs in a subprocess of its own, from the unpacked bfcl-eval wheel the eval
reads its data from, so nothing of BFCL's is imported into agentkit's process.
`ast_checker` is BFCL's code, unchanged; the one thing not BFCL's is its
`bfcl_eval.constants.model_config` module, replaced before the import by one
model entry: the real module imports every model handler (and with them
openai, anthropic, cohere, sentence-transformers, faiss, ...), and the checker
only reads one flag from it, `underscore_to_dot`, which is False here since
agentkit maps tool names back to BFCL's dotted ones itself.

Irrelevance entries are judged as BFCL's `_evaluate_single_relevance_entry`
judges a decoded output, with its `is_empty_output`'s rule (no call, or one
empty call, is no call), written out below as the script's one rule of its own.

A verdict is True, False, or the exception BFCL's checker raised as a string.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentkit.eval.bfcl import Entry

ORACLE_MODEL = "agentkit-oracle"

_SCRIPT = r"""
import json, sys, types
from dataclasses import dataclass

@dataclass
class _Config:
    underscore_to_dot: bool = False

stub = types.ModuleType("bfcl_eval.constants.model_config")
stub.MODEL_CONFIG_MAPPING = {ORACLE_MODEL: _Config()}
sys.modules["bfcl_eval.constants.model_config"] = stub

from bfcl_eval.constants.enums import Language
from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

def empty(decoded):
    return len(decoded) == 0 or (len(decoded) == 1 and len(decoded[0]) == 0)

verdicts = []
for item in json.load(sys.stdin):
    if "irrelevance" in item["category"]:
        verdicts.append(empty(item["output"]))
        continue
    try:
        result = ast_checker(
            item["functions"], item["output"], item["answers"], Language.PYTHON, item["category"], ORACLE_MODEL
        )
        verdicts.append(bool(result["valid"]))
    except Exception as exc:
        verdicts.append(f"{type(exc).__name__}: {exc}")
json.dump(verdicts, sys.stdout)
"""


def bfcl_verdicts(data: Path, scored: Sequence[tuple[Entry, Sequence[Any]]]) -> list[bool | str]:
    """BFCL's verdict on each `(entry, decoded calls)`, from its checker in a subprocess."""
    items = [
        {"category": e.category, "functions": list(e.functions), "answers": list(e.answers), "output": list(decoded)}
        for e, decoded in scored
    ]
    script = f"ORACLE_MODEL = {ORACLE_MODEL!r}\n{_SCRIPT}"
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(data)!r})\n{script}"],
        input=json.dumps(items),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"BFCL's checker failed: {done.stderr[-2000:]}")
    verdicts: list[bool | str] = json.loads(done.stdout)
    return verdicts
