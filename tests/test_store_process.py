"""ProcessStore: the ledger in a process of its own, as `spanledger serve` runs it.

What the store answers is tested on both stores in test_store.py; these tests cover what
only the process adds: rows too large for the shared memory, errors that cross back, many
threads at once, a ledger another process holds, and a store process that must not outlive
the server, even one killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from serverkit import eventually
from spanledger.store import TraceFilter
from spanledger.store.duckdb import DuckDBStore
from spanledger.store.process import ProcessStore, StoreProcessError
from test_store import TRACE, priced, sid


def test_rows_larger_than_the_shared_memory_go_through_the_socket(tmp_path: Path) -> None:
    """64 KiB of shared memory, 400 spans with 1 KB of attributes each (~400 KB of rows):
    the group is sent with the call instead, and every span is stored once with its cost."""
    store = ProcessStore(tmp_path / "ledger.duckdb", shared_bytes=64 << 10)
    try:
        padding = {"note": "x" * 1000}
        spans = [priced(n, femto=7, attributes=padding) for n in range(400)]
        small = [priced(1000 + n, femto=7) for n in range(3)]  # fits: shared memory
        assert store.write([store.encode(spans)]) == 400
        assert store.write([store.encode(small)]) == 3
        # 403 spans x 7 femto-$ = 2,821 femto-$
        assert store.totals() == {"spans": 403, "traces": 1, "cost": Decimal(2821)}
        assert len(store.stored_span_ids([TRACE])) == 403
    finally:
        store.close()


def test_derived_columns_cross_in_shared_memory(tmp_path: Path) -> None:
    """`update_derived` sends the finalized spans' columns, not the spans: the row is
    marked finalized with its rollup."""
    store = ProcessStore(tmp_path / "ledger.duckdb")
    try:
        root, child = priced(1, femto=5), priced(2, parent=1, femto=3)
        store.append([root, child])
        root.rollup = 8  # 5 of its own + 3 of its child
        store.update_derived([root, child])
        assert store.unfinalized_traces() == []
        spans = {span["span_id"]: span for span in store.trace_spans(TRACE)}
        assert spans[sid(1)]["rollup"] == 8
        assert spans[sid(1)]["finalized"] is True
    finally:
        store.close()


def test_an_error_in_the_store_process_is_raised_to_the_caller_as_itself(
    tmp_path: Path,
) -> None:
    """The HTTP API answers 400 for a ValueError (an unknown dimension): it must come back
    a ValueError with the store's message, and the store keeps serving."""
    store = ProcessStore(tmp_path / "ledger.duckdb")
    try:
        with pytest.raises(ValueError, match="colour"):
            store.costs(["colour"], TraceFilter())
        with pytest.raises(AttributeError):
            store.no_such_method()
        assert store.append([priced(1, femto=2)]) == 1
    finally:
        store.close()
    with pytest.raises(StoreProcessError, match="closed"):
        threading.Thread(target=store.totals).run()  # a thread with no connection yet


def test_many_threads_read_while_one_writes(tmp_path: Path) -> None:
    """Each thread gets its own connection: 4 readers see counts that only grow while the
    writer stores 50 batches of 10 spans."""
    store = ProcessStore(tmp_path / "ledger.duckdb")
    seen: list[list[int]] = [[] for _ in range(4)]
    failures: list[BaseException] = []
    writing = True

    def read(counts: list[int]) -> None:
        try:
            while writing:
                counts.append(store.totals()["spans"])
        except BaseException as error:
            failures.append(error)

    readers = [threading.Thread(target=read, args=(counts,)) for counts in seen]
    try:
        for reader in readers:
            reader.start()
        for batch in range(50):
            spans = [priced(batch * 10 + n, femto=1) for n in range(10)]
            assert store.write([store.encode(spans)]) == 10
    finally:
        writing = False
        for reader in readers:
            reader.join(30)
    try:
        assert failures == []
        for counts in seen:
            assert counts and counts == sorted(counts)
        assert store.totals()["spans"] == 500
    finally:
        store.close()


def test_a_ledger_held_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    """This process holds the file: the store process waits `lock_wait`, then the
    constructor raises DuckDB's own lock error, naming the file."""
    path = tmp_path / "ledger.duckdb"
    holder = DuckDBStore(path)
    try:
        with pytest.raises(duckdb.IOException, match="lock"):
            ProcessStore(path, lock_wait=0.3)
    finally:
        holder.close()


def test_the_store_process_ends_with_the_server_even_on_sigkill(tmp_path: Path) -> None:
    """A server killed with SIGKILL cannot stop its store process: the store process sees
    its control pipe close and exits, the ledger's lock goes with it, and a new server
    opens the file with every span that was written."""
    path = tmp_path / "ledger.duckdb"
    script = textwrap.dedent(
        f"""
        import sys, time
        from spanledger.store.process import ProcessStore
        from test_store import priced
        store = ProcessStore({str(path)!r})
        store.append([priced(n, femto=4) for n in range(20)])
        print(store.pid, flush=True)
        time.sleep(600)
        """
    )
    tests = Path(__file__).parent
    server = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tests)},
    )
    try:
        store_pid = int(server.stdout.readline())  # type: ignore[union-attr]
        assert _alive(store_pid)
        server.send_signal(signal.SIGKILL)
        server.wait(30)
        eventually(lambda: not _alive(store_pid), what="the store process to exit")
    finally:
        if server.poll() is None:
            server.kill()
    reopened = ProcessStore(path)
    try:
        # 20 spans x 4 femto-$ = 80 femto-$
        assert reopened.totals() == {"spans": 20, "traces": 1, "cost": Decimal(80)}
    finally:
        reopened.close()
    assert not _alive(reopened.pid)  # close() ends the store process too


def _alive(pid: int | None) -> bool:
    """Whether the process exists and is not a zombie (ours or the forkserver's)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
