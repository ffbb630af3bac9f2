"""CostExporter: exports enriched copies of spans, with their cost as attributes.

The OTel Python SDK makes a span read-only once it ends, and usage (tokens) is only known
at the end, so cost cannot be set on the live span. Instead this exporter wraps the
user's exporter and hands it *copies* of the finished spans with `spanledger.*`
attributes added. It runs inside the BatchSpanProcessor's worker thread, so pricing and
copying are off the application's request path, and any backend (Jaeger, Tempo, Phoenix,
a vendor) shows cost with no change on its side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from spanledger import conventions as c
from spanledger.pricing import PriceBook
from spanledger.pricing.attributes import cost_attributes
from spanledger.pricing.book import PricedCall
from spanledger.sdk.health import Health
from spanledger.sdk.metrics import LedgerMetrics

log = logging.getLogger("spanledger.sdk")


def attributes_of(span: ReadableSpan) -> dict[str, Any]:
    """A plain dict of a span's attributes. `copy()` of the SDK's attribute mapping is a
    C-level dict copy, ten times faster than iterating it."""
    attributes = span.attributes
    if not attributes:
        return {}
    copied = attributes.copy() if hasattr(attributes, "copy") else None
    return copied if isinstance(copied, dict) else dict(attributes)


def price_span(book: PriceBook, span: ReadableSpan, attributes: dict[str, Any]) -> PricedCall:
    """Price a finished SDK span (its status tells whether the call failed)."""
    failed = span.status.status_code is StatusCode.ERROR or c.ERROR_TYPE in attributes
    return book.price_attributes(
        attributes, span.start_time or 0, span.resource.attributes, failed=failed
    )


def enriched(span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
    """A copy of a finished span with other attributes (the original stays untouched)."""
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class CostExporter(SpanExporter):
    """Wraps any SpanExporter: LLM spans leave with their cost; others leave unchanged.

    Never raises into the pipeline: a span that cannot be priced is logged, counted in
    `health`, and exported as it was."""

    def __init__(
        self,
        exporter: SpanExporter | None,
        book: PriceBook,
        *,
        metrics: LedgerMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.exporter = exporter
        self.book = book
        self.metrics = metrics
        self.health = health or Health()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        priced_calls: list[tuple[PricedCall, dict[str, Any]]] = []
        out = [self._enrich(span, priced_calls) for span in spans]
        if self.metrics is not None and priced_calls:
            try:
                self.metrics.record(priced_calls)
            except Exception:
                self.health.error("metrics")
                log.exception("spanledger: could not record spend metrics")
        if self.exporter is None:
            return SpanExportResult.SUCCESS
        try:
            return self.exporter.export(out)
        except Exception:  # a broken exporter must not break the host
            self.health.error("export")
            log.exception("spanledger: the wrapped exporter failed; %d spans lost", len(out))
            return SpanExportResult.FAILURE

    def _enrich(
        self, span: ReadableSpan, priced_calls: list[tuple[PricedCall, dict[str, Any]]]
    ) -> ReadableSpan:
        try:
            attributes = attributes_of(span)
            priced = price_span(self.book, span, attributes)
            if priced.cost.status is None:
                return span  # not an LLM call: nothing to add
            priced_calls.append((priced, attributes))
            return enriched(span, {**attributes, **cost_attributes(priced)})
        except Exception:
            self.health.error("pricing")
            log.exception("spanledger: could not price span %r; exported without cost", span.name)
            return span

    def shutdown(self) -> None:
        if self.exporter is not None:
            self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        if self.exporter is None:
            return True
        return self.exporter.force_flush(timeout_millis)
