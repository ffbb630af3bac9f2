"""Ingest pipeline: decoded spans -> priced -> stored durably -> traces finalized.

Receivers (HTTP, gRPC) hand each request to the receiver thread (`receive`), which
decodes, prices and encodes it (`submit`) and queues the batch for the one writer thread
through a bounded queue; the receiver then waits for the batch's future: it resolves only
after the spans are committed to the store, so an acknowledged span is on disk. A full
queue is refused at once (`Backpressure`), never buffered without bound. The writer owns
trace assembly and the store: it commits whatever has queued up in one transaction (group
commit), which is what makes per-request durability affordable, and finalizes idle traces
in rounds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from spanledger.pricing import PriceBook
from spanledger.pricing.money import Femto
from spanledger.server.finalized import BUCKETS, FinalizedFilter
from spanledger.server.stats import Stats
from spanledger.spans import SpanRecord
from spanledger.store import Store
from spanledger.traces import DEFAULT_LOOP_THRESHOLD, Dimensions, PricedSpan, Trace

log = logging.getLogger("spanledger.server")


class Backpressure(Exception):
    """The ingest queue is full: the client should retry after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"ingest queue full; retry after {retry_after:g}s")
        self.retry_after = retry_after


def _running() -> Future[int]:
    """A future that cannot be cancelled: a queued batch is stored even if the receiver
    stops waiting for it (`asyncio.wrap_future` cancels what it wraps)."""
    future: Future[int] = Future()
    future.set_running_or_notify_cancel()
    return future


@dataclass
class _Batch:
    spans: Sequence[PricedSpan]
    encoded: Any = None  # the spans in the store's row format
    finalize_all: bool = False  # a barrier: finalize every open trace once stored
    done: Future[int] = field(default_factory=_running)


@dataclass
class _Request:
    decode: Callable[[list[str]], Sequence[SpanRecord]]
    rejected: list[str]
    queued: Future[Future[int]]


@dataclass
class _OpenTrace:
    trace: Trace
    last_seen: float  # monotonic seconds of the last span
    has_root: bool = False  # its root span has arrived


Listener = Callable[[Sequence[PricedSpan]], None]
FinalizedListener = Callable[[Sequence[Trace]], None]


class Pipeline:
    """Prices, stores and assembles spans. `submit` from any thread; one writer thread."""

    def __init__(
        self,
        store: Store,
        book: PriceBook,
        *,
        dimensions: Dimensions | None = None,
        loop_threshold: int = DEFAULT_LOOP_THRESHOLD,
        max_queued_spans: int = 100_000,
        max_waiting_requests: int = 64,
        finalize_after: float = 10.0,
        stats: Stats | None = None,
    ) -> None:
        self.store = store
        self.book = book
        self.dimensions = dimensions or Dimensions()
        self.loop_threshold = loop_threshold
        self.max_queued_spans = max_queued_spans
        self.max_waiting_requests = max_waiting_requests
        self.finalize_after = finalize_after
        self.stats = stats or Stats()
        self.listeners: list[Listener] = []  # called with each stored batch (forwarding, alerts)
        self.finalized_listeners: list[FinalizedListener] = []  # with each finalized group
        self._queue: deque[_Batch] = deque()
        self._queued_spans = 0
        self._wake = threading.Condition()
        self._open: OrderedDict[str, _OpenTrace] = OrderedDict()  # least recently seen first
        self._stopping = False
        self._finalized_at = 0.0  # monotonic time of the last finalization round
        # Until start() reads the ledger, every trace may have been finalized: ask the store.
        self._finalized = FinalizedFilter(range(8), size=8)
        # Requests waiting for the receiver thread, which decodes, prices and encodes them
        # one at a time, in arrival order. That work holds the GIL: receivers doing it on
        # their own threads starved the writer (the serial step) of the GIL, and a lock
        # taking turns between them cost ~1.5 ms a handoff. With 10 clients: 26,600
        # (threads) -> 45,500 (lock) -> 53,600 (this thread) durable spans/s, medians.
        self._requests: deque[_Request | None] = deque()  # None: the receiver stops
        self._arrived = threading.Condition()
        self._receiver = threading.Thread(
            target=self._receive_all, name="spanledger-receiver", daemon=True
        )
        self._thread = threading.Thread(target=self._run, name="spanledger-writer", daemon=True)

    # -- receivers' side -------------------------------------------------------------------
    def start(self) -> None:
        """Start the receiver and the writer, once the ledger is read (`resume`)."""
        self.resume()
        self._thread.start()
        self._receiver.start()

    def resume(self) -> None:
        """Read what earlier runs left in the ledger: which traces are finalized, and the
        traces a previous run stored but did not get to finalize (it stopped or crashed
        within their idle window), reopened."""
        self._finalized = FinalizedFilter(self.store.finalized_buckets(BUCKETS), BUCKETS)
        now = time.monotonic()
        for trace_id in self.store.unfinalized_traces():
            self._file(self.store.load_trace(trace_id), now)

    def receive(
        self, decode: Callable[[list[str]], Sequence[SpanRecord]], rejected: list[str]
    ) -> Future[Future[int]]:
        """What every OTLP receiver does with a request: hand it to the receiver thread,
        which decodes it (`decode(rejected)`, which raises for a malformed body), counts its
        spans received and rejected, and `submit`s them. The future resolves once the spans
        are queued, to the future that resolves once they are durable; it raises what
        `decode` raised, or `Backpressure` (the ingest queue is full, too many requests
        wait to be decoded, or the pipeline is stopping)."""
        queued: Future[Future[int]] = Future()
        with self._arrived:
            if self._stopping:
                queued.set_exception(Backpressure(retry_after=5.0))
            elif len(self._requests) >= self.max_waiting_requests:
                self.stats.count("requests_throttled")
                queued.set_exception(Backpressure(retry_after=1.0))
            else:
                self._requests.append(_Request(decode, rejected, queued))
                self._arrived.notify()
        return queued

    def _receive_all(self) -> None:
        """The receiver thread: each request in turn, until `stop`."""
        requests = self._requests
        while True:
            with self._arrived:
                while not requests:
                    self._arrived.wait()
                request = requests.popleft()
            if request is None:
                return
            if not request.queued.set_running_or_notify_cancel():
                continue  # its receiver stopped waiting (the client went away)
            if self._stopping:  # not decoded: the client sends it again later
                request.queued.set_exception(Backpressure(retry_after=5.0))
                continue
            began = time.perf_counter()
            try:
                request.queued.set_result(self._receive(request.decode, request.rejected))
            except BaseException as error:  # the receiver answers it; this thread goes on
                request.queued.set_exception(error)
            self.stats.count("receiver_busy_seconds", time.perf_counter() - began)

    def _receive(
        self, decode: Callable[[list[str]], Sequence[SpanRecord]], rejected: list[str]
    ) -> Future[int]:
        records = decode(rejected)
        self.stats.count("spans_received", len(records) + len(rejected))
        undecodable = len(rejected)
        self.stats.count("spans_rejected", undecodable)
        done = self.submit(records, rejected)
        self.stats.count("spans_rejected", len(rejected) - undecodable)
        return done

    def submit(
        self, records: Sequence[SpanRecord], rejected: list[str] | None = None
    ) -> Future[int]:
        """Price and encode a batch on this thread, then queue it; the future gives the
        number of spans accepted once they are durable. A span that cannot be priced or
        stored is left out with its reason appended to `rejected` (partial success)."""
        if records:
            self._admit(len(records))  # refuse before pricing what cannot be queued
        try:
            spans = [self._price(record) for record in records]
            encoded = self.store.encode(spans)
        except Exception:  # a span nothing foresaw: find it, keep the others
            log.exception("spanledger: a batch of %d spans could not be encoded", len(records))
            spans, encoded = self._prepare_one_by_one(records, rejected)
        if not spans:
            done: Future[int] = Future()
            done.set_result(0)
            return done
        batch = _Batch(spans, encoded)
        with self._wake:
            self._admit(len(spans))
            self._queue.append(batch)
            self._queued_spans += len(spans)
            self._wake.notify()
        return batch.done

    def _prepare_one_by_one(
        self, records: Sequence[SpanRecord], rejected: list[str] | None
    ) -> tuple[list[PricedSpan], Any]:
        spans: list[PricedSpan] = []
        for record in records:
            try:
                span = self._price(record)
                self.store.encode([span])
            except Exception as error:
                problem = f"span {record.span_id} of trace {record.trace_id}: not storable: {error}"
                if rejected is not None:
                    rejected.append(problem)
                log.warning("spanledger: %s", problem)
                continue
            spans.append(span)
        return spans, self.store.encode(spans)

    def _admit(self, count: int) -> None:
        if self._stopping:
            raise Backpressure(retry_after=5.0)
        if self._queued_spans + count > self.max_queued_spans and self._queue:
            self.stats.count("spans_throttled", count)
            raise Backpressure(retry_after=1.0)

    @property
    def queued_spans(self) -> int:
        return self._queued_spans

    @property
    def waiting_requests(self) -> int:
        """Requests waiting for the receiver thread (the one it works on not counted)."""
        return len(self._requests)

    @property
    def open_traces(self) -> int:
        return len(self._open)

    def open_trace(self, trace_id: str) -> Trace | None:
        """The open (not yet finalized) trace with this id, holding every span seen so far.
        For listeners, on the writer thread only: the writer changes it between batches."""
        entry = self._open.get(trace_id)
        return entry.trace if entry is not None else None

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new requests, answer those waiting, store what is queued, finalize every
        open trace, and stop the receiver and the writer."""
        with self._arrived, self._wake:
            self._stopping = True
            self._requests.append(None)  # after the requests waiting: they are refused
            self._arrived.notify()
            self._wake.notify()
        if self._receiver.is_alive():
            self._receiver.join(timeout)
        self._thread.join(timeout)

    def flush(self, *, finalize: bool = False, timeout: float = 30.0) -> None:
        """Wait until everything submitted so far is stored, and with `finalize` until
        every open trace is finalized (tests, demos, shutdown)."""
        barrier = _Batch((), finalize_all=finalize)
        with self._wake:
            self._queue.append(barrier)
            self._wake.notify()
        barrier.done.result(timeout)

    # -- the writer thread -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._queue and not self._stopping:
                    self._wake.wait(timeout=min(1.0, self.finalize_after / 2 or 0.1))
                batches = list(self._queue)
                self._queue.clear()
                stopping = self._stopping
            began = time.perf_counter()
            if batches:
                self._store(batches)
            everything = any(batch.finalize_all for batch in batches) or stopping
            now = time.monotonic()
            # Finalize in rounds, not after every commit: a round's fixed cost in the store
            # (a few statements) is then shared by many traces.
            if everything or now - self._finalized_at >= min(1.0, self.finalize_after / 4):
                self._finalized_at = now
                try:
                    self._finalize(everything=everything)
                except Exception:
                    log.exception("spanledger: finalizing traces failed; will retry")
            for batch in batches:
                if not batch.spans and not batch.done.done():
                    batch.done.set_result(0)  # a barrier: everything before it is done
            self.stats.count("writer_busy_seconds", time.perf_counter() - began)
            if stopping and not self._queue:
                return

    def _store(self, batches: list[_Batch]) -> None:
        batches = [batch for batch in batches if batch.spans]
        if not batches:
            return
        count = sum(len(batch.spans) for batch in batches)
        try:
            stored, reopened = self._commit(batches)
        finally:
            with self._wake:
                self._queued_spans -= count
        if not stored:
            return
        self._account(stored)
        now = time.monotonic()
        self._file(stored, now)
        for trace_id in reopened:
            # A late span reopened a finalized trace: assemble it with what was stored.
            trace = self._open[trace_id].trace
            self._file(
                [old for old in self.store.load_trace(trace_id) if old.span_id not in trace.spans],
                now,
            )
        for listener in self.listeners:
            try:
                listener(stored)
            except Exception:
                log.exception("spanledger: a listener failed on %d spans", len(stored))

    def _commit(
        self, batches: list[_Batch], committed: set[tuple[str, str]] | None = None
    ) -> tuple[list[PricedSpan], set[str]]:
        """Store the batches' new spans in one transaction and answer them; give the spans
        stored and the finalized traces they reopen. If that fails, store the batches one by
        one, so one unstorable request fails alone, not its neighbours in the group
        (`committed`: the (trace, span) ids those stored so far, added to as they are).
        Copies of stored spans are acknowledged too: OTLP has no "duplicate" answer."""
        try:
            fresh, reopened = self._fresh(batches, committed or set())
            encoded = [
                batch.encoded if len(spans) == len(batch.spans) else self.store.encode(spans)
                for batch, spans in zip(batches, fresh, strict=True)
            ]
            written = self.store.write(encoded)
        except Exception as error:
            if len(batches) == 1:
                log.exception("spanledger: storing %d spans failed", len(batches[0].spans))
                batches[0].done.set_exception(error)
                return [], set()
            stored, reopened = [], set()
            committed = set() if committed is None else committed
            for batch in batches:
                one_stored, one_reopened = self._commit([batch], committed)
                stored += one_stored
                reopened |= one_reopened
            return stored, reopened
        stored = [span for spans in fresh for span in spans]
        if committed is not None:  # one batch of a group stored one by one
            committed.update((span.record.trace_id, span.record.span_id) for span in stored)
        received = 0
        for batch in batches:
            received += len(batch.spans)
            batch.done.set_result(len(batch.spans))
        self.stats.count("spans_stored", written)
        self.stats.count("spans_duplicate", received - written)
        return stored, reopened

    def _fresh(
        self, batches: list[_Batch], committed: set[tuple[str, str]]
    ) -> tuple[list[list[PricedSpan]], set[str]]:
        """Each batch's spans that are not stored yet, each once, and the finalized traces
        they reopen. Open traces hold every stored span of theirs in memory; a span of any
        other trace is looked up in the store only if that trace was finalized."""
        seen = set(committed)
        fresh: list[list[PricedSpan]] = []
        unopened: set[str] = set()
        open_traces = self._open
        for batch in batches:
            new: list[PricedSpan] = []
            for span in batch.spans:
                record = span.record
                key = (record.trace_id, record.span_id)
                if key in seen:
                    continue
                seen.add(key)
                entry = open_traces.get(record.trace_id)
                if entry is None:
                    unopened.add(record.trace_id)
                elif record.span_id in entry.trace.spans:
                    continue
                new.append(span)
            fresh.append(new)
        maybe = [trace_id for trace_id in unopened if trace_id in self._finalized]
        reopened = self.store.finalized_among(maybe) if maybe else set()
        if reopened:
            stored = self.store.stored_span_ids(list(reopened))
            fresh = [
                [span for span in new if (span.record.trace_id, span.span_id) not in stored]
                for new in fresh
            ]
            reopened &= {span.record.trace_id for new in fresh for span in new}
        return fresh, reopened

    def _price(self, record: SpanRecord) -> PricedSpan:
        call = self.book.price_attributes(
            record.attributes, record.start_ns, record.resource, failed=record.failed
        )
        return PricedSpan(record, call.usage, call.cost, call.provider, call.model)

    def _account(self, priced: Sequence[PricedSpan]) -> None:
        totals: dict[tuple[str, str, str], Femto] = {}
        for span in priced:
            status = span.cost.status
            if status is None:
                continue
            key = (span.provider or "unknown", span.model or "unknown", status)
            totals[key] = totals.get(key, 0) + span.cost.total
        for key, amount in totals.items():
            self.stats.add_cost(key, amount)

    def _file(self, spans: Iterable[PricedSpan], now: float) -> None:
        """Add stored spans to their open traces (opening those not open yet)."""
        open_traces = self._open
        for span in spans:
            record = span.record
            record.attributes_json = None  # stored: not needed while the trace stays open
            entry = open_traces.get(record.trace_id)
            if entry is None:
                trace = Trace(
                    record.trace_id, dimensions=self.dimensions, loop_threshold=self.loop_threshold
                )
                entry = open_traces[record.trace_id] = _OpenTrace(trace, now)
            else:
                open_traces.move_to_end(record.trace_id)
            entry.trace.add(span)
            entry.last_seen = now
            if not record.parent_span_id:
                entry.has_root = True

    def _finalize(self, *, everything: bool = False) -> None:
        """Finalize traces whose root has ended and that saw no span for the idle window:
        store rollups, inherited attribution and flags, and the trace's summary."""
        now = time.monotonic()
        ready: list[str] = []
        for trace_id, entry in self._open.items():  # least recently seen first
            idle = now - entry.last_seen
            if not everything and idle < self.finalize_after:
                break
            if everything or entry.has_root or idle >= 6 * self.finalize_after:
                ready.append(trace_id)
        if not ready:
            return
        derived: list[PricedSpan] = []
        summaries = []
        finalized: list[Trace] = []
        for trace_id in ready:
            trace = self._open.pop(trace_id).trace
            self._finalized.add(trace_id)
            finalized.append(trace)
            trace.assemble()
            derived.extend(trace.spans.values())
            summaries.append(trace_summary(trace))
        self.store.update_derived(derived)
        self.store.save_traces(summaries)
        self.stats.count("traces_finalized", len(summaries))
        for listener in self.finalized_listeners:  # assembled traces, on the writer thread
            try:
                listener(finalized)
            except Exception:
                log.exception("spanledger: a listener failed on %d traces", len(finalized))


def trace_summary(trace: Trace) -> dict[str, Any]:
    """The row a finalized trace leaves in the `traces` table."""
    root = trace.root
    first = trace.spans[trace.roots[0]] if trace.roots else None
    head = root or first
    attribution = head.attribution if head else {}
    spans = trace.spans.values()
    return {
        "trace_id": trace.trace_id,
        "root_name": root.record.name if root else None,
        "start_time": trace.start_ns,
        "end_time": trace.end_ns,
        "cost": trace.cost,
        "retry_overhead": trace.retry_overhead,
        "loop_cost": trace.loop_cost,
        "spans": len(trace.spans),
        "llm_calls": sum(1 for span in spans if span.is_llm),
        "unpriced": trace.count("unpriced"),
        "invalid": trace.count("invalid_usage"),
        "loops": len(trace.loops),
        "complete": trace.complete,
        "user_id": attribution.get("user"),
        "department": attribution.get("department"),
        "tenant": attribution.get("tenant"),
        "agent": attribution.get("agent"),
        "conversation": attribution.get("conversation"),
        "service": attribution.get("service"),
        "models": sorted({span.model for span in spans if span.model}),
        "agents": sorted({a for span in spans if (a := span.attribution.get("agent"))}),
    }
