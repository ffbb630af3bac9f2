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

    def totals(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
