"""Shared helpers for the in-process SDK tests (tests/test_sdk_*.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.instrumentation import openai_v2
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

import spanledger
from spanledger import conventions as c
from spanledger.demo.provider import FakeProvider
from spanledger.pricing import PriceBook
from spanledger.sdk import Ledger, TracedTransport, traced_transport
from spanledger.spans import SpanRecord


@dataclass
class Traced:
    """A TracerProvider instrumented by SpanLedger, exporting to memory."""

    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter
    ledger: Ledger

    def spans(self) -> list[ReadableSpan]:
        """Every span exported so far (after a flush), in the order they ended."""
        assert self.ledger.force_flush()
        assert self.ledger.health.errors == {}, "SpanLedger swallowed errors"
        return list(self.exporter.get_finished_spans())

    def llm_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.attributes and c.PRICE_STATUS in s.attributes]

    @property
    def book(self) -> PriceBook:
        return self.ledger.book

    @property
    def tracer(self) -> Tracer:
        return self.tracer_provider.get_tracer("test-app")

    def transport(self) -> TracedTransport:
        return traced_transport(tracer_provider=self.tracer_provider, health=self.ledger.health)


def make_traced(rates: Path, *, use_default_prices: bool = False) -> Traced:
    tracer_provider = TracerProvider()
    exporter = InMemorySpanExporter()
    ledger = spanledger.instrument(
        exporter=exporter,
        tracer_provider=tracer_provider,
        rates=[rates],
        use_default_prices=use_default_prices,
    )
    assert ledger.health.errors == {}, "the rate sheet did not load"
    return Traced(tracer_provider, exporter, ledger)


# Fixtures: a module imports the ones it uses (`from sdkkit import fake, ...`).
@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _fresh(fake: FakeProvider) -> None:
    fake.reset()


@pytest.fixture
def openai_traced(traced: Traced) -> Iterator[Traced]:
    instrumentor = openai_v2.OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=traced.tracer_provider)
    try:
        yield traced
    finally:
        instrumentor.uninstrument()


@pytest.fixture
def anthropic_traced(traced: Traced) -> Iterator[Traced]:
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(tracer_provider=traced.tracer_provider)
    try:
        yield traced
    finally:
        instrumentor.uninstrument()


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
