"""SpanLedger in-process: every LLM span carries its cost; attribution; budgets.

>>> import spanledger
>>> spanledger.instrument(exporter=OTLPSpanExporter(), rates=["rates.yaml"])
>>> with spanledger.attribute(user_id="u-42", department="research"):
...     with spanledger.budget(max_usd=0.50, max_llm_calls=40):
...         run_agent()
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from opentelemetry import metrics, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from spanledger.pricing import PriceBook, RateSheet, RateSheetError
from spanledger.sdk.attempts import (
    AsyncTracedTransport,
    TracedTransport,
    traced_async_transport,
    traced_transport,
)
from spanledger.sdk.attribution import attribute
from spanledger.sdk.budget import Budget, BudgetExceeded, LoopDetected, budget
from spanledger.sdk.enrich import CostExporter, cost_attributes
from spanledger.sdk.health import Health
from spanledger.sdk.metrics import LedgerMetrics
from spanledger.sdk.processor import SpanLedgerProcessor

log = logging.getLogger("spanledger.sdk")

__all__ = [
    "AsyncTracedTransport",
    "Budget",
    "BudgetExceeded",
    "CostExporter",
    "Ledger",
    "LoopDetected",
    "SpanLedgerProcessor",
    "TracedTransport",
    "attribute",
    "budget",
    "cost_attributes",
    "instrument",
    "traced_async_transport",
    "traced_transport",
]


@dataclass
class Ledger:
    """What `instrument()` set up, to inspect or shut down."""

    book: PriceBook
    tracer_provider: TracerProvider
    processor: SpanLedgerProcessor
    exporter: CostExporter
    health: Health

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.tracer_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()


def instrument(
    exporter: SpanExporter | None = None,
    *,
    rates: Iterable[str | Path] = (),
    use_default_prices: bool = True,
    tracer_provider: TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    metrics_include_user: bool = False,
) -> Ledger:
    """Price every LLM span in this process and export it with its cost.

    Uses `tracer_provider`, else the global SDK provider, else installs a new global one.
    `exporter` receives enriched copies of all spans (batched). A rate sheet that cannot
    be loaded is logged and skipped: instrumentation never stops the application.
    """
    health = Health()
    sheets = []
    for path in rates:
        try:
            sheets.append(RateSheet.load(path))
        except RateSheetError as error:
            health.error("rates")
            log.error("spanledger: rate sheet skipped, prices may be wrong: %s", error)
    book = PriceBook(sheets, use_defaults=use_default_prices)
    if tracer_provider is None:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            tracer_provider = current
        else:
            tracer_provider = TracerProvider()
            trace.set_tracer_provider(tracer_provider)
    processor = SpanLedgerProcessor(book, health)
    tracer_provider.add_span_processor(processor)
    cost_exporter = CostExporter(
        exporter,
        book,
        metrics=LedgerMetrics(meter_provider, include_user=metrics_include_user),
        health=health,
    )
    tracer_provider.add_span_processor(BatchSpanProcessor(cost_exporter))
    return Ledger(book, tracer_provider, processor, cost_exporter, health)
