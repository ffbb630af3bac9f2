"""Report queries over a month of 10 million stored spans: the store and the HTTP API.

What is measured, on one DuckDB file with the real schema (`spanledger.store.duckdb.SCHEMA`):

1. in process: `DuckDBStore.costs(["user", "model"], TraceFilter(start, end))` for the month,
   the same query the API runs; `DuckDBStore.totals()`, which the `/api/costs` answer also
   carries; `DuckDBStore.list_traces(TraceFilter(limit=100))`;
2. through HTTP, on `spanledger serve` started on the same file:
   `GET /api/costs?group_by=user,model&from=<month start>&to=<month end>`,
   `GET /api/traces?limit=100` and `GET /api/traces?limit=100&user=<a busy user>`.

Each is run once to warm up (the first run is reported too: cold caches), then 5 times;
the best is reported against the target: under 1 s.

The data is generated with DuckDB SQL only (`INSERT ... SELECT ... FROM range(n)`), after
`DuckDBStore(path)` has created the real schema: spans in start-time order (the order the
server appends them), a trace of 20 spans every ~5 s for a month (an `invoke_agent` root,
two sub-agents, 8 LLM calls, 9 tool calls), 5,000 users with a skewed activity (a few
heavy users, a long tail), 12 departments, 30 agents of 8 services, 12 models of 3
providers (one with no price), log-uniform token counts with cache reads and writes,
femto-dollar costs as DECIMAL(38,0) from per-model rates, 1% retries; and one `traces`
row per trace, aggregated from its spans. The file is kept (`--db`, by default under
/tmp) with a `.meta.json` beside it, and reused while the schema and sizes are the same.

Run: `.venv/bin/python benchmarks/query.py [--db PATH] [--spans N] [--regenerate] [--json]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
import httpx

from spanledger.store import TraceFilter
from spanledger.store.duckdb import SCHEMA, DuckDBStore

DEFAULT_DB = Path(tempfile.gettempdir()) / "spanledger-bench" / "query-10m.duckdb"
DEFAULT_SPANS = 10_000_000
SPANS_PER_TRACE = 20
CHUNK_SPANS = 1_000_000  # spans per INSERT statement
ROUNDS = 5
TARGET_S = 1.0
GENERATOR_VERSION = 1  # bump when the generated data changes
MONTH_START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
MONTH_END = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
USERS = 5_000
DEPARTMENTS = (
    "customer-support", "research", "engineering", "sales", "legal", "finance",
    "marketing", "hr", "operations", "security", "data-science", "product",
)  # fmt: skip
AGENTS = (
    "triage", "answer", "escalation", "planner", "researcher", "writer", "reviewer",
    "fixer", "prospector", "drafter", "clause-finder", "summarizer", "invoice-reader",
    "forecaster", "campaign-writer", "seo-auditor", "recruiter", "onboarding",
    "incident-responder", "runbook", "threat-hunter", "log-analyst", "sql-analyst",
    "notebook", "spec-writer", "roadmap", "translator", "classifier", "router", "critic",
)  # fmt: skip
SERVICES = (
    "support-bot", "research-assistant", "code-review", "sales-copilot", "contract-qa",
    "back-office", "ops-agent", "analytics-copilot",
)  # fmt: skip
# (provider, model, USD per million tokens: input, cache read, cache write, output; reasoning)
MODELS = (
    ("openai", "gpt-5.4", 2.50, 0.25, 0, 15.00, True),
    ("openai", "gpt-5-mini", 0.25, 0.025, 0, 2.00, True),
    ("openai", "gpt-4o-mini", 0.15, 0.075, 0, 0.60, False),
    ("openai", "gpt-4.1", 2.00, 0.50, 0, 8.00, False),
    ("anthropic", "claude-sonnet-4-6", 3.00, 0.30, 3.75, 15.00, True),
    ("anthropic", "claude-opus-4-6", 5.00, 0.50, 6.25, 25.00, True),
    ("anthropic", "claude-haiku-4-5", 1.00, 0.10, 1.25, 5.00, False),
    ("gcp.gemini", "gemini-3-pro-preview", 2.00, 0.20, 0, 12.00, True),
    ("gcp.gemini", "gemini-2.5-flash", 0.30, 0.03, 0, 2.50, True),
    ("gcp.gemini", "gemini-2.5-flash-lite", 0.10, 0.01, 0, 0.40, False),
    ("openai", "o4-mini", 1.10, 0.275, 0, 4.40, True),
    ("openai", "acme-router-v2", None, None, None, None, False),  # no price anywhere
)
TOOLS = ("search_docs", "web_search", "run_sql", "fetch_ticket", "send_email", "read_file")
FEMTO_PER_USD_PER_MTOK = 10**9  # $1 per million tokens = 10^9 femto-dollars per token


def _sql_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _u(seed: int, key: str = "t") -> str:
    """A deterministic uniform [0, 1) per row (of trace `t` or span `j`), by hashing."""
    return f"((hash({key}, {seed}) % 1000000) / 1000000.0)"


# One row per span: j is the span number in start-time order, t its trace, p its place.
# A trace: p=0 root `invoke_agent`, p=5 and p=13 sub-agents, odd p LLM calls, else tools.
SPANS_SQL = """
WITH s AS (
    SELECT j, j // {per_trace} AS t, j % {per_trace} AS p FROM range({first}, {last}) r(j)
), trace AS (
    SELECT *,
        -- skewed users: a few heavy users, a long tail
        least({users} - 1, floor({users} * pow({u_user}, 2.2)))::INTEGER AS user_no,
        {u_agent} AS ua, {u_start} AS jitter
    FROM s
), shaped AS (
    SELECT *,
        user_no % 12 AS dept_no,
        (user_no % 12 * 5 + floor(ua * 4)::INTEGER) % 30 AS root_agent,
        CASE WHEN p = 0 THEN 'agent' WHEN p IN (5, 13) THEN 'subagent'
             WHEN p % 2 = 1 THEN 'llm' ELSE 'tool' END AS k,
        make_timestamp({month_us}::BIGINT + (t * {trace_gap_us})::BIGINT
                       + (jitter * 4000000)::BIGINT + p * 1500000) AS start_ts
    FROM trace
), agents AS (
    SELECT *,
        CASE WHEN p < 5 OR k = 'agent' THEN root_agent
             ELSE (root_agent + 1 + (p >= 13)::INTEGER) % 30 END AS agent_no
    FROM shaped
), usage AS (
    SELECT *,
        -- a department standardizes on a main model (60%) and a cheap one (30%); agents
        -- bring their own for some calls (8%); 2% go to an internal router with no price
        CASE WHEN k = 'llm' THEN CASE WHEN {u_model} < 0.6 THEN (dept_no * 2) % 11
             WHEN {u_model} < 0.9 THEN (dept_no * 2 + 1) % 11
             WHEN {u_model} < 0.98 THEN agent_no % 11 ELSE 11 END END AS model_no,
        floor(pow(10, 2.3 + 2.7 * {u_in}))::BIGINT AS input_total,
        floor(pow(10, 1.3 + 2.5 * {u_out}))::BIGINT AS output_tokens
    FROM agents
), priced AS (
    SELECT u.*, m.provider, m.model, m.in_rate, m.cr_rate, m.cw_rate, m.out_rate, m.reasoning,
        CASE WHEN {u_cr} < 0.45 THEN floor(input_total * (0.3 + 0.6 * {u_crs}))::BIGINT
             ELSE 0 END AS cache_read_tokens
    FROM usage u LEFT JOIN bench_models m ON m.model_no = u.model_no
), tokens AS (
    SELECT *,
        CASE WHEN provider = 'anthropic' AND {u_cw} < 0.3
             THEN (input_total - cache_read_tokens) // 2 ELSE 0 END AS cache_write_tokens
    FROM priced
), costs AS (
    SELECT *,
        (input_total - cache_read_tokens - cache_write_tokens)::HUGEINT * in_rate AS c_in,
        cache_read_tokens::HUGEINT * cr_rate AS c_cr,
        cache_write_tokens::HUGEINT * cw_rate AS c_cw,
        output_tokens::HUGEINT * out_rate AS c_out,
        CASE WHEN k = 'llm' THEN coalesce(c_in + c_cr + c_cw + c_out, 0) END AS c_total
    FROM tokens
)
SELECT
    hash(t, 1) AS th, hash(t, 2) AS tk, hash(j, 3) AS sk,
    printf('%016x%016x', hash(t, 1), hash(t, 2)) AS trace_id,
    printf('%016x', hash(j, 3)) AS span_id,
    CASE WHEN p = 0 THEN ''
         WHEN p BETWEEN 6 AND 12 THEN printf('%016x', hash(j - p + 5, 3))
         WHEN p > 13 THEN printf('%016x', hash(j - p + 13, 3))
         ELSE printf('%016x', hash(j - p, 3)) END AS parent_span_id,
    CASE k WHEN 'llm' THEN 'chat ' || model
              WHEN 'tool' THEN 'execute_tool ' || {tools}[1 + (hash(j, 4) % 6)::BIGINT]
              ELSE 'invoke_agent ' || {agents}[1 + agent_no] END AS name,
    CASE WHEN k = 'llm' THEN 3 WHEN p = 0 THEN 2 ELSE 1 END::UTINYINT AS kind,
    CASE WHEN k = 'llm' THEN 'opentelemetry.instrumentation.openai_v2'
         ELSE 'agent-framework' END AS scope,
    start_ts AS start_time,
    start_ts + to_milliseconds((CASE WHEN k = 'llm' THEN 300 + (hash(j, 5) % 6000)
                                     WHEN k = 'tool' THEN 20 + (hash(j, 5) % 800)
                                     ELSE (20 - p) * 1500 END)::BIGINT) AS end_time,
    CASE WHEN {u_err} < 0.01 THEN 2 ELSE 1 END::UTINYINT AS status_code,
    CASE WHEN k = 'llm' THEN provider END AS provider,
    CASE WHEN k = 'llm' THEN model END AS model,
    CASE k WHEN 'llm' THEN 'chat' WHEN 'tool' THEN 'execute_tool'
              ELSE 'invoke_agent' END AS operation,
    CASE WHEN k = 'tool' THEN {tools}[1 + (hash(j, 4) % 6)::BIGINT] END AS tool,
    CASE WHEN k = 'llm' THEN input_total - cache_read_tokens - cache_write_tokens
         END AS input_uncached,
    CASE WHEN k = 'llm' THEN cache_read_tokens END AS cache_read,
    CASE WHEN k = 'llm' THEN cache_write_tokens END AS cache_write,
    CASE WHEN k = 'llm' THEN 0 END AS cache_write_1h,
    CASE WHEN k = 'llm' THEN output_tokens END AS output,
    CASE WHEN k = 'llm' THEN CASE WHEN reasoning AND {u_rs} < 0.5
         THEN output_tokens // 2 ELSE 0 END END AS reasoning,
    CASE WHEN k = 'llm' THEN 'gen_ai' END AS usage_source,
    CASE WHEN k = 'llm' THEN false END AS response_cached,
    CASE WHEN k <> 'llm' THEN NULL WHEN in_rate IS NULL THEN 'unpriced'
         ELSE 'priced' END AS price_status,
    CASE WHEN k = 'llm' AND in_rate IS NOT NULL THEN model END AS price_model,
    CASE WHEN k = 'llm' AND in_rate IS NOT NULL THEN 'genai-prices' END AS price_source,
    CASE WHEN k = 'llm' AND in_rate IS NULL THEN 'no price for ' || model END AS price_reason,
    CASE WHEN k <> 'llm' THEN NULL WHEN cache_read_tokens > 0 THEN 'hit'
         WHEN cache_write_tokens > 0 THEN 'write' ELSE 'miss' END AS cache_status,
    c_in::DECIMAL(38,0) AS cost_input, c_cr::DECIMAL(38,0) AS cost_cache_read,
    c_cw::DECIMAL(38,0) AS cost_cache_write, c_out::DECIMAL(38,0) AS cost_output,
    c_total::DECIMAL(38,0) AS cost,
    (cache_read_tokens::HUGEINT * (in_rate - cr_rate))::DECIMAL(38,0) AS saved_by_cache,
    NULL::DECIMAL(38,0) AS reported,
    'user-' || lpad(user_no::VARCHAR, 5, '0') AS user_id,
    {departments}[1 + dept_no] AS department,
    'tenant-' || (user_no % 40)::VARCHAR AS tenant,
    {agents}[1 + agent_no] AS agent,
    'conv-' || printf('%010x', hash(t // 3, 6) % 1099511627776) AS conversation,
    {services}[1 + agent_no % 8] AS service,
    CASE WHEN agent_no = root_agent THEN {agents}[1 + root_agent]
         ELSE {agents}[1 + root_agent] || '/' || {agents}[1 + agent_no] END AS agent_path,
    coalesce(c_total, 0)::DECIMAL(38,0) AS rollup,
    CASE WHEN p = 0 THEN 0 WHEN p IN (5, 13) THEN 1 WHEN p < 5 THEN 1 ELSE 2 END AS depth,
    false AS orphan,
    k = 'llm' AND {u_retry} < 0.01 AS retry,
    false AS loop,
    true AS finalized,
    CASE k
        WHEN 'llm' THEN printf('{{"gen_ai.operation.name":"chat","gen_ai.provider.name":"%s",'
            '"gen_ai.request.model":"%s","gen_ai.response.model":"%s",'
            '"gen_ai.usage.input_tokens":%d,"gen_ai.usage.output_tokens":%d,'
            '"gen_ai.usage.cache_read.input_tokens":%d,"gen_ai.request.temperature":0.2,'
            '"gen_ai.response.id":"resp_%012x","server.address":"api.%s.com"}}',
            provider, model, model, input_total, output_tokens, cache_read_tokens,
            hash(j, 7) % 281474976710656, provider)
        WHEN 'tool' THEN printf('{{"gen_ai.operation.name":"execute_tool",'
            '"gen_ai.tool.name":"%s","gen_ai.tool.call.id":"call_%016x",'
            '"gen_ai.tool.type":"function","http.response.status_code":200}}',
            {tools}[1 + (hash(j, 4) % 6)::BIGINT], hash(j, 8))
        ELSE printf('{{"gen_ai.operation.name":"invoke_agent","gen_ai.agent.name":"%s",'
            '"user.id":"user-%05d","spanledger.department":"%s"}}',
            {agents}[1 + agent_no], user_no, {departments}[1 + dept_no])
    END::JSON AS attributes,
    printf('{{"service.name":"%s","service.version":"2026.10.2",'
           '"deployment.environment.name":"production","telemetry.sdk.language":"python"}}',
           {services}[1 + agent_no % 8])::JSON AS resource
FROM costs
"""

TRACES_SQL = """
INSERT INTO traces BY NAME
SELECT trace_id,
    any_value(name) FILTER (WHERE parent_span_id = '') AS root_name,
    min(start_time) AS start_time, max(end_time) AS end_time,
    coalesce(sum(cost), 0)::DECIMAL(38,0) AS cost,
    coalesce(sum(CASE WHEN retry THEN rollup ELSE 0 END), 0)::DECIMAL(38,0) AS retry_overhead,
    0::DECIMAL(38,0) AS loop_cost,
    count(*)::INTEGER AS spans,
    count(price_status)::INTEGER AS llm_calls,
    count(*) FILTER (WHERE price_status = 'unpriced')::INTEGER AS unpriced,
    0 AS invalid, 0 AS loops, true AS complete,
    any_value(user_id) AS user_id, any_value(department) AS department,
    any_value(tenant) AS tenant,
    any_value(agent) FILTER (WHERE parent_span_id = '') AS agent,
    any_value(conversation) AS conversation, any_value(service) AS service,
    list_sort(list(DISTINCT model) FILTER (WHERE model IS NOT NULL)) AS models,
    list_sort(list(DISTINCT agent)) AS agents
FROM spans WHERE tk >= {low} AND tk < {high}
GROUP BY trace_id
"""


def spans_sql(first: int, last: int, traces: int) -> str:
    month_us = (MONTH_START - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(
        microseconds=1
    )
    month_span_us = (MONTH_END - MONTH_START) // dt.timedelta(microseconds=1) - 120_000_000
    uniforms = {
        "u_user": _u(11), "u_agent": _u(12), "u_start": _u(13), "u_model": _u(21, "j"),
        "u_in": _u(22, "j"), "u_out": _u(23, "j"), "u_cr": _u(24, "j"), "u_crs": _u(25, "j"),
        "u_cw": _u(26, "j"), "u_rs": _u(27, "j"), "u_err": _u(28, "j"), "u_retry": _u(29, "j"),
    }  # fmt: skip
    return SPANS_SQL.format(
        first=first,
        last=last,
        per_trace=SPANS_PER_TRACE,
        users=USERS,
        month_us=month_us,
        trace_gap_us=month_span_us / traces,
        departments=_sql_list(DEPARTMENTS),
        agents=_sql_list(AGENTS),
        services=_sql_list(SERVICES),
        tools=_sql_list(TOOLS),
        **uniforms,
    )


def _meta(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def wanted_meta(spans: int) -> dict[str, Any]:
    return {
        "generator": GENERATOR_VERSION,
        "schema_sha256": hashlib.sha256(SCHEMA.encode()).hexdigest(),
        "spans": spans,
        "traces": spans // SPANS_PER_TRACE,
        "month": [MONTH_START.isoformat(), MONTH_END.isoformat()],
    }


def cached(path: Path, spans: int) -> dict[str, Any] | None:
    """The meta of a complete, reusable file, or None."""
    try:
        meta = json.loads(_meta(path).read_text())
    except (OSError, ValueError):
        return None
    if not path.exists() or {k: meta.get(k) for k in wanted_meta(spans)} != wanted_meta(spans):
        return None
    return meta


def _remove(path: Path) -> None:
    for file in (path, path.with_name(path.name + ".wal")):
        file.unlink(missing_ok=True)


def generate(path: Path, spans: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Write the file: real schema via DuckDBStore, then bulk INSERT ... SELECT. Built
    beside `path` and renamed when complete, so a failed run keeps the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_name(path.name + ".building")
    _remove(building)
    traces = spans // SPANS_PER_TRACE
    t0 = time.perf_counter()
    DuckDBStore(building).close()  # creates the real schema
    con = duckdb.connect(str(building))
    try:
        # The generated columns the schema has (it grows; a new NOT NULL column it
        # lacks fails the INSERT, naming the column).
        columns = [row[1] for row in con.execute("PRAGMA table_info('spans')").fetchall()]
        con.execute(
            "CREATE TEMP TABLE bench_models (model_no INTEGER, provider VARCHAR, model VARCHAR,"
            " in_rate HUGEINT, cr_rate HUGEINT, cw_rate HUGEINT, out_rate HUGEINT,"
            " reasoning BOOLEAN)"
        )
        for number, (provider, model, *rates, reasoning) in enumerate(MODELS):
            femto = [
                None if rate is None else round(rate * FEMTO_PER_USD_PER_MTOK) for rate in rates
            ]
            con.execute(
                "INSERT INTO bench_models VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [number, provider, model, *femto, reasoning],
            )
        timings: dict[str, float] = {}
        for first in range(0, spans, CHUNK_SPANS):
            last = min(spans, first + CHUNK_SPANS)
            t1 = time.perf_counter()
            known = _sql_list(columns)[1:-1]
            con.execute(
                f"INSERT INTO spans BY NAME SELECT COLUMNS(lambda c: c IN ({known}))"
                f" FROM ({spans_sql(first, last, traces)})"
            )
            progress(f"spans {last:,}/{spans:,} ({time.perf_counter() - t1:.1f} s)")
        timings["spans_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        parts = 4  # the traces table in key ranges: bounded memory for the aggregation
        for part in range(parts):
            low, high = part * 2**64 // parts, (part + 1) * 2**64 // parts
            con.execute(TRACES_SQL.format(low=f"{low}::UBIGINT", high=f"{high}::HUGEINT"))
            progress(f"traces {part + 1}/{parts}")
        timings["traces_s"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        con.execute("CHECKPOINT")
        timings["checkpoint_s"] = time.perf_counter() - t1
        stored_spans, llm = con.execute(
            "SELECT count(*), count(price_status) FROM spans"
        ).fetchone()  # type: ignore[misc]
        stored_traces = con.execute("SELECT count(*) FROM traces").fetchone()[0]  # type: ignore[index]
    except BaseException:
        con.close()
        _remove(building)
        raise
    con.close()
    _meta(path).unlink(missing_ok=True)
    _remove(path)
    building.rename(path)
    meta = {
        **wanted_meta(spans),
        "llm_spans": llm,
        "stored_spans": stored_spans,
        "stored_traces": stored_traces,
        "generation_s": time.perf_counter() - t0,
        "generation_steps_s": timings,
        "bytes": path.stat().st_size,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _meta(path).write_text(json.dumps(meta, indent=2))
    return meta


# -- timing ----------------------------------------------------------------------------------
@dataclass(slots=True)
class Timing:
    name: str
    label: str
    first_s: float = 0.0  # the warm-up run: cold caches
    rounds_s: list[float] = field(default_factory=list)
    rows: int = 0
    bytes: int | None = None  # HTTP response size

    @property
    def best_s(self) -> float:
        return min(self.rounds_s)

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "best_s": self.best_s,
            "median_s": sorted(self.rounds_s)[len(self.rounds_s) // 2],
            "first_s": self.first_s,
            "rounds_s": self.rounds_s,
            "rows": self.rows,
            "response_bytes": self.bytes,
            "pass": self.best_s < TARGET_S,
        }


def measure(
    name: str,
    label: str,
    run: Callable[[], Any],
    size: Callable[[Any], tuple[int, int | None]] = lambda result: (len(result), None),
) -> Timing:
    """A warm-up run (timed: cold caches), then ROUNDS timed runs. `size` gives the rows
    (and bytes) of a result; it runs outside the timing."""
    timing = Timing(name, label)
    t0 = time.perf_counter()
    result = run()
    timing.first_s = time.perf_counter() - t0
    timing.rows, timing.bytes = size(result)
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        run()
        timing.rounds_s.append(time.perf_counter() - t0)
    return timing


class _Recorder:
    """A cursor stand-in that remembers the SQL the store runs (to time it alone)."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, seen: list[tuple[str, Any]]) -> None:
        self.cursor, self.seen = cursor, seen

    def execute(self, sql: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        self.seen.append((sql, params))
        return self.cursor.execute(sql, params)


def busiest_user(path: Path) -> str:
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute(
            "SELECT user_id FROM traces GROUP BY user_id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    return row[0] if row else "user-00000"


def in_process(path: Path) -> list[Timing]:
    store = DuckDBStore(path)
    month = TraceFilter(start=MONTH_START, end=MONTH_END)
    try:
        timings = [
            measure(
                "store_costs",
                'DuckDBStore.costs(["user", "model"], month)',
                lambda: store.costs(["user", "model"], month),
            ),
            measure("store_totals", "DuckDBStore.totals()", store.totals),
            measure(
                "store_list_traces",
                "DuckDBStore.list_traces(limit=100)",
                lambda: store.list_traces(TraceFilter(limit=100)),
            ),
        ]
        # Where the time of the costs query goes: the SQL the store runs, alone, to Arrow
        # (DuckDB's work), then the same to Python tuples (what `costs` fetches).
        seen: list[tuple[str, Any]] = []
        cursor = store._read
        store._read = lambda: _Recorder(cursor(), seen)  # type: ignore[method-assign]
        store.costs(["user", "model"], month)
        store._read = cursor  # type: ignore[method-assign]
        sql, params = seen[0]
        timings += [
            measure(
                "sql_costs_arrow",
                "  its SQL alone, to Arrow (DuckDB's share)",
                lambda: cursor().sql(sql, params=params).to_arrow_table(),
                lambda table: (table.num_rows, None),
            ),
            measure(
                "sql_costs_fetchall",
                "  its SQL to Python tuples (fetchall)",
                lambda: cursor().execute(sql, params).fetchall(),
            ),
        ]
        timings += api_encoding(store, month)
        return timings
    finally:
        store.close()


def api_encoding(store: DuckDBStore, month: TraceFilter) -> list[Timing]:
    """What `/api/costs` does in the server's thread: the query with money made dollar
    strings by DuckDB (`usd=True`), the totals, then its JSON encoding."""
    from spanledger.server.api import JSONResponse, jsonable

    def answer() -> dict[str, Any]:
        return {
            "group_by": ["user", "model"],
            "rows": store.costs(["user", "model"], month, usd=True),
            "totals": jsonable(store.totals()),
        }

    ready = answer()
    return [
        measure(
            "store_costs_usd",
            '  DuckDBStore.costs(["user", "model"], month, usd=True)',
            lambda: store.costs(["user", "model"], month, usd=True),
        ),
        measure(
            "api_encode_costs",
            "  the API encoding its answer (orjson)",
            lambda: JSONResponse(ready).body,
            lambda body: (len(ready["rows"]), len(body)),
        ),
        measure(
            "api_costs_in_process",
            "  the whole answer in-process (query, totals, encoding)",
            lambda: JSONResponse(answer()).body,
            lambda body: (len(ready["rows"]), len(body)),
        ),
    ]


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used (/proc/stat, every CPU)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """This process and its reaped children (the server, once stopped)."""
    usage = os.times()
    return usage.user + usage.system + usage.children_user + usage.children_system


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def over_http(path: Path, user: str) -> tuple[list[Timing], float]:
    """The API of `spanledger serve` on the file; returns the timings and its startup time."""
    port = _free_port()
    cli = Path(sys.executable).with_name("spanledger")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "spanledger.cli"]
    command += ["serve", "--db", str(path), "--http-port", str(port), "--grpc-port", "0"]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        while True:
            if server.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"spanledger serve exited: {log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("spanledger serve did not answer /healthz in 120 s")
        startup_s = time.perf_counter() - t0
        with httpx.Client(base_url=url, timeout=300) as client:

            def get(target: str) -> Callable[[], httpx.Response]:
                def run() -> httpx.Response:
                    answer = client.get(target)  # reads the whole body
                    answer.raise_for_status()
                    return answer

                return run

            def rows(key: str) -> Callable[[httpx.Response], tuple[int, int | None]]:
                return lambda answer: (len(answer.json()[key]), len(answer.content))

            month = f"from={MONTH_START:%Y-%m-%d}&to={MONTH_END:%Y-%m-%d}"
            timings = [
                measure(
                    "http_costs",
                    "GET /api/costs?group_by=user,model&from&to",
                    get(f"/api/costs?group_by=user,model&{month}"),
                    rows("rows"),
                ),
                measure(
                    "http_traces",
                    "GET /api/traces?limit=100",
                    get("/api/traces?limit=100"),
                    rows("traces"),
                ),
                measure(
                    "http_traces_user",
                    "GET /api/traces?limit=100&user=<busiest>",
                    get(f"/api/traces?limit=100&user={user}"),
                    rows("traces"),
                ),
            ]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    return timings, startup_s


# -- report ----------------------------------------------------------------------------------
def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average_1m_at_start": os.getloadavg()[0],
        "duckdb": version("duckdb"),
        "spanledger": version("spanledger"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = environment()
    path = Path(args.db)
    meta = None if args.regenerate else cached(path, args.spans)
    reused = meta is not None
    if meta is None:

        def progress(text: str) -> None:
            if not args.json:
                print(f"  generating {path}: {text}", file=sys.stderr, flush=True)

        meta = generate(path, args.spans, progress)
    user = busiest_user(path)
    machine_before, own_before, t0 = machine_busy_s(), _own_cpu_s(), time.perf_counter()
    local = in_process(path)
    remote, startup_s = over_http(path, user)
    elapsed = time.perf_counter() - t0
    others = max(0.0, machine_busy_s() - machine_before - (_own_cpu_s() - own_before))
    env["other_processes_cores"] = others / elapsed
    timings = {t.name: t.as_dict() for t in (*local, *remote)}
    targets = ("store_costs", "http_costs", "http_traces")
    env["load_average_1m_at_end"] = os.getloadavg()[0]
    return {
        "environment": env,
        "data": {**meta, "path": str(path), "reused": reused, "busiest_user": user},
        "method": {"rounds": ROUNDS, "statistic": "best", "warmup_rounds": 1},
        "server_startup_s": startup_s,
        "timings": timings,
        "target": {
            "threshold_s": TARGET_S,
            "checked": list(targets),
            "pass": all(timings[name]["pass"] for name in targets),
        },
    }


def print_report(result: dict[str, Any]) -> None:
    env, data = result["environment"], result["data"]
    print("SpanLedger report-query benchmark (DuckDB store and HTTP API)")
    print(
        f"python {env['python']} ({env['machine']}), {env['cpus_usable']} CPUs usable; "
        f"duckdb {env['duckdb']}, spanledger {env['spanledger']}; load average "
        f"{env['load_average_1m_at_start']:.2f} at start, {env['load_average_1m_at_end']:.2f} "
        "at end"
    )
    if env["other_processes_cores"] > 0.1:
        print(
            f"warning: other processes kept {env['other_processes_cores']:.2f} cores busy while "
            "the queries ran: timings are pessimistic"
        )
    steps = data["generation_steps_s"]
    print(
        f"data: {data['stored_spans']:,} spans ({data['llm_spans']:,} LLM calls) and "
        f"{data['stored_traces']:,} traces, {data['month'][0][:10]} .. {data['month'][1][:10]}, "
        f"{data['bytes'] / 2**30:.2f} GiB at {data['path']}"
    )
    print(
        f"generation: {data['generation_s']:.1f} s (spans {steps['spans_s']:.1f} s, traces "
        f"{steps['traces_s']:.1f} s, checkpoint {steps['checkpoint_s']:.1f} s)"
        + ("; reused from an earlier run" if data["reused"] else "")
    )
    print(
        f"method: 1 warm-up run (reported as 'first'), then best of {ROUNDS}; HTTP through "
        f"spanledger serve on the same file (started in {result['server_startup_s']:.1f} s)"
    )
    print()
    print(f"  {'query':<50} {'best':>8} {'median':>8} {'first':>8} {'rows':>7} {'< 1 s':>6}")
    for t in result["timings"].values():
        size = f" ({t['response_bytes'] / 2**20:.1f} MiB)" if t["response_bytes"] else ""
        verdict = "" if t["label"].startswith(" ") else "PASS" if t["pass"] else "MISS"
        print(
            f"  {t['label']:<50} {t['best_s']:>7.3f}s {t['median_s']:>7.3f}s "
            f"{t['first_s']:>7.3f}s {t['rows']:>7,} {verdict:>6}{size}"
        )
    target = result["target"]
    print()
    print(
        f"target: report queries over {data['stored_spans']:,} spans under {TARGET_S:.0f} s "
        f"({', '.join(target['checked'])}): {'PASS' if target['pass'] else 'MISS'}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", default=str(DEFAULT_DB), help="DuckDB file, kept for reuse")
    parser.add_argument("--spans", type=int, default=DEFAULT_SPANS, help="spans in the month")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the file")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    args = parser.parse_args(argv)
    if args.spans < SPANS_PER_TRACE:
        parser.error(f"--spans must be at least {SPANS_PER_TRACE}")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
