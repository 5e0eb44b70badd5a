"""Model Context Protocol: MCP servers' tools for agents, and agents served as MCP tools.

    from agentkit import Agent, mcp

    class Researcher(Agent):
        tools = [mcp.stdio("python", "notes_server.py"), mcp.http("http://127.0.0.1:8000/mcp")]

Each server's tools are offered and constrained like any other tool: their
JSON Schemas go through the same grammar. A server is opened when a run
starts and closed when it ends (or once for `async with agent:`). The other
direction, `agentkit mcp serve module:Agent`, is in `agentkit.mcp.serve`.
Needs the SDK: `pip install 'agentkit[mcp]'`.
"""

from agentkit.mcp.client import MCPToolError, MCPToolset, ServerOptions, http, stdio

__all__ = ["MCPToolError", "MCPToolset", "ServerOptions", "http", "stdio"]
