"""The dashboard: static files at `/` and `/ui/...`, and the read-only JSON it needs beyond
the core API.

Wired into `create_app` with one line (`routes += dashboard_routes(pipeline, token=token)`).
The page itself carries no data, so it is served without the token; every JSON endpoint
asks for the same bearer token as the rest of the API.

Endpoints (filters: `from`, `to` as ISO 8601 UTC, and any of `user`, `department`,
`tenant`, `agent`, `conversation`, `service`, `provider`, `model`):

* `GET /api/overview?top=10&step=auto` — everything the overview shows, in one request:
  headline numbers (spend, tokens, cache hit rate and savings, retry overhead, cost inside
  runaway loops, unpriced calls), spend over time, spend by model/provider/agent/user/
  department/service, unpriced models with their tokens, the most expensive traces.
* `GET /api/timeseries?step=minute|hour|day|auto` — spend per UTC bucket, gaps filled.
* `GET /api/top-traces?limit=10` — finalized traces, most expensive first.
* `GET /api/dimensions` — the values each filter can take in the time range.

Money is an exact decimal string, as in the rest of the API; `share` is the row's part of
the filtered total, a decimal string rounded to 4 places.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from spanledger.pricing.money import femto_from_usd
from spanledger.server.api import BadQuery, JSONResponse, bearer_check, jsonable, parse_time
from spanledger.server.pipeline import Pipeline
from spanledger.store import DIMENSIONS, TraceFilter

UI_DIR = Path(__file__).resolve().parent.parent / "ui"

FILTERS = (*DIMENSIONS, "provider", "model")
"""Query parameters that select spans (each an exact match)."""
BREAKDOWNS = ("model", "provider", "agent", "user", "department", "service")
"""The dimensions the overview breaks spend down by."""
BREAKDOWN_ROWS = 15
"""Rows per breakdown; the rest are summed, exactly, into `more`."""
STEPS = {
    "minute": dt.timedelta(minutes=1),
    "hour": dt.timedelta(hours=1),
    "day": dt.timedelta(days=1),
}
MAX_BUCKETS = 2000
"""A time series longer than this is refused: ask for a coarser step."""
AUTO_BUCKETS = 360
"""`step=auto` picks the finest step that keeps the series at most this long."""

_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
# The page loads only its own files; data never becomes markup, and this would stop an
# injected script or inline handler even if it did.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def dashboard_routes(pipeline: Pipeline, *, token: str | None = None) -> list[BaseRoute]:
    """Routes for the dashboard page, its static files and its JSON endpoints."""
    store: Any = pipeline.store  # the dashboard queries are DuckDBStore's

    authorized = bearer_check(token)

    def api(handler: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
            try:
                result = await run_in_threadpool(handler, request)
            except BadQuery as problem:
                return JSONResponse({"error": str(problem)}, status_code=400)
            return JSONResponse(jsonable(result), headers={"Cache-Control": "no-store"})

        return endpoint

    def overview(request: Request) -> Any:
        query = _filter(request)
        summary = _query(store.spend_summary, query)
        step = _step(request.query_params.get("step", "auto"), query, summary)
        top = replace(query, limit=_count(request, "top", 10, 100))
        return {
            "filters": _echo(query),
            "summary": summary,
            "series": {"step": step, "points": _series(store, step, query, summary)},
            "breakdown": {
                name: _breakdown(_query(store.costs, [name], query), summary["cost"])
                for name in BREAKDOWNS
            },
            "unpriced": _query(store.unpriced_models, query),
            "top_traces": _query(store.top_traces, top),
            "generated_at": dt.datetime.now(dt.UTC),
        }

    def timeseries(request: Request) -> Any:
        query = _filter(request)
        summary = _query(store.spend_summary, query)
        step = _step(request.query_params.get("step", "auto"), query, summary)
        return {
            "filters": _echo(query),
            "step": step,
            "points": _series(store, step, query, summary),
        }

    def top_traces(request: Request) -> Any:
        query = replace(_filter(request), limit=_count(request, "limit", 10, 1000))
        return {"filters": _echo(query), "traces": _query(store.top_traces, query)}

    def dimensions(request: Request) -> Any:
        query = _filter(request)
        return _query(store.dimension_values, [*FILTERS], replace(query, dimensions={}, model=None))

    async def page(request: Request) -> Response:
        return FileResponse(UI_DIR / "index.html", headers=_PAGE_HEADERS)

    async def trace_page(request: Request) -> Response:
        trace_id = request.path_params["trace_id"]
        if not _TRACE_ID.match(trace_id):
            return JSONResponse({"error": "a trace id is 32 hex digits"}, status_code=404)
        return RedirectResponse(f"../#/trace/{trace_id.lower()}", status_code=307)

    return [
        Route("/", page),
        Route("/trace/{trace_id}", trace_page),
        Mount("/ui", app=StaticFiles(directory=UI_DIR), name="ui"),
        Route("/api/overview", api(overview)),
        Route("/api/timeseries", api(timeseries)),
        Route("/api/top-traces", api(top_traces)),
        Route("/api/dimensions", api(dimensions)),
    ]


def _query(method: Callable[..., Any], *args: Any) -> Any:
    try:
        return method(*args)
    except ValueError as problem:  # an unknown dimension or step: the caller's to fix
        raise BadQuery(str(problem)) from None


def _filter(request: Request) -> TraceFilter:
    params = request.query_params
    dimensions = {name: params[name] for name in FILTERS if name != "model" and params.get(name)}
    min_cost = params.get("min_cost")
    min_femto = None
    if min_cost:
        try:
            Decimal(min_cost)
        except InvalidOperation:
            raise BadQuery(f"min_cost {min_cost!r} is not a dollar amount") from None
        min_femto = femto_from_usd(min_cost)
    start, end = parse_time(params.get("from"), "from"), parse_time(params.get("to"), "to")
    if start is not None and end is not None and end <= start:
        raise BadQuery("to must be later than from")
    return TraceFilter(
        start=start,
        end=end,
        dimensions=dimensions,
        model=params.get("model") or None,
        min_cost_femto=min_femto,
    )


def _count(request: Request, name: str, default: int, most: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise BadQuery(f"{name} must be a whole number from 1 to {most}")
    return int(value)


def _echo(query: TraceFilter) -> dict[str, Any]:
    echo: dict[str, Any] = {"from": query.start, "to": query.end, **query.dimensions}
    if query.model:
        echo["model"] = query.model
    return echo


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def _bounds(query: TraceFilter, summary: dict[str, Any]) -> tuple[dt.datetime, dt.datetime] | None:
    """The span of time a series covers (naive UTC): the filter's range where given, else
    the data's; an open-ended range runs to now, so a live chart shows the quiet minutes."""
    first, last = summary.get("first_seen"), summary.get("last_seen")
    if first is None:
        return None
    start = _naive_utc(query.start) if query.start is not None else first
    if query.end is not None:
        end = _naive_utc(query.end) - dt.timedelta(microseconds=1)  # `to` is exclusive
    else:
        end = max(last, _naive_utc(dt.datetime.now(dt.UTC)))
    return start, max(start, end)


def _step(asked: str, query: TraceFilter, summary: dict[str, Any]) -> str:
    if asked in STEPS:
        return asked
    if asked != "auto":
        raise BadQuery(f"step {asked!r}: choose minute, hour, day or auto")
    bounds = _bounds(query, summary)
    if bounds is None:
        return "hour"
    length = bounds[1] - bounds[0]
    for step, size in STEPS.items():
        if length <= size * AUTO_BUCKETS:
            return step
    return "day"


def _truncate(moment: dt.datetime, step: str) -> dt.datetime:
    moment = moment.replace(second=0, microsecond=0)
    if step in ("hour", "day"):
        moment = moment.replace(minute=0)
    if step == "day":
        moment = moment.replace(hour=0)
    return moment


def _series(
    store: Any, step: str, query: TraceFilter, summary: dict[str, Any]
) -> list[dict[str, Any]]:
    """Spend per bucket over the whole range, with the empty buckets as zeros."""
    bounds = _bounds(query, summary)
    if bounds is None:
        return []
    size = STEPS[step]
    first, last = _truncate(bounds[0], step), _truncate(bounds[1], step)
    if (last - first) // size + 1 > MAX_BUCKETS:
        raise BadQuery(
            f"more than {MAX_BUCKETS} {step} buckets in this range; use a coarser step "
            "or a shorter range"
        )
    rows = {row["bucket"]: row for row in _query(store.spend_timeseries, step, query)}
    points = []
    bucket = first
    while bucket <= last:
        row = rows.get(bucket)
        points.append(
            {
                "t": bucket,
                "cost": row["cost"] if row else 0,
                "calls": row["calls"] if row else 0,
                "unpriced_calls": row["unpriced_calls"] if row else 0,
                "tokens": int(row["tokens"] or 0) if row else 0,
            }
        )
        bucket += size
    return points


def _breakdown(rows: list[dict[str, Any]], total: Any) -> dict[str, Any]:
    """The first rows with their share of the total; the rest summed into `more`."""
    total = int(total or 0)
    for row in rows:
        row["share"] = _share(int(row["cost"] or 0), total)
    shown, rest = rows[:BREAKDOWN_ROWS], rows[BREAKDOWN_ROWS:]
    more = None
    if rest:
        cost = sum(int(row["cost"] or 0) for row in rest)
        more = {"rows": len(rest), "cost": cost, "share": _share(cost, total)}
    return {"rows": shown, "more": more}


def _share(part: int, total: int) -> str:
    if total <= 0:
        return "0"
    return format((Decimal(part) / Decimal(total)).quantize(Decimal("0.0001"), ROUND_HALF_EVEN))
