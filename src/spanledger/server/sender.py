"""Sender: POSTs what is queued from one background thread, so a slow or dead receiver
never blocks the server. The forwarder (enriched spans to another OTLP endpoint) and the
alert webhook are both Senders.

`put` never blocks and never raises: what does not fit in the bounded queue is dropped and
counted. A connection error, a timeout or a retryable status is retried with capped,
jittered exponential backoff that honours `Retry-After`, up to `max_attempts`; then the
batch is dropped and counted. `stop` sends what is queued, each batch once more at most,
for at most `timeout` seconds, then drops (and counts) the rest.
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

import httpx

from spanledger.server.stats import Stats

log = logging.getLogger("spanledger.server")

Item = TypeVar("Item")


class Sender(Generic[Item]):
    """A bounded queue of items POSTed in batches to `url` by a thread of its own.

    Subclasses say how a batch is encoded and what an accepted answer means."""

    content_type = "application/octet-stream"
    retryable = frozenset({408, 425, 429, 500, 502, 503, 504})

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        name: str,
        dropped: str,  # the Stats counter that counts dropped items
        stats: Stats | None = None,
        timeout: float = 10.0,
        max_queued: int = 20_000,
        batch_size: int = 1,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self.url = url
        given = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
        self.headers = {**given, "content-type": self.content_type}
        self.name = name
        self.dropped = dropped
        self.stats = stats or Stats()
        self.timeout = timeout
        self.max_queued = max_queued
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff = backoff  # first retry delay; doubles per attempt up to max_backoff
        self.max_backoff = max_backoff
        self._queue: deque[Item] = deque()
        self._lock = threading.Condition()
        self._halt = threading.Event()  # set by stop(): no more waiting between attempts
        self._deadline = float("inf")  # after stop(): when to give up what is left
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"spanledger-{name}", daemon=True)

    # -- what a subclass says --------------------------------------------------------------
    def encode(self, batch: list[Item]) -> bytes:
        raise NotImplementedError

    def accepted(self, response: httpx.Response, batch: list[Item]) -> None:
        """A 2xx answer to `batch` (count what was sent)."""

    def describe(self, batch: list[Item]) -> str:
        return f"{len(batch)} {self.name} items"

    # -- the caller's side -----------------------------------------------------------------
    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> Sender[Item]:
        self._thread.start()
        return self

    def put(self, items: Sequence[Item]) -> int:
        """Queue items; returns how many did not fit and were dropped (and counted)."""
        with self._lock:
            room = 0 if self._stopped else max(0, self.max_queued - len(self._queue))
            taken = min(room, len(items))
            self._queue.extend(itertools.islice(items, taken))
            if taken:
                self._lock.notify()
        dropped = len(items) - taken
        if dropped:
            self.stats.count(self.dropped, dropped)
            log.warning("spanledger: %s queue full; dropped %d", self.name, dropped)
        return dropped

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopped = True
            self._deadline = time.monotonic() + timeout
            self._lock.notify()
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 1.0)
            if self._thread.is_alive():
                log.warning("spanledger: the %s did not stop within %gs", self.name, timeout)
        elif self._thread.ident is None:  # never started: nothing will send what is queued
            with self._lock:
                left = len(self._queue)
                self._queue.clear()
            if left:
                self.stats.count(self.dropped, left)

    # -- the sending thread ----------------------------------------------------------------
    def _run(self) -> None:
        left = 0
        with httpx.Client(timeout=self.timeout, headers=self.headers) as client:
            while True:
                with self._lock:
                    while not self._queue and not self._stopped:
                        self._lock.wait()
                    if self._stopped and (not self._queue or time.monotonic() >= self._deadline):
                        left = len(self._queue)
                        self._queue.clear()
                        break
                    size = min(self.batch_size, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(size)]
                try:
                    self._send(client, batch)
                except Exception:  # never let one bad batch stop the sender
                    log.exception("spanledger: sending %s failed", self.describe(batch))
                    self.stats.count(self.dropped, len(batch))
        if left:
            log.warning("spanledger: the %s stopped with %d unsent", self.name, left)
            self.stats.count(self.dropped, left)

    def _send(self, client: httpx.Client, batch: list[Item]) -> None:
        body = self.encode(batch)
        problem = "shutting down"
        for attempt in range(1, self.max_attempts + 1):
            if self._halt.is_set() and time.monotonic() >= self._deadline:
                break
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            delay *= random.uniform(0.8, 1.2)
            try:
                response = client.post(self.url, content=body)
            except httpx.TransportError as error:  # refused, reset, timed out
                problem = f"{type(error).__name__}: {error}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self.accepted(response, batch)
                    return
                problem = f"HTTP {status}: {response.text[:200]}"
                if status not in self.retryable:
                    break
                delay = retry_after(response.headers.get("retry-after"), self.max_backoff, delay)
            if attempt == self.max_attempts or self._halt.wait(delay):
                break  # out of attempts, or stopping: no more waiting
        log.warning("spanledger: dropping %s for %s: %s", self.describe(batch), self.url, problem)
        self.stats.count(self.dropped, len(batch))


def retry_after(value: str | None, cap: float, default: float) -> float:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped."""
    if not value:
        return default
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return default
        seconds = when.timestamp() - time.time()
    return min(cap, max(0.0, seconds))
