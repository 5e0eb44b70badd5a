"""The MCP prompt-cost benchmark runs, and what it counts grows with the server's tools."""

from __future__ import annotations

from benchmarks.mcp_prompt import measure


def test_each_tool_of_a_server_costs_prompt_tokens_in_every_dialect() -> None:
    one, three = measure(1), measure(3)
    for label, row in three["prompt tokens"].items():
        assert row["with tools"] > row["without tools"]
        # Declarations grow with the tools; worked examples (a fixed number) do not.
        assert row["tools cost"] > one["prompt tokens"][label]["tools cost"]
