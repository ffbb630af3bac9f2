"""The `spanledger.*` attributes a priced call carries, wherever it is enriched: the SDK's
exported copies and the server's forwarded spans use this one list."""

from __future__ import annotations

from typing import Any

from spanledger import conventions as c
from spanledger.pricing.book import PricedCall
from spanledger.pricing.money import FEMTO_PER_USD


def cost_attributes(priced: PricedCall) -> dict[str, Any]:
    """The `spanledger.*` attributes for one priced call.

    Amounts are doubles because that is what backends sum and chart; the exact amount is
    kept by the ledger (integer femto-dollars) and can always be recomputed."""
    cost = priced.cost
    attributes: dict[str, Any] = {
        c.PRICE_STATUS: cost.status,
        c.CACHE_STATUS: cost.cache_status,
        c.USAGE_SOURCE: priced.usage.source,
    }
    if cost.status in ("priced", "reported_only"):
        attributes[c.COST_USD] = cost.total / FEMTO_PER_USD
    if cost.status == "priced":
        attributes[c.COST_INPUT_USD] = cost.input / FEMTO_PER_USD
        attributes[c.COST_CACHE_READ_USD] = cost.cache_read / FEMTO_PER_USD
        attributes[c.COST_CACHE_WRITE_USD] = cost.cache_write / FEMTO_PER_USD
        attributes[c.COST_OUTPUT_USD] = cost.output / FEMTO_PER_USD
        attributes[c.COST_SAVED_BY_CACHE_USD] = cost.saved_by_cache / FEMTO_PER_USD
    if cost.reported is not None:
        attributes[c.COST_REPORTED_USD] = cost.reported / FEMTO_PER_USD
    if cost.model:
        attributes[c.PRICE_MODEL] = cost.model
    if cost.source:
        attributes[c.PRICE_SOURCE] = cost.source
    if cost.reason:
        attributes[c.PRICE_REASON] = cost.reason
    return attributes
