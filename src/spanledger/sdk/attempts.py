"""One span per HTTP attempt: the retries an SDK client makes inside one call, made visible.

The `openai` and `anthropic` SDKs retry a 429, a 5xx or a dropped connection inside one
`create(...)` call (`max_retries`), and they send through `httpx2`, which no OpenTelemetry
HTTP instrumentation patches. The instrumentation's one call span covers every attempt, so
the failures that were retried leave no trace. A traced transport, given to the SDK's own
HTTP client, records each attempt as a CLIENT child of the span current when the request is
sent (the call span of openai-v2, or of the anthropic SDK's own tracing):

>>> transport = spanledger.sdk.traced_transport(health=ledger.health)
>>> client = openai.OpenAI(http_client=openai.DefaultHttpxClient(transport=transport))
>>> aclient = anthropic.AsyncAnthropic(
...     http_client=anthropic.DefaultAsyncHttpxClient(
...         transport=spanledger.sdk.traced_async_transport()))

An attempt span carries the OTel HTTP client attributes (`http.request.method`, `url.full`,
`server.address`, `server.port`, `http.response.status_code`, `http.request.resend_count`,
`error.type`) and `spanledger.attempt` (1 for the first attempt). It carries no `gen_ai.*`
attribute on purpose: the call span holds the model and the usage, so an attempt is never
priced, counted as an LLM call or charged to a budget. The trace assembler flags a failed
attempt that a later attempt of the same request retried (`PricedSpan.retry`).

Decisions:

* An attempt span ends when its response body is closed, not when the headers arrive: its
  duration then covers the whole transfer (for a streamed completion, the generation), and
  an error while reading the body lands on the attempt that suffered it. The SDKs read and
  close every body, the failed attempts' before they retry; a stream the application
  abandons without closing ends its span when it is garbage-collected.
* No trace context or baggage is injected into the request: the provider does not use it,
  and baggage would send attribution (user ids) to a third party.
* With no span current there is no call to attach an attempt to, so none is made (a stray
  root span per HTTP request would only litter the backend).
* `url.full` never carries credentials: user info and every query value, except a few known
  harmless ones such as `api-version`, read `REDACTED` (some APIs take `?key=` secrets).
* Never breaks the host: the request always goes through the inner transport unchanged; an
  error of the tracing is logged and counted in `health.errors["attempts"]`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx2  # installed with genai-prices; the openai and anthropic SDKs send through it
from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from spanledger import __version__
from spanledger import conventions as c
from spanledger.sdk.health import Health

log = logging.getLogger("spanledger.sdk")

__all__ = [
    "AsyncTracedTransport",
    "TracedTransport",
    "traced_async_transport",
    "traced_transport",
]

SCOPE = "spanledger.sdk.attempts"

SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
NETWORK_PROTOCOL_VERSION = "network.protocol.version"

RETRY_COUNT_HEADER = "x-stainless-retry-count"
"""The attempt's resend count, as the openai and anthropic SDKs send it on every request."""

DEFAULT_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)
"""The connection limits of the openai and anthropic SDKs' default clients (a client given a
transport no longer applies its own limits to it)."""

_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
_HARMLESS_QUERY_KEYS = frozenset({"api-version", "alt", "beta"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDACTED = "REDACTED"


def traced_transport(
    inner: httpx2.BaseTransport | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    health: Health | None = None,
) -> TracedTransport:
    """A transport for `openai.DefaultHttpxClient(transport=...)` or
    `anthropic.DefaultHttpxClient(transport=...)` that makes one span per HTTP attempt.

    `inner` sends the requests (default: `httpx2.HTTPTransport` with the SDKs' connection
    limits; pass your own for proxies or other limits). `tracer_provider` defaults to the
    global one, which `spanledger.instrument()` sets up; give `ledger.health` as `health` to
    count tracing errors with the ledger's."""
    return TracedTransport(inner, tracer_provider=tracer_provider, health=health)


def traced_async_transport(
    inner: httpx2.AsyncBaseTransport | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    health: Health | None = None,
) -> AsyncTracedTransport:
    """`traced_transport` for `AsyncOpenAI` / `AsyncAnthropic`, with their
    `DefaultAsyncHttpxClient(transport=...)`."""
    return AsyncTracedTransport(inner, tracer_provider=tracer_provider, health=health)


class _Attempts:
    """What the sync and async transports share: starting, filling and ending attempt spans.
    Every method swallows its own errors (counted in `health`) and never raises."""

    def __init__(self, tracer_provider: trace.TracerProvider | None, health: Health | None):
        self.health = health or Health()
        self._resends = _ResendCounter()
        try:
            self._tracer: Tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
        except Exception:
            self._failed("could not get a tracer; HTTP attempts are not traced")
            self._tracer = trace.NoOpTracer()

    def start(self, request: httpx2.Request) -> _Attempt | None:
        """The span of an attempt about to be sent, or None (not traced, or tracing failed)."""
        try:
            if context.get_value(context._SUPPRESS_INSTRUMENTATION_KEY) or context.get_value(
                context._SUPPRESS_HTTP_INSTRUMENTATION_KEY
            ):
                return None
            parent = trace.get_current_span().get_span_context()
            if not parent.is_valid:
                return None  # no call to attach the attempt to
            url = request.url
            method = request.method.upper()
            known = method in _KNOWN_METHODS
            resends = _resend_count(request)
            if resends is None:
                resends = self._resends.next(parent, method, url)
            attributes: dict[str, Any] = {
                c.HTTP_REQUEST_METHOD: method if known else "_OTHER",
                c.URL_FULL: redacted_url(url),
                SERVER_ADDRESS: url.host,
                c.HTTP_REQUEST_RESEND_COUNT: resends,
                c.ATTEMPT: resends + 1,
            }
            port = url.port or _DEFAULT_PORTS.get(url.scheme)
            if port is not None:
                attributes[SERVER_PORT] = port
            if not known:
                attributes[c.HTTP_REQUEST_METHOD_ORIGINAL] = request.method
            name = f"{method if known else 'HTTP'} {url.path}"
            span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
            return _Attempt(span, self)
        except Exception:
            self._failed("could not start the span of an HTTP attempt")
            return None

    def _failed(self, what: str) -> None:
        self.health.error("attempts")
        log.exception("spanledger: %s; the request goes on untraced", what)


class _Attempt:
    """One attempt's span, from the request until its response body is closed."""

    __slots__ = ("_ended", "_owner", "_token", "span")

    def __init__(self, span: Span, owner: _Attempts) -> None:
        self.span = span
        self._owner = owner
        self._ended = False
        self._token: object | None = None

    def enter(self) -> None:
        """Make the attempt current while the inner transport sends it (so anything it
        traces nests under the attempt)."""
        try:
            self._token = context.attach(trace.set_span_in_context(self.span))
        except Exception:
            self._owner._failed("could not make the HTTP attempt span current")

    def leave(self) -> None:
        if self._token is None:
            return
        try:
            context.detach(self._token)  # type: ignore[arg-type]
        except Exception:
            self._owner._failed("could not restore the context after an HTTP attempt")
        self._token = None

    def responded(self, response: httpx2.Response) -> None:
        try:
            span = self.span
            status = response.status_code
            span.set_attribute(c.HTTP_RESPONSE_STATUS_CODE, status)
            version = response.http_version
            if version.startswith("HTTP/"):
                span.set_attribute(NETWORK_PROTOCOL_VERSION, version[5:])
            if status >= 400:  # a client span's 4xx is an error too (OTel HTTP conventions)
                span.set_attribute(c.ERROR_TYPE, str(status))
                span.set_status(Status(StatusCode.ERROR))
        except Exception:
            self._owner._failed("could not record an HTTP response on its attempt span")

    def failed(self, error: BaseException) -> None:
        try:
            self.span.set_attribute(c.ERROR_TYPE, type(error).__qualname__)
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, str(error)))
        except Exception:
            self._owner._failed("could not record an HTTP error on its attempt span")

    def follow(self, response: httpx2.Response, body: type[_SyncBody | _AsyncBody]) -> None:
        """End the span when the response body closes (at once if it cannot be followed)."""
        try:
            response.stream = body(response.stream, self)  # type: ignore[arg-type]
        except Exception:
            self._owner._failed("could not follow an HTTP response body")
            self.end()

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            self.span.end()
        except Exception:
            self._owner._failed("could not end an HTTP attempt span")


class TracedTransport(httpx2.BaseTransport):
    """An `httpx2` transport that records each request it sends as an attempt span.
    See `traced_transport`."""

    def __init__(
        self,
        inner: httpx2.BaseTransport | None = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        health: Health | None = None,
    ) -> None:
        self.inner = inner if inner is not None else httpx2.HTTPTransport(limits=DEFAULT_LIMITS)
        self._attempts = _Attempts(tracer_provider, health)

    @property
    def health(self) -> Health:
        """Tracing errors swallowed so that requests went on."""
        return self._attempts.health

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        attempt = self._attempts.start(request)
        if attempt is None:
            return self.inner.handle_request(request)
        attempt.enter()
        try:
            response = self.inner.handle_request(request)
        except BaseException as error:
            attempt.failed(error)
            attempt.end()
            raise
        finally:
            attempt.leave()
        attempt.responded(response)
        attempt.follow(response, _SyncBody)
        return response

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> TracedTransport:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.inner.__exit__(*exc_info)


class AsyncTracedTransport(httpx2.AsyncBaseTransport):
    """`TracedTransport` for async clients. See `traced_async_transport`."""

    def __init__(
        self,
        inner: httpx2.AsyncBaseTransport | None = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        health: Health | None = None,
    ) -> None:
        self.inner = (
            inner if inner is not None else httpx2.AsyncHTTPTransport(limits=DEFAULT_LIMITS)
        )
        self._attempts = _Attempts(tracer_provider, health)

    @property
    def health(self) -> Health:
        """Tracing errors swallowed so that requests went on."""
        return self._attempts.health

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        attempt = self._attempts.start(request)
        if attempt is None:
            return await self.inner.handle_async_request(request)
        attempt.enter()
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException as error:
            attempt.failed(error)
            attempt.end()
            raise
        finally:
            attempt.leave()
        attempt.responded(response)
        attempt.follow(response, _AsyncBody)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> AsyncTracedTransport:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.inner.__aexit__(*exc_info)


class _SyncBody(httpx2.SyncByteStream):
    """A response body that ends its attempt's span when it is closed."""

    def __init__(self, body: httpx2.SyncByteStream, attempt: _Attempt) -> None:
        self._body = body
        self._attempt = attempt

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except Exception as error:  # not GeneratorExit: a reader that stops is no error
            self._attempt.failed(error)
            raise

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            self._attempt.end()

    def __del__(self) -> None:
        attempt = getattr(self, "_attempt", None)
        if attempt is not None:
            attempt.end()  # a body nobody closed: its span still ends


class _AsyncBody(httpx2.AsyncByteStream):
    """An async response body that ends its attempt's span when it is closed."""

    def __init__(self, body: httpx2.AsyncByteStream, attempt: _Attempt) -> None:
        self._body = body
        self._attempt = attempt

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._body.__aiter__()
        try:
            async for chunk in chunks:
                yield chunk
        except Exception as error:  # not CancelledError: a cancelled reader is no error
            self._attempt.failed(error)
            raise
        finally:
            if isinstance(chunks, AsyncGenerator):  # as httpx2's own body wrapper does
                await chunks.aclose()

    async def aclose(self) -> None:
        try:
            await self._body.aclose()
        finally:
            self._attempt.end()

    def __del__(self) -> None:
        attempt = getattr(self, "_attempt", None)
        if attempt is not None:
            attempt.end()


def _resend_count(request: httpx2.Request) -> int | None:
    """The resend count the SDK put on the request, if any."""
    value = request.headers.get(RETRY_COUNT_HEADER)
    if value is None:
        return None
    try:
        count = int(value)
    except ValueError:
        return None
    return count if count >= 0 else None


class _ResendCounter:
    """Resend counts for clients that do not send `x-stainless-retry-count`: the n-th request
    to the same method and URL under the same parent span is resend n - 1. Bounded."""

    MAX_ENTRIES = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[int, int, str, str], int] = OrderedDict()

    def next(self, parent: trace.SpanContext, method: str, url: httpx2.URL) -> int:
        key = (parent.trace_id, parent.span_id, method, str(url))
        with self._lock:
            count = self._seen.pop(key, 0)
            self._seen[key] = count + 1
            while len(self._seen) > self.MAX_ENTRIES:
                self._seen.popitem(last=False)
        return count


def redacted_url(url: httpx2.URL) -> str:
    """`url` as `url.full` may carry it: no user info, and no query value that could be a
    secret (all but a few known harmless keys read REDACTED)."""
    scheme, host = url.scheme, url.host
    if ":" in host:
        host = f"[{host}]"  # IPv6
    authority = f"{_REDACTED}:{_REDACTED}@{host}" if url.userinfo else host
    if url.port is not None:
        authority += f":{url.port}"
    path = url.raw_path.split(b"?", 1)[0].decode("ascii", "replace")
    out = f"{scheme}://{authority}{path}"
    query = url.query.decode("ascii", "replace")
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        out += "?" + "&".join(
            f"{quote(key)}={quote(value) if key in _HARMLESS_QUERY_KEYS else _REDACTED}"
            for key, value in pairs
        )
    return out
