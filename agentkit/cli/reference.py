"""The command reference in docs/cli.md, generated from the commands themselves."""

from __future__ import annotations

from typing import Any

__all__ = ["reference_markdown"]


def reference_markdown() -> str:
    """Every command with its arguments and options, as markdown (docs/cli.md's reference).

    Regenerate the page's section with `python -c "from agentkit.cli import reference_markdown as r; print(r())"`.
    """
    import typer.main

    from agentkit.cli import app

    def walk(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
        if hasattr(command, "commands"):  # a group: its own options (agentkit -v), then its commands
            own = [(path, command)] if any(p.name != "help" for p in command.params) else []
            return own + [found for name, sub in command.commands.items() for found in walk(sub, [*path, name])]
        return [(path, command)]

    parts = []
    for path, command in walk(typer.main.get_command(app), ["agentkit"]):
        lines = [f"### `{' '.join(path)}`", "", (command.help or "").strip(), ""]
        params = [p for p in command.params if not getattr(p, "hidden", False) and p.name != "help"]
        if params:
            lines += ["| argument or option | what |", "|---|---|"]
            for param in params:
                if param.param_type_name == "argument":
                    name = f"`{param.metavar or param.name.upper()}`"
                else:
                    name = ", ".join(f"`{opt}`" for opt in (*param.opts, *param.secondary_opts))
                    if not getattr(param, "is_flag", False) and param.metavar:
                        name += f" `{param.metavar}`"
                default = param.default
                shown = (
                    f" (default: `{default}`)"
                    if isinstance(default, str | int) and not isinstance(default, bool)
                    else ""
                )
                what = (param.help or "").strip().replace("|", "\\|")
                lines.append(f"| {name} | {what}{shown} |")
            lines.append("")
        parts.append("\n".join(lines))
    return "\n".join(parts)
