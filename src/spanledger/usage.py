"""Canonical token usage: one `Usage` out of any instrumentation dialect.

Every instrumentation library names tokens differently, and the most common bug in cost
tools is counting cached tokens twice or not at all. The dialects are a data table
(`DIALECTS`); `normalize` reads the first dialect a span carries and only that one, so a
span that carries several dialects at once is counted exactly as if it carried one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spanledger import conventions as c


@dataclass(slots=True)
class Usage:
    """Tokens of one LLM call, split the way providers bill them.

    A value: nothing changes one after it is made (`NO_USAGE` is shared). Not `frozen`
    all the same, because a frozen dataclass's `__init__` sets each field through
    `object.__setattr__`: 1.2 us instead of 0.2 for every LLM span the receiver prices."""

    input_uncached: int = 0  # prompt tokens billed at the full input rate
    cache_read: int = 0  # prompt tokens served from the provider's prompt cache
    cache_write: int = 0  # prompt tokens written to cache (5-minute TTL, or TTL unknown)
    cache_write_1h: int = 0  # prompt tokens written to the 1-hour cache, where reported
    output: int = 0  # all completion tokens, reasoning included
    reasoning: int = 0  # the part of `output` that was reasoning (reported, not billed twice)
    source: str = "none"  # the dialect the numbers came from
    response_cached: bool = False  # the whole response came from a cache (gen_ai.response.cached)
    invalid: str | None = None  # why the counts cannot be priced, if they cannot

    @property
    def input_total(self) -> int:
        """All prompt tokens, cached or not: the number tiered prices are chosen by."""
        return self.input_uncached + self.cache_read + self.cache_write + self.cache_write_1h

    @property
    def total(self) -> int:
        return self.input_total + self.output

    @property
    def is_empty(self) -> bool:
        return self.source == "none"

    def as_dict(self) -> dict[str, int]:
        return {
            "input_uncached": self.input_uncached,
            "cache_read": self.cache_read,
            "cache_write": self.cache_write,
            "cache_write_1h": self.cache_write_1h,
            "output": self.output,
            "reasoning": self.reasoning,
        }


NO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one instrumentation family reports tokens. Each field lists attribute keys,
    first present wins."""

    name: str
    input: tuple[str, ...]
    output: tuple[str, ...]
    cache_read: tuple[str, ...] = ()
    cache_write: tuple[str, ...] = ()
    cache_write_1h: tuple[str, ...] = ()
    reasoning: tuple[str, ...] = ()
    total: tuple[str, ...] = ()
    # Most conventions count cached tokens inside the input count. Some copy a
    # provider's native usage where input *excludes* cache (Anthropic's `input_tokens`):
    # those providers are listed here, and for them cache tokens are added, not subtracted.
    input_excludes_cache_for: frozenset[str] = frozenset()
    # A resource/span attribute (key, value) that must be present for this dialect to
    # apply, for dialects that reuse another dialect's attribute names (OpenLIT).
    marker: tuple[str, str] | None = None
    # The cache-write count includes the 1-hour writes reported beside it (Anthropic's own
    # SDK tracing): the 5-minute writes are the difference.
    cache_write_includes_1h: bool = False

    @property
    def signature(self) -> frozenset[str]:
        """Keys whose presence says a span speaks this dialect."""
        return frozenset(self.input + self.output + self.total)


DIALECTS: tuple[Dialect, ...] = (
    # OpenLIT writes the OTel names, but copies Anthropic's native `input_tokens`
    # (cache excluded); it is recognised by its SDK name on the resource.
    Dialect(
        name="openlit",
        marker=(c.TELEMETRY_SDK_NAME, c.OPENLIT_SDK_NAME),
        input=(c.GEN_AI_USAGE_INPUT_TOKENS,),
        output=(c.GEN_AI_USAGE_OUTPUT_TOKENS,),
        cache_read=(c.OPENLLMETRY_CACHE_READ_INPUT_TOKENS, c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
        cache_write=(
            c.OPENLLMETRY_CACHE_CREATION_INPUT_TOKENS,
            c.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        ),
        reasoning=(c.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, c.OPENLLMETRY_REASONING_TOKENS),
        total=(c.OPENLIT_TOTAL_TOKENS,),
        input_excludes_cache_for=frozenset({"anthropic"}),
    ),
    # OTel GenAI semantic conventions: input_tokens includes cached tokens. The anthropic
    # SDK's own tracing writes cache_write.input_tokens and splits out the 1-hour writes.
    Dialect(
        name="otel_genai",
        input=(c.GEN_AI_USAGE_INPUT_TOKENS,),
        output=(c.GEN_AI_USAGE_OUTPUT_TOKENS,),
        cache_read=(c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, c.OPENLLMETRY_CACHE_READ_INPUT_TOKENS),
        cache_write=(
            c.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
            c.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
            c.OPENLLMETRY_CACHE_CREATION_INPUT_TOKENS,
        ),
        cache_write_1h=(c.ANTHROPIC_CACHE_WRITE_1H_INPUT_TOKENS,),
        cache_write_includes_1h=True,
        reasoning=(c.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, c.OPENLLMETRY_REASONING_TOKENS),
        total=(c.OPENLIT_TOTAL_TOKENS,),
    ),
    # OpenLLMetry / Traceloop: prompt_tokens includes cache reads and writes
    # (its Anthropic instrumentation sums them in).
    Dialect(
        name="openllmetry",
        input=(c.OPENLLMETRY_PROMPT_TOKENS,),
        output=(c.OPENLLMETRY_COMPLETION_TOKENS,),
        cache_read=(c.OPENLLMETRY_CACHE_READ_INPUT_TOKENS,),
        cache_write=(c.OPENLLMETRY_CACHE_CREATION_INPUT_TOKENS,),
        reasoning=(c.OPENLLMETRY_REASONING_TOKENS,),
        total=(c.OPENLLMETRY_TOTAL_TOKENS,),
    ),
    # OpenInference: prompt includes prompt_details.cache_read / cache_write.
    Dialect(
        name="openinference",
        input=(c.OPENINFERENCE_PROMPT,),
        output=(c.OPENINFERENCE_COMPLETION,),
        cache_read=(c.OPENINFERENCE_CACHE_READ,),
        cache_write=(c.OPENINFERENCE_CACHE_WRITE,),
        reasoning=(c.OPENINFERENCE_REASONING,),
        total=(c.OPENINFERENCE_TOTAL,),
    ),
    # Vercel AI SDK (v5 names first, v4 names second). Its Anthropic provider reports
    # Anthropic's native input_tokens, which exclude cache reads.
    Dialect(
        name="vercel_ai",
        input=(c.VERCEL_INPUT_TOKENS, c.VERCEL_PROMPT_TOKENS),
        output=(c.VERCEL_OUTPUT_TOKENS, c.VERCEL_COMPLETION_TOKENS),
        cache_read=(c.VERCEL_CACHED_INPUT_TOKENS,),
        reasoning=(c.VERCEL_REASONING_TOKENS,),
        input_excludes_cache_for=frozenset({"anthropic"}),
    ),
)

# (dialect, its signature keys as a tuple): `key in attrs` over two or three keys is
# cheaper than `signature.isdisjoint(attrs)`, which walks every attribute of the span.
_SIGNATURES = tuple(
    (dialect, tuple(dict.fromkeys(dialect.input + dialect.output + dialect.total)))
    for dialect in DIALECTS
)
# Every key whose presence makes some dialect apply: a span without any has no usage.
SIGNATURE_KEYS: frozenset[str] = frozenset().union(*(d.signature for d in DIALECTS))

# Provider names as instrumentations write them -> genai-prices provider ids.
PROVIDER_ALIASES: dict[str, str] = {
    "openai": "openai",
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "azure.ai.inference": "azure",
    "azure": "azure",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "amazon-bedrock": "aws",
    "bedrock": "aws",
    "aws": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "gemini": "google",
    "google": "google",
    "google.generative-ai": "google",
    "google.vertex": "google",
    "cohere": "cohere",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "mistral": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x-ai",
    "x_ai": "x-ai",
    "x-ai": "x-ai",
    "perplexity": "perplexity",
    "together": "together",
    "together_ai": "together",
    "fireworks": "fireworks",
    "openrouter": "openrouter",
}

PROVIDER_KEYS = (
    c.GEN_AI_PROVIDER_NAME,
    c.GEN_AI_SYSTEM,
    c.OPENINFERENCE_PROVIDER,
    c.OPENINFERENCE_SYSTEM,
    c.VERCEL_MODEL_PROVIDER,
)
# The response model is what was billed; the request model may be an alias.
MODEL_KEYS = (
    c.GEN_AI_RESPONSE_MODEL,
    c.GEN_AI_REQUEST_MODEL,
    c.OPENINFERENCE_MODEL_NAME,
    c.VERCEL_MODEL_ID,
)


def provider_of(attrs: Mapping[str, Any]) -> str | None:
    """The span's provider, as a genai-prices id where we know the alias."""
    for key in PROVIDER_KEYS:
        value = attrs.get(key)
        if not isinstance(value, str):
            continue
        known = PROVIDER_ALIASES.get(value)  # the common case: a name exactly as listed
        if known is not None:
            return known
        name = value.strip().lower()
        if name:
            if name in PROVIDER_ALIASES:
                return PROVIDER_ALIASES[name]
            # Vercel writes "<provider>.<api>", e.g. "anthropic.messages".
            head = name.split(".", 1)[0]
            return PROVIDER_ALIASES.get(head, name)
    return None


def model_of(attrs: Mapping[str, Any]) -> str | None:
    for key in MODEL_KEYS:
        value = attrs.get(key)
        if isinstance(value, str):
            value = value.strip()
            if value:
                return value
    return None


class _Invalid(Exception):
    """A token count that no bill could contain."""


def _count(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        if key in attrs:  # cheaper than get(key, default) for the many absent keys
            value = attrs[key]
            if type(value) is int and value >= 0:  # the common case, checked first
                return value
            return _as_count(key, value)
    return None


def _as_count(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _Invalid(f"{key} is a boolean ({value}), not a token count")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or not value.is_integer():
            raise _Invalid(f"{key} is {value!r}, not a whole number of tokens")
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        try:
            number = int(value.strip())
        except ValueError:  # "--5", "²", or more digits than int() reads
            raise _Invalid(f"{key} is {_show(value)}, not a token count") from None
    else:
        raise _Invalid(f"{key} is {_show(value)}, not a token count")
    if number < 0:
        raise _Invalid(f"{key} is {number}: token counts cannot be negative")
    return number


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return value is True or value == 1


def _marked(
    marker: tuple[str, str], attrs: Mapping[str, Any], resource: Mapping[str, Any] | None
) -> bool:
    key, expected = marker
    value = attrs.get(key, resource.get(key) if resource else None)
    return isinstance(value, str) and value.lower() == expected


def normalize(
    attrs: Mapping[str, Any],
    resource: Mapping[str, Any] | None = None,
    provider: str | None = None,
) -> Usage:
    """Canonical usage of one span. Never raises: impossible counts give `invalid`."""
    hint = attrs.get(c.GEN_AI_RESPONSE_CACHED)
    cached = hint is not None and _truthy(hint)
    for dialect, signature in _SIGNATURES:
        for key in signature:
            if key in attrs:
                break
        else:
            continue  # the span does not speak this dialect
        if dialect.marker is not None and not _marked(dialect.marker, attrs, resource):
            continue
        if provider is None:
            provider = provider_of(attrs)
        return _read(dialect, attrs, provider, cached)
    if cached:
        return Usage(source="cache_hint", response_cached=True)
    return NO_USAGE


def _read(dialect: Dialect, attrs: Mapping[str, Any], provider: str | None, cached: bool) -> Usage:
    try:
        given_input = _count(attrs, dialect.input)
        output = _count(attrs, dialect.output)
        cache_read = _count(attrs, dialect.cache_read) or 0
        written = _count(attrs, dialect.cache_write)
        cache_write_1h = _count(attrs, dialect.cache_write_1h) or 0
        cache_write = written or 0
        if dialect.cache_write_includes_1h and written is not None:
            if cache_write_1h > written:
                raise _Invalid(
                    f"1-hour cache writes ({cache_write_1h}) exceed the cache writes "
                    f"({written}) that should include them"
                )
            cache_write = written - cache_write_1h
        reasoning = _count(attrs, dialect.reasoning) or 0
        total = _count(attrs, dialect.total)
        if given_input is None and output is None:
            raise _Invalid(
                f"only a total token count ({total}) is reported; "
                "the input/output split needed for pricing is unknown"
            )
        given_input = given_input or 0
        output = output or 0
        cached_in = cache_read + cache_write + cache_write_1h
        if provider in dialect.input_excludes_cache_for:
            uncached = given_input
        elif cached_in > given_input:
            raise _Invalid(
                f"cache tokens (read {cache_read} + write {cache_write + cache_write_1h}) "
                f"exceed the input tokens ({given_input}) that should include them"
            )
        else:
            uncached = given_input - cached_in
        if reasoning > output:
            raise _Invalid(
                f"reasoning tokens ({reasoning}) exceed the output tokens ({output}) "
                "that should include them"
            )
    except _Invalid as problem:
        return Usage(source=dialect.name, invalid=str(problem), response_cached=cached)
    return Usage(
        input_uncached=uncached,
        cache_read=cache_read,
        cache_write=cache_write,
        cache_write_1h=cache_write_1h,
        output=output,
        reasoning=reasoning,
        source=dialect.name,
        response_cached=cached,
    )
