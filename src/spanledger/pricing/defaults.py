"""Default prices from the `genai-prices` package, turned into `Rates`.

Only the lookup touches genai-prices; the PriceBook caches what we return, so its cost
(tens of microseconds) is paid once per model and period, not once per span.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import cache
from importlib.metadata import version

from genai_prices import data_snapshot
from genai_prices import types as gp

from spanledger.pricing.money import rate_from_per_million
from spanledger.pricing.rates import RateLine, Rates

SOURCE = f"genai-prices {version('genai-prices')}"

_PRICE_KEYS = ("input_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok")


def _find(provider: str | None, model: str) -> tuple[gp.Provider, gp.ModelInfo] | None:
    snapshot = data_snapshot.get_snapshot()
    for provider_id in (provider, None) if provider else (None,):
        try:
            return snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError:
            continue
    return None


def rates(provider: str | None, model: str, at: dt.datetime) -> Rates | None:
    """genai-prices' price for `model` at `at`, or None if it has none."""
    found = _find(provider, model)
    if found is None:
        return None
    price_provider, info = found
    price = info.get_prices(at)
    if price.input_mtok is None or price.output_mtok is None:
        return None  # priced per request, per image, ...: not a token price we can apply
    thresholds = sorted(
        {
            tier.start
            for key in (*_PRICE_KEYS, "output_mtok")
            if isinstance(value := getattr(price, key), gp.TieredPrices)
            for tier in value.tiers
        }
    )
    return Rates(
        model=info.id,
        provider=price_provider.id,
        base=_line(price, None),
        tiers=tuple((above, _line(price, above)) for above in thresholds),
        source=SOURCE,
    )


def _line(price: gp.ModelPrice, above: int | None) -> RateLine:
    """The line of rates for prompts above `above` tokens (None: the base line)."""

    def at(key: str) -> Decimal | None:
        value = getattr(price, key)
        if isinstance(value, gp.TieredPrices):
            chosen = value.base
            for tier in value.tiers:
                if above is not None and above >= tier.start:
                    chosen = tier.price
            return chosen
        return value

    input_ = at("input_mtok")
    assert input_ is not None
    cache_write = at("cache_write_mtok")
    if cache_write is None:
        cache_write = at("cache_write_5m_mtok")
    if cache_write is None:
        cache_write = input_
    cache_read = at("cache_read_mtok")
    cache_write_1h = at("cache_write_1h_mtok")
    output = at("output_mtok")
    assert output is not None
    return RateLine(
        input=rate_from_per_million(input_),
        cache_read=rate_from_per_million(cache_read if cache_read is not None else input_),
        cache_write=rate_from_per_million(cache_write),
        cache_write_1h=rate_from_per_million(
            cache_write_1h if cache_write_1h is not None else cache_write
        ),
        output=rate_from_per_million(output),
    )


@cache
def varies_within_day(provider: str | None, model: str) -> bool:
    """True for models whose genai-prices price depends on the time of day (off-peak)."""
    found = _find(provider, model)
    if found is None or not isinstance(found[1].prices, list):
        return False
    return any(isinstance(p.constraint, gp.TimeOfDateConstraint) for p in found[1].prices)
