"""FinalizedFilter: a trace never finalized is answered in memory; a finalized one never is."""

from __future__ import annotations

import random
from pathlib import Path

from spanledger.pricing import PriceBook
from spanledger.server.finalized import BUCKETS, FinalizedFilter, bucket
from spanledger.server.pipeline import Pipeline
from spanledger.spans import SpanRecord
from spanledger.store.duckdb import DuckDBStore


def trace_ids(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(128):032x}" for _ in range(count)]


def test_added_traces_are_maybe_and_unknown_ones_mostly_no() -> None:
    finalized = FinalizedFilter(size=1 << 16)
    added, other = trace_ids(500, 1), trace_ids(2000, 2)
    for trace_id in added:
        finalized.add(trace_id)
    assert all(trace_id in finalized for trace_id in added)  # never a false "no"
    # 500 of 65,536 buckets set: about 0.8% false positives expected; 5% is a broken hash.
    assert sum(trace_id in finalized for trace_id in other) < 100


def test_the_bucket_is_the_low_64_bits_of_the_id() -> None:
    assert bucket("0" * 16 + "00000000000000ff", 1 << 4) == 0xF
    assert bucket("f" * 16 + "0000000000000100", 1 << 8) == 0
    assert bucket("not hex at all, not hex at all!!") == 0  # never raises


def test_the_store_gives_the_buckets_of_every_finalized_trace(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "ledger.duckdb")
    pipeline = Pipeline(store, PriceBook(), finalize_after=3600)
    pipeline.start()
    ids = trace_ids(50, 3)
    open_id = ids.pop()
    records = [SpanRecord(trace_id, f"{index + 1:016x}", start_ns=1, end_ns=2)
               for index, trace_id in enumerate(ids)]  # fmt: skip
    try:
        pipeline.submit(records).result(10)
        pipeline.flush(finalize=True)
        pipeline.submit([SpanRecord(open_id, "00000000000000aa", start_ns=1)]).result(10)
        pipeline.flush()  # stored, not finalized
        buckets = store.finalized_buckets(BUCKETS)
    finally:
        pipeline.stop()
        store.close()
    assert sorted(buckets) == sorted({bucket(trace_id) for trace_id in ids})
    assert bucket(open_id) not in buckets  # an open trace is not finalized
    reopened = FinalizedFilter(buckets)
    assert all(trace_id in reopened for trace_id in ids)
