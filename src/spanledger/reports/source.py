"""Where reports read the ledger: a DuckDB file opened read-only, or a running server's API.

Both give the same rows, so `spanledger report --db ledger.duckdb` and
`spanledger report --url http://host:4318` print the same numbers:

- the file is queried with the very `DuckDBStore` methods the server's API calls, on a
  read-only connection (a ledger that a running server holds open is refused with a hint
  to use `--url`, since DuckDB lets one process write or many read, not both);
- the API's answers (money as decimal strings, times as ISO 8601) are turned back into
  the same Python values.

Rows are plain dicts keyed like the store's columns. Money is exact integer femto-dollars
(10^-15 USD, `spanledger.pricing.money`), times are timezone-aware UTC datetimes, and
`attributes`/`resource` are dicts. `to_json` turns them into the API's JSON shape again.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import duckdb

from spanledger.pricing.money import femto_from_usd, usd_str
from spanledger.store import MONEY_COLUMNS, TraceFilter
from spanledger.store.duckdb import DuckDBStore

TIME_COLUMNS = frozenset({"start_time", "end_time", "finalized_at", "ingested_at", "last_seen"})

Progress = Callable[[int, int], None]
"""Called as work advances with (done, total)."""

_PAGE = 10_000  # the API's largest `limit`


class LedgerError(Exception):
    """The ledger cannot be read; the message says why and what to do."""


class LedgerSource(Protocol):
    """The ledger as reports see it. Times are UTC; `end` is exclusive."""

    description: str  # "ledger.duckdb" or "http://127.0.0.1:4318", for messages

    def costs(
        self, group_by: Sequence[str], start: dt.datetime | None, end: dt.datetime | None
    ) -> list[dict[str, Any]]:
        """Cost, tokens, calls, cache savings, retry overhead and unpriced calls per group
        of LLM spans started in the window (the store's `costs`)."""
        ...

    def unpriced(self, start: dt.datetime | None, end: dt.datetime | None) -> list[dict[str, Any]]:
        """Models without a price, with their token volume."""
        ...

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """{"trace": summary or None, "finalized": bool, "spans": [...]}, None if unknown."""
        ...

    def llm_spans(
        self,
        start: dt.datetime | None,
        end: dt.datetime | None,
        progress: Progress | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every LLM span (price status set) started in the window, with the store's
        `SPAN_FIELDS`, ordered by start time, trace id and span id, a page at a time."""
        ...

    def ledger_daily(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        """LLM calls per UTC day, provider, model, billing project, API key and class, with
        tokens and cost by kind: what a provider's bill is compared with."""
        ...

    def close(self) -> None: ...


def open_source(
    db: str | Path | None = None, url: str | None = None, token: str | None = None
) -> LedgerSource:
    """The source a command asked for: `url` if given, else the DuckDB file `db`
    (default ./spanledger.duckdb)."""
    if db is not None and url is not None:
        raise LedgerError("give either --db or --url, not both")
    if url is not None:
        return HttpSource(url, token=token)
    return DuckDBSource(db if db is not None else "spanledger.duckdb")


# -- a DuckDB file ------------------------------------------------------------------------


class DuckDBSource:
    """A ledger file, opened read-only."""

    def __init__(self, path: str | Path) -> None:
        self.description = str(path)
        if not Path(path).is_file():
            raise LedgerError(
                f"no ledger at {path}: give --db FILE (the file `spanledger serve --db` "
                "writes) or --url of a running server"
            )
        try:
            self._store = DuckDBStore(str(path), read_only=True)
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                raise LedgerError(
                    f"{path} is open in another process (a running `spanledger serve`?); "
                    "read it through the server with --url http://HOST:PORT instead"
                ) from None
            raise LedgerError(f"cannot open {path}: {error}") from None
        except duckdb.Error as error:
            raise LedgerError(f"{path} is not a DuckDB ledger: {error}") from None
        tables = {row[0] for row in self._query("SELECT table_name FROM duckdb_tables()")}
        if not {"spans", "traces"} <= tables:
            self.close()
            raise LedgerError(f"{path} is a DuckDB file but not a SpanLedger ledger (no spans)")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._store._read().execute(sql, list(params)).fetchall()
        except duckdb.Error as error:
            raise LedgerError(f"{self.description}: {error}") from None

    def _guard(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except duckdb.Error as error:
            raise LedgerError(
                f"{self.description}: cannot read the ledger (written by another "
                f"SpanLedger version?): {error}"
            ) from None

    def costs(
        self, group_by: Sequence[str], start: dt.datetime | None, end: dt.datetime | None
    ) -> list[dict[str, Any]]:
        query = TraceFilter(start=start, end=end)
        rows = self._guard(lambda: self._store.costs(list(group_by), query))
        return [from_db(row) for row in rows]

    def unpriced(self, start: dt.datetime | None, end: dt.datetime | None) -> list[dict[str, Any]]:
        rows = self._guard(lambda: self._store.unpriced(TraceFilter(start=start, end=end)))
        return [from_db(row) for row in rows]

    def ledger_daily(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        from spanledger.reports.reconcile import API_KEY_KEYS, PROJECT_KEYS

        query = TraceFilter(start=start, end=end)
        rows = self._guard(lambda: self._store.ledger_daily(query, PROJECT_KEYS, API_KEY_KEYS))
        return [from_db(row) for row in rows]

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        trace_id = trace_id.lower()
        summary = self._guard(lambda: self._store.trace_summary(trace_id))
        spans = self._guard(lambda: self._store.trace_spans(trace_id))
        if summary is None and not spans:
            return None
        return {
            "trace": from_db(summary) if summary is not None else None,
            "finalized": summary is not None,
            "spans": [from_db(span) for span in spans],
        }

    def llm_spans(
        self,
        start: dt.datetime | None,
        end: dt.datetime | None,
        progress: Progress | None = None,
    ) -> Iterator[dict[str, Any]]:
        query = TraceFilter(start=start, end=end)
        total = self._guard(lambda: self._store.llm_span_count(query))
        after, done = None, 0
        while True:
            page, after = self._guard(
                lambda after=after: self._store.llm_spans(query, after, _PAGE)  # type: ignore[misc]
            )
            for row in page:
                yield from_db(row)
            done += len(page)
            if progress is not None:
                progress(done, total)
            if after is None:
                break

    def close(self) -> None:
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()

    def __enter__(self) -> DuckDBSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- a running server ---------------------------------------------------------------------


class HttpSource:
    """A running `spanledger serve`, through its JSON API (`/api/...`)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        try:
            import httpx
        except ImportError:  # pragma: no cover - httpx ships with the dev extras
            raise LedgerError("--url needs the httpx package: pip install httpx") from None
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise LedgerError(f"--url {url!r} is not an http:// or https:// address")
        self.description = url
        self._httpx = httpx
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def _get(self, path: str, params: Mapping[str, str | None] | None = None) -> dict[str, Any]:
        sent = {key: value for key, value in (params or {}).items() if value is not None}
        httpx = self._httpx
        try:
            response = self._client.get(path, params=sent)
        except httpx.TimeoutException:
            raise LedgerError(f"{self.description} did not answer in time") from None
        except httpx.HTTPError as error:
            raise LedgerError(
                f"cannot reach {self.description} ({error}); is `spanledger serve` running there?"
            ) from None
        if response.status_code == 401:
            raise LedgerError(
                f"{self.description} wants a bearer token: pass --token or set SPANLEDGER_TOKEN"
            )
        if response.status_code == 404:
            raise _NotFound(path)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            reason = body.get("error") if isinstance(body, dict) else response.text[:200]
            raise LedgerError(f"{self.description}{path} answered {response.status_code}: {reason}")
        return body

    def costs(
        self, group_by: Sequence[str], start: dt.datetime | None, end: dt.datetime | None
    ) -> list[dict[str, Any]]:
        body = self._api(
            "/api/costs", {"group_by": ",".join(group_by), **_window_params(start, end)}
        )
        return [from_api(row) for row in body.get("rows", [])]

    def unpriced(self, start: dt.datetime | None, end: dt.datetime | None) -> list[dict[str, Any]]:
        body = self._api("/api/unpriced", _window_params(start, end))
        return [from_api(row) for row in body.get("models", [])]

    def ledger_daily(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        body = self._api("/api/ledger/daily", _window_params(start, end))
        return [from_api(row) for row in body.get("rows", [])]

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        try:
            body = self._get(f"/api/traces/{trace_id.lower()}")
        except _NotFound:
            return None
        summary = body.get("trace")
        return {
            "trace": from_api(summary) if summary is not None else None,
            "finalized": bool(body.get("finalized")),
            "spans": [from_api(span) for span in body.get("spans", [])],
        }

    def llm_spans(
        self,
        start: dt.datetime | None,
        end: dt.datetime | None,
        progress: Progress | None = None,
    ) -> Iterator[dict[str, Any]]:
        params: dict[str, str | None] = {**_window_params(start, end), "limit": str(_PAGE)}
        total, done = 0, 0
        while True:
            page = self._api("/api/spans", params)
            total = page.get("total", total)
            spans = page.get("spans", [])
            for span in spans:
                yield from_api(span)
            done += len(spans)
            if progress is not None:
                progress(done, total)
            if not page.get("next"):
                break
            params["after"] = page["next"]

    def _api(self, path: str, params: Mapping[str, str | None]) -> dict[str, Any]:
        try:
            return self._get(path, params)
        except _NotFound:
            raise LedgerError(
                f"{self.description}{path} not found: is this a SpanLedger server?"
            ) from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _NotFound(Exception):
    pass


# -- one row shape for both ---------------------------------------------------------------


def from_db(row: Mapping[str, Any]) -> dict[str, Any]:
    """A store row: DECIMAL femto-dollars -> int, naive UTC -> aware, JSON text -> dict."""
    result: dict[str, Any] = {}
    for key, value in row.items():
        if value is None:
            result[key] = None
        elif key in MONEY_COLUMNS:
            result[key] = int(value)
        elif isinstance(value, dt.datetime):
            result[key] = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
        elif key in ("attributes", "resource") and isinstance(value, str):
            result[key] = json.loads(value)
        else:
            result[key] = value
    return result


def from_api(row: Mapping[str, Any]) -> dict[str, Any]:
    """An API row: dollar strings -> int femto-dollars, ISO 8601 -> aware datetimes."""
    result: dict[str, Any] = {}
    for key, value in row.items():
        if value is None:
            result[key] = None
        elif key in MONEY_COLUMNS:
            femto = femto_from_usd(value)
            if femto is None:
                raise LedgerError(f"the server sent {key}={value!r}, which is not an amount")
            result[key] = femto
        elif key in TIME_COLUMNS and isinstance(value, str):
            result[key] = _parse_time(value)
        else:
            result[key] = value
    return result


def to_json(value: Any, key: str | None = None) -> Any:
    """Rows back in the API's JSON shape: exact dollar strings, ISO 8601 UTC with Z."""
    if isinstance(value, Mapping):
        return {k: to_json(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if key in MONEY_COLUMNS and isinstance(value, int) and not isinstance(value, bool):
        return usd_str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return iso(value)
    return value


def iso(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with a Z, as the API writes it."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"


def _parse_time(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _window_params(start: dt.datetime | None, end: dt.datetime | None) -> dict[str, str | None]:
    return {
        "from": iso(start) if start is not None else None,
        "to": iso(end) if end is not None else None,
    }
