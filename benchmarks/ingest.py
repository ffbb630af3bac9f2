"""Ingest throughput: OTLP/HTTP protobuf batches into a running `spanledger serve`.

What is measured, in one run, over the same request bodies:

1. end to end: `spanledger serve` runs as a subprocess on a fresh DuckDB file; several client
   threads (one keep-alive `http.client` connection each) POST pre-built
   `ExportTraceServiceRequest` bodies of 512 spans to `/v1/traces`. A 200 answer means the
   batch is committed to DuckDB (the server acknowledges only durable spans), so acknowledged
   spans / wall time is the durable ingest rate. The server's CPU time (/proc/<pid>/stat)
   and peak RSS (VmHWM) are read for the server process alone.
2. baseline: `spanledger.server.otlp.decode_protobuf` on the same bodies, in this process.
3. decode + price: the same, then `PriceBook.price_attributes` on every span (the pricing
   core the server runs on each span).

Optionally (`--profile`) the server's work is replayed in this process without HTTP: decode,
then the pipeline's own writer steps (price, store in DuckDB, file spans into traces,
finalize), timed and then run again under cProfile, to show where the time goes. The replay
runs under the server's collector regime (`server_heap`).

The workload: agent traces of 10-30 spans (an `invoke_agent` root, sometimes a sub-agent,
LLM chat spans with OTel GenAI attributes and tool spans, ~12 attributes each) from 5
services, 60 users, 9 models of 3 providers. Spans are exported in the order they end, as
the SDK's BatchSpanProcessor does, so children come before their parents and traces span
several batches.

After the server has shut down (which finalizes the open traces), the DuckDB file is opened
and checked: exactly the spans sent, one `traces` row per trace, every span finalized, and
the sum of stored costs equal to the sum priced in this process.

With `--py-spy [PATH]`, py-spy samples the server during the run and the writer thread's
wall time is split by part (py-spy is not a dependency of the project).

Run: `.venv/bin/python benchmarks/ingest.py [--batches N] [--clients C] [--profile]
[--py-spy [PATH]] [--json]`.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import gc
import http.client
import inspect
import io
import itertools
import json
import math
import os
import platform
import pstats
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import duckdb
import httpx
from google.protobuf.internal import api_implementation
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spanledger import conventions as c
from spanledger.conventions import DEFAULT_DIMENSIONS
from spanledger.pricing import PriceBook
from spanledger.server.heap import GC_THRESHOLDS, HeapFreezer
from spanledger.server.otlp import decode_protobuf
from spanledger.server.pipeline import Pipeline, _Batch
from spanledger.spans import SpanRecord
from spanledger.store.duckdb import DuckDBStore
from spanledger.traces import Dimensions

BATCH_SPANS = 512
DEFAULT_BATCHES = 300
# The OTel Collector's exporters send with 10 consumers by default (sending_queue.num_consumers).
DEFAULT_CLIENTS = 10
DEFAULT_SEED = 20261125
ROUNDS = 3
TARGET_SPANS_PER_S = 50_000
TIMELINE_WINDOW_S = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
START = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MS = 1_000_000  # ns

# -- the workload ----------------------------------------------------------------------------
# (service, department, agents, share of traces)
SERVICES = (
    ("support-bot", "customer-support", ("triage", "answer", "escalation"), 30),
    ("research-assistant", "research", ("planner", "researcher", "writer"), 25),
    ("code-review", "engineering", ("reviewer", "fixer"), 20),
    ("sales-copilot", "sales", ("prospector", "drafter"), 15),
    ("contract-qa", "legal", ("clause-finder", "summarizer"), 10),
)
# (provider name, request model, response model, weight, reasoning tokens, cache writes)
MODELS = (
    ("openai", "gpt-5.4", "gpt-5.4-2026-03-05", 14, True, False),
    ("openai", "gpt-5-mini", "gpt-5-mini-2025-08-07", 18, True, False),
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 12, False, False),
    ("anthropic", "claude-sonnet-4-6", "claude-sonnet-4-6", 18, True, True),
    ("anthropic", "claude-opus-4-6", "claude-opus-4-6", 5, True, True),
    ("anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001", 12, False, True),
    ("gcp.gemini", "gemini-3-pro-preview", "gemini-3-pro-preview", 8, True, False),
    ("gcp.gemini", "gemini-2.5-flash", "gemini-2.5-flash", 12, True, False),
    ("openai", "acme-router-v2", "acme-router-v2", 1, False, False),  # no price anywhere
)
SERVER_ADDRESS = {
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "gcp.gemini": "generativelanguage.googleapis.com",
}
TOOLS = (
    ("search_docs", "function", "vector-db.internal"),
    ("web_search", "function", "api.search.example.com"),
    ("run_sql", "function", "warehouse.internal"),
    ("fetch_ticket", "function", "tickets.internal"),
    ("send_email", "function", "smtp.internal"),
    ("read_file", "function", "files.internal"),
    ("code_interpreter", "extension", "sandbox.internal"),
)
USERS = 60
SPAN_KIND_SERVER, SPAN_KIND_INTERNAL, SPAN_KIND_CLIENT = 2, 1, 3


@dataclass(slots=True)
class GenSpan:
    trace_id: bytes
    span_id: bytes
    parent: bytes
    name: str
    kind: int
    start_ns: int
    end_ns: int
    error: bool
    attrs: dict[str, Any]
    service: int
    scope: str


@dataclass(slots=True)
class Workload:
    bodies: list[bytes]
    spans: int
    traces: int
    by_kind: dict[str, int]
    bytes_total: int
    generation_s: float


def _ns(when: dt.datetime) -> int:
    return (when - EPOCH) // dt.timedelta(microseconds=1) * 1_000


def _id(rng: random.Random, size: int) -> bytes:
    return (rng.getrandbits(8 * size - 1) | 1).to_bytes(size, "big")


def _llm_attrs(rng: random.Random, conversation: str) -> tuple[str, dict[str, Any], int]:
    provider, request, response, _, reasoning, cache_writes = rng.choices(
        MODELS, weights=[m[3] for m in MODELS]
    )[0]
    prompt = 1 + int(min(rng.lognormvariate(7.8, 1.0), 150_000))
    cache_read = int(prompt * rng.uniform(0.3, 0.9)) if rng.random() < 0.45 else 0
    output = 1 + int(min(rng.lognormvariate(5.8, 1.0), 16_000))
    attrs: dict[str, Any] = {
        c.GEN_AI_OPERATION_NAME: "chat",
        c.GEN_AI_PROVIDER_NAME: provider,
        c.GEN_AI_REQUEST_MODEL: request,
        c.GEN_AI_RESPONSE_MODEL: response,
        "gen_ai.request.max_tokens": 4096,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.response.id": f"resp_{rng.getrandbits(48):012x}",
        "gen_ai.response.finish_reasons": ("stop",),
        "server.address": SERVER_ADDRESS[provider],
        "server.port": 443,
        c.GEN_AI_CONVERSATION_ID: conversation,
        c.GEN_AI_USAGE_INPUT_TOKENS: prompt,
        c.GEN_AI_USAGE_OUTPUT_TOKENS: output,
    }
    if cache_read:
        attrs[c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cache_read
    if cache_writes and rng.random() < 0.3:
        attrs[c.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = int((prompt - cache_read) * 0.5)
    if reasoning and rng.random() < 0.5:
        attrs[c.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = int(output * rng.uniform(0.2, 0.8))
    return f"chat {request}", attrs, int(rng.lognormvariate(7.0, 0.7)) * MS


def _tool_attrs(rng: random.Random, agent: str) -> tuple[str, dict[str, Any], int]:
    name, kind, host = rng.choice(TOOLS)
    attrs: dict[str, Any] = {
        c.GEN_AI_OPERATION_NAME: "execute_tool",
        c.GEN_AI_TOOL_NAME: name,
        "gen_ai.tool.type": kind,
        "gen_ai.tool.call.id": f"call_{rng.getrandbits(64):016x}",
        "gen_ai.tool.description": f"{name.replace('_', ' ')} for the {agent} agent",
        c.GEN_AI_AGENT_NAME: agent,
        "server.address": host,
        "server.port": 8443,
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "url.path": f"/v1/{name}",
        "code.function": f"tools.{name}",
    }
    return f"execute_tool {name}", attrs, int(rng.lognormvariate(5.0, 0.9)) * MS


def _agent_attrs(
    rng: random.Random, agent: str, user: str, department: str, conversation: str
) -> dict[str, Any]:
    return {
        c.GEN_AI_OPERATION_NAME: "invoke_agent",
        c.GEN_AI_AGENT_NAME: agent,
        "gen_ai.agent.id": f"asst_{agent}",
        "gen_ai.agent.description": f"the {agent} agent",
        c.GEN_AI_CONVERSATION_ID: conversation,
        c.USER_ID: user,
        "spanledger.department": department,
        "spanledger.tenant": f"tenant-{int(user[-3:]) % 7}",
        "session.id": conversation,
        "http.route": "/v1/agents/{agent}/runs",
        "http.request.method": "POST",
        "client.address": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
    }


def make_trace(rng: random.Random, start_ns: int) -> list[GenSpan]:
    service = rng.choices(range(len(SERVICES)), weights=[s[3] for s in SERVICES])[0]
    _, department, agents, _ = SERVICES[service]
    user = f"user-{int(rng.paretovariate(1.2)) % USERS:03d}"
    conversation = f"conv-{rng.getrandbits(40):010x}"
    trace_id = _id(rng, 16)
    size = rng.randint(10, 30)
    root_id = _id(rng, 8)
    spans: list[GenSpan] = []
    agent = agents[0]
    t = start_ns + 2 * MS

    def add(parent: bytes, step_agent: str, budget: int) -> int:
        """Alternate LLM calls and tool calls under `parent` for `budget` spans."""
        nonlocal t
        tools_left = 0
        for _ in range(budget):
            if tools_left:
                name, attrs, duration = _tool_attrs(rng, step_agent)
                scope, kind = "agent-framework", SPAN_KIND_INTERNAL
                tools_left -= 1
            else:
                name, attrs, duration = _llm_attrs(rng, conversation)
                scope, kind = "opentelemetry.instrumentation.openai_v2", SPAN_KIND_CLIENT
                tools_left = rng.choice((0, 1, 1, 2, 3))
            error = rng.random() < 0.02
            if error:
                attrs[c.ERROR_TYPE] = "RateLimitError" if kind == SPAN_KIND_CLIENT else "Timeout"
            spans.append(
                GenSpan(
                    trace_id, _id(rng, 8), parent, name, kind, t, t + duration, error, attrs,
                    service, scope,
                )
            )  # fmt: skip
            t += duration + rng.randrange(1, 20) * MS
        return t

    remaining = size - 1
    while remaining > 0:
        if remaining >= 5 and len(agents) > 1 and rng.random() < 0.25:
            sub = rng.choice(agents[1:])
            sub_id = _id(rng, 8)
            sub_start = t
            inner = min(remaining - 1, rng.randint(3, 8))
            end = add(sub_id, sub, inner)
            spans.append(
                GenSpan(
                    trace_id, sub_id, root_id, f"invoke_agent {sub}", SPAN_KIND_INTERNAL,
                    sub_start, end, False,
                    _agent_attrs(rng, sub, user, department, conversation),
                    service, "agent-framework",
                )
            )  # fmt: skip
            remaining -= inner + 1
        else:
            step = min(remaining, rng.randint(1, 4))
            add(root_id, agent, step)
            remaining -= step
    spans.append(
        GenSpan(
            trace_id, root_id, b"", f"invoke_agent {agent}", SPAN_KIND_SERVER, start_ns,
            t + 5 * MS, False, _agent_attrs(rng, agent, user, department, conversation),
            service, "agent-framework",
        )
    )  # fmt: skip
    return spans


def _set(value: AnyValue, raw: Any) -> None:
    if isinstance(raw, str):
        value.string_value = raw
    elif isinstance(raw, bool):
        value.bool_value = raw
    elif isinstance(raw, int):
        value.int_value = raw
    elif isinstance(raw, float):
        value.double_value = raw
    elif isinstance(raw, tuple):
        for item in raw:
            _set(value.array_value.values.add(), item)
    else:
        raise TypeError(raw)


def _fill(target: Any, attrs: dict[str, Any]) -> None:
    for key, raw in attrs.items():
        kv: KeyValue = target.add(key=key)
        _set(kv.value, raw)


def resource_attrs(service: int) -> dict[str, Any]:
    name, department, _, _ = SERVICES[service]
    return {
        c.SERVICE_NAME: name,
        "service.version": "2026.11.3",
        "service.namespace": department,
        "deployment.environment.name": "production",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": "1.38.0",
        "host.name": f"{name}-7f9c{service}d-x2k4p",
        "k8s.pod.name": f"{name}-7f9c{service}d-x2k4p",
    }


def encode_batch(spans: Sequence[GenSpan]) -> bytes:
    """One ExportTraceServiceRequest: a ResourceSpans per service, a ScopeSpans per scope."""
    request = ExportTraceServiceRequest()
    by_service: dict[int, dict[str, list[GenSpan]]] = {}
    for span in spans:
        by_service.setdefault(span.service, {}).setdefault(span.scope, []).append(span)
    for service, scopes in by_service.items():
        resource_spans = request.resource_spans.add()
        _fill(resource_spans.resource.attributes, resource_attrs(service))
        for scope, members in scopes.items():
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = scope
            scope_spans.scope.version = "0.52b0"
            for g in members:
                span: Span = scope_spans.spans.add(
                    trace_id=g.trace_id,
                    span_id=g.span_id,
                    parent_span_id=g.parent,
                    name=g.name,
                    kind=g.kind,
                    start_time_unix_nano=g.start_ns,
                    end_time_unix_nano=g.end_ns,
                )
                span.status.code = Status.STATUS_CODE_ERROR if g.error else Status.STATUS_CODE_OK
                _fill(span.attributes, g.attrs)
    return request.SerializeToString()


def make_workload(batches: int, seed: int) -> Workload:
    """`batches` request bodies of BATCH_SPANS spans, in the order the spans end."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    wanted = batches * BATCH_SPANS
    spans: list[GenSpan] = []
    start = _ns(START)
    while len(spans) < wanted:
        spans.extend(make_trace(rng, start))
        start += rng.randrange(50, 400) * MS  # traces overlap: each runs for seconds
    spans.sort(key=lambda s: s.end_ns)
    spans = spans[:wanted]  # the last traces may lose their root: finalized at shutdown
    bodies = [encode_batch(spans[i : i + BATCH_SPANS]) for i in range(0, wanted, BATCH_SPANS)]
    kinds = {"llm": 0, "tool": 0, "agent": 0}
    kind_of = {"chat": "llm", "execute_tool": "tool", "invoke_agent": "agent"}
    for span in spans:
        kinds[kind_of[span.attrs[c.GEN_AI_OPERATION_NAME]]] += 1
    return Workload(
        bodies=bodies,
        spans=wanted,
        traces=len({s.trace_id for s in spans}),
        by_kind=kinds,
        bytes_total=sum(map(len, bodies)),
        generation_s=time.perf_counter() - t0,
    )


# -- in-process baselines --------------------------------------------------------------------
@dataclass(slots=True)
class Timing:
    name: str
    label: str
    spans: int
    rounds_ns: list[int] = field(default_factory=list)
    result: object = None  # what the last round returned

    @property
    def best_ns(self) -> int:
        return min(self.rounds_ns)

    @property
    def spans_per_s(self) -> float:
        return self.spans * 1e9 / self.best_ns


def measure(name: str, label: str, spans: int, run: Callable[[], object]) -> Timing:
    """One warm-up round, then ROUNDS timed rounds; GC stays on, as in the server."""
    run()
    timing = Timing(name, label, spans)
    for _ in range(ROUNDS):
        gc.collect()
        t0 = time.perf_counter_ns()
        timing.result = run()
        timing.rounds_ns.append(time.perf_counter_ns() - t0)
    return timing


def decode_only(bodies: Sequence[bytes]) -> int:
    count = 0
    for body in bodies:
        count += len(decode_protobuf(body))
    return count


def decode_and_price(bodies: Sequence[bytes], book: PriceBook) -> int:
    """Decode and price every span as the pipeline does; returns the sum of their costs."""
    price = book.price_attributes
    total = 0
    if "failed" in inspect.signature(price).parameters:  # the pipeline passes the status
        for body in bodies:
            for r in decode_protobuf(body):
                total += price(r.attributes, r.start_ns, r.resource, failed=r.failed).cost.total
    else:
        for body in bodies:
            for r in decode_protobuf(body):
                total += price(r.attributes, r.start_ns, r.resource).cost.total
    return total


def decode_price_store(bodies: Sequence[bytes], book: PriceBook, db: Path) -> int:
    """What ingest cannot do without, in one thread: decode, price and encode every span as
    the receivers do, then INSERT them as the writer does (groups of 4 bodies, a fresh file).
    No HTTP, no trace assembly, no finalization: a ceiling for the whole path."""
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    store = DuckDBStore(db)
    pipeline = Pipeline(store, book)
    try:
        stored = 0
        for start in range(0, len(bodies), 4):
            group = [receive(pipeline, decode_protobuf(body)) for body in bodies[start : start + 4]]
            stored += store.write([batch.encoded for batch in group])
        return stored
    finally:
        store.close()


# -- the server process ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_cpu_s(pid: int | str) -> float:
    """User + system CPU seconds of a process, all its threads (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def proc_memory_kib(pid: int) -> dict[str, int]:
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmHWM:", "VmRSS:")):
                name, value = line.split(":")
                found[name] = int(value.split()[0])
    return found


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used (/proc/stat, every CPU)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / CLK_TCK  # user..steal; guest time is inside user


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of a process (/proc/<pid>/task/<tid>/stat)."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError):
            found[int(tid)] = proc_cpu_s(f"{pid}/task/{tid}")  # type: ignore[arg-type]
    return found


class ServerProcess:
    """`spanledger serve` on a fresh DuckDB file, with a sampler of its peak RSS. The gRPC
    receiver runs too (on a free port, idle), as in a default deployment."""

    def __init__(self, db: Path, log: Path) -> None:
        self.db = db
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cli = Path(sys.executable).with_name("spanledger")
        command = [str(cli)] if cli.exists() else [sys.executable, "-m", "spanledger.cli"]
        command += ["serve", "--db", str(db), "--http-port", str(self.port), "--grpc-port", "0"]
        self._log = log.open("wb")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self.peak_kib = 0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while self._sampling:
            with contextlib.suppress(OSError, ValueError, KeyError):  # KeyError: exiting
                self.peak_kib = max(self.peak_kib, proc_memory_kib(self.proc.pid)["VmHWM"])
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 60.0) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"spanledger serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    self._sampler.start()
                    return time.perf_counter() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("spanledger serve did not answer /healthz in time")

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def stop(self, timeout: float = 300.0) -> float:
        """SIGINT (Ctrl-C): the server stores what is queued and finalizes open traces."""
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        finally:
            self._sampling = False
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
        return time.perf_counter() - t0

    def kill(self) -> None:
        self._sampling = False
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@dataclass(slots=True)
class SendResult:
    acked_spans: int = 0
    throttled: int = 0  # 429 answers, retried after Retry-After
    errors: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    acked_at_s: list[float] = field(default_factory=list)  # since the start, per batch


class Client:
    """One keep-alive HTTP/1.1 connection to the server (`http.client`). The load generator
    shares the server's two cores: POSTing the 300 bodies cost 0.9-1.0 CPU s through
    `httpx.Client` and 0.2 through this, and the server was 4-15% faster beside it."""

    def __init__(self, url: str) -> None:
        address = urllib.parse.urlsplit(url)
        self._connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
        """(status, Retry-After) of one request, its answer read to the end."""
        headers = {"content-type": "application/x-protobuf"} if body is not None else {}
        self._connection.request(method, path, body=body, headers=headers)
        answer = self._connection.getresponse()
        answer.read()
        return answer.status, answer.getheader("retry-after") or "1"

    def close(self) -> None:
        self._connection.close()


def send_all(url: str, bodies: Sequence[bytes], clients: int) -> tuple[SendResult, float]:
    """POST every body once (retrying 429s), from `clients` threads; returns wall seconds."""
    result = SendResult()
    next_index = itertools.count().__next__  # atomic under the GIL
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    began = 0.0  # set when the barrier opens

    def worker() -> None:
        client = Client(url)
        try:
            client.request("GET", "/healthz")  # open the keep-alive connection before timing
            start.wait()
            while (index := next_index()) < len(bodies):
                while True:
                    t0 = time.perf_counter()
                    try:
                        status, retry_after = client.request("POST", "/v1/traces", bodies[index])
                    except (OSError, http.client.HTTPException) as error:
                        with lock:
                            result.errors.append(f"batch {index}: {error!r}")
                        break
                    took = time.perf_counter() - t0
                    if status == 429:
                        with lock:
                            result.throttled += 1
                        time.sleep(float(retry_after))
                        continue
                    with lock:
                        if status == 200:
                            result.acked_spans += BATCH_SPANS
                            result.latencies_s.append(took)
                            result.acked_at_s.append(time.perf_counter() - began)
                        else:
                            result.errors.append(f"batch {index}: HTTP {status}")
                    break
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    return result, time.perf_counter() - began


def pipeline_busy_s(url: str) -> dict[str, float]:
    """`spanledger_{receiver,writer}_busy_seconds` from the server's /metrics."""
    busy = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        for thread in ("receiver", "writer"):
            if name == f"spanledger_{thread}_busy_seconds":
                busy[thread] = float(value)
    return busy


def verify(db: Path) -> dict[str, Any]:
    """What the DuckDB file holds after the server has shut down."""
    with duckdb.connect(str(db), read_only=True) as con:
        spans, traces_in_spans, cost, unfinalized = con.execute(
            "SELECT count(*), count(DISTINCT trace_id), coalesce(sum(cost), 0)::DECIMAL(38,0), "
            "count(*) FILTER (WHERE NOT finalized) FROM spans"
        ).fetchone()
        trace_rows = con.execute("SELECT count(*) FROM traces").fetchone()[0]
    return {
        "spans": spans,
        "traces_in_spans": traces_in_spans,
        "trace_rows": trace_rows,
        "cost_femto": int(cost),
        "unfinalized_spans": unfinalized,
        "db_bytes": db.stat().st_size,
    }


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def timeline(acked_at_s: Sequence[float], wall_s: float, window_s: float) -> list[float]:
    """Acknowledged spans/s in consecutive windows of the run (the last one may be short)."""
    windows = [0] * max(1, math.ceil(wall_s / window_s))
    for at in acked_at_s:
        windows[min(len(windows) - 1, int(at / window_s))] += BATCH_SPANS
    last = wall_s - window_s * (len(windows) - 1)
    return [n / window_s for n in windows[:-1]] + [windows[-1] / max(last, 1e-9)]


def run_server(
    workload: Workload, clients: int, workdir: Path, py_spy: str | None
) -> dict[str, Any]:
    db = workdir / "ingest.duckdb"
    server = ServerProcess(db, workdir / "server.log")
    spy = None
    try:
        startup_s = server.wait_ready()
        if py_spy:
            spy = PySpy(py_spy, server.proc.pid, workdir / "py-spy.txt")
        cpu_before = server.cpu_s()
        threads_before = thread_cpu_s(server.proc.pid)
        busy_before = pipeline_busy_s(server.url)
        client_cpu_before = time.process_time()
        machine_before = machine_busy_s()
        sent, wall_s = send_all(server.url, workload.bodies, clients)
        machine_cpu = machine_busy_s() - machine_before
        cpu_ingest = server.cpu_s() - cpu_before
        threads_after = thread_cpu_s(server.proc.pid)
        busy_after = pipeline_busy_s(server.url)
        client_cpu = time.process_time() - client_cpu_before
        peak_ingest_kib = proc_memory_kib(server.proc.pid)["VmHWM"]
        spied = spy.stop() if spy else None
        with httpx.Client(base_url=server.url) as client:
            health = client.get("/healthz").json()
        cpu_before_stop = server.cpu_s()
        reaped_before = _child_cpu_s()  # py-spy, if it ran, is already in there
        # The server's whole CPU time comes with its exit status (wait4() rusage).
        shutdown_s = server.stop()
    except BaseException:
        server.kill()
        raise
    total_cpu = _child_cpu_s() - reaped_before
    per_thread = sorted(
        (cpu - threads_before.get(tid, 0.0) for tid, cpu in threads_after.items()), reverse=True
    )
    return {
        "clients": clients,
        "startup_s": startup_s,
        "wall_s": wall_s,
        "acked_spans": sent.acked_spans,
        "durable_spans_per_s": sent.acked_spans / wall_s,
        "throttled_429": sent.throttled,
        "errors": sent.errors[:10],
        "error_count": len(sent.errors),
        "latency_ms": {
            "p50": percentile(sent.latencies_s, 0.5) * 1e3,
            "p90": percentile(sent.latencies_s, 0.9) * 1e3,
            "p99": percentile(sent.latencies_s, 0.99) * 1e3,
            "max": max(sent.latencies_s, default=float("nan")) * 1e3,
        },
        "server_cpu_s_ingest": cpu_ingest,
        "server_cores_busy": cpu_ingest / wall_s,
        "server_cpu_us_per_span": cpu_ingest / max(sent.acked_spans, 1) * 1e6,
        "server_thread_cpu_s": [round(cpu, 2) for cpu in per_thread if cpu > 0],
        # Share of the run each pipeline thread spent working (not waiting for work).
        "pipeline_busy": {
            thread: (busy_after[thread] - busy_before.get(thread, 0.0)) / wall_s
            for thread in busy_after
        },
        "timeline_window_s": TIMELINE_WINDOW_S,
        "timeline_spans_per_s": timeline(sent.acked_at_s, wall_s, TIMELINE_WINDOW_S),
        "server_cpu_s_shutdown": total_cpu - cpu_before_stop if total_cpu else None,
        "server_cpu_s_total": total_cpu,
        "client_cpu_s": client_cpu,
        "other_processes_cpu_s": max(0.0, machine_cpu - cpu_ingest - client_cpu),
        "open_traces_at_end": health.get("open_traces"),
        "shutdown_s": shutdown_s,
        # Every trace finalized too: the shutdown finalizes what the run left open (most
        # traces, in a run shorter than a few idle windows) and checkpoints the file.
        "finalized_spans_per_s": sent.acked_spans / (wall_s + shutdown_s),
        "peak_rss_mib_ingest": peak_ingest_kib / 1024,
        "peak_rss_mib_total": server.peak_kib / 1024,
        "store": verify(db),
        "py_spy": spied,
    }


def _child_cpu_s() -> float:
    """CPU of the reaped server process (user + system of waited-for children)."""
    usage = os.times()
    return usage.children_user + usage.children_system


class PySpy:
    """`py-spy record` on the server while the clients send (sampling; wall-clock view of
    every thread, GIL waits included, as py-spy --idle shows them)."""

    def __init__(self, executable: str, pid: int, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [executable, "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
             "--threads", "--idle", "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.0)  # attach before the clients start

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)
        return summarize_py_spy(self.out.read_text() if self.out.exists() else "")


# What the writer thread spends its time on. Each sample goes to the first of these frames
# found walking its stack from the innermost frame out, so the parts add up to 100%.
WRITER_PARTS = {
    "store.write: INSERT (in DuckDB)": "DuckDBStore.write (",
    "dedupe: stored_span_ids / finalized_among": "Pipeline._fresh (",
    "file spans into open traces (Pipeline._file)": "Pipeline._file (",
    "finalize: store.update_derived (UPDATE)": "DuckDBStore.update_derived (",
    "finalize: store.save_traces": "DuckDBStore.save_traces (",
    "finalize: Trace.assemble (rollups, flags)": "Trace.assemble (",
    "finalize: the rest": "Pipeline._finalize (",
    "listeners (alerts, forwarding)": "Pipeline._store (",
    "waiting for work": "Condition.wait (",
}


def _writer_part(frames: Sequence[str]) -> str:
    for frame in reversed(frames):
        for label, name in WRITER_PARTS.items():
            if frame.startswith(name):
                return label
    return "other"


def summarize_py_spy(raw: str) -> dict[str, Any]:
    """The writer thread's wall time by part (py-spy --idle raw stacks)."""
    threads: Counter[str] = Counter()
    writer: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        name = thread.split(": ", 1)[-1]
        threads[name] += int(count)
        if name == "spanledger-writer":
            writer[_writer_part(frames)] += int(count)
    total = sum(writer.values()) or 1
    return {
        "samples": sum(threads.values()),
        "threads": dict(threads.most_common(12)),
        "writer_samples": sum(writer.values()),
        "writer_parts": {k: writer[k] / total for k in [*WRITER_PARTS, "other"]},
    }


# -- profile: the server's work in this process, without HTTP --------------------------------
def replay_pipeline(bodies: Sequence[bytes], db: Path) -> tuple[Pipeline, Callable[[], None]]:
    """The server's steps, run synchronously in this thread: per request body what a
    receiver does (decode, price, encode) and one commit; then the finalization of every
    open trace (as at shutdown)."""
    store = DuckDBStore(db)
    book = PriceBook.from_files([], use_defaults=True)
    pipeline = Pipeline(store, book, dimensions=Dimensions(dict(DEFAULT_DIMENSIONS)))
    # What `start()` reads from the ledger (empty here): until then every trace may have
    # been finalized, and each batch would ask the store, which the server never does.
    pipeline.resume()

    def run() -> None:
        for body in bodies:
            pipeline._store([receive(pipeline, decode_protobuf(body))])
        pipeline._finalize(everything=True)

    return pipeline, run


def receive(pipeline: Pipeline, records: Sequence[SpanRecord]) -> _Batch:
    """What `Pipeline.submit` does on the receiver's thread, without queueing."""
    spans = [pipeline._price(record) for record in records]
    return _Batch(spans, pipeline.store.encode(spans))


@contextlib.contextmanager
def server_heap() -> Iterator[None]:
    """The collector as `spanledger serve` runs it (`Server.run`): rare collections, and
    what survives frozen every 50 ms. With Python's defaults the replay's collections walk
    every span of every open trace again and again, which the server does not do, and
    decode alone looks twice as slow as it is."""
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    freezer = HeapFreezer().start()
    try:
        yield
    finally:
        freezer.stop()
        gc.set_threshold(*thresholds)


def profile(bodies: Sequence[bytes], spans: int, workdir: Path, top: int) -> dict[str, Any]:
    with server_heap():
        return _profile(bodies, spans, workdir, top)


def _profile(bodies: Sequence[bytes], spans: int, workdir: Path, top: int) -> dict[str, Any]:
    stages: dict[str, float] = {}
    # 1. Timed without the profiler: per stage, by wrapping the pipeline's steps.
    pipeline, _ = replay_pipeline(bodies, workdir / "replay.duckdb")
    store = pipeline.store
    timers = {
        "decode_protobuf": None,
        "receiver: price (PriceBook.price_attributes)": (pipeline, "_price"),
        "receiver: encode as Arrow rows (store.encode)": (store, "encode"),
        "writer: skip copies (_fresh)": (pipeline, "_fresh"),
        "writer: store.write (INSERT)": (store, "write"),
        "writer: file spans into open traces (_file)": (pipeline, "_file"),
        "writer: finalize: store.update_derived (UPDATE)": (store, "update_derived"),
        "writer: finalize: store.save_traces": (store, "save_traces"),
        "writer: finalize (total)": (pipeline, "_finalize"),
    }
    for label, target in timers.items():
        if target is None or not hasattr(*target):  # the pipeline's internals move on
            continue
        owner, name = target
        original = getattr(owner, name)

        def timed(*args: Any, _original: Any = original, _label: str = label, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _original(*args, **kw)
            finally:
                stages[_label] = stages.get(_label, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed)
    t_decode = 0.0

    def replay() -> None:
        nonlocal t_decode
        for body in bodies:
            t0 = time.perf_counter()
            records = decode_protobuf(body)
            t_decode += time.perf_counter() - t0
            pipeline._store([receive(pipeline, records)])
        pipeline._finalize(everything=True)

    t0 = time.perf_counter()
    replay()
    wall = time.perf_counter() - t0
    stages["decode_protobuf"] = t_decode
    store.close()
    # 2. The same again under cProfile, on a fresh file.
    pipeline2, run2 = replay_pipeline(bodies, workdir / "replay-profiled.duckdb")
    profiler = cProfile.Profile()
    profiler.enable()
    run2()
    profiler.disable()
    pipeline2.store.close()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    by_tottime = text.getvalue()
    text = io.StringIO()
    stats.stream = text
    stats.sort_stats("cumulative").print_stats(top)
    return {
        "wall_s": wall,
        "spans_per_s": spans / wall,
        "stages_s": stages,
        "cprofile_tottime": _trim_pstats(by_tottime),
        "cprofile_cumulative": _trim_pstats(text.getvalue()),
    }


def _trim_pstats(text: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("ncalls"):
            return "\n".join(lines[i:]).replace(str(Path.cwd()) + "/", "")
    return text


# -- report ----------------------------------------------------------------------------------
def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average_1m_at_start": os.getloadavg()[0],
        "spanledger": version("spanledger"),
        "protobuf": f"{version('protobuf')} ({api_implementation.Type()})",
        "duckdb": version("duckdb"),
        "uvicorn": f"{version('uvicorn')} ({_installed('uvloop', 'asyncio')}, "
        f"{_installed('httptools', 'h11')})",
        "httpx": version("httpx"),
    }


def _installed(package: str, otherwise: str) -> str:
    """What uvicorn's "auto" picks: `package` with its version if installed, else the other."""
    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return otherwise


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = environment()
    workload = make_workload(args.batches, args.seed)
    bodies, spans = workload.bodies, workload.spans
    book = PriceBook.from_files([], use_defaults=True)
    timings = [
        measure("decode", "protobuf decode alone (decode_protobuf)", spans,
                lambda: decode_only(bodies)),
        measure("decode_price", "decode + price (PriceBook.price_attributes)", spans,
                lambda: decode_and_price(bodies, book)),
    ]  # fmt: skip
    expected_cost = timings[1].result
    py_spy = args.py_spy or None
    if py_spy == "auto":
        py_spy = shutil.which("py-spy")
    with tempfile.TemporaryDirectory(prefix="spanledger-ingest-") as tmp:
        workdir = Path(tmp)
        timings.append(
            measure("decode_price_store", "+ encode + INSERT (store.write), one thread", spans,
                    lambda: decode_price_store(bodies, book, workdir / "ceiling.duckdb"))
        )  # fmt: skip
        server = run_server(workload, args.clients, workdir, py_spy)
        profiled = profile(bodies, spans, workdir, args.top) if args.profile else None
    decode, priced, stored = timings
    rate = server["durable_spans_per_s"]
    store = server["store"]
    checks = {
        "spans_stored_equals_sent": store["spans"] == spans,
        "acked_equals_sent": server["acked_spans"] == spans,
        "trace_rows_equal_traces": store["trace_rows"] == workload.traces,
        "all_finalized": store["unfinalized_spans"] == 0,
        "cost_equals_in_process": store["cost_femto"] == expected_cost,
    }
    env["load_average_1m_at_end"] = os.getloadavg()[0]
    return {
        "environment": env,
        "workload": {
            "batches": args.batches,
            "spans_per_batch": BATCH_SPANS,
            "spans": spans,
            "traces": workload.traces,
            "by_kind": workload.by_kind,
            "bytes": workload.bytes_total,
            "bytes_per_span": workload.bytes_total / spans,
            "generation_s": workload.generation_s,
            "seed": args.seed,
        },
        "baselines": {
            t.name: {
                "label": t.label,
                "spans_per_s": t.spans_per_s,
                "us_per_span": t.best_ns / t.spans / 1e3,
                "rounds_ns": t.rounds_ns,
            }
            for t in timings
        },
        "end_to_end": server,
        "ratios": {
            "end_to_end_vs_decode": rate / decode.spans_per_s,
            "end_to_end_vs_decode_price": rate / priced.spans_per_s,
            "end_to_end_vs_decode_price_store": rate / stored.spans_per_s,
        },
        # Decode, price, encode and INSERT alone, spread perfectly over every core: more
        # than the server can reach, since it also serves HTTP, assembles and finalizes.
        "ceiling_spans_per_s": stored.spans_per_s * env["cpus_usable"],
        "target": {
            "metric": "durable spans/s end to end",
            "threshold": TARGET_SPANS_PER_S,
            "value": rate,
            "pass": rate >= TARGET_SPANS_PER_S,
        },
        "checks": {**checks, "expected_cost_femto": expected_cost, "ok": all(checks.values())},
        "profile": profiled,
    }


def print_report(result: dict[str, Any]) -> None:
    env, work, e2e = result["environment"], result["workload"], result["end_to_end"]
    print("SpanLedger ingest benchmark (OTLP/HTTP protobuf -> spanledger serve -> DuckDB)")
    print(
        f"python {env['python']} ({env['machine']}), {env['cpus_usable']} CPUs usable; "
        f"protobuf {env['protobuf']}, duckdb {env['duckdb']}, uvicorn {env['uvicorn']}, "
        f"spanledger {env['spanledger']}; load average {env['load_average_1m_at_start']:.2f} "
        f"at start, {env['load_average_1m_at_end']:.2f} at end"
    )
    others = e2e["other_processes_cpu_s"]
    if others > 0.1 * e2e["wall_s"]:
        print(
            f"warning: other processes used {others:.1f} CPU s of the machine during the "
            f"{e2e['wall_s']:.1f} s run ({others / e2e['wall_s']:.2f} cores): figures are "
            "pessimistic"
        )
    kinds = work["by_kind"]
    print(
        f"workload: {work['batches']} batches x {work['spans_per_batch']} spans = "
        f"{work['spans']:,} spans in {work['traces']:,} traces (llm {kinds['llm']:,}, tool "
        f"{kinds['tool']:,}, agent {kinds['agent']:,}); {work['bytes'] / 2**20:.1f} MiB of "
        f"protobuf, {work['bytes_per_span']:.0f} B/span; built in {work['generation_s']:.1f} s"
    )
    print(
        f"method: {e2e['clients']} client threads (keep-alive http.client) POST each body once; "
        "durable = acknowledged 200 (committed to DuckDB); in-process baselines best of "
        f"{ROUNDS} rounds after a warm-up, GC on"
    )
    print()
    rate = e2e["durable_spans_per_s"]
    print(f"  {'':<46} {'spans/s':>10} {'us/span':>9} {'e2e / this':>11}")
    for b in result["baselines"].values():
        print(
            f"  {b['label']:<46} {b['spans_per_s']:>10,.0f} {b['us_per_span']:>9.2f} "
            f"{rate / b['spans_per_s']:>10.2f}x"
        )
    print(f"  {'end to end, durable (HTTP -> server -> DuckDB)':<46} {rate:>10,.0f} "
          f"{1e6 / rate:>9.2f} {1:>10.2f}x")  # fmt: skip
    if result["profile"]:
        p = result["profile"]
        print(
            f"  {'in-process replay: decode+price+store+final.':<46} {p['spans_per_s']:>10,.0f} "
            f"{1e6 / p['spans_per_s']:>9.2f} {rate / p['spans_per_s']:>10.2f}x"
        )
    print()
    lat = e2e["latency_ms"]
    print(
        f"end to end: {e2e['acked_spans']:,} spans acknowledged in {e2e['wall_s']:.2f} s; "
        f"{e2e['throttled_429']} throttled (429), {e2e['error_count']} errors; request latency "
        f"p50 {lat['p50']:.0f} ms, p90 {lat['p90']:.0f} ms, p99 {lat['p99']:.0f} ms"
    )
    print(
        f"server: {e2e['server_cpu_s_ingest']:.2f} CPU s during ingest "
        f"({e2e['server_cores_busy']:.2f} cores busy, {e2e['server_cpu_us_per_span']:.1f} "
        f"CPU us/span); peak RSS {e2e['peak_rss_mib_ingest']:.0f} MiB during ingest, "
        f"{e2e['peak_rss_mib_total']:.0f} MiB incl. shutdown"
    )
    threads = e2e["server_thread_cpu_s"]
    print(
        "  CPU s per server thread during ingest (busiest first): "
        + ", ".join(f"{cpu:.1f}" for cpu in threads[:6])
        + f" of {e2e['wall_s']:.1f} s wall"
    )
    busy = e2e["pipeline_busy"]
    print(
        "  pipeline threads working (not waiting for work): "
        + ", ".join(f"{thread} {share:.0%}" for thread, share in busy.items())
        + " of the run; one near 100% is the stage that limits ingest"
    )
    print(
        f"  durable spans/s per {e2e['timeline_window_s']:.0f} s window: "
        + " ".join(f"{rate:,.0f}" for rate in e2e["timeline_spans_per_s"])
    )
    shutdown_cpu = e2e["server_cpu_s_shutdown"]
    print(
        f"shutdown: {e2e['open_traces_at_end']:,} open traces finalized in "
        f"{e2e['shutdown_s']:.1f} s"
        + (f" ({shutdown_cpu:.1f} CPU s)" if shutdown_cpu is not None else "")
        + f"; startup {e2e['startup_s']:.1f} s; load generator used {e2e['client_cpu_s']:.1f} "
        f"CPU s on the same cores, other processes {e2e['other_processes_cpu_s']:.1f} CPU s"
    )
    print(
        f"durable and finalized (acknowledged, then every trace finalized at shutdown): "
        f"{e2e['finalized_spans_per_s']:,.0f} spans/s "
        f"over {e2e['wall_s'] + e2e['shutdown_s']:.1f} s"
    )
    ratios = result["ratios"]
    print(
        f"ratio end to end / decode alone: {ratios['end_to_end_vs_decode']:.3f}; "
        f"/ decode+price: {ratios['end_to_end_vs_decode_price']:.3f}"
    )
    print(
        f"ceiling: decode + price + encode + INSERT alone, spread perfectly over "
        f"{env['cpus_usable']} cores: {result['ceiling_spans_per_s']:,.0f} spans/s"
    )
    target = result["target"]
    print(
        f"target: >= {TARGET_SPANS_PER_S:,} durable spans/s end to end on this "
        f"{env['cpus_usable']}-core machine: {'PASS' if target['pass'] else 'MISS'} "
        f"({target['value']:,.0f} spans/s)"
    )
    store, checks = e2e["store"], result["checks"]
    print()
    print(
        f"store after shutdown: {store['spans']:,} spans (sent {work['spans']:,}), "
        f"{store['trace_rows']:,} trace rows (sent {work['traces']:,} traces), "
        f"{store['unfinalized_spans']} spans not finalized, sum of costs "
        f"{store['cost_femto']:,} fF (in-process {checks['expected_cost_femto']:,} fF); "
        f"file {store['db_bytes'] / 2**20:.0f} MiB: {'OK' if checks['ok'] else 'FAILED'}"
    )
    for name, ok in checks.items():
        if name not in ("ok", "expected_cost_femto") and not ok:
            print(f"  FAILED: {name}")
    for error in e2e["errors"]:
        print(f"  error: {error}")
    spied = e2e["py_spy"]
    if spied:
        print()
        print(
            "py-spy on the server during the run (100 Hz, idle included): the writer thread "
            f"(one thread, every span passes it), {spied['writer_samples']:,} samples, by part"
        )
        for label, share in spied["writer_parts"].items():
            if share:  # parts of an older or newer store may not exist
                print(f"  {label:<58} {share:>6.1%}")
    if result["profile"]:
        p = result["profile"]
        print()
        print(
            f"profile: the server's work replayed in this process without HTTP (one commit per "
            f"request body, then every open trace finalized): {p['wall_s']:.2f} s"
        )
        for label, seconds in sorted(p["stages_s"].items(), key=lambda kv: -kv[1]):
            print(f"  {label:<58} {seconds:>7.2f} s {seconds / p['wall_s']:>6.1%}")
        print()
        print("cProfile of the replay, by own time:")
        print(p["cprofile_tottime"])
        print("cProfile of the replay, cumulative:")
        print(p["cprofile_cumulative"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--batches",
        type=int,
        default=DEFAULT_BATCHES,
        help=f"request bodies of {BATCH_SPANS} spans to send",
    )
    parser.add_argument(
        "--clients", type=int, default=DEFAULT_CLIENTS, help="concurrent client connections"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also replay the server's work in-process, timed and under cProfile",
    )
    parser.add_argument("--top", type=int, default=25, help="cProfile rows to print")
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        nargs="?",
        const="auto",
        help="sample the server with py-spy during the run (PATH, or py-spy on PATH)",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    args = parser.parse_args(argv)
    if args.batches < 1 or args.clients < 1:
        parser.error("--batches and --clients must be at least 1")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0 if result["checks"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
