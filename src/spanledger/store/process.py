"""ProcessStore: the server's DuckDBStore in a process of its own.

Why: the receiver thread (decode, price, encode) and the writer thread (DuckDB's INSERT)
are the server's two busiest, and in one process they take turns on one GIL: duckdb-python
takes the GIL back after every task of a statement (~10 times per INSERT) and waits for the
receiver to let go of it each time. With the store in its own process, the writer thread
here only hands over rows and waits without the GIL; DuckDB's work runs on the other core.
Measured with `benchmarks/ingest.py`, 4 + 4 interleaved runs: 39.9 / 36.1 / 42.5 / 50.5
thousand durable spans/s in one process, 40.2 / 46.0 / 48.7 / 54.9 with this.

How: the store process opens the ledger and answers on a Unix socket, one connection (and
one thread there) per calling thread here, so reports run beside the writer as before.
Arguments and results are pickled, except the Arrow tables of `write` and `update_derived`
(~1.3 KB a span), which go through shared memory as an Arrow IPC stream: writing that holds
this process's GIL for ~0.2 ms per 1,000 spans, and the store process reads it in place.
If this process dies, even by SIGKILL, the store process sees its control pipe close and
exits, which releases the ledger's lock for the next server.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Client, Connection, Listener
from multiprocessing.reduction import recv_handle, send_handle
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from spanledger.store.duckdb import DuckDBStore, encode_derived, encode_spans
from spanledger.traces import PricedSpan

log = logging.getLogger("spanledger.store")

LOCK_WAIT_SECONDS = 5.0  # for the previous store process to let go of the ledger
SHARED_BYTES = 64 << 20  # a group of ~50,000 spans; a larger one goes through the socket


class StoreProcessError(RuntimeError):
    """The store process failed or is gone; its message says how."""


class ProcessStore:
    """`Store` on a DuckDB file opened by a process of its own; see the module docstring.

    Every `DuckDBStore` method can be called on it from any thread; each one runs in the
    store process. `encode` and `encode_derived` run here: they turn spans into rows."""

    def __init__(
        self,
        path: str | Path = "spanledger.duckdb",
        *,
        shared_bytes: int = SHARED_BYTES,
        lock_wait: float = LOCK_WAIT_SECONDS,
        **options: Any,
    ) -> None:
        """Start the store process and open the ledger there (`options` as for
        `DuckDBStore`), waiting up to `lock_wait` seconds for another process to release
        it; raise what opening it raised. `shared_bytes`: the largest group of rows that
        goes through shared memory."""
        self.path = str(path)
        self._shared_fd = os.memfd_create("spanledger-store")
        os.ftruncate(self._shared_fd, shared_bytes)
        self._shared = mmap.mmap(self._shared_fd, shared_bytes)
        self._shared_lock = threading.Lock()  # one table in shared memory at a time
        self._key = os.urandom(32)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["spanledger.store.duckdb"])
        self._control, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(theirs, self._key, self.path, lock_wait, options),
            name="spanledger-store",
            daemon=True,
        )
        self._process.start()
        theirs.close()
        try:
            send_handle(self._control, self._shared_fd, self._process.pid)
            status, answer = self._control.recv()
        except (EOFError, OSError) as error:
            self._process.join(10)
            raise StoreProcessError(
                f"the store process for {self.path} exited while opening it "
                f"(exit code {self._process.exitcode}; its error is in this process's output)"
            ) from error
        if status != "ok":
            self._process.join(10)
            raise answer
        self._address = answer
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def encode(self, spans: Sequence[PricedSpan]) -> pa.Table:
        return encode_spans(spans)

    def write(self, batches: Sequence[pa.Table]) -> int:
        tables = [batch for batch in batches if batch.num_rows]
        if not tables:
            return 0
        return self._call_with_table("write", pa.concat_tables(tables), listed=True)

    def append(self, spans: Sequence[PricedSpan]) -> int:
        return self.write([self.encode(spans)]) if spans else 0

    def update_derived(self, spans: Sequence[PricedSpan]) -> None:
        if spans:
            self._call_with_table("write_derived", encode_derived(spans))

    def close(self) -> None:
        """Close the ledger (the store process checkpoints it) and end the store process."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call("close")
        except (StoreProcessError, OSError, EOFError):
            log.warning("spanledger: the store process was gone before close")
        for connection in self._connections:
            connection.close()
        self._control.close()
        self._process.join(30)
        self._shared.close()
        os.close(self._shared_fd)

    def __getattr__(self, name: str) -> Any:
        """Any other store method: called in the store process."""
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, *args, **kwargs)

        call.__name__ = name
        return call

    # -- calls -----------------------------------------------------------------------------
    def _connection(self) -> Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self._closed:
                raise StoreProcessError("the store is closed")
            connection = Client(self._address, family="AF_UNIX", authkey=self._key)
            self._local.connection = connection
            self._connections.append(connection)
        return connection

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        connection = self._connection()
        try:
            connection.send((name, args, kwargs))
            status, answer = connection.recv()
        except (EOFError, OSError) as error:
            raise StoreProcessError(f"the store process is gone ({error!r})") from error
        if status != "ok":
            raise answer
        return answer

    def _call_with_table(self, name: str, table: pa.Table, *, listed: bool = False) -> Any:
        """`name(table)` (`name([table])` if `listed`) in the store process, the table in
        shared memory or, if it does not fit, on the socket."""
        with self._shared_lock:
            sink = pa.FixedSizeBufferWriter(pa.py_buffer(self._shared))
            try:
                with pa.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table)
                sent: _Shared | _Inline = _Shared(sink.tell())
            except (pa.ArrowInvalid, OSError):  # larger than the shared memory
                stream = pa.BufferOutputStream()
                with pa.ipc.new_stream(stream, table.schema) as writer:
                    writer.write_table(table)
                sent = _Inline(stream.getvalue().to_pybytes())
            return self._call(name, [sent] if listed else sent)


class _Shared:
    """An Arrow IPC stream of `size` bytes at the start of the shared memory."""

    def __init__(self, size: int) -> None:
        self.size = size


class _Inline:
    """An Arrow IPC stream sent with the call (too large for the shared memory)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


# -- the store process -----------------------------------------------------------------------
def _serve(
    control: Connection, key: bytes, path: str, lock_wait: float, options: dict[str, Any]
) -> None:
    """The store process: open the ledger, then answer every connection on its own thread
    until told to close or until the server's end of `control` closes."""
    shared_fd = recv_handle(control)
    shared = mmap.mmap(shared_fd, 0)  # the whole of it
    waited = 0.0
    while True:
        try:
            store = DuckDBStore(path, **options)
            break
        except duckdb.IOException as error:
            # The store process of a server killed a moment ago may still hold the lock:
            # it exits as soon as it notices.
            if "lock" not in str(error) or waited >= lock_wait:
                control.send(("error", _portable(error)))
                return
        except BaseException as error:
            control.send(("error", _portable(error)))
            return
        time.sleep(0.1)
        waited += 0.1
    listener = Listener(family="AF_UNIX", authkey=key)
    control.send(("ok", listener.address))
    threading.Thread(target=_accept, args=(listener, store, shared), daemon=True).start()
    with contextlib.suppress(EOFError, OSError):
        control.recv()  # nothing is ever sent: this returns when the server's end closes
    os._exit(0)  # the server is gone: what it was told is durable is committed


def _accept(listener: Listener, store: Any, shared: mmap.mmap) -> None:
    while True:
        connection = listener.accept()
        threading.Thread(target=_answer, args=(connection, store, shared), daemon=True).start()


def _answer(connection: Connection, store: Any, shared: mmap.mmap) -> None:
    while True:
        try:
            name, args, kwargs = connection.recv()
        except (EOFError, OSError):
            return
        try:
            args = tuple(_table(arg, shared) for arg in args)
            answer = getattr(store, name)(*args, **kwargs)
            if isinstance(answer, Iterator):
                answer = list(answer)
            reply: tuple[str, Any] = ("ok", answer)
        except BaseException as error:
            reply = ("error", _portable(error))
        finally:
            args = ()  # a table read in place must not outlive the call
        connection.send(reply)
        if name == "close":
            os._exit(0)


def _table(arg: Any, shared: mmap.mmap) -> Any:
    if isinstance(arg, list):
        return [_table(item, shared) for item in arg]
    if isinstance(arg, _Shared):
        return pa.ipc.open_stream(pa.py_buffer(shared)[: arg.size]).read_all()
    if isinstance(arg, _Inline):
        return pa.ipc.open_stream(arg.data).read_all()
    return arg


def _portable(error: BaseException) -> BaseException:
    """The error itself if it can be sent back, else a `StoreProcessError` naming it."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return StoreProcessError(f"{type(error).__name__}: {error}")
    return error
