"""The OTLP/gRPC receiver of a real in-process server, and partial success on both
receivers.

Each test runs `Server.build(ServeConfig(...)).start()` (DuckDB file in tmp_path, HTTP and
gRPC on ephemeral ports, prices only from the pinned sheet in `serverkit.RATES`). Clients
are the real OTel SDK exporter (`opentelemetry.exporter.otlp.proto.grpc`) and raw grpcio
channels for what the SDK never sends. `server.pipeline.flush(finalize=True)` waits for
storage and finalization; nothing here depends on timing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from serverkit import (
    JSON,
    PROTOBUF,
    Gate,
    S,
    eventually,
    get,
    json_request,
    llm,
    post,
    request,
    running,
    span_id,
    trace_id,
)
from spanledger.server.otlp import OtlpDecodeError, decode_json, decode_protobuf, export_response
from spanledger.server.run import Server

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MINI = llm("gpt-4o-mini", 1000, 200, provider="openai")  # 270e9 femto-$ = $0.00027


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(tmp_path) as started:
        yield started


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


@pytest.fixture
def channel(server: Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as opened:
        yield opened


def raw_export(channel: grpc.Channel) -> Any:
    """Export taking and giving bytes: what a client with a broken encoder would send."""
    return channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)


def metric(client: httpx.Client, server: Server, name: str) -> float:
    text = client.get(f"{server.http_url}/metrics").text
    for line in text.splitlines():
        if line.startswith(f"spanledger_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"spanledger_{name} not in /metrics")


class Recording(SpanExporter):
    """Passes every batch to the real OTLP/gRPC exporter and remembers what it answered."""

    def __init__(self, inner: OTLPSpanExporter) -> None:
        self.inner = inner
        self.results: list[SpanExportResult] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def sdk_exporter(server: Server, **kwargs: Any) -> Recording:
    assert server.grpc_port
    return Recording(
        OTLPSpanExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True, **kwargs)
    )


def agent_trace(recording: Recording, user: str = "grpc-user") -> str:
    """A supervisor and two LLM calls through the real SDK; returns the trace id.

    Costs (femto-$, rates in serverkit.RATES):
      chat gpt-4o-mini 1000 in / 200 out: 1000 * 150e6 + 200 * 600e6 = 270e9
      chat house-llm 500 in / 50 out: 500 * 2e9 + 50 * 8e9 = 1400e9
      root rollup: 1670e9 = $0.00167
    """
    provider = TracerProvider(resource=Resource.create({"service.name": "grpc-app"}))
    provider.add_span_processor(SimpleSpanProcessor(recording))
    tracer = provider.get_tracer("tests.grpc")
    with tracer.start_as_current_span("invoke_agent supervisor") as root:
        root.set_attribute("user.id", user)
        with tracer.start_as_current_span("chat gpt-4o-mini") as call:
            call.set_attributes(llm("gpt-4o-mini", 1000, 200, provider="openai"))
        with tracer.start_as_current_span("chat house-llm") as call:
            call.set_attributes(llm("house-llm", 500, 50))
    provider.shutdown()
    return f"{root.get_span_context().trace_id:032x}"


# --- the real OTel SDK over gRPC ------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["plain", "gzip"])
def test_otel_sdk_grpc_exporter_spans_are_stored_and_priced(
    server: Server, client: httpx.Client, compression: grpc.Compression | None
) -> None:
    recording = sdk_exporter(server, compression=compression)
    trace_hex = agent_trace(recording)
    # SimpleSpanProcessor exports each span as it ends: children before their parent.
    assert recording.results == [SpanExportResult.SUCCESS] * 3

    server.pipeline.flush(finalize=True)
    trace = get(client, server.http_url, f"/api/traces/{trace_hex}")
    by_name = {span["name"]: span for span in trace["spans"]}
    assert set(by_name) == {"invoke_agent supervisor", "chat gpt-4o-mini", "chat house-llm"}
    assert Decimal(by_name["chat gpt-4o-mini"]["cost"]) == Decimal("0.00027")
    assert Decimal(by_name["chat house-llm"]["cost"]) == Decimal("0.0014")
    assert by_name["chat gpt-4o-mini"]["price_status"] == "priced"
    assert Decimal(trace["trace"]["cost"]) == Decimal("0.00167")
    assert Decimal(by_name["invoke_agent supervisor"]["rollup"]) == Decimal("0.00167")
    assert {span["user_id"] for span in trace["spans"]} == {"grpc-user"}
    assert {span["service"] for span in trace["spans"]} == {"grpc-app"}
    assert metric(client, server, "spans_received") == 3
    assert metric(client, server, "spans_stored") == 3


def test_grpc_and_http_receivers_feed_one_ledger(server: Server, client: httpx.Client) -> None:
    """The same span sent over both receivers is stored once."""
    tr, root = trace_id(), span_id()
    spans = [
        S(tr, root, name="chat gpt-4o-mini", attrs=llm("gpt-4o-mini", 1000, 200, provider="openai"))
    ]
    assert post(client, server.http_url, request(spans)).status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        answer = TraceServiceStub(channel).Export(
            ExportTraceServiceRequest.FromString(request(spans)), timeout=30
        )
    assert not answer.HasField("partial_success")
    server.pipeline.flush(finalize=True)
    assert get(client, server.http_url, "/api/costs")["totals"] == {
        "spans": 1,
        "traces": 1,
        "cost": "0.00027",
    }


def test_grpc_bearer_token(tmp_path: Path, client: httpx.Client) -> None:
    with running(tmp_path, token="s3cret") as server:
        wrong = sdk_exporter(server, headers=(("authorization", "Bearer nope"),))
        missing = sdk_exporter(server)
        right = sdk_exporter(server, headers=(("authorization", "Bearer s3cret"),))
        agent_trace(wrong, user="wrong")
        agent_trace(missing, user="missing")
        trace_hex = agent_trace(right, user="right")
        assert wrong.results == [SpanExportResult.FAILURE] * 3
        assert missing.results == [SpanExportResult.FAILURE] * 3
        assert right.results == [SpanExportResult.SUCCESS] * 3

        with (
            grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel,
            pytest.raises(grpc.RpcError) as refused,
        ):
            TraceServiceStub(channel).Export(ExportTraceServiceRequest(), timeout=30)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

        server.pipeline.flush(finalize=True)
        auth = {"authorization": "Bearer s3cret"}
        traces = client.get(f"{server.http_url}/api/traces", headers=auth).json()["traces"]
        assert [t["trace_id"] for t in traces] == [trace_hex]
        assert {t["user_id"] for t in traces} == {"right"}


# --- what the SDK never sends ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"\xff\xff\xff\xff", b"\x0a\x05\x0a\x03"], ids=["garbage", "truncated"]
)
def test_malformed_grpc_request_is_invalid_argument(
    server: Server, channel: grpc.Channel, client: httpx.Client, body: bytes
) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        raw_export(channel)(body, timeout=30)
    assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid OTLP ExportTraceServiceRequest" in failed.value.details()
    # ...and the receiver keeps serving.
    tr = trace_id()
    good = request([S(tr, span_id(), name="after")])
    assert ExportTraceServiceResponse.FromString(raw_export(channel)(good, timeout=30)) == (
        ExportTraceServiceResponse()
    )
    server.pipeline.flush()
    assert [s["name"] for s in get(client, server.http_url, f"/api/traces/{tr}")["spans"]] == [
        "after"
    ]


def test_grpc_partial_success_rejects_only_the_bad_span(
    server: Server, channel: grpc.Channel, client: httpx.Client
) -> None:
    tr, root = trace_id(), span_id()
    bad = Span(trace_id=bytes.fromhex(tr), span_id=b"\x01\x02\x03\x04", name="bad id")
    spans = [
        S(tr, root, name="root", end=10),
        bad,
        S(
            tr,
            span_id(),
            root,
            "chat gpt-4o-mini",
            attrs=llm("gpt-4o-mini", 1000, 200, provider="openai"),
        ),
    ]
    answer = TraceServiceStub(channel).Export(
        ExportTraceServiceRequest.FromString(request(spans)), timeout=30
    )
    assert answer.partial_success.rejected_spans == 1
    assert answer.partial_success.error_message == (
        "resourceSpans[0].scopeSpans[0].spans[1]: spanId must be 8 bytes, got 4"
    )
    server.pipeline.flush(finalize=True)
    trace = get(client, server.http_url, f"/api/traces/{tr}")
    assert sorted(s["name"] for s in trace["spans"]) == ["chat gpt-4o-mini", "root"]
    assert Decimal(trace["trace"]["cost"]) == Decimal("0.00027")
    assert metric(client, server, "spans_rejected") == 1
    assert metric(client, server, "spans_received") == 3


def test_grpc_message_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    with running(tmp_path, http={"max_body_bytes": 4096}) as server:
        tr = trace_id()
        big = request([S(tr, span_id(), name="big", attrs={"blob": "x" * 10_000})])
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as refused:
                raw_export(channel)(big, timeout=30)
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            small = request([S(tr, span_id(), name="small")])
            assert raw_export(channel)(small, timeout=30) == b""


def test_full_ingest_queue_is_resource_exhausted_with_retry_info(tmp_path: Path) -> None:
    """A listener that holds the writer (as a stalled downstream would) fills the queue
    deterministically: the batch that trips it is stored, the next one queues, and the
    one after that is refused with RESOURCE_EXHAUSTED and a RetryInfo."""
    with running(tmp_path, max_queued_spans=2) as server:
        gate = Gate()
        server.pipeline.listeners.append(gate)
        tr = trace_id()
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            export = raw_export(channel)
            assert export(request([S(tr, span_id(), name="first")]), timeout=30) == b""
            assert gate.entered.wait(30)
            queued = export.future(request([S(tr, span_id(), name="queued")]), timeout=30)
            eventually(
                lambda: server.pipeline.queued_spans > 0, "the batch waits on the held writer"
            )
            with pytest.raises(grpc.RpcError) as refused:
                export(request([S(tr, span_id(), name=f"s{n}") for n in range(2)]), timeout=30)
            gate.open()
            assert queued.result() == b""
        error = refused.value
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ingest queue full" in error.details()
        trailers = dict(error.trailing_metadata())
        retry = RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
        assert retry.retry_delay.seconds == 1
        status = Status.FromString(trailers["grpc-status-details-bin"])
        assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        (detail,) = status.details
        unpacked = RetryInfo()
        assert detail.Unpack(unpacked)
        assert unpacked == retry


def test_grpc_can_be_turned_off(tmp_path: Path) -> None:
    with running(tmp_path, grpc={"enabled": False}) as server:
        assert server.grpc_port is None
        assert server.grpc_address is None


def test_grpc_port_in_use_is_an_error(tmp_path: Path, server: Server) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with (
        pytest.raises(RuntimeError, match="could not listen"),
        running(other, grpc={"port": server.grpc_port}),
    ):
        pass
    # The failed server released its DuckDB file: it can be opened again.
    with running(other) as again:
        assert again.grpc_port


# --- partial success over OTLP/HTTP ---------------------------------------------------------


def test_http_protobuf_partial_success(server: Server, client: httpx.Client) -> None:
    tr, root = trace_id(), span_id()
    spans = [
        S(tr, root, name="root"),
        Span(trace_id=bytes(16), span_id=bytes.fromhex(span_id()), name="zero trace id"),
        Span(trace_id=bytes.fromhex(tr), name="no span id"),
    ]
    response = post(client, server.http_url, request(spans))
    assert response.status_code == 200
    assert response.headers["content-type"] == PROTOBUF
    answer = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert answer.rejected_spans == 2
    assert answer.error_message == (
        "resourceSpans[0].scopeSpans[0].spans[1]: traceId is all zeros, which OTLP defines "
        "as invalid (and 1 more)"
    )
    server.pipeline.flush()
    assert [s["name"] for s in get(client, server.http_url, f"/api/traces/{tr}")["spans"]] == [
        "root"
    ]
    assert metric(client, server, "spans_rejected") == 2


def test_http_json_partial_success(server: Server, client: httpx.Client) -> None:
    tr = trace_id()
    document = json.loads(json_request([S(tr, span_id(), name=f"s{n}") for n in range(3)]))
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["name"] = 5  # a field of the wrong type
    spans[2]["attributes"] = [{"key": "n", "value": {"intValue": "twelve"}}]
    response = post(client, server.http_url, json.dumps(document).encode(), content_type=JSON)
    assert response.status_code == 200
    assert response.json() == {
        "partialSuccess": {
            "rejectedSpans": "2",  # int64 as a string, as OTLP/JSON writes it
            "errorMessage": "resourceSpans[0].scopeSpans[0].spans[0]: name must be a string, "
            "got a number (5) (and 1 more)",
        }
    }
    server.pipeline.flush()
    assert [s["name"] for s in get(client, server.http_url, f"/api/traces/{tr}")["spans"]] == ["s1"]


def test_unparseable_http_body_is_still_400(server: Server, client: httpx.Client) -> None:
    response = post(client, server.http_url, b"{not json", content_type=JSON)
    assert response.status_code == 400
    response = post(client, server.http_url, b"\xff\xff\xff\xff")
    assert response.status_code == 400


# --- partial-success decoding -----------------------------------------------------------------


def test_decoding_without_a_rejected_list_still_raises() -> None:
    body = request([S(trace_id(), span_id()), Span(trace_id=bytes(16), span_id=b"\x01" * 8)])
    with pytest.raises(OtlpDecodeError, match=r"spans\[1\]: traceId is all zeros"):
        decode_protobuf(body)
    rejected: list[str] = []
    assert len(decode_protobuf(body, rejected)) == 1
    assert rejected == [
        "resourceSpans[0].scopeSpans[0].spans[1]: traceId is all zeros, which OTLP defines "
        "as invalid"
    ]


def test_json_resource_or_scope_problem_rejects_the_spans_it_covers() -> None:
    tr = trace_id()
    document = json.loads(json_request([S(tr, span_id()), S(tr, span_id())]))
    ok = json.loads(json_request([S(tr, span_id(), name="fine")]))
    document["resourceSpans"][0]["resource"]["attributes"] = [{"key": 1}]
    ok["resourceSpans"][0]["scopeSpans"].append({"scope": {"name": 7}, "spans": [{}, {}, {}]})
    document["resourceSpans"] += ok["resourceSpans"]
    rejected: list[str] = []
    records = decode_json(json.dumps(document), rejected)
    assert [r.name for r in records] == ["fine"]
    assert (
        rejected
        == [
            "resourceSpans[0]: resource.attributes[0]: key must be a string, got 1",
            "resourceSpans[0]: resource.attributes[0]: key must be a string, got 1",
            "resourceSpans[1].scopeSpans[1]: scope.name must be a string, got a number (7)",
        ]
        + ["resourceSpans[1].scopeSpans[1]: scope.name must be a string, got a number (7)"] * 2
    )
    with pytest.raises(OtlpDecodeError, match=r"resourceSpans\[0\]: resource.attributes"):
        decode_json(json.dumps(document))


def test_broken_json_structure_is_malformed_even_with_partial_success() -> None:
    for document in (
        {"resourceSpans": {}},
        {"resourceSpans": [{"scopeSpans": 3}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": "none"}]}]},
    ):
        with pytest.raises(OtlpDecodeError):
            decode_json(json.dumps(document), [])


def test_export_response_message() -> None:
    assert export_response([]) == ExportTraceServiceResponse()
    one = export_response(["a: bad"]).partial_success
    assert (one.rejected_spans, one.error_message) == (1, "a: bad")
    three = export_response(["a: bad", "b", "c"]).partial_success
    assert (three.rejected_spans, three.error_message) == (3, "a: bad (and 2 more)")


def test_servicer_registered_the_generated_way_takes_messages(
    server: Server, client: httpx.Client
) -> None:
    """`TraceServiceServicer` registered with the generated helper receives parsed
    messages instead of bytes, and answers the same."""
    from concurrent import futures

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
        add_TraceServiceServicer_to_server,
    )

    from spanledger.server.grpc import TraceServiceServicer

    other = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    add_TraceServiceServicer_to_server(TraceServiceServicer(server.pipeline), other)
    port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        tr = trace_id()
        bad = Span(trace_id=bytes.fromhex(tr), span_id=bytes(8), name="zero span id")
        message = ExportTraceServiceRequest.FromString(request([S(tr, span_id()), bad]))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = TraceServiceStub(channel).Export(message, timeout=30)
        assert answer.partial_success.rejected_spans == 1
        server.pipeline.flush()
        assert len(get(client, server.http_url, f"/api/traces/{tr}")["spans"]) == 1
    finally:
        other.stop(None)
