"""Alerts: rules from the serve config, evaluated continuously on the ingest pipeline; each
alert goes to a webhook, the log and /metrics, and is listed by `GET /api/alerts`.

Rules (`alerts.rules` in the config; `spanledger.server.config.AlertRule`). Each alert
fires once per (rule, key) while its condition holds, and resolves when it clears:

* `trace_cost` (key: the trace) fires when an open trace's cost so far (every span's own
  cost, once) passes `max_usd`, while the trace is still running; it resolves when the
  trace is finalized, and the resolution carries the final cost.
* `loop` (key: the trace) fires when an open trace has more than `repeats` (default: the
  server's `loop_threshold`) calls of the same tool, or of the same model, under one parent
  span; it resolves when the trace is finalized, with its loops and their cost.
* `spend_rate` (key: the scope value) fires when the spend in the last `window` is at least
  `min_usd` and at least `ratio` times the spend per window of the `baseline` period
  before it; it resolves when the spend falls below either.
* `retry_share` (key: the scope value) fires when, in the last `window`, retried failed LLM
  calls cost more than `max_share` of the spend and at least `min_usd`; it resolves when
  either no longer holds.
* `unpriced_model` (key: provider/model) fires when a span of a model without a price
  arrives; it resolves after `window` (1h) without such a span.

A trace alert is not raised again for the same trace once resolved (a late span that
reopens a finalized trace does not page twice). State is in memory: after a restart a
condition that still holds fires again; receivers can deduplicate on `fingerprint`.

How the numbers are kept, on the pipeline's writer thread, per stored batch and without
re-assembling traces:

* Per open trace: the ids seen (a span sent twice counts once), the running cost, and a
  count of calls per (parent span, tool or model). The parent need not have arrived: an
  agent span ends, and is exported, after its calls, so a loop inside a running agent is
  seen while it runs (a `Trace` only groups siblings under a parent it holds).
* Window rules count each LLM call's cost at its **ingest time** (the server's clock when
  its batch was stored), not at the span's own end time: client clocks drift, and a late
  or replayed export should not rewrite the past. Windows are kept in buckets of
  `window / 20` (at least 1 s), so a window's edge is exact to one bucket. A call is
  counted for the scope value it carries or inherits from its ancestors that have arrived;
  when an ancestor that could still carry it is missing, the call waits for it (counted,
  at its own ingest time, once the ancestor arrives or the trace is finalized). `model`
  and `provider` scopes come from the call itself. A call with no value for the scope is
  not counted by that rule; a rule without `scope` counts all spend.
* `spend_rate` judges a scope value only once the server has watched for at least one
  `window` of baseline (no alerts from an empty history right after start); until a full
  `baseline` has passed, the expected spend is the rate over what was watched. A scope
  value with no spend in its baseline fires as soon as its window spend reaches `min_usd`.
* Retry overhead is the cost of a failed LLM call that a later similar call (same parent,
  requested model and operation) retried, as `Trace` marks it; counted in the failed
  call's ingest bucket.

Window rules are evaluated for the scope values a batch touched, right after it is stored,
and for all scope values every `evaluate_seconds` (so spend that stops still resolves).

Sinks: the webhook gets one HTTP POST per event, JSON
`{"source": "spanledger", "event": "firing"|"resolved", "alert": {...}}` (the alert as
`/api/alerts` shows it), from a background thread with a bounded queue, a timeout and
retries with backoff; a slow or dead webhook never blocks ingest, and what it cannot take
is dropped and counted (`spanledger_alerts_webhook_dropped`). The log gets a WARNING per
event (`spanledger.alerts`). /metrics has `spanledger_alerts_firing{rule,kind}` (gauge),
`spanledger_alerts_fired_total{rule,kind}` and `spanledger_alerts_resolved_total{rule,kind}`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import math
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx

from spanledger import conventions as c
from spanledger.pricing.money import FEMTO_PER_USD, Femto, usd_str
from spanledger.server.config import SPAN_SCOPES, WINDOW_KINDS, AlertRule, Alerts
from spanledger.server.sender import Sender
from spanledger.server.stats import Stats, labels
from spanledger.spans import SpanRecord
from spanledger.traces import DEFAULT_LOOP_THRESHOLD, Dimensions, PricedSpan, Trace

if TYPE_CHECKING:
    from spanledger.server.pipeline import Pipeline

__all__ = ["Alert", "AlertEngine", "Webhook"]

log = logging.getLogger("spanledger.alerts")

BUCKETS_PER_WINDOW = 20
TRACE_KINDS = frozenset({"trace_cost", "loop"})
DASHBOARD_SCOPES = frozenset(
    {"user", "department", "tenant", "agent", "conversation", "service", "model", "provider"}
)  # the filters a dashboard link can carry
_DASHBOARD_RANGES = (("15m", 900), ("1h", 3600), ("6h", 21600), ("24h", 86400), ("7d", 604800))
_ENDED_KEYS = 10_000  # resolved trace alerts remembered, so a reopened trace does not re-fire
_WALK_LIMIT = 256  # ancestors looked at for a span's inherited attribution


def _femto(amount: Decimal | None) -> Femto:
    return int((amount or Decimal(0)) * FEMTO_PER_USD)


def _share(part: int, whole: int) -> Decimal:
    if whole <= 0:
        return Decimal(0)
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)


def _decimal(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _duration(seconds: float | None) -> str:
    """300 -> "5m", 3600 -> "1h", 90 -> "90s"."""
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _seconds_json(seconds: float | None) -> float | int | None:
    if seconds is None:
        return None
    return int(seconds) if float(seconds).is_integer() else seconds


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    moment = dt.datetime.fromtimestamp(when, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- alerts -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Alert:
    """One firing (or resolved) alert: what crossed what, where, and a link to look at it.

    `value` and `threshold` are decimal strings in `unit` (usd, share, calls); `numbers`
    holds the kind's figures (money as decimal strings)."""

    id: int
    rule: AlertRule
    key: str
    value: str
    threshold: str
    unit: str
    summary: str
    link: str
    numbers: dict[str, Any]
    started_at: float
    scope: str | None = None
    scope_value: str | None = None
    trace_id: str | None = None
    fired_value: str = ""
    updated_at: float = 0.0
    resolved_at: float | None = None

    @property
    def status(self) -> str:
        return "firing" if self.resolved_at is None else "resolved"

    @property
    def fingerprint(self) -> str:
        return f"{self.rule.name}/{self.key}"

    def to_json(self) -> dict[str, Any]:
        rule = self.rule
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "rule": rule.name,
            "kind": rule.kind,
            "status": self.status,
            "key": self.key,
            "scope": self.scope,
            "scope_value": self.scope_value,
            "trace_id": self.trace_id,
            "value": self.value,
            "threshold": self.threshold,
            "unit": self.unit,
            "fired_value": self.fired_value,
            "window_seconds": _seconds_json(rule.window),
            "baseline_seconds": _seconds_json(rule.baseline),
            "numbers": dict(self.numbers),
            "summary": self.summary,
            "link": self.link,
            "started_at": _iso(self.started_at),
            "updated_at": _iso(self.updated_at),
            "resolved_at": _iso(self.resolved_at),
        }


def rule_json(rule: AlertRule) -> dict[str, Any]:
    """A rule as /api/alerts lists it (money as decimal strings)."""
    found: dict[str, Any] = {"name": rule.name, "kind": rule.kind}
    if rule.scope is not None or rule.kind in WINDOW_KINDS:
        found["scope"] = rule.scope
    for name in ("window", "baseline"):
        if getattr(rule, name) is not None:
            found[f"{name}_seconds"] = _seconds_json(getattr(rule, name))
    for name in ("ratio", "min_usd", "max_usd", "max_share"):
        value = getattr(rule, name)
        if value is not None:
            found[name] = _decimal(value)
    if rule.repeats is not None:
        found["repeats"] = rule.repeats
    return found


# -- the per-trace state (writer thread only) -------------------------------------------------
@dataclass(slots=True, eq=False)
class _Call:
    """An LLM call with a cost, as the window rules count it."""

    span: PricedSpan
    at: float  # ingest time
    cost: Femto
    order: tuple[int, str]  # (start, span id): "later" among similar calls, as Trace sorts
    pending: list[int]  # window rules that still wait for its scope value
    values: dict[int, str] = field(default_factory=dict)  # window rule -> scope value counted
    retry: bool = False
    found: dict[str, str] = field(default_factory=dict)  # dimensions found below `resume`
    resume: str | None = None  # the missing ancestor the walk continues at


@dataclass(slots=True)
class _RetryGroup:
    latest: tuple[int, str] = (-1, "")  # the (start, span id) of the latest call seen
    failed: list[_Call] = field(default_factory=list)  # failed calls not (yet) retried


@dataclass(slots=True)
class _TraceState:
    seen: set[str] = field(default_factory=set)
    cost: Femto = 0
    llm_calls: int = 0
    crossed: dict[str, str] = field(default_factory=dict)  # trace_cost rule -> crossing span id
    repeats: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)  # [count, cost]
    top: tuple[str, str, str] | None = None  # the most repeated (parent, kind, name)
    dims: dict[str, dict[str, str]] = field(default_factory=dict)  # own dimensions per span
    inherited: dict[str, dict[str, str]] = field(default_factory=dict)  # complete, per ancestor
    waiting: dict[str, list[_Call]] = field(default_factory=dict)  # missing ancestor -> calls
    groups: dict[tuple[str, Any, Any], _RetryGroup] = field(default_factory=dict)


# -- windows ----------------------------------------------------------------------------------
class _Series:
    """Amounts per time bucket, with their total."""

    __slots__ = ("buckets", "low", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.total = 0
        self.low: int | None = None

    def add(self, index: int, amount: int) -> None:
        self.buckets[index] = self.buckets.get(index, 0) + amount
        self.total += amount
        if self.low is None or index < self.low:
            self.low = index

    def expire(self, first_kept: int) -> None:
        if self.low is None or self.low >= first_kept:
            return
        for index in [index for index in self.buckets if index < first_kept]:
            self.total -= self.buckets.pop(index)
        self.low = min(self.buckets) if self.buckets else None

    def between(self, first: int, last: int) -> int:
        get = self.buckets.get
        return sum(get(index, 0) for index in range(first, last + 1))


class _Window:
    """A window rule's buckets per scope value (spend, and retry overhead for retry_share)."""

    def __init__(self, index: int, rule: AlertRule) -> None:
        self.index = index
        self.rule = rule
        window = float(rule.window or 300.0)
        self.width = max(1.0, window / BUCKETS_PER_WINDOW)
        self.n = max(1, round(window / self.width))  # buckets in the window
        self.nb = round(float(rule.baseline or 0.0) / self.width)  # buckets in the baseline
        self.start = 0  # the bucket the engine started in
        self.spend: dict[str, _Series] = {}
        self.retry: dict[str, _Series] = {}
        self.min_femto = _femto(rule.min_usd)

    def bucket(self, when: float) -> int:
        return math.floor(when / self.width)

    def first_kept(self, now: float) -> int:
        return self.bucket(now) - self.n - self.nb + 1

    def add(
        self, series: dict[str, _Series], value: str, at: float, amount: int, now: float
    ) -> bool:
        index = self.bucket(at)
        if index < self.first_kept(now):
            return False  # older than anything the rule looks at
        found = series.get(value)
        if found is None:
            found = series[value] = _Series()
        found.add(index, amount)
        return True


@dataclass(slots=True)
class _Unpriced:
    provider: str | None
    model: str | None
    first_seen: float
    last_seen: float
    first_trace: str
    reason: str | None
    spans: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


# -- the engine -------------------------------------------------------------------------------
class AlertEngine:
    """Evaluates the alert rules on every stored batch and finalized trace.

    >>> engine = AlertEngine(config.alerts, dimensions=..., stats=stats)
    >>> engine.attach(pipeline)     # a batch listener and a finalized-trace listener
    >>> engine.start()              # the webhook sender and the periodic evaluation
    >>> engine.snapshot()           # firing and recently resolved alerts (GET /api/alerts)
    >>> engine.stop()

    `clock` (seconds since the epoch) is the ingest time windows are counted in and the
    time alerts carry; tests replace it to move time without sleeping."""

    def __init__(
        self,
        config: Alerts,
        *,
        dimensions: Dimensions | None = None,
        loop_threshold: int = DEFAULT_LOOP_THRESHOLD,
        stats: Stats | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.rules = list(config.rules)
        self.dimensions = dimensions or Dimensions()
        self.loop_threshold = loop_threshold
        self.stats = stats or Stats()
        self.clock = clock
        self.link_base: str | Callable[[], str] | None = config.dashboard_url
        self.webhook: Webhook | None = None
        if config.webhook is not None:
            hook = config.webhook
            self.webhook = Webhook(
                hook.url,
                hook.headers,
                timeout=hook.timeout_seconds,
                max_attempts=hook.max_attempts,
                max_queued=hook.max_queued,
                stats=self.stats,
            )
        self.started: float | None = None
        self._lock = threading.RLock()
        self._firing: dict[tuple[str, str], Alert] = {}
        self._resolved: deque[Alert] = deque(maxlen=config.keep_resolved)
        self._ended: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._fired_total: Counter[str] = Counter()
        self._resolved_total: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._cost_rules = [(r, _femto(r.max_usd)) for r in self.rules if r.kind == "trace_cost"]
        self._loop_rules = [r for r in self.rules if r.kind == "loop"]
        self._unpriced_rules = [r for r in self.rules if r.kind == "unpriced_model"]
        self._windows = [
            _Window(position, rule)
            for position, rule in enumerate(r for r in self.rules if r.kind in WINDOW_KINDS)
        ]
        self._window_of = {w.rule.name: w for w in self._windows}
        self._retries = any(w.rule.kind == "retry_share" for w in self._windows)
        self._needed = {
            w.rule.scope for w in self._windows if w.rule.scope and w.rule.scope not in SPAN_SCOPES
        }
        # The same attribution rule as every span's, over the dimensions the rules need.
        needed = {name: keys for name, keys in self.dimensions.keys.items() if name in self._needed}
        self._needed_dimensions = Dimensions(needed)
        self._unpriced: dict[str, _Unpriced] = {}
        self._traces: dict[str, _TraceState] = {}  # open traces; the writer thread only
        self._pipeline: Pipeline | None = None
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spanledger-alerts", daemon=True)
        self.stats.collectors.append(self._metrics)
        if self.webhook is not None:
            sender = self.webhook
            self.stats.gauges["alerts_webhook_queued"] = lambda: sender.queued

    # -- wiring -----------------------------------------------------------------------------
    def attach(self, pipeline: Pipeline) -> None:
        """See every stored batch and every finalized trace of `pipeline`."""
        self._pipeline = pipeline
        pipeline.listeners.append(self.observe)
        pipeline.finalized_listeners.append(self.finalized)

    def start(self) -> AlertEngine:
        self.started = self.clock()
        for window in self._windows:
            window.start = window.bucket(self.started)
        if self.webhook is not None:
            self.webhook.start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop evaluating; send what the webhook has queued for at most `timeout` s."""
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.webhook is not None:
            self.webhook.stop(timeout)

    def _run(self) -> None:
        while not self._halt.wait(self.config.evaluate_seconds):
            try:
                self.evaluate()
            except Exception:  # never let one bad evaluation stop alerting
                log.exception("spanledger: evaluating alert rules failed")

    # -- what /api/alerts and /metrics show ---------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Firing alerts (newest first), recently resolved ones (newest first), the rules."""
        with self._lock:
            firing = sorted(self._firing.values(), key=lambda a: (a.started_at, a.id), reverse=True)
            return {
                "firing": [alert.to_json() for alert in firing],
                "resolved": [alert.to_json() for alert in reversed(self._resolved)],
                "rules": [rule_json(rule) for rule in self.rules],
            }

    def firing(self) -> list[Alert]:
        with self._lock:
            return list(self._firing.values())

    def _metrics(self) -> list[str]:
        with self._lock:
            firing = Counter(rule for rule, _ in self._firing)
            fired = dict(self._fired_total)
            resolved = dict(self._resolved_total)
        lines: list[str] = []
        for metric, text, kind, values in (
            ("alerts_firing", "Alerts firing now, per rule", "gauge", firing),
            ("alerts_fired_total", "Alerts fired since the server started", "counter", fired),
            ("alerts_resolved_total", "Alerts resolved since the server started", "counter",
             resolved),
        ):  # fmt: skip
            name = f"spanledger_{metric}"
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for rule in self.rules:
                pairs = labels(rule=rule.name, kind=rule.kind)
                lines.append(f"{name}{{{pairs}}} {values.get(rule.name, 0)}")
        return lines

    # -- the writer thread: every stored batch ---------------------------------------------
    def observe(self, spans: Sequence[PricedSpan]) -> None:
        """A stored batch (pipeline listener): update the running numbers, fire what crossed."""
        if not spans:
            return
        now = self.clock()
        by_trace: dict[str, list[PricedSpan]] = {}
        for span in spans:
            by_trace.setdefault(span.record.trace_id, []).append(span)
        pipeline = self._pipeline
        windows = bool(self._windows or self._unpriced_rules)
        with self._lock:
            touched: set[tuple[int, str]] = set()
            for trace_id, batch in by_trace.items():
                trace = pipeline.open_trace(trace_id) if pipeline is not None else None
                state = self._traces.get(trace_id)
                if state is None:
                    state = self._traces[trace_id] = _TraceState()
                    if trace is not None and len(trace.spans) > len(batch):
                        # Spans filed before this batch that the engine did not see (the
                        # server restarted): they count for the trace, not for windows.
                        ids = {span.span_id for span in batch}
                        for earlier in trace.spans.values():
                            if earlier.span_id not in ids:
                                self._add(state, earlier)
                seen = state.seen
                new = []
                for span in batch:  # a span sent twice (even in one batch) counts once
                    span_id = span.record.span_id
                    if span_id not in seen:
                        seen.add(span_id)
                        new.append(span)
                if not new:
                    continue
                for span in new:
                    self._add(state, span)
                if windows:
                    for span in new:
                        if span.is_llm:
                            self._call(trace, state, span, now, touched)
                    if state.waiting:
                        for span in new:
                            for call in state.waiting.pop(span.span_id, ()):
                                self._attribute(trace, state, call, now, touched)
                self._check_trace(trace_id, trace, state, now)
            self._evaluate(touched, now)

    def _add(self, state: _TraceState, span: PricedSpan) -> None:
        """The trace-level numbers: cost so far, calls per (parent, tool or model)."""
        record = span.record
        state.seen.add(record.span_id)
        llm = span.cost.status is not None
        cost = span.cost.total if llm else 0
        if llm:
            state.llm_calls += 1
        if cost:
            state.cost += cost
            for rule, limit in self._cost_rules:
                if state.cost > limit and rule.name not in state.crossed:
                    state.crossed[rule.name] = record.span_id
        parent_id = record.parent_span_id
        if self._loop_rules and parent_id:
            tool = record.attributes.get(c.GEN_AI_TOOL_NAME)
            if tool and isinstance(tool, str):
                key = (parent_id, "tool", tool)
            elif llm and span.model:
                key = (parent_id, "model", span.model)
            else:
                return
            counted = state.repeats.get(key)
            if counted is None:
                counted = state.repeats[key] = [0, 0]
            counted[0] += 1
            counted[1] += cost
            if state.top is None or counted[0] > state.repeats[state.top][0]:
                state.top = key

    def _call(
        self,
        trace: Trace | None,
        state: _TraceState,
        span: PricedSpan,
        now: float,
        touched: set[tuple[int, str]],
    ) -> None:
        """An LLM call: unpriced models, retries, and the window rules' spend."""
        if span.cost.status == "unpriced" and self._unpriced_rules:
            self._unpriced_call(span, now)
        cost = span.cost.total
        record = span.record
        call = None
        if self._windows and cost > 0:
            order = (record.start_ns, span.span_id)
            call = _Call(span, now, cost, order, list(range(len(self._windows))))
        if self._retries:
            requested = record.attributes.get(c.GEN_AI_REQUEST_MODEL)
            model = requested if isinstance(requested, str) and requested else span.model
            operation = record.attributes.get(c.GEN_AI_OPERATION_NAME)
            key = (record.parent_span_id, model, operation)
            group = state.groups.get(key)
            if group is None:
                group = state.groups[key] = _RetryGroup()
            order = (record.start_ns, span.span_id)
            if order > group.latest:
                group.latest = order
            if call is not None and record.failed:
                group.failed.append(call)
            if group.failed:
                waiting = []
                for failed in group.failed:
                    if failed.order < group.latest:  # a later similar call: it was retried
                        self._retried(failed, now, touched)
                    else:
                        waiting.append(failed)
                group.failed = waiting
        if call is not None:
            self._attribute(trace, state, call, now, touched)

    def _attribute(
        self,
        trace: Trace | None,
        state: _TraceState,
        call: _Call,
        now: float,
        touched: set[tuple[int, str]],
    ) -> None:
        """Count the call for each window rule whose scope value is known now; the rest
        wait for the missing ancestor."""
        found: Mapping[str, str] = {}
        missing = None
        if self._needed:
            start = call.span.record
            if call.resume is not None:  # the ancestor it waited for has arrived
                resumed = trace.spans.get(call.resume) if trace is not None else None
                start = resumed.record if resumed is not None else start
            found, missing = self._walk(trace, state, start, call.found)
            call.found, call.resume = dict(found), missing
        waiting = []
        for index in call.pending:
            value = self._scope_value(self._windows[index].rule.scope, call.span, found)
            if value is not None:
                self._count(index, value, call, now, touched)
            elif missing is not None:
                waiting.append(index)
        call.pending = waiting
        if waiting and missing is not None:
            state.waiting.setdefault(missing, []).append(call)

    @staticmethod
    def _scope_value(scope: str | None, span: PricedSpan, found: Mapping[str, str]) -> str | None:
        if scope is None:
            return ""
        if scope == "model":
            return span.model or "unknown"
        if scope == "provider":
            return span.provider or "unknown"
        return found.get(scope)

    def _walk(
        self,
        trace: Trace | None,
        state: _TraceState,
        record: SpanRecord,
        below: Mapping[str, str],
    ) -> tuple[dict[str, str], str | None]:
        """The needed dimensions a span carries or inherits from the ancestors that have
        arrived (nearest wins; `below`: what its descendants on the way already found), and
        the id of the first missing ancestor (None: none is missing, or all were found).

        An ancestor whose own chain reaches the root keeps its complete inherited
        dimensions (`state.inherited`), so its other descendants stop there."""
        found = dict(below)
        needed = len(self._needed)
        owns = state.dims
        inherited = state.inherited
        spans = trace.spans if trace is not None else {}
        chain: list[str] = []
        for _ in range(_WALK_LIMIT):
            span_id = record.span_id
            known = inherited.get(span_id)
            if known is not None:
                for name, value in known.items():
                    if name not in found:
                        found[name] = value
                self._remember(chain, state, known)
                return found, None
            own = owns.get(span_id)
            if own is None:
                own = owns[span_id] = self._own(record)
            for name, value in own.items():
                if name not in found:
                    found[name] = value
            chain.append(span_id)
            if len(found) == needed and not below and len(chain) == 1:
                return found, None  # the span carries every needed dimension itself
            parent_id = record.parent_span_id
            if not parent_id:
                self._remember(chain, state, {})
                return found, None
            parent = spans.get(parent_id)
            if parent is None:
                return found, parent_id
            if parent_id in chain:  # a cycle of parent links: nothing more to inherit
                return found, None
            record = parent.record
        return found, None

    @staticmethod
    def _remember(chain: list[str], state: _TraceState, above: Mapping[str, str]) -> None:
        """Complete inherited dimensions of each ancestor on a chain that reached the top
        (`above`: what the top's own ancestors gave). The chain's first span is the call
        itself (or the ancestor a call resumed at) and is kept too: it may be a parent."""
        acc = dict(above)
        for span_id in reversed(chain):
            acc = {**acc, **state.dims[span_id]}
            state.inherited[span_id] = acc

    def _own(self, record: SpanRecord) -> dict[str, str]:
        """The dimensions the window rules need that a span itself carries (as
        `Dimensions.of` reads them, for those dimensions only)."""
        return self._needed_dimensions.of(record)

    def _full_attribution(self, trace: Trace | None, span_id: str | None) -> dict[str, str]:
        """Every dimension a span carries or inherits from the ancestors that have arrived
        (for an alert's numbers; not on the per-span path)."""
        found: dict[str, str] = {}
        if trace is None or span_id is None:
            return found
        span = trace.spans.get(span_id)
        seen = set()
        while span is not None and span.span_id not in seen and len(seen) < _WALK_LIMIT:
            seen.add(span.span_id)
            for name, value in self.dimensions.of(span.record).items():
                found.setdefault(name, value)
            parent_id = span.record.parent_span_id
            span = trace.spans.get(parent_id) if parent_id else None
        return found

    def _count(
        self, index: int, value: str, call: _Call, now: float, touched: set[tuple[int, str]]
    ) -> None:
        window = self._windows[index]
        call.values[index] = value
        window.add(window.spend, value, call.at, call.cost, now)
        if call.retry and window.rule.kind == "retry_share":
            window.add(window.retry, value, call.at, call.cost, now)
        touched.add((index, value))

    def _retried(self, call: _Call, now: float, touched: set[tuple[int, str]]) -> None:
        call.retry = True
        for index, value in call.values.items():
            window = self._windows[index]
            if window.rule.kind == "retry_share":
                window.add(window.retry, value, call.at, call.cost, now)
                touched.add((index, value))

    def _unpriced_call(self, span: PricedSpan, now: float) -> None:
        key = f"{span.provider or 'unknown'}/{span.model or 'unknown'}"
        seen = self._unpriced.get(key)
        if seen is None:
            seen = self._unpriced[key] = _Unpriced(
                span.provider, span.model, now, now, span.record.trace_id, span.cost.reason
            )
        seen.last_seen = now
        seen.spans += 1
        seen.input_tokens += span.usage.input_total
        seen.output_tokens += span.usage.output
        for rule in self._unpriced_rules:
            alert = self._firing.get((rule.name, f"model={key}"))
            if alert is None:
                self._fire(rule, f"model={key}", now, **self._unpriced_fields(rule, key, seen))
            else:
                self._update(alert, now, **self._unpriced_fields(rule, key, seen))

    # -- trace rules --------------------------------------------------------------------------
    def _check_trace(
        self, trace_id: str, trace: Trace | None, state: _TraceState, now: float
    ) -> None:
        key = f"trace={trace_id}"
        for rule, limit in self._cost_rules:
            alert = self._firing.get((rule.name, key))
            if alert is not None:
                self._update(alert, now, **self._cost_fields(rule, trace_id, trace, state))
            elif state.cost > limit and (rule.name, key) not in self._ended:
                self._fire(rule, key, now, **self._cost_fields(rule, trace_id, trace, state))
        if state.top is None:
            return
        for rule in self._loop_rules:
            limit = rule.repeats or self.loop_threshold
            alert = self._firing.get((rule.name, key))
            if alert is not None:
                self._update(alert, now, **self._loop_fields(rule, trace_id, trace, state))
            elif state.repeats[state.top][0] > limit and (rule.name, key) not in self._ended:
                self._fire(rule, key, now, **self._loop_fields(rule, trace_id, trace, state))

    def _cost_fields(
        self, rule: AlertRule, trace_id: str, trace: Trace | None, state: _TraceState
    ) -> dict[str, Any]:
        limit = _femto(rule.max_usd)
        crossing = state.crossed.get(rule.name)
        cost = usd_str(state.cost)
        return {
            "value": cost,
            "threshold": _decimal(rule.max_usd or Decimal(0)),
            "unit": "usd",
            "trace_id": trace_id,
            "summary": (
                f"trace {trace_id} has cost ${cost} so far and is still running: over the "
                f"${_decimal(rule.max_usd or Decimal(0))} per-trace budget"
            ),
            "link": self._trace_link(trace_id),
            "numbers": {
                "trace_cost_usd": cost,
                "max_usd": usd_str(limit),
                "spans": len(state.seen),
                "llm_calls": state.llm_calls,
                "crossing_span_id": crossing,
                "attribution": self._full_attribution(trace, crossing),
                "finalized": False,
            },
        }

    def _loop_fields(
        self, rule: AlertRule, trace_id: str, trace: Trace | None, state: _TraceState
    ) -> dict[str, Any]:
        assert state.top is not None
        parent, kind, name = state.top
        count, cost = state.repeats[state.top]
        limit = rule.repeats or self.loop_threshold
        return {
            "value": str(count),
            "threshold": str(limit),
            "unit": "calls",
            "trace_id": trace_id,
            "summary": (
                f"trace {trace_id}: {kind} {name!r} called {count} times under one parent "
                f"(more than {limit}): a runaway loop, still running"
            ),
            "link": self._trace_link(trace_id),
            "numbers": {
                "repeated_kind": kind,
                "repeated_name": name,
                "parent_span_id": parent,
                "repeats": count,
                "max_repeats": limit,
                "loop_calls_cost_usd": usd_str(cost),
                "trace_cost_usd": usd_str(state.cost),
                "spans": len(state.seen),
                "attribution": self._full_attribution(trace, parent),
                "finalized": False,
            },
        }

    # -- the writer thread: finalized traces -------------------------------------------------
    def finalized(self, traces: Sequence[Trace]) -> None:
        """Finalized traces (pipeline listener): settle waiting calls, resolve trace alerts."""
        now = self.clock()
        with self._lock:
            touched: set[tuple[int, str]] = set()
            for trace in traces:
                state = self._traces.pop(trace.trace_id, None)
                if state is not None:
                    self._settle(trace, state, now, touched)
                self._finish(trace, state, now)
            self._evaluate(touched, now)

    def _settle(
        self, trace: Trace, state: _TraceState, now: float, touched: set[tuple[int, str]]
    ) -> None:
        """The assembled trace knows every span's inherited attribution and retry flag."""
        for group in state.groups.values():
            for call in group.failed:
                span = trace.spans.get(call.span.span_id)
                if span is not None and span.retry:
                    self._retried(call, now, touched)
        for calls in state.waiting.values():
            for call in calls:
                span = trace.spans.get(call.span.span_id) or call.span
                for index in call.pending:
                    value = self._scope_value(
                        self._windows[index].rule.scope, span, span.attribution
                    )
                    if value is not None:
                        self._count(index, value, call, now, touched)
                call.pending = []

    def _finish(self, trace: Trace, state: _TraceState | None, now: float) -> None:
        trace_id = trace.trace_id
        key = f"trace={trace_id}"
        cost = trace.cost
        head = trace.root or (trace.spans[trace.roots[0]] if trace.roots else None)
        final = {
            "trace_cost_usd": usd_str(cost),
            "spans": len(trace.spans),
            "llm_calls": sum(1 for span in trace.spans.values() if span.is_llm),
            "root_name": head.record.name if head is not None else None,
            "attribution": dict(head.attribution) if head is not None else {},
            "retry_overhead_usd": usd_str(trace.retry_overhead),
            "loop_cost_usd": usd_str(trace.loop_cost),
            "finalized": True,
        }
        for rule, limit in self._cost_rules:
            alert = self._firing.get((rule.name, key))
            if alert is None and (cost <= limit or (rule.name, key) in self._ended):
                continue
            if alert is None:  # crossed without a batch showing it (e.g. after a restart)
                alert = self._fire(rule, key, now, **self._cost_fields(
                    rule, trace_id, trace, state or _TraceState(cost=cost)
                ))  # fmt: skip
            numbers = {**alert.numbers, **final}
            self._resolve(
                alert,
                now,
                value=usd_str(cost),
                numbers=numbers,
                summary=(
                    f"trace {trace_id} finished at ${usd_str(cost)} "
                    f"(per-trace budget ${_decimal(rule.max_usd or Decimal(0))})"
                ),
            )
        for rule in self._loop_rules:
            limit = rule.repeats or self.loop_threshold
            alert = self._firing.get((rule.name, key))
            loops = [loop for loop in trace.loops if loop.count > limit]
            if alert is None and (not loops or (rule.name, key) in self._ended):
                continue
            if alert is None:
                biggest = max(loops, key=lambda loop: loop.count)
                seen = _TraceState(cost=cost, seen=set(trace.spans))
                seen.top = (biggest.parent_span_id, biggest.kind, biggest.name)
                seen.repeats[seen.top] = [biggest.count, biggest.cost]
                alert = self._fire(rule, key, now, **self._loop_fields(rule, trace_id, trace, seen))
            numbers = {
                **alert.numbers,
                **final,
                "loops": [
                    {
                        "kind": loop.kind,
                        "name": loop.name,
                        "parent_span_id": loop.parent_span_id,
                        "count": loop.count,
                        "rollup_usd": usd_str(loop.cost),
                    }
                    for loop in trace.loops
                ],
            }
            self._resolve(
                alert,
                now,
                numbers=numbers,
                summary=(
                    f"trace {trace_id} finished at ${usd_str(cost)}"
                    + (f"; its loops cost ${usd_str(trace.loop_cost)}" if trace.loops else "")
                ),
            )

    # -- window rules -------------------------------------------------------------------------
    def evaluate(self) -> None:
        """Every window rule for every scope value, and unpriced models' quiet periods (the
        periodic tick; tests call it after moving the clock)."""
        now = self.clock()
        with self._lock:
            keys = {(w.index, value) for w in self._windows for value in w.spend}
            for (name, _), alert in self._firing.items():
                window = self._window_of.get(name)
                if window is not None:  # firing, with no spend left in its window
                    keys.add((window.index, alert.scope_value or ""))
            self._evaluate(keys, now)
            for window in self._windows:
                first_kept = window.first_kept(now)
                for store in (window.spend, window.retry):
                    for value in list(store):
                        store[value].expire(first_kept)
                        if not store[value].buckets:
                            del store[value]
            for rule in self._unpriced_rules:
                quiet = float(rule.window or 3600.0)
                for key, seen in self._unpriced.items():
                    alert = self._firing.get((rule.name, f"model={key}"))
                    if alert is not None and now - seen.last_seen >= quiet:
                        self._resolve(
                            alert,
                            now,
                            summary=(
                                f"model {seen.model or 'unknown'} ({seen.provider or 'unknown'}): "
                                f"no unpriced span for {_duration(quiet)}"
                            ),
                        )
            longest = max((float(r.window or 3600.0) for r in self._unpriced_rules), default=0.0)
            for key in [k for k, s in self._unpriced.items() if now - s.last_seen >= longest]:
                del self._unpriced[key]

    def _evaluate(self, keys: set[tuple[int, str]], now: float) -> None:
        for index, value in keys:
            window = self._windows[index]
            rule = window.rule
            alert_key = f"{rule.scope}={value}" if rule.scope else "all"
            alert = self._firing.get((rule.name, alert_key))
            check = self._spend_rate if rule.kind == "spend_rate" else self._retry_share
            holds, fields = check(window, value, now, alert is not None)
            if holds is None or not (holds or alert):
                continue  # not enough history to judge
            if holds and alert is None:
                self._fire(rule, alert_key, now, **fields)
            elif holds and alert is not None:
                self._update(alert, now, **fields)
            elif alert is not None:
                fields.pop("summary", None)
                self._resolve(
                    alert, now, summary=self._window_resolved(rule, value, fields), **fields
                )

    def _spend_rate(
        self, window: _Window, value: str, now: float, firing: bool
    ) -> tuple[bool | None, dict[str, Any]]:
        """Whether the rule holds for `value` now (None: too little history to judge) and,
        when it holds or its alert is `firing`, the alert's fields."""
        rule = window.rule
        series = window.spend.get(value)
        index = window.bucket(now)
        first_kept = index - window.n - window.nb + 1
        recent = baseline = 0
        if series is not None:
            series.expire(first_kept)
            recent = series.between(index - window.n + 1, index)
            baseline = series.total - recent
        base_last = index - window.n
        base_first = max(first_kept, window.start)
        observed = base_last - base_first + 1  # baseline buckets the engine has watched
        if observed < window.n:
            return None, {}
        expected = baseline * window.n // observed  # spend per window, at the baseline rate
        ratio = rule.ratio or Decimal(3)
        needed = max(window.min_femto, math.ceil(Decimal(expected) * ratio))
        holds = recent > 0 and recent >= needed
        if not holds and not firing:
            return False, {}
        seen_ratio = (
            _decimal((Decimal(recent) / Decimal(expected)).quantize(Decimal("0.01")))
            if expected
            else None
        )
        span = _duration(rule.window)
        scope = f"{rule.scope}={value}" if rule.scope else "all spend"
        return holds, {
            "value": usd_str(recent),
            "threshold": usd_str(needed),
            "unit": "usd",
            "scope": rule.scope,
            "scope_value": value if rule.scope else None,
            "link": self._view_link(rule, value),
            "summary": (
                f"{scope} spent ${usd_str(recent)} in the last {span}, "
                + (f"{seen_ratio}x" if seen_ratio else "with no spend in")
                + f" its baseline (${usd_str(expected)} per {span} over the previous "
                f"{_duration(observed * window.width)}); alert at {_decimal(ratio)}x and "
                f"${_decimal(rule.min_usd or Decimal(0))}"
            ),
            "numbers": {
                "spend_usd": usd_str(recent),
                "baseline_usd": usd_str(baseline),
                "baseline_observed_seconds": _seconds_json(observed * window.width),
                "expected_usd": usd_str(expected),
                "ratio": seen_ratio,
                "max_ratio": _decimal(ratio),
                "min_usd": _decimal(rule.min_usd or Decimal(0)),
            },
        }

    def _retry_share(
        self, window: _Window, value: str, now: float, firing: bool
    ) -> tuple[bool | None, dict[str, Any]]:
        rule = window.rule
        index = window.bucket(now)
        first, last = index - window.n + 1, index
        spend_series, retry_series = window.spend.get(value), window.retry.get(value)
        spend = spend_series.between(first, last) if spend_series is not None else 0
        retry = retry_series.between(first, last) if retry_series is not None else 0
        limit = rule.max_share or Decimal(0)
        holds = retry > 0 and retry >= window.min_femto and Decimal(retry) > limit * spend
        if not holds and not firing:
            return False, {}
        share = _share(retry, spend)
        scope = f"{rule.scope}={value}" if rule.scope else "all spend"
        return holds, {
            "value": _decimal(share),
            "threshold": _decimal(limit),
            "unit": "share",
            "scope": rule.scope,
            "scope_value": value if rule.scope else None,
            "link": self._view_link(rule, value),
            "summary": (
                f"{scope}: retried failed calls cost ${usd_str(retry)} of ${usd_str(spend)} "
                f"({_decimal(share * 100)}%) in the last {_duration(rule.window)}; alert over "
                f"{_decimal(limit * 100)}% and ${_decimal(rule.min_usd or Decimal(0))}"
            ),
            "numbers": {
                "retry_overhead_usd": usd_str(retry),
                "spend_usd": usd_str(spend),
                "share": _decimal(share),
                "max_share": _decimal(limit),
                "min_usd": _decimal(rule.min_usd or Decimal(0)),
            },
        }

    def _window_resolved(self, rule: AlertRule, value: str, fields: Mapping[str, Any]) -> str:
        scope = f"{rule.scope}={value}" if rule.scope else "all spend"
        if rule.kind == "spend_rate":
            return (
                f"{scope}: spend back to ${fields.get('value', '0')} in the last "
                f"{_duration(rule.window)} (alert threshold ${fields.get('threshold', '0')})"
            )
        return (
            f"{scope}: retry share back to {fields.get('value', '0')} in the last "
            f"{_duration(rule.window)} (alert over {fields.get('threshold', '0')})"
        )

    def _unpriced_fields(self, rule: AlertRule, key: str, seen: _Unpriced) -> dict[str, Any]:
        model = seen.model or "unknown"
        return {
            "value": str(seen.spans),
            "threshold": "0",
            "unit": "spans",
            "scope": "model",
            "scope_value": model,
            "trace_id": seen.first_trace,
            "link": self._model_link(seen.model),
            "summary": (
                f"model {model} ({seen.provider or 'unknown'}) has no price: {seen.spans} "
                f"spans, {seen.input_tokens + seen.output_tokens} tokens not in the spend"
                + (f" ({seen.reason})" if seen.reason else "")
            ),
            "numbers": {
                "provider": seen.provider,
                "model": seen.model,
                "spans": seen.spans,
                "input_tokens": seen.input_tokens,
                "output_tokens": seen.output_tokens,
                "first_trace_id": seen.first_trace,
                "first_seen": _iso(seen.first_seen),
                "last_seen": _iso(seen.last_seen),
                "reason": seen.reason,
            },
        }

    # -- firing and resolving -----------------------------------------------------------------
    def _fire(self, rule: AlertRule, key: str, now: float, **fields: Any) -> Alert:
        alert = Alert(id=next(self._ids), rule=rule, key=key, started_at=now, **fields)
        alert.fired_value = alert.value
        alert.updated_at = now
        self._firing[(rule.name, key)] = alert
        self._fired_total[rule.name] += 1
        self._emit(alert)
        return alert

    @staticmethod
    def _update(alert: Alert, now: float, **fields: Any) -> None:
        """The latest numbers of a firing alert (shown by /api/alerts; not sent again)."""
        for name, value in fields.items():
            setattr(alert, name, value)
        alert.updated_at = now

    def _resolve(self, alert: Alert, now: float, **fields: Any) -> None:
        self._update(alert, now, **fields)
        alert.resolved_at = now
        key = (alert.rule.name, alert.key)
        self._firing.pop(key, None)
        self._resolved.append(alert)
        self._resolved_total[alert.rule.name] += 1
        if alert.rule.kind in TRACE_KINDS:
            self._ended[key] = None
            while len(self._ended) > _ENDED_KEYS:
                self._ended.popitem(last=False)
        self._emit(alert)

    def _emit(self, alert: Alert) -> None:
        payload = {"source": "spanledger", "event": alert.status, "alert": alert.to_json()}
        if self.config.log:
            log.warning(
                "alert %s: %s [%s] %s %s",
                alert.status,
                alert.rule.name,
                alert.key,
                alert.summary,
                alert.link,
            )
        if self.webhook is not None:
            self.webhook.offer(payload)

    # -- links --------------------------------------------------------------------------------
    def _base(self) -> str:
        base = self.link_base
        if callable(base):
            base = base()
        return (base or "").rstrip("/")

    def _trace_link(self, trace_id: str) -> str:
        return f"{self._base()}/#/trace/{quote(trace_id)}"

    def _view_link(self, rule: AlertRule, value: str) -> str:
        span = float(rule.window or 0) + float(rule.baseline or 0)
        shown = next((name for name, size in _DASHBOARD_RANGES if size >= span), "30d")
        params = {"range": shown}
        if rule.scope in DASHBOARD_SCOPES and value:
            params[rule.scope] = value
        return f"{self._base()}/#/?{urlencode(params)}"

    def _model_link(self, model: str | None) -> str:
        params = {"range": "24h", **({"model": model} if model else {})}
        return f"{self._base()}/#/?{urlencode(params)}"


# -- the webhook ------------------------------------------------------------------------------
class Webhook(Sender[dict[str, Any]]):
    """POSTs alert events as JSON to `url` from a background thread, one at a time and in
    order (a resolution never overtakes its firing). `offer` never blocks and never raises;
    what cannot be sent is dropped and counted (`alerts_webhook_dropped`)."""

    content_type = "application/json"

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float = 5.0,
        max_attempts: int = 5,
        max_queued: int = 1000,
        stats: Stats | None = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        super().__init__(
            url,
            headers,
            name="alert webhook",
            dropped="alerts_webhook_dropped",
            stats=stats,
            timeout=timeout,
            max_queued=max_queued,
            max_attempts=max_attempts,
            backoff=backoff,
            max_backoff=max_backoff,
        )

    def offer(self, event: dict[str, Any]) -> bool:
        return self.put([event]) == 0

    def encode(self, batch: list[dict[str, Any]]) -> bytes:
        return json.dumps(batch[0], separators=(",", ":")).encode()

    def accepted(self, response: httpx.Response, batch: list[dict[str, Any]]) -> None:
        self.stats.count("alerts_webhook_sent", len(batch))

    def describe(self, batch: list[dict[str, Any]]) -> str:
        alert = batch[0].get("alert", {})
        return f"alert {alert.get('fingerprint')} ({batch[0].get('event')})"
