"""`http_get` against a real HTTP server on loopback, and against hostile URLs, redirects and bodies.

The server is a stdlib `ThreadingHTTPServer` on 127.0.0.1. Happy paths allow
private addresses (loopback is one); the hostile ones check that each rule
holds on the first URL and again on every redirect.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from agentkit.tools import http_get
from tests.unit.tools.support import ok, refused

BIG = 64 * 1024 * 1024
"""What the endless routes would send, if nobody stopped reading."""


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.sent: dict[str, int] = {}
        """Body bytes each streaming route managed to send before the client went away."""
        self.finished: dict[str, threading.Event] = {}

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-reply is what the cap tests make happen

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def sent_by(self, route: str) -> int:
        """Bytes the route sent, once it has stopped (the client hung up)."""
        assert self.finished.setdefault(route, threading.Event()).wait(10), f"{route} is still sending"
        return self.sent[route]


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        route = url.path.strip("/").split("/")[0]
        getattr(self, f"route_{route}", self.route_missing)(url.path, parse_qs(url.query))

    def reply(self, body: bytes, content_type: str | None = "text/plain; charset=utf-8", status: int = 200) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def stream(self, name: str, chunks: Iterator[bytes]) -> None:
        """Send chunks until they run out or the client hangs up; record how much went out."""
        sent = 0
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:  # the client closed the connection: what it should do past a cap
            pass
        finally:
            self.server.sent[name] = sent
            self.server.finished.setdefault(name, threading.Event()).set()

    def route_missing(self, path: str, query: dict[str, list[str]]) -> None:
        self.reply(b"no such page", status=404)

    def route_text(self, path: str, query: dict[str, list[str]]) -> None:
        self.reply(b"hello, world")

    def route_html(self, path: str, query: dict[str, list[str]]) -> None:
        page = (
            b"<html><head><title>A page</title><style>body { color: red }</style>"
            b"<script>var secret = 'in a script';</script></head>"
            b"<body><h1>Welcome</h1><p>First&nbsp;paragraph &amp; more.</p><ul><li>one</li><li>two</li></ul>"
            b"<noscript>enable javascript</noscript></body></html>"
        )
        self.reply(page, "text/html; charset=utf-8")

    def route_host(self, path: str, query: dict[str, list[str]]) -> None:
        self.reply(f"Host: {self.headers['Host']}".encode())

    def route_json(self, path: str, query: dict[str, list[str]]) -> None:
        self.reply(b'{"answer": 42}', "application/json")

    def route_latin1(self, path: str, query: dict[str, list[str]]) -> None:
        self.reply("café".encode("latin-1"), "text/plain; charset=iso-8859-1")

    def route_untyped(self, path: str, query: dict[str, list[str]]) -> None:
        self.reply(b"plain words, no declared type", None)

    def route_redirect(self, path: str, query: dict[str, list[str]]) -> None:
        self.redirect(query["to"][0])

    def route_loop(self, path: str, query: dict[str, list[str]]) -> None:
        self.redirect("/loop")

    def route_hop(self, path: str, query: dict[str, list[str]]) -> None:
        left = int(path.split("/")[2])
        if left:
            self.redirect(f"/hop/{left - 1}")
        else:
            self.reply(b"arrived")

    def route_png(self, path: str, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(BIG))
        self.end_headers()
        self.stream("png", (b"\x89PNG\r\n\x1a\n" + bytes(65528) for _ in range(BIG // 65536)))

    def route_nul(self, path: str, query: dict[str, list[str]]) -> None:
        self.reply(b"text\x00with\x00nul bytes")

    def route_untypednul(self, path: str, query: dict[str, list[str]]) -> None:
        self.reply(b"\x7fELF\x02\x01\x01\x00\x00\x00", None)

    def route_big(self, path: str, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(BIG))
        self.end_headers()
        self.stream("big", (b"a" * 65536 for _ in range(BIG // 65536)))

    def route_endless(self, path: str, query: dict[str, list[str]]) -> None:
        # No Content-Length: an HTTP/1.0 body runs until the server closes the connection.
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.stream("endless", (b"b" * 65536 for _ in range(BIG // 65536)))

    def route_liar(self, path: str, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.stream("liar", iter([b"12345" + b"c" * 1_000_000]))

    def route_gzip(self, path: str, query: dict[str, list[str]]) -> None:
        # Compressed although identity was asked for: 20 MB of text in about 20 KB.
        body = gzip.compress(b"z" * 20_000_000, compresslevel=6)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_slow(self, path: str, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "200")
        self.end_headers()
        self.stream("slow", _trickle())

    def route_slowheaders(self, path: str, query: dict[str, list[str]]) -> None:
        time.sleep(1.5)
        self.reply(b"too late")


def _trickle() -> Iterator[bytes]:
    for _ in range(200):
        time.sleep(0.02)
        yield b"."


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    httpd = Server()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(scope="module")
def fetch() -> Any:
    """Loopback allowed: for what the server sends, not for where it is."""
    return http_get(allow_hosts=["127.0.0.1", "localhost"], allow_private=True, max_bytes=1000, timeout=2.0)


# --- what it is for --------------------------------------------------------------------


def test_text_comes_back_with_url_status_and_type(server: Server, fetch: Any) -> None:
    page = ok(fetch, url=f"{server.base}/text")
    assert page == {
        "url": f"{server.base}/text",
        "status": 200,
        "content_type": "text/plain",
        "text": "hello, world",
        "truncated": False,
    }


def test_html_becomes_readable_text_without_scripts_or_styles(server: Server, fetch: Any) -> None:
    text = ok(fetch, url=f"{server.base}/html")["text"]
    assert text == "A page\n\n# Welcome\n\nFirst\xa0paragraph & more.\n\n- one\n- two"


def test_json_charsets_and_undeclared_text_are_read_as_text(server: Server, fetch: Any) -> None:
    assert ok(fetch, url=f"{server.base}/json")["text"] == '{"answer": 42}'
    assert ok(fetch, url=f"{server.base}/latin1")["text"] == "café"
    untyped = ok(fetch, url=f"{server.base}/untyped")
    assert (untyped["content_type"], untyped["text"]) == ("", "plain words, no declared type")


def test_an_error_status_is_a_page_the_model_reads(server: Server, fetch: Any) -> None:
    page = ok(fetch, url=f"{server.base}/nowhere")
    assert (page["status"], page["text"]) == (404, "no such page")


def test_redirects_are_followed_and_the_final_url_reported(server: Server, fetch: Any) -> None:
    page = ok(fetch, url=f"{server.base}/redirect?to=/hop/2")
    assert (page["url"], page["text"]) == (f"{server.base}/hop/0", "arrived")


def test_the_model_is_told_which_hosts_it_may_fetch() -> None:
    spec = http_get(allow_hosts=["docs.python.org", "*.wikipedia.org"]).spec
    assert "docs.python.org, *.wikipedia.org" in spec.description
    assert "untrusted" in spec.description
    assert spec.examples == ({"url": "https://docs.python.org/"},)


# --- made wrong -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs allow_hosts"),
        ({"allow_hosts": []}, "needs allow_hosts"),
        ({"allow_hosts": "example.com"}, "needs allow_hosts"),
        ({"allow_hosts": ["*"]}, "not a host"),
        ({"allow_hosts": ["https://example.com"]}, "not a host"),
        ({"allow_hosts": ["example.com:8080"]}, "not a host"),
        ({"allow_hosts": ["example.com/path"]}, "not a host"),
        ({"allow_hosts": ["ex*.com"]}, "not a host"),
        ({"allow_hosts": ["example.com"], "max_bytes": 0}, "max_bytes >= 1"),
    ],
)
def test_a_tool_without_a_proper_allow_list_is_not_made(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        http_get(**options)


# --- hostile URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://evil.example/", "evil.example"),
        ("http://example.com.evil.example/", "example.com.evil.example"),
        ("http://notexample.com/", "notexample.com"),
        ("http://evil.example#@example.com/", "evil.example"),
        ("http://evil.example?@example.com/", "evil.example"),
        ("http://api.example.org.evil.example/", "api.example.org.evil.example"),
        ("http://example.org/", "example.org"),  # *.example.org is every name under it, not itself
    ],
)
def test_hosts_not_in_the_allow_list_are_refused(url: str, host: str) -> None:
    fetch = http_get(allow_hosts=["example.com", "*.example.org"])
    text = refused(fetch, url=url)
    assert f"host {host!r} is not one of the allowed hosts (example.com, *.example.org)" in text


def test_a_wildcard_allows_the_names_under_it() -> None:
    fetch = http_get(allow_hosts=["*.localhost"], timeout=2)
    text = refused(fetch, url="http://deep.sub.localhost/")
    assert "not one of the allowed hosts" not in text  # past the allow-list, stopped by the resolver
    assert "cannot resolve 'deep.sub.localhost'" in text


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com@evil.example/",
        "http://example.com:80@evil.example/",
        "http://user:password@example.com/",
        "http://evil.example\\@example.com/",
    ],
)
def test_urls_with_user_info_are_refused(url: str) -> None:
    text = refused(http_get(allow_hosts=["example.com"]), url=url)
    assert "has user info before '@'" in text


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("file:///etc/passwd", "uses the file: scheme"),
        ("ftp://example.com/file", "uses the ftp: scheme"),
        ("gopher://example.com/", "uses the gopher: scheme"),
        ("javascript:alert(1)", "uses the javascript: scheme"),
        ("example.com/page", "has no http:// or https:// scheme"),
    ],
)
def test_schemes_other_than_http_are_refused(url: str, scheme: str) -> None:
    text = refused(http_get(allow_hosts=["example.com"]), url=url)
    assert f"refused: {url} {scheme}; only http and https URLs are fetched" in text


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("127.0.0.1", "a loopback address (127.0.0.1)"),
        ("localhost", "a loopback address (127.0.0.1)"),  # a name: what it resolves to is checked
        ("2130706433", "a loopback address (127.0.0.1)"),  # decimal: whatever the resolver makes of it
        ("0x7f.1", "a loopback address (127.0.0.1)"),
        ("127.1", "a loopback address (127.0.0.1)"),
        ("10.0.0.1", "a private address (10.0.0.1)"),
        ("192.168.1.1", "a private address (192.168.1.1)"),
        ("172.16.0.1", "a private address (172.16.0.1)"),
        ("169.254.169.254", "a link-local address (169.254.169.254)"),  # cloud metadata
        ("100.64.0.1", "a non-public address (100.64.0.1)"),  # carrier-grade NAT
        ("0.0.0.0", "an unspecified address (0.0.0.0)"),
        ("224.0.0.1", "a multicast address (224.0.0.1)"),
        ("240.0.0.1", "a private address (240.0.0.1)"),
        ("[::1]", "a loopback address (::1)"),
        ("[::]", "an unspecified address (::)"),
        ("[fe80::1]", "a link-local address (fe80::1)"),
        ("[fc00::1]", "a private address (fc00::1)"),
        ("[::ffff:127.0.0.1]", "a loopback address (::ffff:7f00:1)"),
        ("[::ffff:10.0.0.1]", "a private address (::ffff:a00:1)"),
        ("[64:ff9b::7f00:1]", "a loopback address (embedded in IPv6) (64:ff9b::7f00:1)"),
        ("[2002:a00:1::]", "a private address (embedded in IPv6) (2002:a00:1::)"),
    ],
)
def test_non_public_addresses_are_refused_unless_allowed(host: str, problem: str) -> None:
    fetch = http_get(allow_hosts=[host], timeout=2)
    text = refused(fetch, url=f"http://{host}/")
    assert f"resolves to {problem}; pass allow_private=True to allow it" in text


def test_allow_private_for_one_host_does_not_cover_another(server: Server) -> None:
    fetch = http_get(allow_hosts=["localhost", "127.0.0.1"], allow_private=["localhost"], timeout=2)
    port = server.server_port
    assert ok(fetch, url=f"http://localhost:{port}/text")["text"] == "hello, world"
    text = refused(fetch, url=f"http://127.0.0.1:{port}/text")
    assert "resolves to a loopback address (127.0.0.1); add '127.0.0.1' to allow_private" in text


def _resolver(monkeypatch: pytest.MonkeyPatch, *answers: list[str]) -> list[str]:
    """Make name lookups give `answers` in turn (the last one again after that); returns the names looked up."""
    asked: list[str] = []

    async def getaddrinfo(self: Any, host: str, port: int, **_: Any) -> list[Any]:
        asked.append(host)
        addresses = answers[min(len(asked), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return asked


def test_every_address_a_name_resolves_to_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _resolver(monkeypatch, ["93.184.215.14", "10.0.0.5"])
    text = refused(http_get(allow_hosts=["site.example"], timeout=2), url="http://site.example/")
    assert "resolves to a private address (10.0.0.5)" in text
    assert asked == ["site.example"]


def test_the_request_goes_to_the_checked_address_with_the_name_as_host(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rebinding resolver: loopback (allowed here) first, then an address the test would not reach.
    asked = _resolver(monkeypatch, ["127.0.0.1"], ["192.0.2.1"])
    fetch = http_get(allow_hosts=["site.example"], allow_private=True, timeout=2)
    page = ok(fetch, url=f"http://site.example:{server.server_port}/host")
    assert page["text"] == f"Host: site.example:{server.server_port}"
    assert page["url"] == f"http://site.example:{server.server_port}/host"
    assert asked == ["site.example"]  # looked up once, and that answer used


# --- hostile redirects ----------------------------------------------------------------


def test_a_redirect_to_a_private_address_is_refused(server: Server) -> None:
    # localhost may reach the loopback server; the address it redirects to may not.
    fetch = http_get(allow_hosts=["localhost", "127.0.0.1"], allow_private=["localhost"], timeout=2)
    port = server.server_port
    text = refused(fetch, url=f"http://localhost:{port}/redirect?to=http://127.0.0.1:{port}/text")
    assert f"http://127.0.0.1:{port}/text (redirected from http://localhost:{port}/redirect" in text
    assert "resolves to a loopback address (127.0.0.1)" in text


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("http://evil.example/", "host 'evil.example' is not one of the allowed hosts"),
        ("http://localhost@evil.example/", "has user info before '@'"),
        ("file:///etc/passwd", "uses the file: scheme"),
        ("ftp://localhost/", "uses the ftp: scheme"),
    ],
)
def test_each_redirect_is_checked_like_the_first_url(server: Server, fetch: Any, target: str, message: str) -> None:
    text = refused(fetch, url=f"{server.base}/redirect?to={target}")
    assert f"(redirected from {server.base}/redirect" in text
    assert message in text


def test_a_redirect_loop_is_refused(server: Server, fetch: Any) -> None:
    text = refused(fetch, url=f"{server.base}/loop")
    assert f"refused: {server.base}/loop redirects back to {server.base}/loop: a redirect loop" in text


def test_redirects_past_the_cap_are_refused(server: Server) -> None:
    fetch = http_get(allow_hosts=["127.0.0.1"], allow_private=True, max_redirects=3, timeout=2)
    assert ok(fetch, url=f"{server.base}/hop/3")["text"] == "arrived"
    text = refused(fetch, url=f"{server.base}/hop/4")
    assert "redirects more than 3 times (max_redirects=3)" in text


# --- hostile bodies -----------------------------------------------------------------------


@pytest.mark.parametrize("route", ["big", "endless"])
def test_an_oversized_body_is_cut_at_the_cap_without_reading_it_all(server: Server, fetch: Any, route: str) -> None:
    started = time.monotonic()
    page = ok(fetch, url=f"{server.base}/{route}")
    assert time.monotonic() - started < 2
    assert page["truncated"] is True
    assert len(page["text"]) == 1000
    assert server.sent_by(route) < BIG // 2  # it hung up; the rest was never sent


def test_a_lying_content_length_is_not_read_past(server: Server, fetch: Any) -> None:
    page = ok(fetch, url=f"{server.base}/liar")
    assert (page["text"], page["truncated"]) == ("12345", False)


def test_a_compressed_body_is_cut_at_the_cap_when_decoded(server: Server, fetch: Any) -> None:
    page = ok(fetch, url=f"{server.base}/gzip")
    assert (page["text"], page["truncated"]) == ("z" * 1000, True)


@pytest.mark.parametrize(("route", "what"), [("png", "sent image/png content"), ("nul", "binary content (NUL bytes)")])
def test_binary_content_is_refused(server: Server, fetch: Any, route: str, what: str) -> None:
    text = refused(fetch, url=f"{server.base}/{route}")
    assert what in text
    assert "http_get reads only text" in text


def test_binary_content_without_a_declared_type_is_refused(server: Server, fetch: Any) -> None:
    assert "binary content (NUL bytes) as no declared type" in refused(fetch, url=f"{server.base}/untypednul")


def test_binary_content_is_refused_before_its_body_is_read(server: Server, fetch: Any) -> None:
    refused(fetch, url=f"{server.base}/png")
    assert server.sent_by("png") < BIG // 2


def test_a_server_slow_to_answer_is_stopped_at_the_time_cap(server: Server) -> None:
    fetch = http_get(allow_hosts=["127.0.0.1"], allow_private=True, timeout=0.5)
    started = time.monotonic()
    text = refused(fetch, url=f"{server.base}/slowheaders")
    assert time.monotonic() - started < 1.2
    assert f"TimeCapExceeded: {server.base}/slowheaders: no complete response within the 0.5 s time cap" in text


def test_the_time_cap_covers_the_whole_fetch_not_each_read(server: Server) -> None:
    # Each byte of /slow comes well within any read timeout; the fetch as a whole does not.
    fetch = http_get(allow_hosts=["127.0.0.1"], allow_private=True, timeout=0.6)
    started = time.monotonic()
    assert "no complete response within the 0.6 s time cap" in refused(fetch, url=f"{server.base}/slow")
    assert 0.5 < time.monotonic() - started < 1.3
    assert server.sent_by("slow") < 200  # it hung up mid-body
