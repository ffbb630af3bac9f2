"""The HTTP side of `spanledger serve`: OTLP/HTTP receiver, JSON API, /metrics, /healthz.

OTLP answers follow the specification: the `ExportTraceServiceResponse` in the request's
encoding, partial success for rejected spans, 400 with the reason for a malformed body,
413 over the size limit, 429 with Retry-After when the ingest queue is full, 401 without
the bearer token when one is set.
"""

from __future__ import annotations

import asyncio
import logging
import re
import zlib
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from spanledger.pricing.money import femto_from_usd
from spanledger.server.api import BadQuery, JSONResponse, bearer_check, jsonable, parse_time
from spanledger.server.dashboard import dashboard_routes
from spanledger.server.otlp import OtlpDecodeError, decode_json, decode_protobuf, export_response
from spanledger.server.pipeline import Backpressure, Pipeline
from spanledger.server.reconcile_api import reconcile_routes
from spanledger.store import DIMENSIONS, SpanCursor, TraceFilter

if TYPE_CHECKING:
    from spanledger.server.alerts import AlertEngine

log = logging.getLogger("spanledger.server")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")


def create_app(
    pipeline: Pipeline,
    *,
    token: str | None = None,
    max_body_bytes: int = 16 * 1024 * 1024,
    alerts: AlertEngine | None = None,
) -> Starlette:
    """The Starlette application for a running pipeline and its store."""
    store = pipeline.store
    stats = pipeline.stats

    authorized = bearer_check(token)

    async def export_traces(request: Request) -> Response:
        stats.count("requests_total")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        encoding = JSON if content_type == JSON else PROTOBUF
        if not authorized(request):
            return refuse(encoding, 401, "missing or wrong bearer token")
        if content_type not in (PROTOBUF, JSON):
            return refuse(
                encoding,
                415,
                f"unsupported content-type {content_type!r}; use {PROTOBUF} or {JSON}",
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            return refuse(encoding, 413, f"body over the {max_body_bytes}-byte limit")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return refuse(encoding, 413, f"body over the {max_body_bytes}-byte limit")
        rejected: list[str] = []  # spans skipped for partial success, with their reasons
        decode = decode_json if encoding == JSON else decode_protobuf
        try:
            data = _decompress(
                bytes(body), request.headers.get("content-encoding", ""), max_body_bytes
            )
            queued = pipeline.receive(lambda rejected: decode(data, rejected), rejected)
            done = await asyncio.wrap_future(queued)
        except _TooLarge as problem:
            return refuse(encoding, 413, str(problem))
        except (OtlpDecodeError, _BodyError) as problem:
            return refuse(encoding, 400, str(problem))
        except Backpressure as full:
            return _otlp_error(
                encoding, 429, str(full), headers={"Retry-After": str(int(full.retry_after) or 1)}
            )
        try:
            await asyncio.wrap_future(done)
        except Exception as error:  # the store failed: the client must retry
            log.error("spanledger: batch not stored: %s", error)
            return _otlp_error(
                encoding, 503, "spans could not be stored; retry", headers={"Retry-After": "5"}
            )
        return _otlp_response(encoding, export_response(rejected))

    def refuse(encoding: str, status: int, message: str) -> Response:
        """A whole request refused (its spans unknown): counted, answered with the reason."""
        stats.count("requests_rejected")
        return _otlp_error(encoding, status, message)

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "queued_spans": pipeline.queued_spans,
                "waiting_requests": pipeline.waiting_requests,
                "open_traces": pipeline.open_traces,
            }
        )

    async def metrics(request: Request) -> Response:
        if not authorized(request):
            return PlainTextResponse("unauthorized\n", status_code=401)
        return PlainTextResponse(stats.prometheus(), media_type="text/plain; version=0.0.4")

    def api(handler: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
            try:
                result = await run_in_threadpool(handler, request)
            except BadQuery as problem:
                return JSONResponse({"error": str(problem)}, status_code=400)
            if result is None:
                return JSONResponse({"error": "not found"}, status_code=404)
            if isinstance(result, Response):  # already in its JSON form
                return result
            return JSONResponse(jsonable(result))

        return endpoint

    def list_traces(request: Request) -> Any:
        return {"traces": store.list_traces(_filter(request))}

    def get_trace(request: Request) -> Any:
        trace_id = request.path_params["trace_id"].lower()
        if not _TRACE_ID.fullmatch(trace_id):
            return None  # 404: no trace can have this id
        summary = store.trace_summary(trace_id)
        spans = store.trace_spans(trace_id)
        if summary is None and not spans:
            return None
        return {"trace": summary, "finalized": summary is not None, "spans": spans}

    def costs(request: Request) -> Any:
        group_by = [g for g in request.query_params.get("group_by", "").split(",") if g.strip()]
        try:
            rows = store.costs([g.strip() for g in group_by], _filter(request), usd=True)
        except ValueError as problem:
            raise BadQuery(str(problem)) from None
        # The rows hold only text, whole numbers and dollar strings made by the store:
        # 38,000 of them need no jsonable() walk.
        totals = jsonable(store.totals())
        return JSONResponse({"group_by": group_by, "rows": rows, "totals": totals})

    def llm_spans(request: Request) -> Any:
        """A page of LLM spans in start order; `next` is the `after` of the next page."""
        query = _filter(request, default_limit=1_000)
        after = _span_cursor(request.query_params.get("after"))
        spans, following = store.llm_spans(query, after, query.limit)
        answer: dict[str, Any] = {"spans": spans, "next": _cursor_text(following)}
        if after is None:
            answer["total"] = store.llm_span_count(query)
        return answer

    def unpriced(request: Request) -> Any:
        return {"models": store.unpriced(_filter(request))}

    def list_alerts(request: Request) -> Any:
        """Firing and recently resolved alerts, and the rules (spanledger.server.alerts)."""
        if alerts is None:
            return {"firing": [], "resolved": [], "rules": []}
        return alerts.snapshot()

    routes = [
        Route("/v1/traces", export_traces, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/api/traces", api(list_traces)),
        Route("/api/traces/{trace_id}", api(get_trace)),
        Route("/api/costs", api(costs)),
        Route("/api/spans", api(llm_spans)),
        Route("/api/unpriced", api(unpriced)),
        Route("/api/alerts", api(list_alerts)),
        *dashboard_routes(pipeline, token=token),
        *reconcile_routes(pipeline, token=token),
    ]
    return Starlette(routes=routes)


class _BodyError(ValueError):
    pass


class _TooLarge(_BodyError):
    pass


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise _BodyError(f"unsupported content-encoding {encoding!r}; use gzip")
    # Bounded decompression: a small gzip bomb must not become gigabytes in memory.
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise _BodyError(f"body is not valid {encoding}: {error}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise _TooLarge(f"decompressed body over the {limit}-byte limit")
    return data


def _otlp_response(
    encoding: str, message: ExportTraceServiceResponse, status: int = 200
) -> Response:
    if encoding == JSON:
        body = json_format.MessageToJson(message, indent=None).encode()
    else:
        body = message.SerializeToString()
    return Response(body, status_code=status, media_type=encoding)


def _otlp_error(
    encoding: str, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """An OTLP error response: a `google.rpc.Status` with the reason, in the request's
    encoding, as the OTLP/HTTP specification asks for 4xx and 5xx answers."""
    body = Status(code=_GRPC_CODE.get(status, 2), message=message)
    if encoding == JSON:
        return Response(json_format.MessageToJson(body, indent=None), status, headers, JSON)
    return Response(body.SerializeToString(), status, headers, PROTOBUF)


# HTTP status -> the gRPC code the same problem has on the gRPC receiver.
_GRPC_CODE = {400: 3, 401: 16, 413: 3, 415: 3, 429: 8, 503: 14}


def _span_cursor(text: str | None) -> SpanCursor | None:
    """`after=<start ns>.<trace id>.<span id>`, as an answer's `next` gave it."""
    if not text:
        return None
    parts = text.split(".")
    if (
        len(parts) != 3
        or not parts[0].isdigit()
        or not _TRACE_ID.fullmatch(parts[1])
        or not _SPAN_ID.fullmatch(parts[2])
    ):
        raise BadQuery(f"after={text!r} is not a cursor from a previous page's `next`")
    return int(parts[0]), parts[1], parts[2]


def _cursor_text(cursor: SpanCursor | None) -> str | None:
    return None if cursor is None else ".".join(str(part) for part in cursor)


def _filter(request: Request, default_limit: int = 100) -> TraceFilter:
    params = request.query_params
    dimensions = {name: params[name] for name in DIMENSIONS if params.get(name)}
    min_cost = params.get("min_cost")
    try:
        limit = int(params.get("limit", str(default_limit)))
    except ValueError:
        raise BadQuery("limit must be a whole number") from None
    if not 1 <= limit <= 10_000:
        raise BadQuery("limit must be between 1 and 10000")
    min_femto = None
    if min_cost:
        try:
            Decimal(min_cost)
        except InvalidOperation:
            raise BadQuery(f"min_cost {min_cost!r} is not a dollar amount") from None
        min_femto = femto_from_usd(min_cost)
    return TraceFilter(
        start=parse_time(params.get("from"), "from"),
        end=parse_time(params.get("to"), "to"),
        dimensions=dimensions,
        model=params.get("model") or None,
        min_cost_femto=min_femto,
        limit=limit,
    )
