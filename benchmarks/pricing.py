"""Pricing throughput: SpanLedger's PriceBook against `genai_prices.calc_price`.

What is measured, in one run, on one realistic mix of synthetic LLM spans:

1. baseline: `genai_prices.calc_price(Usage(...), model, provider_id=...,
   genai_request_timestamp=...)` per span (spans whose model genai-prices does not know raise
   LookupError; they are counted and skipped);
2. ours, price only: `PriceBook.price(usage, provider=..., model=..., start_ns=...)` with
   `Usage`, provider and model derived before timing: the same inputs the baseline gets;
3. ours, full core: `PriceBook.price_span(attrs, start_ns)`: normalize the attribute dialect,
   identify provider and model, and price.

Why: SpanLedger prices every span of every trace, so pricing must cost next to nothing next to
the export itself. The PriceBook looks rates up once per (provider, model, day) and then does
integer arithmetic; the target is price-only >= 50x the throughput of calling genai-prices per
span. A fast price is only worth having if it is the same price, so the run ends with a sanity
check: for every span, our total cost (exact Decimal dollars) must equal genai-prices' total.

Method: each benchmark runs one warm-up round over all spans (which also fills the PriceBook
cache and genai-prices' own lookup cache), then 5 timed rounds; the best round is reported.
A round is one `time.perf_counter_ns()` interval around a plain loop over all spans, with the
garbage collector paused (as `timeit` does). Inputs for every benchmark, including the
baseline's `genai_prices.Usage` objects and timestamps, are built before timing, so no side is
charged for building its inputs.

Run: `make bench`, or `.venv/bin/python benchmarks/pricing.py [--spans N] [--seed S] [--json]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import version
from typing import Any

import genai_prices

from spanledger import conventions as c
from spanledger.pricing import Cost, PriceBook, usd
from spanledger.usage import Usage, model_of, normalize, provider_of

ROUNDS = 5
DEFAULT_SPANS = 10_000
DEFAULT_SEED = 20261125
TARGET_RATIO = 50.0
SHOW_MISMATCHES = 5

NS_PER_DAY = 86_400 * 10**9
# Span start times: 60 days that include the 2026-03-13 price change of claude-sonnet-4-6 and
# claude-opus-4-6 (their 200k-token tiers are dropped), so spans fall in two price periods.
WINDOW_START = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
WINDOW_DAYS = 60
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# -- the span mix ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ModelSpec:
    provider: str  # genai-prices provider id: what the baseline is given
    request: str  # gen_ai.request.model
    response: str  # gen_ai.response.model: what was billed, and what both sides price
    weight: float  # share of spans
    max_input: int  # context window: long prompts are drawn up to this
    reasoning: bool = False  # reports reasoning tokens
    cache_writes: bool = False  # reports prompt-cache writes (Anthropic)
    known: bool = True  # genai-prices has a price for it


MODELS: tuple[ModelSpec, ...] = (
    # tiered: all tokens at the higher rate above 272k prompt tokens
    ModelSpec("openai", "gpt-5.4", "gpt-5.4-2026-03-05", 13, 1_050_000, reasoning=True),
    ModelSpec("openai", "gpt-5-mini", "gpt-5-mini-2025-08-07", 16, 400_000, reasoning=True),
    ModelSpec("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 12, 128_000),
    # tiered above 200k until 2026-03-13, flat from then on: two price periods in the window
    ModelSpec("anthropic", "claude-sonnet-4-6", "claude-sonnet-4-6", 17, 1_000_000, True, True),
    ModelSpec("anthropic", "claude-opus-4-6", "claude-opus-4-6", 6, 1_000_000, True, True),
    ModelSpec(
        "anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001", 11, 200_000, cache_writes=True
    ),
    # tiered above 200k
    ModelSpec("google", "gemini-3-pro-preview", "gemini-3-pro-preview", 8, 1_000_000, True),
    ModelSpec("google", "gemini-2.5-flash", "gemini-2.5-flash", 12, 1_000_000, reasoning=True),
    # models nobody has a price for (self-hosted, internal aliases)
    ModelSpec("openai", "acme-router-v2", "acme-router-v2", 1.5, 128_000, known=False),
    ModelSpec("anthropic", "claude-internal-eval", "claude-internal-eval", 1, 200_000, known=False),
    ModelSpec(
        "google", "gemini-ultra-internal", "gemini-ultra-internal", 1, 1_000_000, known=False
    ),
)

DIALECT_WEIGHTS = {"otel_genai": 80, "openinference": 10, "openllmetry": 10}

# How each instrumentation family names the provider (all map to the genai-prices id).
PROVIDER_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "otel_genai": {
        "openai": ("openai",),
        "anthropic": ("anthropic",),
        "google": ("gcp.gemini", "gcp.vertex_ai"),
    },
    "openinference": {"openai": ("openai",), "anthropic": ("anthropic",), "google": ("google",)},
    "openllmetry": {"openai": ("openai",), "anthropic": ("Anthropic",), "google": ("Gemini",)},
}
SERVER = {
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "google": "generativelanguage.googleapis.com",
}


@dataclass(frozen=True, slots=True)
class Tokens:
    """The ground truth of one call, in genai-prices' terms (input includes cache)."""

    input_total: int
    cache_read: int
    cache_write: int
    output: int
    reasoning: int


@dataclass(frozen=True, slots=True)
class SynthSpan:
    spec: ModelSpec
    dialect: str
    start_ns: int
    tokens: Tokens
    attrs: dict[str, Any]


def draw_tokens(rng: random.Random, spec: ModelSpec) -> Tokens:
    if rng.random() < 0.05:  # long-context calls: some cross a 200k/272k tier threshold
        input_total = rng.randint(min(150_000, spec.max_input // 2), min(400_000, spec.max_input))
    else:
        input_total = 1 + int(min(rng.lognormvariate(math.log(2_500), 1.1), 120_000))
    cache_read = int(input_total * rng.uniform(0.3, 0.95)) if rng.random() < 0.45 else 0
    cache_write = 0
    if spec.cache_writes and rng.random() < 0.3:
        cache_write = int((input_total - cache_read) * rng.uniform(0.2, 1.0))
    output = 1 + int(min(rng.lognormvariate(math.log(350), 1.0), 32_000))
    reasoning = 0
    if spec.reasoning and rng.random() < 0.5:
        reasoning = int(output * rng.uniform(0.2, 0.9))
    return Tokens(input_total, cache_read, cache_write, output, reasoning)


def span_attrs(
    rng: random.Random, spec: ModelSpec, dialect: str, tokens: Tokens, n: int
) -> dict[str, Any]:
    """The attributes an instrumentation of `dialect` would put on this span."""
    provider = rng.choice(PROVIDER_NAMES[dialect][spec.provider])
    if dialect == "otel_genai":
        attrs: dict[str, Any] = {
            c.GEN_AI_OPERATION_NAME: "chat",
            c.GEN_AI_PROVIDER_NAME: provider,
            c.GEN_AI_REQUEST_MODEL: spec.request,
            c.GEN_AI_RESPONSE_MODEL: spec.response,
            "gen_ai.request.max_tokens": 4096,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.response.id": f"resp_{n:08x}",
            "gen_ai.response.finish_reasons": ("stop",),
            "server.address": SERVER[spec.provider],
            "server.port": 443,
            c.GEN_AI_CONVERSATION_ID: f"conv-{n // 7:06d}",
            c.GEN_AI_USAGE_INPUT_TOKENS: tokens.input_total,
            c.GEN_AI_USAGE_OUTPUT_TOKENS: tokens.output,
        }
        if tokens.cache_read or rng.random() < 0.3:
            attrs[c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = tokens.cache_read
        if tokens.cache_write:
            attrs[c.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = tokens.cache_write
        if tokens.reasoning:
            attrs[c.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = tokens.reasoning
        return attrs
    if dialect == "openinference":
        attrs = {
            c.OPENINFERENCE_SPAN_KIND: "LLM",
            c.OPENINFERENCE_PROVIDER: provider,
            c.OPENINFERENCE_SYSTEM: spec.provider,
            c.OPENINFERENCE_MODEL_NAME: spec.response,
            "llm.invocation_parameters": '{"temperature": 0.2, "max_tokens": 4096}',
            "input.mime_type": "application/json",
            "output.mime_type": "application/json",
            c.SESSION_ID: f"sess-{n // 7:06d}",
            c.OPENINFERENCE_PROMPT: tokens.input_total,
            c.OPENINFERENCE_COMPLETION: tokens.output,
            c.OPENINFERENCE_TOTAL: tokens.input_total + tokens.output,
        }
        if tokens.cache_read:
            attrs[c.OPENINFERENCE_CACHE_READ] = tokens.cache_read
        if tokens.cache_write:
            attrs[c.OPENINFERENCE_CACHE_WRITE] = tokens.cache_write
        if tokens.reasoning:
            attrs[c.OPENINFERENCE_REASONING] = tokens.reasoning
        return attrs
    # OpenLLMetry / Traceloop: prompt_tokens includes cache reads and writes.
    attrs = {
        "llm.request.type": "chat",
        c.GEN_AI_SYSTEM: provider,
        c.GEN_AI_REQUEST_MODEL: spec.request,
        c.GEN_AI_RESPONSE_MODEL: spec.response,
        "gen_ai.request.temperature": 0.2,
        c.TRACELOOP_ENTITY_NAME: "answer_question",
        c.TRACELOOP_SPAN_KIND: "task",
        c.OPENLLMETRY_PROMPT_TOKENS: tokens.input_total,
        c.OPENLLMETRY_COMPLETION_TOKENS: tokens.output,
        c.OPENLLMETRY_TOTAL_TOKENS: tokens.input_total + tokens.output,
    }
    if tokens.cache_read:
        attrs[c.OPENLLMETRY_CACHE_READ_INPUT_TOKENS] = tokens.cache_read
    if tokens.cache_write or (spec.cache_writes and rng.random() < 0.5):
        attrs[c.OPENLLMETRY_CACHE_CREATION_INPUT_TOKENS] = tokens.cache_write
    if tokens.reasoning:
        attrs[c.OPENLLMETRY_REASONING_TOKENS] = tokens.reasoning
    return attrs


def make_spans(count: int, seed: int) -> list[SynthSpan]:
    rng = random.Random(seed)
    window_start_ns = (WINDOW_START - EPOCH) // dt.timedelta(microseconds=1) * 1_000
    specs = rng.choices(MODELS, weights=[m.weight for m in MODELS], k=count)
    dialects = rng.choices(list(DIALECT_WEIGHTS), weights=list(DIALECT_WEIGHTS.values()), k=count)
    spans = []
    for n, (spec, dialect) in enumerate(zip(specs, dialects, strict=True)):
        tokens = draw_tokens(rng, spec)
        start_ns = window_start_ns + rng.randrange(WINDOW_DAYS * NS_PER_DAY)
        spans.append(
            SynthSpan(spec, dialect, start_ns, tokens, span_attrs(rng, spec, dialect, tokens, n))
        )
    return spans


def request_time(start_ns: int) -> dt.datetime:
    """The span start as the tz-aware datetime genai-prices takes (microsecond precision)."""
    return EPOCH + dt.timedelta(microseconds=start_ns // 1_000)


# -- timing ----------------------------------------------------------------------------------
BaselineInput = tuple[genai_prices.Usage, str, str, dt.datetime]
PriceInput = tuple[Usage, str | None, str | None, int]
SpanInput = tuple[dict[str, Any], int]


def run_baseline(inputs: Sequence[BaselineInput]) -> int:
    """calc_price per span; returns how many spans it has no price for."""
    calc_price = genai_prices.calc_price
    unknown = 0
    for usage, model, provider, when in inputs:
        try:
            calc_price(usage, model, provider_id=provider, genai_request_timestamp=when)
        except LookupError:
            unknown += 1
    return unknown


def run_price(book: PriceBook, inputs: Sequence[PriceInput]) -> int:
    price = book.price
    for usage, provider, model, start_ns in inputs:
        price(usage, provider=provider, model=model, start_ns=start_ns)
    return 0


def run_price_span(book: PriceBook, inputs: Sequence[SpanInput]) -> int:
    price_span = book.price_span
    for attrs, start_ns in inputs:
        price_span(attrs, start_ns)
    return 0


@dataclass(slots=True)
class Timing:
    name: str
    label: str
    spans: int
    warmup_ns: int
    rounds_ns: list[int] = field(default_factory=list)

    @property
    def best_ns(self) -> int:
        return min(self.rounds_ns)

    @property
    def spans_per_s(self) -> float:
        return self.spans * 1e9 / self.best_ns

    @property
    def us_per_span(self) -> float:
        return self.best_ns / self.spans / 1_000


def measure(name: str, label: str, spans: int, run: Callable[[], int]) -> Timing:
    """One warm-up round, then ROUNDS timed rounds, GC paused while timing."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        run()
        timing = Timing(name, label, spans, time.perf_counter_ns() - t0)
        for _ in range(ROUNDS):
            t0 = time.perf_counter_ns()
            run()
            timing.rounds_ns.append(time.perf_counter_ns() - t0)
            gc.collect()
    finally:
        if was_enabled:
            gc.enable()
    return timing


# -- sanity: the same price ------------------------------------------------------------------
@dataclass(slots=True)
class Mismatch:
    index: int
    path: str  # "price" or "price_span"
    span: SynthSpan
    expected: Decimal | None  # genai-prices total, None: it has no price
    got: Decimal | None  # ours, None: not priced
    note: str

    def describe(self) -> str:
        s, t = self.span, self.span.tokens
        when = request_time(s.start_ns).isoformat(timespec="seconds")
        return (
            f"#{self.index} [{self.path}] {s.dialect} {s.spec.provider}/{s.spec.response} "
            f"at {when}: input={t.input_total} cache_read={t.cache_read} "
            f"cache_write={t.cache_write} output={t.output} reasoning={t.reasoning}: "
            f"genai-prices {_money(self.expected)}, ours {_money(self.got)} ({self.note})"
        )


def _money(amount: Decimal | None) -> str:
    return "no price" if amount is None else f"${amount:f}"


@dataclass(slots=True)
class Sanity:
    compared: int = 0  # spans genai-prices priced
    unknown: int = 0  # spans genai-prices has no price for
    usage_mismatches: int = 0  # pre-normalized usage/provider/model differs from the truth
    mismatches: dict[str, list[Mismatch]] = field(
        default_factory=lambda: {"price": [], "price_span": []}
    )
    total_expected: Decimal = Decimal(0)
    total_ours: dict[str, Decimal] = field(
        default_factory=lambda: {"price": Decimal(0), "price_span": Decimal(0)}
    )
    price_periods: int = 0  # distinct (model, price) pairs genai-prices used
    above_tier: int = 0  # spans priced at a tier above the base line


def compare(
    spans: Sequence[SynthSpan],
    baseline: Sequence[BaselineInput],
    price_inputs: Sequence[PriceInput],
    book_price: PriceBook,
    book_span: PriceBook,
) -> Sanity:
    sanity = Sanity()
    periods: set[tuple[str, int]] = set()
    for i, (span, (gp_usage, model, provider, when), prepared) in enumerate(
        zip(spans, baseline, price_inputs, strict=True)
    ):
        usage, our_provider, our_model, start_ns = prepared
        t = span.tokens
        truth = (
            t.input_total - t.cache_read - t.cache_write,
            t.cache_read,
            t.cache_write,
            t.output,
        )
        seen = (usage.input_uncached, usage.cache_read, usage.cache_write, usage.output)
        if seen != truth or (our_provider, our_model) != (provider, model):
            sanity.usage_mismatches += 1
        try:
            calc = genai_prices.calc_price(
                gp_usage, model, provider_id=provider, genai_request_timestamp=when
            )
            expected: Decimal | None = calc.total_price
            sanity.compared += 1
            sanity.total_expected += calc.total_price
            periods.add((calc.model.id, id(calc.model_price)))
        except LookupError:
            expected = None
            sanity.unknown += 1
        rates = book_price.rates(our_provider, our_model, start_ns) if our_model else None
        if rates is not None and rates.tiers and usage.input_total > rates.tiers[0][0]:
            sanity.above_tier += 1
        costs: dict[str, Cost] = {
            "price": book_price.price(
                usage, provider=our_provider, model=our_model, start_ns=start_ns
            ),
            "price_span": book_span.price_span(span.attrs, span.start_ns)[1],
        }
        for path, cost in costs.items():
            got = usd(cost.total) if cost.status == "priced" else None
            if got is not None:
                sanity.total_ours[path] += got
            if got == expected:
                continue
            if expected is None:
                note = f"priced by ours only, as {cost.model}"
            elif got is None:
                note = f"ours: {cost.status}: {cost.reason}"
            else:
                note = f"ours - genai-prices = ${got - expected:f}"
            sanity.mismatches[path].append(Mismatch(i, path, span, expected, got, note))
    sanity.price_periods = len(periods)
    return sanity


# -- report ----------------------------------------------------------------------------------
def environment() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "genai_prices": version("genai-prices"),
        "spanledger": version("spanledger"),
    }


def run(count: int, seed: int) -> dict[str, Any]:
    spans = make_spans(count, seed)
    baseline_inputs: list[BaselineInput] = [
        (
            genai_prices.Usage(
                input_tokens=s.tokens.input_total,
                cache_read_tokens=s.tokens.cache_read,
                cache_write_tokens=s.tokens.cache_write,
                output_tokens=s.tokens.output,
            ),
            s.spec.response,
            s.spec.provider,
            request_time(s.start_ns),
        )
        for s in spans
    ]
    price_inputs: list[PriceInput] = [
        (normalize(s.attrs), provider_of(s.attrs), model_of(s.attrs), s.start_ns) for s in spans
    ]
    span_inputs: list[SpanInput] = [(s.attrs, s.start_ns) for s in spans]
    book_price, book_span = PriceBook(), PriceBook()

    timings = [
        measure(
            "calc_price",
            "1 genai_prices.calc_price (baseline)",
            count,
            lambda: run_baseline(baseline_inputs),
        ),
        measure(
            "price",
            "2 PriceBook.price (pre-normalized Usage)",
            count,
            lambda: run_price(book_price, price_inputs),
        ),
        measure(
            "price_span",
            "3 PriceBook.price_span (attrs -> Cost)",
            count,
            lambda: run_price_span(book_span, span_inputs),
        ),
    ]
    base, price, full = timings
    sanity = compare(spans, baseline_inputs, price_inputs, book_price, book_span)
    ratio_price = price.spans_per_s / base.spans_per_s
    ratio_full = full.spans_per_s / base.spans_per_s
    known = {m.response for m in MODELS if m.known}

    def mismatch_json(items: list[Mismatch]) -> dict[str, Any]:
        return {
            "count": len(items),
            "first": [
                {
                    "index": m.index,
                    "dialect": m.span.dialect,
                    "provider": m.span.spec.provider,
                    "model": m.span.spec.response,
                    "start": request_time(m.span.start_ns).isoformat(),
                    "tokens": {
                        "input_total": m.span.tokens.input_total,
                        "cache_read": m.span.tokens.cache_read,
                        "cache_write": m.span.tokens.cache_write,
                        "output": m.span.tokens.output,
                        "reasoning": m.span.tokens.reasoning,
                    },
                    "genai_prices_usd": None if m.expected is None else f"{m.expected:f}",
                    "ours_usd": None if m.got is None else f"{m.got:f}",
                    "note": m.note,
                }
                for m in items[:SHOW_MISMATCHES]
            ],
        }

    return {
        "environment": environment(),
        "workload": {
            "spans": count,
            "seed": seed,
            "window_start": WINDOW_START.date().isoformat(),
            "window_days": WINDOW_DAYS,
            "models_known": len(known),
            "models_unknown": sum(1 for m in MODELS if not m.known),
            "by_provider": dict(Counter(s.spec.provider for s in spans)),
            "by_dialect": dict(Counter(s.dialect for s in spans)),
            "with_cache_read": sum(1 for s in spans if s.tokens.cache_read),
            "with_cache_write": sum(1 for s in spans if s.tokens.cache_write),
            "with_reasoning": sum(1 for s in spans if s.tokens.reasoning),
            "above_tier_threshold": sanity.above_tier,
            "price_periods": sanity.price_periods,
        },
        "method": {
            "rounds": ROUNDS,
            "statistic": "best",
            "warmup_rounds": 1,
            "warmup_fills_caches": True,
            "gc_paused": True,
            "clock": "time.perf_counter_ns",
        },
        "results": {
            t.name: {
                "label": t.label,
                "spans_per_s": round(t.spans_per_s, 1),
                "us_per_span": round(t.us_per_span, 4),
                "best_ns": t.best_ns,
                "rounds_ns": t.rounds_ns,
                "warmup_ns": t.warmup_ns,
            }
            for t in timings
        },
        "ratios": {"price_vs_calc_price": ratio_price, "price_span_vs_calc_price": ratio_full},
        "target": {
            "metric": "price_vs_calc_price",
            "threshold": TARGET_RATIO,
            "value": ratio_price,
            "pass": ratio_price >= TARGET_RATIO,
        },
        "sanity": {
            "compared": sanity.compared,
            "unknown_to_genai_prices": sanity.unknown,
            "usage_mismatches": sanity.usage_mismatches,
            "total_usd_genai_prices": f"{sanity.total_expected:f}",
            "total_usd_ours": {k: f"{v:f}" for k, v in sanity.total_ours.items()},
            "mismatches": {k: mismatch_json(v) for k, v in sanity.mismatches.items()},
        },
        "_mismatches": sanity.mismatches,  # for the text report only
    }


def print_report(result: dict[str, Any]) -> None:
    env, work, res = result["environment"], result["workload"], result["results"]
    cpus = env["cpu_count"]
    usable = env["cpus_usable"]
    cpu_text = f"{cpus} CPUs" + (f" ({usable} usable)" if usable not in (None, cpus) else "")
    print("SpanLedger pricing benchmark")
    print(
        f"python {env['python']} ({env['implementation']}, {env['machine']}), {cpu_text}; "
        f"genai-prices {env['genai_prices']}, spanledger {env['spanledger']}"
    )
    end = WINDOW_START + dt.timedelta(days=WINDOW_DAYS - 1)
    print(
        f"workload: {work['spans']:,} distinct synthetic LLM spans (seed {work['seed']}), "
        f"{work['models_known']} priced models + {work['models_unknown']} unknown, "
        f"start times {WINDOW_START.date()} .. {end.date()} UTC"
    )
    print(
        "  providers: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(work["by_provider"].items()))
        + "; dialects: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(work["by_dialect"].items()))
    )
    print(
        f"  cache reads {work['with_cache_read']:,}, cache writes {work['with_cache_write']:,}, "
        f"reasoning {work['with_reasoning']:,}, above a tier threshold "
        f"{work['above_tier_threshold']:,}; price periods used: {work['price_periods']}"
    )
    print(
        f"method: best of {ROUNDS} rounds after 1 warm-up round (the warm-up also fills the "
        "PriceBook cache and genai-prices' lookup cache); perf_counter_ns around a loop over "
        "all spans, GC paused; inputs built before timing"
    )
    print()
    print(f"  {'benchmark':<42} {'spans/s':>12} {'us/span':>9} {'vs baseline':>12} {'warm-up':>9}")
    base_rate = res["calc_price"]["spans_per_s"]
    for r in res.values():
        print(
            f"  {r['label']:<42} {r['spans_per_s']:>12,.0f} {r['us_per_span']:>9.3f} "
            f"{r['spans_per_s'] / base_rate:>11.1f}x {r['warmup_ns'] / 1e6:>7.1f}ms"
        )
    ratios = result["ratios"]
    print()
    print(f"ratio price-only / calc_price:  {ratios['price_vs_calc_price']:.1f}x")
    print(f"ratio full core  / calc_price:  {ratios['price_span_vs_calc_price']:.1f}x")
    target = result["target"]
    verdict = "PASS" if target["pass"] else "MISS"
    print(
        f"target: price-only >= {TARGET_RATIO:.0f}x calc_price: {verdict} ({target['value']:.1f}x)"
    )
    sanity = result["sanity"]
    print()
    print("sanity: ours vs genai-prices, total cost of every span (exact Decimal USD)")
    print(
        f"  priced by genai-prices: {sanity['compared']:,}; no price (LookupError): "
        f"{sanity['unknown_to_genai_prices']:,}; pre-normalized usage differing from the "
        f"generated truth: {sanity['usage_mismatches']:,}"
    )
    print(
        f"  sum genai-prices ${Decimal(sanity['total_usd_genai_prices']):.6f}; ours "
        + ", ".join(f"[{k}] ${Decimal(v):.6f}" for k, v in sanity["total_usd_ours"].items())
    )
    for path, items in result["_mismatches"].items():
        print(f"  mismatches [{path}]: {len(items):,}")
        for m in items[:SHOW_MISMATCHES]:
            print(f"    {m.describe()}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--spans", type=int, default=DEFAULT_SPANS, help="spans in the mix")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed of the mix")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    args = parser.parse_args(argv)
    if args.spans < 1:
        parser.error("--spans must be at least 1")
    result = run(args.spans, args.seed)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
