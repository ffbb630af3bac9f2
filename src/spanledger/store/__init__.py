"""Storage: the `Store` protocol the pipeline writes to, and its implementations.

The pipeline only ever calls these methods, so a ClickHouse store can stand in for the
embedded DuckDB one without touching it. A store knows rows, not HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from spanledger.traces import PricedSpan

DIMENSIONS = ("user", "department", "tenant", "agent", "conversation", "service")
GROUPABLE = (*DIMENSIONS, "model", "provider", "day", "hour", "price_status", "agent_path")

# Columns (of spans, traces and the reports over them) that hold money: femto-dollars in
# the store, exact dollar strings in every JSON answer.
MONEY_COLUMNS = frozenset(
    {
        "cost", "cost_input", "cost_cache_read", "cost_cache_write", "cost_output",
        "saved_by_cache", "reported", "rollup", "retry_overhead", "loop_cost",
    }
)  # fmt: skip

# What `llm_spans` gives of an LLM span (the FOCUS export and span-level reports), in order.
SPAN_FIELDS = (
    "trace_id", "span_id", "parent_span_id", "name", "start_time", "end_time", "status_code",
    "provider", "model", "operation", "tool",
    "input_uncached", "cache_read", "cache_write", "cache_write_1h", "output", "reasoning",
    "response_cached", "price_status", "price_model", "price_source", "price_reason",
    "cache_status", "cost_input", "cost_cache_read", "cost_cache_write", "cost_output", "cost",
    "saved_by_cache", "reported",
    "user_id", "department", "tenant", "agent", "conversation", "service", "agent_path",
    "rollup", "retry", "loop",
)  # fmt: skip

SpanCursor = tuple[int, str, str]
"""Where a page of `llm_spans` ended: (start time in ns since the epoch, trace id, span id)."""


@dataclass(frozen=True)
class TraceFilter:
    """What `list_traces` and `costs` select. Times are UTC; `to` is exclusive."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None
    dimensions: dict[str, str] = field(default_factory=dict)  # e.g. {"user": "u-42"}
    model: str | None = None
    min_cost_femto: int | None = None
    limit: int = 100


class Store(Protocol):
    """Where priced spans live. Every method is safe to call from one writer thread and
    many reader threads."""

    def append(self, spans: Sequence[PricedSpan]) -> int:
        """Store spans durably (on disk when this returns). The caller passes each span,
        by (trace_id, span_id), once: see `stored_span_ids`. Returns how many were stored."""
        ...

    def encode(self, spans: Sequence[PricedSpan]) -> Any:
        """The spans in the store's own row format, for `write`. Safe on any thread: the
        receivers encode, so the single writer only writes."""
        ...

    def write(self, batches: Sequence[Any]) -> int:
        """`append` for spans already encoded: every batch in one transaction."""
        ...

    def update_derived(self, spans: Sequence[PricedSpan]) -> None:
        """Record what assembly derived for stored spans: rollup, inherited attribution,
        agent path, retry and loop flags."""
        ...

    def save_traces(self, summaries: Sequence[dict[str, Any]]) -> None:
        """Insert or replace finalized traces' summary rows."""
        ...

    def finalized_among(self, trace_ids: Sequence[str]) -> set[str]:
        """Which of these traces were finalized before (a late span reopens them)."""
        ...

    def finalized_buckets(self, size: int) -> list[int]:
        """For each finalized trace, the low 64 bits of its id modulo `size` (a power of
        two): lets the pipeline skip `finalized_among` for traces never finalized."""
        ...

    def stored_span_ids(self, trace_ids: Sequence[str]) -> set[tuple[str, str]]:
        """(trace_id, span_id) of the stored spans of these traces (to skip copies)."""
        ...

    def trace_summary(self, trace_id: str) -> dict[str, Any] | None: ...

    def unfinalized_traces(self) -> list[str]:
        """Traces with stored spans that were never finalized (the last run ended first)."""
        ...

    def load_trace(self, trace_id: str) -> list[PricedSpan]:
        """A stored trace's spans, priced as they were stored (for late spans)."""
        ...

    def list_traces(self, query: TraceFilter) -> list[dict[str, Any]]: ...

    def trace_spans(self, trace_id: str) -> list[dict[str, Any]]: ...

    def costs(
        self, group_by: Sequence[str], query: TraceFilter, *, usd: bool = False
    ) -> list[dict[str, Any]]:
        """Spend, savings, retry overhead, calls and tokens per group, most expensive first;
        money in femto-dollars, or with `usd` as exact dollar strings (for JSON)."""
        ...

    def unpriced(self, query: TraceFilter) -> list[dict[str, Any]]: ...

    def llm_spans(
        self, query: TraceFilter, after: SpanCursor | None = None, limit: int = 10_000
    ) -> tuple[list[dict[str, Any]], SpanCursor | None]:
        """A page of LLM spans (price status set) started in the filter's time range, with
        `SPAN_FIELDS`, ordered by (start time, trace id, span id), from just after `after`;
        and the cursor of the next page (None on the last one)."""
        ...

    def llm_span_count(self, query: TraceFilter) -> int:
        """How many spans `llm_spans` pages through for this filter."""
        ...

    def totals(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
