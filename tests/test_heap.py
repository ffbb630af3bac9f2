"""HeapFreezer: frozen objects are still freed, and frozen cycles still get collected;
`arrow_on_malloc` moves Arrow's allocations to the C library's malloc."""

from __future__ import annotations

import gc
import threading
import weakref

import pyarrow as pa
import pytest

from serverkit import eventually
from spanledger.server.heap import HeapFreezer, arrow_on_malloc


class Node:
    """A stand-in for a span held by an open trace."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def _thaw():
    yield
    gc.unfreeze()  # whatever a test froze goes back to the collector


def test_a_frozen_object_is_freed_by_its_reference_count() -> None:
    node = Node()
    alive = weakref.ref(node)
    gc.freeze()
    assert gc.get_freeze_count() > 0
    del node
    assert alive() is None  # no collection needed: frozen is not kept


def test_a_frozen_cycle_survives_collections_until_the_full_one() -> None:
    first, second = Node(), Node()
    first.other, second.other = second, first
    alive = weakref.ref(first)
    gc.freeze()
    del first, second
    gc.collect()  # every generation, but not the permanent one
    assert alive() is not None
    found = HeapFreezer().collect()
    assert alive() is None
    assert found >= 2
    assert gc.get_freeze_count() == 0  # what survives is frozen again on the next tick


def test_the_thread_freezes_collects_and_thaws_on_stop() -> None:
    freezer = HeapFreezer(freeze_every=0.01, collect_every=0.05).start()
    try:
        frozen = 0

        def frozen_and_collected_twice() -> bool:
            nonlocal frozen
            frozen = max(frozen, gc.get_freeze_count())
            return freezer.collections >= 2 and frozen > 0

        eventually(frozen_and_collected_twice, "the freezer froze and collected", timeout=10)
        assert frozen > 0
        assert freezer.collections >= 2
    finally:
        freezer.stop()
    assert gc.get_freeze_count() == 0
    # stopped: its thread has ended (stop() joined it), so nothing freezes or collects again
    assert "spanledger-gc" not in {thread.name for thread in threading.enumerate()}


def test_arrow_buffers_come_from_malloc_after_arrow_on_malloc() -> None:
    before = pa.default_memory_pool()
    try:
        arrow_on_malloc()
        assert pa.default_memory_pool().backend_name == "system"
        system = pa.system_memory_pool()
        held = system.bytes_allocated()
        column = pa.array(range(100_000), pa.int64())  # 800 kB, from the default pool
        assert system.bytes_allocated() >= held + 800_000
        del column
    finally:
        pa.set_memory_pool(before)
