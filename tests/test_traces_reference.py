"""Trace assembly against a reference: the straightforward derivation it was optimised from.

`Trace.assemble` runs once per finalized trace on the ingest path and is written for speed
(one pass per step, plans for attribution keys, early exits). The reference below is the
earlier code, kept as written: several passes, recursion-free walks, `Dimensions.of` read
from the rule. Random trees in random arrival order (late spans, orphans, cycles, spans
sent twice, retries, repeated calls) must derive the same fields, trace values and order.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanledger import conventions as c
from spanledger.pricing import PriceBook, RateSheet
from spanledger.spans import STATUS_ERROR, SpanRecord
from spanledger.traces import (
    Dimensions,
    Loop,
    PricedSpan,
    Trace,
    _agent_name,
    _extend_path,
    _failed_attempt,
    _failed_call,
    _is_attempt,
    _same_request,
    _similar,
)
from test_traces import _by_the_rule

SHEET = RateSheet.parse(
    """
version: reference-test
models:
  - match: model-a
    per_million: {input: 1, output: 2}
  - match: model-b
    per_million: {input: 10, output: 20}
"""
)
BOOK = PriceBook([SHEET], use_defaults=False)
TRACE = "0af7651916cd43dd8448eb211c80319c"
T0 = 1_764_000_000 * 10**9
ONE_KEY_TWO_DIMENSIONS = Dimensions(
    {
        "user": ("user.id", "enduser.id", "team"),
        "department": ("team", "department"),
        "service": ("service.name",),
    }
)


# -- the reference: the derivation as first written -----------------------------------------
reference_of = _by_the_rule  # the attribution rule, as tests/test_traces.py states it


class Reference:
    def __init__(self, keys: Mapping[str, tuple[str, ...]], loop_threshold: int) -> None:
        self.keys = keys
        self.loop_threshold = loop_threshold
        self.spans: dict[str, PricedSpan] = {}
        self.roots: list[str] = []
        self.loops: list[Loop] = []
        self.retry_overhead = 0
        self.loop_cost = 0

    def add(self, span: PricedSpan) -> None:
        self.spans[span.span_id] = span

    def assemble(self) -> None:
        spans = self.spans
        for span in spans.values():
            span.children = []
            span.rollup = span.cost.total
            span.retry = span.loop = span.orphan = False
        roots: list[str] = []
        for span in spans.values():
            parent_id = span.record.parent_span_id
            if parent_id and parent_id in spans and parent_id != span.span_id:
                spans[parent_id].children.append(span.span_id)
            else:
                span.orphan = bool(parent_id)
                roots.append(span.span_id)
        by_start = self._by_start
        for span in spans.values():
            span.children.sort(key=by_start)
        roots.sort(key=lambda root: (bool(spans[root].record.parent_span_id), by_start(root)))
        order = self._top_down(roots)
        if len(order) < len(spans):
            visited = set(order)
            for span_id in sorted(set(spans) - visited, key=by_start):
                if span_id in visited:
                    continue
                span = spans[span_id]
                spans[span.record.parent_span_id].children.remove(span_id)
                span.orphan = True
                roots.append(span_id)
                below = self._top_down([span_id])
                visited.update(below)
                order.extend(below)
        self.roots = roots
        for span_id in order:
            span = spans[span_id]
            own = reference_of(self.keys, span.record)
            parent = spans.get(span.record.parent_span_id) if not span.orphan else None
            if parent is None:
                span.depth = 0
                span.attribution = own
                span.agent_path = _agent_name(span) or ""
            else:
                span.depth = parent.depth + 1
                span.attribution = {**parent.attribution, **own}
                span.agent_path = _extend_path(parent.agent_path, _agent_name(span))
        for span_id in reversed(order):
            span = spans[span_id]
            if not span.orphan and span.record.parent_span_id in spans:
                spans[span.record.parent_span_id].rollup += span.rollup
        self._mark_retries()
        self._mark_loops(order)

    def _by_start(self, span_id: str) -> tuple[int, str]:
        return (self.spans[span_id].record.start_ns, span_id)

    def _top_down(self, roots: list[str]) -> list[str]:
        order: list[str] = []
        seen: set[str] = set()
        stack = list(reversed(roots))
        while stack:
            span_id = stack.pop()
            if span_id in seen:
                continue
            seen.add(span_id)
            order.append(span_id)
            stack.extend(reversed(self.spans[span_id].children))
        return order

    def _sibling_groups(self) -> list[tuple[str, list[PricedSpan]]]:
        return [
            (span.span_id, [self.spans[child] for child in span.children])
            for span in self.spans.values()
            if span.children
        ]

    def _mark_retries(self) -> None:
        self.retry_overhead = 0
        for _, siblings in self._sibling_groups():
            for group, failed, similar in (
                ([s for s in siblings if s.is_llm], _failed_call, _similar),
                ([s for s in siblings if _is_attempt(s)], _failed_attempt, _same_request),
            ):
                for position, attempt in enumerate(group):
                    if not failed(attempt):
                        continue
                    if any(similar(attempt, later) for later in group[position + 1 :]):
                        attempt.retry = True
                        self.retry_overhead += attempt.rollup

    def _mark_loops(self, order: list[str]) -> None:
        self.loops = []
        for parent_id, siblings in self._sibling_groups():
            runs: dict[tuple[str, str], list[PricedSpan]] = defaultdict(list)
            for span in siblings:
                if span.tool:
                    runs[("tool", span.tool)].append(span)
                elif span.is_llm and span.model:
                    runs[("model", span.model)].append(span)
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
        in_loop: set[str] = set()
        self.loop_cost = 0
        for span_id in order:
            span = self.spans[span_id]
            if span.loop or (not span.orphan and span.record.parent_span_id in in_loop):
                in_loop.add(span_id)
                self.loop_cost += span.cost.total


# -- random traces ----------------------------------------------------------------------------
def sid(number: int) -> str:
    return f"{number:016x}"


RESOURCES = [
    {"service.name": "support-bot", "tenant.id": "t-1"},
    {"service.name": "support-bot", "tenant.id": "t-1"},  # equal, another object
    {"service.name": "", "team": "ops", "user.id": None},
    {},
]
VALUES = st.one_of(st.none(), st.sampled_from(["", "a", "b", "u-1"]), st.integers(0, 2))
DIMENSION_KEYS = st.sampled_from(
    [
        *("user.id", "enduser.id", "team", "department", "spanledger.tenant"),
        *("service.name", "gen_ai.conversation.id", "session.id", "other"),
    ]
)


@st.composite
def records(draw: st.DrawFn) -> list[SpanRecord]:
    """A trace: parents earlier, later (children first), missing, itself, or in a cycle;
    LLM calls (some failed), tools, agents and HTTP attempts; clashing start times."""
    size = draw(st.integers(1, 40))
    starts = st.integers(0, 12)  # few values: ties, broken by span id
    found: list[SpanRecord] = []
    for number in range(1, size + 1):
        link = draw(
            st.sampled_from(["root", "earlier", "earlier", "earlier", "any", "missing", "self"])
        )
        parent = {
            "root": "",
            "earlier": sid(draw(st.integers(1, number - 1))) if number > 1 else "",
            "any": sid(draw(st.integers(1, size))),  # later spans too: cycles
            "missing": sid(10_000 + number),
            "self": sid(number),
        }[link]
        kind = draw(st.sampled_from(["llm", "llm", "tool", "agent", "attempt", "plain"]))
        attributes: dict[str, Any] = {}
        span_kind = 1
        status = 0
        name = kind
        if kind == "llm":
            model = draw(st.sampled_from(["model-a", "model-b", "unknown-model"]))
            attributes.update(
                {
                    c.GEN_AI_OPERATION_NAME: draw(st.sampled_from(["chat", "embeddings"])),
                    c.GEN_AI_REQUEST_MODEL: model,
                    "gen_ai.usage.input_tokens": draw(st.integers(0, 10**6)),
                    "gen_ai.usage.output_tokens": draw(st.integers(0, 10**5)),
                }
            )
            if draw(st.booleans()):
                attributes["error.type"] = "RateLimitError"
            span_kind = 3
            name = f"chat {model}"
        elif kind == "tool":
            attributes[c.GEN_AI_TOOL_NAME] = draw(st.sampled_from(["fetch", "search", ""]))
        elif kind == "agent":
            attributes[c.GEN_AI_OPERATION_NAME] = "invoke_agent"
            agent = draw(st.sampled_from(["planner", "research", "a/b", ""]))
            name = f"invoke_agent {agent}"
            if draw(st.booleans()):
                attributes[c.GEN_AI_AGENT_NAME] = draw(st.sampled_from(["planner", "", 7]))
        elif kind == "attempt":
            span_kind = 3
            if draw(st.booleans()):
                attributes[c.ATTEMPT] = draw(st.integers(1, 3))
            attributes[c.HTTP_REQUEST_METHOD] = draw(st.sampled_from(["POST", "GET"]))
            attributes[c.URL_FULL] = draw(st.sampled_from(["https://x/v1", "https://y/v1"]))
            attributes[c.HTTP_RESPONSE_STATUS_CODE] = draw(
                st.sampled_from([200, 429, 500, "oops", None])
            )
        if draw(st.integers(0, 4)) == 0:
            status = STATUS_ERROR
        for key in draw(st.lists(DIMENSION_KEYS, max_size=3)):
            attributes[key] = draw(VALUES)
        start = T0 + draw(starts) * 1000
        found.append(
            SpanRecord(
                TRACE,
                sid(number),
                parent,
                name,
                start,
                start + 500,
                status_code=status,
                kind=span_kind,
                attributes=attributes,
                resource=RESOURCES[draw(st.integers(0, len(RESOURCES) - 1))],
            )
        )
    return found


def price(record: SpanRecord) -> PricedSpan:
    priced = BOOK.price_attributes(
        record.attributes, record.start_ns, record.resource, failed=record.failed
    )
    return PricedSpan(record, priced.usage, priced.cost, priced.provider, priced.model)


def derived(trace: Trace | Reference) -> dict[str, Any]:
    spans = trace.spans
    return {
        "spans": {
            span_id: (
                span.attribution,
                list(span.attribution),  # same order too
                span.agent_path,
                span.rollup,
                span.depth,
                list(span.children),
                span.orphan,
                span.retry,
                span.loop,
            )
            for span_id, span in spans.items()
        },
        "roots": list(trace.roots),
        "loops": [
            (loop.kind, loop.name, loop.parent_span_id, loop.count, loop.cost, loop.span_ids)
            for loop in trace.loops
        ],
        "retry_overhead": trace.retry_overhead,
        "loop_cost": trace.loop_cost,
        "cost": sum(spans[root].rollup for root in trace.roots),
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    found=records(),
    seed=st.integers(0, 2**32),
    loop_threshold=st.integers(0, 3),
    resend=st.lists(st.integers(0, 39), max_size=4),
    early=st.integers(0, 40),
    dimensions=st.sampled_from([Dimensions(), ONE_KEY_TWO_DIMENSIONS]),
)
def test_assemble_derives_what_the_reference_derives(
    found: list[SpanRecord],
    seed: int,
    loop_threshold: int,
    resend: list[int],
    early: int,
    dimensions: Dimensions,
) -> None:
    arrivals = found[:]
    random.Random(seed).shuffle(arrivals)
    arrivals += [found[index] for index in resend if index < len(found)]  # sent twice
    trace = Trace(TRACE, dimensions=dimensions, loop_threshold=loop_threshold)
    reference = Reference(dimensions.keys, loop_threshold)
    for position, record in enumerate(arrivals):
        trace.add(price(record))
        reference.add(price(record))
        if position == early:  # assembled while spans are still arriving, then again
            trace.assemble()
    trace.assemble()
    reference.assemble()
    assert derived(trace) == derived(reference)
    assert trace.cost == derived(reference)["cost"]
    assert trace.complete == (
        len(reference.roots) == 1 and reference.spans[reference.roots[0]].record.is_root
    )
    assert sorted(span.span_id for span in trace.walk()) == sorted(reference.spans)


@settings(max_examples=300, deadline=None)
@given(found=records(), dimensions=st.sampled_from([Dimensions(), ONE_KEY_TWO_DIMENSIONS]))
def test_dimensions_of_reads_the_rule(found: list[SpanRecord], dimensions: Dimensions) -> None:
    read = dimensions.reader()
    for record in found:
        expected = reference_of(dimensions.keys, record)
        assert dimensions.of(record) == expected
        assert list(dimensions.of(record)) == list(expected)
        inherited = {"service": "x", "zeta": "z"}
        merged = read(record, dict(inherited))
        assert merged == {**inherited, **expected}
        assert list(merged) == list({**inherited, **expected})
