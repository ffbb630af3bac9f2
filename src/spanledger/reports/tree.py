"""A priced trace as JSON (money as decimal strings) and as a terminal tree."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from spanledger.pricing import display, usd_str
from spanledger.traces import PricedSpan, Trace


def span_flags(span: PricedSpan) -> list[str]:
    flags = []
    if span.retry:
        flags.append("retry")
    if span.loop:
        flags.append("loop")
    if span.cost.status in ("unpriced", "invalid_usage", "reported_only"):
        flags.append(span.cost.status)
    if span.orphan:
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


def _self_cost(span: PricedSpan) -> Text | str:
    """A span's own cost; an unpriced model is shown as such, never as $0."""
    status = span.cost.status
    if status is None:
        return ""
    if status in ("unpriced", "invalid_usage"):
        return Text(status, _FLAG_STYLE[status])
    return display(span.cost.total)


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
    title = Text.assemble(
        ("trace ", "dim"),
        trace.trace_id,
        "  ",
        (root.record.name if root else "(root not received)", "bold"),
        "  ",
        (display(trace.cost), "bold green"),
    )
    if trace.retry_overhead:
        title.append(f"  retry overhead {display(trace.retry_overhead)}", "yellow")
    if trace.loop_cost:
        title.append(f"  loop {display(trace.loop_cost)}", "bold red")
    unpriced = trace.count("unpriced") + trace.count("invalid_usage")
    if unpriced:
        title.append(f"  + {unpriced} span{'s' * (unpriced > 1)} not priced", "magenta")
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
    for span in trace.walk():
        flags = Text()
        for flag in span_flags(span):
            flags.append(flag + " ", _FLAG_STYLE.get(flag, ""))
        name = Text("  " * span.depth) + Text(span.record.name)  # Text: never markup
        table.add_row(
            name,
            Text(span.model or ""),
            _count(span.usage.input_total),
            _count(span.usage.cache_read + span.usage.cache_write + span.usage.cache_write_1h),
            _count(span.usage.output),
            _self_cost(span),
            display(span.rollup),
            span.cost.cache_status if span.is_llm else "",
            flags,
        )
    return table


def traces_json(traces: Iterable[Trace]) -> dict[str, Any]:
    traces = list(traces)
    return {"traces": [trace_to_dict(trace) for trace in traces], "totals": totals(traces)}
