"""The receiver thread: requests decoded one at a time in arrival order, each answered with
what its decode raised or with the future of its durable spans; too many waiting requests
and requests at shutdown refused with `Backpressure`, over HTTP a 429 with Retry-After; a
request or batch nobody waits for any more neither lost nor breaking a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from serverkit import (
    MS,
    T0,
    S,
    eventually,
    get,
    post,
    request,
    running,
    span_id,
    status_of,
    trace_id,
)
from spanledger.pricing import PriceBook
from spanledger.server import pipeline as pipeline_module
from spanledger.server.otlp import OtlpDecodeError
from spanledger.server.pipeline import Backpressure, Pipeline
from spanledger.spans import SpanRecord
from spanledger.store.duckdb import DuckDBStore

Decode = Callable[[list[str]], Sequence[SpanRecord]]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    store = DuckDBStore(tmp_path / "ledger.duckdb")
    yield store
    store.close()


def spans(count: int, name: str = "step") -> list[SpanRecord]:
    tr = trace_id()
    return [SpanRecord(tr, span_id(), name=name, start_ns=T0, end_ns=T0 + MS) for _ in range(count)]


class Held:
    """A decode that blocks the receiver thread until released: a slow request."""

    def __init__(self, records: Sequence[SpanRecord]) -> None:
        self.records = records
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, rejected: list[str]) -> Sequence[SpanRecord]:
        self.entered.set()
        assert self.release.wait(30)
        return self.records


def test_requests_are_decoded_in_arrival_order_and_answered_once_stored(
    store: DuckDBStore,
) -> None:
    pipeline = Pipeline(store, PriceBook())
    decoded: list[int] = []

    def decode_for(number: int, records: Sequence[SpanRecord]) -> Decode:
        def decode(rejected: list[str]) -> Sequence[SpanRecord]:
            decoded.append(number)
            return records

        return decode

    batches = [spans(number + 1) for number in range(20)]
    # Queued before start: they wait for the receiver thread, in order.
    queued = [pipeline.receive(decode_for(n, b), []) for n, b in enumerate(batches)]
    assert pipeline.waiting_requests == 20
    pipeline.start()
    try:
        accepted = [future.result(30).result(30) for future in queued]
        assert decoded == list(range(20))
        assert accepted == [len(batch) for batch in batches]  # 1 + 2 + ... + 20 = 210
        assert pipeline.stats.get("spans_received") == 210
        assert pipeline.stats.get("spans_stored") == 210
        assert pipeline.waiting_requests == 0
    finally:
        pipeline.stop()


def test_a_failing_decode_fails_its_request_alone(store: DuckDBStore) -> None:
    pipeline = Pipeline(store, PriceBook())
    pipeline.start()
    try:

        def malformed(rejected: list[str]) -> Sequence[SpanRecord]:
            raise OtlpDecodeError("not an ExportTraceServiceRequest")

        def broken(rejected: list[str]) -> Sequence[SpanRecord]:
            raise RuntimeError("a decoder bug")

        records = spans(3)
        refused = pipeline.receive(malformed, [])
        crashed = pipeline.receive(broken, [])
        fine = pipeline.receive(lambda rejected: records, [])
        with pytest.raises(OtlpDecodeError, match="not an ExportTraceServiceRequest"):
            refused.result(30)
        with pytest.raises(RuntimeError, match="a decoder bug"):
            crashed.result(30)
        assert fine.result(30).result(30) == 3  # the receiver thread went on
        assert pipeline.stats.get("spans_received") == 3
    finally:
        pipeline.stop()


def test_a_request_given_up_before_its_turn_is_skipped(store: DuckDBStore) -> None:
    """A request whose future was cancelled (an HTTP client that went away) is not decoded,
    and the receiver thread goes on with the next one."""
    pipeline = Pipeline(store, PriceBook())
    called: list[str] = []

    def abandoned(rejected: list[str]) -> Sequence[SpanRecord]:
        called.append("decoded")
        return spans(1)

    gone = pipeline.receive(abandoned, [])
    assert gone.cancel()
    two = spans(2)
    kept = pipeline.receive(lambda rejected: two, [])
    pipeline.start()
    try:
        assert kept.result(30).result(30) == 2
        assert called == []
        assert pipeline.stats.get("spans_received") == 2
    finally:
        pipeline.stop()


def test_too_many_waiting_requests_are_refused_at_once(store: DuckDBStore) -> None:
    pipeline = Pipeline(store, PriceBook(), max_waiting_requests=2)
    pipeline.start()
    try:
        held = Held(spans(1))
        first = pipeline.receive(held, [])
        assert held.entered.wait(30)  # the receiver works on it: it no longer waits
        twos = [spans(2), spans(2)]
        waiting = [pipeline.receive(lambda rejected, r=records: r, []) for records in twos]
        assert pipeline.waiting_requests == 2
        refused = pipeline.receive(lambda rejected: spans(5), [])
        assert isinstance(refused.exception(0), Backpressure)
        assert refused.exception(0).retry_after == 1.0
        assert pipeline.stats.get("requests_throttled") == 1
        held.release.set()
        # Nothing else was lost: 1 + 2 + 2 spans stored.
        assert [f.result(30).result(30) for f in [first, *waiting]] == [1, 2, 2]
        assert pipeline.stats.get("spans_stored") == 5
    finally:
        pipeline.stop()


def test_stop_refuses_waiting_and_new_requests_without_decoding_them(
    store: DuckDBStore,
) -> None:
    pipeline = Pipeline(store, PriceBook())
    pipeline.start()
    held = Held(spans(1))
    first = pipeline.receive(held, [])
    assert held.entered.wait(30)
    called: list[str] = []

    def never(rejected: list[str]) -> Sequence[SpanRecord]:
        called.append("decoded")
        return spans(1)

    waiting = pipeline.receive(never, [])
    stopper = threading.Thread(target=pipeline.stop)
    stopper.start()
    eventually(lambda: pipeline._stopping, "stop() begun (it waits for the receiver thread)")
    held.release.set()
    stopper.join(30)
    assert not stopper.is_alive()
    for future in (first, waiting, pipeline.receive(never, [])):
        assert isinstance(future.exception(30), Backpressure)
        assert future.exception(30).retry_after == 5.0
    assert called == []


def test_waiting_requests_over_the_limit_get_429_with_retry_after(
    tmp_path: Path,
) -> None:
    """The receiver is held inside the first request (its store's encode blocks), the
    second waits (max_waiting_requests=1), the third is refused at once with 429."""
    with running(tmp_path, max_waiting_requests=1) as server, httpx.Client(timeout=30) as client:
        url = server.http_url
        store = server.pipeline.store
        entered, release = threading.Event(), threading.Event()
        encode = store.encode

        def slow_encode(priced: Sequence[object]) -> object:
            if not release.is_set():
                entered.set()
                assert release.wait(30)
            return encode(priced)

        store.encode = slow_encode  # type: ignore[method-assign]
        tr = trace_id()
        answers: list[int] = []

        def send(name: str) -> None:
            with httpx.Client(timeout=30) as own:
                answers.append(post(own, url, request([S(tr, span_id(), name=name)])).status_code)

        senders = [threading.Thread(target=send, args=(name,)) for name in ("A", "B")]
        senders[0].start()
        assert entered.wait(30)
        senders[1].start()
        eventually(
            lambda: get(client, url, "/healthz")["waiting_requests"] == 1,
            "the second request waits",
        )

        refused = post(client, url, request([S(tr, span_id(), name="C")]))
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert status_of(refused).code == 8  # RESOURCE_EXHAUSTED
        metrics = client.get(f"{url}/metrics").text
        assert "spanledger_requests_throttled 1\n" in metrics
        assert "spanledger_waiting_requests 1\n" in metrics

        release.set()
        for sender in senders:
            sender.join(30)
        assert answers == [200, 200]
        server.pipeline.flush()
        assert server.pipeline.stats.get("spans_stored") == 2


def test_a_queued_batch_is_stored_even_if_nobody_waits_for_it(store: DuckDBStore) -> None:
    """An HTTP client that goes away cancels the asyncio future wrapping its batch's future:
    that must neither take the batch from the writer nor break the writer."""
    pipeline = Pipeline(store, PriceBook())
    queued = pipeline.submit(spans(3))  # the writer is not started: the batch waits
    assert not queued.cancel()
    pipeline.start()
    try:
        assert queued.result(30) == 3
        assert pipeline.submit(spans(2)).result(30) == 2  # the writer goes on
        assert pipeline.stats.get("spans_stored") == 5
    finally:
        pipeline.stop()


class ThreadClock:
    """The pipeline module's `time`, with a `perf_counter` that runs ahead, for one thread,
    by what that thread `advance`s it: work that "takes" 1,000 s, without waiting."""

    monotonic = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self.ahead: dict[str, float] = {}

    def perf_counter(self) -> float:
        return time.perf_counter() + self.ahead.get(threading.current_thread().name, 0.0)

    def advance(self, seconds: float) -> None:
        name = threading.current_thread().name
        self.ahead[name] = self.ahead.get(name, 0.0) + seconds


def test_busy_seconds_count_work_not_waiting_and_are_on_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`spanledger_receiver_busy_seconds`, `spanledger_writer_busy_seconds`: time each thread
    spent on requests and batches. A thread waiting for work adds nothing; a decode that
    takes 1,000 s (on the receiver's clock) adds at least that, and so does a listener that
    takes 1,000 s of the writer's round."""
    clock = ThreadClock()
    monkeypatch.setattr(pipeline_module, "time", clock)
    with running(tmp_path) as server, httpx.Client(timeout=30) as client:
        stats = server.pipeline.stats
        assert stats.get("receiver_busy_seconds") == 0  # it has only waited for work

        records = spans(3)

        def slow_decode(rejected: list[str]) -> Sequence[SpanRecord]:
            clock.advance(1000)  # on the receiver thread
            return records

        server.pipeline.listeners.append(lambda stored: clock.advance(1000))  # the writer's
        assert server.pipeline.receive(slow_decode, []).result(30).result(30) == 3
        assert stats.get("receiver_busy_seconds") >= 1000
        eventually(lambda: stats.get("writer_busy_seconds") >= 1000, "the writer's time counted")

        lines = client.get(f"{server.http_url}/metrics").text.splitlines()
        busy = {
            name: float(value)
            for name, _, value in (line.partition(" ") for line in lines)
            if name in ("spanledger_receiver_busy_seconds", "spanledger_writer_busy_seconds")
        }
        assert busy["spanledger_receiver_busy_seconds"] >= 1000
        assert busy["spanledger_writer_busy_seconds"] >= 1000
        assert "# TYPE spanledger_receiver_busy_seconds counter" in lines
        assert "# TYPE spanledger_writer_busy_seconds counter" in lines
