"""Generate the bundled sample: a week of an agent application's traces, as the OTel
Collector's `file` exporter would have written them.

    python examples/make_sample.py [OUT_DIR]

writes `agent-traces.jsonl` (OTLP/JSON, one ExportTraceServiceRequest per line, hex IDs)
and `agent-traces.binpb` (the same requests as a `format: proto` stream, each message
preceded by its 4-byte big-endian length). The spans are made by the real OpenTelemetry
SDK (a seeded IdGenerator, explicit timestamps) and encoded by its real OTLP encoder, so
every run writes the same bytes.

What is in it (the demo and tests/test_sample.py rely on this):

- 7 traces, 2026-11-02 to 2026-11-04, users alice, bob, carol, dave, erin and one
  scheduled job with no user; departments research, sales, engineering, finance,
  marketing, operations; services `support-assistant` and `ops-executor`.
- A `supervisor` agent (`invoke_agent`) delegating to `research` and `execution`
  sub-agents; LLM calls with the current OTel GenAI attributes for openai gpt-4o-mini,
  gpt-4o, o3-mini (reasoning tokens) and anthropic claude-sonnet-4-5 / claude-haiku-4-5
  (prompt cache written, then read); tool calls (`execute_tool`).
- A rate-limited gpt-4o call (status ERROR, error.type RateLimitError, HTTP 429) retried
  successfully under the same parent.
- A runaway loop: `fetch_page` called 15 times by the research agent, each followed by a
  gpt-4o-mini call.
- One span per other dialect: OpenInference, OpenLLMetry, Vercel AI SDK.
- A model no price list knows (`acme-internal-llm-v2`), a fine-tuned model priced by
  examples/rates.yaml, and a span carrying a caller-reported cost (`gen_ai.usage.cost`).
- The invoice trace is split over two requests, its `ops-executor` children written two
  lines before their parents, with another trace in between.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

HERE = Path(__file__).resolve().parent
JSONL_NAME = "agent-traces.jsonl"
BINPB_NAME = "agent-traces.binpb"
SEED = 20261102

SUPPORT = "support-assistant"
EXECUTOR = "ops-executor"
FINE_TUNED = "ft:gpt-4o-mini:acme:invoice-parser:B7x2k9Qa"
UNKNOWN_MODEL = "acme-internal-llm-v2"

# (provider, request model) -> response model, as the providers report it
RESPONSE_MODELS = {
    ("openai", "gpt-4o-mini"): "gpt-4o-mini-2024-07-18",
    ("openai", "gpt-4o"): "gpt-4o-2024-08-06",
    ("openai", "o3-mini"): "o3-mini-2025-01-31",
    ("openai", FINE_TUNED): FINE_TUNED,
    ("anthropic", "claude-sonnet-4-5"): "claude-sonnet-4-5-20250929",
    ("anthropic", "claude-haiku-4-5"): "claude-haiku-4-5-20251001",
    ("acme", UNKNOWN_MODEL): UNKNOWN_MODEL,
}
SERVERS = {
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "acme": "llm.acme.internal",
}


class SeededIds(IdGenerator):
    """Trace and span IDs from a seeded generator: the same sample on every run."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


def utc_ns(text: str) -> int:
    moment = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    return int(moment.timestamp()) * 10**9


class Sample:
    """Two services' tracer providers sharing one exporter and one seeded IdGenerator."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        ids = SeededIds(SEED)
        self.providers = {}
        for service, version in ((SUPPORT, "3.4.1"), (EXECUTOR, "1.9.0")):
            # Resource(...) rather than Resource.create(...): no environment variables,
            # no SDK version, so the sample does not change with the machine.
            resource = Resource(
                {
                    "service.name": service,
                    "service.version": version,
                    "service.namespace": "acme-assist",
                    "deployment.environment.name": "production",
                    "telemetry.sdk.language": "python",
                    "telemetry.sdk.name": "opentelemetry",
                }
            )
            provider = TracerProvider(resource=resource, id_generator=ids)
            provider.add_span_processor(SimpleSpanProcessor(self.exporter))
            self.providers[service] = provider
        self.counter = 0

    def tracer(self, service: str, scope: str, version: str | None = None) -> trace.Tracer:
        return self.providers[service].get_tracer(scope, version)

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:06d}"

    def take(self) -> list[ReadableSpan]:
        """The spans finished since the last call, in the order they ended."""
        spans = list(self.exporter.get_finished_spans())
        self.exporter.clear()
        return spans


class TraceBuilder:
    """Lays one trace out in time: spans run one after the other, parents around their
    children, every timestamp explicit."""

    def __init__(self, sample: Sample, start: str) -> None:
        self.sample = sample
        self.now = utc_ns(start)
        self.stack: list[trace.Span] = []

    def advance(self, ms: int) -> int:
        self.now += ms * 1_000_000
        return self.now

    @contextmanager
    def span(
        self,
        tracer: trace.Tracer,
        name: str,
        attributes: dict[str, Any],
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        took_ms: int = 0,
    ) -> Iterator[trace.Span]:
        context = trace.set_span_in_context(self.stack[-1]) if self.stack else Context()
        span = tracer.start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=self.advance(2)
        )
        self.stack.append(span)
        try:
            yield span
        finally:
            self.stack.pop()
            span.end(end_time=self.advance(took_ms + 3))

    # --- the kinds of span an agent application makes -----------------------------------

    def request(self, user: str | None, department: str, conversation: str) -> Any:
        attributes: dict[str, Any] = {
            "http.request.method": "POST",
            "http.route": "/v1/assist",
            "url.path": "/v1/assist",
            "http.response.status_code": 200,
            "department": department,
            "gen_ai.conversation.id": conversation,
        }
        if user is not None:
            attributes["user.id"] = user
        tracer = self.sample.tracer(SUPPORT, "opentelemetry.instrumentation.fastapi", "0.58b0")
        return self.span(tracer, "POST /v1/assist", attributes, kind=SpanKind.SERVER)

    def agent(self, name: str, service: str = SUPPORT, **extra: Any) -> Any:
        attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": name,
            "gen_ai.agent.id": f"agent-{name}",
            **extra,
        }
        tracer = self.sample.tracer(service, "acme.agents", "2.1.0")
        return self.span(tracer, f"invoke_agent {name}", attributes)

    def tool(self, name: str, took_ms: int, service: str = SUPPORT, **extra: Any) -> None:
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.id": self.sample.next_id("call_"),
            **extra,
        }
        tracer = self.sample.tracer(service, "acme.agents", "2.1.0")
        with self.span(tracer, f"execute_tool {name}", attributes, took_ms=took_ms):
            pass

    def chat(
        self,
        provider: str,
        model: str,
        *,
        uncached: int,
        output: int,
        cache_read: int = 0,
        cache_write: int = 0,
        reasoning: int = 0,
        took_ms: int,
        service: str = SUPPORT,
        finish: str = "stop",
        **extra: Any,
    ) -> None:
        """One LLM call with the current OTel GenAI attributes. `input_tokens` counts
        every prompt token, cached or not; `output_tokens` includes reasoning."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": 4096,
            "gen_ai.response.model": RESPONSE_MODELS[(provider, model)],
            "gen_ai.response.id": self.sample.next_id("resp_"),
            "gen_ai.response.finish_reasons": (finish,),
            "gen_ai.usage.input_tokens": uncached + cache_read + cache_write,
            "gen_ai.usage.output_tokens": output,
            "server.address": SERVERS[provider],
            "server.port": 443,
        }
        if cache_read:
            attributes["gen_ai.usage.cache_read.input_tokens"] = cache_read
        if cache_write:
            attributes["gen_ai.usage.cache_creation.input_tokens"] = cache_write
        if reasoning:
            attributes["gen_ai.usage.reasoning.output_tokens"] = reasoning
        attributes.update(extra)
        tracer = self.sample.tracer(service, "opentelemetry.instrumentation.genai", "0.4b0")
        with self.span(tracer, f"chat {model}", attributes, kind=SpanKind.CLIENT, took_ms=took_ms):
            pass

    def failing_chat(self, model: str, took_ms: int, service: str = SUPPORT) -> None:
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": 4096,
            "server.address": SERVERS["openai"],
            "server.port": 443,
            "error.type": "RateLimitError",
            "http.response.status_code": 429,
        }
        message = f"Error code: 429 - Rate limit reached for {model} in organization org-acme"
        tracer = self.sample.tracer(service, "opentelemetry.instrumentation.genai", "0.4b0")
        with self.span(
            tracer, f"chat {model}", attributes, kind=SpanKind.CLIENT, took_ms=took_ms
        ) as span:
            span.add_event(
                "exception",
                {"exception.type": "openai.RateLimitError", "exception.message": message},
                timestamp=self.now + took_ms * 1_000_000,
            )
            span.set_status(Status(StatusCode.ERROR, message))

    # --- other instrumentation dialects --------------------------------------------------

    def openinference_llm(self) -> None:
        """Arize OpenInference (Phoenix) instrumentation of an OpenAI call."""
        attributes = {
            "openinference.span.kind": "LLM",
            "llm.system": "openai",
            "llm.provider": "openai",
            "llm.model_name": "gpt-4o-mini-2024-07-18",
            "llm.token_count.prompt": 2816,
            "llm.token_count.prompt_details.cache_read": 1024,
            "llm.token_count.completion": 240,
            "llm.token_count.total": 3056,
            "llm.invocation_parameters": '{"temperature": 0.2}',
        }
        tracer = self.sample.tracer(SUPPORT, "openinference.instrumentation.openai", "0.1.30")
        with self.span(tracer, "ChatCompletion", attributes, took_ms=1450):
            pass

    def openllmetry_llm(self) -> None:
        """OpenLLMetry (Traceloop) instrumentation of an Anthropic call: prompt_tokens
        includes the cache reads."""
        attributes = {
            "gen_ai.system": "Anthropic",
            "llm.request.type": "chat",
            "gen_ai.request.model": "claude-haiku-4-5",
            "gen_ai.response.model": "claude-haiku-4-5-20251001",
            "gen_ai.usage.prompt_tokens": 2600,
            "gen_ai.usage.cache_read_input_tokens": 1024,
            "gen_ai.usage.completion_tokens": 310,
            "llm.usage.total_tokens": 2910,
        }
        tracer = self.sample.tracer(SUPPORT, "opentelemetry.instrumentation.anthropic", "0.47.3")
        with self.span(tracer, "anthropic.chat", attributes, kind=SpanKind.CLIENT, took_ms=1900):
            pass

    def vercel_llm(self, user: str) -> None:
        """Vercel AI SDK telemetry (`experimental_telemetry`), written by a Node service
        and forwarded with the rest."""
        attributes = {
            "operation.name": "ai.generateText",
            "ai.operationId": "ai.generateText",
            "ai.model.id": "gpt-4o",
            "ai.model.provider": "openai.chat",
            "ai.telemetry.functionId": "draft-campaign-copy",
            "ai.telemetry.metadata.userId": user,
            "ai.usage.inputTokens": 1900,
            "ai.usage.outputTokens": 520,
            "ai.response.finishReason": "stop",
        }
        tracer = self.sample.tracer(SUPPORT, "ai")
        with self.span(tracer, "ai.generateText", attributes, took_ms=5200):
            pass


# --- the traces ---------------------------------------------------------------------------


def competitive_analysis(sample: Sample) -> list[list[ReadableSpan]]:
    """alice (research): Anthropic models; the system prompt is written to the prompt
    cache by the first call of each model and read by the later ones."""
    t = TraceBuilder(sample, "2026-11-02T09:00:00")
    with t.request("alice", "research", "conv-alice-0001"), t.agent("supervisor"):
        t.chat(
            "anthropic",
            "claude-sonnet-4-5",
            uncached=1180,
            cache_write=4096,
            output=350,
            took_ms=4200,
            finish="tool_use",
        )
        with t.agent("research"):
            t.tool("web_search", 820, **{"gen_ai.tool.call.arguments": '{"q": "acme rivals"}'})
            t.chat(
                "anthropic",
                "claude-haiku-4-5",
                uncached=2400,
                cache_write=2048,
                output=420,
                took_ms=2100,
                finish="tool_use",
            )
            t.tool("web_search", 760, **{"gen_ai.tool.call.arguments": '{"q": "rival pricing"}'})
            t.chat(
                "anthropic",
                "claude-haiku-4-5",
                uncached=1830,
                cache_read=2048,
                output=380,
                took_ms=1900,
            )
        t.chat(
            "anthropic",
            "claude-sonnet-4-5",
            uncached=2650,
            cache_read=4096,
            output=910,
            took_ms=8800,
        )
    return [sample.take()]


def quote_with_retry(sample: Sample) -> list[list[ReadableSpan]]:
    """bob (sales): the execution agent in ops-executor is rate-limited once and retries."""
    t = TraceBuilder(sample, "2026-11-02T10:15:00")
    with t.request("bob", "sales", "conv-bob-0001"), t.agent("supervisor"):
        t.chat(
            "openai",
            "gpt-4o",
            uncached=870,
            cache_read=1024,
            output=120,
            took_ms=1600,
            finish="tool_calls",
        )
        # user.id reaches the other service as W3C baggage
        with t.agent("execution", service=EXECUTOR, **{"user.id": "bob"}):
            t.tool("crm_lookup", 240, service=EXECUTOR)
            t.failing_chat("gpt-4o", 310, service=EXECUTOR)
            t.advance(2000)  # back-off
            t.chat(
                "openai",
                "gpt-4o",
                uncached=1490,
                cache_read=1024,
                output=300,
                took_ms=2900,
                service=EXECUTOR,
            )
        t.chat("openai", "gpt-4o-mini", uncached=2210, output=180, took_ms=1100)
    return [sample.take()]


def runaway_research(sample: Sample) -> list[list[ReadableSpan]]:
    """carol (engineering): the research agent fetches the same page 15 times."""
    t = TraceBuilder(sample, "2026-11-02T14:30:00")
    with t.request("carol", "engineering", "conv-carol-0001"), t.agent("supervisor"):
        t.chat("openai", "o3-mini", uncached=640, output=1410, reasoning=1152, took_ms=9600)
        with t.agent("research"):
            for turn in range(15):
                t.tool("fetch_page", 430, **{"url.full": "https://docs.acme.example/api/limits"})
                t.chat(
                    "openai",
                    "gpt-4o-mini",
                    uncached=1100 + 150 * turn,
                    cache_read=1024 * (turn // 2),
                    output=64,
                    took_ms=700,
                    finish="tool_calls",
                )
        t.chat("openai", "gpt-4o-mini", uncached=3300, cache_read=1024, output=240, took_ms=1500)
    return [sample.take()]


def invoice_run(sample: Sample) -> list[list[ReadableSpan]]:
    """dave (finance): the ops-executor part reaches the Collector first (its batch is
    flushed while the supervisor is still running): two requests, children first."""
    t = TraceBuilder(sample, "2026-11-03T09:05:00")
    with t.request("dave", "finance", "conv-dave-0001"), t.agent("supervisor"):
        t.chat("openai", "gpt-4o-mini", uncached=690, output=40, took_ms=600)
        with t.agent("execution", service=EXECUTOR):
            t.tool("sql_query", 380, service=EXECUTOR)
            t.chat("openai", FINE_TUNED, uncached=3120, output=650, took_ms=2300, service=EXECUTOR)
            t.tool("sql_query", 290, service=EXECUTOR)
        t.chat("openai", "o3-mini", uncached=1520, output=2210, reasoning=1700, took_ms=14200)
    spans = sample.take()
    children = [span for span in spans if span.resource.attributes["service.name"] == EXECUTOR]
    parents = [span for span in spans if span.resource.attributes["service.name"] != EXECUTOR]
    return [children, parents]


def campaign_draft(sample: Sample) -> list[list[ReadableSpan]]:
    """erin (marketing): spans from other instrumentations, an in-house model no price
    list knows, and a gateway that records its own cost."""
    t = TraceBuilder(sample, "2026-11-03T09:05:02")
    with t.request("erin", "marketing", "conv-erin-0001"), t.agent("supervisor"):
        t.openinference_llm()
        t.openllmetry_llm()
        t.vercel_llm("erin")
        t.chat("acme", UNKNOWN_MODEL, uncached=1500, output=200, took_ms=900)
        # the LLM gateway writes what it charged (list price, before the discount)
        t.chat(
            "openai",
            "gpt-4o-mini",
            uncached=1500,
            output=300,
            took_ms=1300,
            **{"gen_ai.usage.cost": 0.000405},
        )
    return [sample.take()]


def follow_up(sample: Sample) -> list[list[ReadableSpan]]:
    """bob (sales) again, the next day: mostly cache reads."""
    t = TraceBuilder(sample, "2026-11-04T16:45:00")
    with t.request("bob", "sales", "conv-bob-0001"), t.agent("supervisor"):
        t.chat("openai", "gpt-4o-mini", uncached=410, cache_read=1536, output=220, took_ms=900)
        with t.agent("research"):
            t.tool("web_search", 640)
            t.chat(
                "anthropic",
                "claude-haiku-4-5",
                uncached=950,
                cache_write=2048,
                output=260,
                took_ms=1700,
            )
            t.chat(
                "anthropic",
                "claude-haiku-4-5",
                uncached=300,
                cache_read=2048,
                output=150,
                took_ms=1200,
            )
    return [sample.take()]


def nightly_digest(sample: Sample) -> list[list[ReadableSpan]]:
    """A scheduled job in ops-executor: no user, only a department."""
    t = TraceBuilder(sample, "2026-11-04T02:00:00")
    tracer = sample.tracer(EXECUTOR, "acme.jobs", "1.0.0")
    attributes = {"job.name": "nightly-digest", "department": "operations"}
    with t.span(tracer, "job nightly-digest", attributes), t.agent("execution", EXECUTOR):
        t.tool("sql_query", 1200, service=EXECUTOR)
        t.chat("openai", "gpt-4o-mini", uncached=5200, output=700, took_ms=3100, service=EXECUTOR)
    return [sample.take()]


def build() -> list[ExportTraceServiceRequest]:
    """The sample's requests, in file order."""
    sample = Sample()
    analysis = competitive_analysis(sample)
    retry = quote_with_retry(sample)
    loop = runaway_research(sample)
    invoice_children, invoice_parents = invoice_run(sample)
    campaign = campaign_draft(sample)
    digest = nightly_digest(sample)
    follow = follow_up(sample)
    batches: list[Sequence[ReadableSpan]] = [
        *analysis,
        *retry,
        *loop,
        invoice_children,
        *campaign,  # arrives while the invoice supervisor is still running
        invoice_parents,
        *digest,
        *follow,
    ]
    return [encode_spans(batch) for batch in batches]


def to_otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON: protobuf's JSON mapping with integer enums and hex (not base64) IDs."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document


def render(requests: Sequence[ExportTraceServiceRequest]) -> tuple[bytes, bytes]:
    """(JSON lines, length-prefixed protobuf stream) of the requests."""
    lines = [json.dumps(to_otlp_json(request), separators=(",", ":")) for request in requests]
    jsonl = ("\n".join(lines) + "\n").encode()
    messages = [request.SerializeToString(deterministic=True) for request in requests]
    binpb = b"".join(len(message).to_bytes(4, "big") + message for message in messages)
    return jsonl, binpb


def main(out_dir: Path = HERE) -> None:
    jsonl, binpb = render(build())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / JSONL_NAME).write_bytes(jsonl)
    (out_dir / BINPB_NAME).write_bytes(binpb)
    print(f"wrote {out_dir / JSONL_NAME} ({len(jsonl):,} bytes)")
    print(f"wrote {out_dir / BINPB_NAME} ({len(binpb):,} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
