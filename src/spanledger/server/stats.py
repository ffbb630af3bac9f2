"""Server counters and spend totals, exposed as Prometheus text on /metrics."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from spanledger.pricing.money import FEMTO_PER_USD, Femto

HELP = {
    "spans_received": "Spans received by the OTLP receivers",
    "spans_rejected": "Spans rejected inside accepted requests (partial success)",
    "requests_rejected": "Requests refused whole: malformed, unauthorized, too large",
    "spans_throttled": "Spans refused because the ingest queue was full",
    "requests_throttled": "Requests refused because too many waited to be decoded",
    "spans_stored": "Spans stored durably",
    "spans_duplicate": "Spans received again and counted once",
    "traces_finalized": "Traces finalized (rollups and attribution stored)",
    "forward_sent": "Enriched spans forwarded downstream",
    "forward_dropped": "Enriched spans dropped by the forwarder (queue full or downstream down)",
    "requests_total": "OTLP export requests received",
    # The thread whose seconds grow about as fast as the clock's limits ingest.
    "receiver_busy_seconds": "Seconds the receiver thread decoded, priced and encoded requests",
    "writer_busy_seconds": "Seconds the writer thread stored batches and finalized traces",
    "alerts_webhook_sent": "Alert notifications (firing or resolved) the webhook accepted",
    "alerts_webhook_dropped": "Alert notifications dropped (queue full or webhook down)",
}


class Stats:
    """Thread-safe counters; `gauges` and `collectors` (more exposition lines, e.g. labelled
    alert metrics) are read when /metrics is scraped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._cost: Counter[tuple[str, str, str]] = Counter()
        self.gauges: dict[str, Callable[[], float]] = {}
        self.collectors: list[Callable[[], list[str]]] = []

    def count(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def add_cost(self, key: tuple[str, str, str], amount: Femto) -> None:
        with self._lock:
            self._cost[key] += amount

    def get(self, name: str) -> float:
        with self._lock:
            return self._counts[name]

    def prometheus(self) -> str:
        with self._lock:
            counts = dict(self._counts)
            cost = dict(self._cost)
        lines: list[str] = []
        for name, text in HELP.items():
            metric = f"spanledger_{name}"
            lines += [f"# HELP {metric} {text}", f"# TYPE {metric} counter"]
            lines.append(f"{metric} {counts.get(name, 0)}")
        lines += [
            "# HELP spanledger_cost_usd_total Cost of stored LLM spans (USD)",
            "# TYPE spanledger_cost_usd_total counter",
        ]
        for (provider, model, status), amount in sorted(cost.items()):
            labels = _labels(provider=provider, model=model, price_status=status)
            lines.append(f"spanledger_cost_usd_total{{{labels}}} {amount / FEMTO_PER_USD!r}")
        for name, read in sorted(self.gauges.items()):
            metric = f"spanledger_{name}"
            lines += [f"# TYPE {metric} gauge", f"{metric} {read()}"]
        for collect in self.collectors:
            lines += collect()
        return "\n".join(lines) + "\n"


def labels(**values: str) -> str:
    """Prometheus label pairs, escaped: `rule="a",kind="b"`."""
    return _labels(**values)


def _labels(**values: str) -> str:
    return ",".join(f'{key}="{_escape(value)}"' for key, value in values.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
