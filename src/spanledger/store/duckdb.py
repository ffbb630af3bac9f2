"""DuckDBStore: the embedded default — one file, one row per span, exact money.

Money is stored as DECIMAL(38,0) femto-dollars (10^-15 USD), so sums are exact in SQL and
become decimal strings only at the API. A span is identified by (trace id, span id), held
as three UBIGINT key columns (`th`, `tk`, `sk`). There is no primary-key index: it cost
more than half of every insert and grew with the ledger. The pipeline passes each span once
(it knows the spans of open traces, and asks `stored_span_ids` about finalized ones).
Finalization updates only rows that are `NOT finalized`, which DuckDB's zone maps find in
the newest row groups without scanning the ledger.
"""

from __future__ import annotations

import array
import datetime as dt
import functools
import json
import math
import operator
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from spanledger import conventions as c
from spanledger.pricing import Cost
from spanledger.spans import SpanRecord
from spanledger.store import GROUPABLE, SPAN_FIELDS, SpanCursor, TraceFilter
from spanledger.traces import PricedSpan
from spanledger.usage import Usage

try:  # the compiled fast path of encoding (store/_columns.c), built by `pip install`
    from spanledger.store import _columns
except ImportError:  # pragma: no cover
    _columns = None  # type: ignore[assignment]

MONEY = pa.decimal128(38, 0)
# DuckDB's default (16 MB) checkpoints every few thousand spans, and each checkpoint
# rewrites the table's unfinished row group: measured over 245,760 inserted spans, 20-22
# CPU us per span with it, 11.7 at 256 MB, 9.5 at 1 GB. The price of a larger threshold is
# a longer WAL to replay after a crash (seconds at 256 MB) and the WAL's memory.
CHECKPOINT_THRESHOLD = "256MB"

SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    th UBIGINT NOT NULL, tk UBIGINT NOT NULL, sk UBIGINT NOT NULL,
    trace_id VARCHAR NOT NULL, span_id VARCHAR NOT NULL, parent_span_id VARCHAR NOT NULL,
    name VARCHAR, kind UTINYINT, scope VARCHAR,
    start_time TIMESTAMP_NS NOT NULL, end_time TIMESTAMP_NS,
    status_code UTINYINT, status_message VARCHAR,
    provider VARCHAR, model VARCHAR, operation VARCHAR, tool VARCHAR,
    input_uncached BIGINT, cache_read BIGINT, cache_write BIGINT, cache_write_1h BIGINT,
    output BIGINT, reasoning BIGINT, usage_source VARCHAR, response_cached BOOLEAN,
    price_status VARCHAR, price_model VARCHAR, price_source VARCHAR, price_reason VARCHAR,
    cache_status VARCHAR,
    cost_input DECIMAL(38,0), cost_cache_read DECIMAL(38,0), cost_cache_write DECIMAL(38,0),
    cost_output DECIMAL(38,0), cost DECIMAL(38,0), saved_by_cache DECIMAL(38,0),
    reported DECIMAL(38,0),
    user_id VARCHAR, department VARCHAR, tenant VARCHAR, agent VARCHAR, conversation VARCHAR,
    service VARCHAR,
    agent_path VARCHAR, rollup DECIMAL(38,0), depth INTEGER,
    orphan BOOLEAN, retry BOOLEAN, loop BOOLEAN, finalized BOOLEAN DEFAULT false,
    attributes VARCHAR, resource VARCHAR,  -- JSON text; json_extract() reads it
    ingested_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS traces (
    trace_id VARCHAR PRIMARY KEY,
    root_name VARCHAR, start_time TIMESTAMP_NS, end_time TIMESTAMP_NS,
    cost DECIMAL(38,0), retry_overhead DECIMAL(38,0), loop_cost DECIMAL(38,0),
    spans INTEGER, llm_calls INTEGER, unpriced INTEGER, invalid INTEGER, loops INTEGER,
    complete BOOLEAN,
    user_id VARCHAR, department VARCHAR, tenant VARCHAR, agent VARCHAR,
    conversation VARCHAR, service VARCHAR,
    models VARCHAR[], agents VARCHAR[],
    finalized_at TIMESTAMP DEFAULT current_timestamp
);
"""

# Dimension name -> column; `day`/`hour` are derived from start_time.
_COLUMN = {
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
    "day": "strftime(date_trunc('day', start_time), '%Y-%m-%d')",
    "hour": "strftime(date_trunc('hour', start_time), '%Y-%m-%dT%H:00Z')",
}
assert set(_COLUMN) == set(GROUPABLE)


_TRACE_SCHEMA = pa.schema(
    [
        ("trace_id", pa.string()),
        ("root_name", pa.string()),
        ("start_time", pa.timestamp("ns")),
        ("end_time", pa.timestamp("ns")),
        ("cost", MONEY),
        ("retry_overhead", MONEY),
        ("loop_cost", MONEY),
        *((name, pa.int32()) for name in ("spans", "llm_calls", "unpriced", "invalid", "loops")),
        ("complete", pa.bool_()),
        *(
            (name, pa.string())
            for name in ("user_id", "department", "tenant", "agent", "conversation", "service")
        ),
        ("models", pa.list_(pa.string())),
        ("agents", pa.list_(pa.string())),
    ]
)


def _keys(trace_id: str, span_id: str) -> tuple[int, int, int]:
    """(high, low 64 bits of the trace id, span id): the full key, as integers."""
    return int(trace_id[:16], 16), int(trace_id[16:], 16), int(span_id, 16)


def _femto_sql(amount: str) -> str:
    return f"coalesce({amount}, 0)::DECIMAL(38,0)"


def _usd_sql(amount: str) -> str:
    """SQL for femto-dollars as the exact dollar string `usd_str` writes ("0.00024", "12",
    "-3.5"): DuckDB formats 38,000 rows in a few ms, Python's Decimal in ~100 ms."""
    femto = f"coalesce({amount}, 0)::HUGEINT"
    digits = (
        f"format('{{}}.{{:015d}}', abs({femto}) // 1000000000000000, "
        f"(abs({femto}) % 1000000000000000)::BIGINT)"
    )
    sign = f"CASE WHEN {femto} < 0 THEN '-' ELSE '' END"
    return f"({sign} || rtrim(rtrim({digits}, '0'), '.'))"


def _low(trace_id: str) -> int:
    """The `tk` column: a filter on it reads one integer column instead of the ids."""
    try:
        return int(trace_id[16:], 16)
    except ValueError:
        return 0  # not a hex trace id: no stored span has it, whatever `tk` selects


def _json(value: Any) -> str:
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    try:
        text = orjson.dumps(value, default=str)
        # orjson writes NaN and Infinity as null: the careful path below keeps them as
        # strings. Any null (or the word in a value) takes it; it is rare in attributes.
        if b"null" not in text:
            return text.decode()
    except orjson.JSONEncodeError:  # lone surrogates, integers beyond 64 bits
        pass
    return json.dumps(_finite(value), default=str, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# The rows to update are joined to their `rowid` and updated in that (the table's) order:
# DuckDB applies an UPDATE in the order its join yields rows, and rows in trace order hit
# each vector of a row group many times. Measured on 614,400 spans finalized in rounds of
# ~30,000 before DuckDB's first checkpoint: 270-320 ms a round (1,045 ms at the
# checkpoint) in trace order, 100-115 ms in table order; 2.7 s in random order.
_UPDATE_DERIVED = """
    UPDATE spans SET user_id = d.user_id, department = d.department,
        tenant = d.tenant, agent = d.agent, conversation = d.conversation,
        service = d.service, agent_path = d.agent_path, rollup = d.rollup,
        depth = d.depth, orphan = d.orphan, retry = d.retry, loop = d.loop,
        finalized = true
    FROM (
        SELECT derived.*, s.rowid AS row_id FROM derived JOIN spans AS s
        ON s.th = derived.th AND s.tk = derived.tk AND s.sk = derived.sk {}
        ORDER BY row_id
    ) AS d
    WHERE spans.rowid = d.row_id
"""


class DuckDBStore:
    """`Store` on one DuckDB file. One writer connection; readers get their own cursor."""

    def __init__(
        self,
        path: str | Path = "spanledger.duckdb",
        *,
        read_only: bool = False,
        memory_limit: str | None = None,
        checkpoint_threshold: str = CHECKPOINT_THRESHOLD,
    ) -> None:
        """Open (and create) a ledger file; `read_only` for reports beside no writer;
        `memory_limit` ("2GB", "50%") bounds DuckDB's buffers (default: 80% of the RAM);
        `checkpoint_threshold`: the WAL size at which DuckDB writes it into the file."""
        self.path = str(path)
        config = {"memory_limit": memory_limit} if memory_limit else {}
        if not read_only:
            config["checkpoint_threshold"] = checkpoint_threshold
        self._db = duckdb.connect(self.path, read_only=read_only, config=config)
        if not read_only:
            self._db.execute(SCHEMA)
        # A ledger created by 0.1.0 keys `spans` with a primary key; keep inserting into it
        # the way it expects.
        keyed = self._db.execute(
            "SELECT count(*) FROM duckdb_constraints() "
            "WHERE table_name = 'spans' AND constraint_type = 'PRIMARY KEY'"
        ).fetchone()
        self._insert = "INSERT INTO spans BY NAME SELECT * FROM batch" + (
            " ON CONFLICT DO NOTHING" if keyed and keyed[0] else ""
        )
        self._write = threading.Lock()

    # -- writing ---------------------------------------------------------------------------
    def append(self, spans: Sequence[PricedSpan]) -> int:
        return self.write([self.encode(spans)]) if spans else 0

    def encode(self, spans: Sequence[PricedSpan]) -> pa.Table:
        """The spans as rows of the `spans` table (an Arrow table). Receivers call this on
        their own threads, so the writer only writes."""
        return _encode(spans)

    def write(self, batches: Sequence[pa.Table]) -> int:
        batches = [batch for batch in batches if batch.num_rows]
        if not batches:
            return 0
        # One INSERT for the whole group: DuckDB spends ~2 ms on any statement.
        batch = batches[0] if len(batches) == 1 else pa.concat_tables(batches)  # noqa: F841
        with self._write:
            # DuckDB answers an INSERT with the number of rows it inserted.
            inserted = self._db.execute(self._insert).fetchone()
            return int(inserted[0]) if inserted else 0

    def update_derived(self, spans: Sequence[PricedSpan]) -> None:
        if not spans:
            return
        columns = {
            **_key_columns([s.record.trace_id for s in spans], [s.record.span_id for s in spans]),
            **_derived(spans),
        }
        derived = pa.table(  # noqa: F841 (read by name in SQL)
            {name: _arrow(name, column) for name, column in columns.items()}
        )
        with self._write:
            # New spans are `NOT finalized`: in the newest row groups, which zone maps find
            # without reading the rest (3 ms instead of 200 ms at 10 million spans). Only a
            # trace reopened by a late span has older rows to update as well.
            updated = self._db.execute(_UPDATE_DERIVED.format("AND NOT s.finalized")).fetchone()
            if updated is None or updated[0] < len(spans):
                self._db.execute(_UPDATE_DERIVED.format(""))

    def save_traces(self, summaries: Sequence[dict[str, Any]]) -> None:
        """Insert or replace finalized traces' summary rows."""
        if not summaries:
            return
        rows = pa.Table.from_pylist(list(summaries), schema=_TRACE_SCHEMA)  # noqa: F841
        with self._write:
            self._db.execute("INSERT OR REPLACE INTO traces BY NAME SELECT * FROM rows")

    # -- reading ---------------------------------------------------------------------------
    def finalized_among(self, trace_ids: Sequence[str]) -> set[str]:
        """Which of these traces were finalized before. An IN list of constants is looked
        up in the primary-key index (3 ms for 200 ids among 500,000 traces; a join would
        scan the table)."""
        found: set[str] = set()
        ids = list(trace_ids)
        cursor = self._read()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = cursor.execute(
                f"SELECT trace_id FROM traces WHERE trace_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            found.update(row[0] for row in rows)
        return found

    def finalized_buckets(self, size: int) -> list[int]:
        """The bucket (low 64 bits of the trace id, mod `size`, a power of two) of every
        finalized trace, for the pipeline's `FinalizedFilter`: read from the one integer
        column `tk`, so 10 million spans take a few tens of ms."""
        rows = (
            self._read()
            .execute("SELECT DISTINCT tk & ? FROM spans WHERE finalized", [size - 1])
            .fetchall()
        )
        return [row[0] for row in rows]

    def stored_span_ids(self, trace_ids: Sequence[str]) -> set[tuple[str, str]]:
        """(trace id, span id) of every stored span of these traces (for late spans)."""
        if not trace_ids:
            return set()
        low = [_low(trace_id) for trace_id in trace_ids]
        rows = (
            self._read()
            .execute(
                "SELECT trace_id, span_id FROM spans WHERE tk = ANY(?) AND trace_id = ANY(?)",
                [low, list(trace_ids)],
            )
            .fetchall()
        )
        return {(trace_id, span_id) for trace_id, span_id in rows}

    def unfinalized_traces(self) -> list[str]:
        """Traces with stored spans that were never finalized (the last run ended first)."""
        rows = self._read().execute(
            "SELECT DISTINCT trace_id FROM spans WHERE NOT finalized ORDER BY trace_id"
        )
        return [row[0] for row in rows.fetchall()]

    def _read(self) -> duckdb.DuckDBPyConnection:
        return self._db.cursor()

    def load_trace(self, trace_id: str) -> list[PricedSpan]:
        rows = (
            self._read()
            .execute(
                f"SELECT {', '.join(_LOAD_FIELDS)} FROM spans WHERE tk = ? AND trace_id = ? "
                "ORDER BY start_time, span_id",
                [_low(trace_id), trace_id],
            )
            .fetchall()
        )
        return [_priced_from_row(dict(zip(_LOAD_FIELDS, row, strict=True))) for row in rows]

    def trace_spans(self, trace_id: str) -> list[dict[str, Any]]:
        cursor = self._read().execute(
            "SELECT * EXCLUDE (th, tk, sk) FROM spans WHERE tk = ? AND trace_id = ? "
            "ORDER BY start_time, span_id",
            [_low(trace_id), trace_id],
        )
        return _dicts(cursor)

    def trace_summary(self, trace_id: str) -> dict[str, Any] | None:
        rows = _dicts(self._read().execute("SELECT * FROM traces WHERE trace_id = ?", [trace_id]))
        return rows[0] if rows else None

    def list_traces(self, query: TraceFilter) -> list[dict[str, Any]]:
        where, params = _time_filter(query)
        for name, value in query.dimensions.items():
            if name == "agent":
                where.append("list_contains(agents, ?)")
            else:
                where.append(f"{_COLUMN[name]} = ?")
            params.append(value)
        if query.model:
            where.append("list_contains(models, ?)")
            params.append(query.model)
        if query.min_cost_femto is not None:
            where.append("cost >= ?")
            params.append(query.min_cost_femto)
        sql = "SELECT * FROM traces"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_time DESC, trace_id LIMIT ?"
        return _dicts(self._read().execute(sql, [*params, query.limit]))

    def costs(
        self, group_by: Sequence[str], query: TraceFilter, *, usd: bool = False
    ) -> list[dict[str, Any]]:
        unknown = [name for name in group_by if name not in _COLUMN]
        if unknown:
            raise ValueError(
                f"cannot group by {', '.join(unknown)}; choose from {', '.join(GROUPABLE)}"
            )
        where, params = _time_filter(query)
        where.append("price_status IS NOT NULL")
        for name, value in query.dimensions.items():
            where.append(f"{_COLUMN[name]} = ?")
            params.append(value)
        if query.model:
            where.append("model = ?")
            params.append(query.model)
        keys = [f"{_COLUMN[name]} AS {name}" for name in group_by]
        money = _usd_sql if usd else _femto_sql
        sql = f"""
            SELECT {", ".join([*keys, ""])}
                {money("sum(cost)")} AS cost,
                {money("sum(saved_by_cache)")} AS saved_by_cache,
                {money("sum(CASE WHEN retry THEN rollup ELSE 0 END)")} AS retry_overhead,
                count(*) AS calls,
                count(*) FILTER (WHERE price_status = 'unpriced') AS unpriced_calls,
                coalesce(sum(input_uncached::HUGEINT + cache_read
                    + cache_write + cache_write_1h), 0) AS input_tokens,
                coalesce(sum(cache_read), 0) AS cache_read_tokens,
                coalesce(sum(output), 0) AS output_tokens
            FROM spans WHERE {" AND ".join(where)}
            {"GROUP BY ALL" if group_by else ""}
            ORDER BY sum(cost) DESC NULLS LAST
        """
        return _dicts(self._read().execute(sql, params))

    def unpriced(self, query: TraceFilter) -> list[dict[str, Any]]:
        where, params = _time_filter(query)
        sql = f"""
            SELECT coalesce(model, '(no model)') AS model, provider, count(*) AS spans,
                sum(input_uncached::HUGEINT + cache_read
                    + cache_write + cache_write_1h) AS input_tokens,
                sum(output) AS output_tokens, any_value(price_reason) AS reason,
                max(start_time) AS last_seen
            FROM spans WHERE price_status IN ('unpriced', 'reported_only')
            {"AND " + " AND ".join(where) if where else ""}
            GROUP BY ALL ORDER BY spans DESC
        """
        return _dicts(self._read().execute(sql, params))

    def llm_spans(
        self, query: TraceFilter, after: SpanCursor | None = None, limit: int = 10_000
    ) -> tuple[list[dict[str, Any]], SpanCursor | None]:
        where, params = _time_filter(query)
        where.append("price_status IS NOT NULL")
        if after is not None:  # keyset paging: no OFFSET scan, stable under inserts
            where.append("(start_time, trace_id, span_id) > (make_timestamp_ns(?), ?, ?)")
            params.extend(after)
        cursor = self._read().execute(
            f"SELECT {', '.join(SPAN_FIELDS)}, epoch_ns(start_time) AS _start_ns "
            f"FROM spans WHERE {' AND '.join(where)} "
            "ORDER BY start_time, trace_id, span_id LIMIT ?",
            [*params, limit],
        )
        rows = _dicts(cursor)
        if len(rows) < limit or not rows:
            following = None
        else:
            last = rows[-1]
            following = (int(last["_start_ns"]), last["trace_id"], last["span_id"])
        for row in rows:
            del row["_start_ns"]
        return rows, following

    def llm_span_count(self, query: TraceFilter) -> int:
        where, params = _time_filter(query)
        where.append("price_status IS NOT NULL")
        row = (
            self._read()
            .execute(f"SELECT count(*) FROM spans WHERE {' AND '.join(where)}", params)
            .fetchone()
        )
        return int(row[0]) if row else 0

    def totals(self) -> dict[str, Any]:
        # Traces: the finalized ones are counted in `traces` (a row each), the open ones
        # from their `NOT finalized` spans (the newest row groups): no DISTINCT over every
        # span id of the ledger.
        row = _dicts(
            self._read().execute(
                """SELECT count(*) AS spans,
                       (SELECT count(*) FROM traces)
                       + (SELECT count(DISTINCT trace_id) FROM spans
                          WHERE NOT finalized AND trace_id NOT IN (SELECT trace_id FROM traces))
                       AS traces,
                       coalesce(sum(cost), 0)::DECIMAL(38,0) AS cost
                   FROM spans"""
            )
        )
        return row[0]

    def close(self) -> None:
        with self._write:
            self._db.close()

    # -- dashboard queries (read-only; filters as in `costs`, plus `provider`) -------------
    def spend_summary(self, query: TraceFilter) -> dict[str, Any]:
        """Headline numbers over the LLM calls a filter selects: spend, tokens, cache hits and
        savings, retry overhead, the cost inside runaway loops, unpriced calls."""
        where, params = _span_filter(query)
        sql = f"""
            SELECT coalesce(sum(cost), 0)::DECIMAL(38,0) AS cost,
                coalesce(sum(saved_by_cache), 0)::DECIMAL(38,0) AS saved_by_cache,
                coalesce(sum(CASE WHEN retry THEN rollup ELSE 0 END), 0)::DECIMAL(38,0)
                    AS retry_overhead,
                count(*) FILTER (WHERE retry) AS retries,
                count(*) AS calls,
                count(*) FILTER (WHERE price_status IN ('unpriced', 'reported_only'))
                    AS unpriced_calls,
                count(*) FILTER (WHERE cache_status IN ('hit', 'partial')) AS cache_hit_calls,
                coalesce(sum(input_uncached::HUGEINT + cache_read
                    + cache_write + cache_write_1h), 0)
                    AS input_tokens,
                coalesce(sum(cache_read), 0) AS cache_read_tokens,
                coalesce(sum(output), 0) AS output_tokens,
                count(DISTINCT trace_id) AS traces,
                min(start_time) AS first_seen, max(start_time) AS last_seen
            FROM spans WHERE {" AND ".join(where)}
        """
        summary = _dicts(self._read().execute(sql, params))[0]
        summary.update(self._loop_totals(query))
        return summary

    def _loop_totals(self, query: TraceFilter) -> dict[str, Any]:
        """Cost of every selected span inside a looping subtree (each once), and how many
        traces have a loop. Loop members are flagged; their descendants are found here."""
        where, params = _span_filter(query, llm_only=False)
        sql = f"""
            WITH RECURSIVE looped(th, tk, sk, trace_id, span_id) AS (
                SELECT th, tk, sk, trace_id, span_id FROM spans WHERE loop
                UNION
                SELECT s.th, s.tk, s.sk, s.trace_id, s.span_id
                FROM spans AS s JOIN looped AS l
                    ON s.tk = l.tk AND s.trace_id = l.trace_id AND s.parent_span_id = l.span_id
            )
            SELECT coalesce(sum(cost), 0)::DECIMAL(38,0) AS loop_cost,
                count(DISTINCT trace_id) FILTER (WHERE loop) AS loop_traces,
                count(*) FILTER (WHERE loop) AS loop_spans
            FROM spans SEMI JOIN looped USING (th, tk, sk)
            {"WHERE " + " AND ".join(where) if where else ""}
        """
        return _dicts(self._read().execute(sql, params))[0]

    def spend_timeseries(self, step: str, query: TraceFilter) -> list[dict[str, Any]]:
        """Spend per `minute`, `hour` or `day` (UTC), oldest first; buckets without LLM
        calls are left out (the caller fills the gaps it wants to show)."""
        if step not in ("minute", "hour", "day"):
            raise ValueError(f"step {step!r}: choose minute, hour or day")
        where, params = _span_filter(query)
        sql = f"""
            SELECT date_trunc('{step}', start_time)::TIMESTAMP AS bucket,
                sum(cost)::DECIMAL(38,0) AS cost,
                count(*) AS calls,
                count(*) FILTER (WHERE price_status IN ('unpriced', 'reported_only'))
                    AS unpriced_calls,
                sum(input_uncached::HUGEINT + cache_read
                    + cache_write + cache_write_1h + output) AS tokens
            FROM spans WHERE {" AND ".join(where)}
            GROUP BY ALL ORDER BY bucket
        """
        return _dicts(self._read().execute(sql, params))

    def top_traces(self, query: TraceFilter) -> list[dict[str, Any]]:
        """Finalized traces, most expensive first: those that started in the time range and
        have at least one span matching every dimension filter."""
        where, params = [], []
        if query.start is not None:
            where.append("start_time >= ?")
            params.append(query.start.astimezone(dt.UTC).replace(tzinfo=None))
        if query.end is not None:
            where.append("start_time < ?")
            params.append(query.end.astimezone(dt.UTC).replace(tzinfo=None))
        if query.dimensions or query.model:
            inner, inner_params = _span_filter(
                TraceFilter(dimensions=query.dimensions, model=query.model), llm_only=False
            )
            where.append(f"trace_id IN (SELECT trace_id FROM spans WHERE {' AND '.join(inner)})")
            params.extend(inner_params)
        if query.min_cost_femto is not None:
            where.append("cost >= ?")
            params.append(query.min_cost_femto)
        sql = "SELECT * FROM traces"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY cost DESC, start_time DESC, trace_id LIMIT ?"
        return _dicts(self._read().execute(sql, [*params, query.limit]))

    def dimension_values(
        self, names: Sequence[str], query: TraceFilter, limit: int = 500
    ) -> dict[str, list[dict[str, Any]]]:
        """For each dimension, the values its LLM calls carry in the time range, with their
        spend, most expensive first (the dashboard's filter choices)."""
        unknown = [name for name in names if name not in _FILTERABLE]
        if unknown:
            raise ValueError(f"cannot list {', '.join(unknown)}; choose from {_FILTERABLE}")
        where, params = _time_filter(query)
        where.append("price_status IS NOT NULL")
        values: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            column = _COLUMN[name]
            sql = f"""
                SELECT {column} AS value, sum(cost)::DECIMAL(38,0) AS cost, count(*) AS calls
                FROM spans WHERE {" AND ".join([*where, f"{column} IS NOT NULL"])}
                GROUP BY ALL ORDER BY cost DESC, value LIMIT ?
            """
            values[name] = _dicts(self._read().execute(sql, [*params, limit]))
        return values

    def unpriced_models(self, query: TraceFilter) -> list[dict[str, Any]]:
        """Like `unpriced`, with every dimension filter applied: models SpanLedger could not
        price, with their token volume (never a silent $0)."""
        where, params = _span_filter(query, llm_only=False)
        where.append("price_status IN ('unpriced', 'reported_only')")
        sql = f"""
            SELECT coalesce(model, '(no model)') AS model, provider, price_status,
                count(*) AS spans,
                sum(input_uncached::HUGEINT + cache_read
                    + cache_write + cache_write_1h) AS input_tokens,
                sum(output) AS output_tokens,
                sum(reported)::DECIMAL(38,0) AS reported,
                any_value(price_reason) AS reason, max(start_time) AS last_seen
            FROM spans WHERE {" AND ".join(where)}
            GROUP BY ALL ORDER BY input_tokens + output_tokens DESC, model
        """
        return _dicts(self._read().execute(sql, params))

    # -- reconciliation and repricing (reports/reconcile.py, reports/reprice.py) -----------
    _FAILED_SQL = (
        "(coalesce({t}status_code, 0) = 2 OR json_exists({t}attributes, '$.\"error.type\"'))"
    )
    # The HTTP status a failed attempt got, if any (an `error.type` such as "429" included).
    _REFUSED_SQL = """coalesce(TRY_CAST(coalesce(
        json_extract_string(f.attributes, '$."http.response.status_code"'),
        json_extract_string(f.attributes, '$."http.status_code"'),
        json_extract_string(f.attributes, '$."error.type"')) AS INTEGER), 0) >= 400"""
    _PRICE_TEXT = (
        ("price_status", "status"),
        ("price_model", "model"),
        ("price_source", "source"),
        ("price_reason", "reason"),
        ("cache_status", "cache_status"),
    )
    _PRICE_HISTORY = """
        CREATE TABLE IF NOT EXISTS price_history (
            trace_id VARCHAR NOT NULL, span_id VARCHAR NOT NULL,
            replaced_at TIMESTAMP NOT NULL, run VARCHAR NOT NULL,
            price_status VARCHAR, price_model VARCHAR, price_source VARCHAR,
            price_reason VARCHAR, cache_status VARCHAR,
            cost_input DECIMAL(38,0), cost_cache_read DECIMAL(38,0),
            cost_cache_write DECIMAL(38,0), cost_output DECIMAL(38,0), cost DECIMAL(38,0),
            saved_by_cache DECIMAL(38,0),
            new_price_source VARCHAR, new_cost DECIMAL(38,0)
        )
    """

    @staticmethod
    def _first_of(keys: Sequence[str], table: str = "") -> tuple[str, list[str]]:
        """SQL for the first of these attribute keys a span, then its resource, carries."""
        for key in keys:
            if '"' in key or "\\" in key:
                raise ValueError(f"attribute key {key!r}: quotes and backslashes not allowed")
        paths = [f'$."{key}"' for key in keys]
        terms = [
            f"json_extract_string({table}{column}, ?)"
            for column in ("attributes", "resource")
            for _ in paths
        ]
        return (f"coalesce({', '.join(terms)})" if terms else "NULL"), [*paths, *paths]

    def ledger_daily(
        self,
        query: TraceFilter,
        project_keys: Sequence[str] = (),
        api_key_keys: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """What a provider's bill is compared with: LLM calls started in the window per UTC
        day, provider, model, billing project and API key (the first of `project_keys` /
        `api_key_keys` the span, then its resource, carries), class and failure, with their
        tokens (`input_uncached`, `cache_read`, `cache_write` with 1-hour writes, `output`)
        and cost by kind.

        Classes: `priced`; `unpriced` (no price: `cost` is what the caller reported, if
        anything); `invalid` (impossible token counts); and `retry_estimate`: failed
        attempts that were retried (the trace assembler's `retry` flag) with no usage of
        their own and no refusal (no HTTP status of 400 or more), counted with the usage of
        the call that retried them (an application retry: the next similar call under the
        same parent) or that they belonged to (an SDK's HTTP attempt: the parent call),
        which is what the provider may have billed for them. Calls answered from a response
        cache reached no provider and are left out."""
        project, project_params = self._first_of(project_keys)
        api_key, api_key_params = self._first_of(api_key_keys)
        where, params = _time_filter(query)
        failed = self._FAILED_SQL.format(t="")
        sums = """count(*) AS calls,
            coalesce(sum(input_uncached), 0) AS input_uncached,
            coalesce(sum(cache_read), 0) AS cache_read,
            coalesce(sum(cache_write), 0) AS cache_write,
            coalesce(sum(output), 0) AS output"""
        sql = f"""
            WITH calls AS (
                SELECT strftime(start_time, '%Y-%m-%d') AS day, provider, model,
                    {project} AS project, {api_key} AS api_key,
                    CASE WHEN price_status = 'priced' THEN 'priced'
                         WHEN price_status = 'invalid_usage' THEN 'invalid'
                         ELSE 'unpriced' END AS class,
                    {failed} AS failed,
                    input_uncached, cache_read, cache_write + cache_write_1h AS cache_write,
                    output, cost_input, cost_cache_read, cost_cache_write, cost_output, cost
                FROM spans
                WHERE {" AND ".join(["price_status IS NOT NULL",
                                     "NOT coalesce(response_cached, false)", *where])}
            )
            SELECT day, provider, model, project, api_key, class, failed, {sums},
                coalesce(sum(cost_input), 0)::DECIMAL(38,0) AS cost_input,
                coalesce(sum(cost_cache_read), 0)::DECIMAL(38,0) AS cost_cache_read,
                coalesce(sum(cost_cache_write), 0)::DECIMAL(38,0) AS cost_cache_write,
                coalesce(sum(cost_output), 0)::DECIMAL(38,0) AS cost_output,
                coalesce(sum(cost), 0)::DECIMAL(38,0) AS cost
            FROM calls GROUP BY ALL ORDER BY ALL
        """  # fmt: skip
        rows = _dicts(self._read().execute(sql, [*project_params, *api_key_params, *params]))
        f_where = [term.replace("start_time", "f.start_time") for term in where]
        s_failed = self._FAILED_SQL.format(t="s.")
        requested = (
            "coalesce(json_extract_string({t}attributes, '$.\"gen_ai.request.model\"'), {t}model)"
        )
        taken = """f.start_time AS started, {t}provider AS provider, {t}model AS model,
            {t}attributes AS attributes, {t}resource AS resource,
            {t}input_uncached AS input_uncached, {t}cache_read AS cache_read,
            {t}cache_write + {t}cache_write_1h AS cache_write, {t}output AS output"""
        sql = f"""
            WITH failed AS (
                SELECT * FROM spans AS f
                WHERE {" AND ".join(["f.retry", f"NOT ({self._REFUSED_SQL})", *f_where])}
                  AND (f.price_status IS NULL OR f.usage_source = 'none')
            ),
            retried_by AS (
                SELECT {taken.format(t="s.")}
                FROM failed AS f JOIN spans AS s
                  ON s.th = f.th AND s.tk = f.tk AND s.parent_span_id = f.parent_span_id
                 AND s.span_id <> f.span_id AND s.start_time >= f.start_time
                WHERE f.price_status IS NOT NULL AND s.price_status IS NOT NULL
                  AND s.usage_source <> 'none' AND NOT {s_failed}
                  AND {requested.format(t="s.")}
                      IS NOT DISTINCT FROM {requested.format(t="f.")}
                QUALIFY row_number() OVER (
                    PARTITION BY f.trace_id, f.span_id ORDER BY s.start_time, s.span_id) = 1
            ),
            attempt_of AS (
                SELECT {taken.format(t="c.")}
                FROM failed AS f JOIN spans AS c
                  ON c.th = f.th AND c.tk = f.tk AND c.span_id = f.parent_span_id
                WHERE f.price_status IS NULL AND c.price_status IS NOT NULL
                  AND c.usage_source <> 'none'
            ),
            estimates AS (SELECT * FROM retried_by UNION ALL SELECT * FROM attempt_of)
            SELECT strftime(started, '%Y-%m-%d') AS day, provider, model,
                {project} AS project, {api_key} AS api_key,
                'retry_estimate' AS class, true AS failed, {sums},
                0::DECIMAL(38,0) AS cost_input, 0::DECIMAL(38,0) AS cost_cache_read,
                0::DECIMAL(38,0) AS cost_cache_write, 0::DECIMAL(38,0) AS cost_output,
                0::DECIMAL(38,0) AS cost
            FROM estimates GROUP BY ALL ORDER BY ALL
        """  # fmt: skip
        rows += _dicts(self._read().execute(sql, [*params, *project_params, *api_key_params]))
        return rows

    def llm_calls(self, query: TraceFilter) -> Iterator[dict[str, Any]]:
        """Every LLM call started in the window, oldest first, with what repricing needs:
        its usage, stored price and cost, the model it requested, whether it failed, and
        every dimension it is grouped by."""
        where, params = _time_filter(query)
        where.append("price_status IS NOT NULL")
        sql = f"""
            SELECT trace_id, span_id, epoch_ns(start_time) AS start_ns, start_time,
                provider, model,
                json_extract_string(attributes, '$."gen_ai.request.model"') AS request_model,
                {self._FAILED_SQL.format(t="")} AS failed,
                input_uncached, cache_read, cache_write, cache_write_1h, output, reasoning,
                usage_source, response_cached,
                price_status, price_model, price_source, price_reason, cache_status,
                cost_input, cost_cache_read, cost_cache_write, cost_output, cost,
                saved_by_cache, reported,
                user_id, department, tenant, agent, conversation, service, agent_path
            FROM spans WHERE {" AND ".join(where)}
            ORDER BY start_time, trace_id, span_id
        """
        cursor = self._read()
        try:
            cursor.execute(sql, params)
            names = [column[0] for column in cursor.description or ()]
            while batch := cursor.fetchmany(10_000):
                for row in batch:
                    yield dict(zip(names, row, strict=True))
        finally:
            cursor.close()

    def ensure_price_history(self) -> None:
        """Create `price_history` if missing: a span's replaced price, cost and source, the
        repricing run that replaced them and when (one row a span a run)."""
        with self._write:
            self._db.execute(self._PRICE_HISTORY)

    def apply_prices(self, changes: Sequence[tuple[str, str, Cost]], *, run: str) -> int:
        """Give spans new prices (`spanledger reprice --apply`), in one transaction: each
        span's old price, cost and source go to `price_history` with `run` and the time,
        the span takes the new ones, and what adds its cost up moves by the difference:
        rollups of it and its ancestors, its trace's cost, retry overhead, cost inside
        loops and unpriced count. Returns how many spans changed."""
        if not changes:
            return 0
        self.ensure_price_history()
        money = {
            name: pa.array([getattr(cost, attr) for _, _, cost in changes], MONEY)
            for name, attr in (
                ("cost_input", "input"), ("cost_cache_read", "cache_read"),
                ("cost_cache_write", "cache_write"), ("cost_output", "output"),
                ("cost", "total"), ("saved_by_cache", "saved_by_cache"),
            )
        }  # fmt: skip
        keys = [_keys(trace_id, span_id) for trace_id, span_id, _ in changes]
        changed = pa.table(  # noqa: F841 (read by name in SQL)
            {
                "th": pa.array([k[0] for k in keys], pa.uint64()),
                "tk": pa.array([k[1] for k in keys], pa.uint64()),
                "sk": pa.array([k[2] for k in keys], pa.uint64()),
                **{
                    name: pa.array([getattr(cost, attr) for _, _, cost in changes], pa.string())
                    for name, attr in self._PRICE_TEXT
                },
                **money,
            }
        )
        match = "s.th = c.th AND s.tk = c.tk AND s.sk = c.sk"
        with self._write:
            db = self._db
            db.execute("BEGIN TRANSACTION")
            try:
                db.execute(
                    f"""INSERT INTO price_history
                    SELECT s.trace_id, s.span_id, now()::TIMESTAMP, ?, s.price_status,
                        s.price_model, s.price_source, s.price_reason, s.cache_status,
                        s.cost_input, s.cost_cache_read, s.cost_cache_write, s.cost_output,
                        s.cost, s.saved_by_cache, c.price_source, c.cost
                    FROM spans AS s JOIN changed AS c ON {match}""",
                    [run],
                )
                deltas = db.execute(
                    f"""SELECT s.trace_id, s.span_id, c.cost - coalesce(s.cost, 0)
                    FROM spans AS s JOIN changed AS c ON {match}"""
                ).fetchall()
                db.execute(
                    f"""UPDATE spans AS s SET price_status = c.price_status,
                        price_model = c.price_model, price_source = c.price_source,
                        price_reason = c.price_reason, cache_status = c.cache_status,
                        cost_input = c.cost_input, cost_cache_read = c.cost_cache_read,
                        cost_cache_write = c.cost_cache_write, cost_output = c.cost_output,
                        cost = c.cost, saved_by_cache = c.saved_by_cache
                    FROM changed AS c WHERE {match}"""
                )
                self._move_rollups(db, {(t, s): int(d) for t, s, d in deltas if d})
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return len(deltas)

    @staticmethod
    def _move_rollups(db: duckdb.DuckDBPyConnection, deltas: dict[tuple[str, str], int]) -> None:
        """Move rollups and trace summaries by the change of some spans' own cost, the way
        `Trace.assemble` adds them up: a span's rollup holds its descendants' cost, a
        trace's cost its spans', its retry overhead its retried spans' rollups, its loop
        cost the cost of every span in a looping subtree."""
        if not deltas:
            return
        ids = pa.table({"trace_id": pa.array(sorted({t for t, _ in deltas}), pa.string())})  # noqa: F841
        tree: dict[str, dict[str, tuple[str, bool, bool, bool, bool]]] = {}
        for trace_id, span_id, parent, orphan, retry, loop, finalized in db.execute(
            """SELECT trace_id, span_id, parent_span_id, orphan, retry, loop, finalized
            FROM spans SEMI JOIN ids USING (trace_id)"""
        ).fetchall():
            tree.setdefault(trace_id, {})[span_id] = (
                parent,
                bool(orphan),
                bool(retry),
                bool(loop),
                bool(finalized),
            )
        rollup: dict[tuple[str, str], int] = {}
        summary: dict[str, list[int]] = {}  # trace -> [cost, retry overhead, loop cost]
        for (trace_id, span_id), delta in deltas.items():
            spans = tree.get(trace_id, {})
            totals = summary.setdefault(trace_id, [0, 0, 0])
            totals[0] += delta
            chain, node, seen = [], span_id, set()
            while node in spans and node not in seen:  # up to the root, or an orphan
                seen.add(node)
                chain.append(node)
                parent, orphan = spans[node][0], spans[node][1]
                if orphan or not parent:
                    break
                node = parent
            for member in chain:
                rollup[(trace_id, member)] = rollup.get((trace_id, member), 0) + delta
                if spans[member][2]:  # a retried attempt: its rollup is retry overhead
                    totals[1] += delta
            if any(spans[member][3] for member in chain):  # inside a looping subtree
                totals[2] += delta
        finalized = [
            (trace_id, span_id, delta)
            for (trace_id, span_id), delta in rollup.items()
            if tree[trace_id][span_id][4]  # unfinalized: rolled up when finalized
        ]
        moved = pa.table(  # noqa: F841 (read by name in SQL)
            {
                "trace_id": pa.array([t for t, _, _ in finalized], pa.string()),
                "span_id": pa.array([s for _, s, _ in finalized], pa.string()),
                "delta": pa.array([d for _, _, d in finalized], MONEY),
            }
        )
        db.execute(
            """UPDATE spans SET rollup = coalesce(rollup, 0) + m.delta FROM moved AS m
            WHERE spans.trace_id = m.trace_id AND spans.span_id = m.span_id"""
        )
        trace_moves = pa.table(  # noqa: F841 (read by name in SQL)
            {
                "trace_id": pa.array(list(summary), pa.string()),
                "cost": pa.array([v[0] for v in summary.values()], MONEY),
                "retry_overhead": pa.array([v[1] for v in summary.values()], MONEY),
                "loop_cost": pa.array([v[2] for v in summary.values()], MONEY),
            }
        )
        db.execute(
            """UPDATE traces SET cost = traces.cost + d.cost,
                retry_overhead = traces.retry_overhead + d.retry_overhead,
                loop_cost = traces.loop_cost + d.loop_cost,
                unpriced = (SELECT count(*) FROM spans
                    WHERE spans.trace_id = traces.trace_id AND price_status = 'unpriced')
            FROM trace_moves AS d WHERE traces.trace_id = d.trace_id"""
        )


def _time_filter(query: TraceFilter) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if query.start is not None:
        where.append("start_time >= ?")
        params.append(query.start.astimezone(dt.UTC).replace(tzinfo=None))
    if query.end is not None:
        where.append("start_time < ?")
        params.append(query.end.astimezone(dt.UTC).replace(tzinfo=None))
    return where, params


def _dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


_ROW_FIELDS = (
    "th", "tk", "sk", "trace_id", "span_id", "parent_span_id", "name", "kind", "scope",
    "start_time", "end_time", "status_code", "status_message",
    "provider", "model", "operation", "tool",
    "input_uncached", "cache_read", "cache_write", "cache_write_1h", "output", "reasoning",
    "usage_source", "response_cached",
    "price_status", "price_model", "price_source", "price_reason", "cache_status",
    "cost_input", "cost_cache_read", "cost_cache_write", "cost_output", "cost",
    "saved_by_cache", "reported",
    "user_id", "department", "tenant", "agent", "conversation", "service",
    "agent_path", "rollup", "depth", "orphan", "retry", "loop",
    "attributes", "resource",
)  # fmt: skip
_MONEY_FIELDS = (
    "cost_input", "cost_cache_read", "cost_cache_write", "cost_output", "cost",
    "saved_by_cache", "reported", "rollup",
)  # fmt: skip
_TEXT_FIELDS = (
    "user_id", "department", "tenant", "agent", "conversation", "service", "agent_path",
    "model", "provider", "operation", "tool", "price_status", "price_model", "price_source",
    "price_reason", "cache_status", "status_message", "trace_id", "span_id", "parent_span_id",
    "name", "scope", "usage_source", "attributes", "resource",
)  # fmt: skip
_USAGE_FIELDS = (
    "input_uncached", "cache_read", "cache_write", "cache_write_1h", "output", "reasoning",
)  # fmt: skip
_ARROW_TYPES: dict[str, pa.DataType] = {
    "th": pa.uint64(),
    "tk": pa.uint64(),
    "sk": pa.uint64(),
    "kind": pa.uint8(),
    "status_code": pa.uint8(),
    "start_time": pa.timestamp("ns"),
    "end_time": pa.timestamp("ns"),
    "depth": pa.int32(),
    **dict.fromkeys(_MONEY_FIELDS, MONEY),
    **dict.fromkeys(_TEXT_FIELDS, pa.string()),
    **dict.fromkeys(_USAGE_FIELDS, pa.int64()),
    **dict.fromkeys(("response_cached", "orphan", "retry", "loop"), pa.bool_()),
}


_SPANS_ARROW = pa.schema([(name, _ARROW_TYPES[name]) for name in _ROW_FIELDS])
_DIMENSIONS = ("user", "department", "tenant", "agent", "conversation", "service")
_INT = frozenset({int})


def _encode(spans: Sequence[PricedSpan]) -> pa.Table:
    """Column by column, no row tuples to transpose. This runs on a receiver thread holding
    the GIL, so it bounds ingest."""
    spans = spans if isinstance(spans, list) else list(spans)
    records = [span.record for span in spans]
    columns: dict[str, Any] = {
        **_key_columns([r.trace_id for r in records], [r.span_id for r in records]),
        **_plain_columns(spans),
        "cache_status": [
            cost.cache_status if cost.status is not None else None
            for cost in (span.cost for span in spans)
        ],
        **_derived(spans),
        "attributes": _attributes_json(records),
        "resource": _resources_json(records),
    }
    return pa.Table.from_arrays(
        [_arrow(name, columns[name]) for name in _ROW_FIELDS], schema=_SPANS_ARROW
    )


# The columns read straight off a PricedSpan: column -> (source, name, kind). Sources: 0
# the span, 1 its record, 2 its usage, 3 its cost, 4 a key of the record's attributes (a
# non-empty string there, else null). Kinds: "s" text or null, "e" text with "" as null,
# "b" uint8, "q" int64 or timestamp, "?" bool, "m" femto-dollars as DECIMAL(38,0).
_PLAIN: dict[str, tuple[int, str, str]] = {
    "trace_id": (1, "trace_id", "s"),
    "span_id": (1, "span_id", "s"),
    "parent_span_id": (1, "parent_span_id", "s"),
    "name": (1, "name", "s"),
    "kind": (1, "kind", "b"),
    "scope": (1, "scope", "s"),
    "start_time": (1, "start_ns", "q"),
    "end_time": (1, "end_ns", "q"),
    "status_code": (1, "status_code", "b"),
    "status_message": (1, "status_message", "e"),
    "provider": (0, "provider", "s"),
    "model": (0, "model", "s"),
    "operation": (4, c.GEN_AI_OPERATION_NAME, "s"),
    "tool": (4, c.GEN_AI_TOOL_NAME, "s"),
    **{name: (2, name, "q") for name in _USAGE_FIELDS},
    "usage_source": (2, "source", "s"),
    "response_cached": (2, "response_cached", "?"),
    "price_status": (3, "status", "s"),
    "price_model": (3, "model", "s"),
    "price_source": (3, "source", "s"),
    "price_reason": (3, "reason", "s"),
    "cost_input": (3, "input", "m"),
    "cost_cache_read": (3, "cache_read", "m"),
    "cost_cache_write": (3, "cache_write", "m"),
    "cost_output": (3, "output", "m"),
    "cost": (3, "total", "m"),
    "saved_by_cache": (3, "saved_by_cache", "m"),
    "reported": (3, "reported", "m"),
}
_PLAN = tuple(_PLAIN.values())


def _plain_columns(spans: list[PricedSpan]) -> dict[str, Any]:
    """The `_PLAIN` columns: written by `_columns` in one pass over the spans (~0.6 us a
    span instead of ~2.2 for a comprehension and a conversion a column), or, for a value
    it does not handle, by `_plain_lists`."""
    if _columns is not None:
        try:
            buffers = _columns.columns(spans, _PLAN)
        except _columns.Unhandled:
            pass
        else:
            n = len(spans)
            return {
                name: pa.Array.from_buffers(
                    _ARROW_TYPES[name], n, [b if b is None else pa.py_buffer(b) for b in column]
                )
                for name, column in zip(_PLAIN, buffers, strict=True)
            }
    return _plain_lists(spans)


def _plain_lists(spans: list[PricedSpan]) -> dict[str, Any]:
    """The `_PLAIN` columns as Python lists (for pyarrow to convert, or refuse)."""
    sources = (
        spans,
        [span.record for span in spans],
        [span.usage for span in spans],
        [span.cost for span in spans],
    )
    attrs = [span.record.attributes for span in spans]
    columns: dict[str, Any] = {}
    for column, (source, name, kind) in _PLAIN.items():
        if source == 4:
            values = [v if isinstance(v := a.get(name), str) and v else None for a in attrs]
        else:
            values = list(map(operator.attrgetter(name), sources[source]))
        if kind == "e":
            values = [value or None for value in values]
        columns[column] = _money(values) if kind == "m" else values
    return columns


def _arrow(name: str, column: Any) -> pa.Array:
    """A column of the `spans` table as Arrow, typed (inferring the type costs 3x)."""
    return column if isinstance(column, pa.Array) else pa.array(column, _ARROW_TYPES[name])


def _key_columns(trace_ids: list[str], span_ids: list[str]) -> dict[str, Any]:
    """`th`, `tk`, `sk` (see `_keys`), decoded for the whole batch at once: one
    `bytes.fromhex` and a byte swap instead of three `int(x, 16)` a span."""
    trace = _hex_words(trace_ids, 32)
    span = _hex_words(span_ids, 16) if trace is not None else None
    if trace is None or span is None:  # not all plain hex ids: `_keys` accepts or refuses them
        keys = [
            _keys(trace_id, span_id) for trace_id, span_id in zip(trace_ids, span_ids, strict=True)
        ]
        return {"th": [k[0] for k in keys], "tk": [k[1] for k in keys], "sk": [k[2] for k in keys]}
    return {"th": _uint64(trace[0::2]), "tk": _uint64(trace[1::2]), "sk": _uint64(span)}


def _hex_words(ids: list[str], digits: int) -> array.array[int] | None:
    """The ids (each of `digits` hex digits) as 64-bit words, or None if any id is not
    exactly that."""
    try:
        if set(map(len, ids)) != {digits}:
            return None
        raw = bytes.fromhex("".join(ids))
    except (TypeError, ValueError):  # not a str, not hex
        return None
    if len(raw) * 2 != len(ids) * digits:  # fromhex skips whitespace
        return None
    words = array.array("Q", raw)
    if sys.byteorder == "little":  # the hex is big-endian
        words.byteswap()
    return words


def _uint64(words: array.array[int]) -> pa.Array:
    return pa.Array.from_buffers(pa.uint64(), len(words), [None, pa.py_buffer(words)])


def _money(values: list[Any]) -> pa.Array:
    """Femto-dollars as DECIMAL(38,0). Converting Python ints to decimal128 is slow: when
    all are ints of 63 bits and none is negative, their 16 bytes are the int64 and eight
    zero bytes, laid out with the `array` module (not a pyarrow cast, which would give the
    GIL up and wait for it back). Anything else takes pyarrow's conversion, which accepts
    or refuses it as ever."""
    if _INT.issuperset(map(type, values)) and sys.byteorder == "little":
        try:
            words = array.array("q", values)
        except OverflowError:
            pass
        else:
            if max(words.tobytes()[7::8], default=0) < 0x80:  # no sign bit set
                pairs = array.array("q", bytes(16 * len(words)))
                pairs[0::2] = words  # low word, high word 0
                return pa.Array.from_buffers(MONEY, len(words), [None, pa.py_buffer(pairs)])
    elif values.count(None) == len(values):
        return pa.nulls(len(values), MONEY)
    return pa.array(values, MONEY)


def _derived(spans: Sequence[PricedSpan]) -> dict[str, Any]:
    """The columns `Trace.assemble` fills in. At ingest no span has them yet: then they are
    constants, made without reading every span again."""
    if any(
        s.attribution or s.agent_path or s.rollup or s.depth or s.orphan or s.retry or s.loop
        for s in spans
    ):
        dims = [span.attribution for span in spans]
        return {
            **{_COLUMN[name]: [d.get(name) for d in dims] for name in _DIMENSIONS},
            "agent_path": [span.agent_path or None for span in spans],
            "rollup": _money([span.rollup for span in spans]),
            "depth": [span.depth for span in spans],
            "orphan": [span.orphan for span in spans],
            "retry": [span.retry for span in spans],
            "loop": [span.loop for span in spans],
        }
    return _constants(len(spans))


@functools.lru_cache(maxsize=8)
def _constants(n: int) -> dict[str, pa.Array]:
    """The derived columns of `n` spans not assembled into a trace yet."""
    nothing = pa.nulls(n, pa.string())
    false = pa.array([False] * n, pa.bool_())
    return {
        **dict.fromkeys((_COLUMN[name] for name in _DIMENSIONS), nothing),
        "agent_path": nothing,
        "rollup": pa.array([0] * n, MONEY),
        "depth": pa.array([0] * n, pa.int32()),
        "orphan": false,
        "retry": false,
        "loop": false,
    }


def _attributes_json(records: list[SpanRecord]) -> pa.Array:
    """`_json` of every span's attributes: the text the OTLP reader wrote while decoding,
    else orjson for the batch, one search for "null" in all of it, and `_json` for the
    spans that have one."""
    written = [record.attributes_json for record in records]
    if None not in written:
        return pa.array(written, pa.string())
    attrs = [record.attributes for record in records]
    if written.count(None) < len(written):  # a few the reader left to `_json`
        return pa.array(
            [_json(a) if w is None else w for w, a in zip(written, attrs, strict=True)],
            pa.string(),
        )
    if not set(map(type, attrs)) <= {dict}:
        return pa.array([_json(a) for a in attrs], pa.string())
    try:
        texts = [orjson.dumps(a, default=str) for a in attrs]
    except orjson.JSONEncodeError:
        return pa.array([_json(a) for a in attrs], pa.string())
    if b"null" in b"".join(texts):  # `_json` writes these its own way
        texts = [
            t if b"null" not in t else _json(a).encode() for t, a in zip(texts, attrs, strict=True)
        ]
    binary = pa.array(texts, pa.binary())
    # Viewed as text without a check: orjson writes UTF-8, `_json` ASCII.
    return binary.view(pa.string()) if isinstance(binary, pa.Array) else binary.cast(pa.string())


def _resources_json(records: list[SpanRecord]) -> list[str]:
    """`_json` of every span's resource: the reader's text where it wrote one, else one
    `_json` for each resource dict (a batch's spans share a few)."""
    texts: dict[int, str] = {}
    return [
        record.resource_json
        or texts.get(id(record.resource))
        or texts.setdefault(id(record.resource), _json(record.resource))
        for record in records
    ]


_LOAD_FIELDS = (
    "trace_id", "span_id", "parent_span_id", "name", "kind", "scope",
    "epoch_ns(start_time)", "epoch_ns(end_time)", "status_code", "status_message",
    "provider", "model",
    "input_uncached", "cache_read", "cache_write", "cache_write_1h", "output", "reasoning",
    "usage_source", "response_cached",
    "price_status", "cost_input", "cost_cache_read", "cost_cache_write", "cost_output",
    "saved_by_cache", "reported", "cache_status", "price_model", "price_source",
    "price_reason", "cost", "attributes", "resource",
)  # fmt: skip


def _priced_from_row(row: dict[str, Any]) -> PricedSpan:
    record = SpanRecord(
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        parent_span_id=row["parent_span_id"],
        name=row["name"] or "",
        start_ns=row["epoch_ns(start_time)"],
        end_ns=row["epoch_ns(end_time)"] or 0,
        status_code=row["status_code"] or 0,
        status_message=row["status_message"] or "",
        kind=row["kind"] or 0,
        attributes=json.loads(row["attributes"]),
        resource=json.loads(row["resource"]),
        scope=row["scope"] or "",
    )
    usage = Usage(
        input_uncached=row["input_uncached"],
        cache_read=row["cache_read"],
        cache_write=row["cache_write"],
        cache_write_1h=row["cache_write_1h"],
        output=row["output"],
        reasoning=row["reasoning"],
        source=row["usage_source"],
        response_cached=bool(row["response_cached"]),
        invalid=row["price_reason"] if row["price_status"] == "invalid_usage" else None,
    )

    def money(name: str) -> int:
        return int(row[name] or 0)

    cost = Cost(
        row["price_status"],
        money("cost_input"),
        money("cost_cache_read"),
        money("cost_cache_write"),
        money("cost_output"),
        money("saved_by_cache"),
        None if row["reported"] is None else int(row["reported"]),
        row["cache_status"] or "none",
        row["price_model"],
        row["price_source"],
        row["price_reason"],
    )
    return PricedSpan(record, usage, cost, row["provider"], row["model"])


# Dimensions a dashboard filter may select on (`day`/`hour` are derived, not filters).
_FILTERABLE = tuple(name for name in GROUPABLE if name not in ("day", "hour"))


def _span_filter(query: TraceFilter, *, llm_only: bool = True) -> tuple[list[str], list[Any]]:
    """WHERE terms for spans: the time range, every dimension (`provider` included), the
    model, and with `llm_only` only LLM calls (spans that have a price status)."""
    unknown = [name for name in query.dimensions if name not in _FILTERABLE]
    if unknown:
        raise ValueError(f"cannot filter on {', '.join(unknown)}; choose from {_FILTERABLE}")
    where, params = _time_filter(query)
    if llm_only:
        where.append("price_status IS NOT NULL")
    for name, value in query.dimensions.items():
        where.append(f"{_COLUMN[name]} = ?")
        params.append(value)
    if query.model:
        where.append("model = ?")
        params.append(query.model)
    return where, params
