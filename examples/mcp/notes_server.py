"""A small MCP server, written with the official SDK: the notes the example agent searches.

    python examples/mcp/notes_server.py     # speaks MCP over stdin/stdout

Any MCP client can use it; `examples/mcp/assistant.py` starts it for its agent.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("notes")

NOTES = {
    "groceries": "Buy green tea, oat milk and lemons.",
    "travel": "Train to Oslo on 14 March; pack the warm coat.",
    "work": "Send the quarterly report to Ada by Friday.",
}


@server.tool()
def search_notes(word: str) -> list[str]:
    """Find the notes that mention a word.

    Args:
        word: The word to look for, e.g. "tea".
    """
    return [f"{title}: {text}" for title, text in NOTES.items() if word.lower() in text.lower()]


@server.tool()
def list_notes() -> list[str]:
    """The titles of all notes."""
    return sorted(NOTES)


if __name__ == "__main__":
    server.run()
