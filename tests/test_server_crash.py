"""Durability: `spanledger serve` killed with SIGKILL mid-stream keeps every span it
acknowledged, and counts a re-sent batch once after the restart.

The server runs as users run it: the installed console script, in a subprocess, on a DuckDB
file in tmp_path, configured by a YAML file. Batches are raw OTLP protobuf POSTs built with
`opentelemetry.proto`; a batch counts as acknowledged only when it got a 200.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import httpx
import pytest

from serverkit import S, llm, post, request, running, span_id, trace_id, write_rates
from spanledger.pricing import PriceBook
from spanledger.server.otlp import decode_protobuf
from spanledger.store.duckdb import DuckDBStore
from spanledger.traces import TraceAssembler

SPANLEDGER = Path(sys.executable).parent / "spanledger"
SPANS_PER_BATCH = 50
BATCHES_PER_TRACE = 4
# Every span is a house-llm call of 100 input / 10 output tokens:
# 100 * 2e9 + 10 * 8e9 = 200e9 + 80e9 = 280e9 femto-$ = $0.00028 (roots included).
SPAN_COST = Decimal("0.00028")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServeProcess:
    """`spanledger serve` in a subprocess; output goes to a log file, never a pipe."""

    def __init__(self, tmp_path: Path, db: Path, name: str) -> None:
        config = tmp_path / "spanledger.yaml"
        config.write_text(
            f"rates: [{write_rates(tmp_path)}]\n"
            "use_default_prices: false\n"
            "finalize_after_seconds: 0.2\n",
            encoding="utf-8",
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"{name}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(SPANLEDGER), "serve", "--db", str(db), "--http-port", str(self.port),
                    "--grpc-port", "0", "--config", str(config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "SPANLEDGER_TOKEN": ""},
            )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self) -> None:
        with httpx.Client(timeout=2) as client:
            for _ in range(600):
                if self.process.poll() is not None:
                    raise AssertionError(f"serve exited: {self.log.read_text()}")
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                threading.Event().wait(0.05)
        raise AssertionError(f"serve never answered /healthz: {self.log.read_text()}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        """A graceful stop (SIGTERM): store what is queued, finalize, close the file."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for process in started:  # whatever a failing test left running
        if process.process.poll() is None:
            process.kill()


def batch(number: int, traces: dict[int, tuple[str, str]]) -> list[S]:
    """Batch `number`: spans of trace number // 4, children first; the trace's root
    arrives in its last batch (so the earlier batches' spans are orphans until then)."""
    key = number // BATCHES_PER_TRACE
    tr, root = traces.setdefault(key, (trace_id(), span_id()))
    spans = [
        S(
            tr,
            span_id(),
            root,
            "chat",
            start=number,
            end=number + 1,
            attrs=llm("house-llm", 100, 10),
        )
        for _ in range(SPANS_PER_BATCH)
    ]
    if number % BATCHES_PER_TRACE == BATCHES_PER_TRACE - 1:
        spans[-1] = S(tr, root, name="root", end=10_000, attrs=llm("house-llm", 100, 10))
    return spans


def test_sigkill_mid_stream_keeps_every_acknowledged_span(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    db = tmp_path / "ledger.duckdb"
    first = ServeProcess(tmp_path, db, "first")
    processes.append(first)

    traces: dict[int, tuple[str, str]] = {}
    bodies = [request(batch(number, traces)) for number in range(400)]
    acknowledged: list[int] = []
    failed: list[str] = []

    def stream() -> None:
        with httpx.Client(timeout=10) as client:
            for number, body in enumerate(bodies):
                try:
                    response = post(client, first.url, body)
                except httpx.TransportError as error:
                    failed.append(f"{number}: {type(error).__name__}")
                    return
                if response.status_code == 200:
                    acknowledged.append(number)
                else:
                    failed.append(f"{number}: {response.status_code}")
                    return

    sender = threading.Thread(target=stream)
    sender.start()
    for _ in range(6000):  # until 30 batches are acknowledged, then kill mid-stream
        if len(acknowledged) >= 30 or not sender.is_alive():
            break
        threading.Event().wait(0.005)
    first.kill()
    sender.join(30)
    assert len(acknowledged) >= 30, failed
    assert len(acknowledged) < len(bodies), "the stream finished before the kill"
    assert acknowledged == list(range(len(acknowledged)))  # sent in order, all 200
    acked_spans = {
        (s.trace, s.span) for number in acknowledged for s in batch_spans(bodies[number])
    }

    second = ServeProcess(tmp_path, db, "second")
    processes.append(second)
    with httpx.Client(timeout=30) as client:
        before = client.get(f"{second.url}/api/costs").json()["totals"]
        assert before["spans"] >= len(acked_spans)
        assert Decimal(before["cost"]) == before["spans"] * SPAN_COST
        # re-send acknowledged batches (one whose trace root was stored, and the last one)
        for number in (3, acknowledged[-1]):
            assert post(client, second.url, bodies[number]).status_code == 200
        after = client.get(f"{second.url}/api/costs").json()["totals"]
        assert after == before
        # the acknowledged spans are there through the API too
        some_trace = traces[0][0]
        detail = client.get(f"{second.url}/api/traces/{some_trace}").json()
        assert len(detail["spans"]) == SPANS_PER_BATCH * BATCHES_PER_TRACE
    second.stop()
    assert second.process.returncode is not None

    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT trace_id, span_id FROM spans").fetchall()
        total = con.execute("SELECT sum(cost) FROM spans").fetchone()[0]
    assert acked_spans <= set(stored)
    assert len(stored) == len(set(stored))  # nothing twice
    assert Decimal(total) == len(stored) * 280 * 10**9


def batch_spans(body: bytes) -> list[S]:
    return [S(record.trace_id, record.span_id) for record in decode_protobuf(body)]


def test_traces_stored_but_not_finalized_before_a_crash_are_finalized_after_restart(
    tmp_path: Path,
) -> None:
    """The state a SIGKILL between ack and finalization leaves (spans on disk, no trace
    row), made directly with the store, then a normal server started on the file."""
    tr, root, call = trace_id(), span_id(), span_id()
    records = decode_protobuf(
        request(
            [
                S(tr, root, name="root", end=10, attrs={"user.id": "u-crash"}),
                S(tr, call, root, "chat", start=1, end=2, attrs=llm("house-llm", 1000, 100)),
            ]
        )
    )
    book = PriceBook.from_files([str(write_rates(tmp_path))], use_defaults=False)
    store = DuckDBStore(tmp_path / "ledger.duckdb")
    assert store.append([TraceAssembler(book).price(record) for record in records]) == 2
    store.close()

    with running(tmp_path) as server, httpx.Client(timeout=30) as client:
        server.pipeline.flush(finalize=True)
        listed = client.get(f"{server.http_url}/api/traces").json()["traces"]
        assert [t["trace_id"] for t in listed] == [tr]
        by_user = client.get(f"{server.http_url}/api/costs", params={"group_by": "user"})
        assert by_user.json()["rows"][0]["user"] == "u-crash"
