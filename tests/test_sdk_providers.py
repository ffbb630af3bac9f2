"""SpanLedger in-process with the real SDKs and their real instrumentations.

The real `openai` SDK instrumented by the official `opentelemetry-instrumentation-openai-v2`
and the real `anthropic` SDK instrumented by OpenLLMetry's
`opentelemetry-instrumentation-anthropic` call the local fake provider; `spanledger.instrument`
prices the spans with the pinned sheet `tests/data/sdk-rates.yaml` (no default prices).
Every cost below is derived by hand from that sheet (arithmetic in the comments) and is
cross-checked against what the fake provider says it billed, priced by the same PriceBook.

Token counts come from the fake provider's rules (`spanledger.demo.provider`): text is
len // 4 tokens (at least 1), each message adds 4, each request adds 3.

Where an instrumentation does not put on the span what the provider billed, the tests
state what the span carries and what it costs, and name the gap; where SpanLedger itself
gets a span wrong, the test asserts the right behaviour and is a strict xfail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
from opentelemetry.trace import SpanKind, StatusCode, Tracer

import sdkkit
from sdkkit import Traced, make_traced, record_of
from spanledger import conventions as c
from spanledger.demo.provider import FakeProvider, ServedRequest
from spanledger.pricing import PriceBook
from spanledger.pricing.money import FEMTO_PER_USD
from spanledger.traces import TraceAssembler
from spanledger.usage import Usage

RATES = Path(__file__).parent / "data" / "sdk-rates.yaml"
SHEET_VERSION = "sdk-pinned-1"

LONG_SYSTEM = "You are a careful assistant. " * 200  # 5800 chars -> 1450 tokens
# system 1450 + 4, user "q1" 1 + 4, request 3 -> 1462 prompt tokens
LONG_PROMPT_TOKENS = 1462
REPLY_TOKENS = 12  # DEFAULT_REPLY is 50 chars -> 12 tokens
CLAUDE = "claude-haiku-4-5"
CLAUDE_SNAPSHOT = "claude-haiku-4-5-20251001"
GPT = "gpt-4o-mini"
GPT_SNAPSHOT = "gpt-4o-mini-2024-07-18"
SHORT = [{"role": "user", "content": "hi there"}]  # 2 + 4 + 3 = 9 prompt tokens
LONG = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "q1"}]

COST_KEYS = {
    "total": c.COST_USD,
    "input": c.COST_INPUT_USD,
    "cache_read": c.COST_CACHE_READ_USD,
    "cache_write": c.COST_CACHE_WRITE_USD,
    "output": c.COST_OUTPUT_USD,
    "saved_by_cache": c.COST_SAVED_BY_CACHE_USD,
}


def usd(amount: str) -> float:
    """A hand-derived amount as the exporter writes it: femto-dollars / 10**15 as a float.
    Both are the correctly rounded double of the same exact number, so `==` is exact."""
    return float(Decimal(amount))


def costs(attrs: dict[str, Any]) -> dict[str, float]:
    return {name: attrs[key] for name, key in COST_KEYS.items() if key in attrs}


def expected(
    total: str,
    *,
    input: str = "0",
    cache_read: str = "0",
    cache_write: str = "0",
    output: str = "0",
    saved_by_cache: str = "0",
) -> dict[str, float]:
    amounts = {
        "total": total,
        "input": input,
        "cache_read": cache_read,
        "cache_write": cache_write,
        "output": output,
        "saved_by_cache": saved_by_cache,
    }
    return {name: usd(amount) for name, amount in amounts.items()}


def bill_usd(book: PriceBook, served: ServedRequest, provider: str, start_ns: int) -> float:
    """What the fake provider billed for one attempt, priced by the same book."""
    assert served.billed is not None and served.response_model is not None
    usage = Usage(**served.billed, source="provider-bill")
    cost = book.price(usage, provider=provider, model=served.response_model, start_ns=start_ns)
    assert cost.status == "priced", cost
    return cost.total / FEMTO_PER_USD


def usage_keys(attrs: dict[str, Any]) -> set[str]:
    return {key for key in attrs if key.startswith("gen_ai.usage.")}


# -- fixtures ----------------------------------------------------------------------------


# The shared fixtures of tests/sdkkit.py, used here by name.
fake = sdkkit.fake
_fresh = sdkkit._fresh
openai_traced = sdkkit.openai_traced
anthropic_traced = sdkkit.anthropic_traced


@pytest.fixture
def traced() -> Iterator[Traced]:
    setup = make_traced(RATES)
    assert [sheet.version for sheet in setup.book.sheets] == [SHEET_VERSION]
    yield setup
    setup.ledger.shutdown()


@pytest.fixture
def oai(fake: FakeProvider) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(fake: FakeProvider) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.url, api_key="test", max_retries=0) as client:
        yield client


# -- 1. OpenAI chat ----------------------------------------------------------------------


def test_openai_chat_is_priced_from_the_pinned_sheet(
    fake: FakeProvider, openai_traced: Traced, oai: openai.OpenAI
) -> None:
    oai.chat.completions.create(model=GPT, messages=LONG)

    [span] = openai_traced.spans()
    attrs = dict(span.attributes or {})
    assert attrs[c.GEN_AI_REQUEST_MODEL] == GPT
    assert attrs[c.GEN_AI_RESPONSE_MODEL] == GPT_SNAPSHOT
    assert attrs[c.GEN_AI_USAGE_INPUT_TOKENS] == LONG_PROMPT_TOKENS
    assert attrs[c.GEN_AI_USAGE_OUTPUT_TOKENS] == REPLY_TOKENS
    assert attrs[c.PRICE_STATUS] == "priced"
    assert attrs[c.PRICE_MODEL] == GPT_SNAPSHOT
    assert attrs[c.PRICE_SOURCE] == SHEET_VERSION
    assert attrs[c.USAGE_SOURCE] == "otel_genai"
    assert attrs[c.CACHE_STATUS] == "miss"
    # input  1462 x $0.15/M = $0.0002193
    # output   12 x $0.60/M = $0.0000072
    # total                   $0.0002265
    assert costs(attrs) == expected("0.0002265", input="0.0002193", output="0.0000072")

    [served] = fake.requests
    assert served.billed == {
        "input_uncached": LONG_PROMPT_TOKENS,
        "cache_read": 0,
        "cache_write": 0,
        "cache_write_1h": 0,
        "output": REPLY_TOKENS,
        "reasoning": 0,
    }
    assert attrs[c.COST_USD] == bill_usd(openai_traced.book, served, "openai", span.start_time)


def test_openai_v2_chat_spans_omit_cached_tokens_so_a_cached_call_is_priced_uncached(
    fake: FakeProvider, openai_traced: Traced, oai: openai.OpenAI
) -> None:
    """The provider serves 1408 of the second call's 1462 prompt tokens from its cache and
    bills them at the cache-read rate, but openai-v2 2.4b0 writes only
    gen_ai.usage.input_tokens (cached included) on chat spans: no
    gen_ai.usage.cache_read.input_tokens (prompt_tokens_details.cached_tokens is dropped).
    SpanLedger can only price what the span says. This pins the gap down to the token."""
    oai.chat.completions.create(model=GPT, messages=LONG)
    oai.chat.completions.create(model=GPT, messages=LONG)

    first, second = openai_traced.spans()
    served = fake.requests
    # The provider: the second call read 1462 -> 1408 (a multiple of 128) from its cache.
    assert served[1].usage and served[1].usage["prompt_tokens_details"]["cached_tokens"] == 1408
    assert served[1].billed and served[1].billed["cache_read"] == 1408
    # The span: the same counts as the first call, and no cache key at all.
    for span in (first, second):
        attrs = dict(span.attributes or {})
        assert usage_keys(attrs) == {c.GEN_AI_USAGE_INPUT_TOKENS, c.GEN_AI_USAGE_OUTPUT_TOKENS}
        assert attrs[c.GEN_AI_USAGE_INPUT_TOKENS] == LONG_PROMPT_TOKENS
        assert attrs[c.CACHE_STATUS] == "miss"
        assert attrs[c.COST_SAVED_BY_CACHE_USD] == 0
        assert attrs[c.COST_USD] == usd("0.0002265")  # as in the test above

    book = openai_traced.book
    assert first.attributes and second.attributes
    assert first.attributes[c.COST_USD] == bill_usd(book, served[0], "openai", first.start_time)
    # Billed for the second call:
    #   input        54 x $0.15/M  = $0.0000081
    #   cache read 1408 x $0.075/M = $0.0001056
    #   output       12 x $0.60/M  = $0.0000072
    #   total                        $0.0001209
    assert bill_usd(book, served[1], "openai", second.start_time) == usd("0.0001209")
    # So the span overstates it by 1408 x ($0.15 - $0.075)/M = $0.0001056, exactly what the
    # saved_by_cache attribute would have said.
    overstated = Decimal("0.0002265") - Decimal("0.0001209")
    assert overstated == Decimal(1408) * (Decimal("0.15") - Decimal("0.075")) / 10**6


# -- 2. OpenAI streaming ---------------------------------------------------------------


def test_openai_stream_with_include_usage_is_priced(
    fake: FakeProvider, openai_traced: Traced, oai: openai.OpenAI
) -> None:
    stream = oai.chat.completions.create(
        model=GPT, messages=SHORT, stream=True, stream_options={"include_usage": True}
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text

    [span] = openai_traced.spans()
    attrs = dict(span.attributes or {})
    assert (attrs[c.GEN_AI_USAGE_INPUT_TOKENS], attrs[c.GEN_AI_USAGE_OUTPUT_TOKENS]) == (9, 12)
    assert attrs[c.PRICE_STATUS] == "priced"
    assert attrs[c.CACHE_STATUS] == "miss"
    # input   9 x $0.15/M = $0.00000135
    # output 12 x $0.60/M = $0.0000072
    # total                 $0.00000855
    assert costs(attrs) == expected("0.00000855", input="0.00000135", output="0.0000072")
    [served] = fake.requests
    assert served.stream
    assert attrs[c.COST_USD] == bill_usd(openai_traced.book, served, "openai", span.start_time)


def test_openai_stream_without_include_usage_carries_no_usage(
    fake: FakeProvider, openai_traced: Traced, oai: openai.OpenAI
) -> None:
    """Without stream_options.include_usage the API sends no usage, so the span has none;
    the provider bills the call all the same (9 in, 12 out: $0.00000855)."""
    for _ in oai.chat.completions.create(model=GPT, messages=SHORT, stream=True):
        pass

    [span] = openai_traced.spans()
    attrs = dict(span.attributes or {})
    assert usage_keys(attrs) == set()
    assert attrs[c.GEN_AI_RESPONSE_MODEL] == GPT_SNAPSHOT
    assert attrs[c.USAGE_SOURCE] == "none"
    [served] = fake.requests
    assert served.status == 200 and served.billed
    assert (served.billed["input_uncached"], served.billed["output"]) == (9, 12)
    assert bill_usd(openai_traced.book, served, "openai", span.start_time) == usd("0.00000855")


def test_openai_stream_without_usage_is_not_a_silent_zero(
    fake: FakeProvider, openai_traced: Traced, oai: openai.OpenAI
) -> None:
    for _ in oai.chat.completions.create(model=GPT, messages=SHORT, stream=True):
        pass

    [span] = openai_traced.spans()
    attrs = dict(span.attributes or {})
    assert fake.requests[0].billed  # the provider billed this call
    # DESIGN.md: "A model with no price is price.status = unpriced ... never a silent $0".
    # A billed call with no usage must not read as a priced $0 either; it must say why.
    assert not (attrs[c.PRICE_STATUS] == "priced" and attrs.get(c.COST_USD) == 0.0), attrs
    assert c.PRICE_REASON in attrs


# -- 3. reasoning -------------------------------------------------------------------------


def test_o3_mini_reasoning_is_inside_output_and_billed_once(
    fake: FakeProvider, openai_traced: Traced, oai: openai.OpenAI
) -> None:
    oai.chat.completions.create(model="o3-mini", messages=SHORT)

    [span] = openai_traced.spans()
    attrs = dict(span.attributes or {})
    [served] = fake.requests
    # The provider: 12 visible + 64 + 2 x 12 = 88 reasoning -> 100 completion tokens.
    assert served.billed and (served.billed["output"], served.billed["reasoning"]) == (100, 88)
    assert attrs[c.GEN_AI_RESPONSE_MODEL] == "o3-mini-2025-01-31"
    assert attrs[c.GEN_AI_USAGE_OUTPUT_TOKENS] == 100  # reasoning included, as OpenAI counts
    assert attrs[c.PRICE_STATUS] == "priced"
    # input    9 x $1.10/M = $0.0000099
    # output 100 x $4.40/M = $0.00044     (88 of them reasoning, billed once: not 188)
    # total                  $0.0004499
    assert costs(attrs) == expected("0.0004499", input="0.0000099", output="0.00044")
    assert attrs[c.COST_USD] == bill_usd(openai_traced.book, served, "openai", span.start_time)

    # openai-v2 2.4b0 drops completion_tokens_details.reasoning_tokens: the span has no
    # reasoning key, so SpanLedger cannot report the reasoning part (it reads 0).
    assert usage_keys(attrs) == {c.GEN_AI_USAGE_INPUT_TOKENS, c.GEN_AI_USAGE_OUTPUT_TOKENS}
    usage = openai_traced.book.price_attributes(attrs, span.start_time or 0).usage
    assert (usage.output, usage.reasoning) == (100, 0)


# -- 4. Anthropic prompt caching (OpenLLMetry) ---------------------------------------------


def _ask_claude_cached(claude: anthropic.Anthropic, *, ttl: str | None = None) -> None:
    control = {"type": "ephemeral"} | ({"ttl": ttl} if ttl else {})
    claude.messages.create(
        model=CLAUDE,
        max_tokens=100,
        system=[{"type": "text", "text": LONG_SYSTEM, "cache_control": control}],
        messages=[{"role": "user", "content": "q1"}],
    )


def test_anthropic_cache_write_then_read_is_priced_from_the_pinned_sheet(
    fake: FakeProvider, anthropic_traced: Traced, claude: anthropic.Anthropic
) -> None:
    _ask_claude_cached(claude)
    _ask_claude_cached(claude)

    write, read = anthropic_traced.spans()
    served = fake.requests
    # The provider (Anthropic's native usage: input_tokens EXCLUDES cache):
    assert served[0].usage and served[1].usage
    assert served[0].usage["input_tokens"] == served[1].usage["input_tokens"] == 8
    assert served[0].usage["cache_creation_input_tokens"] == 1454
    assert served[1].usage["cache_read_input_tokens"] == 1454

    # OpenLLMetry 0.62.4 writes the OTel GenAI names, and its input_tokens INCLUDES cache
    # reads and writes (8 + 1454 = 1462); it adds gen_ai.usage.total_tokens.
    for span, (cache_read, cache_write) in ((write, (0, 1454)), (read, (1454, 0))):
        attrs = dict(span.attributes or {})
        assert attrs[c.GEN_AI_PROVIDER_NAME] == "anthropic"
        assert attrs[c.GEN_AI_RESPONSE_MODEL] == CLAUDE_SNAPSHOT
        assert usage_keys(attrs) == {
            c.GEN_AI_USAGE_INPUT_TOKENS,
            c.GEN_AI_USAGE_OUTPUT_TOKENS,
            c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
            c.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
            c.OPENLIT_TOTAL_TOKENS,
        }
        assert attrs[c.GEN_AI_USAGE_INPUT_TOKENS] == 1462
        assert attrs[c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == cache_read
        assert attrs[c.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == cache_write
        assert attrs[c.USAGE_SOURCE] == "otel_genai"  # input includes cache: subtracted once
        assert attrs[c.PRICE_STATUS] == "priced"
        assert attrs[c.PRICE_SOURCE] == SHEET_VERSION

    write_attrs, read_attrs = dict(write.attributes or {}), dict(read.attributes or {})
    assert write_attrs[c.CACHE_STATUS] == "write"
    # input          8 x $1/M    = $0.000008
    # cache write 1454 x $1.25/M = $0.0018175
    # output        12 x $5/M    = $0.00006
    # total                        $0.0018855
    assert costs(write_attrs) == expected(
        "0.0018855", input="0.000008", cache_write="0.0018175", output="0.00006"
    )
    assert read_attrs[c.CACHE_STATUS] == "partial"  # 8 prompt tokens were not cached
    # input         8 x $1/M    = $0.000008
    # cache read 1454 x $0.10/M = $0.0001454
    # output       12 x $5/M    = $0.00006
    # total                       $0.0002134
    # saved by cache: 1454 x ($1 - $0.10)/M = $0.0013086
    assert costs(read_attrs) == expected(
        "0.0002134",
        input="0.000008",
        cache_read="0.0001454",
        output="0.00006",
        saved_by_cache="0.0013086",
    )
    book = anthropic_traced.book
    for span, bill in zip((write, read), served, strict=True):
        assert span.attributes and span.attributes[c.COST_USD] == bill_usd(
            book, bill, "anthropic", span.start_time
        )


def test_anthropic_streams_are_priced_but_openllmetry_counts_one_output_token_too_many(
    fake: FakeProvider, anthropic_traced: Traced, claude: anthropic.Anthropic
) -> None:
    """The stream's message_start says output_tokens=1 and message_delta the cumulative
    12 (as the real API does). OpenLLMetry 0.62.4 (streaming.py, message_delta handling)
    adds the two, so a streamed span says 13 output tokens where the provider billed 12.
    Cache reads and writes are read correctly from streams."""
    kwargs: dict[str, Any] = {
        "model": CLAUDE,
        "max_tokens": 100,
        "system": [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "q1"}],
    }
    with claude.messages.stream(**kwargs) as stream:  # the SDK's stream helper: a write
        assert "".join(stream.text_stream)
    for _ in claude.messages.create(**kwargs, stream=True):  # raw events: a read
        pass

    write, read = anthropic_traced.spans()
    served = fake.requests
    assert [s.stream for s in served] == [True, True]
    assert served[0].billed and served[0].billed["output"] == REPLY_TOKENS
    for span in (write, read):
        attrs = dict(span.attributes or {})
        assert attrs[c.GEN_AI_USAGE_INPUT_TOKENS] == 1462
        assert attrs[c.GEN_AI_USAGE_OUTPUT_TOKENS] == REPLY_TOKENS + 1
    write_attrs, read_attrs = dict(write.attributes or {}), dict(read.attributes or {})
    assert (write_attrs[c.CACHE_STATUS], read_attrs[c.CACHE_STATUS]) == ("write", "partial")
    # As in the non-streaming test, with 13 output tokens (13 x $5/M = $0.000065):
    # write: 0.000008 + 0.0018175 + 0.000065 = $0.0018905 (billed $0.0018855)
    # read:  0.000008 + 0.0001454 + 0.000065 = $0.0002184 (billed $0.0002134)
    assert costs(write_attrs) == expected(
        "0.0018905", input="0.000008", cache_write="0.0018175", output="0.000065"
    )
    assert costs(read_attrs) == expected(
        "0.0002184",
        input="0.000008",
        cache_read="0.0001454",
        output="0.000065",
        saved_by_cache="0.0013086",
    )
    book = anthropic_traced.book
    assert bill_usd(book, served[0], "anthropic", write.start_time) == usd("0.0018855")
    assert bill_usd(book, served[1], "anthropic", read.start_time) == usd("0.0002134")


def test_anthropic_1h_cache_write_has_no_ttl_on_the_span_so_it_is_priced_as_5m(
    fake: FakeProvider, anthropic_traced: Traced, claude: anthropic.Anthropic
) -> None:
    """Anthropic reports usage.cache_creation.ephemeral_1h_input_tokens; OpenLLMetry writes
    only the total cache_creation count, so SpanLedger prices a 1-hour write at the
    5-minute rate (the only one it can know)."""
    _ask_claude_cached(claude, ttl="1h")

    [span] = anthropic_traced.spans()
    attrs = dict(span.attributes or {})
    [served] = fake.requests
    assert served.billed and served.billed["cache_write_1h"] == 1454
    assert attrs[c.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 1454
    assert not any("1h" in key for key in attrs)
    # Span: 0.000008 + 1454 x $1.25/M (0.0018175) + 0.00006 = $0.0018855
    assert attrs[c.COST_USD] == usd("0.0018855")
    # Bill: 0.000008 + 1454 x $2/M    (0.002908)  + 0.00006 = $0.002976
    assert bill_usd(anthropic_traced.book, served, "anthropic", span.start_time) == usd("0.002976")


# -- 5. retries ----------------------------------------------------------------------------


def test_sdk_internal_retries_leave_one_span_priced_at_the_successful_attempt(
    fake: FakeProvider, openai_traced: Traced
) -> None:
    """openai's client retries inside `create` (on httpx2, which no OTel HTTP
    instrumentation patches): the instrumentation's one span covers all attempts, and no
    span shows the 429 and 500 that were retried."""
    fake.script(fail=[429, 500])
    with openai.OpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=2) as client:
        client.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "hi"}])

    assert [r.status for r in fake.requests] == [429, 500, 200]
    [span] = openai_traced.spans()  # nothing else was exported: no attempt spans
    attrs = dict(span.attributes or {})
    assert span.status.status_code != StatusCode.ERROR
    assert c.ERROR_TYPE not in attrs
    # "hi" 1 + 4 + 3 = 8 in, 12 out: 8 x $0.15/M + 12 x $0.60/M = $0.0000012 + $0.0000072
    assert attrs[c.COST_USD] == usd("0.0000084")
    assert attrs[c.COST_USD] == bill_usd(openai_traced.book, fake.requests[2], "openai", 0)


class AttemptSpans(httpx2.BaseTransport):
    """What the SDK retries would need (a sketch, not product code): a transport passed as
    `http_client=openai.DefaultHttpxClient(transport=...)` that makes one child span per
    HTTP attempt under the instrumentation's span."""

    def __init__(self, tracer: Tracer, inner: httpx2.BaseTransport) -> None:
        self.tracer = tracer
        self.inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        with self.tracer.start_as_current_span(
            f"{request.method} attempt", kind=SpanKind.CLIENT
        ) as span:
            resends = int(request.headers.get("x-stainless-retry-count", "0"))
            span.set_attribute("http.request.resend_count", resends)
            response = self.inner.handle_request(request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_attribute(c.ERROR_TYPE, str(response.status_code))
            return response

    def close(self) -> None:
        self.inner.close()


def test_a_transport_wrapper_would_show_each_sdk_attempt_as_a_child_span(
    fake: FakeProvider, openai_traced: Traced
) -> None:
    fake.script(fail=[429, 500])
    transport = AttemptSpans(openai_traced.tracer, httpx2.HTTPTransport())
    http_client = openai.DefaultHttpxClient(transport=transport)
    with openai.OpenAI(
        base_url=f"{fake.url}/v1", api_key="test", max_retries=2, http_client=http_client
    ) as client:
        client.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "hi"}])

    spans = openai_traced.spans()
    [chat] = [s for s in spans if s.attributes and c.PRICE_STATUS in s.attributes]
    attempts = [s for s in spans if s.name == "POST attempt"]
    assert chat.context is not None
    assert [a.parent.span_id for a in attempts if a.parent] == [chat.context.span_id] * 3
    assert [(a.attributes or {}).get("http.request.resend_count") for a in attempts] == [0, 1, 2]
    assert [(a.attributes or {}).get("http.response.status_code") for a in attempts] == [
        429,
        500,
        200,
    ]
    # The attempts are not LLM spans, so TraceAssembler (retries are failed *LLM* calls
    # followed by a similar one) does not count them: overhead $0, no span flagged.
    assembler = TraceAssembler(openai_traced.book)
    [trace_id] = assembler.add(record_of(s) for s in spans)
    trace = assembler.trace(trace_id)
    assert trace.retry_overhead == 0
    assert not any(span.retry for span in trace.spans.values())
    assert trace.cost == 8_400_000_000  # femto-$: $0.0000084, the successful attempt


def test_application_retry_under_one_parent_is_flagged_with_its_overhead(
    fake: FakeProvider, openai_traced: Traced, oai: openai.OpenAI
) -> None:
    fake.script(fail=[429])
    messages = [{"role": "user", "content": "hi"}]
    with openai_traced.tracer.start_as_current_span("agent.step"):
        try:
            oai.chat.completions.create(model=GPT, messages=messages)
        except openai.RateLimitError:
            oai.chat.completions.create(model=GPT, messages=messages)

    assert [r.status for r in fake.requests] == [429, 200]
    assert fake.requests[0].billed is None  # a 429 is not billed
    spans = openai_traced.spans()
    assert [s.name for s in spans] == ["chat gpt-4o-mini", "chat gpt-4o-mini", "agent.step"]
    failed_attrs = dict(spans[0].attributes or {})
    assert spans[0].status.status_code == StatusCode.ERROR
    assert c.ERROR_TYPE in failed_attrs
    assert usage_keys(failed_attrs) == set()

    assembler = TraceAssembler(openai_traced.book)
    [trace_id] = assembler.add(record_of(s) for s in spans)
    trace = assembler.trace(trace_id)
    root = trace.root
    assert root is not None and root.record.name == "agent.step"
    failed, retried = (trace.spans[child] for child in root.children)
    assert failed.record.failed and not retried.record.failed
    assert (failed.retry, retried.retry) == (True, False)
    # The failed attempt had no usage: it cost $0, and so does the retry overhead.
    assert trace.retry_overhead == failed.cost.total == 0
    # The action cost the successful attempt: "hi" 8 in, 12 out = $0.0000084.
    bill = bill_usd(openai_traced.book, fake.requests[1], "openai", retried.record.start_ns)
    assert bill == usd("0.0000084")
    assert trace.cost == root.rollup == retried.cost.total == 8_400_000_000
    # In-process (CostExporter) and assembler pricing agree to the last digit.
    assert retried.cost.reported_difference == 0


# -- 6. async ------------------------------------------------------------------------------


def test_async_openai_client_is_priced(fake: FakeProvider, openai_traced: Traced) -> None:
    async def run() -> None:
        async with openai.AsyncOpenAI(
            base_url=f"{fake.url}/v1", api_key="test", max_retries=0
        ) as client:
            await client.chat.completions.create(model=GPT, messages=SHORT)
            stream = await client.chat.completions.create(
                model=GPT, messages=SHORT, stream=True, stream_options={"include_usage": True}
            )
            async for _ in stream:
                pass

    asyncio.run(run())

    spans = openai_traced.spans()
    assert len(spans) == 2 == len(fake.requests)
    for span, served in zip(spans, fake.requests, strict=True):
        attrs = dict(span.attributes or {})
        assert attrs[c.PRICE_STATUS] == "priced"
        # 9 x $0.15/M + 12 x $0.60/M = $0.00000135 + $0.0000072 = $0.00000855
        assert costs(attrs) == expected("0.00000855", input="0.00000135", output="0.0000072")
        assert attrs[c.COST_USD] == bill_usd(openai_traced.book, served, "openai", 0)
    assert [s.stream for s in fake.requests] == [False, True]


# -- rate sheets and snapshot names ----------------------------------------------------------


def test_a_sheet_entry_for_the_alias_prices_real_spans_that_name_the_snapshot(
    fake: FakeProvider, tmp_path: Path, claude: anthropic.Anthropic
) -> None:
    sheet = tmp_path / "negotiated.yaml"
    # As sheets.py documents it: `match:` the model name the application asks for.
    sheet.write_text(
        "version: negotiated\n"
        "models:\n"
        "  - match: claude-haiku-4-5\n"
        "    provider: anthropic\n"
        "    per_million: {input: 1, output: 1}\n"
    )
    setup = make_traced(sheet, use_default_prices=True)
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(tracer_provider=setup.tracer_provider)
    try:
        claude.messages.create(
            model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "hello"}]
        )
        [span] = setup.spans()
    finally:
        instrumentor.uninstrument()
        setup.ledger.shutdown()
    attrs = dict(span.attributes or {})
    assert attrs[c.GEN_AI_REQUEST_MODEL] == CLAUDE
    assert attrs[c.GEN_AI_RESPONSE_MODEL] == CLAUDE_SNAPSHOT
    assert attrs[c.PRICE_SOURCE] == "negotiated", attrs.get(c.PRICE_SOURCE)
    # "hello" 1 + 4 + 3 = 8 in, 12 out, at $1/M each: $0.00002
    assert attrs[c.COST_USD] == usd("0.00002")
