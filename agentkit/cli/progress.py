"""A workflow's progress on a terminal: one line as each step starts, ends, fails or is skipped."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from agentkit.cli.printing import brief, one_line
from agentkit.workflow.runner import StepEvent

__all__ = ["Progress"]

_MARK = {"started": ("→", "dim"), "done": ("✓", "green"), "skipped": ("–", "dim"), "failed": ("✗", "red")}


class Progress:
    """Writes `StepEvent`s as lines: `✓ research · agent · 2.3 s · run 01J… · {"title": …}`."""

    def __init__(self, console: Console, *, width: int = 80) -> None:
        self.console = console
        self.width = width

    def show(self, event: StepEvent) -> None:
        self.console.print(self.line(event), soft_wrap=True)

    def line(self, event: StepEvent) -> Text:
        mark, style = _MARK[event.status]
        line = Text(f"{mark} ", style=style)
        line.append(event.step, style="bold" if event.status != "started" else "")
        parts = [event.kind]
        if event.status in ("done", "failed"):
            parts.append(f"{event.elapsed:.1f} s")
        if event.status == "skipped":
            parts.append("skipped")
        if event.detail:
            parts.append(event.detail)
        if event.run_id:
            parts.append(f"run {event.run_id}")
        line.append(" · " + " · ".join(parts), style="dim")
        if event.status == "done" and event.output is not None:
            line.append(" · " + brief(event.output, self.width))
        if event.error:
            line.append(" · " + one_line(event.error), style="red")
        return line
