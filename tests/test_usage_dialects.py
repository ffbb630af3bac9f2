"""Table tests of `spanledger.usage`: dialects -> Usage, provider and model names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from spanledger.usage import DIALECTS, NO_USAGE, Usage, model_of, normalize, provider_of

OPENLIT = {"telemetry.sdk.name": "openlit"}


@dataclass(frozen=True)
class Case:
    id: str
    attrs: dict[str, Any]
    expect: Usage
    resource: dict[str, Any] = field(default_factory=dict)
    provider: str | None = None  # passed to normalize() explicitly when given
    reason: str | None = None  # part of Usage.invalid, for invalid cases


CASES: list[Case] = [
    Case(
        "otel-genai-current-names",
        {
            "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.cache_read.input_tokens": 300,
            "gen_ai.usage.cache_creation.input_tokens": 100,
            "gen_ai.usage.output_tokens": 50,
            "gen_ai.usage.reasoning.output_tokens": 20,
        },
        # input includes cache: 1000 - 300 - 100 = 600 uncached
        Usage(600, 300, 100, 0, 50, 20, "otel_genai"),
    ),
    Case(
        "otel-genai-with-openllmetry-cache-key-names",
        {
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.cache_read_input_tokens": 300,
            "gen_ai.usage.cache_creation_input_tokens": 100,
            "gen_ai.usage.output_tokens": 50,
            "gen_ai.usage.reasoning_tokens": 20,
        },
        Usage(600, 300, 100, 0, 50, 20, "otel_genai"),
    ),
    Case(
        "otel-genai-anthropic-still-includes-cache",
        {
            "gen_ai.provider.name": "anthropic",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.cache_read.input_tokens": 900,
            "gen_ai.usage.output_tokens": 5,
        },
        Usage(100, 900, 0, 0, 5, 0, "otel_genai"),
    ),
    Case(
        "otel-genai-output-only",
        {"gen_ai.usage.output_tokens": 7},
        Usage(0, 0, 0, 0, 7, 0, "otel_genai"),
    ),
    Case(
        "openlit-anthropic-input-excludes-cache",
        {
            "gen_ai.system": "anthropic",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.cache_read_input_tokens": 900,
            "gen_ai.usage.cache_creation_input_tokens": 50,
            "gen_ai.usage.output_tokens": 5,
            "gen_ai.usage.total_tokens": 1055,
        },
        Usage(100, 900, 50, 0, 5, 0, "openlit"),
        resource=OPENLIT,
    ),
    Case(
        "openlit-openai-input-includes-cache",
        {
            "gen_ai.system": "openai",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.cache_read_input_tokens": 900,
            "gen_ai.usage.output_tokens": 5,
        },
        Usage(100, 900, 0, 0, 5, 0, "openlit"),
        resource=OPENLIT,
    ),
    Case(
        "openlit-marker-is-case-insensitive",
        {
            "gen_ai.system": "anthropic",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.cache_read_input_tokens": 900,
            "gen_ai.usage.output_tokens": 5,
        },
        Usage(100, 900, 0, 0, 5, 0, "openlit"),
        resource={"telemetry.sdk.name": "OpenLIT"},
    ),
    Case(
        "other-sdk-name-is-otel-genai",
        {
            "gen_ai.system": "openai",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 5,
        },
        Usage(1000, 0, 0, 0, 5, 0, "otel_genai"),
        resource={"telemetry.sdk.name": "opentelemetry"},
    ),
    Case(
        "openllmetry",
        {
            "gen_ai.system": "Anthropic",
            "gen_ai.usage.prompt_tokens": 3000,
            "gen_ai.usage.completion_tokens": 400,
            "gen_ai.usage.cache_read_input_tokens": 2000,
            "gen_ai.usage.cache_creation_input_tokens": 500,
            "gen_ai.usage.reasoning_tokens": 100,
            "llm.usage.total_tokens": 3400,
        },
        # prompt_tokens includes reads and writes: 3000 - 2000 - 500 = 500
        Usage(500, 2000, 500, 0, 400, 100, "openllmetry"),
    ),
    Case(
        "openinference",
        {
            "llm.provider": "anthropic",
            "llm.token_count.prompt": 3000,
            "llm.token_count.completion": 400,
            "llm.token_count.prompt_details.cache_read": 2000,
            "llm.token_count.prompt_details.cache_write": 500,
            "llm.token_count.completion_details.reasoning": 300,
            "llm.token_count.total": 3400,
        },
        Usage(500, 2000, 500, 0, 400, 300, "openinference"),
    ),
    Case(
        "vercel-v5-openai",
        {
            "ai.model.provider": "openai.responses",
            "ai.usage.inputTokens": 1000,
            "ai.usage.outputTokens": 500,
            "ai.usage.cachedInputTokens": 200,
            "ai.usage.reasoningTokens": 100,
        },
        Usage(800, 200, 0, 0, 500, 100, "vercel_ai"),
    ),
    Case(
        "vercel-v5-anthropic-excludes-cache",
        {
            "ai.model.provider": "anthropic.messages",
            "ai.usage.inputTokens": 500,
            "ai.usage.outputTokens": 400,
            "ai.usage.cachedInputTokens": 2000,
        },
        Usage(500, 2000, 0, 0, 400, 0, "vercel_ai"),
    ),
    Case(
        "vercel-v4",
        {
            "ai.model.provider": "openai.chat",
            "ai.usage.promptTokens": 1000,
            "ai.usage.completionTokens": 500,
        },
        Usage(1000, 0, 0, 0, 500, 0, "vercel_ai"),
    ),
    Case(
        "vercel-v5-names-win-over-v4",
        {
            "ai.usage.inputTokens": 10,
            "ai.usage.promptTokens": 999,
            "ai.usage.outputTokens": 20,
            "ai.usage.completionTokens": 999,
        },
        Usage(10, 0, 0, 0, 20, 0, "vercel_ai"),
    ),
    Case(
        "explicit-provider-argument-wins-over-attributes",
        {
            "ai.model.provider": "openai.chat",
            "ai.usage.inputTokens": 500,
            "ai.usage.outputTokens": 1,
            "ai.usage.cachedInputTokens": 2000,
        },
        Usage(500, 2000, 0, 0, 1, 0, "vercel_ai"),
        provider="anthropic",
    ),
    Case(
        "first-dialect-wins-otel-over-openinference",
        {
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 1,
            "llm.token_count.prompt": 999,
            "llm.token_count.completion": 999,
        },
        Usage(10, 0, 0, 0, 1, 0, "otel_genai"),
    ),
    Case(
        "response-cached-without-tokens",
        {"gen_ai.response.cached": True},
        Usage(source="cache_hint", response_cached=True),
    ),
    Case(
        "response-cached-with-tokens",
        {
            "gen_ai.response.cached": "TRUE",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 1,
        },
        Usage(10, 0, 0, 0, 1, 0, "otel_genai", response_cached=True),
    ),
    Case(
        "response-cached-false-string",
        {
            "gen_ai.response.cached": "false",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 1,
        },
        Usage(10, 0, 0, 0, 1, 0, "otel_genai"),
    ),
    Case("no-usage", {"http.request.method": "GET"}, NO_USAGE),
    Case(
        "huge-count-is-fine",
        {"gen_ai.usage.input_tokens": 10**30, "gen_ai.usage.output_tokens": 0},
        Usage(10**30, 0, 0, 0, 0, 0, "otel_genai"),
    ),
    # ---- invalid: counts that no bill could contain -----------------------------------
    Case(
        "invalid-negative",
        {"gen_ai.usage.input_tokens": -1, "gen_ai.usage.output_tokens": 1},
        Usage(source="otel_genai"),
        reason="gen_ai.usage.input_tokens is -1: token counts cannot be negative",
    ),
    Case(
        "invalid-text",
        {"llm.token_count.prompt": "ten", "llm.token_count.completion": 1},
        Usage(source="openinference"),
        reason="llm.token_count.prompt is 'ten', not a token count",
    ),
    Case(
        "invalid-superscript-digit",
        {"llm.token_count.prompt": "²", "llm.token_count.completion": 1},
        Usage(source="openinference"),
        reason="not a token count",
    ),
    Case(
        "invalid-too-many-digits-for-int",
        {"llm.token_count.prompt": "9" * 5000, "llm.token_count.completion": 1},
        Usage(source="openinference"),
        reason="not a token count",
    ),
    Case(
        "invalid-list",
        {"ai.usage.inputTokens": [1, 2], "ai.usage.outputTokens": 1},
        Usage(source="vercel_ai"),
        reason="ai.usage.inputTokens is [1, 2], not a token count",
    ),
    Case(
        "invalid-none",
        {"ai.usage.inputTokens": None, "ai.usage.outputTokens": 1},
        Usage(source="vercel_ai"),
        reason="ai.usage.inputTokens is None, not a token count",
    ),
    Case(
        "invalid-bool",
        {"gen_ai.usage.prompt_tokens": False, "gen_ai.usage.completion_tokens": 1},
        Usage(source="openllmetry"),
        reason="gen_ai.usage.prompt_tokens is a boolean (False), not a token count",
    ),
    Case(
        "invalid-cache-write-exceeds-input",
        {
            "llm.token_count.prompt": 100,
            "llm.token_count.prompt_details.cache_write": 101,
            "llm.token_count.completion": 1,
        },
        Usage(source="openinference"),
        reason="cache tokens (read 0 + write 101) exceed the input tokens (100)",
    ),
    Case(
        "invalid-cache-read-plus-write-exceeds-input",
        {
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.cache_read.input_tokens": 60,
            "gen_ai.usage.cache_creation.input_tokens": 41,
            "gen_ai.usage.output_tokens": 1,
        },
        Usage(source="otel_genai"),
        reason="cache tokens (read 60 + write 41) exceed the input tokens (100)",
    ),
    Case(
        "invalid-reasoning-exceeds-output",
        {
            "ai.usage.inputTokens": 1,
            "ai.usage.outputTokens": 10,
            "ai.usage.reasoningTokens": 11,
        },
        Usage(source="vercel_ai"),
        reason="reasoning tokens (11) exceed the output tokens (10)",
    ),
    Case(
        "invalid-only-total-openinference",
        {"llm.token_count.total": 42},
        Usage(source="openinference"),
        reason="only a total token count (42) is reported",
    ),
    Case(
        "invalid-only-total-openlit",
        {"gen_ai.usage.total_tokens": 42},
        Usage(source="openlit"),
        resource=OPENLIT,
        reason="only a total token count (42)",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_normalize(case: Case) -> None:
    usage = normalize(case.attrs, case.resource, case.provider)
    if case.reason is None:
        assert usage == case.expect
        assert usage.invalid is None
    else:
        assert usage.invalid is not None and case.reason in usage.invalid
        assert usage.source == case.expect.source
        assert usage.as_dict() == NO_USAGE.as_dict()  # nothing half-read survives


def test_every_dialect_is_exercised() -> None:
    seen = {normalize(case.attrs, case.resource, case.provider).source for case in CASES}
    names = {dialect.name for dialect in DIALECTS}
    assert names <= seen, f"dialects without a case: {sorted(names - seen)}"


def test_usage_totals() -> None:
    usage = Usage(600, 300, 100, 7, 50, 20, "otel_genai")
    assert usage.input_total == 600 + 300 + 100 + 7
    assert usage.total == 1007 + 50
    assert not usage.is_empty
    assert NO_USAGE.is_empty


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"gen_ai.provider.name": "openai"}, "openai"),
        ({"gen_ai.provider.name": "aws.bedrock"}, "aws"),
        ({"gen_ai.system": "amazon-bedrock"}, "aws"),
        ({"gen_ai.provider.name": "gcp.vertex_ai"}, "google"),
        ({"gen_ai.provider.name": "gcp.gemini"}, "google"),
        ({"gen_ai.provider.name": "azure.ai.openai"}, "azure"),
        ({"gen_ai.provider.name": " Azure.AI.OpenAI "}, "azure"),
        ({"gen_ai.provider.name": "mistral_ai"}, "mistral"),
        ({"gen_ai.provider.name": "x_ai"}, "x-ai"),
        ({"ai.model.provider": "anthropic.messages"}, "anthropic"),
        ({"ai.model.provider": "openai.responses"}, "openai"),
        ({"ai.model.provider": "google.vertex.chat"}, "google"),
        ({"ai.model.provider": "amazon-bedrock"}, "aws"),
        ({"llm.provider": "anthropic"}, "anthropic"),
        ({"llm.system": "openai"}, "openai"),
        ({"gen_ai.system": "Anthropic"}, "anthropic"),
        # unknown names are kept, lower-cased
        ({"gen_ai.provider.name": "Acme"}, "acme"),
        ({"gen_ai.provider.name": "acme.chat"}, "acme.chat"),
        # key order: gen_ai.provider.name, gen_ai.system, llm.provider, llm.system, ai.*
        ({"gen_ai.provider.name": "openai", "gen_ai.system": "anthropic"}, "openai"),
        ({"gen_ai.system": "anthropic", "llm.provider": "openai"}, "anthropic"),
        ({"llm.provider": "openai", "ai.model.provider": "anthropic.messages"}, "openai"),
        # blank or non-text values are skipped
        ({"gen_ai.provider.name": "", "gen_ai.system": "openai"}, "openai"),
        ({"gen_ai.provider.name": "   ", "gen_ai.system": "openai"}, "openai"),
        ({"gen_ai.provider.name": 7, "llm.provider": "openai"}, "openai"),
        ({}, None),
        ({"gen_ai.provider.name": None}, None),
    ],
)
def test_provider_of(attrs: dict[str, Any], expected: str | None) -> None:
    assert provider_of(attrs) == expected


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        # the response model is what was billed; the request model may be an alias
        (
            {"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06"},
            "gpt-4o-2024-08-06",
        ),
        ({"gen_ai.request.model": "gpt-4o"}, "gpt-4o"),
        ({"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "  "}, "gpt-4o"),
        ({"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": 4}, "gpt-4o"),
        ({"llm.model_name": " claude-sonnet-4-5 "}, "claude-sonnet-4-5"),
        ({"ai.model.id": "gpt-4o-mini"}, "gpt-4o-mini"),
        ({"gen_ai.request.model": "a", "llm.model_name": "b", "ai.model.id": "c"}, "a"),
        ({"llm.model_name": "b", "ai.model.id": "c"}, "b"),
        ({}, None),
        ({"gen_ai.request.model": ""}, None),
    ],
)
def test_model_of(attrs: dict[str, Any], expected: str | None) -> None:
    assert model_of(attrs) == expected


def test_normalize_reads_provider_from_attributes_when_not_given() -> None:
    attrs = {
        "ai.model.provider": "anthropic.messages",
        "ai.usage.inputTokens": 5,
        "ai.usage.cachedInputTokens": 50,
        "ai.usage.outputTokens": 1,
    }
    # Anthropic (from the attribute): 5 uncached, 50 cache reads
    assert normalize(attrs).as_dict()["input_uncached"] == 5
    # Told it is OpenAI: cache is inside the input, and 50 > 5 is impossible
    assert normalize(attrs, provider="openai").invalid is not None


def test_anthropic_sdk_tracing_splits_one_hour_cache_writes() -> None:
    # The anthropic SDK's own spans: input 10,100 includes 10,000 cache writes, 4,000 of
    # them to the 1-hour cache; so 100 uncached, 6,000 five-minute and 4,000 one-hour writes.
    usage = normalize(
        {
            "gen_ai.provider.name": "anthropic",
            "gen_ai.usage.input_tokens": 10_100,
            "gen_ai.usage.cache_write.input_tokens": 10_000,
            "anthropic.usage.cache_creation.ephemeral_1h_input_tokens": 4_000,
            "gen_ai.usage.output_tokens": 10,
        }
    )
    assert (usage.input_uncached, usage.cache_write, usage.cache_write_1h) == (100, 6_000, 4_000)
    impossible = normalize(
        {
            "gen_ai.usage.input_tokens": 10_100,
            "gen_ai.usage.cache_write.input_tokens": 1_000,
            "anthropic.usage.cache_creation.ephemeral_1h_input_tokens": 4_000,
            "gen_ai.usage.output_tokens": 10,
        }
    )
    assert impossible.invalid is not None and "1-hour" in impossible.invalid
