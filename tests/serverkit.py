"""Shared helpers for the server tests: a pinned rate sheet, a real in-process server, and
OTLP requests built directly with `opentelemetry.proto`.

Prices come only from `RATES` (ServeConfig(use_default_prices=False)), so every cost in the
tests is worked out by hand. Rates are USD per million tokens; $1/M is 10^9 femto-dollars
(10^-15 USD) per token (spanledger.pricing.money):

    model               input/M  cache_read/M  cache_write/M  output/M   (femto-$ per token)
    gpt-4o-mini         0.15     0.075         (input)        0.60       150e6 / 75e6 / 600e6
    claude-sonnet-4-5   3        0.30          3.75           15         3e9 / 300e6 / 3.75e9 / 15e9
    house-llm           2        (input)       (input)        8          2e9 / 8e9
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from spanledger.server.config import ServeConfig
from spanledger.server.run import Server

RATES = """\
version: server-tests-2026
models:
  - match: gpt-4o-mini
    provider: openai
    per_million: {input: 0.15, cache_read: 0.075, output: 0.60}
  - match: claude-sonnet-4-5
    provider: anthropic
    per_million: {input: 3, cache_read: 0.30, cache_write: 3.75, output: 15}
  - match: house-llm
    per_million: {input: 2, output: 8}
"""

FEMTO = 10**15  # femto-dollars per dollar
PROTOBUF = "application/x-protobuf"
JSON = "application/json"

T0 = 1_793_610_000_000_000_000  # 2026-11-02T09:00:00Z in ns since the epoch
MS = 1_000_000  # one millisecond in ns


# --- ids ---------------------------------------------------------------------------------

_counter = itertools.count(1)


def trace_id() -> str:
    """A fresh, random-looking 32-hex trace id (both 64-bit halves differ per call)."""
    n = next(_counter)
    high = (n * 0x9E3779B97F4A7C15) & ((1 << 64) - 1) | 1
    low = (n * 0xC2B2AE3D27D4EB4F + 0x165667B19E3779F9) & ((1 << 64) - 1) | 1
    return f"{high:016x}{low:016x}"


def span_id() -> str:
    n = next(_counter)
    return f"{((n * 0xD6E8FEB86659FD93) & ((1 << 64) - 1)) | 1:016x}"


# --- attributes --------------------------------------------------------------------------


def llm(
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    provider: str | None = None,
    cache_read: int | None = None,
    cache_write: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """OTel GenAI attributes of one chat call (input_tokens include cached tokens)."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
    }
    if provider is not None:
        attrs["gen_ai.provider.name"] = provider
    if cache_read is not None:
        attrs["gen_ai.usage.cache_read.input_tokens"] = cache_read
    if cache_write is not None:
        attrs["gen_ai.usage.cache_creation.input_tokens"] = cache_write
    attrs.update(extra)
    return attrs


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, tuple | list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    raise TypeError(f"no AnyValue for {value!r}")


def key_values(attrs: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in attrs.items()]


# --- spans and requests ------------------------------------------------------------------


@dataclass
class S:
    """One span to send. `start`/`end` are ms after T0."""

    trace: str
    span: str
    parent: str = ""
    name: str = "span"
    start: int = 0
    end: int = 1
    attrs: dict[str, Any] = field(default_factory=dict)
    status: int = 0  # 2 = error

    def pb(self) -> Span:
        span = Span(
            trace_id=bytes.fromhex(self.trace),
            span_id=bytes.fromhex(self.span),
            name=self.name,
            start_time_unix_nano=T0 + self.start * MS,
            end_time_unix_nano=T0 + self.end * MS,
            attributes=key_values(self.attrs),
        )
        if self.parent:
            span.parent_span_id = bytes.fromhex(self.parent)
        if self.status:
            span.status.code = self.status
        return span


def request(spans: Sequence[S | Span], resource: Mapping[str, Any] | None = None) -> bytes:
    """A serialized ExportTraceServiceRequest (one resource, one scope)."""
    message = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=key_values(resource or {"service.name": "svc-tests"})),
                scope_spans=[ScopeSpans(spans=[s.pb() if isinstance(s, S) else s for s in spans])],
            )
        ]
    )
    return message.SerializeToString()


def json_request(spans: Sequence[S], resource: Mapping[str, Any] | None = None) -> bytes:
    """The same request in OTLP/JSON: hex ids, lowerCamelCase, 64-bit ints as strings."""
    message = ExportTraceServiceRequest.FromString(request(spans, resource))
    document = json_format.MessageToDict(message)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:  # protobuf's JSON mapping writes bytes as base64
                        span[key] = _b64_to_hex(span[key])
    return json.dumps(document).encode()


def _b64_to_hex(text: str) -> str:
    return base64.b64decode(text).hex()


def status_of(response: httpx.Response) -> Status:
    """The google.rpc.Status body of an OTLP error answer, in either encoding."""
    if response.headers["content-type"].startswith(JSON):
        return json_format.Parse(response.content, Status())
    return Status.FromString(response.content)


def post(
    client: httpx.Client,
    url: str,
    body: bytes,
    *,
    content_type: str = PROTOBUF,
    gzipped: bool = False,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    sent = dict(headers or {})
    sent["content-type"] = content_type
    if gzipped:
        body = gzip.compress(body)
        sent["content-encoding"] = "gzip"
    return client.post(f"{url}/v1/traces", content=body, headers=sent)


# --- a real server -----------------------------------------------------------------------


def write_rates(directory: Path) -> Path:
    path = directory / "rates.yaml"
    path.write_text(RATES, encoding="utf-8")
    return path


def config(tmp_path: Path, **overrides: Any) -> ServeConfig:
    settings: dict[str, Any] = {
        "db": str(tmp_path / "ledger.duckdb"),
        "http": {"port": 0},
        "grpc": {"port": 0},
        "rates": [str(write_rates(tmp_path))],
        "use_default_prices": False,
        "finalize_after_seconds": 0.2,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    return ServeConfig.model_validate(settings)


@contextlib.contextmanager
def running(tmp_path: Path, **overrides: Any) -> Iterator[Server]:
    """A real server (DuckDB file in tmp_path, OTLP/HTTP on an ephemeral port)."""
    server = Server.build(config(tmp_path, **overrides)).start()
    try:
        yield server
    finally:
        server.close()


def eventually(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait for something another thread does: poll `condition` until it holds. The
    timeout only keeps a broken test from hanging (generous on a busy machine); no test
    asserts how long anything took."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened (waited {timeout:g} s): {what}")
        time.sleep(0.01)


class Gate:
    """A pipeline listener that holds the writer thread until opened: a stalled
    downstream, used to fill the ingest queue deterministically. Listeners run after a
    batch is stored and acknowledged, so the batch that trips the gate still succeeds.

    It lets the writer go by itself after `hold` seconds, so that a test that never opens
    it cannot hang the server; `open()` then fails the test, since what the test saw
    happened with the writer running, not held."""

    def __init__(self, hold: float = 30.0) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()
        self.closed = True
        self.hold = hold
        self.gave_way = False

    def __call__(self, spans: Sequence[Any]) -> None:
        if self.closed:
            self.entered.set()
            self.gave_way = not self._open.wait(self.hold)

    def open(self) -> None:
        self.closed = False
        self._open.set()
        assert not self.gave_way, (
            f"the gate let the writer go by itself after {self.hold:g} s, before the test opened it"
        )


def get(client: httpx.Client, url: str, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"{url}{path}", params=params)
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()
