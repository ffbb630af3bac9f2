"""Memory policy for the server's own process: freeze what survives, collect rarely, and
keep Arrow's buffers on the C library's allocator.

Every span of an open trace lives for the idle window (~10^6 objects under load) and is in
no reference cycle, yet CPython's generational collector walked each one in generation 0 and
again in generation 1 before its reference count freed it: 4.2 µs of GIL time per span in
`benchmarks/ingest.py`, about an eighth of the server's serial work. `gc.freeze()` moves
every object alive into the permanent generation, which collections skip; reference counting
still frees those objects the moment they are unused. What a freeze hides is cyclic garbage
that was alive when frozen, so every few minutes `gc.unfreeze()` and one full collection
(~0.15 s for 3 million objects) find it.

Each request's Arrow table (~0.7 MB) is built and freed within milliseconds. pyarrow's default
pool, mimalloc, handed the freed pages back to the kernel and faulted them in again as 2 MB
huge pages, zeroed each time (4% of the server's CPU under `perf`); glibc's malloc keeps them
for the next request.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

import pyarrow as pa

log = logging.getLogger("spanledger.server")

# `gc.set_threshold` for the server's process (CPython's defaults: 700, 10, 10): the young
# generation collected every 50,000 allocations, the older ones far less often still.
GC_THRESHOLDS = (50_000, 20, 100)


class HeapFreezer:
    """A thread that calls `gc.freeze()` every `freeze_every` seconds and runs a full
    collection every `collect_every` seconds. For a process of its own (`spanledger serve`):
    freezing is process-wide."""

    def __init__(self, freeze_every: float = 0.05, collect_every: float = 300.0) -> None:
        self.freeze_every = freeze_every
        self.collect_every = collect_every
        self.collections = 0  # full collections run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spanledger-gc", daemon=True)

    def start(self) -> HeapFreezer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop freezing and hand every frozen object back to the collector."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        gc.unfreeze()

    def collect(self) -> int:
        """One full collection over every object, frozen ones included; the number of
        unreachable objects found."""
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        self.collections += 1
        log.debug(
            "spanledger: full garbage collection: %d unreachable objects, %.0f ms",
            found,
            (time.perf_counter() - started) * 1e3,
        )
        return found

    def _run(self) -> None:
        next_collection = time.monotonic() + self.collect_every
        while not self._stop.wait(self.freeze_every):
            try:
                if time.monotonic() >= next_collection:
                    self.collect()
                    next_collection = time.monotonic() + self.collect_every
                gc.freeze()
            except Exception:  # never let the host's heap policy take the server down
                log.exception("spanledger: garbage collection policy failed")


def arrow_on_malloc() -> None:
    """Allocate Arrow buffers with the C library's malloc from now on (process-wide). Under
    the ingest benchmark's load this took encoding from 7.4-7.7 to 5.9-6.3 CPU µs a span,
    the attributes' JSON column alone from 2.7-3.3 to 2.0."""
    pa.set_memory_pool(pa.system_memory_pool())
