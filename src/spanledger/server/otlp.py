"""OTLP trace data → `SpanRecord` rows: protobuf, JSON, and OTel Collector file exports.

Pure decoding, no network. `decode_protobuf` and `decode_json` take one
`ExportTraceServiceRequest` (the body of an OTLP/HTTP request); `read_file` reads what the
Collector's `file` exporter writes. All three raise `OtlpDecodeError` for malformed input,
naming where the problem is, and never a bare KeyError or TypeError.

Attribute values (OTLP `AnyValue`) become plain Python values, identically for both
encodings:

=================================  ===========================================
AnyValue                           Python
=================================  ===========================================
string / bool / int / double       str / bool / int / float
array                              tuple (immutable, like SDK attribute sequences)
kvlist                             dict
bytes                              lowercase hex str, like the IDs: JSON-safe for
                                   every store and API (base64 in OTLP/JSON)
unset (empty AnyValue)             None
=================================  ===========================================

IDs are lowercase hex (32 chars for traces, 16 for spans); an empty or all-zero parent
span id means a root span (""). Resource attributes are decoded once per `ResourceSpans`
and the same dict is shared by all its spans: treat `SpanRecord.resource` as read-only.

Partial success: receivers pass a `rejected` list to `decode_protobuf`, `decode_message`
or `decode_json`. A span that cannot be used (a missing, zero or wrong-length id; in JSON
also a field of the wrong type) is then skipped, its reason appended to the list, and
decoding goes on; `export_response(rejected)` is the OTLP answer that reports them. A body
that cannot be parsed at all still raises `OtlpDecodeError`, and without the list any
problem raises, as before.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import gzip
import json
import os
import re
import zlib
from collections.abc import Iterable
from pathlib import Path
from sys import intern
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from spanledger.spans import SpanRecord

try:  # the compiled fast path (server/_wire.c), built by `pip install`
    from spanledger.server import _wire
except ImportError:  # pragma: no cover - a source tree without the build step
    _wire = None

__all__ = [
    "OtlpDecodeError",
    "decode_json",
    "decode_message",
    "decode_protobuf",
    "export_response",
    "read_file",
]


class OtlpDecodeError(ValueError):
    """OTLP trace data that cannot be decoded. The message names where (file, line or byte
    offset, and the path inside the request) and what is wrong."""


class _Bad(Exception):
    """A problem inside one part of a request; outer layers prefix where it is."""


_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_GZIP_MAGIC = b"\x1f\x8b"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_TIME_PROBLEM = "a timestamp after the year 2262 (beyond 64-bit nanoseconds) is not a time"
_UINT64_MAX = 2**64 - 1

# ------------------------------------------------------------------------------------------
# Protobuf
# ------------------------------------------------------------------------------------------

_PB_SCALARS = frozenset({"string_value", "bool_value", "int_value", "double_value"})


def decode_protobuf(data: bytes, rejected: list[str] | None = None) -> list[SpanRecord]:
    """Spans of one binary `ExportTraceServiceRequest` (OTLP/HTTP protobuf or gRPC body).

    With `rejected`, spans with unusable ids are skipped and their reasons appended to it
    (partial success); without it, the first one raises `OtlpDecodeError`. A span kind or
    status code outside OTLP's enums is read as unspecified (unset): the span is kept."""
    request = None
    if _wire is None or type(data) is not bytes or not _wire.valid(data):
        request = _parse(data)  # `valid` was not sure (or not there): upb decides
    if _wire is not None:
        # A well-formed body: the C reader builds the same records ~10x faster, or answers
        # None for what only the Python path handles.
        records = _wire.decode(data, SpanRecord)
        if records is not None:
            return records
    return decode_message(request if request is not None else _parse(data), rejected)


def _parse(data: bytes) -> ExportTraceServiceRequest:
    try:
        return ExportTraceServiceRequest.FromString(data)
    except DecodeError as error:
        raise OtlpDecodeError(
            f"not a valid OTLP ExportTraceServiceRequest protobuf (truncated or corrupt?): {error}"
        ) from None
    except TypeError:
        raise OtlpDecodeError(f"expected bytes, got {type(data).__name__}") from None


def decode_message(
    request: ExportTraceServiceRequest, rejected: list[str] | None = None
) -> list[SpanRecord]:
    """Spans of an already parsed `ExportTraceServiceRequest` message (see
    `decode_protobuf` for `rejected`)."""
    # Hot path. Measured on 2000 GenAI spans of 15 attributes (upb backend, Python 3.11):
    # ~75-80k spans/s end to end (~13 us/span). upb's parse is only 0.75 us/span; the rest
    # is upb creating a Python wrapper per nested message (~9 us/span even for a bare
    # `{kv.key: kv.value.string_value}`), so per value we do one read on the common path.
    # WhichOneof on every value measured ~7% slower, ListFields() ~20% slower, and a
    # hand-written wire-format parser in Python slower still.
    records: list[SpanRecord] = []
    append = records.append
    for r_index, resource_spans in enumerate(request.resource_spans):
        resource = _pb_attributes(resource_spans.resource.attributes)
        for s_index, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope.name
            for index, span in enumerate(scope_spans.spans):
                trace_id = span.trace_id
                span_id = span.span_id
                parent = span.parent_span_id
                if (
                    len(trace_id) != 16
                    or len(span_id) != 8
                    or trace_id == _ZERO_TRACE_ID
                    or span_id == _ZERO_SPAN_ID
                    or (parent and len(parent) != 8)
                    or span.start_time_unix_nano > _INT64_MAX
                    or span.end_time_unix_nano > _INT64_MAX
                ):
                    where = f"resourceSpans[{r_index}].scopeSpans[{s_index}].spans[{index}]"
                    problem = f"{where}: {_pb_span_problem(span)}"
                    if rejected is None:
                        raise OtlpDecodeError(problem)
                    rejected.append(problem)
                    continue
                status = span.status
                kind, code = span.kind, status.code
                parent_id = "" if not parent or parent == _ZERO_SPAN_ID else parent.hex()
                append(
                    SpanRecord(
                        trace_id=trace_id.hex(),
                        span_id=span_id.hex(),
                        parent_span_id=parent_id,
                        name=span.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=code if 0 <= code < len(_STATUS_CODES) else 0,
                        status_message=status.message,
                        kind=kind if 0 <= kind < len(_SPAN_KINDS) else 0,
                        attributes=_pb_attributes(span.attributes),
                        resource=resource,
                        scope=scope,
                    )
                )
    return records


def _pb_attributes(key_values: Iterable[Any]) -> dict[str, Any]:
    # Keys are interned: every span of an open trace is held in memory until its trace is
    # finalized, and its ~15 key strings would otherwise be ~1 KB of copies per span.
    attributes: dict[str, Any] = {}
    for key_value in key_values:
        value = key_value.value
        text = value.string_value
        if text:  # most GenAI attributes are non-empty strings: one read, no WhichOneof
            attributes[intern(key_value.key)] = intern(text) if len(text) <= 64 else text
            continue
        kind = value.WhichOneof("value")
        if kind in _PB_SCALARS:
            attributes[intern(key_value.key)] = getattr(value, kind)
        else:
            attributes[intern(key_value.key)] = _pb_compound(value, kind)
    return attributes


def _pb_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind in _PB_SCALARS:
        return getattr(value, kind)
    return _pb_compound(value, kind)


def _pb_compound(value: Any, kind: str | None) -> Any:
    if kind == "array_value":
        return tuple(_pb_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return _pb_attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    # None: an empty AnyValue. "string_value_strindex" indexes the profiles signal's
    # string table; it has no meaning in a trace.
    return None


def _pb_span_problem(span: Any) -> str:
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    if span.start_time_unix_nano > _INT64_MAX or span.end_time_unix_nano > _INT64_MAX:
        return _TIME_PROBLEM
    if not trace_id:
        return "traceId is missing"
    if len(trace_id) != 16:
        return f"traceId must be 16 bytes, got {len(trace_id)}"
    if trace_id == _ZERO_TRACE_ID:
        return "traceId is all zeros, which OTLP defines as invalid"
    if not span_id:
        return "spanId is missing"
    if len(span_id) != 8:
        return f"spanId must be 8 bytes, got {len(span_id)}"
    if span_id == _ZERO_SPAN_ID:
        return "spanId is all zeros, which OTLP defines as invalid"
    return f"parentSpanId must be 8 bytes or empty, got {len(parent)}"


def export_response(rejected: list[str] | None = None) -> ExportTraceServiceResponse:
    """The OTLP answer to an accepted request: empty, or a partial success that counts the
    rejected spans and says why the first one was (and how many more there were)."""
    if not rejected:
        return ExportTraceServiceResponse()
    message = rejected[0]
    if len(rejected) > 1:
        message += f" (and {len(rejected) - 1} more)"
    return ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(
            rejected_spans=len(rejected), error_message=message
        )
    )


# ------------------------------------------------------------------------------------------
# JSON
# ------------------------------------------------------------------------------------------

_HEX = re.compile(r"[0-9a-fA-F]+")
_DECIMAL = re.compile(r"-?[0-9]+")
_SPAN_KINDS = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_SPECIAL_DOUBLES = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def decode_json(data: bytes | str, rejected: list[str] | None = None) -> list[SpanRecord]:
    """Spans of one OTLP/JSON `ExportTraceServiceRequest`.

    Follows the OTLP/JSON encoding: lowerCamelCase keys (the original snake_case names
    are accepted too, as protobuf's JSON parsers do), hex trace and span IDs, 64-bit
    integers as strings or numbers, enums as integers (their names are accepted too),
    bytes as base64. Unknown keys are ignored, as the specification requires.

    With `rejected`, spans that cannot be used are skipped and their reasons appended to
    it (partial success); without it, the first problem raises `OtlpDecodeError`.

    ~40k spans/s on the benchmark above; `json.loads` alone is ~45% of that time."""
    try:
        document = json.loads(data)
    except UnicodeDecodeError as error:
        raise OtlpDecodeError(f"not UTF-8 text: {error.reason} at byte {error.start}") from None
    except json.JSONDecodeError as error:
        raise OtlpDecodeError(
            f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    except RecursionError:
        raise OtlpDecodeError("not valid JSON: nested too deeply") from None
    except TypeError as error:
        raise OtlpDecodeError(f"expected bytes or str, got {type(data).__name__}") from error
    records = _json_request(document, rejected)
    if _SURROGATE.search(data if isinstance(data, bytes) else data.encode("utf-8", "replace")):
        records = _unicode_only(records, rejected)
    return records


# A \uD800-\uDFFF escape, or such a code point in the raw bytes: JSON can carry an unpaired
# surrogate, which is not text and no store can write. Checked only when one may be there.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _unicode_only(records: list[SpanRecord], rejected: list[str] | None) -> list[SpanRecord]:
    kept = []
    for record in records:
        try:
            json.dumps([record.name, record.status_message, record.attributes, record.resource],
                       ensure_ascii=False, default=str).encode("utf-8")  # fmt: skip
        except UnicodeEncodeError:
            problem = f"span {record.span_id}: text with an unpaired UTF-16 surrogate"
            if rejected is None:
                raise OtlpDecodeError(problem) from None
            rejected.append(problem)
            continue
        kept.append(record)
    return kept


def _json_request(document: Any, rejected: list[str] | None = None) -> list[SpanRecord]:
    """The spans of a parsed request. With `rejected`, a problem in a span's content (or in
    its resource or scope, which it shares) rejects only the spans concerned; a request
    whose structure is broken (lists that are not lists, ...) is malformed as a whole."""
    if type(document) is not dict:
        raise OtlpDecodeError(
            f"expected a JSON object (an ExportTraceServiceRequest), got {_json_type(document)}"
        )
    records: list[SpanRecord] = []
    try:
        all_resource_spans = _json_array(
            _get(document, "resourceSpans", "resource_spans"), "resourceSpans"
        )
    except _Bad as bad:
        raise OtlpDecodeError(str(bad)) from None
    for r_index, resource_spans in enumerate(all_resource_spans):
        where = f"resourceSpans[{r_index}]"
        try:
            _json_object(resource_spans, "a ResourceSpans")
            all_scope_spans = _json_array(
                _get(resource_spans, "scopeSpans", "scope_spans"), "scopeSpans"
            )
        except _Bad as bad:
            raise OtlpDecodeError(f"{where}: {bad}") from None
        problem = None  # why every span of this resource is rejected, in partial mode
        resource: dict[str, Any] = {}
        try:
            resource_object = resource_spans.get("resource")
            if resource_object is not None:
                _json_object(resource_object, "resource: an object")
                resource = _json_attributes(
                    resource_object.get("attributes"), "resource.attributes"
                )
        except _Bad as bad:
            problem = f"{where}: {bad}"
        except RecursionError:
            problem = f"{where}: attributes nested too deeply"
        if problem is not None and rejected is None:
            raise OtlpDecodeError(problem)
        for s_index, scope_spans in enumerate(all_scope_spans):
            where = f"resourceSpans[{r_index}].scopeSpans[{s_index}]"
            try:
                _json_object(scope_spans, "a ScopeSpans")
                spans = _json_array(scope_spans.get("spans"), "spans")
            except _Bad as bad:
                raise OtlpDecodeError(f"{where}: {bad}") from None
            scope = ""
            shared = problem
            if shared is None:
                try:
                    scope = _json_scope_name(scope_spans.get("scope"))
                except _Bad as bad:
                    if rejected is None:
                        raise OtlpDecodeError(f"{where}: {bad}") from None
                    shared = f"{where}: {bad}"
            if shared is not None:
                assert rejected is not None
                rejected.extend([shared] * len(spans))
                continue
            for index, span in enumerate(spans):
                try:
                    records.append(_json_span(span, resource, scope))
                    continue
                except _Bad as bad:
                    reason = f"{where}.spans[{index}]: {bad}"
                except RecursionError:
                    reason = f"{where}.spans[{index}]: attributes nested too deeply"
                if rejected is None:
                    raise OtlpDecodeError(reason)
                rejected.append(reason)
    return records


def _json_span(span: Any, resource: dict[str, Any], scope: str) -> SpanRecord:
    _json_object(span, "a span")
    parent = _get(span, "parentSpanId", "parent_span_id")
    status = span.get("status")
    if status is None:
        status_code, status_message = 0, ""
    else:
        _json_object(status, "status: an object")
        status_code = _json_enum(status.get("code"), "status.code", _STATUS_CODES)
        status_message = _json_string(status.get("message"), "status.message")
    parent_id = "" if parent is None or parent == "" else _json_id(parent, 16, "parentSpanId")
    return SpanRecord(
        trace_id=_json_id(_get(span, "traceId", "trace_id"), 32, "traceId"),
        span_id=_json_id(_get(span, "spanId", "span_id"), 16, "spanId"),
        parent_span_id="" if parent_id == "0" * 16 else parent_id,
        name=_json_string(span.get("name"), "name"),
        start_ns=_json_time(_get(span, "startTimeUnixNano", "start_time_unix_nano"), "start"),
        end_ns=_json_time(_get(span, "endTimeUnixNano", "end_time_unix_nano"), "end"),
        status_code=status_code,
        status_message=status_message,
        kind=_json_enum(span.get("kind"), "kind", _SPAN_KINDS),
        attributes=_json_attributes(span.get("attributes"), "attributes"),
        resource=resource,
        scope=scope,
    )


def _json_scope_name(scope: Any) -> str:
    if scope is None:
        return ""
    _json_object(scope, "scope: an object")
    return _json_string(scope.get("name"), "scope.name")


def _json_attributes(items: Any, field: str) -> dict[str, Any]:
    if items is None:
        return {}
    if type(items) is not list:
        raise _Bad(f"{field} must be an array, got {_json_type(items)}")
    attributes: dict[str, Any] = {}
    for index, item in enumerate(items):
        if type(item) is dict:
            key = item.get("key")
            value = item.get("value")
            if type(key) is str:
                try:
                    if type(value) is dict and len(value) == 1:  # fast path: one set field
                        ((name, raw),) = value.items()
                        if name == "stringValue" and type(raw) is str:
                            attributes[key] = raw
                            continue
                        convert = _ANY_VALUE_FIELDS.get(name)
                        if convert is not None and raw is not None:
                            attributes[key] = convert(raw)
                            continue
                    attributes[key] = _json_value(value)
                except _Bad as bad:
                    raise _Bad(f"{field}[{index}] (key {key!r}): {bad}") from None
                continue
            problem = "key is missing" if key is None else f"key must be a string, got {key!r}"
        else:
            problem = f"expected a {{key, value}} object, got {_json_type(item)}"
        raise _Bad(f"{field}[{index}]: {problem}")
    return attributes


def _json_value(value: Any) -> Any:
    """An AnyValue object → Python (see the module docstring for the mapping)."""
    if value is None:
        return None
    if type(value) is not dict:
        raise _Bad(f"value must be an AnyValue object, got {_json_type(value)}")
    found: tuple[str, Any] | None = None
    for name, raw in value.items():
        if name in _ANY_VALUE_FIELDS and raw is not None:
            if found is not None:
                raise _Bad(f"value sets both {found[0]} and {name}; an AnyValue holds one")
            found = (name, raw)
    if found is None:
        return None  # an empty AnyValue, or only keys we do not know
    name, raw = found
    return _ANY_VALUE_FIELDS[name](raw)


def _string_value(raw: Any) -> str:
    if type(raw) is not str:
        raise _Bad(f"stringValue must be a string, got {_json_type(raw)}")
    return raw


def _bool_value(raw: Any) -> bool:
    if type(raw) is not bool:
        raise _Bad(f"boolValue must be true or false, got {_json_type(raw)}")
    return raw


def _int_value(raw: Any) -> int:
    if type(raw) is int:
        number = raw
    elif (type(raw) is str and _DECIMAL.fullmatch(raw)) or (
        type(raw) is float and raw.is_integer()
    ):
        number = int(raw)
    else:
        raise _Bad(f"intValue must be an integer (a number or a decimal string), got {raw!r}")
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise _Bad(f"intValue {number} does not fit in a signed 64-bit integer")
    return number


def _double_value(raw: Any) -> float:
    if type(raw) is float or type(raw) is int:
        return float(raw)
    if type(raw) is str:
        special = _SPECIAL_DOUBLES.get(raw)
        if special is not None:
            return special
        try:
            return float(raw)
        except ValueError:
            pass
    raise _Bad(f"doubleValue must be a number, got {raw!r}")


def _bytes_value(raw: Any) -> str:
    if type(raw) is str:
        text = raw.replace("-", "+").replace("_", "/")  # base64url is allowed too
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True).hex()
        except (binascii.Error, ValueError):
            pass
    raise _Bad(f"bytesValue must be a base64 string, got {_show(raw)}")


def _array_value(raw: Any) -> tuple[Any, ...]:
    if type(raw) is not dict:
        raise _Bad(f"arrayValue must be an object with `values`, got {_json_type(raw)}")
    items = raw.get("values")
    if items is None:
        return ()
    if type(items) is not list:
        raise _Bad(f"arrayValue.values must be an array, got {_json_type(items)}")
    values = []
    for index, item in enumerate(items):
        try:
            values.append(_json_value(item))
        except _Bad as bad:
            raise _Bad(f"arrayValue.values[{index}]: {bad}") from None
    return tuple(values)


def _kvlist_value(raw: Any) -> dict[str, Any]:
    if type(raw) is not dict:
        raise _Bad(f"kvlistValue must be an object with `values`, got {_json_type(raw)}")
    return _json_attributes(raw.get("values"), "kvlistValue.values")


_ANY_VALUE_FIELDS = {
    "stringValue": _string_value,
    "boolValue": _bool_value,
    "intValue": _int_value,
    "doubleValue": _double_value,
    "arrayValue": _array_value,
    "kvlistValue": _kvlist_value,
    "bytesValue": _bytes_value,
    "string_value": _string_value,
    "bool_value": _bool_value,
    "int_value": _int_value,
    "double_value": _double_value,
    "array_value": _array_value,
    "kvlist_value": _kvlist_value,
    "bytes_value": _bytes_value,
}


def _json_id(value: Any, size: int, field: str) -> str:
    if type(value) is str and len(value) == size and _HEX.fullmatch(value):
        value = value.lower()
        if field != "parentSpanId" and value == "0" * size:
            raise _Bad(f"{field} is all zeros, which OTLP defines as invalid")
        return value
    if value is None or value == "":
        raise _Bad(f"{field} is missing")
    if type(value) is not str:
        raise _Bad(f"{field} must be a string of {size} hex characters, got {_json_type(value)}")
    hint = ""
    if len(value) == 4 * ((size // 2 + 2) // 3):  # the length of the ID in base64
        hint = " (it looks like base64; OTLP/JSON writes trace and span IDs as hex)"
    raise _Bad(f"{field} must be {size} hex characters, got {_show(value)}{hint}")


def _json_uint64(value: Any, field: str) -> int:
    if value is None:
        return 0
    if type(value) is int:
        number = value
    elif type(value) is str and _DECIMAL.fullmatch(value):
        number = int(value)
    else:
        raise _Bad(f"{field} must be an integer (a number or a decimal string), got {value!r}")
    if not 0 <= number <= _UINT64_MAX:
        raise _Bad(f"{field} {number} does not fit in an unsigned 64-bit integer")
    return number


def _json_time(value: Any, which: str) -> int:
    number = _json_uint64(value, f"{which}TimeUnixNano")
    if number > _INT64_MAX:
        raise _Bad(f"{which}TimeUnixNano: {_TIME_PROBLEM}")
    return number


def _json_enum(value: Any, field: str, names: dict[str, int]) -> int:
    if value is None:
        return 0
    if type(value) is int:
        return value if 0 <= value < len(names) else 0  # not an OTLP value: unspecified
    if type(value) is str and value in names:
        return names[value]
    raise _Bad(f"{field} must be an integer enum value, got {value!r}")


def _json_string(value: Any, field: str) -> str:
    if value is None:
        return ""
    if type(value) is not str:
        raise _Bad(f"{field} must be a string, got {_json_type(value)}")
    return value


def _json_object(value: Any, what: str) -> None:
    if type(value) is not dict:
        raise _Bad(f"expected {what}, got {_json_type(value)}")


def _json_array(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise _Bad(f"{field} must be an array, got {_json_type(value)}")
    return value


def _get(mapping: dict[str, Any], camel: str, snake: str) -> Any:
    value = mapping.get(camel)
    return mapping.get(snake) if value is None else value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, str):
        return f"a string ({_show(value)})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 48 else text[:45] + "..."


# ------------------------------------------------------------------------------------------
# Files written by the OTel Collector `file` exporter
# ------------------------------------------------------------------------------------------


def read_file(path: str | os.PathLike[str]) -> list[SpanRecord]:
    """Spans of a file written by the OTel Collector's `file` exporter, in file order.

    The format is detected from the content, not the name:

    - OTLP/JSON lines (`format: json`): one ExportTraceServiceRequest per line, blank
      lines ignored (a single pretty-printed request is accepted too);
    - binary protobuf: the `format: proto` stream, each message preceded by its length as
      a 4-byte big-endian unsigned int, or one bare ExportTraceServiceRequest;
    - either of them gzip-compressed.

    Errors name the file and the line (JSON) or the byte offset of the message
    (protobuf): ``OtlpDecodeError("traces.jsonl:3: resourceSpans[0]...: ...")``."""
    name = os.fspath(path)
    try:
        content = Path(path).read_bytes()
    except OSError as error:
        raise OtlpDecodeError(f"{name}: cannot read: {error.strerror or error}") from None
    if content[:2] == _GZIP_MAGIC:
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as error:
            raise OtlpDecodeError(
                f"{name}: gzip-compressed, but cannot be decompressed: {error}"
            ) from None
    records: list[SpanRecord] = []
    for batch in _decode_batches(content, name):
        records.extend(batch)
    return records


def _decode_batches(content: bytes, name: str) -> list[list[SpanRecord]]:
    """One list of spans per request in the file."""
    text = content.removeprefix(codecs.BOM_UTF8).lstrip()
    if not text:
        return []
    if text[:1] != b"{":
        return _protobuf_batches(content, name)
    try:
        return _json_lines(content.removeprefix(codecs.BOM_UTF8), name)
    except OtlpDecodeError:
        # A bare protobuf request starts with 0x0A ("\n"), then a length that may be
        # 0x7B ("{"): such a file only looks like JSON. Try it as protobuf before
        # reporting the JSON problem.
        if content[:1] == b"\n":
            try:
                return _protobuf_batches(content, name)
            except OtlpDecodeError:
                pass
        raise


def _json_lines(content: bytes, name: str) -> list[list[SpanRecord]]:
    batches: list[list[SpanRecord]] = []
    seen_line = False
    for number, line in enumerate(content.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except (ValueError, RecursionError) as error:
            if not seen_line:
                whole = _whole_document(content, name)
                if whole is not None:
                    return whole
            raise OtlpDecodeError(f"{name}:{number}: {_json_problem(error)}") from None
        seen_line = True
        try:
            batches.append(_json_request(document))
        except OtlpDecodeError as error:
            raise OtlpDecodeError(f"{name}:{number}: {error}") from None
    return batches


def _whole_document(content: bytes, name: str) -> list[list[SpanRecord]] | None:
    """A single request written over several lines (pretty-printed), if that is what
    the content is; None if it is not one JSON document."""
    try:
        document = json.loads(content)
    except (ValueError, RecursionError):
        return None
    try:
        return [_json_request(document)]
    except OtlpDecodeError as error:
        raise OtlpDecodeError(f"{name}: {error}") from None


def _json_problem(error: BaseException) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text: {error.reason} at byte {error.start} of the line"
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON: {error.msg} (column {error.colno})"
    return "not valid JSON: nested too deeply"


def _protobuf_batches(content: bytes, name: str) -> list[list[SpanRecord]]:
    frames, problem = _length_prefixed_frames(content)
    if problem is not None:
        if content[0] == 0:
            # A bare message never starts with a 0 byte (field number 0 does not exist),
            # so this is a length-prefixed stream that breaks off.
            raise OtlpDecodeError(f"{name}: byte offset {problem[0]}: {problem[1]}")
        try:
            return [decode_protobuf(content)]
        except OtlpDecodeError as error:
            raise OtlpDecodeError(f"{name}: byte offset 0: {error}") from None
    batches = []
    for offset, start, end in frames:
        try:
            batches.append(decode_protobuf(content[start:end]))
        except OtlpDecodeError as error:
            raise OtlpDecodeError(f"{name}: byte offset {offset}: {error}") from None
    return batches


def _length_prefixed_frames(
    content: bytes,
) -> tuple[list[tuple[int, int, int]], tuple[int, str] | None]:
    """(prefix offset, message start, message end) for each message of a `format: proto`
    stream, and (offset, reason) if the length prefixes do not tile the content exactly."""
    frames = []
    position, size = 0, len(content)
    while position < size:
        if size - position < 4:
            return frames, (
                position,
                f"a message length prefix needs 4 bytes, only {size - position} remain",
            )
        length = int.from_bytes(content[position : position + 4], "big")
        end = position + 4 + length
        if end > size:
            return frames, (
                position,
                f"the message length prefix says {length} bytes, but only "
                f"{size - position - 4} remain (truncated file?)",
            )
        frames.append((position, position + 4, end))
        position = end
    return frames, None
