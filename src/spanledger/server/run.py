"""Wiring for `spanledger serve`: store, price book, pipeline, receivers, forwarding, alerts."""

from __future__ import annotations

import gc
import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import grpc
import uvicorn

from spanledger.conventions import DEFAULT_DIMENSIONS
from spanledger.pricing import PriceBook
from spanledger.server.alerts import AlertEngine
from spanledger.server.app import create_app
from spanledger.server.config import ServeConfig
from spanledger.server.forward import Forwarder
from spanledger.server.grpc import start_grpc
from spanledger.server.heap import GC_THRESHOLDS, HeapFreezer, arrow_on_malloc
from spanledger.server.pipeline import Pipeline
from spanledger.server.stats import Stats
from spanledger.store.duckdb import DuckDBStore
from spanledger.traces import Dimensions

log = logging.getLogger("spanledger.server")


@dataclass
class Server:
    """A wired SpanLedger server; `start()` runs it in background threads (tests, demo),
    `run()` in the foreground until interrupted."""

    config: ServeConfig
    pipeline: Pipeline
    store: DuckDBStore
    app: Any
    stoppers: list[Any] = field(default_factory=list)
    forwarder: Forwarder | None = None
    alerts: AlertEngine | None = None
    grpc_port: int | None = None  # the port the gRPC receiver is bound to, once started
    _http: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _grpc: grpc.Server | None = None
    _heap: HeapFreezer | None = None

    @classmethod
    def build(cls, config: ServeConfig) -> Server:
        book = PriceBook.from_files(config.rates, use_defaults=config.use_default_prices)
        store = DuckDBStore(
            config.db,
            memory_limit=config.db_memory_limit,
            checkpoint_threshold=config.db_checkpoint_threshold,
        )
        keys = {name: tuple(keys) for name, keys in (config.attribution or {}).items()}
        dimensions = Dimensions({**DEFAULT_DIMENSIONS, **keys})
        stats = Stats()
        pipeline = Pipeline(
            store,
            book,
            dimensions=dimensions,
            loop_threshold=config.loop_threshold,
            max_queued_spans=config.max_queued_spans,
            max_waiting_requests=config.max_waiting_requests,
            finalize_after=config.finalize_after_seconds,
            stats=stats,
        )
        stats.gauges["queued_spans"] = lambda: pipeline.queued_spans
        stats.gauges["waiting_requests"] = lambda: pipeline.waiting_requests
        stats.gauges["open_traces"] = lambda: pipeline.open_traces
        alerts = None
        if config.alerts is not None:
            alerts = AlertEngine(
                config.alerts,
                dimensions=dimensions,
                loop_threshold=config.loop_threshold,
                stats=stats,
            )
            alerts.attach(pipeline)
        app = create_app(
            pipeline, token=config.token, max_body_bytes=config.http.max_body_bytes, alerts=alerts
        )
        forwarder = None
        if config.forward is not None:
            forwarder = sending = Forwarder(
                config.forward.url,
                config.forward.headers,
                max_queued_spans=config.forward.max_queued_spans,
                timeout=config.forward.timeout_seconds,
                stats=stats,
            )
            pipeline.listeners.append(forwarder.offer)
            stats.gauges["forward_queued_spans"] = lambda: sending.queued_spans
        server = cls(config, pipeline, store, app, forwarder=forwarder, alerts=alerts)
        if alerts is not None and alerts.link_base is None:
            alerts.link_base = lambda: server.http_url  # links to this server's dashboard
        return server

    @property
    def http_url(self) -> str:
        port = self.config.http.port
        if self._http is not None and self._http.servers:
            port = self._http.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.config.http.host}:{port}"

    def _uvicorn(self) -> uvicorn.Server:
        http = self.config.http
        # loop and http "auto": uvloop and httptools (dependencies), where they install.
        return uvicorn.Server(
            uvicorn.Config(self.app, host=http.host, port=http.port, log_level="warning",
                           access_log=False, lifespan="off")
        )  # fmt: skip

    @property
    def grpc_address(self) -> str | None:
        """host:port of the gRPC receiver once started; None when it is off."""
        if self.grpc_port is None:
            return None
        return f"{self.config.grpc.host}:{self.grpc_port}"

    def _start_pipeline(self) -> None:
        """The writer, the forwarder, alerts and the gRPC receiver; on failure, what started
        stops."""
        if self.alerts is not None:
            self.alerts.start()  # before the writer: it sees the first batch
        self.pipeline.start()
        try:
            if self.forwarder is not None:
                self.forwarder.start()
            if self.config.grpc.enabled:
                self._grpc, self.grpc_port = start_grpc(
                    self.pipeline, self.config, self.config.token
                )
        except BaseException:
            self.close()
            raise

    def start(self) -> Server:
        """Run in background threads; returns once the HTTP receiver accepts requests."""
        self._start_pipeline()
        self._http = self._uvicorn()
        self._thread = threading.Thread(target=self._http.run, name="spanledger-http", daemon=True)
        self._thread.start()
        while not self._http.started:
            if not self._thread.is_alive():
                self.close()
                raise RuntimeError(f"HTTP receiver could not start on {self.http_url}")
            threading.Event().wait(0.01)
        return self

    def run(self) -> None:
        """Serve in the foreground until Ctrl-C; then store and finalize what is queued.

        This process is the server's own, so it tunes the cyclic garbage collector for it:
        every span of an open trace is held for the idle window (~10^6 objects under load,
        none of them in reference cycles), and CPython's default thresholds would walk them
        all again and again. Collecting the young generation every 50,000 allocations
        instead of 700, and the whole heap ~100x less often, gave +12-50% durable spans/s in
        `benchmarks/ingest.py`; freezing what survives (`HeapFreezer`) takes the rest of
        that walk away. It also hands the GIL over every 1 ms instead of 5 ms:
        duckdb-python takes the GIL back ~10 times during each statement, and with receiver
        threads busy each of those waited up to a full interval (a 2,048-row INSERT took
        80 ms instead of 30). Arrow's buffers come from malloc (`arrow_on_malloc`), which
        reuses the pages each request's table frees. `start()` (in another program's
        process) leaves all of it alone."""
        gc.set_threshold(*GC_THRESHOLDS)
        sys.setswitchinterval(0.001)
        arrow_on_malloc()
        self._heap = HeapFreezer().start()
        self._start_pipeline()
        self._http = self._uvicorn()
        try:
            self._http.run()
        finally:
            self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.should_exit = True
            if self._thread is not None:
                self._thread.join(10)
        if self._grpc is not None:
            self._grpc.stop(grace=5).wait(10)  # in-flight exports finish: the pipeline runs
            self._grpc = None
        for stop in self.stoppers:
            stop()
        self.pipeline.stop()
        if self.forwarder is not None:
            self.forwarder.stop(timeout=5)  # bounded: a dead downstream cannot hold shutdown
        if self.alerts is not None:
            self.alerts.stop(timeout=5)  # after the writer: trace alerts it resolved are sent
        self.store.close()
        if self._heap is not None:
            self._heap.stop()
