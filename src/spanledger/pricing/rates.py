"""Rates: the price of one model at one moment, as integers ready for arithmetic."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal

from spanledger.pricing.money import Femto


@dataclass(frozen=True, slots=True)
class RateLine:
    """Femto-dollars per token for each kind of token."""

    input: Femto
    cache_read: Femto
    cache_write: Femto
    cache_write_1h: Femto
    output: Femto

    def discounted(self, keep: Decimal) -> RateLine:
        """This line with every rate multiplied by `keep` (0.88 for a 12% discount)."""

        def cut(rate: Femto) -> Femto:
            return int((rate * keep).to_integral_value(rounding=ROUND_HALF_EVEN))

        return RateLine(
            cut(self.input),
            cut(self.cache_read),
            cut(self.cache_write),
            cut(self.cache_write_1h),
            cut(self.output),
        )


@dataclass(frozen=True, slots=True)
class Rates:
    """What a model costs: a base line and optional tiers chosen by prompt size.

    A tier applies to *all* tokens of a call whose prompt (cached or not) exceeds its
    threshold, the "cliff" model that Anthropic, Google and OpenAI bill by."""

    model: str  # the model id the price belongs to (may differ from the span's name)
    provider: str | None
    base: RateLine
    tiers: tuple[tuple[int, RateLine], ...] = ()  # (prompt tokens above, line), ascending
    source: str = ""  # which sheet/version the price came from

    def line_for(self, input_total: int) -> RateLine:
        line = self.base
        for above, tier in self.tiers:
            if input_total > above:
                line = tier
            else:
                break
        return line

    def discounted(self, percent: Decimal, source: str) -> Rates:
        keep = (Decimal(100) - percent) / Decimal(100)
        return replace(
            self,
            base=self.base.discounted(keep),
            tiers=tuple((above, line.discounted(keep)) for above, line in self.tiers),
            source=f"{self.source} less {percent.normalize():f}% ({source})",
        )
