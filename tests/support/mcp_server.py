"""A real MCP server for the tests, written with the SDK's own (low-level) server API.

    python -m tests.support.mcp_server                          # stdio
    python -m tests.support.mcp_server --http PORT [--token T]  # streamable HTTP on 127.0.0.1
    python -m tests.support.mcp_server --many 20                # 20 more tools, for the prompt-size figure
    python -m tests.support.mcp_server --invalid-schema         # one tool lists a schema that is not one
    python -m tests.support.mcp_server --hang-on-start          # never answers (a server that hangs)

Its tools cover what agentkit's client must handle: structured content, text,
images, `isError`, a dotted name, draft-07 `definitions` with a recursive
`$ref`, a server that dies in a call (`crash`) and one that never answers (`hang`).
The low-level API is used so each schema is written exactly as servers in
the wild write them. `calls` counts calls per tool (a tool of its own), so a
test can tell a call ran once.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
from collections import Counter
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()

TEMPERATURES = {"Paris": 18, "Oslo": -3, "Lima": 22}

TOOLS: list[types.Tool] = [
    types.Tool(
        name="get_weather",
        description="The current temperature in a city.",
        input_schema={
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city's name."}},
            "required": ["city"],
        },
        output_schema={
            "type": "object",
            "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
            "required": ["city", "celsius"],
        },
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name="notes.search",
        description="Search the notes for a word.",
        input_schema={
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"word": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 5}},
            "required": ["word"],
            "additionalProperties": False,
        },
    ),
    types.Tool(
        name="make_tree",
        description="Count the nodes of a tree.",
        input_schema={
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "definitions": {
                "node": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "string"},
                        "children": {"type": "array", "items": {"$ref": "#/definitions/node"}},
                    },
                    "required": ["label"],
                },
                "color": {"type": "string", "enum": ["red", "green"]},
            },
            "properties": {"root": {"$ref": "#/definitions/node"}, "color": {"$ref": "#/definitions/color"}},
            "required": ["root"],
        },
    ),
    types.Tool(name="snapshot", description="A picture of the desk.", input_schema={"type": "object"}),
    types.Tool(
        name="fail",
        description="Always fails.",
        input_schema={"type": "object", "properties": {"reason": {"type": "string"}}},
    ),
    types.Tool(
        name="crash", description="Stops the server in the middle of the call.", input_schema={"type": "object"}
    ),
    types.Tool(name="hang", description="Never answers.", input_schema={"type": "object"}),
    types.Tool(name="pid", description="The server's process id.", input_schema={"type": "object"}),
    types.Tool(
        name="calls",
        description="How many times each tool was called.",
        input_schema={"type": "object"},
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
]


def _many(count: int) -> list[types.Tool]:
    """`count` tools shaped like a typical server's: a few typed parameters, one enum, descriptions."""
    return [
        types.Tool(
            name=f"records.op_{i:02d}",
            description=f"Operation {i} on the records store: look up, filter or update entries.",
            input_schema={
                "type": "object",
                "properties": {
                    "collection": {"type": "string", "description": "Which collection of records."},
                    "key": {"type": "string", "description": "The record's key."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Most results."},
                    "order": {"type": "string", "enum": ["asc", "desc"], "description": "Sort order."},
                },
                "required": ["collection", "key"],
            },
        )
        for i in range(count)
    ]


def build(*, many: int = 0, invalid_schema: bool = False) -> Server[Any]:
    tools = TOOLS + _many(many)
    if invalid_schema:
        tools = [*tools, types.Tool(name="broken", input_schema={"type": "object", "properties": {"x": {"type": 7}}})]
    counts: Counter[str] = Counter()

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        counts[params.name] += 1
        args = params.arguments or {}
        text = types.TextContent
        match params.name:
            case "get_weather":
                city = args["city"]
                if city not in TEMPERATURES:
                    return types.CallToolResult(content=[text(text=f"no weather for {city}")], is_error=True)
                data = {"city": city, "celsius": TEMPERATURES[city]}
                return types.CallToolResult(content=[text(text=str(data))], structured_content=data)
            case "notes.search":
                return types.CallToolResult(content=[text(text=f"note 1 mentions {args['word']}")])
            case "make_tree":
                return types.CallToolResult(content=[text(text=str(_count(args["root"])))])
            case "snapshot":
                image = types.ImageContent(data=PNG, mime_type="image/png")
                return types.CallToolResult(content=[text(text="the desk"), image])
            case "fail":
                return types.CallToolResult(
                    content=[text(text=f"failed: {args.get('reason', 'no reason')}")], is_error=True
                )
            case "crash":
                os._exit(3)
            case "hang":
                await asyncio.sleep(3600)
            case "pid":
                return types.CallToolResult(content=[], structured_content={"pid": os.getpid()})
            case "calls":
                return types.CallToolResult(content=[], structured_content=dict(counts))
        return types.CallToolResult(content=[text(text=f"{params.name}: done")])

    return Server("agentkit-test-server", on_list_tools=list_tools, on_call_tool=call_tool)


def _count(node: dict[str, Any]) -> int:
    return 1 + sum(_count(child) for child in node.get("children", []))


async def _stdio(server: Server[Any]) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def _http(server: Server[Any], port: int, token: str | None) -> None:
    import uvicorn

    app: Any = server.streamable_http_app()
    if token is not None:
        inner = app

        async def app(scope: Any, receive: Any, send: Any) -> None:  # refuses requests without the token
            headers = dict(scope.get("headers") or [])
            if scope["type"] == "http" and headers.get(b"authorization") != f"Bearer {token}".encode():
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"no token"})
                return
            await inner(scope, receive, send)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, metavar="PORT")
    parser.add_argument("--token")
    parser.add_argument("--many", type=int, default=0)
    parser.add_argument("--invalid-schema", action="store_true")
    parser.add_argument("--hang-on-start", action="store_true")
    args = parser.parse_args()
    if args.hang_on_start:
        print("starting...", file=sys.stderr, flush=True)
        sys.stdin.read()  # never speaks
        return
    server = build(many=args.many, invalid_schema=args.invalid_schema)
    if args.http is not None:
        _http(server, args.http, args.token)
    else:
        import anyio

        anyio.run(_stdio, server)


if __name__ == "__main__":
    main()
