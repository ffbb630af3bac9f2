"""Properties of the pricing core, checked on generated spans (hypothesis)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanledger import conventions as c
from spanledger.pricing import PriceBook, RateSheet

PINNED = RateSheet.load(Path(__file__).parent / "data" / "pinned-rates.yaml")
PINNED_BOOK = PriceBook([PINNED], use_defaults=False)
DEFAULTS_BOOK = PriceBook()

STATUSES = {None, "priced", "unpriced", "invalid_usage", "reported_only"}
CACHE_STATUSES = {"hit", "partial", "miss", "write", "none"}

# Every attribute name conventions.py knows (read or written), plus the reported-cost keys.
KNOWN_KEYS = sorted(
    {
        value
        for name, value in vars(c).items()
        if name.isupper() and isinstance(value, str) and "." in value
    }
    | set(c.REPORTED_COST_KEYS)
)
MODELS = ["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-pro", "house-llm", "o4-mini"]
PROVIDERS = ["openai", "anthropic", "anthropic.messages", "gcp.vertex_ai", "aws.bedrock", "acme"]

any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(),  # huge, both signs
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.from_regex(r"\A-{0,2}[0-9]{1,6}(\.[0-9]{0,3})?\Z"),  # numeric-looking strings
    st.sampled_from(["²", "٣", "1e999999", "-0", " 12 ", "nan", "true", "TRUE", "0x10"]),
    st.sampled_from(MODELS + PROVIDERS + ["openlit"]),
    st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
)
money_values = st.one_of(
    any_value,
    st.decimals(allow_nan=True, allow_infinity=True),
    st.from_regex(r"\A-?[0-9]{1,3}(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,7})?\Z"),  # 1e999999
)


def _merge(parts: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    return {**parts[0], **parts[1]}


attribute_dicts = st.tuples(
    st.dictionaries(
        st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=20)), any_value, max_size=14
    ),
    st.dictionaries(st.sampled_from(c.REPORTED_COST_KEYS), money_values, max_size=2),
).map(_merge)
resources = st.one_of(
    st.just({}),
    st.just({c.TELEMETRY_SDK_NAME: c.OPENLIT_SDK_NAME}),
    st.dictionaries(st.sampled_from([c.TELEMETRY_SDK_NAME, c.SERVICE_NAME]), any_value),
)
start_times = st.integers(min_value=0, max_value=2**64 - 1)  # OTLP fixed64 nanoseconds


def _check_cost(book: PriceBook, attrs: dict[str, Any], resource: dict, start_ns: int) -> None:
    usage, cost = book.price_span(attrs, start_ns, resource)
    assert cost.status in STATUSES
    assert cost.cache_status in CACHE_STATUSES
    assert cost.total >= 0
    assert cost.reported is None or cost.reported >= 0
    if cost.status is None:
        assert cost.total == 0 and cost.reported is None
    if cost.status in ("unpriced", "invalid_usage"):
        assert cost.total == 0
        assert cost.reason
    if cost.status == "invalid_usage":
        assert usage.invalid == cost.reason
    if cost.status == "reported_only":
        assert cost.total == cost.reported
    if cost.status == "priced":
        assert min(cost.input, cost.cache_read, cost.cache_write, cost.output) >= 0
        assert cost.total == cost.input + cost.cache_read + cost.cache_write + cost.output


# ---- (a) never raises, whatever the span carries ---------------------------------------


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(attrs=attribute_dicts, resource=resources, start_ns=start_times)
def test_price_span_never_raises_on_pinned_book(
    attrs: dict[str, Any], resource: dict, start_ns: int
) -> None:
    _check_cost(PINNED_BOOK, attrs, resource, start_ns)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(attrs=attribute_dicts, resource=resources, start_ns=start_times)
def test_price_span_never_raises_on_genai_prices_defaults(
    attrs: dict[str, Any], resource: dict, start_ns: int
) -> None:
    _check_cost(DEFAULTS_BOOK, attrs, resource, start_ns)


# ---- (b) valid counts cost exactly the hand formula ------------------------------------

# USD per million tokens, copied by hand from tests/data/pinned-rates.yaml:
# (provider, base line, tier line or None); line = (input, cache_read, cache_write, output)
HAND_RATES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...] | None]] = {
    "gpt-4o-mini": ("openai", ("0.15", "0.075", "0.15", "0.60"), None),
    "claude-sonnet-4-5": ("anthropic", ("3", "0.30", "3.75", "15"), ("6", "0.60", "7.50", "22.50")),
    "gemini-2.5-pro": ("google", ("1.25", "0.125", "1.25", "10"), ("2.50", "0.25", "2.50", "15")),
    "house-llm": ("acme", ("2", "2", "2", "8"), None),
    "o4-mini": ("openai", ("1.10", "0.275", "1.10", "4.40"), None),
}
THRESHOLD = 200_000


def femto_per_token(per_million: str) -> int:
    value = Decimal(per_million) * 10**9  # $1/M = 10^-6 $/token = 10^9 femto-$/token
    assert value == value.to_integral_value()
    return int(value)


counts = st.integers(min_value=0, max_value=3 * THRESHOLD)


@st.composite
def valid_calls(draw: st.DrawFn) -> tuple[str, int, int, int, int, int]:
    model = draw(st.sampled_from(sorted(HAND_RATES)))
    cache_read = draw(counts)
    cache_write = draw(counts)
    uncached = draw(counts)
    output = draw(st.integers(min_value=0, max_value=10**7))
    reasoning = draw(st.integers(min_value=0, max_value=output))
    return model, uncached, cache_read, cache_write, output, reasoning


@settings(max_examples=400)
@given(call=valid_calls())
def test_valid_counts_cost_the_hand_formula(call: tuple[str, int, int, int, int, int]) -> None:
    model, uncached, cache_read, cache_write, output, reasoning = call
    provider, base, tier = HAND_RATES[model]
    prompt = uncached + cache_read + cache_write
    line = tier if tier is not None and prompt > THRESHOLD else base
    rate_in, rate_read, rate_write, rate_out = (femto_per_token(p) for p in line)
    expected = (
        uncached * rate_in + cache_read * rate_read + cache_write * rate_write + output * rate_out
    )
    attrs = {
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": prompt,  # OTel GenAI: input includes cache
        "gen_ai.usage.cache_read.input_tokens": cache_read,
        "gen_ai.usage.cache_creation.input_tokens": cache_write,
        "gen_ai.usage.output_tokens": output,
        "gen_ai.usage.reasoning.output_tokens": reasoning,
    }
    usage, cost = PINNED_BOOK.price_span(attrs, 1_768_478_400 * 10**9)
    assert cost.status == "priced"
    assert cost.total == expected
    assert cost.total >= 0
    assert cost.output == output * rate_out  # reasoning is inside output, not added again
    assert cost.saved_by_cache == cache_read * (rate_in - rate_read)
    assert usage.reasoning == reasoning


# ---- (c) more dialects of the same call never change its cost --------------------------


def otel_genai(provider: str, model: str, u: int, r: int, w: int, o: int, z: int) -> dict:
    return {
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": u + r + w,
        "gen_ai.usage.cache_read.input_tokens": r,
        "gen_ai.usage.cache_creation.input_tokens": w,
        "gen_ai.usage.output_tokens": o,
        "gen_ai.usage.reasoning.output_tokens": z,
    }


def openllmetry(provider: str, model: str, u: int, r: int, w: int, o: int, z: int) -> dict:
    return {
        "gen_ai.system": provider,
        "gen_ai.request.model": model,
        "gen_ai.usage.prompt_tokens": u + r + w,
        "gen_ai.usage.cache_read_input_tokens": r,
        "gen_ai.usage.cache_creation_input_tokens": w,
        "gen_ai.usage.completion_tokens": o,
        "gen_ai.usage.reasoning_tokens": z,
        "llm.usage.total_tokens": u + r + w + o,
    }


def openinference(provider: str, model: str, u: int, r: int, w: int, o: int, z: int) -> dict:
    return {
        "llm.provider": provider,
        "llm.model_name": model,
        "llm.token_count.prompt": u + r + w,
        "llm.token_count.prompt_details.cache_read": r,
        "llm.token_count.prompt_details.cache_write": w,
        "llm.token_count.completion": o,
        "llm.token_count.completion_details.reasoning": z,
        "llm.token_count.total": u + r + w + o,
    }


def vercel_ai(provider: str, model: str, u: int, r: int, w: int, o: int, z: int) -> dict:
    assert w == 0  # the AI SDK has no cache-write count
    # its Anthropic provider reports Anthropic's native input, which excludes cache reads
    given = u if provider == "anthropic" else u + r
    return {
        "ai.model.provider": f"{provider}.messages" if provider == "anthropic" else provider,
        "ai.model.id": model,
        "ai.usage.inputTokens": given,
        "ai.usage.cachedInputTokens": r,
        "ai.usage.outputTokens": o,
        "ai.usage.reasoningTokens": z,
    }


ENCODERS = {
    "otel_genai": otel_genai,
    "openllmetry": openllmetry,
    "openinference": openinference,
    "vercel_ai": vercel_ai,
}


@st.composite
def equivalent_spans(draw: st.DrawFn) -> tuple[list[dict], dict]:
    model = draw(st.sampled_from(["gpt-4o-mini", "claude-sonnet-4-5", "house-llm"]))
    provider = {"gpt-4o-mini": "openai", "claude-sonnet-4-5": "anthropic"}.get(model, "acme")
    uncached, cache_read = draw(counts), draw(counts)
    cache_write = draw(st.one_of(st.just(0), counts))
    output = draw(st.integers(min_value=0, max_value=10**6))
    reasoning = draw(st.integers(min_value=0, max_value=output))
    names = [n for n in ENCODERS if n != "vercel_ai" or cache_write == 0]
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    numbers = (uncached, cache_read, cache_write, output, reasoning)
    singles = [ENCODERS[name](provider, model, *numbers) for name in chosen]
    merged: dict = {}
    for attrs in draw(st.permutations(singles)):
        merged.update(attrs)
    return singles, merged


@settings(max_examples=300)
@given(spans=equivalent_spans())
def test_more_dialects_never_change_the_cost(spans: tuple[list[dict], dict]) -> None:
    singles, merged = spans
    start_ns = 1_768_478_400 * 10**9
    costs = [PINNED_BOOK.price_span(attrs, start_ns)[1] for attrs in singles]
    merged_cost = PINNED_BOOK.price_span(merged, start_ns)[1]
    assert costs[0].status == "priced"
    for cost in costs:
        assert cost == costs[0]
    assert merged_cost == costs[0]
