"""The bundled sample (examples/): it decodes, both formats agree, and it holds every
feature the demo and the trace tests rely on."""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from spanledger.pricing import PriceBook, RateSheet
from spanledger.server.otlp import decode_json, decode_protobuf, read_file
from spanledger.spans import STATUS_ERROR, SpanRecord
from spanledger.usage import model_of, normalize

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
JSONL = EXAMPLES / "agent-traces.jsonl"
BINPB = EXAMPLES / "agent-traces.binpb"
RATES = EXAMPLES / "rates.yaml"


def typed(value: Any) -> Any:
    """Equality that also compares types: True != 1, 1.0 != 1."""
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    if isinstance(value, tuple | list):
        return (type(value).__name__, tuple(typed(item) for item in value))
    if isinstance(value, Mapping):
        return ("dict", tuple(sorted((key, typed(item)) for key, item in value.items())))
    return (type(value).__name__, value)


def row(record: SpanRecord) -> tuple[Any, ...]:
    return (
        record.trace_id,
        record.span_id,
        record.parent_span_id,
        record.name,
        record.start_ns,
        record.end_ns,
        record.status_code,
        record.status_message,
        record.kind,
        typed(record.attributes),
        typed(record.resource),
        record.scope,
    )


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample", EXAMPLES / "make_sample.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def records() -> list[SpanRecord]:
    return read_file(JSONL)


@pytest.fixture(scope="module")
def batches() -> list[list[SpanRecord]]:
    """One list per request (line) of the JSON file."""
    lines = [line for line in JSONL.read_bytes().split(b"\n") if line.strip()]
    return [decode_json(line) for line in lines]


@pytest.fixture(scope="module")
def traces(records: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for record in records:
        by_trace[record.trace_id].append(record)
    return dict(by_trace)


def children(records: list[SpanRecord], parent: SpanRecord) -> list[SpanRecord]:
    found = [r for r in records if r.parent_span_id == parent.span_id]
    return sorted(found, key=lambda r: r.start_ns)


def agents(records: list[SpanRecord], name: str) -> list[SpanRecord]:
    return [
        r
        for r in records
        if r.attributes.get("gen_ai.operation.name") == "invoke_agent"
        and r.attributes.get("gen_ai.agent.name") == name
    ]


# --- decoding ------------------------------------------------------------------------


def test_both_formats_give_identical_records(records: list[SpanRecord]) -> None:
    from_binpb = read_file(BINPB)
    assert len(records) == len(from_binpb) == 78
    assert [row(r) for r in from_binpb] == [row(r) for r in records]


def test_both_formats_hold_the_same_requests(batches: list[list[SpanRecord]]) -> None:
    content = BINPB.read_bytes()
    stream = []
    position = 0
    while position < len(content):
        length = int.from_bytes(content[position : position + 4], "big")
        stream.append(decode_protobuf(content[position + 4 : position + 4 + length]))
        position += 4 + length
    assert position == len(content)
    assert len(stream) == len(batches) == 8
    assert [[row(r) for r in batch] for batch in stream] == [
        [row(r) for r in batch] for batch in batches
    ]


def test_sample_is_what_make_sample_writes(tmp_path: Path) -> None:
    """The committed files are current and the generator is deterministic."""
    generator = load_generator()
    generator.main(tmp_path)
    assert (tmp_path / "agent-traces.jsonl").read_bytes() == JSONL.read_bytes()
    assert (tmp_path / "agent-traces.binpb").read_bytes() == BINPB.read_bytes()


def test_every_tree_is_whole(traces: dict[str, list[SpanRecord]]) -> None:
    for spans in traces.values():
        ids = {r.span_id for r in spans}
        roots = [r for r in spans if r.is_root]
        assert len(roots) == 1
        assert all(r.parent_span_id in ids for r in spans if not r.is_root)
        assert len(ids) == len(spans)
        for r in spans:  # children run inside their parents
            parent = next((p for p in spans if p.span_id == r.parent_span_id), None)
            if parent is not None:
                assert parent.start_ns <= r.start_ns <= r.end_ns <= parent.end_ns


# --- content -------------------------------------------------------------------------


def test_users_departments_services_and_dates(
    records: list[SpanRecord], traces: dict[str, list[SpanRecord]]
) -> None:
    assert len(traces) == 7
    roots = [r for r in records if r.is_root]
    assert Counter(r.attributes.get("user.id") for r in roots) == {
        "alice": 1,
        "bob": 2,
        "carol": 1,
        "dave": 1,
        "erin": 1,
        None: 1,  # the scheduled job
    }
    assert {r.attributes["department"] for r in roots} == {
        "research",
        "sales",
        "engineering",
        "finance",
        "marketing",
        "operations",
    }
    assert {r.resource["service.name"] for r in records} == {"support-assistant", "ops-executor"}
    first = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC).timestamp() * 10**9
    last = dt.datetime(2026, 11, 5, tzinfo=dt.UTC).timestamp() * 10**9
    assert min(r.start_ns for r in records) >= first
    assert max(r.end_ns for r in records) < last


def test_supervisor_delegates_to_sub_agents(records: list[SpanRecord]) -> None:
    supervisors = {r.span_id for r in agents(records, "supervisor")}
    assert len(supervisors) == 6
    delegated = agents(records, "research") + agents(records, "execution")
    assert {r.attributes["gen_ai.agent.name"] for r in delegated} == {"research", "execution"}
    under_supervisor = [r for r in delegated if r.parent_span_id in supervisors]
    assert len(under_supervisor) == len(delegated) - 1  # the nightly job has no supervisor
    assert any(r.resource["service.name"] == "ops-executor" for r in under_supervisor)


def test_a_failed_call_and_its_retry(records: list[SpanRecord]) -> None:
    (failed,) = [r for r in records if r.failed]
    assert failed.status_code == STATUS_ERROR
    assert failed.attributes["error.type"] == "RateLimitError"
    assert failed.attributes["http.response.status_code"] == 429
    assert "429" in failed.status_message
    assert normalize(failed.attributes).is_empty  # a refused call reports no usage
    retries = [
        r
        for r in records
        if r.parent_span_id == failed.parent_span_id
        and r.start_ns > failed.end_ns
        and model_of(r.attributes) is not None
        and r.attributes["gen_ai.request.model"] == failed.attributes["gen_ai.request.model"]
    ]
    assert len(retries) == 1
    assert not retries[0].failed and normalize(retries[0].attributes).output > 0


def test_a_runaway_loop_of_15_identical_tool_calls(records: list[SpanRecord]) -> None:
    tool_calls = Counter(
        (r.trace_id, r.parent_span_id, r.attributes["gen_ai.tool.name"])
        for r in records
        if r.attributes.get("gen_ai.operation.name") == "execute_tool"
    )
    ((_, parent_id, tool), count), *rest = tool_calls.most_common()
    assert (tool, count) == ("fetch_page", 15)
    assert all(n <= 2 for _, n in rest)
    (research,) = [r for r in agents(records, "research") if r.span_id == parent_id]
    steps = children(records, research)
    assert len(steps) == 30
    for tool_call, llm_call in zip(steps[0::2], steps[1::2], strict=True):
        assert tool_call.attributes["gen_ai.tool.name"] == "fetch_page"
        assert llm_call.attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert tool_call.end_ns <= llm_call.start_ns
    assert len({s.attributes["url.full"] for s in steps[0::2]}) == 1


def test_every_usage_dialect(records: list[SpanRecord]) -> None:
    usages = [normalize(r.attributes, r.resource) for r in records]
    sources = Counter(u.source for u in usages if not u.is_empty)
    assert set(sources) == {"otel_genai", "openinference", "openllmetry", "vercel_ai"}
    assert sources["openinference"] == sources["openllmetry"] == sources["vercel_ai"] == 1
    assert all(u.invalid is None for u in usages)


def test_models_cache_and_reasoning(
    records: list[SpanRecord], traces: dict[str, list[SpanRecord]]
) -> None:
    models = {model_of(r.attributes) for r in records} - {None}
    assert {
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-2024-08-06",
        "o3-mini-2025-01-31",
        "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5-20251001",
        "acme-internal-llm-v2",
        "ft:gpt-4o-mini:acme:invoice-parser:B7x2k9Qa",
    } <= models
    o3 = [r for r in records if r.attributes.get("gen_ai.request.model") == "o3-mini"]
    assert o3 and all(normalize(r.attributes).reasoning > 0 for r in o3)
    # Anthropic prompt cache: written by one call, then read by a later one
    written_then_read = set()
    for spans in traces.values():
        for model in ("claude-sonnet-4-5", "claude-haiku-4-5"):
            calls = sorted(
                (r for r in spans if r.attributes.get("gen_ai.request.model") == model),
                key=lambda r: r.start_ns,
            )
            usages = [normalize(r.attributes, r.resource) for r in calls]
            writes = [i for i, u in enumerate(usages) if u.cache_write]
            if writes and any(u.cache_read for u in usages[writes[0] + 1 :]):
                written_then_read.add((spans[0].trace_id, model))
    assert {model for _, model in written_then_read} == {"claude-sonnet-4-5", "claude-haiku-4-5"}
    assert len(written_then_read) == 3
    assert sum(1 for r in records if normalize(r.attributes).cache_write) >= 3
    assert any(r.attributes.get("gen_ai.usage.cost") == 0.000405 for r in records)


def test_children_arrive_before_their_parents(batches: list[list[SpanRecord]]) -> None:
    """One trace is split over two requests: its children first, another trace between."""
    seen_before: set[str] = set()
    split = []
    for index, batch in enumerate(batches):
        ids = {r.span_id for r in batch}
        orphans = [r for r in batch if not r.is_root and r.parent_span_id not in ids | seen_before]
        if orphans:
            later = {r.span_id for b in batches[index + 1 :] for r in b}
            assert all(r.parent_span_id in later for r in orphans)
            split.append(index)
        seen_before |= ids
    (index,) = split
    trace_id = batches[index][0].trace_id
    assert {r.trace_id for r in batches[index]} == {trace_id}
    assert all(r.resource["service.name"] == "ops-executor" for r in batches[index])
    assert {r.trace_id for r in batches[index + 1]} != {trace_id}
    assert {r.trace_id for r in batches[index + 2]} == {trace_id}
    assert any(r.is_root for r in batches[index + 2])


# --- the company rate sheet ------------------------------------------------------------


def test_rate_sheet_prices_everything_but_the_in_house_model(records: list[SpanRecord]) -> None:
    sheet = RateSheet.load(RATES)
    assert sheet.version == "acme-2026-11"
    with_sheet = PriceBook([sheet])
    list_prices = PriceBook()
    statuses: Counter[str | None] = Counter()
    for r in records:
        call = with_sheet.price_attributes(r.attributes, r.start_ns, r.resource)
        statuses[call.cost.status] += 1
        if call.usage.is_empty:
            continue
        if call.model == "acme-internal-llm-v2":
            assert call.cost.status == "unpriced"
            continue
        assert call.cost.status == "priced", (r.name, call.cost.reason)
        if call.model and call.model.startswith("ft:"):
            assert call.cost.source and call.cost.source.startswith("acme-2026-11")
            assert list_prices.price_attributes(r.attributes, r.start_ns).cost.status == "unpriced"
        elif call.provider == "openai":
            listed = list_prices.price_attributes(r.attributes, r.start_ns, r.resource).cost
            assert call.cost.total == pytest.approx(listed.total * 0.88, rel=1e-6)
    assert statuses["unpriced"] == 1
    assert statuses["priced"] >= 35
