"""YAML rate sheets: exact numbers, fallbacks, and errors that name file, line and reason."""

from __future__ import annotations

import datetime as dt
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from spanledger.pricing import PriceBook, RateLine, RateSheet, RateSheetError
from spanledger.pricing.money import per_million

PINNED_PATH = Path(__file__).parent / "data" / "pinned-rates.yaml"
DAY = dt.date(2026, 1, 15)


def sheet(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# ---- errors ---------------------------------------------------------------------------

BAD_SHEETS = [
    pytest.param(
        sheet(
            """
            version: bad
            models:
              - match: gpt-4o-mini
                per_million: {input: 0.15}
            """
        ),
        4,
        "models.0.per_million.output: missing `output`",
        id="missing-output-flow-mapping",
    ),
    pytest.param(
        sheet(
            """
            models:
              - match: house-llm
                per_million:
                  input: 2
                  cache_read: 1
            """
        ),
        # the mapping that lacks `output` is the one under `per_million:` on line 3
        3,
        "missing `output`",
        id="missing-output-block-mapping",
    ),
    pytest.param(
        sheet(
            """
            models:
              - match: a
                per_million: {input: 1, output: 2}
              - match: b
                per_million: {input: 1, output: 2, cache_reed: 1}
            """
        ),
        5,
        "models.1.per_million.cache_reed: unknown key `cache_reed`",
        id="unknown-key-in-prices",
    ),
    pytest.param(
        sheet(
            """
            version: v1
            modles:
              - match: a
            """
        ),
        2,
        "unknown key `modles`",
        id="unknown-top-level-key",
    ),
    pytest.param(
        sheet(
            """
            models:
              - match: a
                per_million:
                  input: abc
                  output: 2
            """
        ),
        4,
        "models.0.per_million.input",
        id="number-is-text",
    ),
    pytest.param(
        sheet(
            """
            models:
              - match: a
                per_million:
                  input: 1
                  output: -2.5
            """
        ),
        5,
        "greater than or equal to 0",
        id="negative-price",
    ),
    pytest.param(
        sheet(
            """
            models:
              - match: a
                per_million:
                  input: 1
                  output: 2
                  cache_read: .nan
            """
        ),
        6,
        "models.0.per_million.cache_read",
        id="nan-price",
    ),
    pytest.param(
        sheet(
            """
            models:
              - match: a
                per_million: {input: .inf, output: 1}
            """
        ),
        3,
        "models.0.per_million.input",
        id="infinite-price",
    ),
    pytest.param(
        sheet(
            """
            models:
              - match: a
                per_million: {input: 1, output: 1}
                tiers:
                  - above_input_tokens: -1
                    per_million: {input: 1, output: 1}
            """
        ),
        5,
        "models.0.tiers.0.above_input_tokens",
        id="negative-tier-threshold",
    ),
    pytest.param(
        sheet(
            """
            models:
              - match: a
                effective_from: someday
                per_million: {input: 1, output: 1}
            """
        ),
        3,
        "models.0.effective_from",
        id="bad-date",
    ),
    pytest.param(
        sheet(
            """
            version: v1
            discounts:
              - provider: openai
                percent: 12
              - percent: 5
            """
        ),
        5,
        "discounts.1: Value error, a discount needs `provider` or `match`",
        id="discount-without-scope",
    ),
    pytest.param(
        sheet(
            """
            discounts:
              - provider: openai
                percent: 120
            """
        ),
        3,
        "less than or equal to 100",
        id="discount-over-100-percent",
    ),
    pytest.param(
        sheet(
            """
            models:
              - match: a
                per_million: {input: 1, output: 1
            """
        ),
        4,  # the flow mapping is still open at the end of the text
        "not valid YAML",
        id="invalid-yaml",
    ),
    pytest.param(
        sheet(
            """
            models:
              - match: a
                per_million: {input: 1:30.5, output: 1}
            """
        ),
        3,
        "is not a decimal number",
        id="yaml-sexagesimal-float-is-not-a-price",
    ),
    pytest.param(
        sheet(
            """
            # a list is not a rate sheet
            - match: a
            """
        ),
        2,
        "a rate sheet is a mapping with `models:`",
        id="document-is-a-list",
    ),
    pytest.param("just some text\n", 1, "a rate sheet is a mapping", id="document-is-text"),
    pytest.param(
        sheet(
            """
            models:
              - match: a
                per_million: {output: 1}
              - match: b
                per_million: {output: 1}
            """
        ),
        3,
        "missing `input` (and 1 more problem)",
        id="several-problems-counted",
    ),
]


@pytest.mark.parametrize(("text", "line", "reason"), BAD_SHEETS)
def test_bad_sheet_names_file_line_and_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(RateSheetError) as raised:
        RateSheet.parse(text, name="rates/acme.yaml")
    message = str(raised.value)
    assert message.startswith(f"rates/acme.yaml:{line}: "), message
    assert reason in message


def test_bad_sheet_loaded_from_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "contract.yaml"
    path.write_text("models:\n  - match: a\n    per_million: {input: 1, output: 2, outptu: 2}\n")
    with pytest.raises(RateSheetError, match=r"contract\.yaml:3: .*unknown key `outptu`"):
        RateSheet.load(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(RateSheetError) as raised:
        RateSheet.load(path)
    assert str(raised.value) == f"{path}: cannot read rate sheet: No such file or directory"


def test_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RateSheetError, match="cannot read rate sheet"):
        RateSheet.load(tmp_path)


def test_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: café\n".encode("latin-1"))
    with pytest.raises(RateSheetError, match=r"latin1\.yaml: cannot read rate sheet: not UTF-8"):
        RateSheet.load(path)


def test_from_files_rejects_a_bad_sheet(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("models: []\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - match: x\n")
    with pytest.raises(
        RateSheetError, match=r"bad\.yaml:2: models\.0\.per_million: missing `per_million`"
    ):
        PriceBook.from_files([str(good), str(bad)], use_defaults=False)


# ---- loading -------------------------------------------------------------------------


def test_load_from_file_uses_version_or_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "gateway-prices.yaml"
    path.write_text("models:\n  - match: m\n    per_million: {input: 1, output: 2}\n")
    loaded = RateSheet.load(path)
    assert loaded.version == "gateway-prices"
    assert loaded.path == str(path)
    assert RateSheet.load(PINNED_PATH).version == "pinned-2026-01"


def test_empty_sheet_is_an_empty_sheet() -> None:
    empty = RateSheet.parse("", name="empty.yaml")
    assert empty.models == () and empty.discounts == ()
    assert empty.version == "empty"
    assert empty.rates_for("openai", "gpt-4o-mini", DAY) is None


def test_prices_are_exact_decimals_not_floats() -> None:
    loaded = RateSheet.parse(
        "models:\n  - match: m\n    per_million: {input: 0.1, output: 0.3, cache_read: 1_000.5}\n"
    )
    prices = loaded.models[0].per_million
    assert prices.input == Decimal("0.1") and type(prices.input) is Decimal
    assert prices.output == Decimal("0.3")
    assert prices.cache_read == Decimal("1000.5")
    rates = loaded.rates_for(None, "m", DAY)
    assert rates is not None
    # $0.1/M = 10^8 femto-$ per token exactly; $0.3/M = 3 * 10^8
    assert rates.base.input == 100_000_000
    assert rates.base.output == 300_000_000
    assert per_million(rates.base.cache_read) == Decimal("1000.5")


def test_integer_prices_are_accepted() -> None:
    loaded = RateSheet.parse("models:\n  - match: m\n    per_million: {input: 3, output: 15}\n")
    rates = loaded.rates_for(None, "m", DAY)
    assert rates is not None
    assert rates.base.input == 3 * 10**9
    assert rates.base.output == 15 * 10**9


def test_missing_cache_prices_fall_back_to_input() -> None:
    loaded = RateSheet.parse(
        sheet(
            """
            models:
              - match: plain
                per_million: {input: 2, output: 8}
              - match: write-only
                per_million: {input: 2, output: 8, cache_write: 2.5}
            """
        )
    )
    plain = loaded.rates_for(None, "plain", DAY)
    assert plain is not None
    # cache_read, cache_write and cache_write_1h all at $2/M = 2 * 10^9 femto-$/token
    assert plain.base == RateLine(
        input=2 * 10**9,
        cache_read=2 * 10**9,
        cache_write=2 * 10**9,
        cache_write_1h=2 * 10**9,
        output=8 * 10**9,
    )
    write_only = loaded.rates_for(None, "write-only", DAY)
    assert write_only is not None
    # cache_write_1h falls back to cache_write ($2.50/M), cache_read to input ($2/M)
    assert write_only.base.cache_write_1h == 2_500_000_000
    assert write_only.base.cache_read == 2 * 10**9


def test_pinned_sheet_rates() -> None:
    pinned = RateSheet.load(PINNED_PATH)
    claude = pinned.rates_for("anthropic", "claude-sonnet-4-5", DAY)
    assert claude is not None
    assert claude.source == "pinned-2026-01"
    assert claude.base == RateLine(3 * 10**9, 300_000_000, 3_750_000_000, 6 * 10**9, 15 * 10**9)
    assert claude.tiers == (
        (200_000, RateLine(6 * 10**9, 600_000_000, 7_500_000_000, 12 * 10**9, 22_500_000_000)),
    )
    # provider must match where the sheet names one
    assert pinned.rates_for("aws", "claude-sonnet-4-5", DAY) is None
    assert pinned.rates_for(None, "claude-sonnet-4-5", DAY) is None
    # an entry without provider matches any provider, or none
    assert pinned.rates_for("acme", "house-llm", DAY) is not None
    assert pinned.rates_for(None, "house-llm", DAY) is not None


def test_glob_match_is_case_insensitive() -> None:
    pinned = RateSheet.load(PINNED_PATH)
    rates = pinned.rates_for("openai", "FT:GPT-4o-mini:Acme::x1", DAY)
    assert rates is not None
    assert rates.base.input == 300_000_000
    assert rates.model == "FT:GPT-4o-mini:Acme::x1"  # the span's name is kept
    assert pinned.rates_for("OpenAI", "gpt-4o-mini", DAY) is not None


def test_effective_dates_pick_the_latest_entry_in_force() -> None:
    pinned = RateSheet.load(PINNED_PATH)
    before = pinned.rates_for("openai", "gpt-4.1", dt.date(2026, 2, 28))
    on = pinned.rates_for("openai", "gpt-4.1", dt.date(2026, 3, 1))
    assert before is not None and on is not None
    assert per_million(before.base.input) == Decimal(2)
    assert per_million(on.base.input) == Decimal("1.5")
    assert per_million(on.base.cache_read) == Decimal("0.375")


def test_only_future_entry_means_no_price_yet() -> None:
    loaded = RateSheet.parse(
        "models:\n  - match: m\n    effective_from: 2030-01-01\n"
        "    per_million: {input: 1, output: 1}\n"
    )
    assert loaded.rates_for(None, "m", DAY) is None
    assert loaded.rates_for(None, "m", dt.date(2030, 1, 1)) is not None


def test_equally_effective_entries_the_last_written_wins() -> None:
    loaded = RateSheet.parse(
        sheet(
            """
            models:
              - match: "gpt-*"
                per_million: {input: 1, output: 1}
              - match: gpt-4o
                per_million: {input: 5, output: 5}
            """
        )
    )
    rates = loaded.rates_for(None, "gpt-4o", DAY)
    assert rates is not None and per_million(rates.base.input) == Decimal(5)
    other = loaded.rates_for(None, "gpt-3.5", DAY)
    assert other is not None and per_million(other.base.input) == Decimal(1)


def test_tiers_are_sorted_by_threshold() -> None:
    loaded = RateSheet.parse(
        sheet(
            """
            models:
              - match: m
                per_million: {input: 1, output: 1}
                tiers:
                  - above_input_tokens: 500000
                    per_million: {input: 3, output: 3}
                  - above_input_tokens: 200000
                    per_million: {input: 2, output: 2}
            """
        )
    )
    rates = loaded.rates_for(None, "m", DAY)
    assert rates is not None
    assert [above for above, _ in rates.tiers] == [200_000, 500_000]
    assert per_million(rates.line_for(200_000).input) == Decimal(1)
    assert per_million(rates.line_for(200_001).input) == Decimal(2)
    assert per_million(rates.line_for(500_000).input) == Decimal(2)
    assert per_million(rates.line_for(500_001).input) == Decimal(3)


def test_discounts_last_applicable_in_a_sheet_wins() -> None:
    loaded = RateSheet.parse(
        sheet(
            """
            discounts:
              - provider: openai
                percent: 5
              - provider: openai
                percent: 12
                effective_from: 2026-01-01
              - match: "gpt-4o*"
                provider: openai
                percent: 20
                effective_from: 2027-01-01
            """
        )
    )
    assert loaded.discount_for("openai", "gpt-4o", dt.date(2025, 12, 31)).percent == 5
    assert loaded.discount_for("openai", "gpt-4o", DAY).percent == 12
    assert loaded.discount_for("OpenAI", "GPT-4o-mini", dt.date(2027, 1, 1)).percent == 20
    assert loaded.discount_for("openai", "o3", dt.date(2027, 1, 1)).percent == 12
    assert loaded.discount_for("anthropic", "gpt-4o", DAY) is None
