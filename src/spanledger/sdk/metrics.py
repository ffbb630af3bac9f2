"""Spend as OTel metrics, so Prometheus/Grafana/Datadog see cost without a trace backend.

Attributes are bounded in cardinality: provider, model, agent and price status. The user
is added only when asked (`include_user=True`), since user ids are unbounded.
"""

from __future__ import annotations

from collections.abc import Mapping
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

    def record(self, priced: PricedCall, attributes: Mapping[str, Any]) -> None:
        labels: dict[str, str] = {
            c.GEN_AI_PROVIDER_NAME: priced.provider or "unknown",
            c.GEN_AI_REQUEST_MODEL: priced.model or "unknown",
            c.PRICE_STATUS: priced.cost.status or "none",
        }
        agent = _first(attributes, c.DEFAULT_DIMENSIONS["agent"])
        if agent:
            labels[c.GEN_AI_AGENT_NAME] = agent
        if self.include_user:
            user = _first(attributes, c.DEFAULT_DIMENSIONS["user"])
            if user:
                labels[c.USER_ID] = user
        if priced.cost.status in ("priced", "reported_only"):
            self.cost.add(priced.cost.total / FEMTO_PER_USD, labels)
        usage = priced.usage
        counts = (
            usage.input_uncached,
            usage.cache_read,
            usage.cache_write + usage.cache_write_1h,
            usage.output,
        )
        for token_type, count in zip(TOKEN_TYPES, counts, strict=True):
            if count:
                self.tokens.add(count, {**labels, "gen_ai.token.type": token_type})
