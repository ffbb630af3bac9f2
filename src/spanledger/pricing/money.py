"""Exact money: integer femto-dollars (10^-15 USD).

A price of $0.075 per million tokens is $0.000000075 per token, which integer
micro-dollars cannot hold; 10^-15 USD holds any per-million price with up to nine decimal
places exactly, so `tokens * rate` is an exact integer product and sums never drift.
Amounts become `Decimal` only at the edges (JSON, display), and are rounded only for display.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

FEMTO_PER_USD = 10**15
FEMTO_PER_TOKEN_PER_USD_PER_MILLION = 10**9  # $1 per million tokens = 10^9 femto-$ per token
_MAX_USD_DIGITS = 18  # a reported cost of 10^18 USD or more is not a cost

Femto = int
"""An amount of money in 10^-15 USD."""


# Enough digits for any stored amount (DECIMAL(38,0)); the default context keeps 28 and
# would round amounts above $10^13.
_EXACT = Context(prec=50)


def usd(amount: Femto) -> Decimal:
    """The exact dollar amount, without trailing zeros (JSON and reports print this)."""
    if amount == 0:
        return Decimal(0)
    return Decimal(amount).scaleb(-15, _EXACT).normalize(_EXACT)


def usd_str(amount: Femto) -> str:
    """Decimal string for JSON: exact, never in exponent notation."""
    return format(usd(amount), "f")


def display(amount: Femto, places: int = 6) -> str:
    """Rounded for people: `$0.000123`. Rounding happens here and nowhere else."""
    quantum = Decimal(1).scaleb(-places)
    return "$" + format(usd(amount).quantize(quantum, rounding=ROUND_HALF_EVEN), "f")


def femto_from_usd(value: object) -> Femto | None:
    """A dollar amount written by someone else (a reported cost) -> femto-dollars.

    Returns None for anything that is not a finite number below 10^18 USD."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None  # an OTel array would be read as Decimal's (sign, digits, exponent) tuple
    try:
        amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        return None
    if not amount.is_finite() or amount.adjusted() >= _MAX_USD_DIGITS:
        return None  # beyond any bill; converting it would overflow or take seconds
    return int((amount * FEMTO_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def rate_from_per_million(per_million: Decimal) -> Femto:
    """A price in USD per million tokens -> femto-dollars per token (exact to 9 places)."""
    scaled = per_million * FEMTO_PER_TOKEN_PER_USD_PER_MILLION
    return int(scaled.to_integral_value(rounding=ROUND_HALF_EVEN))


def per_million(rate: Femto) -> Decimal:
    """Femto-dollars per token -> USD per million tokens (for showing a rate)."""
    return (Decimal(rate) / FEMTO_PER_TOKEN_PER_USD_PER_MILLION).normalize()
