"""Forwarding enriched spans to another OTLP endpoint: a real SpanLedger server receiving
from the real OTel SDK over OTLP/HTTP, and a real downstream HTTP server that records the
protobuf bodies it receives (and can answer slowly, refuse, or not exist at all).

Waiting for the forwarder's thread is bounded polling with a generous deadline; no test
asserts how long anything took.
"""

from __future__ import annotations

import base64
import json
import math
import socket
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from serverkit import JSON, S, eventually, llm, post, request, running, span_id, trace_id
from spanledger.pricing.book import NOT_LLM
from spanledger.server.forward import Forwarder, encode_spans
from spanledger.server.otlp import decode_json, decode_protobuf
from spanledger.server.run import Server
from spanledger.spans import SpanRecord
from spanledger.traces import PricedSpan
from spanledger.usage import Usage

EVERY_TYPE: dict[str, Any] = {
    "a.str": "hello",
    "a.empty_str": "",
    "a.unicode": "naïve — 日本語 ✓",
    "a.long": "x" * 300,  # longer than the one-step string path
    "a.bool": True,
    "a.false": False,
    "a.int": 42,
    "a.zero": 0,
    "a.negative": -(2**63),
    "a.max": 2**63 - 1,
    "a.float": 0.1,
    "a.float_zero": 0.0,
    "a.tiny": 5e-324,
    "a.strs": ("x", "y"),
    "a.bools": (True, False),
    "a.ints": (1, -2, 3),
    "a.floats": (1.5, -2.0),
    "a.empty_array": (),
    "a.mixed": (1, "two", True, 2.5, None),
    "a.map": {"n": 1, "inner": {"list": (1, 2), "s": "x", "empty": {}}},
}


# --- a real downstream ------------------------------------------------------------------------


class Downstream:
    """An OTLP/HTTP endpoint on an ephemeral port that records every request.

    `answers` are given, in order, before it settles on 200; `hold` makes every request
    wait (up to a minute, or until `close`) before answering: a downstream that hangs."""

    def __init__(
        self,
        answers: list[tuple[int, dict[str, str]]] | None = None,
        *,
        hold: bool = False,
        reply: ExportTraceServiceResponse | None = None,
    ) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []
        self.answers = list(answers or [])
        self.reply = (reply or ExportTraceServiceResponse()).SerializeToString()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self._lock = threading.Lock()
        downstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with downstream._lock:
                    status, headers = downstream.answers.pop(0) if downstream.answers else (200, {})
                    downstream.requests.append((self.path, dict(self.headers), body, status))
                downstream.release.wait(60)
                answer = downstream.reply
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("content-type", "application/x-protobuf")
                    self.send_header("content-length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def accepted(self) -> list[SpanRecord]:
        """Spans of the requests answered 200, decoded by SpanLedger's own decoder."""
        with self._lock:
            bodies = [body for _, _, body, status in self.requests if status == 200]
        return [record for body in bodies for record in decode_protobuf(body)]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    started = Downstream()
    yield started
    started.close()


def dead_url() -> str:
    """A URL where nothing listens (a port that was just free)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.http_url}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith(f"spanledger_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"spanledger_{name} not in /metrics")


def quick_retries(server: Server) -> None:
    """Short backoff, so that giving up takes a moment (the attempts stay the same)."""
    assert server.forwarder is not None
    server.forwarder.backoff = 0.01
    server.forwarder.max_backoff = 0.05


def typed(value: Any) -> Any:
    """A value with its type made part of equality: True != 1, 1.0 != 1, NaN == NaN."""
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    if isinstance(value, tuple | list):
        return (type(value).__name__, tuple(typed(item) for item in value))
    if isinstance(value, Mapping):
        return ("dict", tuple(sorted((key, typed(item)) for key, item in value.items())))
    return (type(value).__name__, value)


def send(server: Server, body: bytes) -> int:
    """POST an OTLP/HTTP protobuf request to SpanLedger; its status code."""
    with httpx.Client(timeout=30) as client:
        return post(client, server.http_url, body).status_code


def stored_names(server: Server, trace_hex: str) -> list[str]:
    answer = httpx.get(f"{server.http_url}/api/traces/{trace_hex}", timeout=30).json()
    return sorted(span["name"] for span in answer["spans"])


# --- spans from the real SDK ------------------------------------------------------------------


def sdk_trace(server: Server) -> tuple[list[ReadableSpan], list[SpanExportResult]]:
    """An agent trace from two services and two scopes, exported to SpanLedger over
    OTLP/HTTP by the real exporter as each span ends; also returns what it answered."""
    memory = InMemorySpanExporter()
    results: list[SpanExportResult] = []

    class Recording(OTLPSpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            result = super().export(spans)
            results.append(result)
            return result

    providers = []
    for service in ("frontend", "worker"):
        provider = TracerProvider(
            resource=Resource.create({"service.name": service, "host.ids": (1, 2)})
        )
        provider.add_span_processor(SimpleSpanProcessor(memory))
        provider.add_span_processor(
            SimpleSpanProcessor(Recording(endpoint=f"{server.http_url}/v1/traces"))
        )
        providers.append(provider)
    agents = providers[0].get_tracer("agents", "1.0")
    worker = providers[1].get_tracer("worker.tools")
    with agents.start_as_current_span(
        "invoke_agent supervisor", kind=SpanKind.SERVER, attributes=EVERY_TYPE
    ):
        with agents.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as call:
            call.set_attributes(llm("gpt-4o-mini", 1000, 200, provider="openai"))
            call.set_attribute("a.tags", ("x", "y"))
            call.set_status(Status(StatusCode.OK))
        with worker.start_as_current_span("execute_tool search") as tool:
            tool.set_attribute("gen_ai.tool.name", "search")
            tool.set_status(Status(StatusCode.ERROR, "timed out"))
    for provider in providers:
        provider.shutdown()
    return list(memory.get_finished_spans()), results


def original(span: ReadableSpan) -> tuple[Any, ...]:
    """The parts of an SDK span that a forwarded span must carry unchanged."""
    context = span.get_span_context()
    return (
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
        f"{span.parent.span_id:016x}" if span.parent else "",
        span.name,
        span.kind.value + 1,  # OTLP numbers kinds from 1 (INTERNAL)
        span.start_time,
        span.end_time,
        {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}[span.status.status_code],
        span.status.description or "",
        typed(dict(span.resource.attributes)),
        span.instrumentation_scope.name,
    )


def forwarded(record: SpanRecord) -> tuple[Any, ...]:
    return (
        record.trace_id,
        record.span_id,
        record.parent_span_id,
        record.name,
        record.kind,
        record.start_ns,
        record.end_ns,
        record.status_code,
        record.status_message,
        typed(dict(record.resource)),
        record.scope,
    )


# --- forwarding -------------------------------------------------------------------------------


def test_forwarded_spans_carry_their_cost_and_every_original_field(
    tmp_path: Path, downstream: Downstream
) -> None:
    """gpt-4o-mini at the pinned rates (serverkit.RATES), 1000 input / 200 output tokens:
    input 1000 * 150e6 = 150e9, output 200 * 600e6 = 120e9 femto-$: $0.00027 in all."""
    forward = {"url": downstream.url, "headers": {"x-api-key": "k-1"}}
    with running(tmp_path, forward=forward) as server:
        spans, results = sdk_trace(server)
        assert results == [SpanExportResult.SUCCESS] * 3
        eventually(lambda: len(downstream.accepted()) == 3, "three spans forwarded")
        eventually(lambda: metric(server, "forward_sent") == 3, "forward_sent counted")
        assert metric(server, "forward_dropped") == 0

    paths = {path for path, _, _, _ in downstream.requests}
    assert paths == {"/v1/traces"}
    assert {
        (headers["content-type"], headers["x-api-key"]) for _, headers, _, _ in downstream.requests
    } == {("application/x-protobuf", "k-1")}
    got = {record.span_id: record for record in downstream.accepted()}
    for span in spans:
        record = got[f"{span.get_span_context().span_id:016x}"]
        assert forwarded(record) == original(span)
        own = {k: v for k, v in record.attributes.items() if not k.startswith("spanledger.")}
        assert typed(own) == typed(dict(span.attributes))

    by_name = {record.name: record for record in got.values()}
    cost = {
        key: value
        for key, value in by_name["chat gpt-4o-mini"].attributes.items()
        if key.startswith("spanledger.")
    }
    assert cost == {
        "spanledger.price.status": "priced",
        "spanledger.cache.status": "miss",
        "spanledger.usage.source": "otel_genai",
        "spanledger.cost.usd": 270e9 / 1e15,
        "spanledger.cost.input_usd": 150e9 / 1e15,
        "spanledger.cost.cache_read_usd": 0.0,
        "spanledger.cost.cache_write_usd": 0.0,
        "spanledger.cost.output_usd": 120e9 / 1e15,
        "spanledger.cost.saved_by_cache_usd": 0.0,
        "spanledger.price.model": "gpt-4o-mini",
        "spanledger.price.source": "server-tests-2026",
    }
    # Spans that are not LLM calls are forwarded as they came.
    assert not any(
        key.startswith("spanledger.")
        for name in ("invoke_agent supervisor", "execute_tool search")
        for key in by_name[name].attributes
    )


def test_forwarding_keeps_values_the_sdk_cannot_send(
    tmp_path: Path, downstream: Downstream
) -> None:
    """OTLP/JSON can carry what the Python SDK never produces: NaN and infinities, bytes,
    huge strings, empty maps, unset values. They arrive downstream as SpanLedger decoded
    them (bytes as hex, like ids)."""
    attrs = {
        **EVERY_TYPE,
        "a.bytes": b"\x00\xff",
        "a.huge": "y" * 70_000,
        "a.nan": float("nan"),
        "a.inf": float("inf"),
        "a.unset": None,
        "a.empty_map": {},
        "a.nested": ((), {"k": None}, (("deep",),)),
    }
    span = {
        "traceId": trace_id(),
        "spanId": span_id(),
        "name": "json span",
        "kind": 3,
        "startTimeUnixNano": "1793610000000000000",
        "attributes": json_attributes(attrs),
    }
    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": json_attributes({"service.name": "j"})},
                "scopeSpans": [{"scope": {"name": "json"}, "spans": [span]}],
            }
        ]
    }
    body = json.dumps(document).encode()
    with running(tmp_path, forward={"url": downstream.url}) as server:
        with httpx.Client(timeout=30) as client:
            response = post(client, server.http_url, body, content_type=JSON)
        assert response.status_code == 200, response.text
        eventually(lambda: len(downstream.accepted()) == 1, "the span forwarded")
    (sent,) = decode_json(body)
    (received,) = downstream.accepted()
    assert forwarded(received) == forwarded(sent)
    assert typed(dict(received.attributes)) == typed(dict(sent.attributes))
    assert received.attributes["a.bytes"] == "00ff"
    assert math.isnan(received.attributes["a.nan"])
    assert received.attributes["a.unset"] is None
    assert received.attributes["a.empty_map"] == {}
    assert received.attributes["a.inf"] == float("inf")


def json_attributes(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": json_value(value)} for key, value in attrs.items()]


def json_value(value: Any) -> dict[str, Any]:
    """An OTLP/JSON AnyValue."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        special = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
        return {"doubleValue": special.get(repr(value), value)}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return {"arrayValue": {"values": [json_value(item) for item in value]}}
    return {"kvlistValue": {"values": json_attributes(value)}}


def test_retryable_answers_are_retried_honouring_retry_after(tmp_path: Path) -> None:
    downstream = Downstream([(503, {"Retry-After": "0"}), (429, {"Retry-After": "0"})])
    try:
        with running(tmp_path, forward={"url": downstream.url}) as server:
            quick_retries(server)
            tr = trace_id()
            spans = [S(tr, span_id(), name=f"s{n}") for n in range(4)]
            assert (
                post(httpx.Client(timeout=30), server.http_url, request(spans)).status_code == 200
            )
            eventually(lambda: metric(server, "forward_sent") == 4, "sent after two retries")
            assert metric(server, "forward_dropped") == 0
        assert [status for *_, status in downstream.requests] == [503, 429, 200]
        assert sorted(r.name for r in downstream.accepted()) == ["s0", "s1", "s2", "s3"]
    finally:
        downstream.close()


def test_a_refusal_is_not_retried_and_counts_as_dropped(tmp_path: Path) -> None:
    downstream = Downstream([(400, {})])
    try:
        with running(tmp_path, forward={"url": downstream.url}) as server:
            quick_retries(server)
            spans = [S(trace_id(), span_id(), name=f"s{n}") for n in range(3)]
            assert (
                post(httpx.Client(timeout=30), server.http_url, request(spans)).status_code == 200
            )
            eventually(lambda: metric(server, "forward_dropped") == 3, "the batch dropped")
            assert metric(server, "forward_sent") == 0
        assert [status for *_, status in downstream.requests] == [400]
    finally:
        downstream.close()


def test_a_dead_downstream_never_blocks_ingest(tmp_path: Path) -> None:
    with running(tmp_path, forward={"url": dead_url()}) as server:
        quick_retries(server)
        spans, results = sdk_trace(server)
        assert results == [SpanExportResult.SUCCESS] * 3  # ingest answered at once
        trace_hex = f"{spans[0].get_span_context().trace_id:032x}"
        server.pipeline.flush()
        assert stored_names(server, trace_hex) == [
            "chat gpt-4o-mini",
            "execute_tool search",
            "invoke_agent supervisor",
        ]
        eventually(lambda: metric(server, "forward_dropped") == 3, "drops counted")
        assert metric(server, "forward_sent") == 0
        assert metric(server, "spans_stored") == 3


def test_a_hanging_downstream_never_blocks_ingest(tmp_path: Path) -> None:
    """The downstream accepts connections but never answers; the forward queue holds 3
    spans. Ten spans in one request: 7 are dropped at once (queue full), the 3 queued
    ones after their attempts time out. Every request to SpanLedger still succeeds."""
    downstream = Downstream(hold=True)
    try:
        forward = {"url": downstream.url, "timeout_seconds": 0.2, "max_queued_spans": 3}
        with running(tmp_path, forward=forward) as server:
            quick_retries(server)
            client = httpx.Client(timeout=30)
            tr = trace_id()
            first = [S(tr, span_id(), name=f"a{n}") for n in range(10)]
            assert post(client, server.http_url, request(first)).status_code == 200
            eventually(lambda: len(downstream.requests) >= 1, "the forwarder is stuck")
            second = [S(tr, span_id(), name=f"b{n}") for n in range(5)]
            assert post(client, server.http_url, request(second)).status_code == 200
            server.pipeline.flush()
            assert len(stored_names(server, tr)) == 15
            eventually(lambda: metric(server, "forward_dropped") == 15, "every span dropped")
            assert metric(server, "forward_sent") == 0
    finally:
        downstream.close()


def test_close_gives_up_on_what_cannot_be_sent(tmp_path: Path) -> None:
    """Shutting down with a dead downstream ends, and counts what was left unsent."""
    forwarder = Forwarder(dead_url(), max_queued_spans=100, timeout=1.0, backoff=30.0)
    forwarder.start()
    forwarder.offer([_priced(n) for n in range(5)])
    forwarder.stop(timeout=5.0)
    assert forwarder.stats.get("forward_dropped") == 5
    assert forwarder.stats.get("forward_sent") == 0
    forwarder.offer([_priced(9)])  # after stop: dropped, never queued
    assert forwarder.stats.get("forward_dropped") == 6


def test_downstream_partial_success_counts_the_rejected_spans(tmp_path: Path) -> None:
    partial = ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(rejected_spans=2, error_message="no")
    )
    downstream = Downstream(reply=partial)
    try:
        with running(tmp_path, forward={"url": downstream.url}) as server:
            spans = [S(trace_id(), span_id(), name=f"s{n}") for n in range(3)]
            assert (
                post(httpx.Client(timeout=30), server.http_url, request(spans)).status_code == 200
            )
            eventually(lambda: metric(server, "forward_dropped") == 2, "rejections counted")
            assert metric(server, "forward_sent") == 1
    finally:
        downstream.close()


# --- the encoder ------------------------------------------------------------------------------


def _priced(n: int, resource: dict[str, Any] | None = None, scope: str = "s") -> PricedSpan:
    record = SpanRecord(
        trace_id=f"{n + 1:032x}",
        span_id=f"{n + 1:016x}",
        name=f"span {n}",
        start_ns=n,
        end_ns=n + 1,
        attributes={"n": n},
        resource=resource if resource is not None else {},
        scope=scope,
    )
    return PricedSpan(record, Usage(), NOT_LLM, None, None)


def test_encoder_round_trips_every_field_through_the_decoder() -> None:
    shared = {"service.name": "a", **EVERY_TYPE}
    other = {"service.name": "b"}
    spans = [_priced(0, shared, "x"), _priced(1, other, ""), _priced(2, shared, "y")]
    spans[0].record.attributes = {
        **EVERY_TYPE,
        "a.nan": float("nan"),
        "a.unset": None,
        "a.huge": "é" * 20_000,  # a length over 16 KiB
        "a.nested": ((), {}, ((1,), {"k": None})),
    }
    spans[0].record.parent_span_id = "00000000000000ff"
    spans[0].record.kind = 3
    spans[0].record.status_code = 2
    spans[0].record.status_message = "failed"
    spans[1].record.start_ns = 0  # zero times are left out, and still read back as 0
    spans[1].record.end_ns = 2**63 - 1  # the latest time a span can have (year 2262)

    body = encode_spans(spans)
    message = ExportTraceServiceRequest.FromString(body)
    # One ResourceSpans per resource, one ScopeSpans per scope within it.
    assert [[s.scope.name for s in r.scope_spans] for r in message.resource_spans] == [
        ["x", "y"],
        [""],
    ]
    decoded = {record.span_id: record for record in decode_protobuf(body)}
    for span in spans:
        record = decoded[span.record.span_id]
        assert forwarded(record) == forwarded(span.record)
        assert typed(dict(record.attributes)) == typed(dict(span.record.attributes))


def test_encoder_matches_the_protobuf_library() -> None:
    """The hand-written wire format is what `opentelemetry.proto` itself would write."""
    spans = [_priced(n, {"service.name": "svc"}) for n in range(3)]
    spans[1].record.attributes = dict(EVERY_TYPE)
    request_message = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert request_message.SerializeToString(deterministic=True) == encode_spans(spans)
