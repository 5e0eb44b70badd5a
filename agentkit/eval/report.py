"""An evaluation's results as files: `results.json`, `results.md` and `results.png`.

    paths = write(results, Path("bfcl-results"))

The Markdown is a page of its own (the docs include it as it is written);
the chart shows valid-call rate and accuracy per category, one bar per arm.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentkit.eval.run import EvalResults, Summary

__all__ = ["markdown", "table", "write"]


def write(results: EvalResults, out: Path) -> dict[str, Path]:
    """Write the JSON, the Markdown table and the chart into `out` (created); returns their paths.

    The chart needs matplotlib (`pip install 'agentkit[eval]'`); without it no
    PNG is written and its path is left out.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(results.as_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    chart = out / "results.png"
    if _chart(results, chart):
        paths["chart"] = chart
    paths["markdown"].write_text(markdown(results, chart="results.png" if "chart" in paths else None), encoding="utf-8")
    return paths


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{100 * rate:.1f}%"


def _errors(summary: Summary) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(summary.errors.items())) or "–"


def table(results: EvalResults) -> str:
    """The per-category table: one row per category and arm."""
    lines = [
        "| category | arm | entries | valid calls | accuracy | tokens/s | s per 100 | errors |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for category in results.categories:
        for arm in results.arms:
            s = results.summary(arm, category)
            valid = f"{_percent(s.valid_call_rate)} ({s.valid_calls}/{s.calls})"
            lines.append(
                f"| {category} | {arm} | {s.entries} | {valid} | {_percent(s.accuracy)} ({s.correct}) "
                f"| {s.tokens_per_second:.1f} | {s.seconds_per_100:.0f} | {_errors(s)} |"
            )
    return "\n".join(lines)


def markdown(results: EvalResults, *, chart: str | None = None) -> str:
    """The results as a Markdown page: the setting, one row per category and arm, totals, and
    every constrained call that is not valid (there should be none)."""
    info = results.runtime
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(results.started))
    entries = len({o.id for o in results.outcomes})
    limit = f"the first {results.limit} of each category" if results.limit else f"{entries} entries"
    lines = [
        "# BFCL results",
        "",
        f"`{info.get('uri') or info.get('name')}` ({info.get('model')}, dialect `{info.get('dialect')}`), "
        f"BFCL v4 from bfcl-eval {results.bfcl_version}, {limit}; one turn per entry, greedy, "
        f"at most {results.max_tokens} tokens, {results.concurrency} entries at once; {when}, "
        f"{results.seconds:.0f} s in all.",
        "",
        "Valid calls: calls to an offered function with arguments valid under its JSON Schema (a turn the "
        "dialect could not read counts as one invalid call). Accuracy: BFCL's AST rules (irrelevance: no call "
        "made). Tokens/s: generated tokens over the category's wall time.",
        "",
        table(results),
    ]
    lines += ["", "| arm | entries | valid calls | accuracy | s per 100 |", "|---|---:|---:|---:|---:|"]
    for arm in results.arms:
        mine = [s for s in results.summaries if s.arm == arm]
        entries, calls = sum(s.entries for s in mine), sum(s.calls for s in mine)
        valid, correct, seconds = (
            sum(s.valid_calls for s in mine),
            sum(s.correct for s in mine),
            sum(s.seconds for s in mine),
        )
        rate = valid / calls if calls else None
        lines.append(
            f"| {arm} | {entries} | {_percent(rate)} ({valid}/{calls}) "
            f"| {_percent(correct / entries if entries else 0)} | {100 * seconds / entries if entries else 0:.0f} |"
        )
    if chart:
        lines += ["", f"![valid calls and accuracy per category]({chart})"]
    reasons = Counter(
        (o.arm, o.reason) for o in results.outcomes if o.reason and o.reason != "error" and o.arm in results.arms
    )
    if reasons:
        lines += ["", "Wrong answers by BFCL rule:", ""]
        for arm in results.arms:
            ranked = sorted(((r, n) for (a, r), n in reasons.items() if a == arm), key=lambda p: -p[1])
            lines.append(f"- {arm}: " + ", ".join(f"{reason} {n}" for reason, n in ranked))
    invalid = [o for o in results.outcomes if o.arm == "constrained" and o.valid_calls < o.attempted]
    if "constrained" in results.arms:
        lines += ["", "Constrained turns with a call that is not valid: " + (str(len(invalid)) if invalid else "none.")]
    if invalid:
        lines.append("")
        lines += [f"- `{o.id}`: {o.error or json.dumps(o.calls, ensure_ascii=False)[:200]}" for o in invalid[:50]]
    return "\n".join(lines) + "\n"


def _chart(results: EvalResults, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    categories = list(results.categories)
    figure, axes = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(categories)), 4), sharey=True)
    width = 0.8 / max(1, len(results.arms))
    panels: list[tuple[Any, str, Callable[[Summary], float | None]]] = [
        (axes[0], "valid calls", lambda s: s.valid_call_rate),
        (axes[1], "accuracy (BFCL AST)", lambda s: s.accuracy),
    ]
    for ax, title, rate in panels:
        for n, arm in enumerate(results.arms):
            rates = [rate(results.summary(arm, c)) for c in categories]
            xs = [i + (n - (len(results.arms) - 1) / 2) * width for i in range(len(categories))]
            bars = ax.bar(xs, [100 * (r or 0.0) for r in rates], width, label=arm)
            ax.bar_label(bars, labels=["–" if r is None else f"{100 * r:.0f}" for r in rates], fontsize=7)
        ax.set_title(title)
        ax.set_xticks(range(len(categories)), [c.replace("_", "\n") for c in categories], fontsize=8)
        ax.set_ylim(0, 110)
    axes[0].set_ylabel("%")
    axes[0].legend(loc="lower left", fontsize=8)
    figure.suptitle(f"BFCL v4 on {results.runtime.get('uri') or results.runtime.get('name')}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
