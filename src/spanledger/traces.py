"""Trace assembly: spans in any order -> a priced tree with rollups, attribution,
retries and loops.

Spans arrive in several batches and children often arrive before their parents. A trace
keeps every span it has seen, keyed by span id (the same span twice counts once), and
derives everything else (tree, rollups, inherited attribution, flags) from that set when
asked, so the result does not depend on arrival order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from spanledger import conventions as c
from spanledger.pricing import Cost, Femto, PriceBook
from spanledger.spans import SpanRecord
from spanledger.usage import Usage

DEFAULT_LOOP_THRESHOLD = 10
"""More repeats than this of the same tool, or the same model, under one parent is a loop."""

# HTTP attempt spans: what `spanledger.sdk.attempts` writes, and any OTel HTTP client
# instrumentation too (the older names as well). Read here to find retried attempts.
_HTTP_METHOD_KEYS = (c.HTTP_REQUEST_METHOD, "http.method")
_HTTP_STATUS_KEYS = (c.HTTP_RESPONSE_STATUS_CODE, "http.status_code")
_HTTP_URL_KEYS = (c.URL_FULL, "http.url")
_SPAN_KIND_CLIENT = 3  # OTLP's SPAN_KIND_CLIENT


@dataclass(slots=True)
class PricedSpan:
    """A span with its usage and own cost, plus what its place in the tree adds."""

    record: SpanRecord
    usage: Usage
    cost: Cost
    provider: str | None
    model: str | None
    # Derived by Trace.assemble():
    rollup: Femto = 0  # own cost plus all descendants', each counted once
    attribution: dict[str, str] = field(default_factory=dict)  # own or inherited dimensions
    agent_path: str = ""  # e.g. "supervisor/research"
    depth: int = 0
    children: list[str] = field(default_factory=list)
    orphan: bool = False  # its parent has not arrived (yet)
    retry: bool = False  # a failed attempt that a similar call under the same parent retried
    loop: bool = False  # one of a run of repeated identical tool/model calls

    @property
    def span_id(self) -> str:
        return self.record.span_id

    @property
    def is_llm(self) -> bool:
        return self.cost.status is not None

    @property
    def tool(self) -> str | None:
        value = self.record.attributes.get(c.GEN_AI_TOOL_NAME)
        return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class Loop:
    """A run of repeated calls: what repeated, under which parent, how often, at what cost."""

    kind: str  # "tool" or "model"
    name: str
    parent_span_id: str
    count: int
    cost: Femto  # rollup of the repeated spans
    span_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dimensions:
    """Which attribute keys name each attribution dimension: the first key with a value
    wins, the span's attribute before its resource's."""

    keys: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: c.DEFAULT_DIMENSIONS)
    _named: frozenset[str] = field(init=False, repr=False, compare=False)  # every key
    # (keys the span has, keys its resource has) -> the dimensions and keys worth reading
    _plans: dict[tuple[frozenset[str], frozenset[str]], _Plan] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        named = frozenset(key for keys in self.keys.values() for key in keys)
        object.__setattr__(self, "_named", named)
        object.__setattr__(self, "_plans", {})

    def of(self, record: SpanRecord) -> dict[str, str]:
        named = self._named
        present = (named.intersection(record.attributes), named.intersection(record.resource))
        return _read(self._plan(present), record, {})

    def reader(self) -> Callable[[SpanRecord, dict[str, str]], dict[str, str]]:
        """`read(record, into)`: `of(record)` written into `into` (a dimension `into`
        holds keeps its place), i.e. `{**into, **of(record)}` without the second dict.

        For one pass over many spans, which must outlive it: spans share resources, and a
        reader keeps the dimension keys of each resource it has seen, by id."""
        named, plan_for = self._named, self._plan
        in_resources: dict[int, frozenset[str]] = {}

        def read(record: SpanRecord, into: dict[str, str]) -> dict[str, str]:
            resource = record.resource
            in_resource = in_resources.get(id(resource))
            if in_resource is None:
                in_resource = in_resources[id(resource)] = named.intersection(resource)
            present = (named.intersection(record.attributes), in_resource)
            return _read(plan_for(present), record, into)

        return read

    def _plan(self, present: tuple[frozenset[str], frozenset[str]]) -> _Plan:
        """What to read for a span with these keys (its own, its resource's): each
        dimension with one of them, with those of its keys in rank order (a key missing
        from both cannot decide). Which keys spans have repeats: plans are kept."""
        plan = self._plans.get(present)
        if plan is not None:
            return plan
        either = present[0] | present[1]
        plan = tuple(
            (dimension, there)
            for dimension, keys in self.keys.items()
            if (there := tuple(key for key in keys if key in either))
        )
        if len(self._plans) >= _MAX_PLANS:  # hostile key sets: stay bounded
            self._plans.clear()
        self._plans[present] = plan
        return plan


_Plan = tuple[tuple[str, tuple[str, ...]], ...]
_MAX_PLANS = 4096


def _read(plan: _Plan, record: SpanRecord, into: dict[str, str]) -> dict[str, str]:
    """The rule as written, over the plan's keys: for each dimension its keys in rank
    order; for each key the span's attribute, else its resource's; the first non-empty
    value wins."""
    attributes, resource = record.attributes, record.resource
    for dimension, keys in plan:
        for key in keys:
            value = attributes.get(key)
            if value is None:
                value = resource.get(key)
            if value is not None and value != "":
                into[dimension] = str(value)
                break
    return into


class Trace:
    """All spans seen for one trace id, and the tree derived from them."""

    def __init__(
        self,
        trace_id: str,
        *,
        dimensions: Dimensions | None = None,
        loop_threshold: int = DEFAULT_LOOP_THRESHOLD,
    ) -> None:
        self.trace_id = trace_id
        self.spans: dict[str, PricedSpan] = {}
        self.dimensions = dimensions or _DEFAULT_DIMENSIONS
        self.loop_threshold = loop_threshold
        self.roots: list[str] = []
        self.loops: list[Loop] = []
        self.retry_overhead: Femto = 0
        self.loop_cost: Femto = 0
        self._dirty = True

    def add(self, span: PricedSpan) -> None:
        self.spans[span.record.span_id] = span  # a span sent twice replaces itself: once
        self._dirty = True

    # -- what the trace adds up to ---------------------------------------------------------
    @property
    def cost(self) -> Femto:
        """The cost of the whole user action: every span's own cost, once."""
        self.assemble()
        return sum(self.spans[root].rollup for root in self.roots)

    @property
    def root(self) -> PricedSpan | None:
        """The true root (no parent), if it has arrived."""
        self.assemble()
        for span_id in self.roots:
            span = self.spans[span_id]
            if span.record.is_root:
                return span
        return None

    @property
    def complete(self) -> bool:
        self.assemble()
        return len(self.roots) == 1 and self.spans[self.roots[0]].record.is_root

    @property
    def start_ns(self) -> int:
        return min((s.record.start_ns for s in self.spans.values()), default=0)

    @property
    def end_ns(self) -> int:
        return max((s.record.end_ns for s in self.spans.values()), default=0)

    def count(self, status: str) -> int:
        return sum(1 for span in self.spans.values() if span.cost.status == status)

    def walk(self) -> Iterable[PricedSpan]:
        """Spans depth-first from the roots, children by start time."""
        self.assemble()
        stack = list(reversed(self.roots))
        while stack:
            span = self.spans[stack.pop()]
            yield span
            stack.extend(reversed(span.children))

    # -- derivation ------------------------------------------------------------------------
    def assemble(self) -> None:
        """Derive tree, rollups, attribution, agent paths, retries and loops (when changed).

        The ingest server runs this for every trace it finalizes, so each step is one pass:
        link in start order (children and roots come out sorted, no sorting per parent),
        one walk down (depth, attribution, agent path), one walk back up (rollups), then
        only the sibling groups big enough to hold a retry or a loop.
        """
        if not self._dirty:
            return
        spans = self.spans
        ordered: list[tuple[int, str, PricedSpan]] = []  # by start time, then span id
        for span_id, span in spans.items():
            span.children = []
            span.rollup = span.cost.total
            span.retry = span.loop = span.orphan = False
            ordered.append((span.record.start_ns, span_id, span))
        ordered.sort()  # ids are unique: the spans themselves are never compared
        roots: list[str] = []
        orphans: list[str] = []
        for _, span_id, span in ordered:
            parent_id = span.record.parent_span_id
            if not parent_id:
                roots.append(span_id)
                continue
            parent = spans.get(parent_id) if parent_id != span_id else None
            if parent is None:
                span.orphan = True
                orphans.append(span_id)
            else:
                parent.children.append(span_id)
        roots += orphans  # true roots first, then orphans waiting for their parents

        order = self._descend([spans[root] for root in roots])
        if len(order) < len(spans):
            # Parent links that form a cycle (hostile or corrupt input) are cut: each cycle's
            # earliest span becomes a root so no span is lost or counted twice.
            visited = {span.record.span_id for span in order}
            for _, span_id, span in ordered:
                if span_id in visited:
                    continue
                spans[span.record.parent_span_id].children.remove(span_id)
                span.orphan = True
                roots.append(span_id)
                below = self._descend([span])
                visited.update(below_span.record.span_id for below_span in below)
                order += below
        self.roots = roots

        child = spans.__getitem__
        for span in reversed(order):  # children before parents: roll up
            if span.children:
                span.rollup += sum(map(_rollup, map(child, span.children)))

        self._mark_retries_and_loops()
        self._measure_loops(order)
        self._dirty = False

    def _descend(self, tops: list[PricedSpan]) -> list[PricedSpan]:
        """`tops` and every span below them, parents before children; sets depth,
        attribution and agent path on the way down."""
        spans, read = self.spans, self.dimensions.reader()
        for top in tops:
            top.depth = 0
            top.attribution = read(top.record, {})
            top.agent_path = _agent_name(top) or ""
        order = list(tops)
        for parent in order:  # `order` grows as it is read: breadth first, no recursion
            if not parent.children:
                continue
            children = list(map(spans.__getitem__, parent.children))
            order += children
            depth, inherited, path = parent.depth + 1, parent.attribution, parent.agent_path
            for child in children:
                child.depth = depth
                child.attribution = read(child.record, inherited.copy())
                agent = _agent_name(child)
                child.agent_path = _extend_path(path, agent) if agent else path
        return order

    def _mark_retries_and_loops(self) -> None:
        """Retries and loops are found among siblings: visit each parent once, and only
        those with enough children for either (most spans have none)."""
        self.retry_overhead = 0
        self.loops = []
        spans, threshold = self.spans, self.loop_threshold
        for parent_id, parent in spans.items():
            count = len(parent.children)
            if count < 2 and count <= threshold:
                continue
            siblings = [spans[child] for child in parent.children]
            if count > 1:
                self._mark_retries(siblings)
            if count > threshold:
                self._mark_loops(parent_id, siblings)

    def _mark_retries(self, siblings: list[PricedSpan]) -> None:
        """Flag retried attempts; each failed attempt's cost (rollup) is retry overhead.

        - Application retries: a failed LLM call followed by a similar call under the same
          parent.
        - HTTP retries: a failed HTTP attempt (error, 4xx or 5xx) followed by a later attempt
          of the same request (method and URL) under the same parent, whichever layer
          retried. Under an LLM call span these are the SDK client's own retries
          (`spanledger.sdk.attempts`); an instrumentation that does not make its span current
          leaves them beside the call, under the application's span. An attempt is not an
          LLM call (no model, no usage) and a provider does not bill a 429 or a 500, so this
          overhead is normally $0, but the failures are seen.
        """
        if not any(_failed_call(s) if s.is_llm else _is_attempt(s) for s in siblings):
            return  # no failed call and no HTTP attempt: the usual case, nothing retried
        for group, failed, similar in (
            ([s for s in siblings if s.is_llm], _failed_call, _similar),
            ([s for s in siblings if _is_attempt(s)], _failed_attempt, _same_request),
        ):
            for position, attempt in enumerate(group):
                if failed(attempt) and any(
                    similar(attempt, later) for later in group[position + 1 :]
                ):
                    attempt.retry = True
                    self.retry_overhead += attempt.rollup

    def _mark_loops(self, parent_id: str, siblings: list[PricedSpan]) -> None:
        """More than `loop_threshold` calls of the same tool, or the same model, under one
        parent is a runaway loop; the repeated spans are marked."""
        runs: dict[tuple[str, str], list[PricedSpan]] = {}
        for span in siblings:
            tool = span.tool
            if tool:
                run = ("tool", tool)
            elif span.is_llm and span.model:
                run = ("model", span.model)
            else:
                continue
            runs.setdefault(run, []).append(span)
        for (kind, name), members in runs.items():
            if len(members) > self.loop_threshold:
                for member in members:
                    member.loop = True
                self.loops.append(
                    Loop(
                        kind=kind,
                        name=name,
                        parent_span_id=parent_id,
                        count=len(members),
                        cost=sum(member.rollup for member in members),
                        span_ids=tuple(member.span_id for member in members),
                    )
                )

    def _measure_loops(self, order: list[PricedSpan]) -> None:
        """Loop cost: every span inside a looping subtree, each once."""
        self.loop_cost = 0
        if not self.loops:
            return
        in_loop: set[str] = set()
        for span in order:  # parents before children
            parent_id = span.record.parent_span_id
            if span.loop or (not span.orphan and parent_id in in_loop):
                in_loop.add(span.record.span_id)
                self.loop_cost += span.cost.total


def _similar(failed: PricedSpan, later: PricedSpan) -> bool:
    """Same operation on the same requested model (the response model of a failed call is
    usually missing, so the request model is what the two attempts share)."""
    return (
        later.record.start_ns >= failed.record.start_ns
        and _requested_model(later) == _requested_model(failed)
        and later.record.attributes.get(c.GEN_AI_OPERATION_NAME)
        == failed.record.attributes.get(c.GEN_AI_OPERATION_NAME)
    )


def _failed_call(span: PricedSpan) -> bool:
    return span.record.failed


def _is_attempt(span: PricedSpan) -> bool:
    """An HTTP attempt: ours (`spanledger.attempt`) or any HTTP client span, never an LLM call
    (a GenAI call span may carry HTTP attributes too; it is a call, not an attempt)."""
    if span.is_llm:
        return False
    attrs = span.record.attributes
    if c.ATTEMPT in attrs:
        return True
    return span.record.kind == _SPAN_KIND_CLIENT and _first(attrs, _HTTP_METHOD_KEYS) is not None


def _failed_attempt(span: PricedSpan) -> bool:
    if span.record.failed:
        return True
    status = _first(span.record.attributes, _HTTP_STATUS_KEYS)
    try:
        return status is not None and int(status) >= 400
    except (TypeError, ValueError, OverflowError):  # hostile input: not a status
        return False


def _same_request(failed: PricedSpan, later: PricedSpan) -> bool:
    """A later attempt with the same method and URL (as recorded, query values redacted)."""
    attrs, later_attrs = failed.record.attributes, later.record.attributes
    return (
        later.record.start_ns >= failed.record.start_ns
        and _first(later_attrs, _HTTP_METHOD_KEYS) == _first(attrs, _HTTP_METHOD_KEYS)
        and _first(later_attrs, _HTTP_URL_KEYS) == _first(attrs, _HTTP_URL_KEYS)
    )


def _first(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _requested_model(span: PricedSpan) -> str | None:
    requested = span.record.attributes.get(c.GEN_AI_REQUEST_MODEL)
    return requested if isinstance(requested, str) and requested else span.model


def _agent_name(span: PricedSpan) -> str | None:
    attrs = span.record.attributes
    name = attrs.get(c.GEN_AI_AGENT_NAME)
    if isinstance(name, str) and name:
        return name
    if attrs.get(c.GEN_AI_OPERATION_NAME) == "invoke_agent":
        _, _, rest = span.record.name.partition(" ")
        return rest.strip() or None
    return None


def _extend_path(parent_path: str, agent: str | None) -> str:
    if not agent:
        return parent_path
    if parent_path.rsplit("/", 1)[-1] == agent:
        return parent_path
    return f"{parent_path}/{agent}" if parent_path else agent


_DEFAULT_DIMENSIONS = Dimensions()
_rollup = attrgetter("rollup")


class TraceAssembler:
    """Prices spans as they arrive and groups them into traces.

    >>> assembler = TraceAssembler(PriceBook())
    >>> assembler.add(records)            # any order, any number of batches
    >>> trace = assembler.trace(trace_id) # tree, rollups, retries, loops
    """

    def __init__(
        self,
        book: PriceBook,
        *,
        dimensions: Dimensions | None = None,
        loop_threshold: int = DEFAULT_LOOP_THRESHOLD,
    ) -> None:
        self.book = book
        self.dimensions = dimensions or _DEFAULT_DIMENSIONS
        self.loop_threshold = loop_threshold
        self._traces: dict[str, Trace] = {}

    def price(self, record: SpanRecord) -> PricedSpan:
        priced = self.book.price_attributes(
            record.attributes, record.start_ns, record.resource, failed=record.failed
        )
        return PricedSpan(record, priced.usage, priced.cost, priced.provider, priced.model)

    def add(self, records: Iterable[SpanRecord]) -> set[str]:
        """Price and file a batch of spans; returns the ids of the traces it touched."""
        touched: set[str] = set()
        for record in records:
            trace = self._traces.get(record.trace_id)
            if trace is None:
                trace = Trace(
                    record.trace_id,
                    dimensions=self.dimensions,
                    loop_threshold=self.loop_threshold,
                )
                self._traces[record.trace_id] = trace
            trace.add(self.price(record))
            touched.add(record.trace_id)
        return touched

    def trace(self, trace_id: str) -> Trace:
        trace = self._traces[trace_id]
        trace.assemble()
        return trace

    def traces(self) -> list[Trace]:
        """Every trace, assembled, earliest first."""
        found = [self.trace(trace_id) for trace_id in self._traces]
        return sorted(found, key=lambda trace: (trace.start_ns, trace.trace_id))

    def __len__(self) -> int:
        return len(self._traces)
