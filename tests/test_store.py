"""DuckDBStore on a real file: appends, exact money, faithful round trips,
derived columns and trace rows, and a file that reopens with everything in it."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serverkit import T0, running
from spanledger.pricing import Cost
from spanledger.pricing.money import usd_str
from spanledger.server.pipeline import trace_summary
from spanledger.spans import SpanRecord
from spanledger.store import TraceFilter
from spanledger.store.duckdb import DuckDBStore
from spanledger.traces import PricedSpan, Trace
from spanledger.usage import Usage

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    opened = DuckDBStore(tmp_path / "ledger.duckdb")
    yield opened
    opened.close()


def sid(n: int) -> str:
    return f"{0x5EED000000000000 + n:016x}"


def priced(
    n: int,
    *,
    trace: str = TRACE,
    parent: int | None = None,
    femto: int = 0,
    attributes: dict[str, Any] | None = None,
    start_ms: int = 0,
    **record: Any,
) -> PricedSpan:
    """Span `n`; with `femto`, an LLM call whose input cost is exactly that amount."""
    span = SpanRecord(
        trace_id=trace,
        span_id=sid(n),
        parent_span_id=sid(parent) if parent is not None else "",
        name=record.pop("name", f"span {n}"),
        start_ns=T0 + start_ms * 1_000_000,
        end_ns=T0 + (start_ms + 1) * 1_000_000,
        attributes=attributes or {},
        resource={"service.name": "store-tests"},
        **record,
    )
    if femto:
        usage = Usage(input_uncached=1, source="otel_genai")
        cost = Cost("priced", input=femto, cache_status="miss", model="m", source="test")
        return PricedSpan(span, usage, cost, "p", "m")
    return PricedSpan(span, Usage(), Cost(None), None, None)


def test_stored_span_ids_name_the_stored_spans_of_the_given_traces_only(
    store: DuckDBStore,
) -> None:
    """The pipeline asks this before storing a span of a finalized trace, so a copy sent
    again later is not stored twice."""
    other = "0af7651916cd43dd8448eb211c80319c"
    assert store.append([priced(1), priced(2, femto=10)]) == 2
    assert store.append([priced(3, trace=other)]) == 1
    assert store.stored_span_ids([TRACE]) == {(TRACE, sid(1)), (TRACE, sid(2))}
    assert store.stored_span_ids([TRACE, other]) == {
        (TRACE, sid(1)),
        (TRACE, sid(2)),
        (other, sid(3)),
    }
    assert store.stored_span_ids(["f" * 32, "not-hex"]) == set()
    assert store.stored_span_ids([]) == set()
    assert store.totals() == {"spans": 3, "traces": 2, "cost": Decimal(10)}


def test_a_ledger_keyed_by_an_earlier_version_keeps_the_first_copy(tmp_path: Path) -> None:
    """Ledgers written by 0.1.0 have a primary key on the span; appends into them still
    skip a span already stored instead of failing the batch."""
    import duckdb

    from spanledger.store.duckdb import SCHEMA

    path = tmp_path / "old.duckdb"
    keyed = SCHEMA.replace(
        "ingested_at TIMESTAMP DEFAULT current_timestamp\n",
        "ingested_at TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (th, tk, sk)\n",
    )
    assert keyed != SCHEMA
    with duckdb.connect(str(path)) as db:
        db.execute(keyed)
    store = DuckDBStore(path)
    try:
        assert store.append([priced(1, femto=5, name="first")]) == 1
        assert store.append([priced(1, femto=999, name="second"), priced(2)]) == 1
        rows = store.trace_spans(TRACE)
        assert [(row["name"], row["cost"]) for row in rows] == [
            ("first", Decimal(5)),
            ("span 2", Decimal(0)),
        ]
    finally:
        store.close()


def test_sums_of_many_tiny_costs_are_exact(tmp_path: Path) -> None:
    """20,000 spans of 1 femto-$ each, plus one of 10^30 femto-$ ($10^15): a float sum
    would lose the tiny ones; DECIMAL(38,0) keeps every one.
    total = 10^30 + 20,000 femto-$ = $1,000,000,000,000,000.00000000002"""
    db = tmp_path / "ledger.duckdb"
    store = DuckDBStore(db)
    tiny = [priced(n, trace=f"{n + 1:032x}", femto=1) for n in range(20_000)]
    huge = priced(99_999, trace=f"{99_999:032x}", femto=10**30)
    for start in range(0, len(tiny), 5_000):
        assert store.append(tiny[start : start + 5_000]) == 5_000
    assert store.append([huge]) == 1
    assert float(10**30) + 20_000 == float(10**30)  # what a float would do

    (everything,) = store.costs([], TraceFilter())
    assert everything["cost"] == Decimal(10**30 + 20_000)
    assert everything["calls"] == 20_001
    assert store.totals()["cost"] == Decimal(10**30 + 20_000)
    assert usd_str(10**30 + 20_000) == "1000000000000000.00000000002"
    store.close()

    with running(tmp_path) as server, httpx.Client(timeout=30) as client:
        answer = client.get(f"{server.http_url}/api/costs", params={"group_by": "model"}).json()
        assert answer["rows"][0]["cost"] == "1000000000000000.00000000002"
        assert answer["totals"]["cost"] == "1000000000000000.00000000002"
        answer = client.get(f"{server.http_url}/api/costs", params={"min_cost": "0"}).json()
        assert answer["rows"][0]["cost"] == "1000000000000000.00000000002"


ATTRIBUTES: dict[str, Any] = {
    "gen_ai.request.model": "m",
    "str": "text ✓ <b>",
    "int": -(2**63),
    "float": 0.1,
    "bool": True,
    "tuple": ("a", "b"),
    "ints": (1, 2, 3),
    "nested": {"k": {"list": (1, 2.5), "s": "x"}},
    "nan": float("nan"),
    "inf": float("inf"),
    "minus_inf": float("-inf"),
    "empty": None,
}


def test_load_trace_round_trips_a_priced_span(store: DuckDBStore) -> None:
    record = SpanRecord(
        trace_id=TRACE,
        span_id=sid(1),
        parent_span_id=sid(0),
        name="chat m",
        start_ns=T0 + 123_456_789,  # nanosecond precision survives
        end_ns=T0 + 987_654_321,
        status_code=2,
        status_message="rate limited",
        kind=3,
        attributes=ATTRIBUTES,
        resource={"service.name": "svc", "host.cores": 8},
        scope="tests.scope",
    )
    usage = Usage(
        input_uncached=100, cache_read=40, cache_write=30, cache_write_1h=20, output=50,
        reasoning=10, source="otel_genai", response_cached=False,
    )  # fmt: skip
    cost = Cost(
        "priced", input=1, cache_read=2, cache_write=3, output=4, saved_by_cache=5,
        reported=6, cache_status="partial", model="m-2026", source="sheet-v1",
    )  # fmt: skip
    original = PricedSpan(record, usage, cost, "prov", "m")
    invalid = PricedSpan(
        SpanRecord(TRACE, sid(2), sid(0), "bad", T0, T0, attributes={"x": 1}),
        Usage(source="otel_genai", invalid="input is -1"),
        Cost("invalid_usage", reported=None, cache_status="none", model="m", reason="input is -1"),
        None,
        "m",
    )
    tool = PricedSpan(
        SpanRecord(TRACE, sid(3), sid(0), "tool", T0, T0), Usage(), Cost(None), None, None
    )
    assert store.append([original, invalid, tool]) == 3

    loaded = {span.span_id: span for span in store.load_trace(TRACE)}
    assert set(loaded) == {sid(1), sid(2), sid(3)}
    back = loaded[sid(1)]
    assert back.usage == usage
    assert back.cost == cost
    assert (back.provider, back.model) == ("prov", "m")
    for name in ("trace_id", "span_id", "parent_span_id", "name", "start_ns", "end_ns",
                 "status_code", "status_message", "kind", "scope"):  # fmt: skip
        assert getattr(back.record, name) == getattr(record, name), name
    assert back.record.resource == {"service.name": "svc", "host.cores": 8}
    # Attributes come back through JSON: sequences as lists, non-finite floats as text.
    attrs = dict(back.record.attributes)
    assert (attrs["nan"], attrs["inf"], attrs["minus_inf"]) == ("nan", "inf", "-inf")
    assert attrs["tuple"] == ["a", "b"] and attrs["ints"] == [1, 2, 3]
    assert attrs["nested"] == {"k": {"list": [1, 2.5], "s": "x"}}
    assert {k: attrs[k] for k in ("str", "int", "float", "bool", "empty")} == {
        "str": "text ✓ <b>", "int": -(2**63), "float": 0.1, "bool": True, "empty": None,
    }  # fmt: skip
    assert math.isnan(ATTRIBUTES["nan"])  # the caller's mapping is untouched

    assert loaded[sid(2)].usage == invalid.usage
    assert loaded[sid(2)].cost == invalid.cost
    assert loaded[sid(3)].cost == Cost(None)
    assert loaded[sid(3)].usage == Usage()
    assert store.load_trace("0" * 31 + "1") == []


def test_update_derived_and_save_traces(store: DuckDBStore) -> None:
    """root (user u-7) -> agent -> two calls of 100 and 250 femto-$; rollups 350 / 350."""
    spans = [
        priced(0, name="root", attributes={"user.id": "u-7", "team": "ml"}),
        priced(1, parent=0, name="invoke_agent a", start_ms=1,
               attributes={"gen_ai.agent.name": "a"}),
        priced(2, parent=1, femto=100, start_ms=2),
        priced(3, parent=1, femto=250, start_ms=3),
    ]  # fmt: skip
    assert store.append(spans) == 4
    assert store.finalized_among([TRACE]) == set()
    assert store.list_traces(TraceFilter()) == []
    rows = {row["span_id"]: row for row in store.trace_spans(TRACE)}
    assert rows[sid(2)]["user_id"] is None and rows[sid(2)]["finalized"] is False

    trace = Trace(TRACE)
    for span in spans:
        trace.add(span)
    trace.assemble()
    store.update_derived(list(trace.spans.values()))
    store.save_traces([trace_summary(trace)])

    rows = {row["span_id"]: row for row in store.trace_spans(TRACE)}
    assert [rows[sid(n)]["rollup"] for n in range(4)] == [350, 350, 100, 250]
    assert [rows[sid(n)]["depth"] for n in range(4)] == [0, 1, 2, 2]
    assert {rows[sid(n)]["user_id"] for n in range(4)} == {"u-7"}
    assert {rows[sid(n)]["department"] for n in range(4)} == {"ml"}
    assert rows[sid(2)]["agent"] == "a" and rows[sid(2)]["agent_path"] == "a"
    assert all(row["finalized"] for row in rows.values())
    assert store.finalized_among([TRACE, "f" * 32]) == {TRACE}

    (summary,) = store.list_traces(TraceFilter())
    assert (summary["trace_id"], summary["cost"], summary["spans"]) == (TRACE, 350, 4)
    assert (summary["user_id"], summary["root_name"], summary["agents"]) == ("u-7", "root", ["a"])
    assert summary["start_time"] == dt.datetime(2026, 11, 2, 9, 0)
    assert store.trace_summary(TRACE) == summary
    assert store.costs(["user"], TraceFilter())[0]["cost"] == 350

    # a late call: saving the summary again replaces the row, it does not add one
    late = priced(4, parent=0, femto=1000, start_ms=5)
    assert store.append([late]) == 1
    trace.add(late)
    trace.assemble()
    store.update_derived(list(trace.spans.values()))
    store.save_traces([trace_summary(trace)])
    (summary,) = store.list_traces(TraceFilter())
    assert (summary["cost"], summary["spans"]) == (1350, 5)
    assert {row["span_id"]: row["rollup"] for row in store.trace_spans(TRACE)}[sid(0)] == 1350


def test_the_file_reopens_with_the_data_after_close(tmp_path: Path) -> None:
    db = tmp_path / "ledger.duckdb"
    store = DuckDBStore(db)
    spans = [priced(0, name="root"), priced(1, parent=0, femto=42, start_ms=1)]
    assert store.append(spans) == 2
    trace = Trace(TRACE)
    for span in spans:
        trace.add(span)
    trace.assemble()
    store.update_derived(list(trace.spans.values()))
    store.save_traces([trace_summary(trace)])
    store.close()

    reopened = DuckDBStore(db)
    try:
        assert reopened.totals() == {"spans": 2, "traces": 1, "cost": Decimal(42)}
        # still known across restarts: the pipeline will not store these again
        assert reopened.stored_span_ids([TRACE]) == {(TRACE, sid(0)), (TRACE, sid(1))}
        assert [s.span_id for s in reopened.load_trace(TRACE)] == [sid(0), sid(1)]
        assert reopened.trace_summary(TRACE)["cost"] == 42  # type: ignore[index]
        assert reopened.finalized_among([TRACE]) == {TRACE}
    finally:
        reopened.close()


def test_filters_and_grouping(store: DuckDBStore) -> None:
    day = 24 * 3600 * 1000
    spans = [
        priced(0, trace="1" * 32, femto=5, attributes={"user.id": "a"}),
        priced(1, trace="2" * 32, femto=7, attributes={"user.id": "b"}, start_ms=day),
    ]
    store.append(spans)
    for span in spans:
        trace = Trace(span.record.trace_id)
        trace.add(span)
        trace.assemble()
        store.update_derived(list(trace.spans.values()))
        store.save_traces([trace_summary(trace)])
    rows = store.costs(["day", "user"], TraceFilter())
    assert [(r["day"], r["user"], r["cost"]) for r in rows] == [
        ("2026-11-03", "b", 7),
        ("2026-11-02", "a", 5),
    ]
    second_day = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
    assert [r["cost"] for r in store.costs([], TraceFilter(start=second_day))] == [7]
    assert [r["cost"] for r in store.costs([], TraceFilter(end=second_day))] == [5]  # exclusive
    assert [t["user_id"] for t in store.list_traces(TraceFilter(min_cost_femto=6))] == ["b"]
    assert [t["user_id"] for t in store.list_traces(TraceFilter(limit=1))] == ["b"]
    assert [t["user_id"] for t in store.list_traces(TraceFilter(dimensions={"user": "a"}))] == ["a"]
    with pytest.raises(ValueError, match="cannot group by colour; choose from user"):
        store.costs(["colour"], TraceFilter())


def test_different_traces_sharing_the_low_64_bits_of_their_id_are_distinct(
    store: DuckDBStore,
) -> None:
    first = priced(1, trace="1111111111111111" + "abcdef0123456789", femto=5)
    second = priced(1, trace="2222222222222222" + "abcdef0123456789", femto=5)
    assert store.append([first]) == 1
    assert store.append([second]) == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(10**37), 10**37), min_size=1, max_size=20))
def test_dollar_strings_made_in_sql_are_the_ones_python_makes(amounts: list[int]) -> None:
    """`costs(usd=True)` formats money inside DuckDB; it must equal `usd_str` exactly
    (0 -> "0", 240e9 -> "0.00024", 10^15 -> "1", negative amounts keep their sign)."""
    import duckdb

    from spanledger.store.duckdb import _usd_sql

    amounts += [0, 1, 240 * 10**9, 10**15, -(10**15), 10**30 + 20_000]
    with duckdb.connect() as db:
        amounts_table = pa.table({"amount": pa.array(amounts, pa.decimal128(38, 0))})  # noqa: F841
        got = [
            row[0]
            for row in db.execute(f"SELECT {_usd_sql('amount')} FROM amounts_table").fetchall()
        ]
    assert got == [usd_str(amount) for amount in amounts]


def test_memory_limit_bounds_duckdb_and_a_bad_one_is_refused_at_start(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from spanledger.server.config import ServeConfig

    store = DuckDBStore(tmp_path / "ledger.duckdb", memory_limit="256MB")
    try:
        (limit,) = store._read().execute("SELECT current_setting('memory_limit')").fetchone()
        assert limit == "244.1 MiB"  # 256 * 10^6 bytes
    finally:
        store.close()
    assert ServeConfig.model_validate({"db_memory_limit": "2GB"}).db_memory_limit == "2GB"
    with pytest.raises(ValidationError, match="db_memory_limit"):
        ServeConfig.model_validate({"db_memory_limit": "lots"})


def test_the_checkpoint_threshold_reaches_duckdb(tmp_path: Path) -> None:
    # 256 MB by default (DuckDB's own 16 MB checkpoint doubled the insert cost), or as set.
    path = tmp_path / "ledger.duckdb"
    for open_store, expected in (
        (lambda: DuckDBStore(path), "244.1 MiB"),
        (lambda: DuckDBStore(path, checkpoint_threshold="1GB"), "953.6 MiB"),
    ):
        store = open_store()
        setting = store._db.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
        store.close()
        assert setting == (expected,)
