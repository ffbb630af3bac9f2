"""DuckDBStore.encode builds its Arrow table column by column, with fast paths (the plain
columns written in one pass by the compiled `_columns`, ids decoded for the whole batch,
money laid out as int64 words, constants for spans not assembled yet, one orjson pass for
the attributes). Each fast path must store exactly what the plain row-by-row conversion
stores, and refuse exactly what it refuses."""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pytest

from spanledger import conventions as c
from spanledger.pricing import Cost
from spanledger.spans import SpanRecord
from spanledger.store import _columns
from spanledger.store import duckdb as store_module
from spanledger.store.duckdb import DuckDBStore
from spanledger.traces import PricedSpan
from spanledger.usage import Usage

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
RESOURCE = {"service.name": "encode-tests", "host.name": "h1"}


def reference(spans: Sequence[PricedSpan]) -> pa.Table:
    """The plain conversion: one tuple a span, transposed, one `pa.array` a column."""
    m = store_module
    rows = []
    for span in spans:
        record, usage, cost = span.record, span.usage, span.cost
        attrs, dims = record.attributes, span.attribution
        rows.append(
            (
                *m._keys(record.trace_id, record.span_id),
                record.trace_id, record.span_id, record.parent_span_id, record.name,
                record.kind, record.scope, record.start_ns, record.end_ns, record.status_code,
                record.status_message or None, span.provider, span.model,
                m._text(attrs.get(c.GEN_AI_OPERATION_NAME)), span.tool,
                usage.input_uncached, usage.cache_read, usage.cache_write,
                usage.cache_write_1h, usage.output, usage.reasoning, usage.source,
                usage.response_cached, cost.status, cost.model, cost.source, cost.reason,
                cost.cache_status if cost.status is not None else None,
                cost.input, cost.cache_read, cost.cache_write, cost.output, cost.total,
                cost.saved_by_cache, cost.reported,
                *(dims.get(name) for name in m._DIMENSIONS),
                span.agent_path or None, span.rollup, span.depth, span.orphan, span.retry,
                span.loop, m._json(attrs), m._json(record.resource),
            )
        )  # fmt: skip
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(m._ROW_FIELDS)
    return pa.table(
        {
            name: pa.array(values, m._ARROW_TYPES[name])
            for name, values in zip(m._ROW_FIELDS, columns, strict=True)
        }
    )


def span(
    n: int,
    *,
    trace: str = TRACE,
    span_id: str | None = None,
    attributes: Any = None,
    resource: Any = None,
    cost: Cost | None = None,
    **derived: Any,
) -> PricedSpan:
    record = SpanRecord(
        trace_id=trace,
        span_id=span_id or f"{0xA0B0C0D000000000 + n:016x}",
        parent_span_id="" if n == 0 else f"{0xA0B0C0D000000000:016x}",
        name=f"chat {n}",
        start_ns=1_795_510_800_000_000_000 + n,
        end_ns=1_795_510_800_000_000_000 + 2 * n,
        status_code=n % 3,
        status_message="boom" if n % 5 == 4 else "",
        kind=n % 6,
        attributes={c.GEN_AI_OPERATION_NAME: "chat", "n": n} if attributes is None else attributes,
        resource=RESOURCE if resource is None else resource,
        scope="tests",
    )
    if cost is None:
        cost = Cost("priced", input=n * 10**12, output=7, cache_status="miss", model="m")
    usage = Usage(input_uncached=n, output=2 * n, source="otel_genai", response_cached=n == 3)
    return PricedSpan(record, usage, cost, "openai", "gpt", **derived)


def check(spans: Sequence[PricedSpan]) -> pa.Table:
    """Both ways of writing the plain columns store what the plain conversion stores."""
    expected = reference(spans)
    for compiled in (store_module._columns, None):
        store_module._columns = compiled
        try:
            encoded = DuckDBStore.encode(None, spans)  # type: ignore[arg-type]  # uses no state
        finally:
            store_module._columns = _columns
        assert encoded.schema.equals(expected.schema)
        differing = [n for n in expected.column_names if not encoded[n].equals(expected[n])]
        assert not differing, (compiled, differing)
        encoded.validate(full=True)
    return encoded


def written_in_one_pass(spans: list[PricedSpan]) -> bool:
    """Whether `_columns` writes these spans' plain columns (rather than leaving them to
    the Python lists)."""
    try:
        _columns.columns(spans, store_module._PLAN)
    except _columns.Unhandled:
        return False
    return True


def test_a_plain_batch_and_an_empty_one() -> None:
    check([span(n) for n in range(40)])
    assert check([]).num_rows == 0


def test_derived_columns_of_assembled_spans() -> None:
    spans = [span(n) for n in range(6)]
    spans[2].attribution = {"user": "u1", "agent": "planner"}
    spans[3].rollup, spans[3].depth, spans[3].agent_path = 12345, 2, "a/b"
    spans[4].orphan = spans[4].retry = spans[5].loop = True
    check(spans)
    check([span(n) for n in range(6)])  # all defaults: the constant columns


def test_attributes_json_takes_the_careful_path_exactly_where_it_did() -> None:
    attributes = [
        {"x": float("nan")},
        {"x": float("inf"), "y": [1.5, float("-inf")]},
        {"x": None},
        {"text": "a nullable field"},  # "null" inside a string: the careful path too
        {"text": "caf\u00e9 \u2603", "big": 1e16},  # where the two writers differ
        {"emoji": "\U0001f600"},
        {"lone": "\udc80"},  # orjson refuses it: the whole batch goes the careful way
        {"huge": 2**70},  # beyond 64 bits: orjson refuses it too
        {"bytes": b"\x00\xff", "tuple": ("a", 1)},
        types.MappingProxyType({"read": "only", "v": None}),  # a Mapping, not a dict
        {},
    ]
    check([span(n, attributes=a) for n, a in enumerate(attributes)])
    check([span(n, attributes=a) for n, a in enumerate(attributes[:6])])  # no refusal
    check([span(0, attributes=types.MappingProxyType({"only": 1}))])


def test_the_json_the_reader_wrote_is_stored_as_it_wrote_it() -> None:
    spans = [span(n) for n in range(4)]
    for one in spans[:3]:  # the fourth is left to `_json`, as the reader leaves a careful case
        one.record.attributes_json = store_module._json(one.record.attributes)
        one.record.resource_json = store_module._json(one.record.resource)
    check(spans)  # `_json`'s texts, wherever they come from: the plain conversion's table
    spans[1].record.attributes_json = '{"from":"the reader"}'
    spans[2].record.resource_json = '{"service.name":"as written"}'
    encoded = DuckDBStore.encode(None, spans)  # type: ignore[arg-type]  # uses no state
    assert encoded["attributes"].to_pylist()[:2] == [
        store_module._json(spans[0].record.attributes),
        '{"from":"the reader"}',
    ]
    assert encoded["resource"].to_pylist()[2:] == [
        '{"service.name":"as written"}',
        store_module._json(RESOURCE),
    ]


def test_resources_shared_and_distinct() -> None:
    other = {"service.name": "other", "x": float("nan")}
    check([span(n, resource=RESOURCE if n % 2 else other) for n in range(8)])
    check([span(n, resource={"service.name": f"s{n}"}) for n in range(4)])  # equal, not same


@pytest.mark.parametrize(
    "cost",
    [
        Cost("priced", input=2**63 - 1, output=0),
        Cost("priced", input=2**63, output=1),  # beyond int64: the decimal conversion
        Cost("priced", input=10**37, output=1),
        Cost("priced", input=-5, output=3),  # negative: not the int64 words
        Cost("reported_only", reported=-7),
        Cost("priced", input=1, reported=0),
        Cost(None),
    ],
)
def test_money_columns(cost: Cost) -> None:
    check([span(0), span(1, cost=cost), span(2)])
    check([span(1, cost=cost)])


@pytest.mark.parametrize(
    "bad",
    [
        Cost("priced", input=10**38),  # does not fit DECIMAL(38,0)
        Cost("priced", input=1.5),  # type: ignore[arg-type]
        Cost("priced", input=True),  # a bool is not money
    ],
)
def test_money_the_table_cannot_hold_is_refused(bad: Cost) -> None:
    with pytest.raises((pa.ArrowException, TypeError, ValueError, OverflowError)):
        reference([span(1, cost=bad)])
    with pytest.raises((pa.ArrowException, TypeError, ValueError, OverflowError)):
        DuckDBStore.encode(None, [span(0), span(1, cost=bad)])  # type: ignore[arg-type]


def test_ids_the_batch_decoder_does_not_take_go_the_per_span_way() -> None:
    check([span(n, trace=TRACE.upper()) for n in range(3)])  # upper case hex
    check([span(0), span(1, trace=TRACE[:31])])  # a short trace id
    check([span(0), span(1, span_id="0x1234567890abcd")])  # int() takes a 0x prefix
    check([span(0), span(1, trace=TRACE[:16] + "  " + TRACE[18:])])  # fromhex skips spaces
    check([span(n, trace="f" * 32, span_id="f" * 16) for n in range(2)])  # all ones
    for bad in ("z" * 32, "\u00e9" * 32):
        with pytest.raises(ValueError):
            DuckDBStore.encode(None, [span(0), span(1, trace=bad)])  # type: ignore[arg-type]


def test_plain_columns_in_one_pass() -> None:
    spans = [span(n) for n in range(12)]
    spans[1].record.name = "caf\u00e9 \u2603 \U0001f600"  # UTF-8 of 2, 3 and 4 bytes
    spans[2].record.name = ""  # empty text stays text; an empty status message is null
    spans[3].model = spans[3].provider = None
    spans[4].record.attributes = {c.GEN_AI_OPERATION_NAME: "", c.GEN_AI_TOOL_NAME: "search"}
    spans[5].record.attributes = {c.GEN_AI_OPERATION_NAME: 7, c.GEN_AI_TOOL_NAME: None}
    spans[6].record.start_ns, spans[6].record.end_ns = -1, 2**63 - 1
    spans[7].record.kind, spans[7].record.status_code = 255, 0
    spans[8].usage = Usage(output=2**62, response_cached=True, source="")
    spans[9].cost = Cost("priced", input=-(2**63), output=2**63 - 1, reason="r" * 300)
    spans[10].cost = Cost("reported_only", reported=42)  # `total` is a property
    spans[11].cost = Cost(None)
    assert written_in_one_pass(spans)
    check(spans)
    assert check(spans[:1]).num_rows == 1
    assert written_in_one_pass([]) and check([]).num_rows == 0


class Text(str):
    """A str subclass: pyarrow converts it; the one-pass writer leaves it to pyarrow."""


@pytest.mark.parametrize(
    "change",
    [
        lambda s: setattr(s.record, "name", Text("subclassed")),
        lambda s: setattr(s.record, "name", "\udc80"),  # a lone surrogate: pyarrow refuses
        lambda s: setattr(s.record, "kind", 256),  # beyond uint8
        lambda s: setattr(s.record, "status_code", True),  # a bool where an int goes
        lambda s: setattr(s.record, "start_ns", 2**63),  # beyond int64
        lambda s: setattr(s.record, "attributes", types.MappingProxyType({"a": 1})),
        lambda s: setattr(s, "cost", Cost("priced", input=2**64)),  # beyond int64 words
        lambda s: setattr(s, "usage", Usage(output=1.0)),  # type: ignore[arg-type]
    ],
)
def test_values_the_one_pass_does_not_take_go_the_python_way(change: Any) -> None:
    spans = [span(n) for n in range(3)]
    change(spans[1])
    assert not written_in_one_pass(spans)
    try:
        expected = reference(spans)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as refused:
        with pytest.raises(type(refused)):
            DuckDBStore.encode(None, spans)  # type: ignore[arg-type]
        return
    check(spans)
    assert expected.num_rows == 3


def test_the_encoded_batch_is_stored_as_encoded(tmp_path: Any) -> None:
    store = DuckDBStore(tmp_path / "ledger.duckdb")
    try:
        spans = [span(n) for n in range(5)]
        spans[1].attribution = {"user": "u1"}
        assert store.write([store.encode(spans[:2]), store.encode(spans[2:])]) == 5
        stored = store._db.execute(
            "SELECT th, tk, sk, cost_input, user_id, rollup, attributes FROM spans ORDER BY sk"
        ).fetchall()
    finally:
        store.close()
    assert stored[0][:3] == (int(TRACE[:16], 16), int(TRACE[16:], 16), 0xA0B0C0D000000000)
    assert [row[3] for row in stored] == [n * 10**12 for n in range(5)]
    assert [row[4] for row in stored] == [None, "u1", None, None, None]
    assert [row[5] for row in stored] == [0] * 5
    assert stored[2][6] == '{"gen_ai.operation.name":"chat","n":2}'
