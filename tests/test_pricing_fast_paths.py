"""The per-span fast paths of pricing give exactly what the plain code gives.

`PriceBook.price_attributes` skips spans that carry no attribute it reads and reads the
rate cache inline. Each shortcut is
checked here against the straightforward composition of the public functions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from spanledger import conventions as c
from spanledger.pricing import NOT_LLM, PriceBook
from spanledger.pricing.book import PricedCall, reported_cost
from spanledger.usage import (
    DIALECTS,
    MODEL_KEYS,
    NO_USAGE,
    PROVIDER_ALIASES,
    PROVIDER_KEYS,
    model_of,
    normalize,
    provider_of,
)

START_NS = int(dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC).timestamp()) * 10**9

TOOL_SPAN: dict[str, Any] = {
    c.GEN_AI_OPERATION_NAME: "execute_tool",
    c.GEN_AI_TOOL_NAME: "search_docs",
    "gen_ai.tool.call.id": "call_1",
    c.GEN_AI_AGENT_NAME: "support",
    "server.address": "vector-db.internal",
    "http.response.status_code": 200,
}
AGENT_SPAN: dict[str, Any] = {
    c.GEN_AI_OPERATION_NAME: "invoke_agent",
    c.GEN_AI_AGENT_NAME: "support",
    c.USER_ID: "user-007",
    "spanledger.department": "support",
    c.ERROR_TYPE: "Timeout",
}
OPENLIT_RESOURCE = {c.TELEMETRY_SDK_NAME: "openlit", c.SERVICE_NAME: "svc"}


def plain_price_attributes(
    book: PriceBook,
    attrs: dict[str, Any],
    start_ns: int,
    resource: dict[str, Any] | None = None,
    failed: bool | None = None,
) -> PricedCall:
    """`price_attributes` written without any shortcut, from the public functions."""
    provider = provider_of(attrs)
    model = model_of(attrs)
    usage = normalize(attrs, resource, provider)
    operation = attrs.get(c.GEN_AI_OPERATION_NAME)
    if usage.is_empty and isinstance(operation, str) and operation in c.AGENT_OPERATIONS:
        model = None
    requested = attrs.get(c.GEN_AI_REQUEST_MODEL)
    cost = book.price(
        usage,
        provider=provider,
        model=model,
        start_ns=start_ns,
        reported=reported_cost(attrs),
        alias=requested if isinstance(requested, str) and requested else None,
        failed=c.ERROR_TYPE in attrs if failed is None else failed,
    )
    return PricedCall(provider, model, usage, cost)


def fields_of(call: PricedCall) -> tuple[Any, ...]:
    return (
        call.provider,
        call.model,
        dataclasses.astuple(call.usage),
        tuple(getattr(call.cost, name) for name in call.cost.__slots__),
    )


# -- spans that are not calls ---------------------------------------------------------------
@pytest.mark.parametrize("attrs", [TOOL_SPAN, AGENT_SPAN, {}], ids=["tool", "agent", "bare"])
@pytest.mark.parametrize("failed", [None, True, False])
@pytest.mark.parametrize("resource", [None, {}, OPENLIT_RESOURCE], ids=["none", "empty", "openlit"])
def test_span_without_call_attributes_is_not_a_call(
    attrs: dict[str, Any], failed: bool | None, resource: dict[str, Any] | None
) -> None:
    book = PriceBook()
    priced = book.price_attributes(attrs, START_NS, resource, failed=failed)
    assert priced == PricedCall(None, None, NO_USAGE, NOT_LLM)
    assert priced == plain_price_attributes(book, attrs, START_NS, resource, failed)


# Every attribute the plain composition reads, listed independently of the shortcut's own set.
READ_KEYS = sorted(
    {
        key
        for dialect in DIALECTS
        for field in dataclasses.fields(dialect)
        if field.type == "tuple[str, ...]"
        for key in getattr(dialect, field.name)
    }
    | set(PROVIDER_KEYS)
    | set(MODEL_KEYS)
    | set(c.REPORTED_COST_KEYS)
    | {c.GEN_AI_RESPONSE_CACHED, c.GEN_AI_OPERATION_NAME, c.ERROR_TYPE, c.TELEMETRY_SDK_NAME}
)

VALUES: dict[str, tuple[Any, ...]] = {
    "token": (0, 1_200, -3, 2.0, "17", None),
    "name": ("openai", " Anthropic ", "gpt-4o-mini", "claude-sonnet-4-6", "", 5),
    "cost": (0.0125, "0.5", -1, "abc"),
    "flag": (True, "true", 0, "no"),
}


def _kind(key: str) -> str:
    if key in c.REPORTED_COST_KEYS:
        return "cost"
    if key in (c.GEN_AI_RESPONSE_CACHED, c.ERROR_TYPE):
        return "flag"
    if "token" in key:
        return "token"
    return "name"


def test_read_keys_cover_every_dialect() -> None:
    assert c.OPENINFERENCE_CACHE_WRITE in READ_KEYS and c.VERCEL_PROMPT_TOKENS in READ_KEYS
    assert len(READ_KEYS) > 40


@pytest.mark.parametrize("key", READ_KEYS)
@pytest.mark.parametrize("base", [TOOL_SPAN, AGENT_SPAN, {}], ids=["tool", "agent", "bare"])
def test_any_call_attribute_takes_the_full_path(key: str, base: dict[str, Any]) -> None:
    book = PriceBook()
    for value in VALUES[_kind(key)]:
        for extra in ({}, {c.GEN_AI_REQUEST_MODEL: "gpt-4o-mini"}):
            attrs = {**base, **extra, key: value}
            for resource in (None, OPENLIT_RESOURCE):
                for failed in (None, True):
                    got = book.price_attributes(attrs, START_NS, resource, failed=failed)
                    want = plain_price_attributes(book, attrs, START_NS, resource, failed)
                    assert fields_of(got) == fields_of(want), attrs


def test_llm_span_matches_the_plain_composition() -> None:
    book = PriceBook()
    attrs = {
        c.GEN_AI_OPERATION_NAME: "chat",
        c.GEN_AI_PROVIDER_NAME: "anthropic",
        c.GEN_AI_REQUEST_MODEL: "claude-haiku-4-5",
        c.GEN_AI_RESPONSE_MODEL: "claude-haiku-4-5-20251001",
        c.GEN_AI_USAGE_INPUT_TOKENS: 12_000,
        c.GEN_AI_USAGE_OUTPUT_TOKENS: 800,
        c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 9_000,
        c.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 1_000,
    }
    for _ in range(2):  # the second time from the rate cache
        got = book.price_attributes(attrs, START_NS)
        assert got.cost.status == "priced" and got.usage.input_uncached == 2_000
        assert fields_of(got) == fields_of(plain_price_attributes(book, attrs, START_NS))


# -- provider names -------------------------------------------------------------------------
@pytest.mark.parametrize("alias", sorted(PROVIDER_ALIASES))
def test_provider_alias_as_written_and_padded(alias: str) -> None:
    expected = PROVIDER_ALIASES[alias]
    assert provider_of({c.GEN_AI_PROVIDER_NAME: alias}) == expected
    assert provider_of({c.GEN_AI_PROVIDER_NAME: f" {alias.upper()} "}) == expected


def test_provider_blank_or_not_a_string_falls_through() -> None:
    attrs = {c.GEN_AI_PROVIDER_NAME: "  ", c.GEN_AI_SYSTEM: 3, c.OPENINFERENCE_PROVIDER: "Groq"}
    assert provider_of(attrs) == "groq"
    assert provider_of({c.VERCEL_MODEL_PROVIDER: "anthropic.messages"}) == "anthropic"
    assert provider_of({c.VERCEL_MODEL_PROVIDER: "Acme.Chat"}) == "acme.chat"


# -- rate cache -----------------------------------------------------------------------------
def counted_lookups(book: PriceBook, monkeypatch: pytest.MonkeyPatch) -> list[dt.datetime]:
    """The times at which `book` looks rates up in its sheets (a cache miss each)."""
    lookups: list[dt.datetime] = []
    lookup = book._lookup

    def counting(provider: str | None, names: tuple[str, ...], at: dt.datetime) -> Any:
        lookups.append(at)
        return lookup(provider, names, at)

    monkeypatch.setattr(book, "_lookup", counting)
    return lookups


def test_rates_are_looked_up_once_per_day(monkeypatch: pytest.MonkeyPatch) -> None:
    book = PriceBook()
    lookups = counted_lookups(book, monkeypatch)
    hour = 3_600 * 10**9
    first = book.rates("openai", "gpt-4o-mini", START_NS)
    assert book.rates("openai", "gpt-4o-mini", START_NS + 5 * hour) is first
    assert book.rates("openai", "gpt-4o-mini", START_NS + 24 * hour) is not None
    assert len(lookups) == 2  # one per day
    assert book.rates("openai", "gpt-4o-mini", START_NS, alias="gpt-4o") is not None
    assert len(lookups) == 3  # the alias is part of the key
    assert book.rates("openai", "no-such-model", START_NS) is None
    assert book.rates("openai", "no-such-model", START_NS + hour) is None
    assert len(lookups) == 4  # "no price" is cached too


def test_off_peak_rates_are_cached_per_half_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    book = PriceBook()
    lookups = counted_lookups(book, monkeypatch)
    minute = 60 * 10**9
    day = int(dt.datetime(2026, 1, 15, tzinfo=dt.UTC).timestamp()) * 10**9
    peak = book.rates("deepseek", "deepseek-chat", day + 10 * 60 * minute)
    assert book.rates("deepseek", "deepseek-chat", day + 10 * 60 * minute + 20 * minute) is peak
    off_peak = book.rates("deepseek", "deepseek-chat", day + 17 * 60 * minute)
    assert len(lookups) == 2
    assert peak is not None and off_peak is not None
    assert off_peak.base.input < peak.base.input
