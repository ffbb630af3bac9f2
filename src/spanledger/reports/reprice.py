"""Repricing: what the stored spend would have cost under other rate sheets.

Every LLM call in the window is priced again from its stored usage, exactly as the ingest
pipeline prices it (`PriceBook.price`: the new sheets over the genai-prices defaults), and
compared with the cost stored for it, per group of any dimensions. Nothing stored changes
unless the result is applied (`DuckDBStore.apply_prices`): then each changed span takes
its new price, and its old price, cost and price source are kept in `price_history` with
the run and the time they were replaced.

What-ifs:

- a negotiated discount, a new price list: a sheet with `discounts:` or `models:` entries;
- a cheaper model for one agent: `where={"agent": "research"}` limits the repricing to
  that agent's calls (the others keep their stored cost), and a sheet entry for its model
  carries the cheaper price, or `models={"gpt-4o": "gpt-4o-mini"}` prices its calls as if
  they had gone to the other model (the same tokens). A substitution is a what-if only: it
  is never applied to history.

A call the new sheets have no price for keeps its stored cost and is counted as such, so a
sheet that covers only some models never makes the others look free.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from rich.table import Table
from rich.text import Text

from spanledger.pricing import Cost, PriceBook
from spanledger.pricing.money import display, femto_from_usd, usd_str
from spanledger.store import GROUPABLE
from spanledger.usage import Usage

# Dimension -> the column of `DuckDBStore.llm_calls` rows that holds it.
_COLUMNS = {
    "user": "user_id",
    "department": "department",
    "tenant": "tenant",
    "agent": "agent",
    "conversation": "conversation",
    "service": "service",
    "model": "model",
    "provider": "provider",
    "price_status": "price_status",
    "agent_path": "agent_path",
}
_COST_PARTS = (
    ("cost_input", "input"),
    ("cost_cache_read", "cache_read"),
    ("cost_cache_write", "cache_write"),
    ("cost_output", "output"),
    ("saved_by_cache", "saved_by_cache"),
)


class RepriceError(ValueError):
    """A repricing that cannot be done as asked; the message says why."""


def dimension(row: Mapping[str, Any], name: str) -> Any:
    """A call's value for a dimension (`day` and `hour` from its start, UTC)."""
    if name in ("day", "hour"):
        start = row["start_time"]
        if isinstance(start, str):
            start = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
        start = start.astimezone(dt.UTC) if start.tzinfo else start
        return start.strftime("%Y-%m-%d" if name == "day" else "%Y-%m-%dT%H:00Z")
    return row.get(_COLUMNS[name])


def check_dimensions(names: Iterable[str], what: str) -> None:
    unknown = [name for name in names if name not in GROUPABLE]
    if unknown:
        raise RepriceError(
            f"cannot {what} {', '.join(unknown)}; choose from {', '.join(GROUPABLE)}"
        )


def parse_pairs(items: Iterable[str], option: str) -> dict[str, str]:
    """`NAME=VALUE` items (`--where agent=research`) -> a dict."""
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise RepriceError(f"{option} {item!r}: write NAME=VALUE")
        pairs[name.strip()] = value.strip()
    return pairs


@dataclass
class _Group:
    calls: int = 0
    repriced: int = 0  # selected and given a price by the new sheets
    changed: int = 0  # whose cost changed
    no_new_price: int = 0  # selected, but the new sheets have no price: stored cost kept
    newly_priced: int = 0  # had no price, have one now
    old: int = 0
    new: int = 0


@dataclass
class Repricing:
    """Stored spend against the same calls under other rate sheets, per group."""

    group_by: list[str]
    start: dt.datetime | None
    end: dt.datetime | None
    sheets: list[str]  # "version (file)" of each new sheet, in order
    use_defaults: bool
    where: dict[str, str]
    models: dict[str, str]
    groups: dict[tuple[Any, ...], _Group] = field(default_factory=dict)
    changes: list[tuple[str, str, Cost]] = field(default_factory=list)  # for `apply`
    applied: dict[str, Any] | None = None


def reprice(
    rows: Iterable[Mapping[str, Any]],
    book: PriceBook,
    group_by: Sequence[str],
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    where: Mapping[str, str] | None = None,
    models: Mapping[str, str] | None = None,
    sheets: Sequence[str] = (),
    keep_changes: bool = False,
) -> Repricing:
    """Price `rows` (`DuckDBStore.llm_calls`, money as integer femto-dollars) with `book`.

    `where`: only calls matching every dimension are repriced (the others keep their
    stored cost); `models`: price calls of a model as if made to another one."""
    where, models = dict(where or {}), dict(models or {})
    check_dimensions(group_by, "group by")
    check_dimensions(where, "select on")
    result = Repricing(list(group_by), start, end, list(sheets), book.use_defaults, where, models)
    for row in rows:
        key = tuple(dimension(row, name) for name in group_by)
        group = result.groups.setdefault(key, _Group())
        old = int(row["cost"] or 0)
        group.calls += 1
        group.old += old
        selected = all(str(dimension(row, name)) == value for name, value in where.items())
        if not selected or row["price_status"] == "invalid_usage":
            group.new += old
            continue
        new_cost = _price(row, book, models)
        if new_cost.status not in ("priced", "reported_only"):
            group.no_new_price += 1
            group.new += old
            continue
        new = new_cost.total
        group.repriced += 1
        group.new += new
        group.changed += new != old
        group.newly_priced += row["price_status"] != "priced" and new_cost.status == "priced"
        if keep_changes and _differs(row, new_cost):
            result.changes.append((row["trace_id"], row["span_id"], new_cost))
    return result


def _price(row: Mapping[str, Any], book: PriceBook, models: Mapping[str, str]) -> Cost:
    usage = Usage(
        input_uncached=int(row["input_uncached"] or 0),
        cache_read=int(row["cache_read"] or 0),
        cache_write=int(row["cache_write"] or 0),
        cache_write_1h=int(row["cache_write_1h"] or 0),
        output=int(row["output"] or 0),
        reasoning=int(row["reasoning"] or 0),
        source=row["usage_source"] or "none",
        response_cached=bool(row["response_cached"]),
    )
    model, alias = row["model"], row.get("request_model")
    substitute = models.get(model) if model else None
    if substitute is None and alias:
        substitute = models.get(alias)
    if substitute is not None:
        model, alias = substitute, None
    reported = row.get("reported")

    def price(provider: str | None) -> Cost:
        return book.price(
            usage,
            provider=provider,
            model=model,
            start_ns=int(row["start_ns"]),
            reported=None if reported is None else int(reported),
            alias=alias,
            failed=bool(row.get("failed")),
        )

    cost = price(row["provider"])
    if substitute is not None and cost.status not in ("priced", "invalid_usage"):
        for provider in _providers_of(book, substitute):  # the other model's own provider
            if provider != row["provider"]:
                other = price(provider)
                if other.status == "priced":
                    return other
    return cost


def _providers_of(book: PriceBook, model: str) -> list[str]:
    """Providers that price `model`: the sheets' entries for it, then genai-prices'."""
    from spanledger.pricing import defaults

    found = [
        entry.provider
        for sheet in reversed(book.sheets)
        for entry in sheet.models
        if entry.provider and entry.matches(entry.provider, model)
    ]
    if book.use_defaults:
        rates = defaults.rates(None, model, dt.datetime.now(dt.UTC))
        if rates is not None and rates.provider:
            found.append(rates.provider)
    return list(dict.fromkeys(found))


def _differs(row: Mapping[str, Any], cost: Cost) -> bool:
    if cost.status != row["price_status"] or cost.source != row["price_source"]:
        return True
    if cost.model != row["price_model"] or cost.total != int(row["cost"] or 0):
        return True
    return any(getattr(cost, attr) != int(row[column] or 0) for column, attr in _COST_PARTS)


def run_label(result: Repricing, at: dt.datetime) -> str:
    """How a repricing run is recorded in `price_history.run`."""
    stamp = at.astimezone(dt.UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    sheets = ", ".join(result.sheets) or "genai-prices defaults"
    if result.where:
        sheets += " where " + ", ".join(f"{k}={v}" for k, v in result.where.items())
    return f"reprice {stamp}: {sheets}"


# -- output -------------------------------------------------------------------------------

_PCT = Decimal("0.0001")


def _pct(difference: int, old: int) -> str | None:
    if not old:
        return None
    return format((Decimal(difference) * 100 / Decimal(old)).quantize(_PCT, ROUND_HALF_EVEN), "f")


def _measures(group: _Group) -> dict[str, Any]:
    difference = group.new - group.old
    return {
        "calls": group.calls,
        "repriced_calls": group.repriced,
        "changed_calls": group.changed,
        "no_new_price_calls": group.no_new_price,
        "newly_priced_calls": group.newly_priced,
        "old_cost_usd": usd_str(group.old),
        "new_cost_usd": usd_str(group.new),
        "difference_usd": usd_str(difference),
        "difference_pct": _pct(difference, group.old),
    }


def reprice_json(result: Repricing) -> dict[str, Any]:
    """The repricing with exact money (decimal dollar strings); differences are new - old."""
    total = _Group()
    for group in result.groups.values():
        for name in vars(total):
            setattr(total, name, getattr(total, name) + getattr(group, name))
    ordered = sorted(
        result.groups.items(),
        key=lambda item: (
            -abs(item[1].new - item[1].old),
            -item[1].old,
            *((v is None, "" if v is None else str(v)) for v in item[0]),
        ),
    )
    return {
        "rates": result.sheets,
        "use_default_prices": result.use_defaults,
        "from": _iso(result.start),
        "to": _iso(result.end),
        "group_by": result.group_by,
        "where": result.where,
        "models": result.models,
        "rows": [
            {**dict(zip(result.group_by, key, strict=True)), **_measures(group)}
            for key, group in ordered
        ],
        "total": _measures(total),
        "applied": result.applied,
    }


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"


def _money(value: str, *, sign: bool = False) -> Text:
    femto = femto_from_usd(value) or 0
    text = display(femto)
    if sign and femto > 0:
        text = "+" + text
    return Text(text, ("green" if femto < 0 else "red" if femto > 0 else "") if sign else "")


def reprice_table(data: Mapping[str, Any]) -> Table:
    """The repricing for a terminal, from `reprice_json`'s output."""
    sheets = ", ".join(data["rates"]) or "genai-prices"
    title = Text.assemble(("repriced with ", "dim"), (sheets, "bold"))
    if data["where"]:
        title.append("  where " + ", ".join(f"{k}={v}" for k, v in data["where"].items()), "dim")
    if data["models"]:
        title.append("  as if " + ", ".join(f"{k}→{v}" for k, v in data["models"].items()), "dim")
    if data["from"] or data["to"]:
        title.append(f"  from {data['from'] or 'the start'} to {data['to'] or 'now'}", "dim")
    grouped = bool(data["group_by"])
    table = Table(title=title, title_justify="left", show_edge=False, show_footer=grouped)
    for position, name in enumerate(data["group_by"]):
        table.add_column(name, footer=Text("total", "bold") if position == 0 else "",
                         no_wrap=True, overflow="ellipsis", max_width=40)  # fmt: skip
    total = data["total"]
    columns = (
        ("calls", "calls", None),
        ("repriced", "repriced_calls", None),
        ("old cost", "old_cost_usd", False),
        ("new cost", "new_cost_usd", False),
        ("difference", "difference_usd", True),
        ("%", "difference_pct", None),
        ("no new price", "no_new_price_calls", None),
    )
    for header, key, sign in columns:
        table.add_column(header, justify="right", footer=_cell(total, key, sign))
    for row in data["rows"]:
        keys = [
            Text("(none)", "dim") if row[g] is None else Text(str(row[g])) for g in data["group_by"]
        ]
        table.add_row(*keys, *(_cell(row, key, sign) for _, key, sign in columns))
    return table


def _cell(row: Mapping[str, Any], key: str, sign: bool | None) -> Text | str:
    value = row[key]
    if value is None:
        return ""
    if sign is not None:
        return _money(value, sign=sign)
    if key == "difference_pct":
        return f"{Decimal(value):+.1f}%"
    return f"{value:,}" if value else ""


# -- where the calls and sheets come from -------------------------------------------------


def calls_from_store(
    store: Any, start: dt.datetime | None, end: dt.datetime | None
) -> Iterable[dict[str, Any]]:
    """A `DuckDBStore`'s `llm_calls`, with money as integer femto-dollars."""
    from spanledger.reports.source import from_db
    from spanledger.store import TraceFilter

    for row in store.llm_calls(TraceFilter(start=start, end=end)):
        yield from_db(row)


def book_from_sheets(
    sheets: Sequence[tuple[str, str]], *, use_defaults: bool = True
) -> tuple[PriceBook, list[str]]:
    """A price book from (name, YAML text) sheets, later ones winning, and their labels.
    Raises `RateSheetError` naming the sheet, line and reason."""
    from spanledger.pricing import RateSheet

    loaded = [RateSheet.parse(text, name=name) for name, text in sheets]
    return PriceBook(loaded, use_defaults=use_defaults), [
        f"{sheet.version} ({sheet.path})" if sheet.version != sheet.path else sheet.version
        for sheet in loaded
    ]
