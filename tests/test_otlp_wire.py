"""The compiled OTLP reader (server/_wire.c) against the Python decoder it stands in for.

`decode_protobuf` uses `_wire.decode` on every body upb has accepted; it must build the
very records `decode_message` builds, or answer None and leave the body to it. Hypothesis
generates requests with every AnyValue kind, nesting, odd enums and ids, duplicate keys
and non-ASCII text; hand-made wire bytes cover what no serializer writes (repeated singular
fields, which protobuf merges), and arbitrary bytes must never crash it.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

import orjson
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from spanledger.server import otlp
from spanledger.server.otlp import decode_message, decode_protobuf
from spanledger.spans import SpanRecord
from spanledger.store.duckdb import _json

_wire = pytest.importorskip("spanledger.server._wire", reason="the C extension is not built")

keys = st.sampled_from(["gen_ai.request.model", "user.id", "k", "", "ключ", "a" * 70])
texts = st.text(max_size=80) | st.sampled_from(["gpt-4o-mini", "x" * 64, "y" * 65, "é" * 64])


def any_values(depth: int = 2) -> st.SearchStrategy[AnyValue]:
    scalars = st.one_of(
        texts.map(lambda s: AnyValue(string_value=s)),
        st.booleans().map(lambda b: AnyValue(bool_value=b)),
        st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
        st.floats(allow_nan=False).map(lambda f: AnyValue(double_value=f)),
        st.binary(max_size=12).map(lambda b: AnyValue(bytes_value=b)),
        st.just(AnyValue()),
    )
    if depth == 0:
        return scalars

    def array(items: list[AnyValue]) -> AnyValue:
        value = AnyValue()
        value.array_value.values.extend(items)
        return value

    def kvlist(items: list[KeyValue]) -> AnyValue:
        value = AnyValue()
        value.kvlist_value.values.extend(items)
        return value

    inner = any_values(depth - 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=4).map(array),
        st.lists(key_values(inner), max_size=4).map(kvlist),
    )


def key_values(values: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[KeyValue]:
    return st.builds(lambda k, v: KeyValue(key=k, value=v), keys, values)


# Doubles at the edges of orjson's notations (plain decimal for 1e-5 <= |x| < 1e16).
FLOATS = [1e-5, 9.99e-6, 1e-6, 1e15, 9999999999999998.0, 1e16, 1.5e-7, 5e-324, -0.0, 0.1, 1e308]

attribute_lists = st.lists(key_values(any_values()), max_size=8)
ids = st.binary(min_size=16, max_size=16).filter(any)
span_ids = st.binary(min_size=8, max_size=8).filter(any)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    span = Span(
        trace_id=draw(ids),
        span_id=draw(span_ids),
        parent_span_id=draw(st.sampled_from([b"", bytes(8)]) | span_ids),
        name=draw(texts),
        kind=draw(st.integers(-3, 8)),
        start_time_unix_nano=draw(st.integers(0, 2**63 - 1)),
        end_time_unix_nano=draw(st.integers(0, 2**63 - 1)),
        status=Status(code=draw(st.integers(-2, 4)), message=draw(texts)),
    )
    span.attributes.extend(draw(attribute_lists))
    if draw(st.booleans()):
        span.events.add(name="event", time_unix_nano=1).attributes.extend(draw(attribute_lists))
    return span


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 3))):
        resource_spans = ResourceSpans(schema_url=draw(texts))
        if draw(st.booleans()):
            resource_spans.resource.attributes.extend(draw(attribute_lists))
        for _ in range(draw(st.integers(0, 3))):
            scope_spans = ScopeSpans()
            if draw(st.booleans()):
                scope_spans.scope.name = draw(texts)
                scope_spans.scope.version = "1.0"
            scope_spans.spans.extend(draw(st.lists(spans(), max_size=4)))
            resource_spans.scope_spans.append(scope_spans)
        request.resource_spans.append(resource_spans)
    return request


def python_path(body: bytes) -> list[SpanRecord]:
    return decode_message(ExportTraceServiceRequest.FromString(body))


def same(left: list[SpanRecord], right: list[SpanRecord]) -> None:
    """Equal records, with values of the same types (True is not 1, 1.0 is not 1)."""
    assert left == right
    assert _types(left) == _types(right)


def _types(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_types(item) for item in value]
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, SpanRecord):  # the fields records compare by (not the JSON texts)
        return [_types(getattr(value, f.name)) for f in dataclasses.fields(value) if f.compare]
    return type(value).__name__


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_fast_path_builds_the_records_the_python_path_builds(
    request: ExportTraceServiceRequest,
) -> None:
    body = request.SerializeToString()
    fast = _wire.decode(body, SpanRecord)
    assert fast is not None, "a well-formed request with valid ids stays on the fast path"
    same(fast, python_path(body))


def careful(value: Any) -> bool:
    """Whether `_json` takes its careful path for this value (orjson wrote a null)."""
    return b"null" in orjson.dumps(value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_json_texts_are_what_the_store_would_write(request: ExportTraceServiceRequest) -> None:
    for record in _wire.decode(request.SerializeToString(), SpanRecord):
        for text, value in (
            (record.attributes_json, record.attributes),
            (record.resource_json, record.resource),
        ):
            if careful(value):
                assert text is None  # left to `_json`
            else:
                assert text == _json(value)


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(FLOATS))
def test_doubles_are_written_as_orjson_writes_them(number: float) -> None:
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    )
    span.attributes.add(key="x").value.double_value = number
    (record,) = _wire.decode(request.SerializeToString(), SpanRecord)
    assert record.attributes_json == orjson.dumps({"x": number}).decode()


def test_what_json_cannot_say_plainly_is_left_to_the_store() -> None:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    cases = [math.nan, math.inf, None, "nullable", 'café \x00\x1f"\\']
    for index, value in enumerate(cases, start=1):
        span = scope.spans.add(trace_id=b"\x01" * 16, span_id=bytes([index]) * 8)
        attribute = span.attributes.add(key="k")
        if isinstance(value, float):
            attribute.value.double_value = value
        elif isinstance(value, str):
            attribute.value.string_value = value
    texts = [r.attributes_json for r in _wire.decode(request.SerializeToString(), SpanRecord)]
    assert texts == [None, None, None, None, '{"k":"café \\u0000\\u001f\\"\\\\"}']


def test_spans_of_one_resource_share_one_dict() -> None:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for index in range(1, 3):
        scope.spans.add(trace_id=b"\x01" * 16, span_id=bytes([index]) * 8)
    first, second = _wire.decode(request.SerializeToString(), SpanRecord)
    assert first.resource is second.resource


def test_keys_are_interned_and_short_values_shared_between_spans() -> None:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for index in range(1, 3):
        span = scope.spans.add(trace_id=b"\x01" * 16, span_id=bytes([index]) * 8)
        span.attributes.add(key="model", value=AnyValue(string_value="gpt-" + "4o"))
        span.attributes.add(key="response.id", value=AnyValue(string_value=f"resp-{index}"))
    first, second = _wire.decode(request.SerializeToString(), SpanRecord)
    # Identity is the point: one copy for every span an open trace holds in memory.
    assert next(iter(first.attributes)) is sys.intern("model")
    assert first.attributes["model"] is second.attributes["model"] == "gpt-4o"
    assert (first.attributes["response.id"], second.attributes["response.id"]) == (
        "resp-1",
        "resp-2",
    )


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2); payloads here are under 128 bytes."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _one_span_request(span: Span) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span)
    return request


GOOD = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="chat")


@pytest.mark.parametrize(
    ("span", "why"),
    [
        (Span(trace_id=bytes(16), span_id=b"\x02" * 8), "an all-zero trace id"),
        (Span(trace_id=b"\x01" * 15, span_id=b"\x02" * 8), "a short trace id"),
        (Span(trace_id=b"\x01" * 16, span_id=b""), "no span id"),
        (Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, parent_span_id=b"\x03"), "bad parent"),
        (
            Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, start_time_unix_nano=2**63),
            "a time beyond int64",
        ),
    ],
)
def test_spans_the_python_path_must_reject_leave_the_fast_path(span: Span, why: str) -> None:
    body = _one_span_request(span).SerializeToString()
    assert _wire.decode(body, SpanRecord) is None, why
    rejected: list[str] = []
    assert decode_protobuf(body, rejected) == []
    assert len(rejected) == 1  # the reason comes from the Python path


def test_a_singular_field_repeated_on_the_wire_is_merged_by_the_python_path() -> None:
    # Protobuf merges a repeated `status` message: the message of the first and the code of
    # the second. The fast path does not merge; it hands the body over.
    span = GOOD.SerializeToString()
    span += _field(15, Status(message="first").SerializeToString())
    span += _field(15, Status(code=2).SerializeToString())
    body = _field(1, _field(2, _field(2, span)))
    assert _wire.decode(body, SpanRecord) is None
    (record,) = decode_protobuf(body)
    assert (record.status_message, record.status_code) == ("first", 2)


def test_an_attribute_value_repeated_on_the_wire_is_handed_over() -> None:
    value = AnyValue(string_value="a").SerializeToString()
    pair = _field(1, b"k") + _field(2, value) + _field(2, AnyValue(int_value=3).SerializeToString())
    span = GOOD.SerializeToString() + _field(9, pair)
    body = _field(1, _field(2, _field(2, span)))
    assert _wire.decode(body, SpanRecord) is None
    assert decode_protobuf(body)[0].attributes == {"k": 3}


def test_nesting_deeper_than_the_fast_path_goes_is_handed_over() -> None:
    value = AnyValue(string_value="leaf")
    for _ in range(40):
        outer = AnyValue()
        outer.array_value.values.append(value)
        value = outer
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    span.attributes.add(key="deep", value=value)
    body = _one_span_request(span).SerializeToString()
    assert _wire.decode(body, SpanRecord) is None
    assert decode_protobuf(body) == python_path(body)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_it(data: bytes) -> None:
    result = _wire.decode(data, SpanRecord)
    assert result is None or isinstance(result, list)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.data())
def test_cut_or_flipped_bodies_never_crash_it(
    request: ExportTraceServiceRequest, data: Any
) -> None:
    body = bytearray(request.SerializeToString())
    if body:
        index = data.draw(st.integers(0, len(body) - 1))
        body[index] ^= data.draw(st.integers(1, 255))
        body = body[: data.draw(st.integers(0, len(body)))]
    result = _wire.decode(bytes(body), SpanRecord)
    assert result is None or isinstance(result, list)


def test_decode_protobuf_without_the_extension_gives_the_same(monkeypatch: Any) -> None:
    request = _one_span_request(GOOD)
    request.resource_spans[0].resource.attributes.add(
        key="service.name", value=AnyValue(string_value="svc")
    )
    body = request.SerializeToString()
    fast = decode_protobuf(body)
    monkeypatch.setattr(otlp, "_wire", None)
    same(fast, decode_protobuf(body))


# --- `valid`: sure that upb parses the body, checked without the GIL ----------------------

_KINDS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_MESSAGE: "message",
    FieldDescriptor.TYPE_DOUBLE: "fixed64",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_SFIXED64: "fixed64",
    FieldDescriptor.TYPE_FLOAT: "fixed32",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_SFIXED32: "fixed32",
}


def test_the_schema_valid_walks_is_the_otlp_protobuf_schema() -> None:
    """Every message reachable from ExportTraceServiceRequest, every field with its kind,
    as the generated descriptors (opentelemetry-proto) say."""
    expected: dict[str, dict[int, tuple[str, str | None]]] = {}
    pending = [ExportTraceServiceRequest.DESCRIPTOR]
    while pending:
        message = pending.pop()
        if message.full_name in expected:
            continue
        fields = expected[message.full_name] = {}
        for field in message.fields:
            assert not field.is_packed  # no repeated scalars: `valid` expects none
            kind = _KINDS.get(field.type, "varint")  # ints, bools and enums
            inner = field.message_type
            fields[field.number] = (kind, inner.full_name if inner else None)
            if inner is not None:
                pending.append(inner)
    assert _wire.schema() == expected


def upb_parses(body: bytes) -> bool:
    try:
        ExportTraceServiceRequest.FromString(body)
    except DecodeError:
        return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_requests_of_known_fields_are_valid(request: ExportTraceServiceRequest) -> None:
    assert _wire.valid(request.SerializeToString())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.data())
def test_what_valid_accepts_upb_parses(request: ExportTraceServiceRequest, data: Any) -> None:
    """Cut, flipped and spliced bodies: `valid` may be unsure of a good body, never sure of
    a bad one."""
    body = bytearray(request.SerializeToString())
    for _ in range(data.draw(st.integers(1, 3))):
        if not body:
            break
        index = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            body[index] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del body[index : index + data.draw(st.integers(1, 8))]
        else:
            body[index:index] = data.draw(st.binary(min_size=1, max_size=4))
    if _wire.valid(bytes(body)):
        assert upb_parses(bytes(body))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_valid_only_if_upb_parses_them(data: bytes) -> None:
    if _wire.valid(data):
        assert upb_parses(data)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (b"\xff", "not UTF-8 at all"),
        (b"\xc0\xaf", "an overlong form"),
        (b"\xed\xa0\x80", "a surrogate"),
        (b"\xf4\x90\x80\x80", "beyond U+10FFFF"),
        (b"ok\xe2\x82", "cut in the middle of a character"),
    ],
)
def test_a_string_that_is_not_utf8_is_left_to_upb_which_refuses_it(name: bytes, why: str) -> None:
    span = GOOD.SerializeToString() + _field(5, name)
    body = _field(1, _field(2, _field(2, span)))
    assert not _wire.valid(body), why
    assert not upb_parses(body), why
    with pytest.raises(otlp.OtlpDecodeError, match="not a valid OTLP"):
        decode_protobuf(body)


def test_utf8_text_of_every_length_is_valid() -> None:
    for name in ["", "a", "é", "€", "𝄞", "ascii then ключ then 𝄞 then 中文" * 3]:
        body = _one_span_request(Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name=name))
        assert _wire.valid(body.SerializeToString()), name


def test_an_unknown_field_is_left_to_upb_and_the_span_still_decoded_fast(
    monkeypatch: Any,
) -> None:
    unknown = b"from a newer OTLP"
    span = GOOD.SerializeToString() + bytes([20 << 3 | 2 | 0x80, 1, len(unknown)]) + unknown
    body = _field(1, _field(2, _field(2, span)))
    assert not _wire.valid(body)
    assert upb_parses(body)
    monkeypatch.setattr(otlp, "decode_message", None)  # the C reader, not the Python path
    (record,) = decode_protobuf(body)
    assert (record.name, record.span_id) == ("chat", "02" * 8)


@pytest.mark.parametrize(
    ("varint", "fits"),
    [
        (b"\x05", True),
        (b"\xff" * 9 + b"\x01", True),  # ten bytes: how a negative int is written
        (b"\xff" * 9 + b"\x02", False),  # ten bytes, beyond 64 bits
        (b"\xff" * 10 + b"\x01", False),  # eleven bytes
    ],
)
def test_a_varint_is_valid_only_within_64_bits(varint: bytes, fits: bool) -> None:
    """The span's `kind` (field 6, a varint) written in 1, 10 or 11 bytes: `valid` takes
    what fits 64 bits, and leaves the rest to upb."""
    span = GOOD.SerializeToString() + bytes([6 << 3]) + varint
    body = _field(1, _field(2, _field(2, span)))
    assert _wire.valid(body) is fits
    if fits:
        assert upb_parses(body)
