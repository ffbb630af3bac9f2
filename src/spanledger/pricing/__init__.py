"""Pricing: rates from genai-prices and YAML rate sheets; `PriceBook.price` -> `Cost`."""

from spanledger.pricing.book import NOT_LLM, CacheStatus, Cost, PriceBook, PriceStatus
from spanledger.pricing.money import Femto, display, usd, usd_str
from spanledger.pricing.rates import RateLine, Rates
from spanledger.pricing.sheets import RateSheet, RateSheetError

__all__ = [
    "NOT_LLM",
    "CacheStatus",
    "Cost",
    "Femto",
    "PriceBook",
    "PriceStatus",
    "RateLine",
    "RateSheet",
    "RateSheetError",
    "Rates",
    "display",
    "usd",
    "usd_str",
]
