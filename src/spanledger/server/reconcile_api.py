"""Reconciliation and repricing over HTTP, for the dashboard and `--url` clients.

Wired into `create_app` with one line (`routes += reconcile_routes(pipeline, token=token)`).
Every endpoint asks for the same bearer token as the rest of the API; money is an exact
decimal string.

* `GET /api/ledger/daily?from=&to=` — what a bill is compared with: LLM calls per UTC day,
  provider, model, billing project, API key and class, with tokens and cost by kind
  (`DuckDBStore.ledger_daily`). `spanledger reconcile --url` reads this.
* `POST /api/reconcile` — body `{"bills": [{"name": "usage.json", "content": "..."}],
  "from": "2026-11-01", "to": "2026-12-01", "allow_bad_rows": false}` (days, `to`
  exclusive, both optional: the bills' own days by default). Answers what
  `spanledger reconcile --json` prints; 400 for a file that is not a bill, 422 with
  `bad_rows` (file, line, reason) when rows cannot be read and `allow_bad_rows` is false.
* `POST /api/reprice` — body `{"sheets": [{"name": "rates.yaml", "content": "..."}],
  "use_default_prices": true, "from": ISO 8601, "to": ISO 8601, "group_by": ["model"],
  "where": {"agent": "research"}, "models": {"gpt-4o": "gpt-4o-mini"}}`. Answers what
  `spanledger reprice --json` prints. Never changes stored costs (`--apply` is local).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from spanledger.pricing import RateSheetError
from spanledger.reports import reconcile as rc
from spanledger.reports import reprice as rp
from spanledger.reports.bills import BillError, parse_bill
from spanledger.reports.source import from_db, iso, to_json
from spanledger.server.api import JSONResponse, bearer_check
from spanledger.server.pipeline import Pipeline
from spanledger.store import TraceFilter

MAX_BODY_BYTES = 64 * 1024 * 1024


class _Refused(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def reconcile_routes(
    pipeline: Pipeline, *, token: str | None = None, max_body_bytes: int = MAX_BODY_BYTES
) -> list[Route]:
    """Routes for `/api/ledger/daily`, `/api/reconcile` and `/api/reprice`."""
    store: Any = pipeline.store  # DuckDBStore's reconciliation queries

    authorized = bearer_check(token)

    def api(
        handler: Callable[[Request, Any], Any], *, body: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
            try:
                data = await _json_body(request, max_body_bytes) if body else None
                result = await run_in_threadpool(handler, request, data)
            except _Refused as refused:
                return JSONResponse(
                    {"error": str(refused), **refused.extra}, status_code=refused.status
                )
            return JSONResponse(result, headers={"Cache-Control": "no-store"})

        return endpoint

    def daily(request: Request, _: Any) -> Any:
        start = _moment(request.query_params.get("from"), "from")
        end = _moment(request.query_params.get("to"), "to")
        rows = store.ledger_daily(
            TraceFilter(start=start, end=end), rc.PROJECT_KEYS, rc.API_KEY_KEYS
        )
        return {
            "from": iso(start) if start else None,
            "to": iso(end) if end else None,
            "project_keys": list(rc.PROJECT_KEYS),
            "api_key_keys": list(rc.API_KEY_KEYS),
            "rows": to_json([from_db(row) for row in rows]),
        }

    def reconcile(request: Request, data: Any) -> Any:
        files = _files(data, "bills")
        try:
            bills = [parse_bill(content, name) for name, content in files]
        except BillError as error:
            raise _Refused(400, str(error)) from None
        bad = [str(row) for bill in bills for row in bill.bad_rows]
        if bad and not data.get("allow_bad_rows"):
            raise _Refused(
                422,
                f"{len(bad)} bill rows cannot be read; fix them or send allow_bad_rows: true",
                bad_rows=bad,
            )
        window = rc.bill_window(bills)
        start = _day(data.get("from"), "from") or (window[0] if window else None)
        end = _day(data.get("to"), "to") or (window[1] if window else None)
        if start is None or end is None:
            raise _Refused(400, "the bills have no rows: nothing to reconcile")
        if start >= end:
            raise _Refused(400, f"from {start} is not before to {end}")
        rows = store.ledger_daily(
            TraceFilter(start=_midnight(start), end=_midnight(end)),
            rc.PROJECT_KEYS,
            rc.API_KEY_KEYS,
        )
        result = rc.reconcile(
            bills, [from_db(row) for row in rows], start, end, source="this server"
        )
        return rc.reconcile_json(result)

    def reprice(request: Request, data: Any) -> Any:
        sheets = _files(data, "sheets")
        try:
            book, labels = rp.book_from_sheets(
                sheets, use_defaults=bool(data.get("use_default_prices", True))
            )
        except RateSheetError as error:
            raise _Refused(400, str(error)) from None
        group_by = data.get("group_by", ["model"])
        if isinstance(group_by, str):
            group_by = [g.strip() for g in group_by.split(",") if g.strip()]
        where, models = data.get("where") or {}, data.get("models") or {}
        for name, value in (("group_by", group_by), ("where", where), ("models", models)):
            expected = list if name == "group_by" else dict
            if not isinstance(value, expected) or not all(
                isinstance(v, str)
                for v in (value if expected is list else [*value, *value.values()])
            ):
                raise _Refused(
                    400,
                    f"`{name}` must be a {'list' if expected is list else 'mapping'} of strings",
                )
        start = _moment(data.get("from"), "from")
        end = _moment(data.get("to"), "to")
        try:
            result = rp.reprice(
                rp.calls_from_store(store, start, end), book, group_by,
                start=start, end=end, where=where, models=models, sheets=labels,
            )  # fmt: skip
        except rp.RepriceError as error:
            raise _Refused(400, str(error)) from None
        return rp.reprice_json(result)

    return [
        Route("/api/ledger/daily", api(daily)),
        Route("/api/reconcile", api(reconcile, body=True), methods=["POST"]),
        Route("/api/reprice", api(reprice, body=True), methods=["POST"]),
    ]


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _Refused(413, f"body over the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _Refused(413, f"body over the {limit}-byte limit")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _Refused(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise _Refused(400, "the body is a JSON object")
    return data


def _files(data: dict[str, Any], key: str) -> list[tuple[str, str]]:
    files = data.get(key)
    if not isinstance(files, list) or not files:
        raise _Refused(400, f"`{key}`: a list of {{name, content}} objects, at least one")
    out = []
    for position, item in enumerate(files):
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise _Refused(400, f"`{key}[{position}]` needs `content`: the file's text")
        name = item.get("name")
        out.append(
            (name if isinstance(name, str) and name else f"{key}[{position}]", item["content"])
        )
    return out


def _moment(value: Any, name: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Refused(400, f"`{name}` is an ISO 8601 time")
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _Refused(400, f"`{name}` {value!r} is not an ISO 8601 time") from None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _day(value: Any, name: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Refused(400, f"`{name}` is a day, YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise _Refused(400, f"`{name}` {value!r} is not a day (YYYY-MM-DD)") from None


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
