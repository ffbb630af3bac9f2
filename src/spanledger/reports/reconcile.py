"""Reconciliation: the provider's bill against the ledger, and the gap between them explained.

A bill (`reports.bills`: usage and cost exports) and the ledger are compared per UTC day,
provider and model, and per billing project and API key where both sides carry them:
tokens by kind (uncached input, cache reads, cache writes, output) and dollars. The gap,
bill minus ledger, is broken into named causes, each a dollar amount, and what they do not
explain is shown as the remainder, never dropped.

How a row's gap is explained. The ledger's tokens start valued at the ledger's prices
(each kind's cost / tokens), and are turned, step by step, into the bill's tokens valued
at the bill's prices (each kind's amount / tokens); each step's change of value is a cause:

1. `unpriced_models`: tokens of calls the ledger has no price for, valued at the bill's
   price (less any cost their caller reported, which the ledger counts).
2. `cache_pricing` (a): prompt tokens the bill counts as cache reads (or writes) that the
   ledger priced as uncached input, or the other way round: the same prompt split
   differently. They move to the bill's kind, at the ledger's prices.
3. `failed_attempts`: tokens the bill has beyond the ledger's, up to what failed attempts
   are likely to have cost: an attempt that was retried, got no usage and no refusal
   from the provider (a timeout, a dropped connection: the provider may have done the
   work) is counted with the usage of the call that retried it (the same prompt). At the
   bill's price. The other way, tokens the ledger has beyond the bill's, up to the usage
   of the ledger's own failed calls (attempts the provider did not bill), at the ledger's.
4. `missing_telemetry`: the bill's tokens still beyond the ledger's: calls that never
   reached the ledger (an exporter batch dropped, a trace never finished), at the bill's
   price.
5. `cache_pricing` (b) and `rate_difference`: the ledger's tokens revalued from the
   ledger's price to the bill's: for cache reads and writes part of `cache_pricing`, for
   uncached input and output the rate sheet against the invoice.
6. `non_token_charges`: charges the bill makes other than per token (web search, code
   execution, storage); the ledger prices tokens only.

What is left (tokens the ledger has and the bill does not, amounts the bill gives without
tokens to price them by, rounding to the femto-dollar) is the `remainder`.

Where the bill gives one amount per row rather than per kind (the generic CSV), the
bill's per-kind prices are the ledger's scaled to that amount (or, for a model the ledger
has no price for, one price per token); where it gives no amount at all (a usage export
alone), it is valued at the ledger's prices and marked estimated.

Matching: models by the pricing core's own matching (genai-prices' model ids, so the
bill's `gpt-4o-mini-2024-07-18` meets a span's `gpt-4o-mini`), else by the name without a
date suffix; providers by `usage.provider_of`. A span's billing project and API key are
the first of `PROJECT_KEYS` / `API_KEY_KEYS` it (or its resource) carries; a day, provider
and model is split by them only if every bill row and some span there carry them. Only
the providers and days the bills cover (a report's buckets, even empty ones) are compared:
the ledger's other spend is listed as not compared, never counted as a gap.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from spanledger.pricing import defaults
from spanledger.pricing.money import display, femto_from_usd, usd_str
from spanledger.reports.bills import FORMATS, KINDS, OTHER, BadRow, Bill, BillLine, Tokens

PROJECT_KEYS = (
    "spanledger.billing.project",
    "openai.project.id",
    "openai.project",
    "gen_ai.openai.project",
    "anthropic.workspace.id",
    "anthropic.workspace_id",
)
"""Span (or resource) attributes naming the OpenAI project or Anthropic workspace a call was
billed to, first present wins. The bill's `project_id` / `workspace_id` is matched with it."""

API_KEY_KEYS = (
    "spanledger.billing.api_key_id",
    "openai.api_key.id",
    "anthropic.api_key.id",
)
"""Span (or resource) attributes naming the API key id a call was billed to."""

CAUSES: dict[str, tuple[str, str]] = {
    "cache_pricing": (
        "cache discounts priced differently",
        "prompt tokens counted as cached by one side and not the other, and cache reads "
        "and writes priced differently by the rate sheet and the invoice",
    ),
    "failed_attempts": (
        "retries and failed attempts",
        "failed attempts the provider billed that the ledger has no usage for (estimated "
        "from the call that retried them), or failed calls the ledger priced and the "
        "provider did not bill",
    ),
    "missing_telemetry": (
        "calls missing from telemetry",
        "tokens on the bill that no span carries (an exporter batch dropped, a trace never "
        "finished), at the bill's price",
    ),
    "unpriced_models": (
        "models without a price",
        "calls the ledger has tokens for but no price, at the bill's amount for them",
    ),
    "rate_difference": (
        "rate sheet vs invoice",
        "the same input and output tokens at the invoice's price instead of the rate sheet's",
    ),
    "non_token_charges": (
        "charges not per token",
        "web search, code execution, storage and other charges the ledger does not price",
    ),
}
REMAINDER = ("unexplained", "what the causes above do not explain: never hidden")

_CACHE_KINDS = ("cache_read", "cache_write")
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")
_ZERO = Tokens()


# -- matching -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _known(provider: str | None, model: str) -> tuple[str, str | None] | None:
    found = defaults.rates(provider, model, dt.datetime.now(dt.UTC))
    return (found.model, found.provider) if found is not None else None


def model_key(provider: str | None, model: str | None) -> str | None:
    """The name a model is matched by on both sides: genai-prices' id where it knows the
    model (dated snapshots and aliases meet), else the name lowercased without a date."""
    if model is None or not model.strip():
        return None
    name = model.strip()
    known = _known(provider, name)
    if known is not None:
        return known[0]
    return _DATE_SUFFIX.sub("", name.lower())


def _provider_of_model(model: str | None) -> str | None:
    if not model:
        return None
    known = _known(None, model.strip())
    return known[1] if known else None


# -- the comparison -----------------------------------------------------------------------

Key = tuple[str, str, str | None, str | None, str | None]  # day, provider, model, project, key


@dataclass
class _Ledger:
    priced: Tokens = _ZERO
    cost: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    unpriced: Tokens = _ZERO
    reported: int = 0  # what the callers of unpriced calls reported
    failed: Tokens = _ZERO  # priced calls that failed, with usage
    failed_cost: int = 0
    retry_estimate: Tokens = _ZERO
    calls: int = 0
    unpriced_calls: int = 0
    failed_calls: int = 0
    invalid_calls: int = 0
    retry_candidates: int = 0
    models: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.cost.values()) + self.reported


@dataclass
class _Bill:
    tokens: Tokens | None = None
    requests: int | None = None
    by_kind: dict[str, int] = field(default_factory=dict)
    whole: int | None = None  # amounts given for a whole row, not per kind
    other: int = 0
    models: set[str] = field(default_factory=set)
    lines: int = 0

    @property
    def amount(self) -> int | None:
        """The bill's amount for tokens, if it gives one."""
        if not self.by_kind and self.whole is None:
            return None
        return sum(self.by_kind.values()) + (self.whole or 0)


@dataclass
class Row:
    """One day, provider, model (and project, API key): the bill, the ledger, the gap."""

    day: str
    provider: str
    model: str | None
    project: str | None
    api_key: str | None
    bill: _Bill
    ledger: _Ledger
    bill_total: int = 0  # tokens (as billed or estimated) plus charges not per token
    bill_estimated: bool = False
    causes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CAUSES, 0))
    cause_tokens: dict[str, Tokens] = field(default_factory=dict)
    remainder: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def gap(self) -> int:
        return self.bill_total - self.ledger.total


@dataclass
class Reconciliation:
    start: dt.date
    end: dt.date  # exclusive
    bills: list[Bill]
    rows: list[Row]
    not_compared: dict[str, tuple[int, int]]  # provider -> (calls, ledger cost)
    warnings: list[str]
    source: str = ""

    @property
    def bad_rows(self) -> list[BadRow]:
        return [bad for bill in self.bills for bad in bill.bad_rows]


def bill_window(bills: Sequence[Bill]) -> tuple[dt.date, dt.date] | None:
    """The days the bills cover: first day, day after the last."""
    days = [line.day for bill in bills for line in bill.lines]
    if not days:
        return None
    return min(days), max(days) + dt.timedelta(days=1)


def reconcile(
    bills: Sequence[Bill],
    ledger_rows: Iterable[Mapping[str, Any]],
    start: dt.date,
    end: dt.date,
    *,
    source: str = "",
) -> Reconciliation:
    """Compare bills with the ledger's `ledger_daily` rows over the days [start, end)."""
    warnings = [warning for bill in bills for warning in bill.warnings]
    lines: list[BillLine] = []
    outside = 0
    for bill in bills:
        for line in bill.lines:
            if start <= line.day < end:
                lines.append(line)
            else:
                outside += 1
    if outside:
        warnings.append(
            f"{outside} bill rows fall outside {start} .. {end - dt.timedelta(days=1)} and "
            "are not compared"
        )
    warnings += _overlaps(bills)
    providers = {line.provider for line in lines}
    covered = {(provider, day.isoformat()) for bill in bills for provider, day in bill.covers}

    # The ledger's rows, with a provider wherever one can be told.
    bill_models: dict[tuple[str, str], set[str]] = defaultdict(set)  # (day, model key)
    for line in lines:
        key = model_key(line.provider, line.model)
        if key is not None:
            bill_models[(line.day.isoformat(), key)].add(line.provider)
    ledger: list[tuple[str, str, str | None, Mapping[str, Any]]] = []  # day, provider, key
    not_compared: dict[str, tuple[int, int]] = {}
    for row in ledger_rows:
        day = str(row["day"])
        if not start.isoformat() <= day < end.isoformat():
            continue
        provider = row.get("provider") or _provider_of_model(row.get("model"))
        key = model_key(provider, row.get("model"))
        if provider is None and key is not None:
            candidates = bill_models.get((day, key), set())
            provider = next(iter(candidates)) if len(candidates) == 1 else None
        if provider not in providers or (provider, day) not in covered:
            if row.get("class") != "retry_estimate":
                name = provider or "(unknown provider)"
                if provider in providers:
                    name += " on days no bill covers"
                calls, cost = not_compared.get(name, (0, 0))
                not_compared[name] = (calls + int(row["calls"]), cost + int(row["cost"] or 0))
            continue
        ledger.append((day, provider, key, row))

    # Which rows to split by model, project and API key: only where the bill does.
    unsplit_models = {
        (line.day.isoformat(), line.provider)
        for line in lines
        if line.cost_kind != OTHER and model_key(line.provider, line.model) is None
    }

    def model_of(day: str, provider: str, key: str | None) -> str | None:
        return None if (day, provider) in unsplit_models else key

    split: dict[tuple[str, str, str | None], dict[str, bool]] = {}
    for line in lines:
        if line.cost_kind == OTHER:
            continue
        day = line.day.isoformat()
        cell = (
            day,
            line.provider,
            model_of(day, line.provider, model_key(line.provider, line.model)),
        )
        flags = split.setdefault(cell, {"project": True, "api_key": True})
        flags["project"] &= line.project is not None
        flags["api_key"] &= line.api_key is not None
    carried: dict[tuple[str, str, str | None], dict[str, bool]] = {}
    for day, provider, key, row in ledger:
        cell = (day, provider, model_of(day, provider, key))
        flags = carried.setdefault(cell, {"project": False, "api_key": False})
        flags["project"] |= row.get("project") is not None
        flags["api_key"] |= row.get("api_key") is not None

    def key_of(day: str, provider: str, key: str | None, project: Any, api_key: Any) -> Key:
        model = model_of(day, provider, key)
        cell = (day, provider, model)
        both = split.get(cell, {})
        has = carried.get(cell, {})
        return (
            day,
            provider,
            model,
            project if both.get("project") and has.get("project") else None,
            api_key if both.get("api_key") and has.get("api_key") else None,
        )

    bill_cells: dict[Key, _Bill] = defaultdict(_Bill)
    for line in lines:
        day = line.day.isoformat()
        cell = bill_cells[
            key_of(day, line.provider, model_key(line.provider, line.model), line.project,
                   line.api_key)
        ]  # fmt: skip
        _add_bill(cell, line)
    ledger_cells: dict[Key, _Ledger] = defaultdict(_Ledger)
    for day, provider, key, row in ledger:
        _add_ledger(
            ledger_cells[key_of(day, provider, key, row.get("project"), row.get("api_key"))], row
        )

    rows = []
    for key in sorted(set(bill_cells) | set(ledger_cells), key=_sort_key):
        row = Row(*key, bill=bill_cells.get(key, _Bill()), ledger=ledger_cells.get(key, _Ledger()))
        _explain(row)
        rows.append(row)
    return Reconciliation(start, end, list(bills), rows, not_compared, warnings, source)


def _sort_key(key: Key) -> tuple[Any, ...]:
    return tuple((part is None, part or "") for part in key)


def _overlaps(bills: Sequence[Bill]) -> list[str]:
    """Two files of one kind covering the same provider and day are likely counted twice."""
    seen: dict[tuple[str, str, dt.date], set[str]] = defaultdict(set)
    for bill in bills:
        for line in bill.lines:
            seen[(bill.format, line.provider, line.day)].add(bill.file)
    clashes: dict[tuple[str, ...], list[dt.date]] = defaultdict(list)
    for (_, _, day), files in seen.items():
        if len(files) > 1:
            clashes[tuple(sorted(files))].append(day)
    return [
        f"{' and '.join(files)} are the same kind of report for {len(days)} of the same days "
        f"(from {min(days)}): their rows are added up; is one contained in the other?"
        for files, days in clashes.items()
    ]


def _add_bill(cell: _Bill, line: BillLine) -> None:
    cell.lines += 1
    if line.model is not None:
        cell.models.add(line.model)
    if line.tokens is not None:
        cell.tokens = (cell.tokens or _ZERO) + line.tokens
    if line.requests is not None:
        cell.requests = (cell.requests or 0) + line.requests
    if line.cost is None:
        return
    if line.cost_kind == OTHER:
        cell.other += line.cost
    elif line.cost_kind is None:
        cell.whole = (cell.whole or 0) + line.cost
    else:
        cell.by_kind[line.cost_kind] = cell.by_kind.get(line.cost_kind, 0) + line.cost


def _tokens(row: Mapping[str, Any]) -> Tokens:
    return Tokens(
        int(row["input_uncached"] or 0),
        int(row["cache_read"] or 0),
        int(row["cache_write"] or 0),
        int(row["output"] or 0),
    )


def _add_ledger(cell: _Ledger, row: Mapping[str, Any]) -> None:
    kind, calls = row["class"], int(row["calls"])
    if row.get("model") and kind != "retry_estimate":
        cell.models.add(str(row["model"]))
    if kind == "retry_estimate":
        cell.retry_estimate += _tokens(row)
        cell.retry_candidates += calls
        return
    cell.calls += calls
    if kind == "priced":
        tokens = _tokens(row)
        cell.priced += tokens
        for name, column in zip(KINDS, _COST_COLUMNS, strict=True):
            cell.cost[name] += int(row[column] or 0)
        if row["failed"]:
            cell.failed += tokens
            cell.failed_cost += int(row["cost"] or 0)
            cell.failed_calls += calls
    elif kind == "unpriced":
        cell.unpriced += _tokens(row)
        cell.reported += int(row["cost"] or 0)
        cell.unpriced_calls += calls
    else:  # invalid usage: its token counts cannot be trusted
        cell.invalid_calls += calls


_COST_COLUMNS = ("cost_input", "cost_cache_read", "cost_cache_write", "cost_output")


def _explain(row: Row) -> None:
    """Break the row's gap into causes (see the module's docstring); the rest is remainder."""
    bill, ledger, notes = row.bill, row.ledger, row.notes
    causes: dict[str, Fraction] = defaultdict(Fraction)
    causes["non_token_charges"] = Fraction(bill.other)
    if ledger.invalid_calls:
        notes.append(f"{ledger.invalid_calls} calls with impossible token counts left out")
    if ledger.retry_candidates:
        notes.append(
            f"{ledger.retry_candidates} retried attempts without usage the provider may have billed"
        )
    amount = bill.amount
    if bill.tokens is None and amount is not None:
        row.bill_total = amount + bill.other
        gap = Fraction(row.bill_total - ledger.total)
        if not ledger.calls:
            causes["missing_telemetry"] += amount
        elif not ledger.priced.total and ledger.unpriced.total:
            causes["unpriced_models"] += amount - ledger.reported
        else:
            notes.append(
                "the bill gives amounts but no token counts here: add its usage export to "
                "split this gap"
            )
        _settle(row, causes, gap)
        return

    billed = bill.tokens or _ZERO
    priced = ledger.priced
    l_rate: dict[str, Fraction | None] = {
        k: Fraction(ledger.cost[k], priced.get(k)) if priced.get(k) else None for k in KINDS
    }
    b_rate: dict[str, Fraction | None] = dict.fromkeys(KINDS)
    if amount is None:
        if billed.total:
            row.bill_estimated = True
            notes.append("the bill gives no amounts here: valued at the ledger's prices")
        b_rate.update(l_rate)
        unvalued = [k for k in KINDS if billed.get(k) and l_rate[k] is None]
        if unvalued:
            notes.append(f"no amount and no price for {', '.join(unvalued)} tokens: valued at $0")
    elif bill.by_kind and bill.whole is None:
        for k in KINDS:
            paid = bill.by_kind.get(k, 0)
            if billed.get(k):
                b_rate[k] = Fraction(paid, billed.get(k))
            elif paid:
                notes.append(f"the bill charges {display(paid)} for {k} tokens it does not count")
    else:
        shape = [l_rate[k] for k in KINDS if billed.get(k)]
        expected = sum(
            (billed.get(k) * (l_rate[k] or 0) for k in KINDS if billed.get(k)), Fraction(0)
        )
        if shape and all(rate is not None for rate in shape) and expected:
            scale = Fraction(amount, 1) / expected
            b_rate = {k: None if r is None else r * scale for k, r in l_rate.items()}
            notes.append("one amount per row: the bill's price per kind is the ledger's, scaled")
        elif billed.total:
            flat = Fraction(amount, billed.total)
            b_rate = dict.fromkeys(KINDS, flat)
            notes.append("one amount per row and no ledger price: one price per token assumed")
        elif amount:
            notes.append(f"the bill charges {display(amount)} for no tokens")
    for k in KINDS:
        if b_rate[k] is None:
            b_rate[k] = l_rate[k] if l_rate[k] is not None else Fraction(0)
        if l_rate[k] is None:
            l_rate[k] = b_rate[k]
    b: dict[str, Fraction] = {k: v or Fraction(0) for k, v in b_rate.items()}
    lr: dict[str, Fraction] = {k: v or Fraction(0) for k, v in l_rate.items()}
    token_amount = (
        amount if amount is not None else sum((billed.get(k) * b[k] for k in KINDS), Fraction(0))
    )
    row.bill_total = round(token_amount) + bill.other
    gap = Fraction(row.bill_total - ledger.total)

    x = priced.as_dict()  # tokens valued at the ledger's prices
    y = dict.fromkeys(KINDS, 0)  # tokens valued at the bill's prices
    moved: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))

    # 1. Calls without a price: at the bill's price, less what their callers reported.
    for k in KINDS:
        y[k] += ledger.unpriced.get(k)
    if ledger.unpriced.total or ledger.reported:
        causes["unpriced_models"] += (
            sum((ledger.unpriced.get(k) * b[k] for k in KINDS), Fraction(0)) - ledger.reported
        )
        moved["unpriced_models"] = ledger.unpriced.as_dict()

    # 2. The same prompt split differently between uncached and cached tokens.
    for kind in _CACHE_KINDS:
        short = billed.get(kind) - (x[kind] + y[kind])
        spare = (x["input"] + y["input"]) - billed.get("input")
        if short > 0 and spare > 0:
            source, target, count = "input", kind, min(short, spare)
        elif short < 0 and spare < 0:
            source, target, count = kind, "input", min(-short, -spare)
        else:
            continue
        from_x = min(count, x[source])
        x[source] -= from_x
        x[target] += from_x
        y[source] -= count - from_x
        y[target] += count - from_x
        causes["cache_pricing"] += from_x * (lr[target] - lr[source]) + (count - from_x) * (
            b[target] - b[source]
        )
        moved["cache_pricing"][kind] += count if target == kind else -count

    # 3. Failed attempts: billed without usage in the ledger, or priced but not billed.
    for k in KINDS:
        extra = billed.get(k) - (x[k] + y[k])
        if extra > 0:
            taken = min(extra, ledger.retry_estimate.get(k))
            y[k] += taken
            causes["failed_attempts"] += taken * b[k]
        else:
            taken = -min(-extra, ledger.failed.get(k), x[k])
            x[k] += taken
            causes["failed_attempts"] += taken * lr[k]
        moved["failed_attempts"][k] += taken

    # 4. Tokens on the bill that no span carries.
    surplus = dict.fromkeys(KINDS, 0)
    for k in KINDS:
        extra = billed.get(k) - (x[k] + y[k])
        if extra > 0:
            y[k] += extra
            causes["missing_telemetry"] += extra * b[k]
            moved["missing_telemetry"][k] += extra
        elif extra < 0:
            surplus[k] = -extra
    if any(surplus.values()):
        shown = ", ".join(f"{n:,} {k}" for k, n in surplus.items() if n)
        notes.append(f"the ledger has tokens the bill does not: {shown}")

    # 5. The ledger's tokens at the bill's price instead of the ledger's.
    for k in KINDS:
        change = x[k] * (b[k] - lr[k])
        causes["cache_pricing" if k in _CACHE_KINDS else "rate_difference"] += change

    row.cause_tokens = {
        name: Tokens(*(counts[k] for k in KINDS))
        for name, counts in moved.items()
        if any(counts.values())
    }
    _settle(row, causes, gap)


def _settle(row: Row, causes: Mapping[str, Fraction], gap: Fraction) -> None:
    """Round each cause to the femto-dollar; the remainder is what they leave of the gap."""
    row.causes = {name: round(causes.get(name, Fraction(0))) for name in CAUSES}
    row.remainder = int(gap) - sum(row.causes.values())


# -- reading the ledger -------------------------------------------------------------------


# -- output -------------------------------------------------------------------------------


def _usd(amount: int | None) -> str | None:
    return None if amount is None else usd_str(amount)


def reconcile_json(result: Reconciliation) -> dict[str, Any]:
    """The reconciliation with exact money (decimal dollar strings)."""
    rows = [_row_json(row) for row in result.rows]
    total_causes = {name: sum(row.causes[name] for row in result.rows) for name in CAUSES}
    bill_total = sum(row.bill_total for row in result.rows)
    ledger_total = sum(row.ledger.total for row in result.rows)
    remainder = sum(row.remainder for row in result.rows)
    return {
        "from": result.start.isoformat(),
        "to": result.end.isoformat(),
        "ledger": result.source,
        "bills": [
            {
                "file": bill.file,
                "format": bill.format,
                "format_name": FORMATS[bill.format],
                "rows": len(bill.lines),
                "bad_rows": len(bill.bad_rows),
            }
            for bill in result.bills
        ],
        "bad_rows": [
            {"file": bad.file, "line": bad.line, "reason": bad.reason} for bad in result.bad_rows
        ],
        "warnings": result.warnings,
        "total": {
            "bill_usd": usd_str(bill_total),
            "bill_estimated": any(row.bill_estimated for row in result.rows),
            "ledger_usd": usd_str(ledger_total),
            "gap_usd": usd_str(bill_total - ledger_total),
            "causes": {name: usd_str(amount) for name, amount in total_causes.items()},
            "remainder_usd": usd_str(remainder),
        },
        "causes": [
            {"cause": name, "label": label, "usd": usd_str(total_causes[name]), "explanation": why}
            for name, (label, why) in CAUSES.items()
        ]
        + [
            {
                "cause": "remainder",
                "label": REMAINDER[0],
                "usd": usd_str(remainder),
                "explanation": REMAINDER[1],
            }
        ],
        "rows": rows,
        "not_compared": [
            {"provider": provider, "calls": calls, "ledger_usd": usd_str(cost)}
            for provider, (calls, cost) in sorted(result.not_compared.items())
        ],
    }


def _row_json(row: Row) -> dict[str, Any]:
    bill, ledger = row.bill, row.ledger
    return {
        "day": row.day,
        "provider": row.provider,
        "model": row.model,
        "bill_models": sorted(bill.models),
        "ledger_models": sorted(ledger.models),
        "project": row.project,
        "api_key": row.api_key,
        "bill": {
            "tokens": bill.tokens.as_dict() if bill.tokens is not None else None,
            "requests": bill.requests,
            "usd": usd_str(row.bill_total),
            "estimated": row.bill_estimated,
            "by_kind_usd": {k: usd_str(v) for k, v in sorted(bill.by_kind.items())},
            "whole_rows_usd": _usd(bill.whole),
            "not_per_token_usd": usd_str(bill.other),
        },
        "ledger": {
            "tokens": ledger.priced.as_dict(),
            "unpriced_tokens": ledger.unpriced.as_dict(),
            "calls": ledger.calls,
            "unpriced_calls": ledger.unpriced_calls,
            "failed_calls": ledger.failed_calls,
            "failed_usd": usd_str(ledger.failed_cost),
            "retry_candidates": ledger.retry_candidates,
            "usd": usd_str(ledger.total),
            "by_kind_usd": {k: usd_str(v) for k, v in ledger.cost.items()},
        },
        "gap_usd": usd_str(row.gap),
        "causes": {name: usd_str(amount) for name, amount in row.causes.items()},
        "cause_tokens": {name: tokens.as_dict() for name, tokens in row.cause_tokens.items()},
        "remainder_usd": usd_str(row.remainder),
        "notes": row.notes,
    }


def _money_cell(value: str | None, *, zero: bool = False) -> Text | str:
    femto = femto_from_usd(value) if value is not None else None
    if femto is None:
        return ""
    if not femto and not zero:
        return ""
    return Text(display(femto), "red" if femto < 0 else "")


_SHORT = {
    "cache_pricing": "cache",
    "failed_attempts": "retries",
    "missing_telemetry": "missing",
    "unpriced_models": "unpriced",
    "rate_difference": "rates",
    "non_token_charges": "not per token",
}


def reconcile_table(data: Mapping[str, Any]) -> Group:
    """The reconciliation for a terminal, from `reconcile_json`'s output: one line per day,
    provider and model with the causes that explain its gap, then each cause's total and
    what it means."""
    rows = data["rows"]
    split = any(row["project"] or row["api_key"] for row in rows)
    title = Text.assemble(("bill vs ledger ", "dim"), (f"{data['from']} .. {data['to']}", "bold"))
    if data.get("ledger"):
        title.append(f"  ({data['ledger']})", "dim")
    table = Table(title=title, title_justify="left", show_edge=False, show_footer=True)
    table.add_column("day", footer=Text("total", "bold"), no_wrap=True)
    table.add_column("provider", no_wrap=True)
    table.add_column("model", no_wrap=True, overflow="ellipsis", max_width=32)
    if split:
        table.add_column("project / key", no_wrap=True, overflow="ellipsis", max_width=24)
    total = data["total"]
    table.add_column("bill", justify="right", footer=_money_cell(total["bill_usd"], zero=True))
    table.add_column("ledger", justify="right", footer=_money_cell(total["ledger_usd"], zero=True))
    table.add_column("gap", justify="right", footer=_money_cell(total["gap_usd"], zero=True))
    table.add_column("explained by", footer=Text("(below)", "dim"))
    table.add_column(
        "unexplained", justify="right", footer=_money_cell(total["remainder_usd"], zero=True)
    )
    for row in rows:
        names = row["bill_models"] or row["ledger_models"]
        model = ", ".join(names) if names else row["model"]
        if model is None:
            only_charges = row["bill"]["tokens"] is None and not row["ledger"]["calls"]
            model = "(not per token)" if only_charges else "(all models)"
        cells: list[Text | str] = [row["day"], row["provider"], Text(model)]
        if split:
            cells.append(Text(" / ".join(p for p in (row["project"], row["api_key"]) if p)))
        bill = _money_cell(row["bill"]["usd"], zero=True)
        if row["bill"]["estimated"]:
            bill = Text.assemble(bill, ("*", "yellow"))
        cells += [bill, _money_cell(row["ledger"]["usd"], zero=True), _money_cell(row["gap_usd"])]
        cells += [_explained(row["causes"]), _money_cell(row["remainder_usd"])]
        table.add_row(*cells)
    parts: list[Any] = [table]
    legend = Table(show_edge=False, show_header=False, box=None, padding=(0, 2, 0, 0))
    legend.add_column(justify="right", no_wrap=True)
    legend.add_column(no_wrap=True)
    legend.add_column(style="dim")
    for cause in data["causes"]:
        short = _SHORT.get(cause["cause"], cause["label"])
        label = f"{short}: {cause['label']}" if short != cause["label"] else short
        legend.add_row(_money_cell(cause["usd"], zero=True), label, cause["explanation"])
    parts += [Text(""), Text("the gap, explained", "bold"), legend]
    if any(row["bill"]["estimated"] for row in rows):
        parts.append(Text("* the bill gives no amount: valued at the ledger's prices", "yellow"))
    for row in rows:
        for note in row["notes"]:
            where = " ".join(str(p) for p in (row["day"], row["provider"], row["model"]) if p)
            parts.append(Text.assemble((f"{where}: ", "dim"), note))
    for item in data["not_compared"]:
        calls = f"{item['calls']:,} call{'s' if item['calls'] != 1 else ''}"
        spent = _money_cell(item["ledger_usd"], zero=True)
        what = f"not compared: {item['provider']} ({calls}, {spent} in the ledger)"
        parts.append(Text(f"{what}: no bill for it", "dim"))
    for warning in data["warnings"]:
        parts.append(Text(f"warning: {warning}", "yellow"))
    for bad in data["bad_rows"]:
        parts.append(Text(f"bad row {bad['file']}:{bad['line']}: {bad['reason']}", "red"))
    return Group(*parts)


def _explained(causes: Mapping[str, str]) -> Text:
    text = Text()
    for name, value in causes.items():
        femto = femto_from_usd(value) or 0
        if not femto:
            continue
        if text:
            text.append(", ")
        text.append(f"{_SHORT[name]} ")
        text.append(display(femto), "red" if femto < 0 else "")
    return text
