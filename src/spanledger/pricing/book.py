"""PriceBook: rates looked up once per (provider, model, period), then arithmetic.

The default prices come from `genai-prices` (offline data with history, tiers and cache
prices). Its own price calculation costs tens of microseconds per call; a span is priced
here by a dict lookup and five integer multiplications.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from spanledger import conventions as c
from spanledger.pricing import defaults
from spanledger.pricing.money import Femto, femto_from_usd
from spanledger.pricing.rates import Rates
from spanledger.pricing.sheets import RateSheet
from spanledger.usage import (
    MODEL_KEYS,
    NO_USAGE,
    PROVIDER_KEYS,
    SIGNATURE_KEYS,
    Usage,
    model_of,
    normalize,
    provider_of,
)

log = logging.getLogger(__name__)

PriceStatus = Literal["priced", "unpriced", "invalid_usage", "reported_only"]
CacheStatus = Literal["hit", "partial", "miss", "write", "none"]

_NS_PER_DAY = 86_400 * 10**9
_NS_PER_HALF_HOUR = 1_800 * 10**9

_Periods = tuple[int, dict[int, Rates | None]]  # a period's length, the rates of each period


@dataclass(slots=True)
class Cost:
    """What one span cost, split the way the bill splits it (all femto-dollars)."""

    status: PriceStatus | None  # None: not an LLM span (no usage, no model)
    input: Femto = 0
    cache_read: Femto = 0
    cache_write: Femto = 0  # 5-minute and 1-hour writes together
    output: Femto = 0
    saved_by_cache: Femto = 0  # what cache reads saved against the full input rate
    reported: Femto | None = None  # a cost the caller recorded on the span, kept as is
    cache_status: CacheStatus = "none"
    model: str | None = None  # the model the price belongs to
    source: str | None = None  # the sheet/version the price came from
    reason: str | None = None  # why a span is unpriced or its usage invalid

    @property
    def total(self) -> Femto:
        """This span's own cost. A reported-only span costs what the caller reported."""
        if self.status == "reported_only":
            return self.reported or 0
        return self.input + self.cache_read + self.cache_write + self.output

    @property
    def reported_difference(self) -> Femto | None:
        """Ours minus the caller's, where both exist: shown, never silently resolved."""
        if self.reported is None or self.status != "priced":
            return None
        return self.total - self.reported


NOT_LLM = Cost(status=None)


class PricedCall(NamedTuple):
    """Who was called (as the span names it), with which usage, at what cost."""

    provider: str | None
    model: str | None
    usage: Usage
    cost: Cost


# Every attribute `price_attributes` reads to find a call. A span with none of them (a tool
# or agent span) is not an LLM call whatever else it carries: one set check answers it.
_CALL_KEYS: frozenset[str] = frozenset(
    (*SIGNATURE_KEYS, *PROVIDER_KEYS, *MODEL_KEYS, *c.REPORTED_COST_KEYS, c.GEN_AI_RESPONSE_CACHED)
)
_NOT_A_CALL = PricedCall(None, None, NO_USAGE, NOT_LLM)


def cache_status(usage: Usage) -> CacheStatus:
    if usage.response_cached:
        return "hit"
    written = usage.cache_write + usage.cache_write_1h
    if usage.cache_read:
        return "hit" if not usage.input_uncached and not written else "partial"
    if written:
        return "write"
    return "miss" if usage.input_uncached else "none"


def reported_cost(attrs: Mapping[str, Any]) -> Femto | None:
    for key in c.REPORTED_COST_KEYS:
        if key in attrs:
            amount = femto_from_usd(attrs[key])
            if amount is not None and amount >= 0:
                return amount
    return None


class PriceBook:
    """Prices spans from rate sheets over the genai-prices defaults.

    >>> book = PriceBook([RateSheet.load("rates.yaml")])
    >>> cost = book.price(usage, provider="openai", model="gpt-4o-mini", start_ns=...)
    """

    def __init__(self, sheets: Sequence[RateSheet] = (), *, use_defaults: bool = True) -> None:
        self.sheets = tuple(sheets)
        self.use_defaults = use_defaults
        # (provider, model, alias) -> (period, {start_ns // period: rates}). The period is a
        # day, or half an hour for a model with time-of-day (off-peak) prices; the rates of
        # a period are those in force when its first span started.
        self._cache: dict[tuple[str | None, str, str | None], _Periods] = {}

    @classmethod
    def from_files(cls, paths: Iterable[str], *, use_defaults: bool = True) -> PriceBook:
        return cls([RateSheet.load(path) for path in paths], use_defaults=use_defaults)

    # -- rates ---------------------------------------------------------------------------
    def rates(
        self, provider: str | None, model: str, start_ns: int, alias: str | None = None
    ) -> Rates | None:
        """The rates in force for a model when a span started; None if it has no price.

        `alias` is the model as requested (`gpt-4o-mini`) when the span names the dated
        snapshot that answered (`gpt-4o-mini-2024-07-18`): a price for either applies,
        the exact name first."""
        key = (provider, model, alias)
        try:
            period, by_period = self._cache[key]
            return by_period[start_ns // period]
        except KeyError:
            pass
        periods = self._cache.get(key)
        if periods is None:
            period = (
                _NS_PER_HALF_HOUR if defaults.varies_within_day(provider, model) else _NS_PER_DAY
            )
            periods = self._cache.setdefault(key, (period, {}))
        period, by_period = periods
        at = dt.datetime.fromtimestamp(start_ns // 10**9, tz=dt.UTC)
        names = (model,) if alias is None or alias == model else (model, alias)
        found = by_period[start_ns // period] = self._lookup(provider, names, at)
        return found

    def _lookup(
        self, provider: str | None, names: tuple[str, ...], at: dt.datetime
    ) -> Rates | None:
        day = at.date()
        rates = None
        for sheet in reversed(self.sheets):  # later sheets win
            rates = next((r for name in names if (r := sheet.rates_for(provider, name, day))), None)
            if rates is not None:
                break
        if rates is None and self.use_defaults:
            rates = next((r for name in names if (r := defaults.rates(provider, name, at))), None)
        if rates is None:
            return None
        for sheet in reversed(self.sheets):
            for name in names:
                discount = sheet.discount_for(provider, name, day)
                if discount is not None:
                    return rates.discounted(discount.percent, sheet.version)
        return rates

    # -- pricing -------------------------------------------------------------------------
    def price(
        self,
        usage: Usage,
        *,
        provider: str | None,
        model: str | None,
        start_ns: int,
        reported: Femto | None = None,
        alias: str | None = None,
        failed: bool = False,
    ) -> Cost:
        """Cost of one call. Never raises; what cannot be priced says why.

        A call that names a model but reports no tokens is `unpriced`, not $0, unless it
        failed (a rejected request is not billed)."""
        return self._price(usage, provider, model, start_ns, reported, alias, failed)

    def _price(
        self,
        usage: Usage,
        provider: str | None,
        model: str | None,
        start_ns: int,
        reported: Femto | None,
        alias: str | None,
        failed: bool,
    ) -> Cost:
        """`price`, with positional arguments (the per-span hot path)."""
        empty = usage.source == "none"  # usage.is_empty, without the property call
        if empty and model is None:
            if reported is not None:
                return Cost(status="reported_only", reported=reported, reason="no usage on span")
            return NOT_LLM
        status_cache = cache_status(usage)
        if usage.invalid is not None:
            return Cost(
                status="invalid_usage",
                reported=reported,
                cache_status=status_cache,
                model=model,
                reason=usage.invalid,
            )
        if model is None:
            return self._unpriced(usage, reported, None, "no model name on span")
        if empty and not failed:
            return self._unpriced(
                usage, reported, model, "no token usage on span (a stream without usage?)"
            )
        try:  # `self.rates(...)` when cached, without the method call
            period, by_period = self._cache[(provider, model, alias)]
            rates = by_period[start_ns // period]
        except KeyError:
            rates = self.rates(provider, model, start_ns, alias)
        if rates is None:
            where = f" from {provider}" if provider else ""
            return self._unpriced(usage, reported, model, f"no price for {model}{where}")
        line = rates.line_for(usage.input_total) if rates.tiers else rates.base
        if usage.response_cached:
            # Served from a response cache: nothing billed, the whole call saved.
            saved = usage.input_total * line.input + usage.output * line.output
            return Cost("priced", 0, 0, 0, 0, saved, reported, "hit", rates.model, rates.source)
        # Positional on purpose: this is the per-span hot path.
        return Cost(
            "priced",
            usage.input_uncached * line.input,
            usage.cache_read * line.cache_read,
            usage.cache_write * line.cache_write + usage.cache_write_1h * line.cache_write_1h,
            usage.output * line.output,
            usage.cache_read * (line.input - line.cache_read),
            reported,
            status_cache,
            rates.model,
            rates.source,
        )

    @staticmethod
    def _unpriced(usage: Usage, reported: Femto | None, model: str | None, why: str) -> Cost:
        return Cost(
            status="reported_only" if reported is not None else "unpriced",
            reported=reported,
            cache_status=cache_status(usage),
            model=model,
            reason=why,
        )

    def price_attributes(
        self,
        attrs: Mapping[str, Any],
        start_ns: int,
        resource: Mapping[str, Any] | None = None,
        failed: bool | None = None,
    ) -> PricedCall:
        """Identify, normalize and price a span from its attributes: the whole core.

        `failed`: the span's status was ERROR (default: whether it has `error.type`)."""
        if _CALL_KEYS.isdisjoint(attrs):
            return _NOT_A_CALL  # most tool and agent spans
        provider = provider_of(attrs)
        model = model_of(attrs)
        usage = normalize(attrs, resource, provider)
        if model is not None and usage.source == "none":
            operation = attrs.get(c.GEN_AI_OPERATION_NAME)
            if isinstance(operation, str) and operation in c.AGENT_OPERATIONS:
                model = None  # an agent or tool span that names its model is not a model call
        requested = attrs.get(c.GEN_AI_REQUEST_MODEL)
        cost = self._price(
            usage,
            provider,
            model,
            start_ns,
            reported_cost(attrs),
            requested if isinstance(requested, str) and requested else None,
            c.ERROR_TYPE in attrs if failed is None else failed,
        )
        return PricedCall(provider, model, usage, cost)

    def price_span(
        self,
        attrs: Mapping[str, Any],
        start_ns: int,
        resource: Mapping[str, Any] | None = None,
    ) -> tuple[Usage, Cost]:
        """(usage, cost) of a span from its attributes."""
        priced = self.price_attributes(attrs, start_ns, resource)
        return priced.usage, priced.cost
