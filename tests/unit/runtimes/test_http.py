"""Retries and errors of the HTTP layer, against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agentkit.errors import ContextLengthExceeded, ServerError
from agentkit.runtimes._http import ClientPool, RetryPolicy, _retry_after, get_json, post_events, post_json
from tests.support.scripted_server import Events, ScriptedServer

FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05, timeout=2.0, connect_timeout=1.0)


class Scripted(ScriptedServer):
    def post(self, policy: RetryPolicy = FAST) -> tuple[Any, list[dict[str, Any]]]:
        return asyncio.run(post_json(self.base + "/v1/completions", {"prompt": "hi"}, policy=policy))

    def events(self, policy: RetryPolicy = FAST) -> tuple[list[tuple[float, Any]], list[dict[str, Any]]]:
        """The events of a streamed answer, each with the time it came, and the retries it took."""

        async def read() -> tuple[list[tuple[float, Any]], list[dict[str, Any]]]:
            async with post_events(self.base + "/v1/completions", {"stream": True}, policy=policy) as events:
                return [(time.monotonic(), event) async for event in events], events.retries

        return asyncio.run(read())


@pytest.fixture
def server() -> Iterator[Scripted]:
    with Scripted() as scripted:
        yield scripted


def test_a_success_is_returned_with_no_retries(server: Scripted) -> None:
    server.replies = [(200, {}, {"choices": [{"text": "ok"}]})]
    body, retries = server.post()
    assert body == {"choices": [{"text": "ok"}]}
    assert retries == []
    assert server.seen[0][2] == {"prompt": "hi"}


def test_503_is_retried_and_recorded(server: Scripted) -> None:
    server.replies = [(503, {}, {"error": {"message": "busy"}}), (502, {}, {}), (200, {}, {"n": 1})]
    body, retries = server.post()
    assert body == {"n": 1}
    assert [r["status"] for r in retries] == [503, 502]
    assert retries[0]["error"] == "503 busy"
    assert len(server.seen) == 3


def test_429_waits_as_long_as_retry_after_says(server: Scripted) -> None:
    server.replies = [(429, {"Retry-After": "1"}, {"error": {"message": "slow down"}}), (200, {}, {"n": 2})]
    body, retries = server.post()
    assert body == {"n": 2}
    assert retries[0]["wait"] == 1.0
    gap = server.seen[1][0] - server.seen[0][0]
    assert gap >= 0.95, gap  # the backoff alone would have waited ~0.01 s


def test_a_retry_after_longer_than_allowed_fails_at_once(server: Scripted) -> None:
    server.replies = [(503, {"Retry-After": "3600"}, {"error": {"message": "maintenance"}})]
    with pytest.raises(ServerError, match="asks to wait 3600 s") as info:
        server.post()
    assert info.value.status == 503
    assert len(server.seen) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_4xx_fail_at_once_with_the_servers_message(server: Scripted, status: int) -> None:
    server.replies = [(status, {}, {"error": {"message": f"nope {status}"}})]
    with pytest.raises(ServerError, match=f"refused the request \\({status} .*\\): nope {status}") as info:
        server.post()
    assert info.value.status == status
    assert len(server.seen) == 1


def test_a_context_overflow_is_its_own_error(server: Scripted) -> None:
    message = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens."
    server.replies = [(400, {}, {"error": {"message": message}})]
    with pytest.raises(ContextLengthExceeded, match="maximum context length is 4096"):
        server.post()


def test_persistent_5xx_give_up_after_the_attempts(server: Scripted) -> None:
    server.replies = [(500, {}, {"error": {"message": f"boom {i}"}}) for i in range(10)]
    with pytest.raises(ServerError, match=r"failed after 4 attempts .*: 500 boom 3") as info:
        server.post()
    assert len(server.seen) == 4
    assert [r["attempt"] for r in info.value.retries] == [1, 2, 3, 4]


def test_a_hung_response_times_out_and_is_retried(server: Scripted) -> None:
    server.replies = ["hang", (200, {}, {"n": 3})]
    policy = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, timeout=0.5)
    body, retries = server.post(policy)
    assert body == {"n": 3}
    assert "ReadTimeout" in retries[0]["error"]


def test_the_deadline_bounds_the_retries(server: Scripted) -> None:
    server.replies = ["hang"] * 5
    policy = RetryPolicy(attempts=10, backoff=0.01, max_backoff=0.05, timeout=0.4, deadline=1.0)
    started = time.monotonic()
    with pytest.raises(ServerError, match="ReadTimeout"):
        server.post(policy)
    assert time.monotonic() - started < 2.5
    assert 2 <= len(server.seen) <= 4


def test_a_refused_connection_names_the_url() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/completions"
    with pytest.raises(ServerError, match=f"POST {url} failed after 4 attempts.*connection failed.*agentkit doctor"):
        asyncio.run(post_json(url, {}, policy=FAST))


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), (None, None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_values(header: str | None, expected: float | None) -> None:
    assert _retry_after(header) == expected


def test_a_redirect_is_not_followed_or_retried(server: Scripted) -> None:
    server.replies = [(301, {"Location": "https://example.com/v1/completions"}, {})]
    with pytest.raises(ServerError, match=r"redirects to https://example\.com/v1/completions"):
        server.post()
    assert len(server.seen) == 1


def test_an_answer_that_is_not_json_is_not_asked_for_again(server: Scripted) -> None:
    server.replies = [(200, {"content-type": "text/html"}, None)]
    server.raw_body = b"<html>not json</html>"
    with pytest.raises(ServerError, match="with a body that is not JSON"):
        server.post()
    assert len(server.seen) == 1


def test_a_malformed_url_fails_at_once() -> None:
    with pytest.raises(ServerError, match="failed: UnsupportedProtocol"):
        asyncio.run(post_json("localhost:8000/v1/completions", {}, policy=FAST))


# --- streams: server-sent events ------------------------------------------------------------


def test_events_come_as_the_server_sends_them(server: Scripted) -> None:
    server.replies = [(200, {}, Events([{"n": 1}, {"n": 2}, {"n": 3}], pause=0.3))]
    events, retries = server.events()
    assert [event for _, event in events] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert retries == []
    assert events[2][0] - events[0][0] >= 0.45  # the first was read before the last was sent


def test_event_fields_comments_and_lines_of_data(server: Scripted) -> None:
    stream = ': a comment\r\n\r\nevent: chunk\nid: 7\ndata: {"a":\ndata: 1}\n\ndata:{"b":2}\n\ndata: [DONE]\n\n'
    server.replies = [(200, {}, Events([], verbatim=stream + 'data: {"after": "done"}\n\n'))]
    events, _ = server.events()
    assert [event for _, event in events] == [{"a": 1}, {"b": 2}]


def test_a_503_before_the_stream_opens_is_retried(server: Scripted) -> None:
    server.replies = [(503, {}, {"error": {"message": "busy"}}), (200, {}, Events([{"n": 1}]))]
    events, retries = server.events()
    assert [event for _, event in events] == [{"n": 1}]
    assert [r["status"] for r in retries] == [503]


def test_a_stream_that_breaks_is_an_error_and_not_asked_for_again(server: Scripted) -> None:
    server.replies = [(200, {}, Events([{"n": 1}, {"n": 2}, {"n": 3}], cut_after=2)), (200, {}, Events([]))]
    with pytest.raises(ServerError, match=r"the stream from .* broke after 2 events"):
        server.events()
    assert len(server.seen) == 1


def test_an_error_in_the_stream_is_a_server_error(server: Scripted) -> None:
    server.replies = [(200, {}, Events([{"n": 1}, {"error": {"message": "the engine died", "code": 500}}]))]
    with pytest.raises(ServerError, match="failed while streaming: the engine died"):
        server.events()


def test_a_stream_that_breaks_before_its_first_event_is_asked_for_again(server: Scripted) -> None:
    server.replies = [(200, {}, Events([{"n": 1}], cut_after=0)), (200, {}, Events([{"n": 2}]))]
    events, retries = server.events()
    assert [event for _, event in events] == [{"n": 2}]
    assert "RemoteProtocolError" in retries[0]["error"]


def test_a_whole_answer_is_one_event(server: Scripted) -> None:
    server.replies = [(200, {}, {"choices": [{"text": "whole"}]})]
    events, _ = server.events()
    assert [event for _, event in events] == [{"choices": [{"text": "whole"}]}]
    server.replies = [(200, {"content-type": "text/html"}, None)]
    server.raw_body = b"<html>not json</html>"
    with pytest.raises(ServerError, match="neither a stream of events nor JSON"):
        server.events()


def test_a_context_overflow_before_the_stream_is_its_own_error(server: Scripted) -> None:
    server.replies = [(400, {}, {"error": {"message": "maximum context length is 4096 tokens"}})]
    with pytest.raises(ContextLengthExceeded, match="maximum context length"):
        server.events()


# --- the pool of keep-alive clients ---------------------------------------------------------


def keep_alive(server: ScriptedServer) -> list[int]:
    """Make `server` keep its connections open (HTTP/1.1) and count them: one entry a connection."""
    connections: list[int] = []
    handle = server.server.process_request

    def counted(request: Any, address: Any) -> None:
        connections.append(address[1])
        handle(request, address)

    server.server.RequestHandlerClass.protocol_version = "HTTP/1.1"  # type: ignore[attr-defined]
    server.server.process_request = counted  # type: ignore[method-assign]
    return connections


def test_a_pool_keeps_one_connection_for_the_requests_of_a_loop(server: Scripted) -> None:
    connections = keep_alive(server)
    pool = ClientPool(FAST)

    async def three() -> list[Any]:
        client = pool.client()
        bodies = [(await get_json(server.base + "/v1/models", policy=FAST, client=pool.client()))[0] for _ in range(3)]
        assert pool.client() is client
        return bodies

    assert asyncio.run(three()) == [{}, {}, {}]
    assert len(server.seen) == 3
    assert len(connections) == 1


def test_a_pool_serves_one_loop_after_another_and_closes_each_client_with_its_loop(server: Scripted) -> None:
    # Agent.run makes a loop per call: a client must neither outlive its loop
    # (a ResourceWarning, an error here) nor be used on the next one ("Event loop is closed").
    keep_alive(server)
    pool = ClientPool(FAST)

    async def once() -> Any:
        await get_json(server.base + "/v1/models", policy=FAST, client=pool.client())
        return pool.client()

    first = asyncio.run(once())
    second = asyncio.run(once())
    assert first is not second
    assert first.is_closed
    assert second.is_closed


def test_closing_a_pool_closes_its_client_and_a_later_request_opens_another(server: Scripted) -> None:
    connections = keep_alive(server)
    pool = ClientPool(FAST)

    async def run() -> None:
        first = pool.client()
        await get_json(server.base + "/v1/models", policy=FAST, client=first)
        await pool.aclose()
        assert first.is_closed
        await pool.aclose()  # twice is fine
        await get_json(server.base + "/v1/models", policy=FAST, client=pool.client())
        assert pool.client() is not first

    asyncio.run(run())
    assert len(connections) == 2


def test_each_request_takes_its_timeouts_from_its_policy_not_the_pools(server: Scripted) -> None:
    server.replies = ["hang"]
    pool = ClientPool(RetryPolicy(timeout=60.0))  # the clients' default: far longer than the hang
    started = time.monotonic()

    async def run() -> Any:
        return await post_json(
            server.base + "/v1/x", {}, policy=RetryPolicy(attempts=1, timeout=0.3), client=pool.client()
        )

    with pytest.raises(ServerError, match="ReadTimeout"):
        asyncio.run(run())
    assert time.monotonic() - started < 2.5
