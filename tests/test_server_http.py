"""The OTLP/HTTP receiver of a real in-process server: encodings, the real OTel SDK
exporter, idempotent ingest, and every error answer the OTLP specification asks for.

Each test runs `Server.build(ServeConfig(...)).start()` on a DuckDB file in tmp_path with
prices only from the pinned sheet in `serverkit.RATES` (see there for the femto-$ rates).
`server.pipeline.flush(finalize=True)` waits for storage and finalization; nothing here
depends on timing.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
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
    status_of,
    trace_id,
)
from spanledger.server.run import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(tmp_path) as started:
        yield started


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


def small_trace() -> tuple[str, list[S]]:
    """A root and two priced LLM calls. Hand-derived costs (femto-$):

    gpt-4o-mini, 1000 input of which 400 cache reads, 200 output:
        600 * 150e6 + 400 * 75e6 + 200 * 600e6 = 90e9 + 30e9 + 120e9 = 240e9  ($0.00024)
    house-llm, 1000 input, 100 output:
        1000 * 2e9 + 100 * 8e9 = 2e12 + 0.8e12 = 2.8e12                      ($0.0028)
    total 3.04e12 = $0.00304
    """
    tr, root = trace_id(), span_id()
    return tr, [
        S(tr, root, name="invoke_agent planner", end=30, attrs={"user.id": "u-1"}),
        S(
            tr,
            span_id(),
            root,
            "chat gpt-4o-mini",
            start=1,
            end=10,
            attrs=llm("gpt-4o-mini", 1000, 200, provider="openai", cache_read=400),
        ),
        S(
            tr,
            span_id(),
            root,
            "chat house-llm",
            start=11,
            end=20,
            attrs=llm("house-llm", 1000, 100),
        ),
    ]


SMALL_TRACE_COST = Decimal("0.00304")


def totals(client: httpx.Client, server: Server) -> dict[str, Any]:
    return get(client, server.http_url, "/api/costs")["totals"]


# --- encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_protobuf_request_is_priced_stored_and_answered_in_protobuf(
    server: Server, client: httpx.Client, gzipped: bool
) -> None:
    tr, spans = small_trace()
    response = post(client, server.http_url, request(spans), gzipped=gzipped)
    assert response.status_code == 200
    assert response.headers["content-type"] == PROTOBUF
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert not answer.HasField("partial_success")  # nothing rejected

    server.pipeline.flush(finalize=True)
    assert totals(client, server) == {"spans": 3, "traces": 1, "cost": "0.00304"}
    trace = get(client, server.http_url, f"/api/traces/{tr}")
    assert Decimal(trace["trace"]["cost"]) == SMALL_TRACE_COST
    assert trace["trace"]["root_name"] == "invoke_agent planner"


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_json_request_with_hex_ids_is_answered_in_json(
    server: Server, client: httpx.Client, gzipped: bool
) -> None:
    tr, spans = small_trace()
    body = json_request(spans)
    assert f'"traceId": "{tr}"'.encode() in body  # OTLP/JSON: hex, not base64
    response = post(client, server.http_url, body, content_type=JSON, gzipped=gzipped)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON
    assert response.json() == {}  # an empty ExportTraceServiceResponse

    server.pipeline.flush(finalize=True)
    trace = get(client, server.http_url, f"/api/traces/{tr}")
    assert Decimal(trace["trace"]["cost"]) == SMALL_TRACE_COST
    assert sorted(span["span_id"] for span in trace["spans"]) == sorted(s.span for s in spans)
    assert {span["trace_id"] for span in trace["spans"]} == {tr}


def test_json_uppercase_hex_ids_are_the_same_span(server: Server, client: httpx.Client) -> None:
    """OTLP/JSON ids are case-insensitive hex: upper-case ids name the same span."""
    tr, spans = small_trace()
    assert post(client, server.http_url, json_request(spans), content_type=JSON).status_code == 200
    upper = json_request(spans)
    for s in spans:
        upper = upper.replace(s.span.encode(), s.span.upper().encode())
    upper = upper.replace(tr.encode(), tr.upper().encode())
    assert post(client, server.http_url, upper, content_type=JSON).status_code == 200
    server.pipeline.flush(finalize=True)
    assert totals(client, server) == {"spans": 3, "traces": 1, "cost": "0.00304"}


# --- the real OTel SDK -------------------------------------------------------------------


class Recording(SpanExporter):
    """Passes every batch to the real OTLP exporter and remembers what it answered."""

    def __init__(self, inner: OTLPSpanExporter) -> None:
        self.inner = inner
        self.batches: list[tuple[list[str], SpanExportResult]] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        self.batches.append(([span.name for span in spans], result))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def sdk_exporter(server: Server, **kwargs: Any) -> Recording:
    return Recording(OTLPSpanExporter(endpoint=f"{server.http_url}/v1/traces", **kwargs))


def test_otel_sdk_exporter_end_to_end_children_before_parents(
    server: Server, client: httpx.Client
) -> None:
    """SimpleSpanProcessor exports each span when it ends, so every child reaches the
    server in an earlier request than its parent.

    Costs (femto-$):
      chat gpt-4o-mini 2000 in (500 cached) / 100 out:
          1500 * 150e6 + 500 * 75e6 + 100 * 600e6 = 225e9 + 37.5e9 + 60e9 = 322.5e9
      chat house-llm 300 in / 40 out: 300 * 2e9 + 40 * 8e9 = 600e9 + 320e9 = 920e9
      chat claude-sonnet-4-5 1000 in (200 cache write) / 10 out:
          800 * 3e9 + 200 * 3.75e9 + 10 * 15e9 = 2400e9 + 750e9 + 150e9 = 3300e9
      research agent rollup = 920e9 + 3300e9 = 4220e9
      root rollup = 322.5e9 + 4220e9 = 4542.5e9 = $0.0045425
    """
    recording = sdk_exporter(server)
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-app"}))
    provider.add_span_processor(SimpleSpanProcessor(recording))
    tracer = provider.get_tracer("tests.sdk")
    with tracer.start_as_current_span("invoke_agent supervisor") as root:
        root.set_attribute("user.id", "sdk-user")
        root.set_attribute("gen_ai.agent.name", "supervisor")
        with tracer.start_as_current_span("chat gpt-4o-mini") as call:
            for key, value in llm(
                "gpt-4o-mini", 2000, 100, provider="openai", cache_read=500
            ).items():
                call.set_attribute(key, value)
        with tracer.start_as_current_span("invoke_agent research") as agent:
            agent.set_attribute("gen_ai.agent.name", "research")
            with tracer.start_as_current_span("chat house-llm") as call:
                for key, value in llm("house-llm", 300, 40).items():
                    call.set_attribute(key, value)
            with tracer.start_as_current_span("chat claude-sonnet-4-5") as call:
                attrs = llm("claude-sonnet-4-5", 1000, 10, provider="anthropic", cache_write=200)
                for key, value in attrs.items():
                    call.set_attribute(key, value)
    trace_hex = f"{root.get_span_context().trace_id:032x}"
    provider.shutdown()

    names = [batch for batch, _ in recording.batches]
    assert names == [
        ["chat gpt-4o-mini"],
        ["chat house-llm"],
        ["chat claude-sonnet-4-5"],
        ["invoke_agent research"],
        ["invoke_agent supervisor"],
    ]
    assert all(result is SpanExportResult.SUCCESS for _, result in recording.batches)

    server.pipeline.flush(finalize=True)
    trace = get(client, server.http_url, f"/api/traces/{trace_hex}")
    by_name = {span["name"]: span for span in trace["spans"]}
    assert Decimal(trace["trace"]["cost"]) == Decimal("0.0045425")
    assert Decimal(by_name["invoke_agent supervisor"]["rollup"]) == Decimal("0.0045425")
    assert Decimal(by_name["invoke_agent research"]["rollup"]) == Decimal("0.00422")
    assert Decimal(by_name["chat gpt-4o-mini"]["cost"]) == Decimal("0.0003225")
    assert Decimal(by_name["chat claude-sonnet-4-5"]["cost"]) == Decimal("0.0033")
    assert by_name["chat claude-sonnet-4-5"]["cache_status"] == "write"
    assert {span["user_id"] for span in trace["spans"]} == {"sdk-user"}
    assert {span["service"] for span in trace["spans"]} == {"sdk-app"}
    assert by_name["chat house-llm"]["agent_path"] == "supervisor/research"
    assert trace["trace"]["complete"] is True


def test_otel_sdk_exporter_with_bearer_token(tmp_path: Path, client: httpx.Client) -> None:
    with running(tmp_path, token="s3cret") as server:
        good = sdk_exporter(server, headers={"authorization": "Bearer s3cret"})
        bad = sdk_exporter(server, headers={"authorization": "Bearer nope"})
        for recording, name in ((good, "accepted"), (bad, "refused")):
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(recording))
            with provider.get_tracer("t").start_as_current_span(name):
                pass
            provider.shutdown()
        assert good.batches == [(["accepted"], SpanExportResult.SUCCESS)]
        assert bad.batches == [(["refused"], SpanExportResult.FAILURE)]
        server.pipeline.flush()
        response = client.get(
            f"{server.http_url}/api/costs", headers={"authorization": "Bearer s3cret"}
        )
        assert response.json()["totals"]["spans"] == 1


# --- idempotent ingest -------------------------------------------------------------------


def test_the_same_span_sent_twice_is_stored_and_counted_once(
    server: Server, client: httpx.Client
) -> None:
    tr, spans = small_trace()
    body = request(spans)
    assert post(client, server.http_url, body).status_code == 200
    server.pipeline.flush(finalize=True)
    assert post(client, server.http_url, body).status_code == 200  # after finalization
    assert post(client, server.http_url, json_request(spans), content_type=JSON).status_code == 200
    # twice inside one request, too
    assert post(client, server.http_url, request([spans[1], spans[1]])).status_code == 200
    server.pipeline.flush(finalize=True)

    assert totals(client, server) == {"spans": 3, "traces": 1, "cost": "0.00304"}
    rows = get(client, server.http_url, "/api/costs", group_by="model")["rows"]
    assert {row["model"]: (row["calls"], row["cost"]) for row in rows} == {
        "house-llm": (1, "0.0028"),
        "gpt-4o-mini": (1, "0.00024"),
    }
    trace = get(client, server.http_url, f"/api/traces/{tr}")
    assert trace["trace"]["spans"] == 3
    assert Decimal(trace["trace"]["cost"]) == SMALL_TRACE_COST
    metrics = client.get(f"{server.http_url}/metrics").text
    assert "spanledger_spans_stored 3\n" in metrics
    assert "spanledger_spans_duplicate 8\n" in metrics  # 3 + 3 + 2 resent copies


def test_a_finalized_trace_resent_after_a_restart_is_counted_once_and_a_late_span_joins_it(
    tmp_path: Path, client: httpx.Client
) -> None:
    """After a restart the finalized trace is on disk only: copies of its spans are found
    there (not stored twice); a span it did not have reopens it and its cost rolls up.
    gpt-4o-mini late call, 1000 input, 0 output: 1000 * 150e6 = 150e9 femto-$ ($0.00015)."""
    tr, spans = small_trace()
    with running(tmp_path) as server:
        assert post(client, server.http_url, request(spans)).status_code == 200
        server.pipeline.flush(finalize=True)
    late = S(
        tr,
        span_id(),
        spans[0].span,
        "chat gpt-4o-mini",
        start=21,
        end=25,
        attrs=llm("gpt-4o-mini", 1000, 0, provider="openai"),
    )
    with running(tmp_path) as server:
        assert post(client, server.http_url, request(spans)).status_code == 200
        assert post(client, server.http_url, request([spans[2], late])).status_code == 200
        server.pipeline.flush(finalize=True)
        assert totals(client, server) == {"spans": 4, "traces": 1, "cost": "0.00319"}
        trace = get(client, server.http_url, f"/api/traces/{tr}")
        assert trace["trace"]["spans"] == 4
        assert Decimal(trace["trace"]["cost"]) == SMALL_TRACE_COST + Decimal("0.00015")
        metrics = client.get(f"{server.http_url}/metrics").text
        assert "spanledger_spans_stored 1\n" in metrics  # the late span only
        assert "spanledger_spans_duplicate 4\n" in metrics  # 3 resent + 1 in the late request


def test_the_same_span_in_concurrent_requests_of_one_group_commit(
    server: Server, client: httpx.Client
) -> None:
    """Requests queued while the writer is busy are stored in one transaction; the same
    span in two of them is still stored once and both requests are acknowledged."""
    gate = Gate()
    server.pipeline.listeners.append(gate)
    _, spans = small_trace()
    assert post(client, server.http_url, request([spans[0]])).status_code == 200
    assert gate.entered.wait(10)  # the writer is now held after storing the root
    answers: list[int] = []

    def send() -> None:
        with httpx.Client(timeout=30) as own:
            answers.append(post(own, server.http_url, request(spans[1:])).status_code)

    senders = [threading.Thread(target=send) for _ in range(2)]
    for sender in senders:
        sender.start()
    wait_for_queued(client, server, 4)
    gate.open()
    for sender in senders:
        sender.join(30)
    assert answers == [200, 200]
    server.pipeline.flush(finalize=True)
    assert totals(client, server) == {"spans": 3, "traces": 1, "cost": "0.00304"}


def wait_for_queued(client: httpx.Client, server: Server, spans: int) -> None:
    """Poll /healthz until `spans` spans wait in the ingest queue (no fixed sleeps)."""
    eventually(
        lambda: get(client, server.http_url, "/healthz")["queued_spans"] == spans,
        f"{spans} spans queued",
    )


# --- authentication ----------------------------------------------------------------------


def test_bearer_token_is_required_on_otlp_api_and_metrics_but_not_healthz(
    tmp_path: Path, client: httpx.Client
) -> None:
    with running(tmp_path, token="s3cret") as server:
        url = server.http_url
        _, spans = small_trace()
        body = request(spans)
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret"}):
            response = post(client, url, body, headers=headers)
            assert response.status_code == 401
            assert status_of(response).code == 16  # UNAUTHENTICATED
            assert "token" in status_of(response).message
            json_answer = post(client, url, json_request(spans), content_type=JSON, headers=headers)
            assert json_answer.status_code == 401
            assert json_answer.json()["code"] == 16
            for path in ("/api/traces", "/api/costs", "/api/unpriced", "/metrics"):
                assert client.get(f"{url}{path}", headers=headers).status_code == 401, path
        assert client.get(f"{url}/healthz").status_code == 200

        server.pipeline.flush()
        auth = {"authorization": "Bearer s3cret"}
        assert client.get(f"{url}/api/costs", headers=auth).json()["totals"]["spans"] == 0
        assert post(client, url, body, headers=auth).status_code == 200
        server.pipeline.flush()
        assert client.get(f"{url}/api/costs", headers=auth).json()["totals"]["spans"] == 3
        assert client.get(f"{url}/metrics", headers=auth).status_code == 200


# --- error answers -----------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", ""])
def test_unsupported_content_type_is_415(
    server: Server, client: httpx.Client, content_type: str
) -> None:
    _, spans = small_trace()
    response = post(client, server.http_url, request(spans), content_type=content_type)
    assert response.status_code == 415
    assert "content-type" in status_of(response).message
    server.pipeline.flush()
    assert totals(client, server)["spans"] == 0


def test_content_type_parameters_are_accepted(server: Server, client: httpx.Client) -> None:
    _, spans = small_trace()
    body = json_request(spans)
    response = post(client, server.http_url, body, content_type="application/json; charset=utf-8")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xff\xff\xff not protobuf", "protobuf"),
        (request([S("ab" * 16, "cd" * 8)])[:-7], "protobuf"),  # truncated mid-span
        (b"\x0a\x05\x12\x03\x12\x01", "protobuf"),  # nested lengths that overrun
    ],
    ids=["garbage", "truncated", "overrun"],
)  # fmt: skip
def test_malformed_protobuf_is_400_with_the_reason(
    server: Server, client: httpx.Client, body: bytes, reason: str
) -> None:
    response = post(client, server.http_url, body)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROTOBUF
    status = status_of(response)
    assert status.code == 3  # INVALID_ARGUMENT
    assert reason in status.message
    # the receiver keeps serving
    _, spans = small_trace()
    assert post(client, server.http_url, request(spans)).status_code == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"resourceSpans": [', "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"resourceSpans": 5}', "resourceSpans must be an array"),
        (b'{"resourceSpans": [{"scopeSpans": 7}]}', "scopeSpans must be an array"),
        (b'{"resourceSpans": "\xff"}', "not UTF-8"),
    ],
    ids=["truncated", "not-an-object", "not-an-array", "wrong-type", "not-utf8"],
)  # fmt: skip
def test_malformed_json_is_400_with_the_reason_in_json(
    server: Server, client: httpx.Client, body: bytes, reason: str
) -> None:
    response = post(client, server.http_url, body, content_type=JSON)
    assert response.status_code == 400
    assert response.headers["content-type"] == JSON
    answer = response.json()
    assert answer["code"] == 3
    assert reason in answer["message"]


def test_corrupt_gzip_is_400(server: Server, client: httpx.Client) -> None:
    _, spans = small_trace()
    corrupt = gzip.compress(request(spans))[:-12] + b"\x00" * 12
    response = client.post(
        f"{server.http_url}/v1/traces",
        content=corrupt,
        headers={"content-type": PROTOBUF, "content-encoding": "gzip"},
    )
    assert response.status_code == 400
    assert "gzip" in status_of(response).message


def test_body_over_the_limit_is_413_declared_or_streamed(
    tmp_path: Path, client: httpx.Client
) -> None:
    with running(tmp_path, http={"max_body_bytes": 4096}) as server:
        big = request([S(trace_id(), span_id(), attrs={"blob": "x" * 10_000})])
        response = post(client, server.http_url, big)  # Content-Length: over the limit
        assert response.status_code == 413
        assert "4096-byte limit" in status_of(response).message

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
            for start in range(0, len(big), 1000):
                yield big[start : start + 1000]

        streamed = client.post(
            f"{server.http_url}/v1/traces", content=chunks(), headers={"content-type": PROTOBUF}
        )
        assert streamed.status_code == 413
        assert status_of(streamed).code == 3

        # a body just under the limit is fine
        _, spans = small_trace()
        assert post(client, server.http_url, request(spans)).status_code == 200
        assert client.get(f"{server.http_url}/healthz").status_code == 200


def test_gzip_bomb_over_the_limit_is_413(tmp_path: Path, client: httpx.Client) -> None:
    with running(tmp_path, http={"max_body_bytes": 10_000}) as server:
        bomb = gzip.compress(b"\x00" * 5_000_000)  # ~5 KB on the wire, 5 MB inflated
        assert len(bomb) < 10_000
        response = client.post(
            f"{server.http_url}/v1/traces",
            content=bomb,
            headers={"content-type": PROTOBUF, "content-encoding": "gzip"},
        )
        assert response.status_code == 413


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path: Path, client: httpx.Client) -> None:
    """What the receiver does today with a bomb: refused with a reason, server unharmed."""
    with running(tmp_path, http={"max_body_bytes": 10_000}) as server:
        bomb = gzip.compress(b"\x00" * 5_000_000)
        response = client.post(
            f"{server.http_url}/v1/traces",
            content=bomb,
            headers={"content-type": PROTOBUF, "content-encoding": "gzip"},
        )
        assert response.status_code in (400, 413)
        assert "10000-byte limit" in status_of(response).message
        _, spans = small_trace()
        assert post(client, server.http_url, request(spans), gzipped=True).status_code == 200


def test_full_queue_is_429_with_retry_after_while_healthz_answers(
    tmp_path: Path, client: httpx.Client
) -> None:
    """A stalled writer (a listener that blocks, like a stuck downstream) fills the queue.

    max_queued_spans=5: batch A (1 span) is stored and stalls the writer; batch B (3
    spans) waits in the queue; batch C (3 more: 3 + 3 > 5) is refused at once with 429."""
    with running(tmp_path, max_queued_spans=5) as server:
        url = server.http_url
        gate = Gate()
        server.pipeline.listeners.append(gate)
        tr = trace_id()
        assert post(client, url, request([S(tr, span_id(), name="A")])).status_code == 200
        assert gate.entered.wait(10)

        waiting: list[httpx.Response] = []
        b_spans = [S(tr, span_id(), name="B") for _ in range(3)]

        def send_b() -> None:
            with httpx.Client(timeout=30) as own:
                waiting.append(post(own, url, request(b_spans)))

        sender = threading.Thread(target=send_b)
        sender.start()
        wait_for_queued(client, server, 3)

        c_spans = [S(tr, span_id(), name="C") for _ in range(3)]
        for body, content_type in (
            (request(c_spans), PROTOBUF),
            (json_request(c_spans), JSON),
        ):
            refused = post(client, url, body, content_type=content_type)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert status_of(refused).code == 8  # RESOURCE_EXHAUSTED
            assert "queue full" in status_of(refused).message

        health = client.get(f"{url}/healthz")
        assert health.status_code == 200
        assert health.json()["queued_spans"] == 3
        metrics = client.get(f"{url}/metrics").text
        assert "spanledger_spans_throttled 6\n" in metrics
        assert "spanledger_queued_spans 3\n" in metrics

        gate.open()
        sender.join(30)
        assert [response.status_code for response in waiting] == [200]
        assert post(client, url, request(c_spans)).status_code == 200  # the retry succeeds
        server.pipeline.flush(finalize=True)
        assert totals(client, server)["spans"] == 7


def test_refused_requests_are_counted_as_rejected(tmp_path: Path, client: httpx.Client) -> None:
    with running(tmp_path, token="s3cret", http={"max_body_bytes": 4096}) as server:
        url = server.http_url
        auth = {"authorization": "Bearer s3cret"}
        _, spans = small_trace()
        assert post(client, url, request(spans)).status_code == 401
        big = request([S(trace_id(), span_id(), attrs={"blob": "x" * 10_000})])
        assert post(client, url, big, headers=auth).status_code == 413
        text = client.get(f"{url}/metrics", headers=auth).text
        # Refused whole, their spans unknown: counted as requests, not as spans.
        assert "spanledger_requests_rejected 2\n" in text
