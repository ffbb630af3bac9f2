"""SpanLedgerProcessor: attribution and budgets, on the thread that starts each span.

Kept cheap on purpose: with no baggage and no budget in the context, `on_start` is two
context look-ups and `on_end` one dict look-up. Pricing for enrichment and metrics happens
in CostExporter, in the export thread.
"""

from __future__ import annotations

import logging
import threading

from opentelemetry import context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Status, StatusCode

from spanledger import conventions as c
from spanledger.pricing import PriceBook
from spanledger.sdk.attribution import baggage_dimensions
from spanledger.sdk.budget import Budget, BudgetExceeded, active_budgets
from spanledger.sdk.enrich import attributes_of, price_span
from spanledger.sdk.health import Health
from spanledger.usage import MODEL_KEYS

log = logging.getLogger("spanledger.sdk")

# Operations that are model calls even before the instrumentation names the model
# (OpenLLMetry's Anthropic spans start with the operation and add the model later).
_CALLS = frozenset({"chat", "text_completion", "generate_content", "embeddings", "completion"})
_ADMIT = threading.Lock()  # a call is admitted by all its budgets, or by none


def _model(attributes: object) -> str | None:
    for key in MODEL_KEYS:
        value = attributes.get(key)  # type: ignore[attr-defined]
        if value:
            return str(value)
    return None


class SpanLedgerProcessor(SpanProcessor):
    """Copies attribution baggage onto spans and enforces budgets."""

    def __init__(self, book: PriceBook, health: Health | None = None) -> None:
        self.book = book
        self.health = health or Health()
        self._charging: dict[int, tuple[Budget, ...]] = {}  # span id -> budgets to charge
        self._shut_down = False

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        if self._shut_down:  # a provider that was shut down still starts spans
            return
        ctx = parent_context if parent_context is not None else context.get_current()
        try:
            dimensions = baggage_dimensions(ctx)
            if dimensions:
                own = span.attributes
                span.set_attributes({k: v for k, v in dimensions.items() if k not in own})
        except Exception:
            self.health.error("attribution")
            log.exception("spanledger: could not attribute span %r", span.name)
        budgets = active_budgets(ctx)
        if budgets:
            self._guard(span, budgets)

    def _guard(self, span: Span, budgets: tuple[Budget, ...]) -> None:
        try:
            attributes = span.attributes
            operation = attributes.get(c.GEN_AI_OPERATION_NAME) or attributes.get(
                c.TRACELOOP_REQUEST_TYPE
            )
            operation = operation if isinstance(operation, str) else None
            tool = attributes.get(c.GEN_AI_TOOL_NAME)
            model = _model(attributes)
        except Exception:
            self.health.error("budget")
            log.exception("spanledger: could not read span %r for its budget", span.name)
            return
        try:
            if tool or operation == "execute_tool":
                arguments = str(attributes.get(c.GEN_AI_TOOL_CALL_ARGUMENTS, ""))
                for each in budgets:
                    each.admit_tool_call(str(tool or span.name), arguments)
            elif (model or operation in _CALLS) and operation not in c.AGENT_OPERATIONS:
                with _ADMIT:
                    for each in budgets:
                        each.check_llm_call(model)
                    for each in budgets:
                        each.count_llm_call()
                self._charging[span.context.span_id] = budgets
        except BudgetExceeded as refused:
            self._refuse(span, refused)
            raise  # the user's explicit request: stop the run

    def _refuse(self, span: Span, refused: BudgetExceeded) -> None:
        """Mark and end the span of the call that was not sent, so it is seen."""
        try:
            span.set_attributes(
                {
                    c.BUDGET_REFUSED: refused.reason,
                    c.BUDGET_NAME: refused.budget.name,
                    c.ERROR_TYPE: type(refused).__name__,
                }
            )
            span.set_status(Status(StatusCode.ERROR, str(refused)))
            span.end()
        except Exception:
            self.health.error("budget")
            log.exception("spanledger: could not mark refused span %r", span.name)
        log.warning("spanledger: %s", refused)

    def on_end(self, span: ReadableSpan) -> None:
        if not self._charging or span.context is None:
            return
        budgets = self._charging.pop(span.context.span_id, None)
        if budgets is None:
            return
        try:
            priced = price_span(self.book, span, attributes_of(span))
            amount = priced.cost.total
        except Exception:
            self.health.error("budget")
            log.exception("spanledger: could not price span %r for its budget", span.name)
            return
        for each in budgets:
            each.charge(amount)

    def shutdown(self) -> None:
        self._shut_down = True
        self._charging.clear()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
