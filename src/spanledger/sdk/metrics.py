"""Spend as OTel metrics, so Prometheus/Grafana/Datadog see cost without a trace backend.

Attributes are bounded in cardinality: provider, model, agent and price status. The user
is added only when asked (`include_user=True`), since user ids are unbounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import metrics

from spanledger import conventions as c
from spanledger.pricing.book import PricedCall
from spanledger.pricing.money import FEMTO_PER_USD

TOKEN_TYPES = ("input", "cache_read", "cache_write", "output")


def _first(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if value:
            return str(value)
    return None


class LedgerMetrics:
    """`spanledger.cost` (USD) and `spanledger.token.usage` ({token}, by
    `gen_ai.token.type` as in `gen_ai.client.token.usage`) counters."""

    def __init__(
        self, meter_provider: metrics.MeterProvider | None = None, *, include_user: bool = False
    ) -> None:
        meter = metrics.get_meter("spanledger", meter_provider=meter_provider)
        self.include_user = include_user
        self.cost = meter.create_counter(
            "spanledger.cost", unit="USD", description="Cost of LLM calls, as priced by SpanLedger"
        )
        self.tokens = meter.create_counter(
            "spanledger.token.usage",
            unit="{token}",
            description="Tokens of LLM calls by type (input excludes cached tokens)",
        )

    def record(self, calls: Iterable[tuple[PricedCall, Mapping[str, Any]]]) -> None:
        """Add a batch of priced calls: summed per label set first, so a batch of 512
        spans costs a handful of counter updates, not thousands."""
        sums: dict[tuple[tuple[str, str], ...], list[int]] = {}
        for priced, attributes in calls:
            labels = self._labels(priced, attributes)
            usage, cost = priced.usage, priced.cost
            total = sums.setdefault(labels, [0, 0, 0, 0, 0])
            if cost.status in ("priced", "reported_only"):
                total[0] += cost.total
            total[1] += usage.input_uncached
            total[2] += usage.cache_read
            total[3] += usage.cache_write + usage.cache_write_1h
            total[4] += usage.output
        for labels, (cost_femto, *tokens) in sums.items():
            attributes = dict(labels)
            if cost_femto:
                self.cost.add(cost_femto / FEMTO_PER_USD, attributes)
            for token_type, count in zip(TOKEN_TYPES, tokens, strict=True):
                if count:
                    self.tokens.add(count, {**attributes, "gen_ai.token.type": token_type})

    def _labels(
        self, priced: PricedCall, attributes: Mapping[str, Any]
    ) -> tuple[tuple[str, str], ...]:
        labels = [
            (c.GEN_AI_PROVIDER_NAME, priced.provider or "unknown"),
            (c.GEN_AI_REQUEST_MODEL, priced.model or "unknown"),
            (c.PRICE_STATUS, priced.cost.status or "none"),
        ]
        agent = _first(attributes, c.DEFAULT_DIMENSIONS["agent"])
        if agent:
            labels.append((c.GEN_AI_AGENT_NAME, agent))
        if self.include_user:
            user = _first(attributes, c.DEFAULT_DIMENSIONS["user"])
            if user:
                labels.append((c.USER_ID, user))
        return tuple(labels)
