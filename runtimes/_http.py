"""HTTP to model servers: JSON requests with bounded, jittered retries.

Every server runtime (`VLLMServer`, `OpenAICompatible`) talks through
`post_json` / `get_json`, and streams through `post_events`, whose retries
end once the server has begun to answer. What is retried, and how:

- connection errors (refused, reset, the server dying mid-response) and
  timeouts, 429 and 5xx: retried with jittered exponential backoff, or after
  the server's `Retry-After` when it sends one, until `RetryPolicy.attempts`
  or `RetryPolicy.deadline` runs out;
- any other 4xx: not retried, a `ServerError` with the server's own message.

Each retry is logged on `agentkit.http` and returned to the caller, which
keeps it in the step's metadata, so a trajectory shows what a step cost.
Credentials in the headers (`Authorization`, `X-API-Key`...) are declared
secrets (`agentkit.secrets`), so a server that echoes one back in an error
is masked in what is logged and stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import json
import logging
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.wait import wait_exponential, wait_random

from agentkit.errors import ContextLengthExceeded, ServerError
from agentkit.secrets import declare_headers

__all__ = [
    "ClientPool",
    "EventStream",
    "RetryPolicy",
    "Transient",
    "check_url",
    "first_choice",
    "get_json",
    "post_events",
    "post_json",
]

log = logging.getLogger("agentkit.http")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard to try a server before giving up on a request."""

    attempts: int = 4
    """Tries in all, the first included."""
    deadline: float = 300.0
    """Seconds from the first try after which no new try starts."""
    backoff: float = 0.5
    """The first wait, in seconds; doubled after each failure, with jitter."""
    max_backoff: float = 10.0
    """The longest wait between tries when the server names none."""
    max_retry_after: float = 60.0
    """The longest `Retry-After` honoured; a longer one ends the retries."""
    timeout: float = 180.0
    """Seconds to wait for a response (a CPU server under load can take minutes)."""
    connect_timeout: float = 5.0


class Transient(Exception):
    """A failure worth another try: a 429 or 5xx answer, or no answer at all."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(response: httpx.Response) -> str:
    """The error text a server put in its body (OpenAI's `{"error": {"message"}}` and kin)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping):
            return str(error.get("message") or error.get("detail") or json.dumps(error))[:500]
        if isinstance(body.get("detail"), str):
            return str(body["detail"])[:500]
        return str(error)[:500]
    return str(body)[:500]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Transient):
        return str(exc)
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed ({exc or type(exc).__name__})"
    if isinstance(exc, httpx.TimeoutException):
        return f"{type(exc).__name__} (no answer in time)"
    return f"{type(exc).__name__}: {exc}"


_TRANSPORT_FAULTS = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
"""No answer: refused and reset connections, every kind of timeout, a server
that closed mid-response. (Not a bad URL or proxy setting: retrying cannot help.)"""

# How servers say a prompt is too long: vLLM's and OpenAI's message and code, llama.cpp's.
_CONTEXT_MARKERS = ("context length", "context size", "context_length_exceeded", "exceed_context_size")


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, (Transient, *_TRANSPORT_FAULTS))


def check_url(url: str) -> str:
    """`url` without a trailing slash, or a `ServerError` if it is not an http(s) URL."""
    if not url.startswith(("http://", "https://")):
        raise ServerError(f"{url!r} is not a server URL: give one like http://localhost:8000/v1", url=url)
    return url.rstrip("/")


def first_choice(body: Any, url: str) -> dict[str, Any]:
    """The first of a completion's `choices`, or a `ServerError` that shows what came instead."""
    choices = body.get("choices") if isinstance(body, Mapping) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        return dict(choices[0])
    raise ServerError(f"{url} answered without a completion: {json.dumps(body)[:300]}", url=url)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for every client: building one reads the CA bundle (~30 ms,
    blocking the event loop), and a pool makes a client per event loop."""
    return httpx.create_ssl_context()


class _Wait:
    """The server's `Retry-After` when it gave one, jittered backoff otherwise."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        jitter = wait_random(0, policy.backoff)
        self.backoff = wait_exponential(multiplier=policy.backoff, max=policy.max_backoff) + jitter

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, Transient) and exc.retry_after is not None:
            return exc.retry_after
        return float(self.backoff(state))


class _Attempts:
    """The tries of one request under a policy: the retries they took, how an
    answer's status is judged, and the error they end in when none is usable."""

    def __init__(self, method: str, url: str, policy: RetryPolicy) -> None:
        self.method, self.url, self.policy = method, url, policy
        self.retries: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self.policy.attempts) | stop_before_delay(self.policy.deadline),
            wait=_Wait(self.policy),
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        entry = {"attempt": state.attempt_number, "error": _describe(exc) if exc else "", "wait": round(wait, 3)}
        if isinstance(exc, Transient) and exc.status is not None:
            entry["status"] = exc.status
        self.retries.append(entry)
        log.warning(
            "%s %s: %s; retrying in %.1f s (attempt %d of %d)",
            self.method, self.url, entry["error"], wait, state.attempt_number + 1, self.policy.attempts,
        )  # fmt: skip

    def check(self, response: httpx.Response) -> None:
        """Raise what a status other than 2xx means (`response`'s body read)."""
        url, status, policy = self.url, response.status_code, self.policy
        if status == 429 or status >= 500:
            wait = _retry_after(response.headers.get("retry-after"))
            if wait is not None and wait > policy.max_retry_after:
                raise ServerError(
                    f"{url} answered {status} and asks to wait {wait:.0f} s, longer than "
                    f"RetryPolicy.max_retry_after ({policy.max_retry_after:g} s): {_server_message(response)}",
                    url=url,
                    status=status,
                    retries=tuple(self.retries),
                )
            raise Transient(f"{status} {_server_message(response)}", status=status, retry_after=wait)
        if status >= 400:
            message = _server_message(response)
            if status in (400, 413) and any(m in response.text.lower() for m in _CONTEXT_MARKERS):
                raise ContextLengthExceeded(
                    f"{url}: {message} (shorten the conversation, lower Sampling.max_tokens, "
                    "or serve the model with a longer context)"
                )
            raise ServerError(
                f"{url} refused the request ({status} {response.reason_phrase}): {message}",
                url=url,
                status=status,
                retries=tuple(self.retries),
            )
        if status >= 300:  # a redirect: retrying the POST would be redirected again
            where = response.headers.get("location", "elsewhere")
            raise ServerError(f"{url} redirects to {where} ({status}): use that URL", url=url, status=status)

    @contextlib.contextmanager
    def failures(self) -> Iterator[None]:
        """Turns what is left when the tries run out into a `ServerError` that says what happened."""
        method, url = self.method, self.url
        try:
            yield
        except (Transient, *_TRANSPORT_FAULTS) as exc:
            retries, tries = self.retries, len(self.retries) + 1
            elapsed = time.monotonic() - self.started
            status = exc.status if isinstance(exc, Transient) else None
            hint = " Is the server running? `agentkit doctor` probes it." if isinstance(exc, httpx.ConnectError) else ""
            raise ServerError(
                f"{method} {url} failed after {tries} attempt{'s' if tries > 1 else ''} over {elapsed:.1f} s: "
                f"{_describe(exc)}.{hint}",
                url=url,
                status=status,
                retries=(
                    *retries,
                    {"attempt": tries, "error": _describe(exc)} | ({"status": status} if status else {}),
                ),
            ) from exc
        except httpx.HTTPError as exc:  # a bad URL, a proxy refusing: not worth another try
            raise ServerError(f"{method} {url} failed: {type(exc).__name__}: {exc}", url=url) from exc


def _timeout(policy: RetryPolicy) -> httpx.Timeout:
    return httpx.Timeout(policy.timeout, connect=policy.connect_timeout)


def _new_client(policy: RetryPolicy) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=_timeout(policy), verify=_ssl_context())


class ClientPool:
    """One keep-alive `httpx.AsyncClient` per event loop, for one runtime.

        pool = ClientPool(policy)
        body, retries = await post_json(url, payload, policy=policy, client=pool.client())
        await pool.aclose()

    An httpx client belongs to the loop it first ran on, and `Agent.run` makes
    a fresh loop per call; so the pool keeps a client per live loop, and a
    client closes with its loop: `asyncio.run` (which `Agent.run` uses) closes
    it as it finalizes the loop's async generators. `aclose()` closes the
    running loop's client at once and forgets the others.

    Each request still takes its timeouts from the policy it is sent under;
    the pool's own policy only sets its clients' defaults.
    """

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._clients: dict[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, AsyncGenerator[None, None]]] = {}

    def client(self) -> httpx.AsyncClient:
        """The running loop's client, made on first use.

        Raises:
            RuntimeError: no event loop is running.
        """
        loop = asyncio.get_running_loop()
        for other in [other for other in self._clients if other.is_closed()]:
            del self._clients[other]
        if loop not in self._clients:
            client = _new_client(self.policy)
            self._clients[loop] = (client, _closed_with_loop(client))
        return self._clients[loop][0]

    async def aclose(self) -> None:
        """Close the running loop's client; forget every other one."""
        clients, self._clients = self._clients, {}
        with contextlib.suppress(RuntimeError):  # no running loop: nothing can be closed
            mine = clients.get(asyncio.get_running_loop())
            if mine is not None:
                client, closer = mine
                await client.aclose()
                await closer.aclose()


def _closed_with_loop(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """An async generator, begun now on the running loop, whose `finally` closes `client`.

    The loop knows every async generator begun on it, and `asyncio.run`
    closes those still open before it closes the loop (`shutdown_asyncgens`):
    so the client's connections close on their own loop, not as garbage after
    it (a `ResourceWarning`). The generator has no await before its `yield`,
    so beginning it needs no await either.
    """

    async def close_at_the_end() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await client.aclose()

    closer = close_at_the_end()
    step = closer.__anext__()  # registers the generator with the running loop
    with contextlib.suppress(StopIteration):
        step.send(None)  # runs it to its `yield`
    return closer


@contextlib.asynccontextmanager
async def _client(client: httpx.AsyncClient | None, policy: RetryPolicy) -> AsyncIterator[httpx.AsyncClient]:
    """`client`, or a fresh one for this request alone."""
    if client is not None:
        yield client
        return
    async with _new_client(policy) as http:
        yield http


async def _request(
    method: str,
    url: str,
    *,
    payload: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    policy: RetryPolicy,
    client: httpx.AsyncClient | None,
) -> tuple[Any, list[dict[str, Any]]]:
    declare_headers(headers)
    attempts = _Attempts(method, url, policy)

    async def once(http: httpx.AsyncClient) -> Any:
        response = await http.request(method, url, json=payload, headers=dict(headers), timeout=_timeout(policy))
        attempts.check(response)
        try:
            return response.json()
        except ValueError as exc:  # an answer came; asking again would repeat the work
            raise ServerError(
                f"{url} answered {response.status_code} with a body that is not JSON: {response.text[:200]!r}",
                url=url,
                status=response.status_code,
            ) from exc

    with attempts.failures():
        async with _client(client, policy) as http:
            return await attempts.retrying()(once, http), attempts.retries


async def post_json(
    url: str,
    payload: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    policy: RetryPolicy | None = None,
    client: httpx.AsyncClient | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """POST `payload` as JSON; returns the JSON answer and the retries it took.

    Raises:
        ServerError: no usable answer within the policy, or a 4xx refusal.
        ContextLengthExceeded: the server says the prompt is too long.
    """
    return await _request(
        "POST", url, payload=payload, headers=headers or {}, policy=policy or RetryPolicy(), client=client
    )


_END = object()


class EventStream:
    """The events of an answer streamed as server-sent events: each event's `data`,
    decoded from JSON, as it comes, until `[DONE]` or the end of the answer. A
    server that answers whole (JSON, not a stream) gives one event: its answer."""

    def __init__(self, response: httpx.Response, url: str) -> None:
        self.response, self.url = response, url
        self.retries: list[dict[str, Any]] = []
        """The retries it took to open the stream (`post_json`'s form)."""
        self._events = self._read()
        self._first: Any = _END

    async def open(self) -> None:
        """Read up to the first event: a failure before it may be tried again, as nothing has been used."""
        self._first = await anext(self._events, _END)

    async def __aiter__(self) -> AsyncIterator[Any]:
        if self._first is _END:
            return
        yield self._first
        count = 1
        try:
            async for event in self._events:
                count += 1
                yield event
        except httpx.HTTPError as exc:
            raise ServerError(
                f"the stream from {self.url} broke after {count} event{'s' if count > 1 else ''}: {_describe(exc)}",
                url=self.url,
            ) from exc

    async def aclose(self) -> None:
        await self._events.aclose()
        await self.response.aclose()

    async def _read(self) -> AsyncGenerator[Any, None]:
        if not self.response.headers.get("content-type", "").startswith("text/event-stream"):
            yield self._decode(await self.response.aread(), whole=True)
            return
        data: list[str] = []
        async for line in self.response.aiter_lines():
            if line.startswith("data:"):
                data.append(line.removeprefix("data:").removeprefix(" "))
            elif not line and data:  # a blank line ends an event
                if (event := "\n".join(data)) == "[DONE]":
                    return
                data = []
                yield self._decode(event)
            # Other fields (`event:`, `id:`) and comments (`:`) mean nothing here.
        if data and (event := "\n".join(data)) != "[DONE]":  # the last event, left without its blank line
            yield self._decode(event)

    def _decode(self, event: str | bytes, *, whole: bool = False) -> Any:
        try:
            value = json.loads(event)
        except ValueError as exc:
            what = "a body that is neither a stream of events nor JSON" if whole else "an event that is not JSON"
            raise ServerError(f"{self.url} answered with {what}: {event[:200]!r}", url=self.url) from exc
        error = value.get("error") if isinstance(value, Mapping) and not whole else None
        if error:  # vLLM reports a failure after the answer has begun as an event
            message = error.get("message") if isinstance(error, Mapping) else error
            raise ServerError(f"{self.url} failed while streaming: {message}", url=self.url)
        return value


@contextlib.asynccontextmanager
async def post_events(
    url: str,
    payload: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    policy: RetryPolicy | None = None,
    client: httpx.AsyncClient | None = None,
) -> AsyncIterator[EventStream]:
    """POST `payload` as JSON and read the answer as server-sent events, as they come.

        async with post_events(url, {**payload, "stream": True}) as events:
            async for event in events:  # each event's JSON
                ...

    Until its first event has come, the stream is tried as `post_json` tries a
    request, with the same retries and errors. After it, nothing is tried
    again: what the stream brought may be in use already, so a stream that
    breaks is a `ServerError`.

    Raises:
        ServerError: as `post_json`; also a stream that breaks after its first
            event, or reports an error.
        ContextLengthExceeded: the server says the prompt is too long.
    """
    policy = policy or RetryPolicy()
    declare_headers(headers or {})
    attempts = _Attempts("POST", url, policy)

    async def once(http: httpx.AsyncClient) -> EventStream:
        request = http.build_request("POST", url, json=payload, headers=dict(headers or {}), timeout=_timeout(policy))
        response = await http.send(request, stream=True)
        stream = EventStream(response, url)
        try:
            if response.status_code >= 300:
                await response.aread()
                attempts.check(response)
            await stream.open()
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async with _client(client, policy) as http:
        with attempts.failures():
            stream: EventStream = await attempts.retrying()(once, http)
        stream.retries = attempts.retries
        try:
            yield stream
        finally:
            await stream.aclose()


async def get_json(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    policy: RetryPolicy | None = None,
    client: httpx.AsyncClient | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """GET a JSON document; same retries and errors as `post_json`."""
    return await _request(
        "GET", url, payload=None, headers=headers or {}, policy=policy or RetryPolicy(), client=client
    )
