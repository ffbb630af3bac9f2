"""Cost reports as people read them (rich tables) and programs read them (JSON, CSV).

Money stays exact integer femto-dollars until it is written: JSON and CSV carry exact
decimal dollar strings, and only the terminal table rounds (`pricing.money.display`).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import IO, Any

from rich.table import Table
from rich.text import Text

from spanledger.pricing.money import display, usd_str
from spanledger.reports.source import LedgerSource, iso

# name in JSON/CSV -> (column of the store's `costs` rows, kind)
_MEASURES: tuple[tuple[str, str, str], ...] = (
    ("cost_usd", "cost", "money"),
    ("share_pct", "", "share"),
    ("input_tokens", "input_tokens", "count"),
    ("cached_tokens", "cache_read_tokens", "count"),
    ("output_tokens", "output_tokens", "count"),
    ("calls", "calls", "count"),
    ("saved_by_cache_usd", "saved_by_cache", "money"),
    ("retry_overhead_usd", "retry_overhead", "money"),
    ("unpriced_calls", "unpriced_calls", "count"),
)
_HEADERS = {
    "cost_usd": "cost",
    "share_pct": "share",
    "input_tokens": "input",
    "cached_tokens": "cached",
    "output_tokens": "output",
    "calls": "calls",
    "saved_by_cache_usd": "saved by cache",
    "retry_overhead_usd": "retry overhead",
    "unpriced_calls": "unpriced",
}
_SHARE_PLACES = Decimal("0.0001")


@dataclass
class CostReport:
    """LLM spend grouped by dimensions over a time window."""

    group_by: list[str]
    start: dt.datetime | None
    end: dt.datetime | None
    rows: list[dict[str, Any]]  # group keys + the store's `costs` measures (femto-dollars)
    unpriced: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> dict[str, int]:
        return {
            column: sum(int(row.get(column) or 0) for row in self.rows)
            for _, column, kind in _MEASURES
            if kind != "share"
        }


def cost_report(
    source: LedgerSource,
    group_by: Sequence[str],
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> CostReport:
    """Read a report from a ledger: the same rows from a file or a server."""
    rows = source.costs(group_by, start, end)
    # Most expensive first; ties in a fixed order so every source prints the same report.
    rows.sort(key=lambda row: (-int(row.get("cost") or 0), *(_key(row.get(g)) for g in group_by)))
    unpriced = source.unpriced(start, end)
    unpriced.sort(key=lambda row: (-int(row.get("spans") or 0), _key(row.get("model"))))
    return CostReport(list(group_by), start, end, rows, unpriced)


def _key(value: Any) -> tuple[bool, str]:
    return (value is None, "" if value is None else str(value))


def share(cost: int, total: int) -> Decimal | None:
    """Percent of the total, to four places (None when nothing was spent)."""
    if not total:
        return None
    return (Decimal(cost) * 100 / Decimal(total)).quantize(_SHARE_PLACES, ROUND_HALF_EVEN)


def _measures(row: dict[str, Any], total_cost: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, column, kind in _MEASURES:
        if kind == "share":
            pct = share(int(row.get("cost") or 0), total_cost)
            out[name] = None if pct is None else format(pct, "f")
        elif kind == "money":
            out[name] = usd_str(int(row.get(column) or 0))
        else:
            out[name] = int(row.get(column) or 0)
    return out


def report_json(report: CostReport) -> dict[str, Any]:
    """The report with exact money (decimal strings) and shares to four places."""
    total = report.total
    return {
        "group_by": report.group_by,
        "from": iso(report.start) if report.start else None,
        "to": iso(report.end) if report.end else None,
        "rows": [
            {**{g: row.get(g) for g in report.group_by}, **_measures(row, total["cost"])}
            for row in report.rows
        ],
        "total": _measures(total, total["cost"]),
        "unpriced_models": [
            {
                "model": row.get("model"),
                "provider": row.get("provider"),
                "spans": int(row.get("spans") or 0),
                "input_tokens": int(row.get("input_tokens") or 0),
                "output_tokens": int(row.get("output_tokens") or 0),
                "reason": row.get("reason"),
            }
            for row in report.unpriced
        ],
    }


def write_report_csv(report: CostReport, stream: IO[str]) -> None:
    """One line per group: the group's keys, then exact measures. No total line."""
    data = report_json(report)
    names = [name for name, _, _ in _MEASURES]
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([*report.group_by, *names])
    for row in data["rows"]:
        writer.writerow(
            [*("" if row[g] is None else row[g] for g in report.group_by)]
            + ["" if row[name] is None else row[name] for name in names]
        )


def report_table(report: CostReport, *, source: str = "") -> Table:
    """The report for a terminal: money rounded to the micro-dollar, shares to 0.1%."""
    by = ", ".join(report.group_by) or "everything"
    title = Text.assemble(("spend by ", "dim"), (by, "bold"))
    window = _window_text(report.start, report.end)
    if window:
        title.append(f"  {window}", "dim")
    if source:
        title.append(f"  ({source})", "dim")
    grouped = bool(report.group_by)  # ungrouped, the one row is the total
    table = Table(title=title, title_justify="left", show_edge=False, show_footer=grouped)
    data = report_json(report)
    for position, name in enumerate(report.group_by):
        table.add_column(name, footer=Text("total", "bold") if position == 0 else "",
                         no_wrap=True, overflow="ellipsis", max_width=40)  # fmt: skip
    footer = data["total"]
    for name, _, kind in _MEASURES:
        cell = _cell(footer[name], kind, zero=name == "cost_usd")
        table.add_column(_HEADERS[name], justify="right", footer=cell)
    for row, shown in zip(report.rows, data["rows"], strict=True):
        keys = [
            Text("(none)", "dim") if row.get(g) is None else Text(str(row[g]))  # never markup
            for g in report.group_by
        ]
        table.add_row(
            *keys,
            *(_cell(shown[name], kind, zero=name == "cost_usd") for name, _, kind in _MEASURES),
        )
    return table


def unpriced_lines(report: CostReport) -> list[Text]:
    """One line per model without a price, with its token volume (never a silent $0)."""
    return [
        Text.assemble(
            ("unpriced ", "magenta"),
            str(row.get("model") or "(no model)"),
            f": {int(row.get('spans') or 0):,} spans, "
            f"{int(row.get('input_tokens') or 0):,} input + "
            f"{int(row.get('output_tokens') or 0):,} output tokens"
            " (add it to a rate sheet: serve --rates)",
        )
        for row in report.unpriced
    ]


def _cell(value: Any, kind: str, *, zero: bool = False) -> Text | str:
    """A table cell; zero amounts and counts are left blank unless `zero`."""
    if value is None:
        return ""
    if kind == "money":
        femto = int(Decimal(value).scaleb(15))
        return display(femto) if femto or zero else ""
    if kind == "share":
        return f"{Decimal(value):.1f}%"
    if kind == "count":
        return f"{value:,}" if value else ""
    return str(value)


def _window_text(start: dt.datetime | None, end: dt.datetime | None) -> str:
    if start is None and end is None:
        return ""
    return f"from {iso(start) if start else 'the start'} to {iso(end) if end else 'now'}"
