"""`spanledger.attribute(...)`: who a piece of work is for, in-process and across services.

Real OpenTelemetry SDK: every test has its own TracerProvider, instrumented with
`spanledger.instrument(InMemorySpanExporter(), tracer_provider=..., rates=[sheet],
use_default_prices=False)` so prices come only from the pinned sheet below.

The two-service test runs a real HTTP hop: an upstream service calls a downstream Starlette
app served by uvicorn on 127.0.0.1 (an ephemeral port, a background thread), which makes
a real `openai` SDK call to the fake provider. Each service has its own TracerProvider and
its own `spanledger.instrument`; context crosses only as W3C `traceparent` + `baggage`.

Costs are worked out by hand. Rates are USD per million tokens; $1/M is 10^9 femto-dollars
per token (spanledger.pricing.money), so gpt-4o-mini costs
input 0.15/M = 150_000_000 femto-$/token and output 0.60/M = 600_000_000 femto-$/token.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from opentelemetry import baggage, context, propagate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Tracer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import spanledger
from serverkit import eventually
from spanledger.demo.provider import DEFAULT_REPLY, FakeProvider

RATES = """\
version: sdk-attribution-test
models:
  - match: "gpt-4o-mini*"     # the alias and the dated snapshot the response names
    provider: openai
    per_million: {input: 0.15, cache_read: 0.075, output: 0.60}
  - match: house-llm
    per_million: {input: 2, output: 8}
"""

# The fake provider's token rules: "hi there" is 8 chars -> 2 tokens, + 4 for the message,
# + 3 reply priming = 9 prompt tokens; DEFAULT_REPLY is 50 chars -> 12 completion tokens.
HI = [{"role": "user", "content": "hi there"}]
HI_PROMPT_TOKENS = 9
HI_OUTPUT_TOKENS = 12
# 9 * 150_000_000 + 12 * 600_000_000 = 1_350_000_000 + 7_200_000_000 = 8_550_000_000 femto-$
HI_COST_USD = Decimal("0.00000855")

USER = "user.id"
DEPARTMENT = "spanledger.department"
AGENT = "spanledger.agent"

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rate_sheet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rates") / "rates.yaml"
    path.write_text(RATES, encoding="utf-8")
    return path


@dataclass
class Service:
    """One instrumented process: its own provider, exporter and ledger."""

    provider: TracerProvider
    exporter: InMemorySpanExporter
    ledger: spanledger.Ledger
    tracer: Tracer

    def spans(self) -> list[ReadableSpan]:
        assert self.ledger.force_flush()
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in found]}"
        return found[0]


def make_service(name: str, rate_sheet: Path) -> Service:
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    exporter = InMemorySpanExporter()
    ledger = spanledger.instrument(
        exporter, tracer_provider=provider, rates=[rate_sheet], use_default_prices=False
    )
    return Service(provider, exporter, ledger, provider.get_tracer("tests." + name))


@pytest.fixture
def svc(rate_sheet: Path) -> Iterator[Service]:
    service = make_service("app", rate_sheet)
    yield service
    service.ledger.shutdown()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


def usd_attr(span: ReadableSpan) -> Decimal:
    """The exported `spanledger.cost.usd` as an exact decimal (the double's shortest repr)."""
    value = span.attributes["spanledger.cost.usd"]
    assert isinstance(value, float)
    return Decimal(repr(value))


async def traced_chat(
    client: openai.AsyncOpenAI, tracer: Tracer, **request: Any
) -> openai.types.chat.ChatCompletion:
    """An OpenAI chat call traced the way GenAI instrumentations do it (OTel GenAI
    semantic conventions): a CLIENT span started with the request attributes *before*
    the request is sent, response model and usage set on it when the answer is back.

    (Written out here because opentelemetry-instrumentation-openai-v2 2.4b0 cannot be
    imported next to the installed opentelemetry-util-genai 1.3b0.)"""
    model = request["model"]
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
    }
    with tracer.start_as_current_span(
        f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        response = await client.chat.completions.create(**request)
        usage = response.usage
        assert usage is not None
        cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
        span.set_attributes(
            {
                "gen_ai.response.model": response.model,
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "gen_ai.usage.cache_read.input_tokens": cached or 0,
            }
        )
        return response


class HttpService:
    """A Starlette app served by uvicorn on 127.0.0.1 (ephemeral port), background thread."""

    def __init__(self, app: Starlette) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="downstream", daemon=True
        )

    def __enter__(self) -> HttpService:
        self.thread.start()
        try:
            eventually(self._answers, f"the downstream service answers on {self.url}", timeout=10)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _answers(self) -> bool:
        if not self.thread.is_alive():
            raise RuntimeError(f"downstream service did not start on {self.url}")
        try:
            _no_proxy.open(f"{self.url}/health", timeout=1).read()
        except OSError:
            return False
        return True

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# -- in-process attribution ------------------------------------------------------------------


def test_every_span_inside_carries_the_dimensions_nested_and_in_a_task(svc: Service) -> None:
    tracer = svc.tracer

    async def in_a_task() -> None:
        with tracer.start_as_current_span("task work"):
            await asyncio.sleep(0)

    async def run() -> None:
        with (
            spanledger.attribute(user_id="u-42", department="research", agent="planner"),
            tracer.start_as_current_span("root"),
        ):
            with tracer.start_as_current_span("child"), tracer.start_as_current_span("grandchild"):
                pass
            await asyncio.create_task(in_a_task())
            # not a child of anything: a new trace, still inside the block
            tracer.start_span("detached root", context=context.Context()).end()

    asyncio.run(run())

    for name in ("root", "child", "grandchild", "task work"):
        attributes = svc.span(name).attributes
        assert attributes[USER] == "u-42", name
        assert attributes[DEPARTMENT] == "research", name
        assert attributes[AGENT] == "planner", name
    # `context=Context()` drops the baggage too: that span is outside the block's context
    assert USER not in svc.span("detached root").attributes


def test_a_spans_own_user_id_wins_over_baggage(svc: Service) -> None:
    with spanledger.attribute(user_id="u-42", department="research"):
        svc.tracer.start_span("own user", attributes={USER: "u-7"}).end()
        svc.tracer.start_span("inherited user").end()

    own = svc.span("own user").attributes
    assert own[USER] == "u-7"
    assert own[DEPARTMENT] == "research"  # what the span does not set still comes from baggage
    assert svc.span("inherited user").attributes[USER] == "u-42"


def test_spans_outside_the_block_do_not_carry_the_dimensions(svc: Service) -> None:
    svc.tracer.start_span("before").end()
    with spanledger.attribute(user_id="u-42", department="research", agent="planner"):
        svc.tracer.start_span("inside").end()
    svc.tracer.start_span("after").end()

    assert svc.span("inside").attributes[USER] == "u-42"
    for name in ("before", "after"):
        attributes = svc.span(name).attributes
        assert not {USER, DEPARTMENT, AGENT} & set(attributes), name


def test_nested_blocks_add_and_override_dimensions(svc: Service) -> None:
    with spanledger.attribute(user_id="u-42", department="research"):
        with spanledger.attribute(agent="critic", department="legal"):
            svc.tracer.start_span("inner").end()
        svc.tracer.start_span("outer again").end()

    inner = svc.span("inner").attributes
    assert (inner[USER], inner[DEPARTMENT], inner[AGENT]) == ("u-42", "legal", "critic")
    outer = svc.span("outer again").attributes
    assert (outer[USER], outer[DEPARTMENT]) == ("u-42", "research")
    assert AGENT not in outer


def test_extra_keywords_become_spanledger_attributes(svc: Service) -> None:
    with spanledger.attribute(
        user_id="u-42", tenant="acme", conversation="conv-1", project="apollo", cost_center="cc-9"
    ):
        svc.tracer.start_span("work").end()

    attributes = svc.span("work").attributes
    assert attributes["spanledger.project"] == "apollo"
    assert attributes["spanledger.cost_center"] == "cc-9"
    assert attributes["spanledger.tenant"] == "acme"
    assert attributes["gen_ai.conversation.id"] == "conv-1"
    assert "project" not in attributes


def test_unrelated_baggage_is_not_copied_onto_spans(svc: Service) -> None:
    token = context.attach(baggage.set_baggage("session.secret", "s3cr3t"))
    try:
        with spanledger.attribute(user_id="u-42"):
            svc.tracer.start_span("work").end()
    finally:
        context.detach(token)

    attributes = svc.span("work").attributes
    assert attributes[USER] == "u-42"
    assert "session.secret" not in attributes


def test_an_attributed_llm_span_is_priced_and_keeps_its_user(svc: Service) -> None:
    with (
        spanledger.attribute(user_id="u-42"),
        svc.tracer.start_as_current_span(
            "chat house-llm",
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "house-llm"},
        ) as span,
    ):
        span.set_attributes({"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 50})

    exported = svc.span("chat house-llm")
    assert exported.attributes[USER] == "u-42"
    # 1000 * $2/M + 50 * $8/M = $0.002 + $0.0004 = $0.0024
    assert usd_attr(exported) == Decimal("0.0024")
    assert exported.attributes["spanledger.price.source"] == "sdk-attribution-test"


# -- two services over real HTTP --------------------------------------------------------------


def downstream_app(service: Service, fake: FakeProvider) -> Starlette:
    async def plan(request: Request) -> Response:
        # As server instrumentations (ASGI, WSGI) do: make the extracted context current,
        # so its baggage reaches every span of the request, not only the server span.
        # (`start_as_current_span(context=extracted)` alone would give the server span the
        # remote parent but leave the baggage out of the context its children start in.)
        token = context.attach(propagate.extract(request.headers))
        try:
            with service.tracer.start_as_current_span("POST /plan", kind=SpanKind.SERVER):
                async with openai.AsyncOpenAI(
                    base_url=f"{fake.url}/v1",
                    api_key="test",
                    max_retries=0,
                    http_client=httpx.AsyncClient(trust_env=False),
                ) as client:
                    response = await traced_chat(
                        client, service.tracer, model="gpt-4o-mini", messages=HI
                    )
        finally:
            context.detach(token)
        return JSONResponse({"reply": response.choices[0].message.content})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/plan", plan, methods=["POST"]), Route("/health", health, methods=["GET"])]
    )


def test_attribution_and_trace_cross_a_real_http_hop(rate_sheet: Path, fake: FakeProvider) -> None:
    fake.reset()
    upstream = make_service("upstream", rate_sheet)
    downstream = make_service("downstream", rate_sheet)
    try:
        with (
            HttpService(downstream_app(downstream, fake)) as server,
            spanledger.attribute(user_id="u-42", department="research"),
            upstream.tracer.start_as_current_span("call planner", kind=SpanKind.CLIENT),
            httpx.Client(trust_env=False, timeout=30) as http,
        ):
            headers: dict[str, str] = {}
            propagate.inject(headers)  # default propagators: tracecontext + baggage
            answer = http.post(f"{server.url}/plan", headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"reply": DEFAULT_REPLY}
        assert "traceparent" in headers
        assert "user.id=u-42" in headers["baggage"]

        caller = upstream.span("call planner")
        handler = downstream.span("POST /plan")
        llm = downstream.span("chat gpt-4o-mini")

        # one trace: upstream client span -> downstream server span -> LLM span
        assert handler.context.trace_id == caller.context.trace_id
        assert llm.context.trace_id == caller.context.trace_id
        assert handler.parent is not None and handler.parent.is_remote
        assert handler.parent.span_id == caller.context.span_id
        assert llm.parent is not None and llm.parent.span_id == handler.context.span_id

        # attribution travelled as baggage and was copied on in the downstream process
        assert caller.attributes[USER] == "u-42"
        assert handler.attributes[USER] == "u-42"
        assert llm.attributes[USER] == "u-42"
        assert llm.attributes[DEPARTMENT] == "research"
        assert llm.resource.attributes["service.name"] == "downstream"

        # priced by the downstream ledger from the usage the provider returned
        assert [r.usage["prompt_tokens"] for r in fake.requests] == [HI_PROMPT_TOKENS]
        assert [r.usage["completion_tokens"] for r in fake.requests] == [HI_OUTPUT_TOKENS]
        assert llm.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
        assert llm.attributes["spanledger.price.status"] == "priced"
        assert usd_attr(llm) == HI_COST_USD  # 9 * 0.15/M + 12 * 0.60/M
        # neither side priced a span that is not an LLM call
        assert "spanledger.cost.usd" not in caller.attributes
        assert "spanledger.cost.usd" not in handler.attributes
        assert upstream.ledger.health.errors == {}
        assert downstream.ledger.health.errors == {}
    finally:
        upstream.ledger.shutdown()
        downstream.ledger.shutdown()


def test_baggage_from_a_caller_cannot_forge_costs(svc: Service) -> None:
    # What `propagate.extract` yields for an incoming request with this header.
    incoming = {"baggage": "user.id=u-9,spanledger.cost.usd=1000000,spanledger.price.status=priced"}
    parent = propagate.extract(incoming)
    with svc.tracer.start_as_current_span("POST /plan", context=parent, kind=SpanKind.SERVER):
        pass

    handler = svc.span("POST /plan")
    assert handler.attributes[USER] == "u-9"  # attribution from baggage is wanted ...
    # ... but a request handler is not an LLM call and costs nothing
    assert "spanledger.cost.usd" not in handler.attributes
    assert "spanledger.price.status" not in handler.attributes
