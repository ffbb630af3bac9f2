"""What SpanLedger adds to each LLM span in the host process.

Baseline and candidate are measured in the same run, on the same spans:

* plain   — the OTel SDK: TracerProvider + BatchSpanProcessor + a no-op exporter;
* ledger  — the same provider set up by `spanledger.instrument(...)`: the
            SpanLedgerProcessor (attribution, budgets) and the CostExporter that prices
            every LLM span and exports an enriched copy, plus spend metrics;
* ledger+attribution+budget — the same, with the spans inside `attribute(...)` and
            `budget(...)` (baggage copied onto every span, each call admitted and charged).

Each round creates N spans shaped like the OpenAI instrumentation's chat spans (request
attributes at start, response and usage attributes at end) and then flushes the batch
processor, so the export thread's work is inside the measurement. Three figures per span:
wall time, CPU of the whole process (both threads), and CPU of the thread that makes the
calls (what a request of the host application waits for). Best of several rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import spanledger
from spanledger.pricing import PriceBook
from spanledger.sdk import CostExporter, SpanLedgerProcessor
from spanledger.sdk.metrics import LedgerMetrics

MODELS = (
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
    ("openai", "o3-mini", "o3-mini-2025-01-31"),
)


class NullExporter(SpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def make_spans(provider: TracerProvider, count: int) -> None:
    tracer = provider.get_tracer("openai-v2-like")
    for number in range(count):
        system, model, response_model = MODELS[number % len(MODELS)]
        with tracer.start_as_current_span(
            f"chat {model}",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.system": system,
                "gen_ai.request.model": model,
                "gen_ai.request.temperature": 0.2,
                "server.address": "api.example.com",
                "server.port": 443,
            },
        ) as span:
            span.set_attribute("gen_ai.response.model", response_model)
            span.set_attribute("gen_ai.response.id", f"chatcmpl-{number}")
            span.set_attribute("gen_ai.response.finish_reasons", ("stop",))
            span.set_attribute("gen_ai.usage.input_tokens", 1000 + number % 5000)
            span.set_attribute("gen_ai.usage.output_tokens", 50 + number % 700)
            if number % 3 == 0:
                span.set_attribute("gen_ai.usage.cache_read.input_tokens", 512)


def plain() -> tuple[TracerProvider, NullExporter]:
    exporter = NullExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1 << 16))
    return provider, exporter


def ledger() -> tuple[TracerProvider, NullExporter]:
    """What `spanledger.instrument(exporter)` sets up, composed by hand to give the batch
    processor the same queue size as the baseline (neither may drop spans)."""
    exporter = NullExporter()
    provider = TracerProvider()
    book = PriceBook()
    provider.add_span_processor(SpanLedgerProcessor(book))
    cost_exporter = CostExporter(exporter, book, metrics=LedgerMetrics())
    provider.add_span_processor(BatchSpanProcessor(cost_exporter, max_queue_size=1 << 16))
    return provider, exporter


def in_budget() -> AbstractContextManager[object]:
    stack = ExitStack()
    stack.enter_context(spanledger.attribute(user_id="u-42", department="research"))
    stack.enter_context(spanledger.budget(max_usd=10**9, max_llm_calls=10**9))
    return stack


def measure(
    setup: Callable[[], tuple[TracerProvider, NullExporter]],
    scope: Callable[[], AbstractContextManager[object]],
    count: int,
) -> dict[str, float]:
    provider, exporter = setup()
    make_spans(provider, 200)  # warm-up: imports, price cache
    provider.force_flush()
    wall, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
    with scope():
        make_spans(provider, count)
    provider.force_flush()
    result = {
        "wall_us": (time.perf_counter() - wall) / count * 1e6,
        "cpu_us": (time.process_time() - cpu) / count * 1e6,
        "host_thread_us": (time.thread_time() - thread) / count * 1e6,
    }
    provider.shutdown()
    assert exporter.exported == count + 200, f"lost spans: {exporter.exported}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    variants = {
        "plain": (plain, nullcontext),
        "ledger": (ledger, nullcontext),
        "ledger+attribution+budget": (ledger, in_budget),
    }
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):  # interleaved, so drift affects all variants alike
        for name, (setup, scope) in variants.items():
            result = measure(setup, scope, args.spans)
            if name not in best:
                best[name] = result
            else:
                best[name] = {k: min(v, best[name][k]) for k, v in result.items()}

    base = best["plain"]
    report = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "spans": args.spans,
        "rounds": args.rounds,
        "per_span": best,
        "overhead": {
            name: {k: figures[k] / base[k] - 1 for k in figures}
            for name, figures in best.items()
            if name != "plain"
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"Python {report['python']}, {report['cpus']} CPUs, {args.spans} LLM spans per round, "
        f"best of {args.rounds} rounds"
    )
    print(f"{'variant':28} {'wall µs':>9} {'cpu µs':>9} {'host µs':>9}")
    for name, figures in best.items():
        print(
            f"{name:28} {figures['wall_us']:9.2f} {figures['cpu_us']:9.2f} "
            f"{figures['host_thread_us']:9.2f}"
        )
    print("overhead vs plain SDK (target: at most +10% per LLM span):")
    for name, extra in report["overhead"].items():
        print(
            f"  {name:26} wall {extra['wall_us']:+.1%}  process cpu {extra['cpu_us']:+.1%}  "
            f"host thread {extra['host_thread_us']:+.1%}"
        )


if __name__ == "__main__":
    main()
