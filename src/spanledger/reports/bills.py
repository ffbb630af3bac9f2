"""Provider bills as SpanLedger reads them: usage and cost exports, one `BillLine` a row.

The format of a file is told from its content, never its name. Field names and units are
the providers' own (their API references, as of 2026):

OpenAI Admin API, `GET /v1/organization/usage/completions` (JSON, a `page` of `bucket`s)
    bucket: `start_time` (Unix seconds, UTC), `end_time`, `results` (the API reference's
    schema says `result`; responses say `results`: both are read);
    result `organization.usage.completions.result`: `input_tokens` (every prompt token,
    cached and cache-written ones included), `input_cached_tokens`, `output_tokens`,
    `num_model_requests`, `model`, `project_id`, `api_key_id`, `user_id`, `batch`,
    `service_tier`; `input_audio_tokens`, `output_audio_tokens` (a part of the totals,
    not added to them); where present, `input_cache_write_tokens` and
    `input_uncached_tokens` (newer responses).
OpenAI Admin API, `GET /v1/organization/costs` (JSON, a `page` of 1-day `bucket`s)
    result `organization.costs.result`: `amount` {`value` (a number, in dollars),
    `currency` ("usd")}, `line_item` (with `group_by=line_item`: "<model>, input",
    "<model>, cached input", "<model>, output", or a charge that is not per token such as
    "web search tool calls"), `project_id`.
Anthropic Admin API, `GET /v1/organizations/usage_report/messages` (JSON)
    bucket: `starting_at`, `ending_at` (RFC 3339), `results`: `uncached_input_tokens`,
    `cache_read_input_tokens`, `cache_creation` {`ephemeral_5m_input_tokens`,
    `ephemeral_1h_input_tokens`}, `output_tokens`, `server_tool_use`
    {`web_search_requests`}, `model`, `workspace_id`, `api_key_id`, `service_tier`,
    `context_window`.
Anthropic Admin API, `GET /v1/organizations/cost_report` (JSON)
    result: `amount` (a decimal string in the currency's lowest unit: "123.45" USD is
    $1.2345), `currency` ("USD"), `cost_type` ("tokens", "web_search", "code_execution",
    ...), `token_type` ("uncached_input_tokens", "cache_read_input_tokens",
    "cache_creation.ephemeral_5m_input_tokens", "cache_creation.ephemeral_1h_input_tokens",
    "output_tokens"), `model`, `workspace_id`, `description`, `service_tier`,
    `context_window`.
Anthropic Console usage export (CSV)
    `usage_date_utc`, `model_version`, `api_key`, `workspace`, `usage_type`,
    `context_window`, `usage_input_tokens_no_cache`, `usage_input_tokens_cache_write_5m`,
    `usage_input_tokens_cache_write_1h`, `usage_input_tokens_cache_read`,
    `usage_output_tokens`, `web_search_count`, `inference_geo`, `speed`.
Anthropic Console cost export (CSV)
    `usage_date_utc`, `model` (a display name, "Claude Sonnet 4.5"), `workspace`,
    `api_key`, `usage_type`, `context_window`, `token_type` ("input_no_cache",
    "input_cache_read", "input_cache_write_5m", "input_cache_write_1h", "output"),
    `cost_usd` (dollars), `list_price_usd`, `cost_type`, `api_key_id`, ...
Generic CSV (anything else, written by hand or by a script)
    `date,provider,model,input_tokens,cached_tokens,cache_write_tokens,output_tokens,
    cost_usd`, optionally `project`, `api_key`, `requests`. `input_tokens` counts every
    prompt token, cached and cache-written ones included (as OpenAI and OpenTelemetry
    GenAI count them); an empty `cost_usd` means the row has no amount.

A JSON file is one page or a list of pages. Every row that cannot be read is kept as a
`BadRow` with its file and line, never dropped quietly. Money is exact: JSON numbers are
read as decimals, never floats.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import json
import json.decoder
import json.scanner
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from spanledger.pricing.money import Femto, femto_from_usd
from spanledger.usage import provider_of

KINDS = ("input", "cache_read", "cache_write", "output")
"""Token kinds a bill and the ledger are compared by: uncached prompt tokens, cache reads,
cache writes (5-minute and 1-hour together), output tokens."""

OTHER = "other"
"""`BillLine.cost_kind` of a charge that is not per token (web search, code execution...)."""

FORMATS = {
    "openai-usage": "OpenAI completions usage (Admin API)",
    "openai-costs": "OpenAI costs (Admin API)",
    "anthropic-usage": "Anthropic messages usage report (Admin API)",
    "anthropic-costs": "Anthropic cost report (Admin API)",
    "anthropic-console-usage": "Anthropic Console usage export (CSV)",
    "anthropic-console-costs": "Anthropic Console cost export (CSV)",
    "generic-csv": "generic CSV",
}


@dataclass(frozen=True, slots=True)
class Tokens:
    """Token counts by kind (see `KINDS`)."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(*(a + b for a, b in zip(self.counts(), other.counts(), strict=True)))

    def counts(self) -> tuple[int, int, int, int]:
        return (self.input, self.cache_read, self.cache_write, self.output)

    def get(self, kind: str) -> int:
        return int(getattr(self, kind))

    @property
    def total(self) -> int:
        return sum(self.counts())

    def as_dict(self) -> dict[str, int]:
        return dict(zip(KINDS, self.counts(), strict=True))


@dataclass(frozen=True, slots=True)
class BillLine:
    """One row of a bill: tokens, an amount, or both, for a day, a provider and a model."""

    file: str
    line: int
    day: dt.date
    provider: str
    model: str | None  # as the bill names it; None when the bill is not split by model
    project: str | None = None  # OpenAI project, Anthropic workspace
    api_key: str | None = None
    tokens: Tokens | None = None  # None: the row carries no token counts
    requests: int | None = None
    cost: Femto | None = None  # None: the row carries no amount
    cost_kind: str | None = None  # a KINDS entry, OTHER, or None for the row's whole amount
    label: str | None = None  # the bill's own words for the row (line item, description)


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that could not be read, and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class Bill:
    """One bill file, read."""

    file: str
    format: str
    lines: list[BillLine] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # (provider, day) the file reports on, rows or not: a day's bucket with no rows says
    # nothing was billed that day; a day without a bucket says nothing at all.
    covers: set[tuple[str, dt.date]] = field(default_factory=set)


class BillError(ValueError):
    """A file that is not a bill SpanLedger can read; the message says where and why."""


class _Bad(Exception):
    """One row's problem (caught per row, kept as a `BadRow`)."""


def read_bill(path: str | Path) -> Bill:
    """Read one bill file, telling its format from its content."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise BillError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BillError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return parse_bill(text, str(path))


def parse_bill(text: str, name: str = "<bill>") -> Bill:
    """Read a bill from its text; `name` is used in messages."""
    stripped = text.lstrip()
    if not stripped:
        raise BillError(f"{name}: empty file")
    if stripped[0] in "[{":
        return _parse_json(text, name)
    return _parse_csv(text, name)


# -- JSON ---------------------------------------------------------------------------------


class _Located(dict):  # type: ignore[type-arg]
    """A JSON object that knows the line it starts on."""

    line: int = 0


def _load_json(text: str, name: str) -> Any:
    """JSON with exact decimals, whose objects carry their line numbers (`_Located`)."""
    newlines = [match.start() for match in re.finditer("\n", text)]
    decoder = json.JSONDecoder(parse_float=Decimal)

    def parse_object(s_and_end: tuple[str, int], *args: Any) -> tuple[_Located, int]:
        start = s_and_end[1] - 1  # where the "{" is
        obj, end = json.decoder.JSONObject(s_and_end, *args)  # type: ignore[attr-defined]
        located = _Located(obj)
        located.line = bisect.bisect_left(newlines, start) + 1
        return located, end

    decoder.parse_object = parse_object  # type: ignore[attr-defined]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as error:
        raise BillError(f"{name}:{error.lineno}: not valid JSON: {error.msg}") from None
    except RecursionError:
        raise BillError(f"{name}: JSON nested too deeply") from None


def _line(value: Any, default: int = 1) -> int:
    return value.line if isinstance(value, _Located) else default


def _parse_json(text: str, name: str) -> Bill:
    document = _load_json(text, name)
    pages = document if isinstance(document, list) else [document]
    buckets: list[tuple[_Located, int]] = []  # (bucket, page number)
    for number, page in enumerate(pages, 1):
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise BillError(
                f"{name}:{_line(page)}: not a usage or cost report page (an object with "
                "`data`: a list of time buckets)"
            )
        for bucket in page["data"]:
            if not isinstance(bucket, dict):
                raise BillError(f"{name}:{_line(page)}: `data` holds something not a bucket")
            buckets.append((bucket, number))  # type: ignore[arg-type]
    fmt = _json_format(buckets, name)
    bill = Bill(name, fmt)
    for number, page in enumerate(pages, 1):
        if page.get("has_more") is True:
            where = f" (page {number})" if len(pages) > 1 else ""
            bill.warnings.append(
                f"{name}{where}: has_more is true: the report continues on a page this file "
                f"lacks (next_page {page.get('next_page')!r}); fetch every page"
            )
    read = _ROW_READERS[fmt]
    for bucket, _ in buckets:
        results = bucket.get("results", bucket.get("result"))
        if results is None:
            results = []
        if not isinstance(results, list):
            bill.bad_rows.append(BadRow(name, _line(bucket), "`results` is not a list"))
            continue
        try:
            day = _bucket_day(bucket, fmt)
            bill.covers.add((fmt.split("-")[0], day))
        except _Bad as problem:
            lost = (
                f" (its {len(results)} rows not read)"
                if len(results) > 1
                else (" (its row not read)" if results else "")
            )
            bill.bad_rows.append(BadRow(name, _line(bucket), f"{problem}{lost}"))
            continue
        for result in results:
            line = _line(result, _line(bucket))
            try:
                if not isinstance(result, dict):
                    raise _Bad("a result that is not an object")
                bill.lines.extend(read(result, name, line, day))
            except _Bad as problem:
                bill.bad_rows.append(BadRow(name, line, str(problem)))
    if not buckets or not any(bucket.get("results", bucket.get("result")) for bucket, _ in buckets):
        bill.warnings.append(f"{name}: no rows in this report")
    return bill


def _json_format(buckets: list[tuple[_Located, int]], name: str) -> str:
    """The report a JSON file holds, from its first result (or its buckets' keys)."""
    for bucket, _ in buckets:
        results = bucket.get("results", bucket.get("result"))
        if not isinstance(results, list):
            continue
        for result in results:
            if not isinstance(result, dict):
                continue
            kind = result.get("object")
            if kind == "organization.usage.completions.result":
                return "openai-usage"
            if kind == "organization.costs.result":
                return "openai-costs"
            if isinstance(kind, str) and kind.startswith("organization.usage."):
                raise BillError(
                    f"{name}:{_line(result)}: {kind} is not read: SpanLedger prices LLM "
                    "calls, so it reconciles completions usage (/v1/organization/usage/"
                    "completions) and costs (/v1/organization/costs)"
                )
            if "uncached_input_tokens" in result or "cache_read_input_tokens" in result:
                return "anthropic-usage"
            if "amount" in result and isinstance(result.get("amount"), str | int | Decimal):
                return "anthropic-costs"
            raise BillError(
                f"{name}:{_line(result)}: a result SpanLedger does not know (object "
                f"{kind!r}, keys {', '.join(sorted(result)[:8])})"
            )
    for bucket, _ in buckets:  # no rows at all: tell the provider by the bucket's keys
        if "start_time" in bucket:
            return "openai-usage"
        if "starting_at" in bucket:
            return "anthropic-usage"
    if buckets:
        raise BillError(f"{name}:{_line(buckets[0][0])}: buckets without start time")
    return "openai-usage"  # an empty page: nothing to read either way


def _bucket_day(bucket: Mapping[str, Any], fmt: str) -> dt.date:
    if fmt.startswith("openai"):
        start = bucket.get("start_time")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise _Bad(f"bucket start_time {start!r} is not Unix seconds")
        try:
            return dt.datetime.fromtimestamp(start, dt.UTC).date()
        except (OverflowError, OSError, ValueError):
            raise _Bad(f"bucket start_time {start!r} is out of range") from None
    start = bucket.get("starting_at")
    if not isinstance(start, str):
        raise _Bad(f"bucket starting_at {start!r} is not an RFC 3339 time")
    try:
        moment = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        raise _Bad(f"bucket starting_at {start!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).date()


def _count(row: Mapping[str, Any], key: str, *, required: bool = False) -> int:
    value = row.get(key)
    if value is None:
        if required:
            raise _Bad(f"missing {key}")
        return 0
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{key} {value!r} is not a token count")
    if value < 0:
        raise _Bad(f"{key} {value} is negative")
    return value


def _text(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(f"{key} {value!r} is not text")
    return value.strip() or None


def _femto(amount: Any, what: str, *, scale: int = 1) -> Femto:
    """An amount in dollars (or in cents with `scale=100`) -> femto-dollars, exactly."""
    if isinstance(amount, bool) or not isinstance(amount, str | int | Decimal):
        raise _Bad(f"{what} {amount!r} is not an amount")
    try:
        value = Decimal(amount.strip()) if isinstance(amount, str) else Decimal(amount)
    except InvalidOperation:
        raise _Bad(f"{what} {amount!r} is not an amount") from None
    femto = femto_from_usd(value / scale) if value.is_finite() else None
    if femto is None:
        raise _Bad(f"{what} {amount!r} is not an amount")
    return femto


def _openai_usage(row: Mapping[str, Any], name: str, line: int, day: dt.date) -> list[BillLine]:
    if row.get("object") != "organization.usage.completions.result":
        raise _Bad(f"object {row.get('object')!r} in a completions usage report")
    prompt = _count(row, "input_tokens", required=True)
    cached = _count(row, "input_cached_tokens")
    written = _count(row, "input_cache_write_tokens")
    if cached + written > prompt:
        parts = f"input_cached_tokens {cached}" + (
            f" + input_cache_write_tokens {written}" if written else ""
        )
        raise _Bad(f"{parts} > input_tokens {prompt}, which includes them")
    uncached = prompt - cached - written
    if row.get("input_uncached_tokens") is not None:
        stated = _count(row, "input_uncached_tokens")
        if stated != uncached:
            raise _Bad(
                f"input_uncached_tokens {stated} disagrees with input_tokens - cached - "
                f"cache-written = {uncached}"
            )
    tokens = Tokens(uncached, cached, written, _count(row, "output_tokens", required=True))
    requests = row.get("num_model_requests")
    return [
        BillLine(
            name, line, day, "openai", _text(row, "model"),
            project=_text(row, "project_id"), api_key=_text(row, "api_key_id"),
            tokens=tokens,
            requests=_count(row, "num_model_requests") if requests is not None else None,
            label="batch" if row.get("batch") is True else None,
        )
    ]  # fmt: skip


# "gpt-4o-mini-2024-07-18, cached input"; also "priority | gpt-5, output, long context" and
# "gpt-image-1 text, input" (a modality word after the model).
_LINE_ITEM = re.compile(
    r"^(?:[^|,]+\|\s*)?(?P<model>[^,\s]+)(?:\s+(?P<modality>\w+))?,\s*(?P<what>[^,]+)"
)
_OPENAI_KINDS = {
    "input": "input",
    "cached input": "cache_read",
    "cache read": "cache_read",
    "cached write": "cache_write",
    "cache write": "cache_write",
    "output": "output",
}


def _openai_cost(row: Mapping[str, Any], name: str, line: int, day: dt.date) -> list[BillLine]:
    if row.get("object") != "organization.costs.result":
        raise _Bad(f"object {row.get('object')!r} in a costs report")
    amount = row.get("amount")
    if not isinstance(amount, Mapping):
        raise _Bad("amount is not an object with value and currency")
    currency = amount.get("currency")
    if not isinstance(currency, str) or currency.lower() != "usd":
        raise _Bad(f"currency {currency!r}: only USD bills are read")
    cost = _femto(amount.get("value"), "amount.value")
    item = _text(row, "line_item")
    model, kind = None, None
    if item is not None:
        match = _LINE_ITEM.match(item)
        what = match and _OPENAI_KINDS.get(match["what"].strip().lower())
        if match and what and (match["modality"] or "text").lower() == "text":
            model, kind = match["model"], what
        else:
            kind = OTHER  # web search, file search, storage, audio or image tokens...
            model = match["model"] if match else None
    return [
        BillLine(
            name, line, day, "openai", model, project=_text(row, "project_id"),
            api_key=_text(row, "api_key_id"), cost=cost, cost_kind=kind, label=item,
        )
    ]  # fmt: skip


def _anthropic_usage(row: Mapping[str, Any], name: str, line: int, day: dt.date) -> list[BillLine]:
    creation = row.get("cache_creation") or {}
    if not isinstance(creation, Mapping):
        raise _Bad("cache_creation is not an object")
    tokens = Tokens(
        _count(row, "uncached_input_tokens", required=True),
        _count(row, "cache_read_input_tokens"),
        _count(creation, "ephemeral_5m_input_tokens")
        + _count(creation, "ephemeral_1h_input_tokens"),
        _count(row, "output_tokens", required=True),
    )
    return [
        BillLine(
            name, line, day, "anthropic", _text(row, "model"),
            project=_text(row, "workspace_id"), api_key=_text(row, "api_key_id"),
            tokens=tokens, label=_text(row, "service_tier"),
        )
    ]  # fmt: skip


_ANTHROPIC_TOKEN_TYPES = {
    "uncached_input_tokens": "input",
    "cache_read_input_tokens": "cache_read",
    "cache_creation.ephemeral_5m_input_tokens": "cache_write",
    "cache_creation.ephemeral_1h_input_tokens": "cache_write",
    "output_tokens": "output",
}


def _anthropic_cost(row: Mapping[str, Any], name: str, line: int, day: dt.date) -> list[BillLine]:
    currency = row.get("currency", "USD")
    if not isinstance(currency, str) or currency.upper() != "USD":
        raise _Bad(f"currency {currency!r}: only USD bills are read")
    cost = _femto(row.get("amount"), "amount (cents)", scale=100)
    cost_type, token_type = _text(row, "cost_type"), _text(row, "token_type")
    if cost_type is None and token_type is None:
        kind = None  # not grouped by description: the bucket's whole amount
    elif cost_type not in (None, "tokens"):
        kind = OTHER
    elif token_type in _ANTHROPIC_TOKEN_TYPES:
        kind = _ANTHROPIC_TOKEN_TYPES[token_type]
    else:
        raise _Bad(f"token_type {token_type!r} is not one SpanLedger knows")
    return [
        BillLine(
            name, line, day, "anthropic", _text(row, "model"),
            project=_text(row, "workspace_id"), cost=cost, cost_kind=kind,
            label=_text(row, "description") or cost_type,
        )
    ]  # fmt: skip


_ROW_READERS = {
    "openai-usage": _openai_usage,
    "openai-costs": _openai_cost,
    "anthropic-usage": _anthropic_usage,
    "anthropic-costs": _anthropic_cost,
}


# -- CSV ----------------------------------------------------------------------------------

_CSV_COLUMNS = {
    "anthropic-console-usage": (
        "usage_date_utc", "model_version", "usage_input_tokens_no_cache",
        "usage_input_tokens_cache_read", "usage_output_tokens",
    ),
    "anthropic-console-costs": ("usage_date_utc", "model", "token_type", "cost_usd"),
    "generic-csv": (
        "date", "provider", "model", "input_tokens", "cached_tokens", "cache_write_tokens",
        "output_tokens", "cost_usd",
    ),
}  # fmt: skip


def _csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, cells) of every record, blank lines skipped."""
    reader = csv.reader(io.StringIO(text, newline=""))
    last = 0
    for cells in reader:
        first, last = last + 1, reader.line_num
        if any(cell.strip() for cell in cells):
            yield first, cells


def _parse_csv(text: str, name: str) -> Bill:
    rows = _csv_rows(text)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise BillError(f"{name}: empty file") from None
    except csv.Error as error:
        raise BillError(f"{name}: not CSV: {error}") from None
    columns = [cell.strip().lower() for cell in header]
    fmt = next((f for f, need in _CSV_COLUMNS.items() if set(need) <= set(columns)), None)
    if fmt is None:
        expected = "; ".join(f"{FORMATS[f]}: {', '.join(need)}" for f, need in _CSV_COLUMNS.items())
        raise BillError(
            f"{name}:{header_line}: not a bill SpanLedger can read (columns "
            f"{', '.join(columns[:12]) or 'none'}); expected JSON from the OpenAI or "
            f"Anthropic Admin API, or CSV with the columns of one of: {expected}"
        )
    bill = Bill(name, fmt)
    read = {
        "anthropic-console-usage": _console_usage,
        "anthropic-console-costs": _console_cost,
        "generic-csv": _generic,
    }[fmt]
    try:
        for line, cells in rows:
            if len(cells) != len(columns):
                bill.bad_rows.append(
                    BadRow(name, line, f"{len(cells)} fields where the header has {len(columns)}")
                )
                continue
            row = {column: cell.strip() for column, cell in zip(columns, cells, strict=True)}
            try:
                read_lines = read(row, name, line)
                bill.lines.extend(read_lines)
                bill.covers.update((ln.provider, ln.day) for ln in read_lines)
            except _Bad as problem:
                bill.bad_rows.append(BadRow(name, line, str(problem)))
    except csv.Error as error:
        raise BillError(f"{name}: not CSV: {error}") from None
    if not bill.lines and not bill.bad_rows:
        bill.warnings.append(f"{name}: no rows in this export")
    return bill


def _cell_count(row: Mapping[str, str], key: str) -> int:
    text = row.get(key, "")
    if not text:
        return 0
    if not text.isdigit():
        raise _Bad(f"{key} {text!r} is not a token count")
    return int(text)


def _cell_day(row: Mapping[str, str], key: str) -> dt.date:
    text = row.get(key, "")
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise _Bad(f"{key} {text!r} is not a date (YYYY-MM-DD)") from None


def _cell_text(row: Mapping[str, str], key: str) -> str | None:
    return row.get(key) or None


def _console_usage(row: Mapping[str, str], name: str, line: int) -> list[BillLine]:
    model = _cell_text(row, "model_version")
    if model is None:
        raise _Bad("model_version is empty")
    tokens = Tokens(
        _cell_count(row, "usage_input_tokens_no_cache"),
        _cell_count(row, "usage_input_tokens_cache_read"),
        _cell_count(row, "usage_input_tokens_cache_write_5m")
        + _cell_count(row, "usage_input_tokens_cache_write_1h")
        + _cell_count(row, "usage_input_tokens_cache_write"),  # older exports: one column
        _cell_count(row, "usage_output_tokens"),
    )
    return [
        BillLine(
            name, line, _cell_day(row, "usage_date_utc"), "anthropic", model,
            project=_cell_text(row, "workspace"), api_key=_cell_text(row, "api_key"),
            tokens=tokens, label=_cell_text(row, "usage_type"),
        )
    ]  # fmt: skip


def model_from_display_name(name: str) -> str:
    """The Console's "Claude Sonnet 4.5" -> "claude-sonnet-4-5" (a model id prefix)."""
    return re.sub(r"[\s.]+", "-", name.strip().lower())


def _console_cost(row: Mapping[str, str], name: str, line: int) -> list[BillLine]:
    day = _cell_day(row, "usage_date_utc")
    cost = _femto(row.get("cost_usd", ""), "cost_usd")
    token_type = (row.get("token_type") or "").lower()
    cost_type = (row.get("cost_type") or "").lower()
    if cost_type not in ("", "token", "tokens"):
        kind: str | None = OTHER
    elif "cache_read" in token_type:
        kind = "cache_read"
    elif "cache_write" in token_type or "cache_creation" in token_type:
        kind = "cache_write"
    elif "output" in token_type:
        kind = "output"
    elif "input" in token_type:
        kind = "input"
    elif not token_type:
        kind = None
    else:
        raise _Bad(f"token_type {row.get('token_type')!r} is not one SpanLedger knows")
    display = _cell_text(row, "model")
    return [
        BillLine(
            name, line, day, "anthropic",
            model_from_display_name(display) if display else None,
            project=_cell_text(row, "workspace"),
            api_key=_cell_text(row, "api_key_id") or _cell_text(row, "api_key"),
            cost=cost, cost_kind=kind, label=token_type or cost_type or None,
        )
    ]  # fmt: skip


def _generic(row: Mapping[str, str], name: str, line: int) -> list[BillLine]:
    day = _cell_day(row, "date")
    provider_name = _cell_text(row, "provider")
    if provider_name is None:
        raise _Bad("provider is empty")
    provider = provider_of({"gen_ai.provider.name": provider_name}) or provider_name.lower()
    prompt = _cell_count(row, "input_tokens")
    cached = _cell_count(row, "cached_tokens")
    written = _cell_count(row, "cache_write_tokens")
    if cached + written > prompt:
        parts = f"cached_tokens {cached}" + (f" + cache_write_tokens {written}" if written else "")
        raise _Bad(f"{parts} > input_tokens {prompt}, which includes them")
    cost_text = row.get("cost_usd", "")
    requests = row.get("requests", "")
    return [
        BillLine(
            name, line, day, provider, _cell_text(row, "model"),
            project=_cell_text(row, "project"), api_key=_cell_text(row, "api_key"),
            tokens=Tokens(prompt - cached - written, cached, written,
                          _cell_count(row, "output_tokens")),
            requests=_cell_count(row, "requests") if requests else None,
            cost=_femto(cost_text, "cost_usd") if cost_text else None,
        )
    ]  # fmt: skip
