"""A priced trace as JSON (money as decimal strings) and as a terminal tree."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from spanledger.pricing import display, usd_str
from spanledger.traces import PricedSpan, Trace


def span_flags(span: PricedSpan) -> list[str]:
    return _flags(span.retry, span.loop, span.cost.status, span.orphan)


def _flags(retry: bool, loop: bool, status: str | None, orphan: bool) -> list[str]:
    flags = []
    if retry:
        flags.append("retry")
    if loop:
        flags.append("loop")
    if status in ("unpriced", "invalid_usage", "reported_only"):
        flags.append(status)
    if orphan:
        flags.append("orphan")
    return flags


_NO_COST = ("unpriced", "invalid_usage")


def span_to_dict(span: PricedSpan) -> dict[str, Any]:
    cost = span.cost
    return {
        "span_id": span.span_id,
        "parent_span_id": span.record.parent_span_id,
        "name": span.record.name,
        "provider": span.provider,
        "model": span.model,
        "usage": span.usage.as_dict(),
        "usage_source": span.usage.source,
        # An unpriced span has no cost, which is not the same as costing $0.
        "cost_usd": usd_str(cost.total) if cost.status not in _NO_COST else None,
        "rollup_usd": usd_str(span.rollup),
        "cost_split_usd": {
            "input": usd_str(cost.input),
            "cache_read": usd_str(cost.cache_read),
            "cache_write": usd_str(cost.cache_write),
            "output": usd_str(cost.output),
        },
        "saved_by_cache_usd": usd_str(cost.saved_by_cache),
        "reported_usd": None if cost.reported is None else usd_str(cost.reported),
        "price_status": cost.status,
        "price_model": cost.model,
        "price_source": cost.source,
        "price_reason": cost.reason,
        "cache_status": cost.cache_status,
        "retry": span.retry,
        "loop": span.loop,
        "orphan": span.orphan,
        "agent_path": span.agent_path,
        "attribution": span.attribution,
    }


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    root = trace.root
    return {
        "trace_id": trace.trace_id,
        "root_name": root.record.name if root else None,
        "complete": trace.complete,
        "cost_usd": usd_str(trace.cost),
        "retry_overhead_usd": usd_str(trace.retry_overhead),
        "loop_cost_usd": usd_str(trace.loop_cost),
        "loops": [
            {
                "kind": loop.kind,
                "name": loop.name,
                "parent_span_id": loop.parent_span_id,
                "count": loop.count,
                "cost_usd": usd_str(loop.cost),
            }
            for loop in trace.loops
        ],
        "spans": [span_to_dict(span) for span in trace.walk()],
    }


def totals(traces: Sequence[Trace]) -> dict[str, Any]:
    """What all traces add up to, with unpriced models listed by token volume."""
    unpriced: dict[str, Counter[str]] = {}
    for trace in traces:
        for span in trace.spans.values():
            if span.cost.status in ("unpriced", "reported_only"):
                tokens = unpriced.setdefault(span.model or "(no model)", Counter())
                tokens["spans"] += 1
                tokens.update({"input": span.usage.input_total, "output": span.usage.output})
    return {
        "traces": len(traces),
        "spans": sum(len(trace.spans) for trace in traces),
        "cost_usd": usd_str(sum(trace.cost for trace in traces)),
        "retry_overhead_usd": usd_str(sum(trace.retry_overhead for trace in traces)),
        "loop_cost_usd": usd_str(sum(trace.loop_cost for trace in traces)),
        "saved_by_cache_usd": usd_str(
            sum(span.cost.saved_by_cache for trace in traces for span in trace.spans.values())
        ),
        "unpriced_spans": sum(trace.count("unpriced") for trace in traces),
        "invalid_usage_spans": sum(trace.count("invalid_usage") for trace in traces),
        "unpriced_models": {model: dict(counts) for model, counts in sorted(unpriced.items())},
    }


def _self_cost(status: str | None, total: int) -> Text | str:
    """A span's own cost; an unpriced model is shown as such, never as $0."""
    if status is None:
        return ""
    if status in ("unpriced", "invalid_usage"):
        return Text(status, _FLAG_STYLE[status])
    return display(total)


def _count(number: int) -> str:
    return f"{number:,}" if number else ""


_FLAG_STYLE = {
    "retry": "yellow",
    "loop": "bold red",
    "unpriced": "magenta",
    "invalid_usage": "red",
    "reported_only": "cyan",
    "orphan": "dim",
}


def trace_table(trace: Trace) -> Table:
    """One trace as an indented tree with self and rollup cost per span."""
    root = trace.root
    table = _tree_table(
        _title(
            trace.trace_id,
            root.record.name if root else None,
            trace.cost,
            trace.retry_overhead,
            trace.loop_cost,
            trace.count("unpriced") + trace.count("invalid_usage"),
        )
    )
    for span in trace.walk():
        usage = span.usage
        _add_span(
            table,
            depth=span.depth,
            name=span.record.name,
            model=span.model,
            tokens=(
                usage.input_total,
                usage.cache_read + usage.cache_write + usage.cache_write_1h,
                usage.output,
            ),
            own=_self_cost(span.cost.status, span.cost.total),
            rollup=span.rollup,
            cache=span.cost.cache_status if span.is_llm else "",
            flags=span_flags(span),
        )
    return table


ATTRIBUTION_SHOWN = ("user", "department", "tenant", "agent", "conversation")
_STORED_DIMENSION = {"user": "user_id"}  # store column of a dimension, where renamed


def stored_trace_table(
    summary: Mapping[str, Any] | None, spans: Sequence[Mapping[str, Any]]
) -> Table:
    """A trace read back from the ledger (store rows, money in femto-dollars) as the same
    tree `trace_table` draws, plus each span's attribution: values a span inherited from
    its parent are dimmed, values it set are bright."""
    by_id = {span["span_id"]: span for span in spans}
    children: dict[str, list[Mapping[str, Any]]] = {}
    roots: list[Mapping[str, Any]] = []
    for span in spans:
        parent = span.get("parent_span_id") or ""
        if parent and parent in by_id and parent != span["span_id"]:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)

    def order(span: Mapping[str, Any]) -> tuple[Any, ...]:
        return (bool(span.get("parent_span_id")), span.get("start_time") or 0, span["span_id"])

    true_root = next((s for s in roots if not s.get("parent_span_id")), None)
    own_costs = sum(int(s.get("cost") or 0) for s in spans)
    summary = summary or {}
    unpriced = sum(1 for s in spans if s.get("price_status") in ("unpriced", "invalid_usage"))
    title = _title(
        str(spans[0]["trace_id"]) if spans else str(summary.get("trace_id", "")),
        true_root.get("name") if true_root else summary.get("root_name"),
        int(summary.get("cost") or own_costs),
        int(summary.get("retry_overhead") or 0),
        int(summary.get("loop_cost") or 0),
        unpriced,
    )
    if not summary:
        title.append("  (not finalized yet: rollups and flags pending)", "dim")
    table = _tree_table(title, attribution=True)
    stack = [(root, 0, {}) for root in sorted(roots, key=order, reverse=True)]
    seen: set[str] = set()
    while stack:
        span, depth, inherited = stack.pop()
        if span["span_id"] in seen:  # parent links that loop (hostile input): draw once
            continue
        seen.add(span["span_id"])
        attribution = {
            name: value
            for name in ATTRIBUTION_SHOWN
            if (value := span.get(_STORED_DIMENSION.get(name, name))) is not None
        }
        status = span.get("price_status")
        cost = int(span.get("cost") or 0)
        _add_span(
            table,
            depth=depth,
            name=span.get("name") or "",
            model=span.get("model"),
            tokens=(
                sum(int(span.get(k) or 0) for k in _INPUT_COLUMNS),
                sum(int(span.get(k) or 0) for k in _INPUT_COLUMNS[1:]),
                int(span.get("output") or 0),
            ),
            own=_self_cost(status, cost),
            rollup=int(span["rollup"]) if span.get("rollup") is not None else cost,
            cache=(span.get("cache_status") or "") if status is not None else "",
            flags=_flags(
                bool(span.get("retry")), bool(span.get("loop")), status, bool(span.get("orphan"))
            ),
            attribution=_attribution_text(attribution, inherited),
        )
        below = sorted(children.get(span["span_id"], ()), key=order, reverse=True)
        stack.extend((child, depth + 1, attribution) for child in below)
    return table


_INPUT_COLUMNS = ("input_uncached", "cache_read", "cache_write", "cache_write_1h")


def _attribution_text(own: Mapping[str, str], parent: Mapping[str, str]) -> Text:
    text = Text()
    for name, value in own.items():
        if text:
            text.append(" ")
        style = "dim" if parent.get(name) == value else "cyan"
        text.append(f"{name}={value}", style)  # Text.append: values are never markup
    return text


def _title(
    trace_id: str,
    root_name: str | None,
    cost: int,
    retry_overhead: int,
    loop_cost: int,
    not_priced: int,
) -> Text:
    title = Text.assemble(
        ("trace ", "dim"),
        trace_id,
        "  ",
        (root_name if root_name is not None else "(root not received)", "bold"),
        "  ",
        (display(cost), "bold green"),
    )
    if retry_overhead:
        title.append(f"  retry overhead {display(retry_overhead)}", "yellow")
    if loop_cost:
        title.append(f"  loop {display(loop_cost)}", "bold red")
    if not_priced:
        title.append(f"  + {not_priced} span{'s' * (not_priced > 1)} not priced", "magenta")
    return title


def _tree_table(title: Text, *, attribution: bool = False) -> Table:
    table = Table(title=title, title_justify="left", expand=False, show_edge=False)
    table.add_column("span", no_wrap=True, overflow="ellipsis", max_width=44)
    table.add_column("model", no_wrap=True, overflow="ellipsis", max_width=26)
    table.add_column("input", justify="right")
    table.add_column("cached", justify="right")
    table.add_column("output", justify="right")
    table.add_column("self", justify="right")
    table.add_column("rollup", justify="right")
    table.add_column("cache")
    table.add_column("flags")
    if attribution:
        table.add_column("attribution (inherited dim)", overflow="fold", max_width=64)
    return table


def _add_span(
    table: Table,
    *,
    depth: int,
    name: str,
    model: str | None,
    tokens: tuple[int, int, int],
    own: Text | str,
    rollup: int,
    cache: str,
    flags: list[str],
    attribution: Text | None = None,
) -> None:
    shown_flags = Text()
    for flag in flags:
        shown_flags.append(flag + " ", _FLAG_STYLE.get(flag, ""))
    cells: list[Text | str] = [
        Text("  " * depth) + Text(name),  # Text: never markup
        Text(model or ""),
        _count(tokens[0]),
        _count(tokens[1]),
        _count(tokens[2]),
        own,
        display(rollup),
        cache,
        shown_flags,
    ]
    if attribution is not None:
        cells.append(attribution)
    table.add_row(*cells)


def traces_json(traces: Iterable[Trace]) -> dict[str, Any]:
    traces = list(traces)
    return {"traces": [trace_to_dict(trace) for trace in traces], "totals": totals(traces)}
