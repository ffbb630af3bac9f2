"""Shared helpers for the in-process SDK tests (tests/test_sdk_*.py)."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan

from spanledger.spans import SpanRecord


def record_of(span: ReadableSpan) -> SpanRecord:
    """A finished SDK span as the core's SpanRecord (hex ids as in OTLP/JSON)."""
    assert span.context is not None
    return SpanRecord(
        trace_id=f"{span.context.trace_id:032x}",
        span_id=f"{span.context.span_id:016x}",
        parent_span_id=f"{span.parent.span_id:016x}" if span.parent else "",
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time or 0,
        status_code=span.status.status_code.value,  # UNSET 0, OK 1, ERROR 2, as in OTLP
        status_message=span.status.description or "",
        kind=span.kind.value + 1,  # the SDK's SpanKind is OTLP's minus UNSPECIFIED
        attributes=dict(span.attributes or {}),
        resource=dict(span.resource.attributes),
        scope=span.instrumentation_scope.name if span.instrumentation_scope else "",
    )
