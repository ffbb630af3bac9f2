"""Alert latency: from the span that pushes a running trace over its budget to the webhook,
while the server ingests ~10,000 spans/s.

Setup, in one run:

1. `spanledger serve` runs as a subprocess on a fresh DuckDB file with default prices and
   an `alerts:` section: a `trace_cost` rule (the one measured) and, so that evaluation
   costs what it would in production, `loop`, `spend_rate` (per agent), `retry_share`
   (per agent) and `unpriced_model` rules. Its webhook is a local HTTP receiver in this
   process that timestamps every POST on arrival (`time.perf_counter`).
2. Load: the agent-trace workload of `benchmarks/ingest.py` (OTLP/HTTP protobuf, 512 spans
   per request, ~12 attributes per span, spans in the order they end), sent by several
   client threads on a fixed schedule that targets `--rate` spans/s. A client that falls
   behind the schedule sends at once, so the achieved rate is what the server sustains;
   it is reported.
3. Probes: every few seconds (after a warm-up) a probe trace is started: one LLM call under
   an agent span that is never sent (the trace stays open), costing ~70% of the budget;
   then, once acknowledged, one more call that takes the trace over the budget. The time
   from just before that request is sent to the moment the webhook receives the
   `trace_cost` alert for that trace is the alert latency. The budget is set at 1.5x the
   most expensive trace of the background workload (priced here beforehand with the same
   price book), so only probes cross it. Each alert's value is checked against the
   probe's cost priced here.

Reported: alert latency (p50, max, every repetition) against the 2 s target, the OTLP
acknowledgement latency of the crossing request (the part of the path before the alert
engine: decode, queue, price, store), the load achieved while probing, and the server's
CPU use.

Run: `.venv/bin/python benchmarks/alert_latency.py [--rate 10000] [--seconds 40]
[--repetitions 12] [--clients 4] [--json]`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import ingest  # benchmarks/ingest.py: the shared agent-trace workload
from spanledger import conventions as c
from spanledger.pricing import PriceBook
from spanledger.pricing.money import FEMTO_PER_USD, usd_str
from spanledger.server.otlp import decode_protobuf

TARGET_S = 2.0
BATCH = ingest.BATCH_SPANS
WARMUP_S = 5.0
PROBE_MODEL = ("anthropic", "claude-sonnet-4-5")  # request model of the probe calls


# -- the webhook receiver -------------------------------------------------------------------
@dataclass
class Received:
    at: float  # perf_counter on arrival
    event: dict[str, Any]


class Receiver:
    """A local webhook: records each POSTed alert event with its arrival time."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real webhook endpoint would

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                at = time.perf_counter()
                event = json.loads(body)
                with receiver._changed:
                    receiver.received.append(Received(at, event))
                    receiver._changed.notify_all()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def wait_for(self, trace_id: str, rule: str, timeout: float) -> Received | None:
        def found() -> Received | None:
            for item in self.received:
                alert = item.event.get("alert", {})
                if (
                    item.event.get("event") == "firing"
                    and alert.get("rule") == rule
                    and alert.get("trace_id") == trace_id
                ):
                    return item
            return None

        with self._changed:
            self._changed.wait_for(lambda: found() is not None, timeout)
            return found()

    def counts(self) -> dict[str, int]:
        with self._changed:
            return dict(
                Counter(
                    f"{item.event['alert']['rule']}:{item.event['event']}" for item in self.received
                )
            )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- the server -----------------------------------------------------------------------------
class AlertingServer:
    """`spanledger serve --config` with alert rules, as a subprocess."""

    def __init__(self, workdir: Path, settings: dict[str, Any]) -> None:
        self.port = ingest._free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        path = workdir / "serve.yaml"
        path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        cli = Path(sys.executable).with_name("spanledger")
        command = [str(cli)] if cli.exists() else [sys.executable, "-m", "spanledger.cli"]
        command += ["serve", "--config", str(path), "--db", str(workdir / "alerts.duckdb"),
                    "--http-port", str(self.port), "--grpc-port", "0"]  # fmt: skip
        self._log_path = workdir / "server.log"
        self._log = self._log_path.open("wb")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"spanledger serve exited with {self.proc.returncode}:\n"
                    + self._log_path.read_text(errors="replace")[-2000:]
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError("spanledger serve did not answer /healthz in time")

    def cpu_s(self) -> float:
        return ingest.proc_cpu_s(self.proc.pid)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(120)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()


# -- the workload ---------------------------------------------------------------------------
def background_trace_costs(bodies: Sequence[bytes], book: PriceBook) -> dict[str, int]:
    """Each background trace's cost (femto-$), priced as the server prices it."""
    costs: Counter[str] = Counter()
    for body in bodies:
        for record in decode_protobuf(body):
            call = book.price_attributes(
                record.attributes, record.start_ns, record.resource, failed=record.failed
            )
            costs[record.trace_id] += call.cost.total
    return dict(costs)


def probe_attrs(output_tokens: int) -> dict[str, Any]:
    provider, model = PROBE_MODEL
    return {
        c.GEN_AI_OPERATION_NAME: "chat",
        c.GEN_AI_PROVIDER_NAME: provider,
        c.GEN_AI_REQUEST_MODEL: model,
        c.GEN_AI_USAGE_INPUT_TOKENS: 1000,
        c.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
        c.GEN_AI_AGENT_NAME: "probe",
    }


def price_of(attrs: dict[str, Any], book: PriceBook, start_ns: int) -> int:
    return book.price_attributes(attrs, start_ns, {c.SERVICE_NAME: "probe"}).cost.total


def probe_body(trace_id: bytes, parent: bytes, attrs: dict[str, Any], start_ns: int) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    ingest._fill(resource_spans.resource.attributes, {c.SERVICE_NAME: "probe"})
    span = resource_spans.scope_spans.add().spans.add(
        trace_id=trace_id,
        span_id=random.getrandbits(63).to_bytes(8, "big"),
        parent_span_id=parent,
        name=f"chat {PROBE_MODEL[1]}",
        kind=3,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + 800 * ingest.MS,
    )
    ingest._fill(span.attributes, attrs)
    return request.SerializeToString()


# -- load -----------------------------------------------------------------------------------
@dataclass
class Load:
    acked_at: list[float] = field(default_factory=list)  # perf_counter of each acked batch
    throttled: int = 0
    errors: list[str] = field(default_factory=list)
    behind_schedule: int = 0  # batches sent late (the server or the clients could not keep up)


def send_load(
    url: str, bodies: Sequence[bytes], clients: int, rate: float, stop: threading.Event
) -> tuple[Load, float]:
    """Send the bodies on a schedule of `rate` spans/s from `clients` threads."""
    load = Load()
    lock = threading.Lock()
    interval = BATCH / rate
    next_index = itertools.count().__next__
    began = time.perf_counter() + 0.2

    def worker() -> None:
        headers = {"content-type": "application/x-protobuf"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            client.get("/healthz")
            while not stop.is_set() and (index := next_index()) < len(bodies):
                due = began + index * interval
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -interval:
                    with lock:
                        load.behind_schedule += 1
                while True:
                    try:
                        answer = client.post("/v1/traces", content=bodies[index])
                    except httpx.HTTPError as error:
                        with lock:
                            load.errors.append(repr(error))
                        break
                    if answer.status_code == 429:
                        with lock:
                            load.throttled += 1
                        time.sleep(float(answer.headers.get("retry-after", "1")))
                        continue
                    with lock:
                        if answer.status_code == 200:
                            load.acked_at.append(time.perf_counter())
                        else:
                            load.errors.append(f"HTTP {answer.status_code}")
                    break

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    return load, began


class QueueSampler:
    """Samples the server's ingest queue depth (/healthz) every 100 ms: spans a new span
    waits behind before it is priced, stored and seen by the alert engine."""

    def __init__(self, url: str) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not self._stop.wait(0.1):
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    self.samples.append(int(client.get("/healthz").json()["queued_spans"]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# -- the run --------------------------------------------------------------------------------
@dataclass
class Probe:
    trace_id: str
    expected_usd: str
    latency_s: float | None = None
    ack_s: float | None = None
    alert_value: str | None = None


def run(args: argparse.Namespace) -> dict[str, Any]:
    random.seed(args.seed)
    batches = max(1, round(args.rate * args.seconds / BATCH))
    workload = ingest.make_workload(batches, args.seed)
    book = PriceBook.from_files([], use_defaults=True)
    costs = background_trace_costs(workload.bodies, book)
    most = max(costs.values())
    budget = (Decimal(most) * Decimal("1.5") / FEMTO_PER_USD).quantize(
        Decimal("0.01"), rounding=ROUND_CEILING
    )
    budget = max(budget, Decimal(1))
    budget_femto = int(budget * FEMTO_PER_USD)
    start_ns = ingest._ns(ingest.START)
    # A first call at ~70% of the budget, a second that takes the trace over it.
    per_output = price_of(probe_attrs(1_000_001), book, start_ns) - price_of(
        probe_attrs(1), book, start_ns
    )
    first_tokens = int(budget_femto * 0.7 * 1_000_000 / per_output)
    second_tokens = int(budget_femto * 0.5 * 1_000_000 / per_output)
    first_cost = price_of(probe_attrs(first_tokens), book, start_ns)
    second_cost = price_of(probe_attrs(second_tokens), book, start_ns)
    assert first_cost <= budget_femto < first_cost + second_cost, "probe costs do not cross"

    receiver = Receiver()
    settings = {
        "use_default_prices": True,
        "finalize_after_seconds": 10,
        "alerts": {
            "webhook": {"url": receiver.url, "timeout_seconds": 5, "max_attempts": 5},
            "rules": [
                {"name": "costly-trace", "kind": "trace_cost", "max_usd": str(budget)},
                {"name": "runaway", "kind": "loop"},
                {"name": "agent-spend-spike", "kind": "spend_rate", "scope": "agent",
                 "window": "1m", "baseline": "10m", "ratio": 3, "min_usd": 1},
                {"name": "user-retry-waste", "kind": "retry_share", "scope": "user",
                 "window": "5m", "max_share": 0.5, "min_usd": 0.5},
                {"name": "unpriced", "kind": "unpriced_model"},
            ],
        },
    }  # fmt: skip
    probes: list[Probe] = []
    with tempfile.TemporaryDirectory(prefix="spanledger-alerts-") as tmp:
        server = AlertingServer(Path(tmp), settings)
        try:
            server.wait_ready()
            cpu_before = server.cpu_s()
            machine_before = ingest.machine_busy_s()
            client_before = time.process_time()
            depth = QueueSampler(server.url)
            stop = threading.Event()
            load, began = send_load(server.url, workload.bodies, args.clients, args.rate, stop)
            time.sleep(WARMUP_S)
            probe_window_start = time.perf_counter()
            spacing = max(0.5, (args.seconds - WARMUP_S - 3.0) / args.repetitions)
            with httpx.Client(
                base_url=server.url,
                headers={"content-type": "application/x-protobuf"},
                timeout=60,
            ) as client:
                client.get("/healthz")
                for _ in range(args.repetitions):
                    trace_id = random.getrandbits(127).to_bytes(16, "big")
                    agent = random.getrandbits(63).to_bytes(8, "big")  # never sent: running
                    probe = Probe(trace_id.hex(), usd_str(first_cost + second_cost))
                    first = probe_body(trace_id, agent, probe_attrs(first_tokens), start_ns)
                    second = probe_body(trace_id, agent, probe_attrs(second_tokens), start_ns)
                    assert client.post("/v1/traces", content=first).status_code == 200
                    time.sleep(spacing / 2)
                    sent = time.perf_counter()
                    answer = client.post("/v1/traces", content=second)
                    probe.ack_s = time.perf_counter() - sent
                    assert answer.status_code == 200, answer.status_code
                    got = receiver.wait_for(probe.trace_id, "costly-trace", timeout=30)
                    if got is not None:
                        probe.latency_s = got.at - sent
                        probe.alert_value = got.event["alert"]["value"]
                    probes.append(probe)
                    time.sleep(spacing / 2)
            probe_window_end = time.perf_counter()
            stop.set()
            time.sleep(1.0)
            cpu_s = server.cpu_s() - cpu_before
            wall_s = time.perf_counter() - began
            others_s = ingest.machine_busy_s() - machine_before - cpu_s
            others_s -= time.process_time() - client_before
            depth.stop()
            metrics = httpx.get(f"{server.url}/metrics").text
        finally:
            server.stop()
            receiver_counts = receiver.counts()
            receiver.close()

    in_window = [t for t in load.acked_at if probe_window_start <= t <= probe_window_end]
    probe_s = probe_window_end - probe_window_start
    latencies = [p.latency_s for p in probes if p.latency_s is not None]
    acks = [p.ack_s for p in probes if p.ack_s is not None]
    wrong = [p for p in probes if p.alert_value is not None and p.alert_value != p.expected_usd]
    return {
        "environment": environment(),
        "settings": {
            "target_rate_spans_per_s": args.rate,
            "clients": args.clients,
            "repetitions": args.repetitions,
            "budget_usd": str(budget),
            "most_expensive_background_trace_usd": usd_str(most),
            "probe_cost_usd": usd_str(first_cost + second_cost),
            "workload_spans": workload.spans,
            "workload_traces": workload.traces,
        },
        "load": {
            "spans_per_s_while_probing": len(in_window) * BATCH / probe_s,
            "spans_per_s_overall": len(load.acked_at) * BATCH / wall_s,
            "acked_spans": len(load.acked_at) * BATCH,
            "batches_behind_schedule": load.behind_schedule,
            "throttled_429": load.throttled,
            "errors": load.errors[:5],
            "server_cores_busy": cpu_s / wall_s,
            "other_processes_cores_busy": max(0.0, others_s) / wall_s,
            "ingest_queue_spans_p50": ingest.percentile(depth.samples, 0.5),
            "ingest_queue_spans_max": max(depth.samples, default=0),
        },
        "alert_latency_s": {
            "p50": ingest.percentile(latencies, 0.5),
            "max": max(latencies, default=float("nan")),
            "min": min(latencies, default=float("nan")),
            "all": [round(x, 4) for x in latencies],
            "missing": sum(1 for p in probes if p.latency_s is None),
        },
        "ack_latency_s": {
            "p50": ingest.percentile(acks, 0.5),
            "max": max(acks, default=float("nan")),
        },
        "alert_values_wrong": [(p.trace_id, p.alert_value, p.expected_usd) for p in wrong],
        "webhook_events": receiver_counts,
        "server_alert_metrics": [
            line
            for line in metrics.splitlines()
            if line.startswith("spanledger_alerts_") and not line.startswith("#")
        ],
        "target_s": TARGET_S,
        "pass": bool(latencies)
        and len(latencies) == len(probes)
        and max(latencies) < TARGET_S
        and not wrong,
    }


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average_1m_at_start": os.getloadavg()[0],
    }


def report(result: dict[str, Any]) -> str:
    s, load, lat, ack = (
        result[k] for k in ("settings", "load", "alert_latency_s", "ack_latency_s")
    )
    env = result["environment"]
    lines = [
        f"alert latency under load ({env['cpus_usable']} CPUs, Python {env['python']})",
        f"  load: target {s['target_rate_spans_per_s']:,} spans/s from {s['clients']} clients; "
        f"achieved {load['spans_per_s_while_probing']:,.0f} spans/s while probing "
        f"({load['spans_per_s_overall']:,.0f} overall, {load['batches_behind_schedule']} "
        f"batches late, {load['throttled_429']} throttled, {len(load['errors'])} errors)",
        f"  CPU: server {load['server_cores_busy']:.2f} cores, other processes "
        f"{load['other_processes_cores_busy']:.2f} cores; ingest queue p50 "
        f"{load['ingest_queue_spans_p50']:,.0f} spans, max {load['ingest_queue_spans_max']:,}",
        f"  budget ${s['budget_usd']} (costliest background trace "
        f"${s['most_expensive_background_trace_usd']}); probe traces cost ${s['probe_cost_usd']}",
        f"  crossing span -> webhook: p50 {lat['p50'] * 1e3:.0f} ms, "
        f"max {lat['max'] * 1e3:.0f} ms, min {lat['min'] * 1e3:.0f} ms over {len(lat['all'])} "
        f"repetitions "
        f"({lat['missing']} missing)",
        f"  of which OTLP ack of the crossing request: p50 {ack['p50'] * 1e3:.0f} ms, "
        f"max {ack['max'] * 1e3:.0f} ms",
        f"  alert values wrong: {len(result['alert_values_wrong'])}; webhook events: "
        f"{result['webhook_events']}",
        f"  target: under {result['target_s']:g} s -> {'PASS' if result['pass'] else 'MISS'}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10_000, help="target spans/s")
    parser.add_argument("--seconds", type=float, default=40, help="length of the load")
    parser.add_argument("--repetitions", type=int, default=12, help="probe traces")
    parser.add_argument("--clients", type=int, default=4, help="load client threads")
    parser.add_argument("--seed", type=int, default=ingest.DEFAULT_SEED)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else report(result))
    sys.exit(0 if result["pass"] else 1)


if __name__ == "__main__":
    main()
