"""The OTLP/gRPC receiver: `TraceService/Export` on the same pipeline as OTLP/HTTP.

Answers follow the OTLP specification: an `ExportTraceServiceResponse` (with partial
success for rejected spans) once the spans are durable; UNAUTHENTICATED without the bearer
token when one is set; INVALID_ARGUMENT for a request that cannot be parsed;
RESOURCE_EXHAUSTED when the ingest queue is full and UNAVAILABLE when the store failed,
both with a `google.rpc.RetryInfo` that says when to retry. Message size is limited to
`http.max_body_bytes` (after decompression); gzip-compressed requests are accepted.

The request reaches `Export` as the raw serialized bytes: a request that grpcio itself
failed to parse would be answered INTERNAL, which clients may retry forever. Parsing
the bytes here costs the same as grpcio parsing them and lets the answer be
INVALID_ARGUMENT with the reason.
"""

from __future__ import annotations

import hmac
import logging
from concurrent import futures
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from spanledger.server.otlp import OtlpDecodeError, decode_message, decode_protobuf, export_response
from spanledger.server.pipeline import Backpressure, Pipeline

if TYPE_CHECKING:
    from spanledger.server.config import ServeConfig

__all__ = ["SERVICE", "TraceServiceServicer", "start_grpc"]

log = logging.getLogger("spanledger.server")

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
MAX_WORKERS = 16  # Export waits for the durable commit; the wait holds no lock
MAX_CONCURRENT_RPCS = 64  # beyond this, RESOURCE_EXHAUSTED at once: bounded memory
STORE_WAIT_SECONDS = 60.0  # longest wait for a commit when the client set no deadline


class TraceServiceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    """`Export` for a running pipeline. Registered by `start_grpc` to receive the raw
    request bytes; given an `ExportTraceServiceRequest` message (registered with the
    generated `add_TraceServiceServicer_to_server`) it works the same."""

    def __init__(self, pipeline: Pipeline, *, token: str | None = None) -> None:
        self.pipeline = pipeline
        self.stats = pipeline.stats
        self._expected = f"Bearer {token}".encode() if token is not None else None

    def Export(
        self, request: bytes | ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        stats = self.stats
        stats.count("requests_total")
        if not self._authorized(context):
            stats.count("requests_rejected")
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        rejected: list[str] = []  # spans skipped for partial success, with their reasons
        if isinstance(request, bytes):
            decode = partial(decode_protobuf, request)
        else:
            decode = partial(decode_message, request)
        try:
            done = self.pipeline.receive(decode, rejected).result()
        except OtlpDecodeError as problem:
            stats.count("requests_rejected")
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(problem))
        except Backpressure as full:
            _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(full), full.retry_after)
        remaining = context.time_remaining()
        wait = STORE_WAIT_SECONDS if remaining is None else max(0.0, remaining)
        try:
            done.result(timeout=wait)
        except TimeoutError:  # the client's deadline passed; it will retry (stored once)
            _abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, "spans not stored in time")
        except Exception as error:  # the store failed: the client must retry
            log.error("spanledger: batch not stored: %s", error)
            _abort(context, grpc.StatusCode.UNAVAILABLE, "spans could not be stored; retry", 5.0)
        return export_response(rejected)

    def _authorized(self, context: grpc.ServicerContext) -> bool:
        if self._expected is None:
            return True
        for key, value in context.invocation_metadata():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self._expected)
        return False


def _abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    retry_after: float | None = None,
) -> NoReturn:
    """End the call with `code`; with `retry_after`, tell the client when to retry: a
    `google.rpc.Status` carrying `RetryInfo` in `grpc-status-details-bin` (the standard
    place, read by the Go SDK and the Collector) and the bare `RetryInfo` in
    `google.rpc.retryinfo-bin` (where the Python SDK's exporter looks)."""
    if retry_after is not None:
        seconds = max(retry_after, 0.001)
        retry = RetryInfo(retry_delay=Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9)))
        detail = AnyMessage()
        detail.Pack(retry)
        status = Status(code=code.value[0], message=message, details=[detail])
        context.set_trailing_metadata(
            (
                ("grpc-status-details-bin", status.SerializeToString()),
                ("google.rpc.retryinfo-bin", retry.SerializeToString()),
            )
        )
    context.abort(code, message)
    raise AssertionError("unreachable: ServicerContext.abort raises")  # pragma: no cover


def handler(servicer: TraceServiceServicer) -> grpc.GenericRpcHandler:
    """The `TraceService` handler, with `Export` receiving the raw request bytes."""
    export = grpc.unary_unary_rpc_method_handler(
        servicer.Export,
        request_deserializer=None,  # bytes: malformed input becomes INVALID_ARGUMENT
        response_serializer=ExportTraceServiceResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE, {"Export": export})


def start_grpc(
    pipeline: Pipeline, config: ServeConfig, token: str | None = None
) -> tuple[grpc.Server, int]:
    """Start the gRPC receiver on `config.grpc.host:port` (port 0: any free port) and
    return the server and the port it is bound to. Stop it with `server.stop(grace)`."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", config.http.max_body_bytes),
        ("grpc.so_reuseport", 0),  # a port already in use is an error, not shared
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="spanledger-grpc"),
        handlers=[handler(TraceServiceServicer(pipeline, token=token))],
        options=options,
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    host = config.grpc.host
    address = f"[{host}]:{config.grpc.port}" if ":" in host else f"{host}:{config.grpc.port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if not port:
        server.stop(None)
        raise RuntimeError(f"gRPC receiver could not listen on {address} (in use?)")
    server.start()
    return server, port
