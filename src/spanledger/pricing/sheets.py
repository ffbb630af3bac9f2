"""YAML rate sheets: a company's own prices, layered over the defaults.

```yaml
version: acme-2026-11          # shown as price.source
models:
  - match: gpt-4o-mini         # model name on the span; glob allowed (ft:gpt-4o-mini:*)
    provider: openai           # optional
    effective_from: 2026-01-01 # optional; spans before it use the previous price
    per_million: {input: 0.15, cache_read: 0.075, cache_write: 0.1875, output: 0.60}
    tiers:                     # optional: prompts above N tokens pay another price
      - above_input_tokens: 200000
        per_million: {input: 0.30, output: 1.20}
discounts:
  - provider: openai           # or match: <model glob>
    percent: 12                # off the list price, negotiated contract
```

Numbers are read as exact decimals (never floats). A sheet that cannot be trusted is
rejected whole at load, with the file, the line and the reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spanledger.pricing.money import rate_from_per_million
from spanledger.pricing.rates import RateLine, Rates


class RateSheetError(ValueError):
    """A rate sheet that cannot be loaded; the message names file, line and reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerMillion(_Strict):
    """USD per million tokens. Missing cache prices fall back to the input price."""

    input: Decimal = Field(ge=0, allow_inf_nan=False)
    output: Decimal = Field(ge=0, allow_inf_nan=False)
    cache_read: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    cache_write: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    cache_write_1h: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)

    def line(self) -> RateLine:
        cache_write = self.cache_write if self.cache_write is not None else self.input
        return RateLine(
            input=rate_from_per_million(self.input),
            cache_read=rate_from_per_million(
                self.cache_read if self.cache_read is not None else self.input
            ),
            cache_write=rate_from_per_million(cache_write),
            cache_write_1h=rate_from_per_million(
                self.cache_write_1h if self.cache_write_1h is not None else cache_write
            ),
            output=rate_from_per_million(self.output),
        )


class Tier(_Strict):
    above_input_tokens: int = Field(ge=0)
    per_million: PerMillion


class ModelPrice(_Strict):
    match: str = Field(min_length=1)
    provider: str | None = None
    effective_from: dt.date | None = None
    per_million: PerMillion
    tiers: tuple[Tier, ...] = ()

    def matches(self, provider: str | None, model: str) -> bool:
        if self.provider is not None and (provider or "").lower() != self.provider.lower():
            return False
        return fnmatchcase(model.lower(), self.match.lower())


class Discount(_Strict):
    match: str | None = None
    provider: str | None = None
    percent: Decimal = Field(ge=0, le=100, allow_inf_nan=False)
    effective_from: dt.date | None = None

    @model_validator(mode="after")
    def _scoped(self) -> Discount:
        if self.match is None and self.provider is None:
            raise ValueError("a discount needs `provider` or `match` to say what it applies to")
        return self

    def applies(self, provider: str | None, model: str, day: dt.date) -> bool:
        if self.effective_from is not None and day < self.effective_from:
            return False
        if self.provider is not None and (provider or "").lower() != self.provider.lower():
            return False
        return self.match is None or fnmatchcase(model.lower(), self.match.lower())


class _SheetDocument(_Strict):
    version: str | None = None
    models: tuple[ModelPrice, ...] = ()
    discounts: tuple[Discount, ...] = ()


@dataclass(frozen=True)
class RateSheet:
    """One loaded sheet. `version` (or the file name) is shown as the price source."""

    version: str
    models: tuple[ModelPrice, ...]
    discounts: tuple[Discount, ...]
    path: str = "<memory>"

    @classmethod
    def load(cls, path: str | Path) -> RateSheet:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise RateSheetError(f"{path}: cannot read rate sheet: {error.strerror}") from None
        except UnicodeDecodeError as error:
            raise RateSheetError(
                f"{path}: cannot read rate sheet: not UTF-8 ({error.reason})"
            ) from None
        return cls.parse(text, name=str(path))

    @classmethod
    def parse(cls, text: str, name: str = "<memory>") -> RateSheet:
        loader = _DecimalLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{name}:{mark.line + 1}" if mark else name
            raise RateSheetError(f"{where}: not valid YAML: {error}") from None
        finally:
            loader.dispose()
        if data is None:
            data = {}
        if not isinstance(data, dict):
            line = node.start_mark.line + 1 if node is not None else 1
            raise RateSheetError(f"{name}:{line}: a rate sheet is a mapping with `models:`")
        try:
            document = _SheetDocument.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            line = _line_of(node, first["loc"])
            path = ".".join(str(part) for part in first["loc"])
            reason = first["msg"]
            if first["type"] == "extra_forbidden":
                reason = f"unknown key `{first['loc'][-1]}`"
            elif first["type"] == "missing":
                reason = f"missing `{first['loc'][-1]}`"
            more = len(error.errors()) - 1
            tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
            raise RateSheetError(f"{name}:{line}: {path}: {reason}{tail}") from None
        version = document.version or Path(name).stem
        return cls(version=version, models=document.models, discounts=document.discounts, path=name)

    def rates_for(self, provider: str | None, model: str, day: dt.date) -> Rates | None:
        """This sheet's price for a model on a day: the latest effective entry; for
        entries equally effective, the one written last."""
        best: tuple[dt.date, int, ModelPrice] | None = None
        for position, entry in enumerate(self.models):
            if not entry.matches(provider, model):
                continue
            start = entry.effective_from or dt.date.min
            if start > day:
                continue
            if best is None or (start, position) >= best[:2]:
                best = (start, position, entry)
        if best is None:
            return None
        entry = best[2]
        return Rates(
            model=model,
            provider=provider or entry.provider,
            base=entry.per_million.line(),
            tiers=tuple(
                (tier.above_input_tokens, tier.per_million.line())
                for tier in sorted(entry.tiers, key=lambda tier: tier.above_input_tokens)
            ),
            source=self.version,
        )

    def discount_for(self, provider: str | None, model: str, day: dt.date) -> Discount | None:
        found = None
        for discount in self.discounts:
            if discount.applies(provider, model, day):
                found = discount
        return found


class _DecimalLoader(yaml.SafeLoader):
    """Safe YAML with exact numbers: `0.15` becomes Decimal('0.15'), not a float."""


def _decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = loader.construct_scalar(node).replace("_", "")
    lowered = text.lower()
    if lowered in (".nan", ".inf", "+.inf", "-.inf"):
        return Decimal(lowered.replace(".", ""))
    try:
        return Decimal(text)
    except InvalidOperation:  # YAML 1.1 floats include sexagesimal `1:30.5`
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a decimal number", node.start_mark
        ) from None


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _decimal)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """1-based line of the deepest part of `loc` present in the YAML tree."""
    if node is None:
        return 1
    line = node.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = value if part != loc[-1] else key
                    break
            if child is not None:  # a mapping is reported where its key is written
                node = child
                line = key.start_mark.line + 1
                continue
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if part < len(node.value) else None
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line
