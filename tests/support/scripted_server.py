"""A real HTTP server on loopback that answers with scripted replies.

For tests of a client's own logic (retries, validation): the server
is real (sockets, HTTP/1.1), only its answers are written by the test.

    with ScriptedServer() as server:
        server.replies = [(503, {}, {"error": {"message": "busy"}}), (200, {}, {"ok": True})]
        ...  # requests to server.base + "/anything"
        server.seen  # [(monotonic time, path, JSON body), ...]

A body of `Events` is streamed as server-sent events, one event at a time:

    server.replies = [(200, {}, Events([{"choices": [...]}, ...], pause=0.05))]
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Events", "ScriptedServer"]


@dataclass
class Events:
    """A body sent as server-sent events: each of `events` as one `data:` line of
    JSON (a string as it is), then `data: [DONE]`, `pause` seconds apart.
    `cut_after`: the connection closes after that many events, in the middle of
    a body whose length was announced (a server dying mid-answer). `verbatim`:
    the whole stream as written, instead of `events`."""

    events: list[Any]
    pause: float = 0.0
    cut_after: int | None = None
    verbatim: str | None = None

    def lines(self) -> list[bytes]:
        if self.verbatim is not None:
            return [self.verbatim.encode()]
        data = [e if isinstance(e, str) else json.dumps(e) for e in self.events] + ["[DONE]"]
        return [f"data: {d}\n\n".encode() for d in data]


class ScriptedServer:
    """Answers each request with the next of `replies`: `(status, headers, body)`,
    the string `"hang"` (no answer for 3 s), or a callable taking the request's
    JSON body and returning `(status, headers, body)`. With no reply left: 200 `{}`."""

    def __init__(self) -> None:
        self.replies: list[Any] = []
        self.seen: list[tuple[float, str, Any]] = []
        self.raw_body: bytes | None = None
        """When set, sent instead of the next reply's JSON body (once)."""
        script = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                script.seen.append((time.monotonic(), self.path, body))
                reply = script.replies.pop(0) if script.replies else (200, {}, {})
                if reply == "hang":
                    time.sleep(3)
                    return
                if callable(reply):
                    reply = reply(body)
                status, headers, payload = reply
                if isinstance(payload, Events):
                    self._stream(status, headers, payload)
                    return
                data, script.raw_body = (
                    (script.raw_body, None) if script.raw_body else (json.dumps(payload).encode(), None)
                )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, status: int, headers: dict[str, str], events: Events) -> None:
                lines = events.lines()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-type", "text/event-stream")
                if events.cut_after is not None:
                    self.send_header("content-length", str(sum(map(len, lines))))
                    lines = lines[: events.cut_after]
                self.end_headers()
                for line in lines:
                    time.sleep(events.pause)
                    self.wfile.write(line)
                    self.wfile.flush()

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
