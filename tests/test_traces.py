"""Trace assembly: rollups, arrival order, attribution, agent paths, retries, loops."""

from __future__ import annotations

import random
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from spanledger.pricing import PriceBook, RateSheet, usd
from spanledger.spans import STATUS_ERROR, SpanRecord
from spanledger.traces import Dimensions, TraceAssembler

# Pinned for these tests: $1 per million input tokens, $2 per million output tokens, so
# a call with i input and o output tokens costs (i + 2*o) micro-dollars.
SHEET = RateSheet.parse(
    """
version: traces-test
models:
  - match: model-a
    per_million: {input: 1, output: 2}
  - match: model-b
    per_million: {input: 10, output: 20}
"""
)
TRACE = "0af7651916cd43dd8448eb211c80319c"
T0 = 1_764_000_000 * 10**9


def book() -> PriceBook:
    return PriceBook([SHEET], use_defaults=False)


def sid(number: int) -> str:
    return f"{number:016x}"


def llm(
    number: int,
    parent: int | None,
    inp: int,
    out: int,
    model: str = "model-a",
    **attrs: object,
) -> SpanRecord:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": inp,
        "gen_ai.usage.output_tokens": out,
        **attrs,
    }
    return SpanRecord(
        TRACE,
        sid(number),
        sid(parent) if parent else "",
        f"chat {model}",
        T0 + number * 1000,
        T0 + number * 1000 + 500,
        attributes=attributes,
    )


def span(number: int, parent: int | None, name: str, **attrs: object) -> SpanRecord:
    return SpanRecord(
        TRACE,
        sid(number),
        sid(parent) if parent else "",
        name,
        T0 + number * 1000,
        T0 + 10**9,
        attributes=dict(attrs),
    )


def test_rollup_counts_each_span_once_and_root_equals_trace_cost() -> None:
    # root(1) -> agent(2) -> [llm 3: 1000 in, 100 out; llm 4: 500 in, 0 out]
    #         -> llm 5: 0 in, 1000 out
    # costs: 3 = 1000*1 + 100*2 = 1200 µ$; 4 = 500 µ$; 5 = 2000 µ$; total 3700 µ$
    assembler = TraceAssembler(book())
    assembler.add(
        [
            span(1, None, "handle request"),
            span(2, 1, "invoke_agent research", **{"gen_ai.operation.name": "invoke_agent"}),
            llm(3, 2, 1000, 100),
            llm(4, 2, 500, 0),
            llm(5, 1, 0, 1000),
        ]
    )
    trace = assembler.trace(TRACE)
    spans = trace.spans
    assert usd(spans[sid(2)].rollup) == Decimal("0.0017")  # 1200 + 500 µ$
    assert usd(spans[sid(1)].rollup) == Decimal("0.0037")
    assert usd(trace.cost) == Decimal("0.0037")
    assert trace.complete


def test_children_before_parents_across_batches_gives_same_result() -> None:
    records = [
        span(1, None, "root", **{"user.id": "u-42", "department": "research"}),
        span(2, 1, "invoke_agent planner", **{"gen_ai.operation.name": "invoke_agent"}),
        llm(3, 2, 2000, 10),
        llm(4, 3, 10, 10),
    ]
    in_order = TraceAssembler(book())
    in_order.add(records)
    reversed_batches = TraceAssembler(book())
    reversed_batches.add(records[3:])
    early = reversed_batches.trace(TRACE)
    assert not early.complete and early.spans[sid(4)].orphan
    reversed_batches.add(records[1:3])
    reversed_batches.add(records[:1])
    late = reversed_batches.trace(TRACE)
    assert late.complete and not late.spans[sid(4)].orphan
    assert late.cost == in_order.trace(TRACE).cost
    # 2000 + 20 + 10 + 20 = 2050 µ$
    assert usd(late.cost) == Decimal("0.00205")
    # Attribution set on the root reaches the deepest LLM call.
    assert late.spans[sid(4)].attribution["user"] == "u-42"
    assert late.spans[sid(4)].attribution["department"] == "research"
    assert late.spans[sid(4)].agent_path == "planner"


def test_same_span_twice_is_counted_once() -> None:
    assembler = TraceAssembler(book())
    assembler.add([span(1, None, "root"), llm(2, 1, 1000, 0)])
    assembler.add([llm(2, 1, 1000, 0)])
    assert usd(assembler.trace(TRACE).cost) == Decimal("0.001")  # 1000 * $1/M


def test_agent_path_and_nearest_ancestor_wins() -> None:
    assembler = TraceAssembler(book())
    assembler.add(
        [
            span(
                1,
                None,
                "invoke_agent supervisor",
                **{"gen_ai.agent.name": "supervisor", "user.id": "u-1"},
            ),
            span(
                2,
                1,
                "invoke_agent research",
                **{"gen_ai.operation.name": "invoke_agent", "user.id": "u-2"},
            ),
            llm(3, 2, 1, 1, **{"gen_ai.agent.name": "research"}),
            llm(4, 1, 1, 1),
        ]
    )
    trace = assembler.trace(TRACE)
    assert trace.spans[sid(3)].agent_path == "supervisor/research"
    assert trace.spans[sid(3)].attribution["user"] == "u-2"  # nearest ancestor
    assert trace.spans[sid(3)].attribution["agent"] == "research"
    assert trace.spans[sid(4)].agent_path == "supervisor"
    assert trace.spans[sid(4)].attribution == {"agent": "supervisor", "user": "u-1"}


def test_configurable_dimension_keys() -> None:
    dims = Dimensions({"team": ("acme.team",), "service": ("service.name",)})
    assembler = TraceAssembler(book(), dimensions=dims)
    root = span(1, None, "root", **{"acme.team": "payments"})
    root.resource = {"service.name": "checkout"}
    assembler.add([root, llm(2, 1, 1, 1)])
    assert assembler.trace(TRACE).spans[sid(2)].attribution == {
        "team": "payments",
        "service": "checkout",
    }


def test_failed_call_followed_by_similar_call_is_retry_overhead() -> None:
    failed = llm(2, 1, 1000, 0, **{"error.type": "RateLimitError"})
    errored_status = llm(3, 1, 1000, 0)
    errored_status.status_code = STATUS_ERROR
    assembler = TraceAssembler(book())
    assembler.add(
        [
            span(1, None, "root"),
            failed,
            errored_status,
            llm(4, 1, 1000, 100),
            # A failure with no later similar call is an error, not a retry.
            llm(5, 1, 7, 0, model="model-b", **{"error.type": "timeout"}),
        ]
    )
    trace = assembler.trace(TRACE)
    assert trace.spans[sid(2)].retry and trace.spans[sid(3)].retry
    assert not trace.spans[sid(4)].retry and not trace.spans[sid(5)].retry
    # two failed attempts of 1000 input tokens each at $1/M = 2000 µ$
    assert usd(trace.retry_overhead) == Decimal("0.002")


def test_repeated_tool_calls_past_threshold_are_a_loop_with_isolated_cost() -> None:
    records = [span(1, None, "root"), span(2, 1, "invoke_agent research")]
    number = 3
    for _ in range(12):
        records.append(span(number, 2, "execute_tool fetch_page", **{"gen_ai.tool.name": "fetch"}))
        records.append(llm(number + 1, number, 100, 10))  # 100 + 20 = 120 µ$ inside the tool
        number += 2
    records.append(llm(number, 2, 1000, 0))  # not part of the loop: 1000 µ$
    assembler = TraceAssembler(book(), loop_threshold=10)
    assembler.add(records)
    trace = assembler.trace(TRACE)
    assert len(trace.loops) == 1
    loop = trace.loops[0]
    assert (loop.kind, loop.name, loop.count) == ("tool", "fetch", 12)
    assert usd(loop.cost) == Decimal("0.00144")  # 12 * 120 µ$
    assert usd(trace.loop_cost) == Decimal("0.00144")
    assert usd(trace.cost) == Decimal("0.00244")  # 1440 + 1000 µ$
    assert not trace.spans[sid(number)].loop


def test_calls_at_threshold_are_not_a_loop() -> None:
    records = [span(1, None, "root")] + [llm(n, 1, 1, 1) for n in range(2, 12)]  # 10 calls
    assembler = TraceAssembler(book(), loop_threshold=10)
    assembler.add(records)
    assert assembler.trace(TRACE).loops == []
    assembler.add([llm(12, 1, 1, 1)])  # the 11th identical model call under one parent
    trace = assembler.trace(TRACE)
    assert [(loop.kind, loop.name, loop.count) for loop in trace.loops] == [
        ("model", "model-a", 11)
    ]


def test_parent_cycle_is_cut_without_losing_or_doubling_cost() -> None:
    a = llm(1, 2, 1000, 0)
    b = llm(2, 1, 2000, 0)
    assembler = TraceAssembler(book())
    assembler.add([a, b, llm(3, 3, 5, 0)])  # 1 <-> 2 cycle, 3 is its own parent
    trace = assembler.trace(TRACE)
    assert usd(trace.cost) == Decimal("0.003005")  # 1000 + 2000 + 5 µ$
    assert sorted(s.span_id for s in trace.walk()) == [sid(1), sid(2), sid(3)]


def test_deep_tree_does_not_recurse() -> None:
    depth = 5000
    records = [span(1, None, "root")] + [llm(n, n - 1, 1, 0) for n in range(2, depth + 1)]
    assembler = TraceAssembler(book())
    assembler.add(records)
    trace = assembler.trace(TRACE)
    assert usd(trace.cost) == Decimal(depth - 1) / 10**6
    assert trace.spans[sid(2)].rollup == trace.cost


@st.composite
def trees(draw: st.DrawFn) -> list[SpanRecord]:
    size = draw(st.integers(1, 60))
    records = [span(1, None, "root")]
    for number in range(2, size + 1):
        parent = draw(st.integers(1, number - 1))
        inp = draw(st.integers(0, 10**7))
        out = draw(st.integers(0, 10**6))
        model = draw(st.sampled_from(["model-a", "model-b", "unknown-model"]))
        records.append(llm(number, parent, inp, out, model=model))
    return records


@settings(max_examples=150, deadline=None)
@given(records=trees(), seed=st.integers(0, 2**32), batches=st.integers(1, 5))
def test_rollup_in_any_arrival_order_equals_sum_of_self_costs(
    records: list[SpanRecord], seed: int, batches: int
) -> None:
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    assembler = TraceAssembler(book())
    for index in range(batches):
        assembler.add(shuffled[index::batches])
    trace = assembler.trace(TRACE)
    self_total = sum(s.cost.total for s in trace.spans.values())
    assert trace.cost == self_total
    assert trace.spans[sid(1)].rollup == self_total
    for priced in trace.spans.values():
        assert priced.rollup == priced.cost.total + sum(
            trace.spans[child].rollup for child in priced.children
        )
    # Independent of arrival order: same as the in-order assembly.
    reference = TraceAssembler(book())
    reference.add(records)
    assert reference.trace(TRACE).cost == trace.cost


# --- attribution keys: the indexed lookup against the rule as written ---------------------

_DIMENSION_KEYS = {
    "user": ("user.id", "enduser.id", "team"),
    "department": ("team", "department"),  # one key under two dimensions
    "service": ("service.name",),
}
_KEYS = sorted({key for keys in _DIMENSION_KEYS.values() for key in keys} | {"other"})
_VALUES = st.one_of(st.none(), st.sampled_from(["", "a", "b"]), st.integers(0, 3))


def _by_the_rule(keys: dict[str, tuple[str, ...]], record: SpanRecord) -> dict[str, str]:
    """For each dimension, its keys in order; for each key the span's attribute, then its
    resource's; the first non-empty value wins."""
    found: dict[str, str] = {}
    for dimension, names in keys.items():
        for name in names:
            value = record.attributes.get(name)
            if value is None:
                value = record.resource.get(name)
            if value is not None and value != "":
                found[dimension] = str(value)
                break
    return found


@settings(max_examples=300, deadline=None)
@given(
    attributes=st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=6),
    resource=st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=6),
)
def test_dimensions_pick_what_the_rule_picks(attributes: dict, resource: dict) -> None:
    record = SpanRecord("1" * 32, "2" * 16, attributes=attributes, resource=resource)
    expected = _by_the_rule(_DIMENSION_KEYS, record)
    assert Dimensions(_DIMENSION_KEYS).of(record) == expected
    assert list(Dimensions(_DIMENSION_KEYS).of(record)) == list(expected)  # same order
