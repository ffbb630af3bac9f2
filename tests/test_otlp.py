"""OTLP decoding against what the real OpenTelemetry SDK and its real OTLP encoder produce."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from spanledger.server.otlp import OtlpDecodeError, decode_json, decode_protobuf, read_file
from spanledger.spans import STATUS_ERROR, STATUS_OK, STATUS_UNSET, SpanRecord

T0 = 1_793_610_000_000_000_000  # 2026-11-02T09:00:00Z

EVERY_TYPE = {
    "a.str": "hello",
    "a.empty_str": "",
    "a.bool": True,
    "a.false": False,
    "a.int": 42,
    "a.zero": 0,
    "a.negative": -(2**63),
    "a.float": 0.25,
    "a.float_zero": 0.0,
    "a.strs": ("x", "y"),
    "a.bools": (True, False),
    "a.ints": (1, 2, 3),
    "a.floats": (1.5, -2.0),
    # OTLP AnyValue types this SDK accepts on spans too:
    "a.mixed": (1, "two", True, 2.5, None),
    "a.bytes": b"\x00\xffab",
    "a.map": {"n": 1, "inner": {"list": (1, 2), "s": "x"}},
}


# --- helpers -----------------------------------------------------------------------------


def typed(value: Any) -> Any:
    """A value with its type made part of equality: True != 1, 1.0 != 1, NaN == NaN."""
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    if isinstance(value, tuple | list):
        return (type(value).__name__, tuple(typed(item) for item in value))
    if isinstance(value, Mapping):
        return ("dict", tuple(sorted((key, typed(item)) for key, item in value.items())))
    return (type(value).__name__, value)


def decoded(value: Any) -> Any:
    """What the decoder must make of an SDK attribute value: bytes become hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return tuple(decoded(item) for item in value)
    if isinstance(value, Mapping):
        return {key: decoded(item) for key, item in value.items()}
    return value


def row(record: SpanRecord) -> tuple[Any, ...]:
    return (
        record.trace_id,
        record.span_id,
        record.parent_span_id,
        record.name,
        record.start_ns,
        record.end_ns,
        record.status_code,
        record.status_message,
        record.kind,
        typed(dict(record.attributes)),
        typed(dict(record.resource)),
        record.scope,
    )


def rows(records: list[SpanRecord]) -> list[tuple[Any, ...]]:
    return [row(record) for record in records]


def to_otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON as the specification defines it: protobuf's JSON mapping with integer
    enums, except that trace and span IDs are hex, not base64."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document


def sdk_spans() -> list[ReadableSpan]:
    """Nested spans from two services and two scopes, finished by the real SDK."""
    exporter = InMemorySpanExporter()
    providers = []
    for service in ("frontend", "worker"):
        provider = TracerProvider(
            resource=Resource.create(
                {"service.name": service, "host.ids": (1, 2), "deployment.canary": False}
            )
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers.append(provider)
    agents = providers[0].get_tracer("agents", "1.0")
    llm = providers[0].get_tracer("llm.instrumentation")
    worker = providers[1].get_tracer("worker.tools")

    root = agents.start_span(
        "invoke_agent supervisor",
        kind=SpanKind.SERVER,
        attributes={"gen_ai.agent.name": "supervisor", **EVERY_TYPE},
        start_time=T0,
    )
    root_context = trace.set_span_in_context(root)
    failed = llm.start_span(
        "chat gpt-4o",
        context=root_context,
        kind=SpanKind.CLIENT,
        attributes={"gen_ai.request.model": "gpt-4o", "error.type": "RateLimitError"},
        start_time=T0 + 10,
    )
    failed.set_status(Status(StatusCode.ERROR, "Error code: 429"))
    failed.end(end_time=T0 + 20)
    retry = llm.start_span(
        "chat gpt-4o",
        context=root_context,
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 80,
        },
        start_time=T0 + 30,
    )
    retry.set_status(Status(StatusCode.OK))
    tool = worker.start_span(
        "execute_tool web_search",
        context=trace.set_span_in_context(retry),
        kind=SpanKind.INTERNAL,
        attributes={"gen_ai.tool.name": "web_search"},
        start_time=T0 + 40,
    )
    tool.end(end_time=T0 + 50)
    retry.end(end_time=T0 + 60)
    root.end(end_time=T0 + 70)
    other = agents.start_span("standalone", kind=SpanKind.PRODUCER, start_time=T0 + 100)
    other.end(end_time=T0 + 200)
    return list(exporter.get_finished_spans())


def expected_row(span: ReadableSpan) -> tuple[Any, ...]:
    """What a SpanRecord of this SDK span must hold, computed from the SDK's own objects."""
    context = span.get_span_context()
    return (
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
        f"{span.parent.span_id:016x}" if span.parent else "",
        span.name,
        span.start_time,
        span.end_time,
        {StatusCode.UNSET: STATUS_UNSET, StatusCode.OK: STATUS_OK, StatusCode.ERROR: 2}[
            span.status.status_code
        ],
        span.status.description or "",
        # OTLP numbers span kinds from 1 (INTERNAL); the SDK's enum starts at 0.
        {
            SpanKind.INTERNAL: 1,
            SpanKind.SERVER: 2,
            SpanKind.CLIENT: 3,
            SpanKind.PRODUCER: 4,
            SpanKind.CONSUMER: 5,
        }[span.kind],
        typed(decoded(dict(span.attributes))),
        typed(decoded(dict(span.resource.attributes))),
        span.instrumentation_scope.name,
    )


@pytest.fixture(scope="module")
def spans() -> list[ReadableSpan]:
    return sdk_spans()


@pytest.fixture(scope="module")
def request_pb(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    return encode_spans(spans)


@pytest.fixture(scope="module")
def payload(request_pb: ExportTraceServiceRequest) -> bytes:
    return request_pb.SerializeToString()


@pytest.fixture(scope="module")
def json_doc(request_pb: ExportTraceServiceRequest) -> dict[str, Any]:
    return to_otlp_json(request_pb)


def half(spans: list[ReadableSpan], part: int) -> bytes:
    return encode_spans(spans[part::2]).SerializeToString()


# --- protobuf ----------------------------------------------------------------------------


def test_protobuf_gives_what_the_sdk_recorded(spans: list[ReadableSpan], payload: bytes) -> None:
    records = decode_protobuf(payload)
    assert len(records) == len(spans) == 5
    by_id = {record.span_id: row(record) for record in records}
    for span in spans:
        assert by_id[f"{span.get_span_context().span_id:016x}"] == expected_row(span)


def test_protobuf_tree_status_and_scopes(payload: bytes) -> None:
    records = decode_protobuf(payload)
    (root,) = [r for r in records if r.name == "invoke_agent supervisor"]
    (failed,) = [r for r in records if r.status_code == STATUS_ERROR]
    (retry,) = [r for r in records if r.status_code == STATUS_OK]
    (tool,) = [r for r in records if r.name == "execute_tool web_search"]
    (standalone,) = [r for r in records if r.name == "standalone"]
    assert root.is_root and root.parent_span_id == ""
    assert (root.kind, root.scope, root.resource["service.name"]) == (2, "agents", "frontend")
    assert failed.failed and failed.status_message == "Error code: 429"
    assert failed.parent_span_id == retry.parent_span_id == root.span_id
    assert not retry.failed and retry.name == failed.name
    # a child in another service (resource) and scope keeps its parent
    assert (tool.parent_span_id, tool.scope) == (retry.span_id, "worker.tools")
    assert tool.resource["service.name"] == "worker"
    assert len({root.trace_id, failed.trace_id, retry.trace_id, tool.trace_id}) == 1
    assert standalone.trace_id != root.trace_id and standalone.is_root


def test_protobuf_ids_are_lowercase_hex(payload: bytes) -> None:
    for record in decode_protobuf(payload):
        assert re.fullmatch(r"[0-9a-f]{32}", record.trace_id)
        assert re.fullmatch(r"[0-9a-f]{16}", record.span_id)
        assert record.parent_span_id == "" or re.fullmatch(r"[0-9a-f]{16}", record.parent_span_id)


def test_attribute_types_survive(payload: bytes) -> None:
    root = next(r for r in decode_protobuf(payload) if r.name == "invoke_agent supervisor")
    for key, value in EVERY_TYPE.items():
        assert typed(root.attributes[key]) == typed(decoded(value)), key
    assert root.attributes["a.bytes"] == "00ff6162"
    assert root.attributes["a.map"] == {"n": 1, "inner": {"list": (1, 2), "s": "x"}}
    assert typed(root.resource["host.ids"]) == typed((1, 2))
    assert root.resource["deployment.canary"] is False


def handmade_request() -> ExportTraceServiceRequest:
    """Values the SDK never writes but OTLP allows: kvlist, bytes, empty, nested arrays,
    special doubles, and an all-zero parent span id."""
    kv = KeyValue
    attributes = [
        kv(key="bytes", value=AnyValue(bytes_value=b"\x00\xffab")),
        kv(key="empty", value=AnyValue()),
        kv(key="no_value"),
        kv(key="inf", value=AnyValue(double_value=float("inf"))),
        kv(key="nan", value=AnyValue(double_value=float("nan"))),
        kv(key="empty_string", value=AnyValue(string_value="")),
        kv(
            key="map",
            value=AnyValue(
                kvlist_value=KeyValueList(
                    values=[
                        kv(key="n", value=AnyValue(int_value=7)),
                        kv(
                            key="list",
                            value=AnyValue(
                                array_value=ArrayValue(
                                    values=[
                                        AnyValue(string_value="s"),
                                        AnyValue(bool_value=False),
                                        AnyValue(),
                                        AnyValue(
                                            kvlist_value=KeyValueList(
                                                values=[
                                                    kv(key="x", value=AnyValue(double_value=2.0))
                                                ]
                                            )
                                        ),
                                    ]
                                )
                            ),
                        ),
                    ]
                )
            ),
        ),
        kv(key="empty_array", value=AnyValue(array_value=ArrayValue())),
    ]
    span = Span(
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        parent_span_id=bytes(8),
        name="handmade",
        kind=Span.SpanKind.SPAN_KIND_CONSUMER,
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 5,
        attributes=attributes,
    )
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )


HANDMADE_ATTRIBUTES = {
    "bytes": "00ff6162",
    "empty": None,
    "no_value": None,
    "inf": float("inf"),
    "nan": float("nan"),
    "empty_string": "",
    "map": {"n": 7, "list": ("s", False, None, {"x": 2.0})},
    "empty_array": (),
}


def test_protobuf_value_mapping() -> None:
    (record,) = decode_protobuf(handmade_request().SerializeToString())
    assert typed(dict(record.attributes)) == typed(HANDMADE_ATTRIBUTES)
    assert record.parent_span_id == ""  # all-zero parent: a root
    assert record.trace_id == "0102030405060708090a0b0c0d0e0f10"
    assert record.span_id == "0102030405060708"
    assert (record.kind, record.resource, record.scope) == (5, {}, "")
    assert record.status_code == STATUS_UNSET


def test_spans_of_one_resource_share_its_decoded_attributes(payload: bytes) -> None:
    records = [r for r in decode_protobuf(payload) if r.resource["service.name"] == "frontend"]
    assert len(records) == 4
    assert all(record.resource is records[0].resource for record in records)


def test_empty_request_has_no_spans() -> None:
    assert decode_protobuf(b"") == []
    assert decode_json(b"{}") == []
    assert decode_json('{"resourceSpans": []}') == []


def bad_ids(trace_id: bytes, span_id: bytes, parent: bytes = b"") -> bytes:
    span = Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name="x")
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(),
            ResourceSpans(
                scope_spans=[ScopeSpans(), ScopeSpans(spans=[Span(trace_id=b"t" * 16), span])]
            ),
        ]
    )
    # the first span is valid except for its span id: give it one
    request.resource_spans[1].scope_spans[1].spans[0].span_id = b"s" * 8
    return request.SerializeToString()


@pytest.mark.parametrize(
    ("trace_id", "span_id", "parent", "problem"),
    [
        (b"t" * 15, b"s" * 8, b"", "traceId must be 16 bytes, got 15"),
        (b"", b"s" * 8, b"", "traceId is missing"),
        (bytes(16), b"s" * 8, b"", "traceId is all zeros"),
        (b"t" * 16, b"s" * 9, b"", "spanId must be 8 bytes, got 9"),
        (b"t" * 16, b"", b"", "spanId is missing"),
        (b"t" * 16, bytes(8), b"", "spanId is all zeros"),
        (b"t" * 16, b"s" * 8, b"p" * 4, "parentSpanId must be 8 bytes or empty, got 4"),
    ],
)
def test_protobuf_bad_ids_are_named(
    trace_id: bytes, span_id: bytes, parent: bytes, problem: str
) -> None:
    where = "resourceSpans[1].scopeSpans[1].spans[1]: "
    with pytest.raises(OtlpDecodeError, match=re.escape(where + problem)):
        decode_protobuf(bad_ids(trace_id, span_id, parent))


@pytest.mark.parametrize("cut", [1, 7, 100])
def test_truncated_protobuf_is_rejected(payload: bytes, cut: int) -> None:
    with pytest.raises(OtlpDecodeError, match="not a valid OTLP ExportTraceServiceRequest"):
        decode_protobuf(payload[:-cut])


def test_garbage_protobuf_is_rejected() -> None:
    with pytest.raises(OtlpDecodeError, match="truncated or corrupt"):
        decode_protobuf(b"\xff\xff\xff\xff")


def test_protobuf_needs_bytes() -> None:
    with pytest.raises(OtlpDecodeError, match="expected bytes, got str"):
        decode_protobuf("{}")  # type: ignore[arg-type]


# --- JSON --------------------------------------------------------------------------------


def test_json_gives_the_same_records_as_protobuf(payload: bytes, json_doc: dict[str, Any]) -> None:
    from_pb = decode_protobuf(payload)
    from_json = decode_json(json.dumps(json_doc))
    assert len(from_json) == 5
    assert rows(from_json) == rows(from_pb)
    assert decode_json(json.dumps(json_doc).encode()) == from_json  # bytes in, same out


def test_json_value_mapping_matches_protobuf() -> None:
    request = handmade_request()
    document = to_otlp_json(request)
    # protobuf's JSON mapping writes bytes as base64 and the special doubles as names
    (span,) = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    attributes = {item["key"]: item.get("value") for item in span["attributes"]}
    assert attributes["bytes"] == {"bytesValue": base64.b64encode(b"\x00\xffab").decode()}
    assert attributes["nan"] == {"doubleValue": "NaN"}
    (record,) = decode_json(json.dumps(document))
    assert row(record) == row(decode_protobuf(request.SerializeToString())[0])
    assert typed(dict(record.attributes)) == typed(HANDMADE_ATTRIBUTES)


def one_attribute(value: Any) -> str:
    span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "attributes": [{"key": "k", "value": value}]}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"bytesValue": "//8="}, "ffff"),
        ({"bytesValue": "__8"}, "ffff"),  # base64url without padding
        ({"intValue": "-12"}, -12),
        ({"intValue": 3.0}, 3),
        ({"doubleValue": 3}, 3.0),
        ({"doubleValue": "1.5"}, 1.5),
        ({"doubleValue": "-Infinity"}, float("-inf")),
        ({"string_value": "snake"}, "snake"),
        ({"stringValue": None}, None),
        ({"someFutureValue": 1}, None),
        ({"arrayValue": {}}, ()),
        ({"kvlistValue": {"values": [{"key": "a"}]}}, {"a": None}),
    ],
)
def test_json_value_forms(value: Any, expected: Any) -> None:
    (record,) = decode_json(one_attribute(value))
    assert typed(record.attributes["k"]) == typed(expected)


def test_json_accepts_number_and_string_forms(json_doc: dict[str, Any], payload: bytes) -> None:
    document = copy.deepcopy(json_doc)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                span["startTimeUnixNano"] = int(span["startTimeUnixNano"])  # number, not string
                span["traceId"] = span["traceId"].upper()  # hex of either case
                span["kind"] = {1: "SPAN_KIND_INTERNAL", 2: "SPAN_KIND_SERVER"}.get(
                    span["kind"], span["kind"]
                )
                for attribute in span.get("attributes", []):
                    value = attribute["value"]
                    if "intValue" in value:
                        value["intValue"] = int(value["intValue"])
                span["unknownField"] = {"ignored": True}  # the spec says: ignore
    assert rows(decode_json(json.dumps(document))) == rows(decode_protobuf(payload))


def test_json_snake_case_keys_are_accepted(payload: bytes) -> None:
    document = json_format.MessageToDict(
        ExportTraceServiceRequest.FromString(payload),
        use_integers_for_enums=True,
        preserving_proto_field_name=True,
    )
    for resource_spans in document["resource_spans"]:
        for scope_spans in resource_spans["scope_spans"]:
            for span in scope_spans["spans"]:
                for key in ("trace_id", "span_id", "parent_span_id"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    assert rows(decode_json(json.dumps(document))) == rows(decode_protobuf(payload))


def span_path(document: dict[str, Any]) -> dict[str, Any]:
    return document["resourceSpans"][0]["scopeSpans"][0]["spans"][1]


def set_field(key: str, value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        span_path(document)[key] = value

    return change


def set_attribute_value(value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        span_path(document)["attributes"][0]["value"] = value

    return change


SPAN = re.escape("resourceSpans[0].scopeSpans[0].spans[1]: ")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (set_field("traceId", "ab" * 15 + "a"), SPAN + "traceId must be 32 hex characters"),
        (set_field("traceId", "zz" * 16), SPAN + "traceId must be 32 hex characters"),
        (set_field("traceId", base64.b64encode(b"t" * 16).decode()), SPAN + ".*looks like base64"),
        (set_field("traceId", 12), SPAN + "traceId must be a string of 32 hex characters"),
        (set_field("traceId", "0" * 32), SPAN + "traceId is all zeros"),
        (set_field("spanId", None), SPAN + "spanId is missing"),
        (set_field("spanId", "abc"), SPAN + "spanId must be 16 hex characters"),
        (set_field("parentSpanId", "ab" * 9), SPAN + "parentSpanId must be 16 hex characters"),
        (set_field("startTimeUnixNano", "soon"), SPAN + "startTimeUnixNano must be an integer"),
        (set_field("endTimeUnixNano", 1.5), SPAN + "endTimeUnixNano must be an integer"),
        (set_field("endTimeUnixNano", -1), SPAN + "endTimeUnixNano -1 does not fit"),
        (set_field("name", ["x"]), SPAN + "name must be a string, got an array"),
        (set_field("kind", "SERVER"), SPAN + "kind must be an integer enum value"),
        (set_field("kind", True), SPAN + "kind must be an integer enum value"),
        (set_field("status", "ERROR"), SPAN + "expected status: an object"),
        (set_field("status", {"code": "bad"}), SPAN + "status.code must be an integer"),
        (set_field("status", {"message": 3}), SPAN + "status.message must be a string"),
        (set_field("attributes", {"a": 1}), SPAN + "attributes must be an array, got an object"),
        (
            set_field("attributes", ["a"]),
            SPAN + re.escape("attributes[0]: expected a {key, value}"),
        ),
        (
            set_field("attributes", [{"value": {}}]),
            SPAN + re.escape("attributes[0]: key is missing"),
        ),
        (
            set_attribute_value({"intValue": "12x"}),
            SPAN + re.escape("attributes[0] (key 'gen_ai.request.model'): intValue must be"),
        ),
        (set_attribute_value({"intValue": 2**63}), SPAN + ".*does not fit in a signed 64-bit"),
        (set_attribute_value({"boolValue": "true"}), SPAN + ".*boolValue must be true or false"),
        (set_attribute_value({"stringValue": 5}), SPAN + ".*stringValue must be a string"),
        (set_attribute_value({"doubleValue": "fast"}), SPAN + ".*doubleValue must be a number"),
        (set_attribute_value({"bytesValue": "!!"}), SPAN + ".*bytesValue must be a base64"),
        (
            set_attribute_value({"stringValue": "a", "intValue": "1"}),
            SPAN + ".*sets both stringValue and intValue",
        ),
        (set_attribute_value("plain"), SPAN + ".*value must be an AnyValue object"),
        (
            set_attribute_value({"arrayValue": {"values": [{"intValue": "x"}]}}),
            SPAN + re.escape("attributes[0] (key 'gen_ai.request.model'): arrayValue.values[0]: "),
        ),
        (
            set_attribute_value({"kvlistValue": {"values": [{"key": "k", "value": 1}]}}),
            SPAN
            + re.escape("attributes[0] (key 'gen_ai.request.model'): kvlistValue.values[0] ")
            + re.escape("(key 'k'): value must be an AnyValue object, got a number (1)"),
        ),
        (set_attribute_value({"arrayValue": []}), SPAN + ".*arrayValue must be an object"),
        (
            lambda d: d["resourceSpans"][0]["scopeSpans"][0]["spans"].__setitem__(1, "span"),
            SPAN + "expected a span, got a string",
        ),
        (
            lambda d: d["resourceSpans"][0].__setitem__("scopeSpans", {}),
            re.escape("resourceSpans[0]: scopeSpans must be an array, got an object"),
        ),
        (
            lambda d: d["resourceSpans"][0].__setitem__("resource", {"attributes": 1}),
            re.escape("resourceSpans[0]: resource.attributes must be an array"),
        ),
        (
            lambda d: d["resourceSpans"][0]["scopeSpans"][0].__setitem__("scope", {"name": 1}),
            re.escape("resourceSpans[0].scopeSpans[0]: scope.name must be a string"),
        ),
        (lambda d: d.__setitem__("resourceSpans", 3), "resourceSpans must be an array"),
    ],
)
def test_malformed_json_is_named(json_doc: dict[str, Any], change: Any, message: str) -> None:
    document = copy.deepcopy(json_doc)
    # the first attribute of span 1 is the one set_attribute_value replaces
    assert span_path(document)["attributes"][0]["key"] == "gen_ai.request.model"
    change(document)
    with pytest.raises(OtlpDecodeError, match="^" + message):
        decode_json(json.dumps(document))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{", "not valid JSON"),
        (b"\xff\xfe\x00", "not"),
        ("[]", "expected a JSON object .*got an array"),
        ("null", "expected a JSON object .*got null"),
        ('"x"', "expected a JSON object .*got a string"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_json_that_is_not_a_request(data: Any, message: str) -> None:
    with pytest.raises(OtlpDecodeError, match=message):
        decode_json(data)


# --- files -------------------------------------------------------------------------------


def json_line(spans: list[ReadableSpan]) -> bytes:
    return json.dumps(to_otlp_json(encode_spans(spans)), separators=(",", ":")).encode()


def stream(*messages: bytes) -> bytes:
    return b"".join(len(message).to_bytes(4, "big") + message for message in messages)


def expected_two_batches(spans: list[ReadableSpan]) -> list[tuple[Any, ...]]:
    return rows(decode_protobuf(half(spans, 0)) + decode_protobuf(half(spans, 1)))


def test_read_json_lines(tmp_path: Path, spans: list[ReadableSpan]) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(b"\n" + json_line(spans[0::2]) + b"\n  \n" + json_line(spans[1::2]) + b"\n\n")
    records = read_file(path)
    assert rows(records) == expected_two_batches(spans)
    assert len(records) == 5


def test_read_json_lines_with_crlf_and_bom(tmp_path: Path, spans: list[ReadableSpan]) -> None:
    path = tmp_path / "traces.json"
    path.write_bytes(b"\xef\xbb\xbf" + json_line(spans[0::2]) + b"\r\n" + json_line(spans[1::2]))
    assert rows(read_file(path)) == expected_two_batches(spans)


def test_read_pretty_printed_request(tmp_path: Path, json_doc: dict[str, Any]) -> None:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(json_doc, indent=2))
    assert rows(read_file(path)) == rows(decode_json(json.dumps(json_doc)))


def test_read_single_binary_request(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "traces.binpb"
    path.write_bytes(payload)
    assert rows(read_file(path)) == rows(decode_protobuf(payload))


def test_read_length_prefixed_stream(tmp_path: Path, spans: list[ReadableSpan]) -> None:
    path = tmp_path / "traces.proto"
    path.write_bytes(stream(half(spans, 0), b"", half(spans, 1)))
    assert rows(read_file(path)) == expected_two_batches(spans)


@pytest.mark.parametrize("kind", ["jsonl", "stream", "single"])
def test_read_gzip(tmp_path: Path, spans: list[ReadableSpan], payload: bytes, kind: str) -> None:
    content = {
        "jsonl": json_line(spans[0::2]) + b"\n" + json_line(spans[1::2]) + b"\n",
        "stream": stream(half(spans, 0), half(spans, 1)),
        "single": payload,
    }[kind]
    path = tmp_path / "traces.gz"
    path.write_bytes(gzip.compress(content))
    expected = rows(decode_protobuf(payload)) if kind == "single" else expected_two_batches(spans)
    assert rows(read_file(path)) == expected


def test_format_comes_from_content_not_name(tmp_path: Path, spans: list[ReadableSpan]) -> None:
    path = tmp_path / "actually-json.binpb"
    path.write_bytes(json_line(spans))
    assert len(read_file(str(path))) == 5


def test_binary_request_that_starts_like_json(tmp_path: Path) -> None:
    """A bare request starts with 0x0A ("\\n") and its first length; a length of 123 is
    "{". Such a file looks like JSON and must still be read as protobuf."""
    for size in range(200):
        request = ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    scope_spans=[
                        ScopeSpans(
                            spans=[Span(trace_id=b"t" * 16, span_id=b"s" * 8, name="n" * size)]
                        )
                    ]
                )
            ]
        )
        content = request.SerializeToString()
        if content.startswith(b"\n{"):
            break
    else:
        pytest.fail("no request size gives a first length of 123")
    path = tmp_path / "tricky.binpb"
    path.write_bytes(content)
    (record,) = read_file(path)
    assert record.trace_id == (b"t" * 16).hex() and record.name == "n" * size


def test_empty_files_have_no_spans(tmp_path: Path) -> None:
    for name, content in [("a", b""), ("b", b"\n\n  \n"), ("c", gzip.compress(b""))]:
        (tmp_path / name).write_bytes(content)
        assert read_file(tmp_path / name) == []


def test_bad_json_line_names_file_and_line(tmp_path: Path, spans: list[ReadableSpan]) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(json_line(spans) + b"\n\n" + b'{"resourceSpans": [}\n')
    with pytest.raises(OtlpDecodeError, match=re.escape(f"{path}:3: not valid JSON")):
        read_file(path)


def test_non_object_line_names_file_and_line(tmp_path: Path, spans: list[ReadableSpan]) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(json_line(spans) + b"\n[1, 2]\n")
    with pytest.raises(OtlpDecodeError, match=re.escape(f"{path}:2: expected a JSON object")):
        read_file(path)


def test_first_line_not_json_names_line_1(tmp_path: Path, spans: list[ReadableSpan]) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(b"{oops\n" + json_line(spans) + b"\n")
    with pytest.raises(OtlpDecodeError, match=re.escape(f"{path}:1: not valid JSON")):
        read_file(path)


def test_bad_span_names_file_line_and_span(tmp_path: Path, spans: list[ReadableSpan]) -> None:
    document = to_otlp_json(encode_spans(spans))
    span_path(document)["traceId"] = "abc"
    path = tmp_path / "traces.jsonl"
    path.write_bytes(
        json_line(spans) + b"\n" + json_line(spans) + b"\n" + json.dumps(document).encode()
    )
    expected = f"{path}:3: resourceSpans[0].scopeSpans[0].spans[1]: traceId must be 32 hex"
    with pytest.raises(OtlpDecodeError, match=re.escape(expected)):
        read_file(path)


def test_truncated_stream_names_byte_offset(tmp_path: Path, spans: list[ReadableSpan]) -> None:
    first, second = half(spans, 0), half(spans, 1)
    path = tmp_path / "traces.proto"
    path.write_bytes(stream(first, second)[:-10])
    offset = 4 + len(first)
    with pytest.raises(
        OtlpDecodeError,
        match=re.escape(f"{path}: byte offset {offset}: the message length prefix says"),
    ):
        read_file(path)


def test_corrupt_message_in_stream_names_byte_offset(
    tmp_path: Path, spans: list[ReadableSpan]
) -> None:
    first = half(spans, 0)
    path = tmp_path / "traces.proto"
    path.write_bytes(stream(first, first, b"\xff\xff\xff", first))
    offset = 2 * (4 + len(first))
    with pytest.raises(
        OtlpDecodeError, match=re.escape(f"{path}: byte offset {offset}: not a valid OTLP")
    ):
        read_file(path)


def test_bad_ids_in_stream_name_offset_and_span(tmp_path: Path, spans: list[ReadableSpan]) -> None:
    first = half(spans, 0)
    path = tmp_path / "traces.proto"
    path.write_bytes(stream(first, bad_ids(b"t" * 16, b"s" * 3)))
    expected = (
        f"{path}: byte offset {4 + len(first)}: resourceSpans[1].scopeSpans[1].spans[1]: spanId"
    )
    with pytest.raises(OtlpDecodeError, match=re.escape(expected)):
        read_file(path)


def test_stream_with_a_broken_length_prefix(tmp_path: Path, spans: list[ReadableSpan]) -> None:
    first = half(spans, 0)
    path = tmp_path / "traces.proto"
    path.write_bytes(stream(first) + b"\x00\x00")
    with pytest.raises(
        OtlpDecodeError,
        match=re.escape(f"{path}: byte offset {4 + len(first)}: a message length prefix needs 4"),
    ):
        read_file(path)


def test_truncated_single_request_names_offset_0(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "traces.binpb"
    path.write_bytes(payload[:-5])
    with pytest.raises(OtlpDecodeError, match=re.escape(f"{path}: byte offset 0: not a valid")):
        read_file(path)


def test_truncated_gzip(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "traces.binpb.gz"
    path.write_bytes(gzip.compress(payload)[:-12])
    with pytest.raises(OtlpDecodeError, match=re.escape(f"{path}: gzip-compressed, but")):
        read_file(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(OtlpDecodeError, match=re.escape(f"{path}: cannot read")):
        read_file(path)
