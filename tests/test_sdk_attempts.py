"""The SDK clients' own retries as attempt spans (`spanledger.sdk.attempts`).

Real components only: the real `openai` SDK instrumented by `opentelemetry-instrumentation-
openai-v2`, the real `anthropic` SDK (instrumented by OpenLLMetry's AnthropicInstrumentor, or
by its own tracing), the traced transport in their own `DefaultHttpxClient` /
`DefaultAsyncHttpxClient`, `spanledger.instrument` pricing from the pinned sheet
`tests/data/sdk-rates.yaml`, and the fake provider on loopback failing on request
(`fake.script(fail=[429, 500])`; its error responses make the SDKs retry at once).

Costs are derived by hand from the pinned sheet. The fake provider's token rules: "hi" is
1 token + 4 for the message + 3 reply priming = 8 prompt tokens; the default reply is 12
output tokens.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode, Tracer

import sdkkit
import spanledger
from sdkkit import Traced, make_traced, record_of
from spanledger import conventions as c
from spanledger.demo.provider import FakeProvider
from spanledger.pricing.money import FEMTO_PER_USD
from spanledger.sdk import (
    BudgetExceeded,
    traced_async_transport,
    traced_transport,
)
from spanledger.spans import SpanRecord
from spanledger.traces import Trace, TraceAssembler
from spanledger.usage import Usage

RATES = Path(__file__).parent / "data" / "sdk-rates.yaml"
GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
HI = [{"role": "user", "content": "hi"}]

# gpt-4o-mini: 8 x $0.15/M + 12 x $0.60/M = $0.0000012 + $0.0000072 = $0.0000084
GPT_HI_USD = Decimal("0.0000084")
# claude-haiku-4-5: 8 x $1/M + 12 x $5/M = $0.000008 + $0.00006 = $0.000068
CLAUDE_HI_USD = Decimal("0.000068")


def femto(amount: Decimal) -> int:
    return int(amount * FEMTO_PER_USD)


# -- fixtures ------------------------------------------------------------------------------


# The shared fixtures of tests/sdkkit.py, used here by name.
fake = sdkkit.fake
_fresh = sdkkit._fresh
openai_traced = sdkkit.openai_traced
anthropic_traced = sdkkit.anthropic_traced


@pytest.fixture
def traced() -> Iterator[Traced]:
    setup = make_traced(RATES)
    yield setup
    setup.ledger.shutdown()


def openai_client(fake: FakeProvider, transport: httpx2.BaseTransport) -> openai.OpenAI:
    http_client = openai.DefaultHttpxClient(transport=transport)
    return openai.OpenAI(
        base_url=f"{fake.url}/v1", api_key="test", max_retries=2, http_client=http_client
    )


# -- helpers ---------------------------------------------------------------------------------


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def attempts_of(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """The attempt spans, in the order they started."""
    found = [s for s in spans if "spanledger.attempt" in attrs(s)]
    return sorted(found, key=lambda s: s.start_time or 0)


def parent_ids(spans: Sequence[ReadableSpan]) -> list[int | None]:
    return [s.parent.span_id if s.parent else None for s in spans]


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def column(spans: Sequence[ReadableSpan], key: str) -> list[Any]:
    return [attrs(s).get(key) for s in spans]


def assemble(traced: Traced, spans: Sequence[ReadableSpan]) -> Trace:
    assembler = TraceAssembler(traced.book)
    [trace_id] = assembler.add(record_of(s) for s in spans)
    return assembler.trace(trace_id)


def hex_id(span: ReadableSpan) -> str:
    return f"{span_id(span):016x}"


def assert_three_attempts(attempts: list[ReadableSpan], parent: ReadableSpan, path: str) -> None:
    """429, 500, then 200: one CLIENT span each, under `parent`, with the HTTP attributes."""
    assert len(attempts) == 3
    assert parent_ids(attempts) == [span_id(parent)] * 3
    assert [s.name for s in attempts] == [f"POST {path}"] * 3
    assert {s.kind for s in attempts} == {SpanKind.CLIENT}
    assert column(attempts, "http.response.status_code") == [429, 500, 200]
    assert column(attempts, "http.request.resend_count") == [0, 1, 2]
    assert column(attempts, "spanledger.attempt") == [1, 2, 3]
    assert column(attempts, c.ERROR_TYPE) == ["429", "500", None]
    assert [s.status.status_code for s in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert column(attempts, "http.request.method") == ["POST"] * 3
    assert column(attempts, "server.address") == ["127.0.0.1"] * 3
    for span in attempts:
        url = attrs(span)["url.full"]
        assert url.startswith("http://127.0.0.1:") and url.endswith(path)
        assert attrs(span)["server.port"] == int(url.split(":")[2].split("/")[0])
        # Not an LLM call: no model, no operation, no usage, and not priced on export.
        assert not [key for key in attrs(span) if key.startswith("gen_ai.")]
        assert not [
            k for k in attrs(span) if k.startswith("spanledger.") and k != "spanledger.attempt"
        ]


def assert_failed_attempts_are_retries(trace: Trace, attempts: list[ReadableSpan]) -> None:
    flagged = [trace.spans[hex_id(s)] for s in attempts]
    assert [s.retry for s in flagged] == [True, True, False]
    assert [s.is_llm for s in flagged] == [False] * 3
    assert [s.cost.status for s in flagged] == [None] * 3
    assert [s.cost.total for s in flagged] == [0] * 3
    # Providers do not bill a 429 or a 500: the overhead of the retries is $0.
    assert trace.retry_overhead == 0


# -- openai ----------------------------------------------------------------------------------


def test_openai_retries_are_three_attempt_spans_under_the_chat_span(
    fake: FakeProvider, openai_traced: Traced
) -> None:
    fake.script(fail=[429, 500])
    with openai_client(fake, openai_traced.transport()) as client:
        client.chat.completions.create(model=GPT, messages=HI)

    assert [r.status for r in fake.requests] == [429, 500, 200]
    spans = openai_traced.spans()
    [chat] = [s for s in spans if c.PRICE_STATUS in attrs(s)]
    attempts = attempts_of(spans)
    assert len(spans) == 4
    assert chat.name == f"chat {GPT}" and chat.parent is None
    assert_three_attempts(attempts, chat, "/v1/chat/completions")
    # The chat span holds the usage and costs what the successful attempt was billed.
    assert attrs(chat)[c.COST_USD] == float(GPT_HI_USD)
    served = fake.requests[2]
    assert served.billed is not None and served.response_model is not None
    bill = openai_traced.book.price(
        Usage(**served.billed, source="provider-bill"),
        provider="openai",
        model=served.response_model,
        start_ns=chat.start_time or 0,
    )
    assert bill.total == femto(GPT_HI_USD)
    assert fake.requests[0].billed is None and fake.requests[1].billed is None


def test_assembled_trace_flags_the_failed_attempts_as_retries_at_no_overhead(
    fake: FakeProvider, openai_traced: Traced
) -> None:
    fake.script(fail=[429, 500])
    with openai_client(fake, openai_traced.transport()) as client:
        client.chat.completions.create(model=GPT, messages=HI)

    spans = openai_traced.spans()
    [chat] = [s for s in spans if c.PRICE_STATUS in attrs(s)]
    attempts = attempts_of(spans)
    trace = assemble(openai_traced, spans)

    assert trace.root is not None and trace.root.span_id == hex_id(chat)
    assert trace.root.children == [hex_id(s) for s in attempts]
    assert not trace.root.retry  # the call succeeded
    assert_failed_attempts_are_retries(trace, attempts)
    # The action cost the one call, once: the attempts add nothing to the rollup.
    assert trace.cost == trace.root.rollup == trace.root.cost.total == femto(GPT_HI_USD)
    assert trace.root.cost.reported_difference == 0  # exporter and assembler agree
    assert trace.count("priced") == 1


def test_a_budget_of_one_llm_call_is_not_used_up_by_the_attempts(
    fake: FakeProvider, openai_traced: Traced
) -> None:
    fake.script(fail=[429, 500])
    client = openai_client(fake, openai_traced.transport())
    with client, spanledger.budget(max_llm_calls=1) as run:
        client.chat.completions.create(model=GPT, messages=HI)  # three attempts
        assert run.llm_calls == 1
        with pytest.raises(BudgetExceeded):
            client.chat.completions.create(model=GPT, messages=HI)

    assert [r.status for r in fake.requests] == [429, 500, 200]  # the refused call never left
    assert run.llm_calls == 1
    assert run.spent == femto(GPT_HI_USD)  # charged for the call, once
    spans = openai_traced.spans()  # no error swallowed: no attempt was refused
    attempts = attempts_of(spans)
    assert column(attempts, "http.response.status_code") == [429, 500, 200]
    refused = [s for s in spans if "spanledger.budget.refused" in attrs(s)]
    assert [s.name for s in refused] == [f"chat {GPT}"]  # the second call, not an attempt


def test_async_openai_retries_are_attempt_spans_under_the_chat_span(
    fake: FakeProvider, openai_traced: Traced
) -> None:
    transport = traced_async_transport(
        tracer_provider=openai_traced.tracer_provider, health=openai_traced.ledger.health
    )

    async def run() -> None:
        async with openai.AsyncOpenAI(
            base_url=f"{fake.url}/v1",
            api_key="test",
            max_retries=2,
            http_client=openai.DefaultAsyncHttpxClient(transport=transport),
        ) as client:
            await client.chat.completions.create(model=GPT, messages=HI)

    fake.script(fail=[429, 500])
    asyncio.run(run())

    assert [r.status for r in fake.requests] == [429, 500, 200]
    spans = openai_traced.spans()
    [chat] = [s for s in spans if c.PRICE_STATUS in attrs(s)]
    attempts = attempts_of(spans)
    assert_three_attempts(attempts, chat, "/v1/chat/completions")
    assert attrs(chat)[c.COST_USD] == float(GPT_HI_USD)
    trace = assemble(openai_traced, spans)
    assert_failed_attempts_are_retries(trace, attempts)
    assert trace.cost == femto(GPT_HI_USD)
    assert transport.health.errors == {}


def test_a_streamed_attempt_ends_when_its_stream_is_closed(
    fake: FakeProvider, openai_traced: Traced
) -> None:
    fake.script(fail=[500])
    with openai_client(fake, openai_traced.transport()) as client:
        stream = client.chat.completions.create(
            model=GPT, messages=HI, stream=True, stream_options={"include_usage": True}
        )
        # The failed attempt's body was read and closed by the SDK before it retried; the
        # streaming attempt is still open while its body streams.
        before = attempts_of(openai_traced.spans())
        assert column(before, "http.response.status_code") == [500]
        with stream:
            text = "".join(
                chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
            )
        assert text

    spans = openai_traced.spans()
    [chat] = [s for s in spans if c.PRICE_STATUS in attrs(s)]
    attempts = attempts_of(spans)
    assert column(attempts, "http.response.status_code") == [500, 200]
    assert column(attempts, "http.request.resend_count") == [0, 1]
    assert parent_ids(attempts) == [span_id(chat)] * 2
    # Stream with usage: 8 in, 12 out, as the non-streaming call.
    assert attrs(chat)[c.COST_USD] == float(GPT_HI_USD)
    trace = assemble(openai_traced, spans)
    assert [trace.spans[hex_id(s)].retry for s in attempts] == [True, False]


def test_a_connection_error_is_an_error_attempt(openai_traced: Traced) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http_client = openai.DefaultHttpxClient(transport=openai_traced.transport())
    with (
        openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key="test",
            max_retries=1,
            http_client=http_client,
        ) as client,
        pytest.raises(openai.APIConnectionError),
    ):
        client.chat.completions.create(model=GPT, messages=HI)

    spans = openai_traced.spans()
    [chat] = [s for s in spans if s.name == f"chat {GPT}"]
    attempts = attempts_of(spans)
    assert parent_ids(attempts) == [span_id(chat)] * 2
    assert column(attempts, "http.request.resend_count") == [0, 1]
    assert column(attempts, c.ERROR_TYPE) == ["ConnectError"] * 2
    assert column(attempts, "http.response.status_code") == [None, None]
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR] * 2
    assert [[e.name for e in s.events] for s in attempts] == [["exception"]] * 2
    trace = assemble(openai_traced, spans)
    # The first attempt was retried; the last was not (the call failed with it).
    assert [trace.spans[hex_id(s)].retry for s in attempts] == [True, False]


# -- anthropic -------------------------------------------------------------------------------


def test_anthropic_retries_with_openllmetry_are_attempts_beside_the_chat_span(
    fake: FakeProvider, anthropic_traced: Traced
) -> None:
    """OpenLLMetry's AnthropicInstrumentor (0.62.4) starts its chat span without making it
    current, so the attempts are children of the span that *is* current, the application's
    here, beside the chat span. (`open_telemetry=False` turns the anthropic SDK's own tracing
    off, which would otherwise put its call span, from the global provider, in between.)
    The assembler still finds the retried attempts: same request, same parent."""
    fake.script(fail=[429, 500])
    http_client = anthropic.DefaultHttpxClient(transport=anthropic_traced.transport())
    with (
        anthropic.Anthropic(
            base_url=fake.url,
            api_key="test",
            max_retries=2,
            http_client=http_client,
            open_telemetry=False,
        ) as client,
        anthropic_traced.tracer.start_as_current_span("agent.step"),
    ):
        client.messages.create(model=CLAUDE, max_tokens=100, messages=HI)

    assert [r.status for r in fake.requests] == [429, 500, 200]
    spans = anthropic_traced.spans()
    [step] = [s for s in spans if s.name == "agent.step"]
    [chat] = [s for s in spans if c.PRICE_STATUS in attrs(s)]
    attempts = attempts_of(spans)
    assert chat.name == "anthropic.chat" and parent_ids([chat]) == [span_id(step)]
    assert_three_attempts(attempts, step, "/v1/messages")
    assert attrs(chat)[c.COST_USD] == float(CLAUDE_HI_USD)

    trace = assemble(anthropic_traced, spans)
    assert_failed_attempts_are_retries(trace, attempts)
    assert not trace.spans[hex_id(chat)].retry
    assert trace.cost == femto(CLAUDE_HI_USD)


def test_anthropic_sdk_tracing_puts_the_attempts_under_its_call_span(
    fake: FakeProvider, traced: Traced
) -> None:
    """The anthropic SDK's own tracing (given our tracer provider) makes its call span current
    while it sends, so each attempt is its child. That span also carries HTTP attributes
    (method, status, resend count): it is an LLM call, never taken for an attempt."""
    fake.script(fail=[429, 500])
    http_client = anthropic.DefaultHttpxClient(transport=traced.transport())
    with anthropic.Anthropic(
        base_url=fake.url,
        api_key="test",
        max_retries=2,
        http_client=http_client,
        open_telemetry={"tracer_provider": traced.tracer_provider},
    ) as client:
        client.messages.create(model=CLAUDE, max_tokens=100, messages=HI)

    spans = traced.spans()
    [call] = [s for s in spans if c.PRICE_STATUS in attrs(s)]
    attempts = attempts_of(spans)
    assert call.name == "anthropic.messages.create"
    assert attrs(call)["http.request.resend_count"] == 2
    assert_three_attempts(attempts, call, "/v1/messages")
    assert attrs(call)[c.COST_USD] == float(CLAUDE_HI_USD)

    trace = assemble(traced, spans)
    assert trace.root is not None and trace.root.span_id == hex_id(call) and trace.root.is_llm
    assert not trace.root.retry
    assert_failed_attempts_are_retries(trace, attempts)
    assert trace.cost == femto(CLAUDE_HI_USD)


# -- never breaks the host -------------------------------------------------------------------


class _BrokenSpan(NonRecordingSpan):
    """A span whose every write fails."""

    def set_attribute(self, key: str, value: Any) -> None:
        raise RuntimeError("broken span")

    def set_attributes(self, attributes: Any) -> None:
        raise RuntimeError("broken span")

    def set_status(self, status: Any, description: str | None = None) -> None:
        raise RuntimeError("broken span")

    def record_exception(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("broken span")

    def end(self, end_time: int | None = None) -> None:
        raise RuntimeError("broken span")


class _BrokenTracer(trace.NoOpTracer):
    def __init__(self, *, start_fails: bool) -> None:
        self.start_fails = start_fails

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:  # type: ignore[override]
        if self.start_fails:
            raise RuntimeError("broken tracer")
        return _BrokenSpan(trace.get_current_span().get_span_context())


class _BrokenTracerProvider(trace.NoOpTracerProvider):
    def __init__(self, *, start_fails: bool) -> None:
        self.start_fails = start_fails

    def get_tracer(self, *args: Any, **kwargs: Any) -> Tracer:
        return _BrokenTracer(start_fails=self.start_fails)


@pytest.mark.parametrize("start_fails", [True, False], ids=["start-raises", "span-raises"])
def test_a_broken_tracer_never_stops_the_request(
    fake: FakeProvider, openai_traced: Traced, start_fails: bool
) -> None:
    transport = traced_transport(tracer_provider=_BrokenTracerProvider(start_fails=start_fails))
    fake.script(fail=[429])
    with openai_client(fake, transport) as client:
        reply = client.chat.completions.create(model=GPT, messages=HI)
        stream = client.chat.completions.create(
            model=GPT, messages=HI, stream=True, stream_options={"include_usage": True}
        )
        with stream:
            streamed = "".join(
                chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
            )

    assert reply.choices[0].message.content and streamed
    assert [r.status for r in fake.requests] == [429, 200, 200]
    errors = transport.health.errors
    assert set(errors) == {"attempts"}
    # start-raises: one error per attempt; span-raises: several per attempt (each write).
    if start_fails:
        assert errors["attempts"] == 3
    else:
        assert errors["attempts"] > 3
    # The calls themselves were traced and priced as usual.
    spans = openai_traced.spans()
    assert attempts_of(spans) == []
    priced = [attrs(s) for s in spans if c.PRICE_STATUS in attrs(s)]
    assert [a.get(c.COST_USD) for a in priced] == [float(GPT_HI_USD)] * 2, priced


# -- transport details -------------------------------------------------------------------------


def test_resend_count_is_counted_when_the_client_sends_no_retry_header(
    fake: FakeProvider, traced: Traced
) -> None:
    """A plain httpx2 client sends no `x-stainless-retry-count`: the transport counts the
    requests to the same method and URL under the same parent span."""
    url = f"{fake.url}/v1/chat/completions"
    with httpx2.Client(transport=traced.transport()) as client:
        with traced.tracer.start_as_current_span("app"):
            for _ in range(2):
                client.get(url)
            client.get(f"{fake.url}/v1/messages")
        with traced.tracer.start_as_current_span("another"):
            client.get(url)

    attempts = attempts_of(traced.spans())
    assert [s.name for s in attempts] == [
        "GET /v1/chat/completions",
        "GET /v1/chat/completions",
        "GET /v1/messages",
        "GET /v1/chat/completions",
    ]
    assert column(attempts, "http.request.resend_count") == [0, 1, 0, 0]
    assert column(attempts, "spanledger.attempt") == [1, 2, 1, 1]


def test_url_full_carries_no_credentials_or_query_secrets(
    fake: FakeProvider, traced: Traced
) -> None:
    secret_url = fake.url.replace("http://", "http://alice:pw-123@")
    query = {"key": "sk-secret", "api-version": "2024-10-21"}
    client = httpx2.Client(transport=traced.transport())
    with client, traced.tracer.start_as_current_span("app"):
        response = client.get(f"{secret_url}/v1/models", params=query)
    assert response.status_code  # whatever the fake says, the request went through

    [attempt] = attempts_of(traced.spans())
    host = fake.url.removeprefix("http://")
    assert attrs(attempt)["url.full"] == (
        f"http://REDACTED:REDACTED@{host}/v1/models?key=REDACTED&api-version=2024-10-21"
    )
    values = " ".join(str(value) for value in attrs(attempt).values())
    assert "sk-secret" not in values and "pw-123" not in values and "alice" not in values


def test_no_trace_context_or_baggage_leaves_with_the_request(traced: Traced) -> None:
    seen: list[httpx2.Headers] = []

    def provider(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers)
        return httpx2.Response(200, json={})

    transport = traced_transport(
        httpx2.MockTransport(provider), tracer_provider=traced.tracer_provider
    )
    client = httpx2.Client(transport=transport)
    with client, spanledger.attribute(user_id="u-42"), traced.tracer.start_as_current_span("app"):
        client.post("https://api.example.com/v1/chat/completions", json={}).close()

    [headers] = seen
    assert "traceparent" not in headers and "baggage" not in headers
    [attempt] = attempts_of(traced.spans())
    assert attrs(attempt)["server.port"] == 443
    assert attrs(attempt)["url.full"] == "https://api.example.com/v1/chat/completions"


def test_no_attempt_span_without_a_current_span(fake: FakeProvider, traced: Traced) -> None:
    with httpx2.Client(transport=traced.transport()) as client:
        response = client.post(
            f"{fake.url}/v1/chat/completions", json={"model": GPT, "messages": HI}
        )
    assert response.status_code == 200
    assert [r.status for r in fake.requests] == [200]
    assert traced.spans() == []


def test_a_body_nobody_closes_still_ends_its_attempt_span(
    fake: FakeProvider, traced: Traced
) -> None:
    transport = traced.transport()
    request = httpx2.Request(
        "POST", f"{fake.url}/v1/chat/completions", json={"model": GPT, "messages": HI}
    )
    with traced.tracer.start_as_current_span("app"):
        response = transport.handle_request(request)
    assert response.status_code == 200
    assert attempts_of(traced.spans()) == []  # the body is still open
    del response
    gc.collect()
    [attempt] = attempts_of(traced.spans())
    assert attrs(attempt)["http.response.status_code"] == 200
    transport.close()


def test_different_requests_under_one_call_are_not_retries(traced: Traced) -> None:
    """A failed upload then a chat request under one call span: two requests, no retry."""

    def span(n: int, parent: str, **attributes: Any) -> SpanRecord:
        return SpanRecord(
            trace_id="a" * 32,
            span_id=f"{n:016x}",
            parent_span_id=parent,
            name=str(n),
            start_ns=n,
            end_ns=n + 1,
            kind=3,
            attributes=attributes,
        )

    call = span(1, "", **{"gen_ai.request.model": GPT, "gen_ai.usage.input_tokens": 8})
    upload = span(2, call.span_id, **{"http.request.method": "POST", "url.full": "u/files"})
    upload.attributes = {**upload.attributes, "http.response.status_code": 500}
    chat = span(3, call.span_id, **{"http.request.method": "POST", "url.full": "u/chat"})
    again = span(4, call.span_id, **{"http.request.method": "POST", "url.full": "u/chat"})
    assembler = TraceAssembler(traced.book)
    assembler.add([call, upload, chat, again])
    trace = assembler.trace("a" * 32)
    assert [trace.spans[s.span_id].retry for s in (call, upload, chat, again)] == [False] * 4
    # The same request again after a 500 is a retry.
    chat.attributes = {**chat.attributes, "http.response.status_code": 500}
    assembler.add([chat])
    trace = assembler.trace("a" * 32)
    assert [trace.spans[s.span_id].retry for s in (upload, chat, again)] == [False, True, False]
