"""`spanledger.budget(...)`: stop a run before it spends more than it may; never break the host.

Real OpenTelemetry SDK: every test has its own TracerProvider, instrumented with
`spanledger.instrument(InMemorySpanExporter(), tracer_provider=..., rates=[sheet],
use_default_prices=False)`, so prices come only from the sheet below. Real `openai`
SDK calls go to the fake provider on loopback; `fake.requests` is what actually left the
process.

Costs are worked out by hand. Rates are USD per million tokens ("/M"); $1/M is 10^9
femto-dollars per token (spanledger.pricing.money):

  gpt-4o-mini  input 0.15/M = 150_000_000   cache_read 0.075/M = 75_000_000
               output 0.60/M = 600_000_000                      femto-$ per token
  house-llm    input 2/M = 2_000_000_000    output 8/M = 8_000_000_000
  claude-haiku-4-5  input 1/M = 1_000_000_000   output 5/M = 5_000_000_000
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer

import spanledger
from spanledger import BudgetExceeded, LoopDetected
from spanledger.demo.provider import FakeProvider

RATES = """\
version: sdk-budget-test
models:
  - match: "gpt-4o-mini*"     # the alias and the dated snapshot the response names
    provider: openai
    per_million: {input: 0.15, cache_read: 0.075, output: 0.60}
  - match: house-llm
    per_million: {input: 2, output: 8}
  - match: "claude-haiku-4-5*"
    provider: anthropic
    per_million: {input: 1, output: 5}
"""
SHEET_VERSION = "sdk-budget-test"

# The fake provider's token rules: "hi there" is 8 chars -> 2 tokens, + 4 for the message,
# + 3 reply priming = 9 prompt tokens; the default reply (50 chars) is 12 output tokens.
HI = [{"role": "user", "content": "hi there"}]
# 9 * 150_000_000 + 12 * 600_000_000 = 1_350_000_000 + 7_200_000_000
HI_COST = 8_550_000_000  # femto-$ = $0.00000855

# house-llm, 1000 in / 100 out: 1000 * 2_000_000_000 + 100 * 8_000_000_000
HOUSE_COST = 2_800_000_000_000  # femto-$ = $0.0028

FEMTO = 10**15


def usd(femto: int) -> Decimal:
    return Decimal(femto) / FEMTO


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rate_sheet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rates") / "rates.yaml"
    path.write_text(RATES, encoding="utf-8")
    return path


@dataclass
class App:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    ledger: spanledger.Ledger
    tracer: Tracer

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        assert self.ledger.force_flush()
        spans = list(self.exporter.get_finished_spans())
        return spans if name is None else [s for s in spans if s.name == name]


def make_app(rate_sheet: Path, **instrument: Any) -> App:
    provider = TracerProvider()
    exporter = instrument.pop("exporter", None) or InMemorySpanExporter()
    ledger = spanledger.instrument(
        exporter,
        tracer_provider=provider,
        rates=instrument.pop("rates", [rate_sheet]),
        use_default_prices=False,
        **instrument,
    )
    return App(provider, exporter, ledger, provider.get_tracer("tests.budgets"))


@pytest.fixture
def app(rate_sheet: Path) -> Iterator[App]:
    made = make_app(rate_sheet)
    yield made
    made.ledger.shutdown()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
def oai(fake: FakeProvider) -> Iterator[openai.OpenAI]:
    fake.reset()
    with openai.OpenAI(
        base_url=f"{fake.url}/v1",
        api_key="test",
        max_retries=0,
        http_client=httpx.Client(trust_env=False),
    ) as client:
        yield client


def _request_attributes(model: str) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
    }


def _usage_attributes(response: Any) -> dict[str, Any]:
    usage = response.usage
    details = usage.prompt_tokens_details
    return {
        "gen_ai.response.model": response.model,
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
        "gen_ai.usage.cache_read.input_tokens": (details.cached_tokens if details else 0) or 0,
    }


# These three wrappers trace an OpenAI call the way GenAI instrumentations do (OTel GenAI
# semantic conventions): a CLIENT span started with the request attributes *before* the
# request is sent, response model and usage set when the answer is back. They are written
# out because opentelemetry-instrumentation-openai-v2 2.4b0 cannot be imported next to the
# installed opentelemetry-util-genai 1.3b0 (`opentelemetry.util.genai.instruments` is gone).


def traced_chat(client: openai.OpenAI, tracer: Tracer, **request: Any) -> Any:
    model = request["model"]
    with tracer.start_as_current_span(
        f"chat {model}", kind=SpanKind.CLIENT, attributes=_request_attributes(model)
    ) as span:
        response = client.chat.completions.create(**request)
        span.set_attributes(_usage_attributes(response))
        return response


async def atraced_chat(client: openai.AsyncOpenAI, tracer: Tracer, **request: Any) -> Any:
    model = request["model"]
    with tracer.start_as_current_span(
        f"chat {model}", kind=SpanKind.CLIENT, attributes=_request_attributes(model)
    ) as span:
        response = await client.chat.completions.create(**request)
        span.set_attributes(_usage_attributes(response))
        return response


def traced_stream(client: openai.OpenAI, tracer: Tracer, **request: Any) -> Iterator[Any]:
    """A streamed call: the span ends (and is charged) when the stream is consumed."""
    model = request["model"]
    span = tracer.start_span(
        f"chat {model}", kind=SpanKind.CLIENT, attributes=_request_attributes(model)
    )
    try:
        stream = client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **request
        )
    except BaseException:
        span.end()
        raise

    def chunks() -> Iterator[Any]:
        try:
            for chunk in stream:
                if chunk.usage is not None:
                    span.set_attributes(_usage_attributes(chunk))
                yield chunk
        finally:
            span.end()

    return chunks()


def llm_call(
    tracer: Tracer,
    model: str = "house-llm",
    input_tokens: int = 1000,
    output_tokens: int = 100,
    **usage: Any,
) -> None:
    """A hand-made LLM span: model at start (as instrumentations set it), usage at end."""
    with tracer.start_as_current_span(
        f"chat {model}",
        kind=SpanKind.CLIENT,
        attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": model},
    ) as span:
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
                **usage,
            }
        )


def tool_call(tracer: Tracer, tool: str, arguments: str) -> None:
    with tracer.start_as_current_span(
        f"execute_tool {tool}",
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.call.arguments": arguments,
        },
    ):
        pass


# -- max_usd ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "sent"),
    [
        ("0", 0),  # nothing may be spent: the first call is refused
        ("0.00000855", 1),  # one call spends exactly the limit: spent >= limit
        ("0.0000086", 2),  # one call is just under it; the second crosses it and finishes
        ("0.0000171", 2),  # two calls spend exactly the limit
        ("0.0000172", 3),
    ],
)
def test_max_usd_refuses_the_next_call_before_it_leaves_the_process(
    app: App, fake: FakeProvider, oai: openai.OpenAI, limit: str, sent: int
) -> None:
    with spanledger.budget(max_usd=limit) as run:
        for _ in range(sent):
            traced_chat(oai, app.tracer, model="gpt-4o-mini", messages=HI)
        assert len(fake.requests) == sent
        with pytest.raises(BudgetExceeded) as refused:
            traced_chat(oai, app.tracer, model="gpt-4o-mini", messages=HI)
        assert len(fake.requests) == sent  # the refused request never reached the provider

    assert type(refused.value) is BudgetExceeded
    assert refused.value.budget is run
    assert refused.value.spent_usd == usd(sent * HI_COST)
    assert run.spent == sent * HI_COST
    assert run.spent_usd == usd(sent * HI_COST)
    assert run.llm_calls == sent
    assert f"budget of ${limit} used up" in str(refused.value)


def test_the_refused_call_is_exported_marked_and_the_budget_ends_with_its_block(
    app: App, fake: FakeProvider, oai: openai.OpenAI
) -> None:
    with spanledger.budget(max_usd="0.0000171", name="agent-run") as run:
        traced_chat(oai, app.tracer, model="gpt-4o-mini", messages=HI)
        traced_chat(oai, app.tracer, model="gpt-4o-mini", messages=HI)
        with pytest.raises(BudgetExceeded):
            traced_chat(oai, app.tracer, model="gpt-4o-mini", messages=HI)
    # outside the block no budget applies: the same call goes through again
    traced_chat(oai, app.tracer, model="gpt-4o-mini", messages=HI)
    assert len(fake.requests) == 3
    assert run.llm_calls == 2
    assert run.spent_usd == Decimal("0.0000171")  # 2 * 8_550_000_000 femto-$

    spans = app.spans("chat gpt-4o-mini")
    assert len(spans) == 4
    refused = [s for s in spans if "spanledger.budget.refused" in s.attributes]
    assert len(refused) == 1
    marked = refused[0]
    assert "used up" in marked.attributes["spanledger.budget.refused"]
    assert marked.attributes["spanledger.budget.name"] == "agent-run"
    assert marked.attributes["error.type"] == "BudgetExceeded"
    assert marked.status.status_code is StatusCode.ERROR
    assert "gen_ai.usage.input_tokens" not in marked.attributes
    sent = [s for s in spans if s is not marked]
    assert all(s.status.status_code is StatusCode.UNSET for s in sent)
    assert [Decimal(repr(s.attributes["spanledger.cost.usd"])) for s in sent] == [
        Decimal("0.00000855")
    ] * 3


# -- max_llm_calls, nesting, loops --------------------------------------------------------------


def test_max_llm_calls_counts_llm_calls_only(app: App) -> None:
    with spanledger.budget(max_llm_calls=3) as run:
        for _ in range(3):
            llm_call(app.tracer)
            tool_call(app.tracer, "search", '{"q": "x"}')  # tools are not LLM calls
            with app.tracer.start_as_current_span(
                "invoke_agent planner",
                attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "m"},
            ):
                pass  # nor are agents, even with a model name
            with app.tracer.start_as_current_span("plain work"):
                pass
        assert run.llm_calls == 3
        with pytest.raises(BudgetExceeded) as refused:
            llm_call(app.tracer)

    assert refused.value.budget is run
    assert "limit of 3 LLM calls reached" in refused.value.reason
    assert run.llm_calls == 3
    assert run.spent == 3 * HOUSE_COST  # 3 * $0.0028
    assert refused.value.spent_usd == Decimal("0.0084")


def test_nested_budgets_are_both_charged_and_the_tighter_inner_one_refuses(app: App) -> None:
    with spanledger.budget(max_usd=1, name="outer") as outer:
        with spanledger.budget(max_usd="0.005", name="inner") as inner:
            llm_call(app.tracer)  # $0.0028
            llm_call(app.tracer)  # $0.0056 >= $0.005
            with pytest.raises(BudgetExceeded) as refused:
                llm_call(app.tracer)
        assert refused.value.budget is inner
        assert refused.value.spent_usd == Decimal("0.0056")
        assert inner.spent == outer.spent == 2 * HOUSE_COST
        llm_call(app.tracer)  # the outer budget still has room
    assert inner.spent == 2 * HOUSE_COST
    assert outer.spent == 3 * HOUSE_COST  # $0.0084
    assert inner.llm_calls == 2

    refused_spans = [s for s in app.spans() if "spanledger.budget.refused" in s.attributes]
    assert [s.attributes["spanledger.budget.name"] for s in refused_spans] == ["inner"]


def test_nested_budgets_the_tighter_outer_one_refuses(app: App) -> None:
    with (
        spanledger.budget(max_llm_calls=1, name="outer") as outer,
        spanledger.budget(max_llm_calls=10, max_usd=1, name="inner") as inner,
    ):
        llm_call(app.tracer)
        with pytest.raises(BudgetExceeded) as refused:
            llm_call(app.tracer)
    assert refused.value.budget is outer
    assert outer.llm_calls == inner.llm_calls == 1
    assert outer.spent == inner.spent == HOUSE_COST
    refused_spans = [s for s in app.spans() if "spanledger.budget.refused" in s.attributes]
    assert [s.attributes["spanledger.budget.name"] for s in refused_spans] == ["outer"]


def test_a_call_refused_by_an_inner_budget_does_not_use_up_the_outer_one(app: App) -> None:
    with spanledger.budget(max_llm_calls=5, name="outer") as outer:
        with spanledger.budget(max_llm_calls=1, name="inner"):
            llm_call(app.tracer)
            for _ in range(4):  # e.g. a retry loop that catches the refusal
                with pytest.raises(BudgetExceeded):
                    llm_call(app.tracer)
        assert outer.llm_calls == 1  # one call was sent; four were refused
        for _ in range(4):  # the outer budget allows four more
            llm_call(app.tracer)
    assert outer.llm_calls == 5


def test_the_same_tool_repeated_past_the_limit_is_a_loop(app: App) -> None:
    with spanledger.budget(max_tool_repeats=3) as run:
        for _ in range(3):
            tool_call(app.tracer, "search", '{"q": "weather"}')
        for city in ("Paris", "Oslo", "Lima", "Pune"):  # different arguments are fine
            tool_call(app.tracer, "search", f'{{"q": "{city}"}}')
        tool_call(app.tracer, "fetch", '{"q": "weather"}')  # another tool, same arguments
        with pytest.raises(BudgetExceeded) as refused:
            tool_call(app.tracer, "search", '{"q": "weather"}')
        with pytest.raises(LoopDetected):  # and it stays refused
            tool_call(app.tracer, "search", '{"q": "weather"}')

    assert issubclass(LoopDetected, BudgetExceeded)
    assert type(refused.value) is LoopDetected
    assert refused.value.budget is run
    assert "called 4 times with the same arguments (limit 3)" in refused.value.reason
    assert run.llm_calls == 0
    assert run.spent == 0

    looped = [s for s in app.spans() if "spanledger.budget.refused" in s.attributes]
    assert [s.name for s in looped] == ["execute_tool search"] * 2
    assert looped[0].attributes["error.type"] == "LoopDetected"
    assert looped[0].status.status_code is StatusCode.ERROR
    assert len(app.spans("execute_tool search")) == 9  # 3 + 4 + 2 refused


def test_tool_repeats_do_not_leak_out_of_their_budget(app: App) -> None:
    with spanledger.budget(max_tool_repeats=1):
        tool_call(app.tracer, "search", "{}")
    with spanledger.budget(max_tool_repeats=1):
        tool_call(app.tracer, "search", "{}")  # a new run starts counting again
    for _ in range(5):
        tool_call(app.tracer, "search", "{}")  # no budget, no limit
    assert not [s for s in app.spans() if "spanledger.budget.refused" in s.attributes]


# -- streaming -------------------------------------------------------------------------------


def test_a_stream_is_charged_when_it_is_consumed(
    app: App, fake: FakeProvider, oai: openai.OpenAI
) -> None:
    with spanledger.budget(max_usd="0.00000855") as run:  # exactly one call's cost
        stream = traced_stream(oai, app.tracer, model="gpt-4o-mini", messages=HI)
        first = next(stream)
        assert first.choices[0].delta.role == "assistant"
        assert run.llm_calls == 1
        assert run.spent == 0  # in flight: its usage is not known yet

        # so a call made meanwhile is admitted, and charged when it ends
        traced_chat(oai, app.tracer, model="gpt-4o-mini", messages=HI)
        assert run.spent == HI_COST

        rest = list(stream)
        assert rest[-1].usage.prompt_tokens == 9
        assert rest[-1].usage.completion_tokens == 12
        assert run.spent == 2 * HI_COST  # the stream's span ended: charged
        with pytest.raises(BudgetExceeded) as refused:
            traced_chat(oai, app.tracer, model="gpt-4o-mini", messages=HI)

    assert len(fake.requests) == 2
    assert [r.stream for r in fake.requests] == [True, False]
    assert refused.value.spent_usd == Decimal("0.0000171")
    streamed = app.spans("chat gpt-4o-mini")
    costs = sorted(
        Decimal(repr(s.attributes["spanledger.cost.usd"]))
        for s in streamed
        if "spanledger.budget.refused" not in s.attributes
    )
    assert costs == [Decimal("0.00000855")] * 2


# -- concurrency -----------------------------------------------------------------------------


def _sized_messages(i: int) -> list[dict[str, str]]:
    """A prompt of i + 7 tokens: 4i chars -> i tokens, + 4 for the message, + 3 priming."""
    return [{"role": "user", "content": "w" * (4 * i)}]


def _sized_cost(i: int) -> int:
    """(i + 7) * 150_000_000 + 12 * 600_000_000 femto-$ (12 = the default reply's tokens)."""
    return (i + 7) * 150_000_000 + 12 * 600_000_000


def _billed_femto(fake: FakeProvider) -> int:
    """What the provider itself says it served, at the sheet's gpt-4o-mini rates."""
    return sum(
        r.billed["input_uncached"] * 150_000_000
        + r.billed["cache_read"] * 75_000_000
        + r.billed["output"] * 600_000_000
        for r in fake.requests
        if r.billed is not None
    )


def test_concurrent_async_calls_in_one_budget_lose_no_updates(app: App, fake: FakeProvider) -> None:
    n = 20
    # sum over i = 1..20 of (i + 7) * 150_000_000 + 7_200_000_000
    #   = (210 + 140) * 150_000_000 + 20 * 7_200_000_000
    #   = 52_500_000_000 + 144_000_000_000 = 196_500_000_000 femto-$ = $0.0001965
    expected = 196_500_000_000
    assert expected == sum(_sized_cost(i) for i in range(1, n + 1))
    fake.reset()

    async def run_all() -> spanledger.Budget:
        async with openai.AsyncOpenAI(
            base_url=f"{fake.url}/v1",
            api_key="test",
            max_retries=0,
            http_client=httpx.AsyncClient(trust_env=False),
        ) as client:
            with spanledger.budget(max_usd=1) as run:
                await asyncio.gather(
                    *(
                        atraced_chat(
                            client, app.tracer, model="gpt-4o-mini", messages=_sized_messages(i)
                        )
                        for i in range(1, n + 1)
                    )
                )
            return run

    run = asyncio.run(run_all())
    assert len(fake.requests) == n
    assert _billed_femto(fake) == expected  # the provider agrees with the hand arithmetic
    assert run.llm_calls == n
    assert run.spent == expected
    assert run.spent_usd == Decimal("0.0001965")


def test_thread_pool_workers_with_the_submitting_context_are_charged_exactly(
    app: App, fake: FakeProvider, oai: openai.OpenAI
) -> None:
    n = 16
    # (136 + 112) * 150_000_000 + 16 * 7_200_000_000 = 37_200_000_000 + 115_200_000_000
    expected = 152_400_000_000  # femto-$ = $0.0001524
    assert expected == sum(_sized_cost(i) for i in range(1, n + 1))

    def work(i: int) -> None:
        traced_chat(oai, app.tracer, model="gpt-4o-mini", messages=_sized_messages(i))

    with ThreadPoolExecutor(max_workers=4) as pool, spanledger.budget(max_usd=1) as run:
        futures = [pool.submit(contextvars.copy_context().run, work, i) for i in range(1, n + 1)]
        for future in futures:
            future.result()
        assert run.spent == expected
        assert run.llm_calls == n
        # a worker without the submitting context runs outside the budget: not charged
        pool.submit(work, 1).result()

    assert len(fake.requests) == n + 1
    assert run.spent == expected
    assert run.llm_calls == n
    assert run.spent_usd == Decimal("0.0001524")


def test_many_threads_charging_one_budget_lose_no_updates(app: App) -> None:
    threads, per_thread = 8, 250  # 2000 spans: within the batch queue, none dropped
    n = threads * per_thread
    # span k (0..1999): house-llm, k + 1 input tokens, 1 output token
    #   cost_k = (k + 1) * 2_000_000_000 + 8_000_000_000
    #   sum = 2_000_000_000 * (2000 * 2001 / 2) + 2000 * 8_000_000_000
    #       = 4_002_000_000_000_000 + 16_000_000_000_000 = 4_018_000_000_000_000 femto-$
    expected = 4_018_000_000_000_000
    assert expected == sum((k + 1) * 2_000_000_000 + 8_000_000_000 for k in range(n))
    start = threading.Barrier(threads)

    def work(first: int) -> None:
        start.wait()
        for k in range(first, first + per_thread):
            llm_call(app.tracer, input_tokens=k + 1, output_tokens=1)

    with ThreadPoolExecutor(max_workers=threads) as pool, spanledger.budget(max_usd=10) as run:
        futures = [
            pool.submit(contextvars.copy_context().run, work, t * per_thread)
            for t in range(threads)
        ]
        for future in futures:
            future.result()

    assert run.llm_calls == n
    assert run.spent == expected
    assert run.spent_usd == Decimal("4.018")
    assert len(app.spans()) == n


# -- never break the host ----------------------------------------------------------------------


class BrokenExporter(SpanExporter):
    """A backend that is down."""

    def __init__(self) -> None:
        self.attempts = 0

    def export(self, spans: Any) -> SpanExportResult:
        self.attempts += 1
        raise ConnectionError("collector unreachable")

    def shutdown(self) -> None:
        pass


def test_a_failing_exporter_is_counted_and_the_app_keeps_running(
    rate_sheet: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = BrokenExporter()
    app = make_app(rate_sheet, exporter=broken)
    try:
        with caplog.at_level(logging.ERROR, logger="spanledger.sdk"):
            with spanledger.budget(max_usd=1) as run:
                llm_call(app.tracer)
                app.ledger.force_flush()  # one span lost
                llm_call(app.tracer)
                with app.tracer.start_as_current_span("plain work"):
                    pass
                app.ledger.force_flush()  # two spans lost in one export
            still_running = True
        assert still_running
        assert broken.attempts == 2
        assert app.ledger.health.errors == {"export": 2}  # one swallowed error per export
        lost = [r.getMessage() for r in caplog.records if "spans lost" in r.getMessage()]
        assert lost == [
            "spanledger: the wrapped exporter failed; 1 spans lost",
            "spanledger: the wrapped exporter failed; 2 spans lost",
        ]
        # budgets do not depend on the export path
        assert run.spent == 2 * HOUSE_COST
        # and the wrapper answers the pipeline instead of raising
        assert app.ledger.exporter.export([]) is SpanExportResult.FAILURE
        assert app.ledger.health.errors == {"export": 3}
    finally:
        app.ledger.shutdown()


@pytest.mark.parametrize(
    "usage",
    [
        {"gen_ai.usage.input_tokens": -5, "gen_ai.usage.output_tokens": 10},
        {"gen_ai.usage.input_tokens": "lots", "gen_ai.usage.output_tokens": 10},
        {"gen_ai.usage.input_tokens": "12abc", "gen_ai.usage.output_tokens": 10},
        {"gen_ai.usage.input_tokens": float("nan"), "gen_ai.usage.output_tokens": 10},
        {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": float("inf")},
        {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 12.5},
        {"gen_ai.usage.input_tokens": True, "gen_ai.usage.output_tokens": 1},
        {"gen_ai.usage.input_tokens": [1, 2], "gen_ai.usage.output_tokens": 3},
        {
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 5,
            "gen_ai.usage.cache_read.input_tokens": 50,  # more cached than sent
        },
        {
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 5,
            "gen_ai.usage.reasoning.output_tokens": 9,  # more reasoning than output
        },
    ],
    ids=lambda usage: repr(tuple(usage.values())),
)
def test_hostile_usage_is_exported_as_invalid_usage_without_an_exception(
    app: App, usage: dict[str, Any]
) -> None:
    with spanledger.budget(max_usd=1) as run:
        with app.tracer.start_as_current_span(
            "chat house-llm",
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "house-llm"},
        ) as span:
            span.set_attributes(usage)
        llm_call(app.tracer)  # the run goes on

    hostile, fine = app.spans("chat house-llm")
    assert hostile.attributes["spanledger.price.status"] == "invalid_usage"
    assert hostile.attributes["spanledger.price.reason"]
    assert "spanledger.cost.usd" not in hostile.attributes
    assert fine.attributes["spanledger.price.status"] == "priced"
    assert run.llm_calls == 2
    assert run.spent == HOUSE_COST  # the invalid call adds nothing
    assert app.ledger.health.errors == {}


def test_rate_sheets_that_cannot_be_loaded_are_logged_counted_and_skipped(
    rate_sheet: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "does-not-exist.yaml"
    broken = tmp_path / "broken.yaml"
    broken.write_text("models:\n  - match: [unclosed\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="spanledger.sdk"):
        app = make_app(rate_sheet, rates=[missing, rate_sheet, broken])
    try:
        assert app.ledger.health.errors == {"rates": 2}
        messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("does-not-exist.yaml" in m for m in messages)
        assert any("broken.yaml" in m for m in messages)
        llm_call(app.tracer)  # the app continues, priced by the sheet that did load
        (span,) = app.spans("chat house-llm")
        assert span.attributes["spanledger.price.source"] == SHEET_VERSION
        assert Decimal(repr(span.attributes["spanledger.cost.usd"])) == Decimal("0.0028")
    finally:
        app.ledger.shutdown()


# -- metrics -----------------------------------------------------------------------------------


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def _spend(app: App) -> None:
    """Four spans: two priced LLM calls, one with impossible usage, one plain span.

    gpt-4o-mini, 2000 input of which 1024 cached, 300 output:
        976 * 150_000_000 + 1024 * 75_000_000 + 300 * 600_000_000
        = 146_400_000_000 + 76_800_000_000 + 180_000_000_000 = 403_200_000_000 ($0.0004032)
    house-llm, 1000 input, 100 output: 2_800_000_000_000 ($0.0028)
    total 3_203_200_000_000 femto-$ = $0.0032032
    """
    with spanledger.attribute(user_id="u-42", department="research", agent="planner"):
        with app.tracer.start_as_current_span(
            "chat gpt-4o-mini", attributes=_request_attributes("gpt-4o-mini")
        ) as span:
            span.set_attributes(
                {
                    "gen_ai.usage.input_tokens": 2000,
                    "gen_ai.usage.cache_read.input_tokens": 1024,
                    "gen_ai.usage.output_tokens": 300,
                }
            )
        llm_call(app.tracer)
        llm_call(app.tracer, input_tokens=-1, output_tokens=5)  # invalid: neither cost nor tokens
        with app.tracer.start_as_current_span("plain work"):
            pass
    app.ledger.force_flush()


TOTAL_USD = Decimal("0.0032032")


def test_metrics_sum_to_the_priced_spend_without_user_labels(rate_sheet: Path) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    app = make_app(rate_sheet, meter_provider=meters)
    try:
        _spend(app)
        cost = _points(reader, "spanledger.cost")
        assert sum(p.value for p in cost) == pytest.approx(float(TOTAL_USD), rel=1e-12)
        by_model = {p.attributes["gen_ai.request.model"]: p.value for p in cost}
        assert by_model == {
            "gpt-4o-mini": pytest.approx(0.0004032, rel=1e-12),
            "house-llm": pytest.approx(0.0028, rel=1e-12),
        }

        tokens = _points(reader, "spanledger.token.usage")
        by_type: dict[str, int] = {}
        for point in tokens:
            kind = point.attributes["gen_ai.token.type"]
            by_type[kind] = by_type.get(kind, 0) + point.value
        # input excludes cached tokens: (2000 - 1024) + 1000; output 300 + 100
        assert by_type == {"input": 1976, "cache_read": 1024, "output": 400}

        for point in cost + tokens:
            assert "user.id" not in point.attributes
            assert "spanledger.department" not in point.attributes
            assert point.attributes["gen_ai.agent.name"] == "planner"
            assert point.attributes["spanledger.price.status"] == "priced"
        assert app.ledger.health.errors == {}
    finally:
        app.ledger.shutdown()
        meters.shutdown()


def test_metrics_carry_the_user_only_when_asked(rate_sheet: Path) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    app = make_app(rate_sheet, meter_provider=meters, metrics_include_user=True)
    try:
        _spend(app)
        cost = _points(reader, "spanledger.cost")
        tokens = _points(reader, "spanledger.token.usage")
        assert cost and tokens
        for point in cost + tokens:
            assert point.attributes["user.id"] == "u-42"
        assert sum(p.value for p in cost) == pytest.approx(float(TOTAL_USD), rel=1e-12)
    finally:
        app.ledger.shutdown()
        meters.shutdown()


# -- an instrumentation that names the model only after the span started -----------------------


def test_budgets_apply_to_anthropic_calls_traced_by_openllmetry(
    app: App, fake: FakeProvider
) -> None:
    from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

    fake.reset()
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(tracer_provider=app.provider)
    try:
        with (
            anthropic.Anthropic(base_url=fake.url, api_key="test", max_retries=0) as client,
            spanledger.budget(max_llm_calls=1) as run,
        ):
            client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=HI)
            # 9 input * 1_000_000_000 + 12 output * 5_000_000_000 = 69_000_000_000 femto-$
            (span,) = app.spans("anthropic.chat")
            assert Decimal(repr(span.attributes["spanledger.cost.usd"])) == Decimal("0.000069")
            assert run.llm_calls == 1
            assert run.spent == 69_000_000_000
            with pytest.raises(BudgetExceeded):
                client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=HI)
        assert len(fake.requests) == 1
    finally:
        instrumentor.uninstrument()
