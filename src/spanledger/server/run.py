"""Wiring for `spanledger serve`: store, price book, pipeline, receivers, forwarding."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from spanledger.conventions import DEFAULT_DIMENSIONS
from spanledger.pricing import PriceBook
from spanledger.server.app import create_app
from spanledger.server.config import ServeConfig
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
    _http: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @classmethod
    def build(cls, config: ServeConfig) -> Server:
        book = PriceBook.from_files(config.rates, use_defaults=config.use_default_prices)
        store = DuckDBStore(config.db)
        keys = {name: tuple(keys) for name, keys in (config.attribution or {}).items()}
        dimensions = Dimensions({**DEFAULT_DIMENSIONS, **keys})
        stats = Stats()
        pipeline = Pipeline(
            store,
            book,
            dimensions=dimensions,
            loop_threshold=config.loop_threshold,
            max_queued_spans=config.max_queued_spans,
            finalize_after=config.finalize_after_seconds,
            stats=stats,
        )
        stats.gauges["queued_spans"] = lambda: pipeline.queued_spans
        stats.gauges["open_traces"] = lambda: pipeline.open_traces
        app = create_app(pipeline, token=config.token, max_body_bytes=config.http.max_body_bytes)
        return cls(config, pipeline, store, app)

    @property
    def http_url(self) -> str:
        port = self.config.http.port
        if self._http is not None and self._http.servers:
            port = self._http.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.config.http.host}:{port}"

    def _uvicorn(self) -> uvicorn.Server:
        http = self.config.http
        return uvicorn.Server(
            uvicorn.Config(self.app, host=http.host, port=http.port, log_level="warning",
                           access_log=False, lifespan="off")
        )  # fmt: skip

    def _start_pipeline(self) -> None:
        self.pipeline.start()

    def start(self) -> Server:
        """Run in background threads; returns once the HTTP receiver accepts requests."""
        self._start_pipeline()
        self._http = self._uvicorn()
        self._thread = threading.Thread(target=self._http.run, name="spanledger-http", daemon=True)
        self._thread.start()
        while not self._http.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"HTTP receiver could not start on {self.http_url}")
            threading.Event().wait(0.01)
        return self

    def run(self) -> None:
        """Serve in the foreground until Ctrl-C; then store and finalize what is queued."""
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
        for stop in self.stoppers:
            stop()
        self.pipeline.stop()
        self.store.close()
