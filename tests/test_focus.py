"""`spanledger export focus`: the files it writes checked against the FOCUS 1.2 column rules.

The rules below are written out from the FOCUS 1.2 specification (column ids, data types,
nullability, allowed values), not taken from `spanledger.reports.focus`, so a column the
exporter drops, renames, mistypes or fills wrongly fails here. The ledger is the one
`test_reports_cli` builds through the real pipeline; its hand-derived costs are there.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from test_reports_cli import TA, TB, TOTAL, build_ledger, run, run_json, sid

# FOCUS 1.2: the 21 columns of feature level Mandatory.
MANDATORY = (
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargePeriodEnd", "ChargePeriodStart", "ContractedCost",
    "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "ServiceCategory", "ServiceName",
)  # fmt: skip

# Column -> (data type, nullability for these rows). Every row here is ChargeCategory
# "Usage", not a correction, with no commitment discounts, capacity reservations or regions,
# so FOCUS's conditions resolve to: "never" null, "null" (must be null), or "may" be null.
RULES: dict[str, tuple[str, str]] = {
    "AvailabilityZone": ("string", "null"),
    "BilledCost": ("decimal", "never"),
    "BillingAccountId": ("string", "never"),
    "BillingAccountName": ("string", "never"),
    "BillingAccountType": ("string", "never"),  # BillingAccountId is not null
    "BillingCurrency": ("string", "never"),
    "BillingPeriodEnd": ("datetime", "never"),
    "BillingPeriodStart": ("datetime", "never"),
    "CapacityReservationId": ("string", "null"),
    "CapacityReservationStatus": ("string", "null"),  # null when the id is null
    "ChargeCategory": ("string", "never"),
    "ChargeClass": ("string", "may"),
    "ChargeDescription": ("string", "never"),  # SHOULD NOT be null
    "ChargeFrequency": ("string", "never"),
    "ChargePeriodEnd": ("datetime", "never"),
    "ChargePeriodStart": ("datetime", "never"),
    "CommitmentDiscountCategory": ("string", "null"),
    "CommitmentDiscountId": ("string", "null"),
    "CommitmentDiscountName": ("string", "null"),
    "CommitmentDiscountQuantity": ("decimal", "null"),
    "CommitmentDiscountStatus": ("string", "null"),
    "CommitmentDiscountType": ("string", "null"),
    "CommitmentDiscountUnit": ("string", "null"),
    "ConsumedQuantity": ("decimal", "never"),  # Usage, not a correction
    "ConsumedUnit": ("string", "never"),
    "ContractedCost": ("decimal", "never"),
    "ContractedUnitPrice": ("decimal", "may"),
    "EffectiveCost": ("decimal", "never"),
    "InvoiceId": ("string", "may"),
    "InvoiceIssuerName": ("string", "never"),
    "ListCost": ("decimal", "never"),
    "ListUnitPrice": ("decimal", "may"),
    "PricingCategory": ("string", "never"),  # Usage, not a correction
    "PricingQuantity": ("decimal", "never"),  # Usage, not a correction
    "PricingUnit": ("string", "never"),  # PricingQuantity is not null
    "ProviderName": ("string", "never"),
    "PublisherName": ("string", "never"),
    "RegionId": ("string", "null"),
    "RegionName": ("string", "null"),
    "ResourceId": ("string", "may"),
    "ResourceName": ("string", "may"),
    "ResourceType": ("string", "may"),
    "ServiceCategory": ("string", "never"),
    "ServiceName": ("string", "never"),
    "ServiceSubcategory": ("string", "never"),
    "SkuId": ("string", "never"),  # Usage, not a correction
    "SkuMeter": ("string", "may"),
    "SkuPriceDetails": ("json", "may"),
    "SkuPriceId": ("string", "never"),  # Usage, not a correction
    "SubAccountId": ("string", "may"),
    "SubAccountName": ("string", "may"),
    "SubAccountType": ("string", "may"),
    "Tags": ("json", "may"),
}
ALLOWED: dict[str, set[str | None]] = {
    "ChargeCategory": {"Usage", "Purchase", "Tax", "Credit", "Adjustment"},
    "ChargeClass": {None, "Correction"},
    "ChargeFrequency": {"One-Time", "Recurring", "Usage-Based"},
    "PricingCategory": {"Standard", "Dynamic", "Committed", "Other"},
    "ServiceCategory": {
        "AI and Machine Learning", "Analytics", "Business Applications", "Compute",
        "Databases", "Developer Tools", "Multicloud", "Identity", "Integration",
        "Internet of Things", "Management and Governance", "Media", "Migration", "Mobile",
        "Networking", "Security", "Storage", "Web", "Other",
    },
    "ServiceSubcategory": {  # the subcategories of "AI and Machine Learning"
        "AI Platforms", "Bots", "Generative AI", "Machine Learning",
        "Natural Language Processing", "Other (AI and Machine Learning)",
    },
    "BillingCurrency": {"USD"},
}  # fmt: skip
OWN_COLUMNS = (
    "x_TraceId", "x_SpanId", "x_Agent", "x_User", "x_Department", "x_CacheStatus",
    "x_InputTokens", "x_CachedInputTokens", "x_CacheWriteTokens", "x_OutputTokens",
    "x_ReasoningTokens", "x_PriceStatus",
)  # fmt: skip
OWN_KINDS = {
    **{name: "integer" for name in OWN_COLUMNS if name.endswith("Tokens")},
    "x_Calls": "integer",
    "x_SavedByCacheCost": "decimal",
}
DECIMAL_TEXT = re.compile(r"-?\d+(\.\d+)?")
DATETIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
PASCAL = re.compile(r"[A-Z][A-Za-z0-9]*")


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ledger(tmp_path_factory.mktemp("focus") / "ledger.duckdb")


def export(ledger: Path, out: Path, *args: str) -> dict[str, Any]:
    result = run("export", "focus", "--out", out, "--db", ledger, *args, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    summary["stderr"] = " ".join(result.stderr.split())
    return summary


def read_csv(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Header and rows, with CSV text turned into typed values by the FOCUS rules (an
    empty field is null), checking each value's text form on the way."""
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        header = list(reader.fieldnames or [])
        rows = []
        for raw in reader:
            row: dict[str, Any] = {}
            for name, text in raw.items():
                kind = RULES.get(name, (OWN_KINDS.get(name, "string"), "may"))[0]
                row[name] = None if text == "" else _typed(name, kind, text)
            rows.append(row)
    return header, rows


def _typed(name: str, kind: str, text: str) -> Any:
    if kind == "decimal":
        assert DECIMAL_TEXT.fullmatch(text), (name, text)  # no exponent, no symbols
        return Decimal(text)
    if kind == "datetime":
        assert DATETIME_TEXT.fullmatch(text), (name, text)  # ISO 8601, UTC, Z
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if kind == "json":
        value = json.loads(text)
        assert isinstance(value, dict), (name, text)
        return value
    if kind == "integer":
        assert text.isdigit(), (name, text)
        return int(text)
    return text


def read_parquet(path: Path) -> tuple[pa.Schema, list[dict[str, Any]]]:
    table = pq.read_table(path)
    rows = table.to_pylist()
    for row in rows:
        for name in ("Tags", "SkuPriceDetails"):
            if row.get(name) is not None:
                row[name] = json.loads(row[name])
    return table.schema, rows


def check_focus(header: list[str], rows: list[dict[str, Any]]) -> None:
    """The FOCUS 1.2 column rules, for the columns and every row."""
    # Names: every Mandatory column and every column we claim, exactly as FOCUS spells
    # them; FOCUS columns first; anything else is custom and carries the x_ prefix.
    assert set(MANDATORY) <= set(header)
    assert set(RULES) <= set(header), set(RULES) - set(header)
    custom = [name for name in header if name not in RULES]
    assert all(name.startswith("x_") for name in custom), custom
    assert header[: len(RULES)] == sorted(RULES), "FOCUS columns first, alphabetically"
    assert all(PASCAL.fullmatch(name.removeprefix("x_")) for name in header)
    assert set(OWN_COLUMNS) <= set(custom)
    assert rows, "no rows"
    sku_of_price: dict[str, set[str]] = {}
    for row in rows:
        for name, (kind, nulls) in RULES.items():
            value = row[name]
            if nulls == "never":
                assert value is not None, (name, row)
            elif nulls == "null":
                assert value is None, (name, value)
            if value is None:
                continue
            expected = {"decimal": Decimal, "datetime": dt.datetime, "string": str,
                        "json": dict}[kind]  # fmt: skip
            assert isinstance(value, expected), (name, value)
            if kind == "datetime":
                assert value.utcoffset() == dt.timedelta(0), (name, value)
            if kind == "string":
                assert value == value.strip() and value, (name, value)
        for name, allowed in ALLOWED.items():
            assert row[name] in allowed, (name, row[name])
        if row["ChargeCategory"] == "Purchase":
            assert row["ChargeFrequency"] != "Usage-Based"
        # Costs: non-negative decimals; without commitments or prepayments the billed,
        # effective and contracted costs are one amount, and list cost is never below it.
        assert row["BilledCost"] == row["EffectiveCost"] == row["ContractedCost"] >= 0
        assert row["ListCost"] >= row["EffectiveCost"]
        # Unit prices: cost = unit price x PricingQuantity exactly, where a price is given.
        for price, cost in (("ListUnitPrice", "ListCost"),
                            ("ContractedUnitPrice", "ContractedCost")):  # fmt: skip
            if row[price] is not None:
                assert row[price] >= 0
                assert row[price] * row["PricingQuantity"] == row[cost], (price, row)
        # Names that come with ids, and units that come with quantities.
        for have, then in (("SubAccountId", "SubAccountName"), ("SubAccountId",
                           "SubAccountType"), ("ResourceId", "ResourceName"),
                           ("ResourceId", "ResourceType"), ("PricingQuantity", "PricingUnit"),
                           ("ConsumedQuantity", "ConsumedUnit")):  # fmt: skip
            if row[have] is not None:
                assert row[then] is not None, (have, then)
        assert row["PricingQuantity"] >= 0 and row["ConsumedQuantity"] >= 0
        # Periods: [start, end), the charge inside its calendar-month billing period.
        assert row["ChargePeriodStart"] < row["ChargePeriodEnd"]
        start = row["BillingPeriodStart"]
        assert (start.day, start.hour, start.minute, start.second) == (1, 0, 0, 0)
        assert row["BillingPeriodEnd"] == (start + dt.timedelta(days=32)).replace(day=1)
        assert start <= row["ChargePeriodStart"] < row["BillingPeriodEnd"]
        # Tags: a JSON object of string keys and values.
        if row["Tags"] is not None:
            assert all(isinstance(v, str) for v in row["Tags"].values())
        sku_of_price.setdefault(row["SkuPriceId"], set()).add(row["SkuId"])
        # Unpriced spans are never written, and never as $0.
        assert row["x_PriceStatus"] in ("priced", "reported_only")
    assert all(len(skus) == 1 for skus in sku_of_price.values()), "a SkuPriceId, one SkuId"


def by_span(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["x_SpanId"]: row for row in rows}


def test_span_grain_csv_follows_the_focus_rules(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "spend.csv"
    summary = export(ledger, out)
    header, rows = read_csv(out)
    check_focus(header, rows)
    # One row per priced LLM span: a2 a4 a5 a6 b2 c2 (the unpriced a7 is left out).
    assert summary["rows"] == len(rows) == 6
    spans = by_span(rows)
    assert set(spans) == {sid(n) for n in ("a2", "a4", "a5", "a6", "b2", "c2")}
    assert sum(row["BilledCost"] for row in rows) == TOTAL
    assert Decimal(summary["billed_cost_usd"]) == TOTAL
    report = run_json("report", "--group-by", "model", "--db", ledger)
    assert sum(row["EffectiveCost"] for row in rows) == Decimal(report["total"]["cost_usd"])

    a2 = spans[sid("a2")]
    assert a2["BilledCost"] == Decimal("0.018")
    assert (a2["ProviderName"], a2["ServiceName"], a2["SkuId"]) == ("OpenAI", "OpenAI API",
                                                                    "model-a")  # fmt: skip
    assert a2["ChargeCategory"] == "Usage" and a2["ChargeFrequency"] == "Usage-Based"
    assert a2["ServiceCategory"] == "AI and Machine Learning"
    assert a2["PricingCategory"] == "Standard" and a2["BillingCurrency"] == "USD"
    assert a2["BillingAccountId"] == a2["BillingAccountName"] == "spanledger"
    assert a2["ConsumedQuantity"] == 10_500 and a2["ConsumedUnit"] == "Tokens"
    assert a2["PricingQuantity"] == Decimal("0.0105") and a2["PricingUnit"] == "1000000 Tokens"
    # Three rates priced this call: no single unit price reproduces its cost.
    assert a2["ListUnitPrice"] is None and a2["ContractedUnitPrice"] is None
    assert a2["ChargePeriodStart"] == dt.datetime(2026, 11, 2, 9, 0, 1, tzinfo=dt.UTC)
    assert a2["ChargePeriodEnd"] == dt.datetime(2026, 11, 2, 9, 0, 2, tzinfo=dt.UTC)
    assert a2["BillingPeriodStart"] == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert a2["BillingPeriodEnd"] == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert a2["Tags"] == {"user": "u-1", "department": "eng", "agent": "supervisor"}
    assert (a2["x_TraceId"], a2["x_User"], a2["x_Agent"], a2["x_Department"]) == (
        TA, "u-1", "supervisor", "eng")  # fmt: skip
    assert (a2["x_InputTokens"], a2["x_CachedInputTokens"], a2["x_OutputTokens"]) == (
        10_000, 4_000, 500)  # fmt: skip
    assert a2["x_CacheStatus"] == "partial" and a2["x_PriceStatus"] == "priced"
    assert (a2["SubAccountId"], a2["SubAccountType"]) == ("svc-api", "Service")

    a4 = spans[sid("a4")]  # inherits user and department, agent from invoke_agent research
    assert a4["BilledCost"] == Decimal("0.01275")
    assert a4["x_CacheWriteTokens"] == 1_000 and a4["x_CacheStatus"] == "write"
    assert a4["Tags"] == {"user": "u-1", "department": "eng", "agent": "research"}
    # Input tokens only, all at $2/M: a unit price exists and multiplies out exactly.
    a5 = spans[sid("a5")]
    assert a5["ListUnitPrice"] == a5["ContractedUnitPrice"] == Decimal(2)
    assert a5["PricingQuantity"] == Decimal("0.001") and a5["ListCost"] == Decimal("0.002")
    b2 = spans[sid("b2")]  # house-llm: one rate for input and output
    assert b2["ListUnitPrice"] == Decimal(4) and b2["PricingQuantity"] == Decimal("0.002")
    assert (b2["SubAccountId"], b2["SubAccountType"], b2["x_TraceId"]) == ("t-9", "Tenant", TB)
    assert b2["ProviderName"] == b2["InvoiceIssuerName"] == "acme"
    c2 = spans[sid("c2")]
    assert c2["PublisherName"] == "Anthropic" and c2["BilledCost"] == Decimal("0.018")

    # The unpriced span: left out, counted, and said so.
    assert summary["excluded_unpriced"] == {
        "spans": 1, "input_tokens": 100, "output_tokens": 7, "models": {"mystery-model": 1}
    }  # fmt: skip
    assert (
        "1 LLM spans without a price left out (100 input + 7 output tokens" in (summary["stderr"])
    )
    assert all(row["SkuId"] != "mystery-model" for row in rows)


def test_parquet_has_typed_columns_and_the_same_rows(ledger: Path, tmp_path: Path) -> None:
    export(ledger, tmp_path / "spend.csv")
    export(ledger, tmp_path / "spend.parquet")
    header, from_csv = read_csv(tmp_path / "spend.csv")
    schema, from_parquet = read_parquet(tmp_path / "spend.parquet")
    assert schema.names == header
    for name, (kind, _) in RULES.items():
        field = schema.field(name)
        if kind == "decimal":
            assert pa.types.is_decimal(field.type), (name, field.type)  # never float
        elif kind == "datetime":
            assert pa.types.is_timestamp(field.type) and field.type.tz == "UTC", name
        else:
            assert pa.types.is_string(field.type), (name, field.type)
    check_focus(schema.names, from_parquet)
    assert len(from_parquet) == len(from_csv)
    for csv_row, parquet_row in zip(from_csv, from_parquet, strict=True):
        for name in header:
            assert csv_row[name] == parquet_row[name], name


def test_hour_grain_aggregates_per_hour_model_and_dimensions(ledger: Path, tmp_path: Path) -> None:
    for out in (tmp_path / "hourly.csv", tmp_path / "hourly.parquet"):
        summary = export(ledger, out, "--grain", "hour")
        header, rows = read_csv(out) if out.suffix == ".csv" else read_parquet(out)
        names = header if isinstance(header, list) else header.names
        check_focus(names, rows)
        assert summary["rows"] == len(rows) == 5
        assert sum(row["BilledCost"] for row in rows) == TOTAL
        for row in rows:
            start = row["ChargePeriodStart"]
            assert (start.minute, start.second) == (0, 0)
            assert row["ChargePeriodEnd"] - start == dt.timedelta(hours=1)
            assert row["x_TraceId"] is None and row["x_SpanId"] is None
        groups = {(row["ChargePeriodStart"].hour, row["SkuId"], row["x_Agent"]): row
                  for row in rows}  # fmt: skip
        assert set(groups) == {(9, "model-a", "supervisor"), (9, "model-a", "research"),
                               (9, "model-b", "research"), (9, "house-llm", "support"),
                               (10, "model-b", "supervisor")}  # fmt: skip
        research = groups[(9, "model-a", "research")]  # a5 + a6
        assert research["BilledCost"] == Decimal("0.0048") and research["x_Calls"] == 2
        assert research["ConsumedQuantity"] == 2_100 and research["x_OutputTokens"] == 100
        assert research["ListUnitPrice"] is None  # input and output rates differ
        assert groups[(10, "model-b", "supervisor")]["BilledCost"] == Decimal("0.018")


def test_time_window_and_account(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "late.csv"
    summary = export(ledger, out, "--from", "2026-11-02T10:00:00Z", "--account", "acme-ai",
                     "--account-name", "ACME AI platform")  # fmt: skip
    header, rows = read_csv(out)
    check_focus(header, rows)
    assert [row["x_SpanId"] for row in rows] == [sid("c2")]
    assert (rows[0]["BillingAccountId"], rows[0]["BillingAccountName"]) == (
        "acme-ai", "ACME AI platform")  # fmt: skip
    assert summary["excluded_unpriced"]["spans"] == 0 and "warning" not in summary["stderr"]


def test_empty_window_writes_a_header_only_file(ledger: Path, tmp_path: Path) -> None:
    for out in (tmp_path / "none.csv", tmp_path / "none.parquet"):
        summary = export(ledger, out, "--from", "2030-01-01")
        assert summary["rows"] == 0 and Decimal(summary["billed_cost_usd"]) == 0
        names = read_csv(out)[0] if out.suffix == ".csv" else pq.read_schema(out).names
        assert set(RULES) <= set(names)


def test_a_fresh_ledger_file_exports_the_same(tmp_path: Path) -> None:
    """Exports depend on the ledger's contents only (a second, independent fill)."""
    first = build_ledger(tmp_path / "one.duckdb")
    second = build_ledger(tmp_path / "two.duckdb")
    texts = []
    for db in (first, second):
        out = tmp_path / f"{db.stem}.csv"
        export(db, out)
        texts.append(out.read_text(encoding="utf-8"))
    assert texts[0] == texts[1]
