"""FOCUS 1.2 export: the ledger's LLM spend as FinOps Open Cost and Usage Specification rows.

One row per LLM span (`grain="span"`), or per hour x provider x model x attribution
(`grain="hour"`), written as CSV or Parquet. Every FOCUS 1.2 column a cost-and-usage
dataset must carry is present, in the specification's (alphabetical) order, followed by
SpanLedger's own columns, all prefixed `x_` as FOCUS requires of custom columns.

How SpanLedger's ledger maps onto FOCUS:

- One billing account (default "spanledger", configurable) stands for the organization
  whose LLM calls were traced; the provider (OpenAI, Anthropic, ...) is ProviderName,
  InvoiceIssuerName and, unless the model is known to be someone else's, PublisherName.
  The sub-account is the tenant when a span has one, else the service (SubAccountType
  says which).
- Charges are usage: ChargeCategory "Usage", ChargeFrequency "Usage-Based", ChargeClass
  null (nothing here corrects an earlier period), PricingCategory "Standard".
- The charge period is the span's own time, in whole seconds as FOCUS's date format asks
  (start rounded down, end up, and at least one second long), or the hour. The billing
  period is the calendar month (UTC) the charge started in.
- Quantities are tokens: ConsumedQuantity in "Tokens" (prompt tokens, cached or not, plus
  output tokens, reasoning included); PricingQuantity is the same count in
  "1000000 Tokens" (FOCUS units take a whole-number quantity), the unit rate sheets and
  provider price lists use.
- BilledCost = EffectiveCost = ContractedCost = the ledger's cost of the span. There are
  no commitment discounts or prepayments to amortize, and the ledger's price already
  includes any negotiated discount from a rate sheet.
- ListCost: the ledger stores the price after rate-sheet discounts, not the undiscounted
  list price, so ListCost = EffectiveCost (exact when no sheet discount applies; with a
  discount it understates the list cost by that discount).
- ListUnitPrice/ContractedUnitPrice (USD per 1000000 Tokens) are filled where one price
  covers every token of the row, so that unit price x PricingQuantity = cost exactly, as
  FOCUS requires. A call that mixes input, cached-input and output tokens is priced at
  several rates, and no single unit price reproduces its cost: those rows leave the unit
  prices null rather than print a blended number that is not a price.
- Spans of models without a price (`unpriced`) and with impossible token counts
  (`invalid_usage`) have no cost. FOCUS cost columns are non-null decimals and writing
  them as $0 would understate spend, so they are left out; `Excluded` counts them with
  their token volume for the caller to warn about.
- Spans whose cost was only reported by the caller (`reported_only`) are exported with
  that cost and no unit prices (SkuPriceId ends in "@reported").
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

FOCUS_VERSION = "1.2"
Grain = Literal["span", "hour"]
GRAINS: tuple[Grain, ...] = ("span", "hour")

PRICING_UNIT = "1000000 Tokens"
CONSUMED_UNIT = "Tokens"
_TOKENS_PER_PRICING_UNIT = 10**6
_FEMTO_DIGITS = 15  # money is integer 10^-15 USD (pricing/money.py)
_RATE_DIGITS = 9  # femto-$ per token -> USD per million tokens

# How each kind of value is written. Money and unit prices keep all 15 (9) decimal
# places femto-dollars can hold; quantities of a million tokens need six.
_ARROW = {
    "string": pa.string(),
    "money": pa.decimal128(38, _FEMTO_DIGITS),
    "unit_price": pa.decimal128(38, _FEMTO_DIGITS),
    "pricing_quantity": pa.decimal128(38, 6),
    "quantity": pa.decimal128(38, 0),
    "datetime": pa.timestamp("s", tz="UTC"),
    "int": pa.int64(),
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # a key of _ARROW


def _columns(spec: str) -> tuple[Column, ...]:
    return tuple(Column(*line.split()) for line in spec.strip().splitlines())


# FOCUS 1.2 columns, in the specification's order. Conditional columns that can never
# apply to LLM API usage (PricingCurrency and its prices: we price and bill in USD) are
# left out, as FOCUS allows.
FOCUS_COLUMNS = _columns(
    """
    AvailabilityZone string
    BilledCost money
    BillingAccountId string
    BillingAccountName string
    BillingAccountType string
    BillingCurrency string
    BillingPeriodEnd datetime
    BillingPeriodStart datetime
    CapacityReservationId string
    CapacityReservationStatus string
    ChargeCategory string
    ChargeClass string
    ChargeDescription string
    ChargeFrequency string
    ChargePeriodEnd datetime
    ChargePeriodStart datetime
    CommitmentDiscountCategory string
    CommitmentDiscountId string
    CommitmentDiscountName string
    CommitmentDiscountQuantity pricing_quantity
    CommitmentDiscountStatus string
    CommitmentDiscountType string
    CommitmentDiscountUnit string
    ConsumedQuantity quantity
    ConsumedUnit string
    ContractedCost money
    ContractedUnitPrice unit_price
    EffectiveCost money
    InvoiceId string
    InvoiceIssuerName string
    ListCost money
    ListUnitPrice unit_price
    PricingCategory string
    PricingQuantity pricing_quantity
    PricingUnit string
    ProviderName string
    PublisherName string
    RegionId string
    RegionName string
    ResourceId string
    ResourceName string
    ResourceType string
    ServiceCategory string
    ServiceName string
    ServiceSubcategory string
    SkuId string
    SkuMeter string
    SkuPriceDetails string
    SkuPriceId string
    SubAccountId string
    SubAccountName string
    SubAccountType string
    Tags string
    """
)
# SpanLedger's own columns (FOCUS: custom columns carry the x_ prefix and come last).
X_COLUMNS = _columns(
    """
    x_TraceId string
    x_SpanId string
    x_Agent string
    x_User string
    x_Department string
    x_Tenant string
    x_Service string
    x_CacheStatus string
    x_InputTokens int
    x_CachedInputTokens int
    x_CacheWriteTokens int
    x_OutputTokens int
    x_ReasoningTokens int
    x_Calls int
    x_PriceStatus string
    x_PriceSource string
    x_SavedByCacheCost money
    """
)
COLUMNS = FOCUS_COLUMNS + X_COLUMNS
SCHEMA = pa.schema([pa.field(column.name, _ARROW[column.kind]) for column in COLUMNS])

# Provider id (as `usage.provider_of` names it) -> (ProviderName, ServiceName).
_PROVIDERS: dict[str, tuple[str, str]] = {
    "openai": ("OpenAI", "OpenAI API"),
    "anthropic": ("Anthropic", "Anthropic API"),
    "azure": ("Microsoft", "Azure OpenAI"),
    "aws": ("Amazon Web Services", "Amazon Bedrock"),
    "google": ("Google", "Gemini API"),
    "cohere": ("Cohere", "Cohere API"),
    "mistral": ("Mistral AI", "Mistral AI API"),
    "groq": ("Groq", "GroqCloud"),
    "deepseek": ("DeepSeek", "DeepSeek API"),
    "x-ai": ("xAI", "xAI API"),
    "perplexity": ("Perplexity", "Perplexity API"),
    "together": ("Together AI", "Together AI API"),
    "fireworks": ("Fireworks AI", "Fireworks AI API"),
    "openrouter": ("OpenRouter", "OpenRouter API"),
}
# Model name prefix -> publisher, for models resold by a cloud or a router.
_PUBLISHERS = (
    (("gpt-", "o1", "o3", "o4", "chatgpt", "text-embedding", "davinci"), "OpenAI"),
    (("claude", "anthropic."), "Anthropic"),
    (("gemini", "gemma", "google/"), "Google"),
    (("llama", "meta."), "Meta"),
    (("mistral", "mixtral", "codestral", "mistralai/"), "Mistral AI"),
    (("command", "cohere."), "Cohere"),
    (("deepseek",), "DeepSeek"),
    (("grok",), "xAI"),
)

_NOT_CHARGED = ("unpriced", "invalid_usage")


@dataclass
class Excluded:
    """LLM spans left out because they have no cost (never written as $0)."""

    spans: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    models: dict[str, int] = field(default_factory=dict)  # model -> spans

    def add(self, span: Mapping[str, Any]) -> None:
        self.spans += 1
        self.input_tokens += _input_tokens(span)
        self.output_tokens += int(span.get("output") or 0)
        model = span.get("model") or "(no model)"
        self.models[model] = self.models.get(model, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "spans": self.spans,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "models": dict(sorted(self.models.items())),
        }


@dataclass(frozen=True)
class Account:
    """The FOCUS billing account the ledger's charges belong to."""

    id: str = "spanledger"
    name: str | None = None  # default: the id


def charges(
    spans: Iterable[Mapping[str, Any]],
    *,
    grain: Grain = "span",
    account: Account | None = None,
    excluded: Excluded | None = None,
) -> Iterator[dict[str, Any]]:
    """FOCUS rows (femto-dollar ints, token counts, aware datetimes) for LLM spans as
    `LedgerSource.llm_spans` gives them. Spans without a cost go to `excluded`."""
    if grain not in GRAINS:
        raise ValueError(f"grain must be one of {', '.join(GRAINS)}, not {grain!r}")
    account = account or Account()
    excluded = excluded if excluded is not None else Excluded()
    priced = _charged(spans, excluded)
    if grain == "span":
        for span in priced:
            yield _row(span, account, *_span_period(span), span_level=True)
        return
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for span in priced:
        hour = span["start_time"].astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        key = (hour, *(span.get(name) for name in _HOUR_KEYS))
        group = groups.get(key)
        if group is None:
            group = groups[key] = {name: span.get(name) for name in _HOUR_KEYS}
            group.update({name: 0 for name in _SUMMED})
            group["hour"] = hour
            group["calls"] = 0
        for name in _SUMMED:
            group[name] += int(span.get(name) or 0)
        group["calls"] += 1
    for key in sorted(groups, key=_sortable):
        group = groups[key]
        hour = group["hour"]
        yield _row(group, account, hour, hour + dt.timedelta(hours=1), span_level=False)


_HOUR_KEYS = (
    "provider", "model", "price_status", "price_source",
    "user_id", "department", "agent", "tenant", "service",
)  # fmt: skip
_SUMMED = (
    "input_uncached", "cache_read", "cache_write", "cache_write_1h", "output", "reasoning",
    "cost_input", "cost_cache_read", "cost_cache_write", "cost_output", "cost",
    "saved_by_cache",
)  # fmt: skip


def _sortable(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((value is None, value if value is not None else "") for value in key)


def _charged(spans: Iterable[Mapping[str, Any]], excluded: Excluded) -> Iterator[Mapping[str, Any]]:
    for span in spans:
        status = span.get("price_status")
        if status is None:
            continue  # not an LLM call: nothing was charged
        if status in _NOT_CHARGED:
            excluded.add(span)
            continue
        yield span


def _span_period(span: Mapping[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in whole seconds, at least one second long."""
    start = span["start_time"].astimezone(dt.UTC).replace(microsecond=0)
    end = span.get("end_time") or span["start_time"]
    end = end.astimezone(dt.UTC)
    if end.microsecond:
        end = end.replace(microsecond=0) + dt.timedelta(seconds=1)
    if end <= start:
        end = start + dt.timedelta(seconds=1)
    return start, end


def _month(moment: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return first, following


def _input_tokens(row: Mapping[str, Any]) -> int:
    return sum(
        int(row.get(name) or 0)
        for name in ("input_uncached", "cache_read", "cache_write", "cache_write_1h")
    )


def unit_rate(row: Mapping[str, Any]) -> int | None:
    """Femto-dollars per token when one rate prices every token of the row exactly
    (rate x tokens = cost for each kind of token); None when the row mixes rates."""
    if row.get("price_status") != "priced":
        return None
    parts = (
        (int(row.get("input_uncached") or 0), int(row.get("cost_input") or 0)),
        (int(row.get("cache_read") or 0), int(row.get("cost_cache_read") or 0)),
        (
            int(row.get("cache_write") or 0) + int(row.get("cache_write_1h") or 0),
            int(row.get("cost_cache_write") or 0),
        ),
        (int(row.get("output") or 0), int(row.get("cost_output") or 0)),
    )
    tokens = sum(count for count, _ in parts)
    cost = int(row.get("cost") or 0)
    if not tokens or cost % tokens:
        return None
    rate = cost // tokens
    if any(amount != rate * count for count, amount in parts):
        return None
    return rate


def _publisher(model: str | None, provider_name: str) -> str:
    name = (model or "").lower()
    for prefixes, publisher in _PUBLISHERS:
        if name.startswith(prefixes):
            return publisher
    return provider_name


def _row(
    row: Mapping[str, Any],
    account: Account,
    start: dt.datetime,
    end: dt.datetime,
    *,
    span_level: bool,
) -> dict[str, Any]:
    provider = row.get("provider")
    model = row.get("model")
    provider_name, service_name = _PROVIDERS.get(
        provider or "", (provider, f"{provider} API") if provider else ("Unknown", "LLM API")
    )
    sku = model or "unknown"
    status = row.get("price_status")
    source = "reported" if status == "reported_only" else row.get("price_source") or "unknown"
    input_tokens = _input_tokens(row)
    cached = int(row.get("cache_read") or 0)
    written = int(row.get("cache_write") or 0) + int(row.get("cache_write_1h") or 0)
    output = int(row.get("output") or 0)
    tokens = input_tokens + output
    cost = int(row.get("cost") or 0)
    rate = unit_rate(row)
    calls = 1 if span_level else int(row["calls"])
    billing_start, billing_end = _month(start)
    tenant, service = row.get("tenant"), row.get("service")
    sub_account = (tenant, "Tenant") if tenant else (service, "Service") if service else None
    tags = {
        name: value
        for name, value in (
            ("user", row.get("user_id")),
            ("department", row.get("department")),
            ("agent", row.get("agent")),
        )
        if value is not None
    }
    what = f"{calls:,} call{'s' * (calls != 1)} to " if not span_level else ""
    description = (
        f"{what}{sku} on {service_name}: {input_tokens:,} input tokens "
        f"({cached:,} cached, {written:,} cache writes), {output:,} output tokens"
    )
    return {
        "AvailabilityZone": None,
        "BilledCost": cost,
        "BillingAccountId": account.id,
        "BillingAccountName": account.name or account.id,
        "BillingAccountType": "SpanLedger Account",
        "BillingCurrency": "USD",
        "BillingPeriodEnd": billing_end,
        "BillingPeriodStart": billing_start,
        "CapacityReservationId": None,
        "CapacityReservationStatus": None,
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ChargeDescription": description,
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": end,
        "ChargePeriodStart": start,
        "CommitmentDiscountCategory": None,
        "CommitmentDiscountId": None,
        "CommitmentDiscountName": None,
        "CommitmentDiscountQuantity": None,
        "CommitmentDiscountStatus": None,
        "CommitmentDiscountType": None,
        "CommitmentDiscountUnit": None,
        "ConsumedQuantity": tokens,
        "ConsumedUnit": CONSUMED_UNIT,
        "ContractedCost": cost,
        "ContractedUnitPrice": rate,
        "EffectiveCost": cost,
        "InvoiceId": None,
        "InvoiceIssuerName": provider_name,
        # The ledger keeps the price after rate-sheet discounts, not the list price.
        "ListCost": cost,
        "ListUnitPrice": rate,
        "PricingCategory": "Standard",
        "PricingQuantity": tokens,
        "PricingUnit": PRICING_UNIT,
        "ProviderName": provider_name,
        "PublisherName": _publisher(model, provider_name),
        "RegionId": None,
        "RegionName": None,
        "ResourceId": f"{provider or 'unknown'}/{sku}",
        "ResourceName": sku,
        "ResourceType": "Model",
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": service_name,
        "ServiceSubcategory": "Generative AI",
        "SkuId": sku,
        "SkuMeter": CONSUMED_UNIT,
        "SkuPriceDetails": None,
        "SkuPriceId": f"{provider or 'unknown'}/{sku}@{source}",
        "SubAccountId": sub_account[0] if sub_account else None,
        "SubAccountName": sub_account[0] if sub_account else None,
        "SubAccountType": sub_account[1] if sub_account else None,
        "Tags": json.dumps(tags, sort_keys=True, separators=(",", ":")) if tags else None,
        "x_TraceId": row.get("trace_id") if span_level else None,
        "x_SpanId": row.get("span_id") if span_level else None,
        "x_Agent": row.get("agent"),
        "x_User": row.get("user_id"),
        "x_Department": row.get("department"),
        "x_Tenant": tenant,
        "x_Service": service,
        "x_CacheStatus": row.get("cache_status") if span_level else None,
        "x_InputTokens": input_tokens,
        "x_CachedInputTokens": cached,
        "x_CacheWriteTokens": written,
        "x_OutputTokens": output,
        "x_ReasoningTokens": int(row.get("reasoning") or 0),
        "x_Calls": calls,
        "x_PriceStatus": status,
        "x_PriceSource": row.get("price_source"),
        "x_SavedByCacheCost": int(row.get("saved_by_cache") or 0),
    }


# -- writing ------------------------------------------------------------------------------


def _value(kind: str, value: Any) -> Any:
    """A row value as the exact Decimal / datetime the file holds."""
    if value is None:
        return None
    if kind == "money":
        return Decimal(value).scaleb(-_FEMTO_DIGITS)
    if kind == "unit_price":  # femto-$ per token -> USD per million tokens
        return Decimal(value).scaleb(-_RATE_DIGITS)
    if kind == "pricing_quantity":
        return Decimal(value).scaleb(-6)
    if kind == "quantity":
        return Decimal(value)
    return value


def _text(kind: str, value: Any) -> str:
    """CSV text: decimals exact and without exponent, times ISO 8601 UTC with Z, null
    as an empty field."""
    value = _value(kind, value)
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return "0" if not value else format(value.normalize(), "f")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Write FOCUS rows as UTF-8 CSV with a header of column ids; returns rows written."""
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow([column.name for column in COLUMNS])
        for row in rows:
            writer.writerow([_text(column.kind, row[column.name]) for column in COLUMNS])
            count += 1
    return count


def write_parquet(
    rows: Iterable[Mapping[str, Any]], path: str | Path, *, batch_rows: int = 50_000
) -> int:
    """Write FOCUS rows as Parquet (decimal money, UTC timestamps); returns rows written."""
    count = 0
    with pq.ParquetWriter(str(path), SCHEMA) as writer:
        batch: list[Mapping[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_rows:
                writer.write_table(_table(batch))
                count += len(batch)
                batch = []
        if batch or not count:
            writer.write_table(_table(batch))
            count += len(batch)
    return count


def _table(rows: list[Mapping[str, Any]]) -> pa.Table:
    arrays = [
        pa.array([_value(column.kind, row[column.name]) for row in rows], _ARROW[column.kind])
        for column in COLUMNS
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def write(rows: Iterable[Mapping[str, Any]], path: str | Path, fmt: str | None = None) -> int:
    """CSV or Parquet: `fmt` ("csv", "parquet") or else the file's suffix."""
    fmt = (fmt or Path(path).suffix.lstrip(".")).lower()
    if fmt == "csv":
        return write_csv(rows, path)
    if fmt in ("parquet", "pq"):
        return write_parquet(rows, path)
    raise ValueError(f"{path}: write FOCUS to a .csv or .parquet file")
